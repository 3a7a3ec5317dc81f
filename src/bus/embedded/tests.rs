//! Unit tests of the embedded bus. Its dispatch is synchronous (a publish or an ack
//! has put the delivery in the consumer's channel when it returns), so most checks
//! use `try_recv` and need no timing.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc::error::TryRecvError;

use super::*;
use crate::bus::{Delivery, Settlement};

mod expiry;
mod stress;

fn bus() -> EmbeddedBus {
    EmbeddedBus::new(EmbeddedLimits::default())
}

fn limited(max_bytes: usize, max_queue_length: usize, max_queues: usize) -> EmbeddedBus {
    EmbeddedBus::new(EmbeddedLimits {
        max_bytes,
        max_queue_length,
        max_queues,
    })
}

fn spec(name: &str, kind: QueueKind) -> QueueSpec {
    QueueSpec {
        name: name.to_owned(),
        kind,
    }
}

fn message(target: Target, id: &str) -> OutgoingMessage {
    OutgoingMessage {
        target,
        body: Bytes::from(id.to_owned()),
        correlation_id: id.to_owned(),
        reply_to: String::new(),
        priority: 0,
        expiration: Duration::from_secs(60),
        headers: Vec::new(),
    }
}

fn to_queue(queue: &str, id: &str) -> OutgoingMessage {
    message(Target::Queue(queue.to_owned()), id)
}

fn to_exchange(exchange: &str, key: &str, id: &str) -> OutgoingMessage {
    message(
        Target::Exchange {
            name: exchange.to_owned(),
            routing_key: key.to_owned(),
        },
        id,
    )
}

async fn send(bus: &EmbeddedBus, message: OutgoingMessage) {
    assert_eq!(bus.publish(message).await, Ok(Published::Routed));
}

async fn consume(bus: &EmbeddedBus, name: &str, kind: QueueKind, prefetch: u16) -> Consumer {
    bus.consume(&spec(name, kind), prefetch)
        .await
        .expect("consume")
}

/// The delivery already in the channel (dispatch is synchronous).
fn got(consumer: &mut Consumer) -> Delivery {
    match consumer.deliveries.try_recv() {
        Ok(delivery) => delivery,
        Err(error) => panic!("no delivery on {}: {error:?}", consumer.queue),
    }
}

fn nothing(consumer: &mut Consumer) {
    if let Ok(delivery) = consumer.deliveries.try_recv() {
        panic!("unexpected {delivery:?}");
    }
}

fn ids(consumer: &mut Consumer) -> Vec<String> {
    let mut ids = Vec::new();
    while let Ok(delivery) = consumer.deliveries.try_recv() {
        ids.push(delivery.correlation_id.clone());
        delivery.ack();
    }
    ids
}

fn queue(bus: &EmbeddedBus, name: &str) -> Arc<Queue> {
    bus.registry
        .queues
        .get(name)
        .map(|entry| entry.value().clone())
        .expect("queue exists")
}

#[tokio::test]
async fn delivery_fields_and_ack() {
    let bus = bus();
    let mut consumer = consume(&bus, "q", QueueKind::Temporary, 5).await;
    let mut outgoing = to_queue("q", "m1");
    outgoing.reply_to = "caller".into();
    outgoing.priority = 9;
    outgoing.headers = vec![("h".into(), "v".into())];
    send(&bus, outgoing).await;
    let delivery = got(&mut consumer);
    assert_eq!(delivery.queue, "q");
    assert_eq!(delivery.exchange, "");
    assert_eq!(delivery.routing_key, "q");
    assert_eq!(delivery.correlation_id, "m1");
    assert_eq!(delivery.reply_to, "caller");
    assert_eq!(delivery.priority, MAX_PRIORITY, "capped");
    assert_eq!(delivery.body, Bytes::from_static(b"m1"));
    assert!(!delivery.redelivered);
    assert_eq!(delivery.headers, vec![("h".to_owned(), "v".to_owned())]);
    assert_eq!(bus.held_bytes(), 2, "unacknowledged bytes are held");
    delivery.ack();
    assert_eq!(bus.held_bytes(), 0);
    nothing(&mut consumer);
    assert_eq!(bus.kind(), "embedded");
    let health = bus.health();
    assert!(health.up && health.kind == "embedded" && health.last_error.is_none());
}

