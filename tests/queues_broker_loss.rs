//! The broker connection closed underneath a running server (`rabbitmqctl
//! close_all_connections`, which needs root, as in CI): sends during the outage fail
//! fast with a clear error instead of hanging, and once the bus has reconnected the
//! same consumers get messages again, without restarting opencore. Its own test binary:
//! closing every broker connection would disturb other tests running beside it.

mod common;
mod data_support;
mod queue_support;

use std::time::{Duration, Instant};

use queue_support::*;
use serde_json::json;

fn close_all_broker_connections() {
    let status = std::process::Command::new("rabbitmqctl")
        .args(["-q", "close_all_connections", "opencore test: broker loss"])
        .status()
        .expect("rabbitmqctl runs (RabbitMQ is on this machine)");
    assert!(status.success(), "rabbitmqctl close_all_connections failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_come_back_after_the_broker_connection_is_lost() {
    let Some(url) = amqp_url() else {
        return;
    };
    let server = server_on(&Some(url), |_| {});
    let mut consumer = Client::admin(&server).await;
    let mut sender = Client::admin(&server).await;
    let named = unique("survivor");
    consumer.register(&named).await.unwrap();
    let inbox = consumer.register("").await.unwrap();
    sender.send_to(&named, json!({"before": 1})).await.unwrap();
    assert_eq!(data(&consumer.event().await), json!({"before": 1}));

    close_all_broker_connections();
    // Every send answers promptly (an error while the bus is down), and soon succeeds.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut failures = 0;
    loop {
        let started = Instant::now();
        let outcome = sender.send_to(&named, json!({"after": 1})).await;
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "a send during the outage took {:?}",
            started.elapsed()
        );
        match outcome {
            Ok(_) => break,
            Err(err) => {
                failures += 1;
                assert!(
                    err.contains("broker") || err.contains("bad queue"),
                    "unexpected error during the outage: {err}"
                );
            }
        }
        assert!(Instant::now() < deadline, "the bus did not come back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("sends refused during the outage: {failures}");
    assert_eq!(data(&consumer.event().await), json!({"after": 1}));
    // The temporary queue is back too, under the same name.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match sender.send_to(&inbox, json!({"temp": 1})).await {
            Ok(_) => break,
            Err(err) if Instant::now() < deadline => {
                eprintln!("temporary queue not back yet: {err}");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(err) => panic!("temporary queue never came back: {err}"),
        }
    }
    assert_eq!(data(&consumer.event().await), json!({"temp": 1}));
}
