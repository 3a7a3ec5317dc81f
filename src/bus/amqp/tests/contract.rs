//! The bus contract (`bus::tests`, shared with the embedded bus) on RabbitMQ.

use std::sync::Arc;

use super::*;
use crate::bus::tests as contract;
use crate::bus::SharedBus;

async fn shared_bus() -> Option<SharedBus> {
    Some(Arc::new(new_bus().await?))
}

macro_rules! on_rabbitmq {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(bus) = shared_bus().await else { return };
                let prefix = contract::new_prefix();
                contract::$case(&bus, &prefix).await;
                clean_up(&prefix).await;
            }
        )*
    };
}

on_rabbitmq!(
    temp_queue_round_trip,
    named_queue_survives_consumer,
    round_robin,
    prefetch_credit,
    redelivery_after_consumer_drop,
    priority_order,
    unroutable,
    direct_exchange,
    fanout_exchange,
    topic_exchange,
    headers_exchange,
    declare_and_bind_errors,
);

/// The case publishes `expiring` then `silent` (both 300 ms) and consumes as soon
/// as the first dead letter arrives; on RabbitMQ `silent` expires a publish round
/// trip later, so under load it is sometimes still there. Publishing `silent`
/// first would make the case deterministic (it is in `bus::tests`, not ours).
/// `expired_message_becomes_a_dead_letter` covers the behaviour meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_dead_letter() {
    // Its own dead-letter queue, so no other test's bus competes for the letters.
    let dead_letter_queue = unique("contract-dlx");
    let Some(bus) = bus_with(&unique("conn"), Some(&dead_letter_queue)).await else {
        return;
    };
    let bus: SharedBus = Arc::new(bus);
    let mut dead_letters = bus.take_dead_letters().expect("first take");
    assert!(bus.take_dead_letters().is_none());
    let prefix = contract::new_prefix();
    contract::ttl_dead_letter(&bus, &prefix, &mut dead_letters).await;
    drop(bus);
    clean_up(&prefix).await;
    delete_queue(&dead_letter_queue).await;
}

/// All cases on one bus, one after the other (`ttl_dead_letter` among them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_all_on_one_bus() {
    let dead_letter_queue = unique("contract-dlx");
    let Some(bus) = bus_with(&unique("conn"), Some(&dead_letter_queue)).await else {
        return;
    };
    let bus: SharedBus = Arc::new(bus);
    let mut dead_letters = bus.take_dead_letters().expect("first take");
    let prefix = contract::new_prefix();
    contract::run_all(&bus, &prefix, &mut dead_letters).await;
    drop(bus);
    clean_up(&prefix).await;
    delete_queue(&dead_letter_queue).await;
}

/// The suite's durable queues and exchanges outlive it on a broker.
async fn clean_up(prefix: &str) {
    for queue in ["durable", "shared", "redeliver", "priority", "ttl"] {
        delete_queue(&format!("{prefix}-{queue}")).await;
    }
    for exchange in ["direct", "fanout", "topic", "headers", "unbound", "kind"] {
        delete_exchange(&format!("{prefix}-{exchange}")).await;
    }
}