#[tokio::test]
async fn default_exchange_routes_by_queue_name() {
    let bus = bus();
    let mut consumer = consume(&bus, "q", QueueKind::Named, 5).await;
    send(&bus, to_exchange("", "q", "m")).await;
    let delivery = got(&mut consumer);
    assert_eq!(
        (delivery.exchange.as_str(), delivery.routing_key.as_str()),
        ("", "q")
    );
    let missing = bus.publish(to_exchange("", "other", "m")).await;
    assert_eq!(missing, Ok(Published::Unroutable));
    assert!(matches!(
        bus.declare_exchange("", ExchangeKind::Direct).await,
        Err(BusError::Refused(_))
    ));
}

#[tokio::test]
async fn round_robin_in_turn() {
    let bus = bus();
    let mut consumers = Vec::new();
    for _ in 0..3 {
        consumers.push(consume(&bus, "work", QueueKind::Named, 10).await);
    }
    for n in 0..9 {
        send(&bus, to_queue("work", &n.to_string())).await;
    }
    let got: Vec<Vec<String>> = consumers.iter_mut().map(ids).collect();
    assert_eq!(got, [["0", "3", "6"], ["1", "4", "7"], ["2", "5", "8"]]);
}

#[tokio::test]
async fn round_robin_skips_consumers_without_credit() {
    let bus = bus();
    let mut small = consume(&bus, "work", QueueKind::Named, 1).await;
    let mut large = consume(&bus, "work", QueueKind::Named, 10).await;
    for n in 0..4 {
        send(&bus, to_queue("work", &n.to_string())).await;
    }
    let held = got(&mut small);
    nothing(&mut small);
    assert_eq!(held.correlation_id, "0");
    assert_eq!(ids(&mut large), ["1", "2", "3"]);
}

#[tokio::test]
async fn prefetch_credit_blocks_until_ack() {
    let bus = bus();
    let mut consumer = consume(&bus, "q", QueueKind::Temporary, 2).await;
    for n in 0..5 {
        send(&bus, to_queue("q", &n.to_string())).await;
    }
    let first = got(&mut consumer);
    let mut second = got(&mut consumer);
    nothing(&mut consumer);
    assert_eq!(queue(&bus, "q").ready_len(), 3);
    first.ack();
    let third = got(&mut consumer);
    assert_eq!(third.correlation_id, "2");
    nothing(&mut consumer);
    // Acknowledging through the settlement alone frees credit too.
    second.take_settlement().ack();
    drop(second);
    let fourth = got(&mut consumer);
    assert_eq!(fourth.correlation_id, "3");
    nothing(&mut consumer);
    assert_eq!(queue(&bus, "q").ready_len(), 1);
    // Dropped unacknowledged, the first goes back before the last.
    drop(third);
    assert_eq!(got(&mut consumer).correlation_id, "2");
}

#[tokio::test]
async fn prefetch_zero_is_unbounded() {
    let bus = bus();
    let mut consumer = consume(&bus, "q", QueueKind::Temporary, 0).await;
    for n in 0..300 {
        send(&bus, to_queue("q", &n.to_string())).await;
    }
    assert_eq!(ids(&mut consumer).len(), 300);
}

#[tokio::test]
async fn requeue_goes_first_and_is_redelivered() {
    let bus = bus();
    let mut consumer = consume(&bus, "q", QueueKind::Temporary, 1).await;
    for n in ["a", "b"] {
        send(&bus, to_queue("q", n)).await;
    }
    let a = got(&mut consumer);
    assert!(!a.redelivered);
    a.requeue();
    let a = got(&mut consumer);
    assert_eq!(a.correlation_id, "a");
    assert!(a.redelivered);
    drop(a);
    let a = got(&mut consumer);
    assert_eq!((a.correlation_id.as_str(), a.redelivered), ("a", true));
    let settlement: Settlement = {
        let mut a = a;
        a.take_settlement()
    };
    nothing(&mut consumer);
    drop(settlement);
    let a = got(&mut consumer);
    assert_eq!((a.correlation_id.as_str(), a.redelivered), ("a", true));
    a.ack();
    let b = got(&mut consumer);
    assert_eq!((b.correlation_id.as_str(), b.redelivered), ("b", false));
}

