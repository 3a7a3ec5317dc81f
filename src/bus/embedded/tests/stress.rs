//! Concurrency: churn of temporary queues, many publishers and consumers at once,
//! several runtimes sharing one bus.

use std::sync::Arc;
use std::time::Duration;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_leaves_nothing_behind() {
    let bus = Arc::new(bus());
    bus.declare_exchange("fan", ExchangeKind::Fanout)
        .await
        .expect("declare");
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let bus = bus.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..50 {
                let name = format!("tmp-{worker}-{round}");
                let mut consumer = consume(&bus, &name, QueueKind::Temporary, 2).await;
                bus.bind(&name, "fan", "").await.expect("bind");
                for n in 0..4 {
                    let _ = bus.publish(to_queue(&name, &n.to_string())).await;
                    let _ = bus.publish(to_exchange("fan", "", "f")).await;
                }
                // Keep one unacknowledged past the consumer, leave the rest buffered.
                let held = consumer.deliveries.recv().await;
                drop(consumer);
                drop(held);
            }
        }));
    }
    for task in tasks {
        task.await.expect("worker");
    }
    assert_eq!(bus.queue_count(), 0);
    assert_eq!(bus.held_bytes(), 0);
    assert_eq!(bus.shared.timer.len(), 0);
    let bindings = bus
        .registry
        .exchanges
        .get("fan")
        .map(|e| e.bindings.read().map(|b| b.len()).unwrap_or(99));
    assert_eq!(bindings, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_and_consumers_lose_nothing() {
    const PUBLISHERS: usize = 4;
    const EACH: usize = 2_000;
    let bus = Arc::new(bus());
    let mut consumers = Vec::new();
    for _ in 0..3 {
        consumers.push(consume(&bus, "shared", QueueKind::Named, 8).await);
    }
    let mut readers = Vec::new();
    for consumer in consumers {
        readers.push(tokio::spawn(async move {
            // The whole consumer, guard included (not just the captured receiver).
            let mut consumer = consumer;
            let mut seen = Vec::new();
            while let Ok(Some(delivery)) =
                tokio::time::timeout(Duration::from_secs(2), consumer.deliveries.recv()).await
            {
                seen.push(delivery.correlation_id.clone());
                // Every tenth goes back once, to mix requeues into the traffic.
                if seen.len() % 10 == 0 && !delivery.redelivered {
                    seen.pop();
                    delivery.requeue();
                } else {
                    delivery.ack();
                }
            }
            seen
        }));
    }
    let mut writers = Vec::new();
    for p in 0..PUBLISHERS {
        let bus = bus.clone();
        writers.push(tokio::spawn(async move {
            for n in 0..EACH {
                send(&bus, to_queue("shared", &format!("{p}-{n}"))).await;
            }
        }));
    }
    for writer in writers {
        writer.await.expect("writer");
    }
    let mut all = Vec::new();
    for reader in readers {
        all.extend(reader.await.expect("reader"));
    }
    let total = all.len();
    all.sort();
    all.dedup();
    assert_eq!((total, all.len()), (PUBLISHERS * EACH, PUBLISHERS * EACH));
    assert_eq!(bus.held_bytes(), 0);
}

#[test]
fn works_across_runtimes() {
    // A bus built outside any runtime, used from two current-thread runtimes.
    let bus = Arc::new(std::thread::spawn(bus).join().expect("thread"));
    let consumer_bus = bus.clone();
    let mut consumer = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        runtime.block_on(consume(&consumer_bus, "q", QueueKind::Named, 5))
    })
    .join()
    .expect("thread");
    let publisher_bus = bus.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        runtime.block_on(send(&publisher_bus, to_queue("q", "hop")));
    })
    .join()
    .expect("thread");
    assert_eq!(got(&mut consumer).correlation_id, "hop");
}
