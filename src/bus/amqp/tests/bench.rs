//! Throughput against plain lapin doing the same work (publish with confirm from many
//! tasks, consume and ack). Ignored by default:
//! `cargo test --release --lib bus::amqp::tests::bench -- --ignored --nocapture`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::BasicProperties;

use super::*;

const MESSAGES: usize = 20_000;
const PUBLISHERS: usize = 64;
const PREFETCH: u16 = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_bus_against_plain_lapin() {
    let Some(bus) = new_bus().await else { return };
    let bus = Arc::new(bus);
    // Best of three, alternating: the machine and the broker are shared.
    let (mut plain, mut ours) = (Duration::MAX, Duration::MAX);
    for _ in 0..3 {
        plain = plain.min(plain_lapin().await);
        ours = ours.min(through_bus(bus.clone()).await);
    }
    let ratio = plain.as_secs_f64() / ours.as_secs_f64();
    println!(
        "{MESSAGES} messages: plain lapin {plain:?} ({:.0}/s), bus {ours:?} ({:.0}/s), bus at {:.0}% of lapin",
        MESSAGES as f64 / plain.as_secs_f64(),
        MESSAGES as f64 / ours.as_secs_f64(),
        ratio * 100.0
    );
}

async fn through_bus(bus: Arc<AmqpBus>) -> Duration {
    let queue = unique("bench");
    let mut consumer = bus
        .consume(&temporary(&queue), PREFETCH)
        .await
        .expect("consume");
    let started = Instant::now();
    let consuming = tokio::spawn(async move {
        for _ in 0..MESSAGES {
            consumer.deliveries.recv().await.expect("delivery").ack();
        }
    });
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let (bus, queue) = (bus.clone(), queue.clone());
            tokio::spawn(async move {
                for i in (p..MESSAGES).step_by(PUBLISHERS) {
                    let published = bus.publish(to_queue(&queue, &format!("m{i}"))).await;
                    assert_eq!(published, Ok(Published::Routed));
                }
            })
        })
        .collect();
    for publisher in publishers {
        publisher.await.expect("publisher");
    }
    consuming.await.expect("consumer");
    started.elapsed()
}

async fn plain_lapin() -> Duration {
    let (_connection, channel) = raw().await;
    let consumer_channel = _connection.create_channel().await.expect("channel");
    let queue = unique("bench-plain");
    let options = QueueDeclareOptions {
        exclusive: true,
        auto_delete: true,
        ..Default::default()
    };
    channel
        .queue_declare(queue.as_str().into(), options, Default::default())
        .await
        .expect("declare");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm");
    consumer_channel
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut consumer = consumer_channel
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            Default::default(),
        )
        .await
        .expect("consume");
    let started = Instant::now();
    let consuming = tokio::spawn(async move {
        for _ in 0..MESSAGES {
            let delivery = consumer.next().await.expect("delivery").expect("delivery");
            // Not awaited one by one, as the bus does not either.
            tokio::spawn(async move { delivery.ack(BasicAckOptions::default()).await });
        }
    });
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let (channel, queue) = (channel.clone(), queue.clone());
            tokio::spawn(async move {
                for i in (p..MESSAGES).step_by(PUBLISHERS) {
                    let body = format!("{{\"n\":\"m{i}\"}}");
                    let properties = same_properties(i);
                    let options = BasicPublishOptions {
                        mandatory: true,
                        immediate: false,
                    };
                    let confirm = channel
                        .basic_publish(
                            "".into(),
                            queue.as_str().into(),
                            options,
                            body.as_bytes(),
                            properties,
                        )
                        .await
                        .expect("publish");
                    assert!(confirm.await.expect("confirm").is_ack());
                }
            })
        })
        .collect();
    for publisher in publishers {
        publisher.await.expect("publisher");
    }
    consuming.await.expect("consumer");
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_sequential_confirm_latency() {
    let Some(bus) = new_bus().await else { return };
    let queue = unique("latency");
    drop(bus.consume(&named(&queue), 1).await.expect("declare"));
    let started = Instant::now();
    for i in 0..50 {
        publish(&bus, to_queue(&queue, &format!("l{i}"))).await;
    }
    println!(
        "persistent publish to a durable queue: {:?} each",
        started.elapsed() / 50
    );
    delete_queue(&queue).await;
}

/// Publishing alone (into a queue nobody consumes), to tell the two sides apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_publish_only() {
    let Some(bus) = new_bus().await else { return };
    let bus = Arc::new(bus);
    let (_connection, channel) = raw().await;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm");
    let (mut plain, mut ours) = (Duration::MAX, Duration::MAX);
    for _ in 0..3 {
        let queue = unique("bench-publish");
        drop(bus.consume(&named(&queue), 1).await.expect("declare"));
        let started = Instant::now();
        let tasks: Vec<_> = (0..PUBLISHERS)
            .map(|p| {
                let (channel, queue) = (channel.clone(), queue.clone());
                tokio::spawn(async move {
                    for i in (p..MESSAGES).step_by(PUBLISHERS) {
                        let body = format!("{{\"n\":\"m{i}\"}}");
                        let properties = same_properties(i);
                        let options = BasicPublishOptions {
                            mandatory: true,
                            immediate: false,
                        };
                        let confirm = channel
                            .basic_publish(
                                "".into(),
                                queue.as_str().into(),
                                options,
                                body.as_bytes(),
                                properties,
                            )
                            .await
                            .expect("publish");
                        assert!(confirm.await.expect("confirm").is_ack());
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("publisher");
        }
        plain = plain.min(started.elapsed());
        let started = Instant::now();
        let tasks: Vec<_> = (0..PUBLISHERS)
            .map(|p| {
                let (bus, queue) = (bus.clone(), queue.clone());
                tokio::spawn(async move {
                    for i in (p..MESSAGES).step_by(PUBLISHERS) {
                        let published = bus.publish(to_queue(&queue, &format!("m{i}"))).await;
                        assert_eq!(published, Ok(Published::Routed));
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("publisher");
        }
        ours = ours.min(started.elapsed());
        delete_queue(&queue).await;
    }
    println!(
        "publish only, {MESSAGES} messages: plain lapin {plain:?}, bus {ours:?}, bus at {:.0}%",
        plain.as_secs_f64() / ours.as_secs_f64() * 100.0
    );
}

/// What the bus sends for `to_queue(.., "m{i}")`, so both sides make the broker do
/// the same work (persistence, priority, per-message TTL).
fn same_properties(i: usize) -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_priority(0)
        .with_message_id(i.to_string().into())
        .with_headers(Default::default())
        .with_correlation_id(format!("m{i}").into())
        .with_expiration("60000".into())
}