#[tokio::test]
async fn dropped_consumer_returns_buffered_and_unacked_in_order() {
    let bus = bus();
    let mut leaving = consume(&bus, "q", QueueKind::Named, 5).await;
    for n in 0..4 {
        send(&bus, to_queue("q", &n.to_string())).await;
    }
    // 0 is received and held; 1..3 wait in the channel.
    let held = got(&mut leaving);
    drop(leaving);
    assert_eq!(queue(&bus, "q").ready_len(), 3);
    drop(held);
    let mut staying = consume(&bus, "q", QueueKind::Named, 10).await;
    let mut seen = Vec::new();
    while let Ok(delivery) = staying.deliveries.try_recv() {
        assert!(delivery.redelivered);
        seen.push(delivery.correlation_id.clone());
        delivery.ack();
    }
    assert_eq!(seen, ["0", "1", "2", "3"], "original order kept");
}

#[tokio::test]
async fn requeue_never_goes_to_a_cancelled_consumer() {
    let bus = bus();
    let Consumer {
        deliveries: mut cancelled,
        guard,
        ..
    } = consume(&bus, "q", QueueKind::Named, 1).await;
    send(&bus, to_queue("q", "m")).await;
    let held = cancelled.try_recv().expect("delivered");
    let mut other = consume(&bus, "q", QueueKind::Named, 1).await;
    drop(guard);
    held.requeue();
    assert_eq!(cancelled.try_recv().err(), Some(TryRecvError::Disconnected));
    let again = got(&mut other);
    assert_eq!(
        (again.correlation_id.as_str(), again.redelivered),
        ("m", true)
    );
}

#[tokio::test]
async fn ack_after_cancel_is_final() {
    let bus = bus();
    let mut consumer = consume(&bus, "q", QueueKind::Named, 1).await;
    send(&bus, to_queue("q", "m")).await;
    let held = got(&mut consumer);
    drop(consumer);
    held.ack();
    assert_eq!(queue(&bus, "q").ready_len(), 0);
    assert_eq!(bus.held_bytes(), 0);
}

#[tokio::test]
async fn highest_priority_first_fifo_within() {
    let bus = bus();
    drop(consume(&bus, "q", QueueKind::Named, 1).await);
    for n in 0..100 {
        send(&bus, to_queue("q", &format!("p0-{n}"))).await;
    }
    let mut urgent = to_queue("q", "p3");
    urgent.priority = 3;
    send(&bus, urgent).await;
    let mut consumer = consume(&bus, "q", QueueKind::Named, 1).await;
    let first = got(&mut consumer);
    assert_eq!((first.correlation_id.as_str(), first.priority), ("p3", 3));
    first.ack();
    assert_eq!(got(&mut consumer).correlation_id, "p0-0");
}

#[tokio::test]
async fn mixed_priorities_in_order() {
    let bus = bus();
    drop(consume(&bus, "q", QueueKind::Named, 1).await);
    for (n, priority) in [0u8, 2, 1, 3, 2, 0, 7, 1].into_iter().enumerate() {
        let mut outgoing = to_queue("q", &format!("{priority}-{n}"));
        outgoing.priority = priority;
        send(&bus, outgoing).await;
    }
    let mut consumer = consume(&bus, "q", QueueKind::Named, 100).await;
    assert_eq!(
        ids(&mut consumer),
        ["3-3", "7-6", "2-1", "2-4", "1-2", "1-7", "0-0", "0-5"]
    );
}

