//! Losing the broker connection: operations fail fast, then every consumer comes
//! back on the same receiver.

use std::time::{Duration, Instant};

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_loss_fails_fast_then_recovers_consumers() {
    let connection_name = unique("lossy");
    let Some(bus) = bus_with(&connection_name, None).await else {
        return;
    };
    let temp = unique("survivor");
    let exchange = unique("survivor-ex");
    let durable = unique("survivor-named");
    let mut temp_consumer = bus
        .consume(&temporary(&temp), 5)
        .await
        .expect("consume temp");
    bus.declare_exchange(&exchange, ExchangeKind::Fanout)
        .await
        .expect("declare");
    bus.bind(&temp, &exchange, "").await.expect("bind");
    let mut named_consumer = bus
        .consume(&named(&durable), 5)
        .await
        .expect("consume named");

    let closing = tokio::task::spawn_blocking(move || close_connection(&connection_name));
    let deadline = Instant::now() + Duration::from_secs(30);
    while bus.health().up {
        assert!(
            Instant::now() < deadline,
            "bus still up after its connection was closed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    let during = bus.publish(to_queue(&temp, "lost")).await;
    assert!(
        matches!(during, Err(BusError::Unavailable(_))),
        "publish while down: {during:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "publish while down took {:?}",
        started.elapsed()
    );
    assert!(bus.health().last_error.is_some());
    closing.await.expect("rabbitmqctl task");

    let deadline = Instant::now() + Duration::from_secs(30);
    while !bus.health().up {
        assert!(Instant::now() < deadline, "bus did not reconnect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The same receivers get messages again: the temporary queue and its binding
    // were re-created, the named consumer restarted.
    assert_eq!(
        publish(&bus, to_exchange(&exchange, "", "back")).await,
        Published::Routed
    );
    assert_eq!(acked(&mut temp_consumer).await, "back");
    assert_eq!(
        publish(&bus, to_queue(&durable, "back2")).await,
        Published::Routed
    );
    assert_eq!(acked(&mut named_consumer).await, "back2");
    drop((temp_consumer, named_consumer));
    delete_queue(&durable).await;
    delete_exchange(&exchange).await;
}

/// Closes this test's connection only (other programs may share the broker).
fn close_connection(connection_name: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let listed = std::process::Command::new("rabbitmqctl")
            .args([
                "list_connections",
                "-q",
                "--no-table-headers",
                "pid",
                "client_properties",
            ])
            .output()
            .expect("run rabbitmqctl (must run as root)");
        let listing = String::from_utf8_lossy(&listed.stdout).into_owned();
        let pids: Vec<&str> = listing
            .lines()
            .filter(|line| line.contains(connection_name))
            .filter_map(|line| line.split_whitespace().next())
            .collect();
        if let Some(pid) = pids.first() {
            let closed = std::process::Command::new("rabbitmqctl")
                .args(["close_connection", pid, "test"])
                .output()
                .expect("run rabbitmqctl close_connection");
            assert!(
                closed.status.success(),
                "close_connection: {}",
                String::from_utf8_lossy(&closed.stderr)
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "connection {connection_name} not listed: {listing}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