#[tokio::test]
async fn temporary_queue_goes_with_its_consumer() {
    let bus = bus();
    bus.declare_exchange("fan", ExchangeKind::Fanout)
        .await
        .expect("declare");
    let mut consumer = consume(&bus, "tmp", QueueKind::Temporary, 1).await;
    bus.bind("tmp", "fan", "").await.expect("bind");
    let mut ttl = to_queue("tmp", "a");
    ttl.expiration = Duration::from_secs(30);
    send(&bus, ttl).await;
    send(&bus, to_exchange("fan", "", "b")).await;
    let held = got(&mut consumer);
    assert_eq!(bus.queue_count(), 1);
    assert_eq!(bus.shared.timer.len(), 1);
    drop(consumer);
    assert_eq!(bus.queue_count(), 0);
    assert_eq!(bus.shared.timer.len(), 0, "its timer entry goes too");
    assert_eq!(
        bus.publish(to_queue("tmp", "c")).await,
        Ok(Published::Unroutable)
    );
    assert_eq!(
        bus.publish(to_exchange("fan", "", "d")).await,
        Ok(Published::Unroutable)
    );
    drop(held);
    assert_eq!(bus.held_bytes(), 0, "its messages are discarded");
    // The name is free again, for either kind.
    drop(consume(&bus, "tmp", QueueKind::Named, 1).await);
    assert_eq!(
        bus.publish(to_exchange("fan", "", "e")).await,
        Ok(Published::Unroutable)
    );
}

#[tokio::test]
async fn queue_locked_both_ways() {
    let bus = bus();
    let temp = consume(&bus, "t", QueueKind::Temporary, 1).await;
    for kind in [QueueKind::Temporary, QueueKind::Named] {
        let result = bus.consume(&spec("t", kind), 1).await;
        assert_eq!(result.err(), Some(BusError::QueueLocked("t".into())));
    }
    let _named = consume(&bus, "n", QueueKind::Named, 1).await;
    let result = bus.consume(&spec("n", QueueKind::Temporary), 1).await;
    assert_eq!(result.err(), Some(BusError::QueueLocked("n".into())));
    drop(temp);
    drop(consume(&bus, "t", QueueKind::Named, 1).await);
}

#[tokio::test]
async fn exchanges_route_by_kind() {
    let bus = bus();
    let kinds = [
        ("direct", ExchangeKind::Direct),
        ("fanout", ExchangeKind::Fanout),
        ("topic", ExchangeKind::Topic),
        ("headers", ExchangeKind::Headers),
    ];
    for (name, kind) in kinds {
        bus.declare_exchange(name, kind).await.expect("declare");
    }
    let mut a = consume(&bus, "a", QueueKind::Temporary, 50).await;
    let mut b = consume(&bus, "b", QueueKind::Temporary, 50).await;
    for (queue, exchange, key) in [
        ("a", "direct", "k1"),
        ("b", "direct", "k2"),
        ("a", "fanout", "x"),
        ("b", "fanout", "y"),
        ("a", "topic", "*.red"),
        ("b", "topic", "car.#"),
        ("a", "headers", ""),
    ] {
        bus.bind(queue, exchange, key).await.expect("bind");
    }
    for (exchange, key, id) in [
        ("direct", "k1", "d1"),
        ("direct", "k2", "d2"),
        ("fanout", "zzz", "f"),
        ("topic", "car.red", "t-both"),
        ("topic", "bike.red", "t-a"),
        ("topic", "car", "t-b"),
        ("headers", "any", "h"),
    ] {
        send(&bus, to_exchange(exchange, key, id)).await;
    }
    for (exchange, key) in [("direct", "k3"), ("topic", "bike.blue"), ("topic", "")] {
        let result = bus.publish(to_exchange(exchange, key, "none")).await;
        assert_eq!(result, Ok(Published::Unroutable), "{exchange} {key}");
    }
    let fanned = got(&mut a);
    assert_eq!(
        (
            fanned.exchange.as_str(),
            fanned.routing_key.as_str(),
            fanned.correlation_id.as_str()
        ),
        ("direct", "k1", "d1")
    );
    fanned.ack();
    assert_eq!(ids(&mut a), ["f", "t-both", "t-a", "h"]);
    assert_eq!(ids(&mut b), ["d2", "f", "t-both", "t-b"]);
}

#[tokio::test]
async fn one_copy_per_queue_and_binding_errors() {
    let bus = bus();
    bus.declare_exchange("t", ExchangeKind::Topic)
        .await
        .expect("declare");
    bus.declare_exchange("t", ExchangeKind::Topic)
        .await
        .expect("idempotent");
    assert_eq!(
        bus.declare_exchange("t", ExchangeKind::Headers).await,
        Err(BusError::ExchangeKindMismatch {
            name: "t".into(),
            existing: "topic".into()
        })
    );
    let mut q = consume(&bus, "q", QueueKind::Named, 10).await;
    for key in ["a.*", "#", "a.*"] {
        bus.bind("q", "t", key).await.expect("bind");
    }
    send(&bus, to_exchange("t", "a.b", "once")).await;
    assert_eq!(ids(&mut q), ["once"]);
    assert_eq!(
        bus.bind("nope", "t", "").await,
        Err(BusError::UnknownQueue("nope".into()))
    );
    assert_eq!(
        bus.bind("q", "nope", "").await,
        Err(BusError::UnknownExchange("nope".into()))
    );
    assert_eq!(
        bus.publish(to_exchange("nope", "", "x")).await,
        Err(BusError::UnknownExchange("nope".into()))
    );
    let bindings = bus
        .registry
        .exchanges
        .get("t")
        .map(|e| e.bindings.read().map(|b| b.len()).unwrap_or(0));
    assert_eq!(bindings, Some(2), "duplicate binding is a no-op");
}

#[tokio::test]
async fn full_queue_is_refused_all_or_nothing() {
    let bus = limited(1 << 20, 2, 100);
    bus.declare_exchange("fan", ExchangeKind::Fanout)
        .await
        .expect("declare");
    drop(consume(&bus, "full", QueueKind::Named, 1).await);
    let mut empty = consume(&bus, "empty", QueueKind::Named, 10).await;
    bus.bind("full", "fan", "").await.expect("bind");
    bus.bind("empty", "fan", "").await.expect("bind");
    send(&bus, to_queue("full", "1")).await;
    send(&bus, to_queue("full", "2")).await;
    let refused = bus.publish(to_queue("full", "3")).await;
    match refused {
        Err(BusError::Refused(text)) => assert!(text.starts_with("queue full is full"), "{text}"),
        other => panic!("{other:?}"),
    }
    let refused = bus.publish(to_exchange("fan", "", "4")).await;
    assert!(matches!(refused, Err(BusError::Refused(_))), "{refused:?}");
    nothing(&mut empty);
    assert_eq!(bus.held_bytes(), 2);
    // Room again once a message leaves.
    let mut drain = consume(&bus, "full", QueueKind::Named, 1).await;
    got(&mut drain).ack();
    send(&bus, to_exchange("fan", "", "5")).await;
    assert_eq!(ids(&mut empty), ["5"]);
}

#[tokio::test]
async fn byte_limit_counts_held_messages() {
    let bus = limited(10, 100, 100);
    let mut consumer = consume(&bus, "q", QueueKind::Temporary, 5).await;
    send(&bus, to_queue("q", "123456")).await;
    let held = got(&mut consumer);
    match bus.publish(to_queue("q", "abcdef")).await {
        Err(BusError::Refused(text)) => assert!(text.starts_with("queue q is full"), "{text}"),
        other => panic!("{other:?}"),
    }
    nothing(&mut consumer);
    assert_eq!(bus.held_bytes(), 6);
    held.ack();
    send(&bus, to_queue("q", "abcdef")).await;
    assert_eq!(got(&mut consumer).correlation_id, "abcdef");
}

#[tokio::test]
async fn queue_count_limit() {
    let bus = limited(1 << 20, 100, 2);
    let first = consume(&bus, "a", QueueKind::Temporary, 1).await;
    let _second = consume(&bus, "b", QueueKind::Named, 1).await;
    let third = bus.consume(&spec("c", QueueKind::Temporary), 1).await;
    assert!(matches!(third, Err(BusError::Refused(_))), "{third:?}");
    // Another consumer on an existing queue is no new queue.
    drop(consume(&bus, "b", QueueKind::Named, 1).await);
    drop(first);
    drop(consume(&bus, "c", QueueKind::Temporary, 1).await);
    assert_eq!(bus.queue_count(), 1);
}
