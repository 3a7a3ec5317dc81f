//! The contract every [`SharedBus`] keeps: what a client can observe of queues and
//! exchanges, whichever bus is behind them. Each case is an `async fn` taking the bus
//! and a name prefix unique to the run, so the same suite runs on the embedded bus
//! (below) and on a real RabbitMQ (`bus::amqp`'s tests): names never collide with
//! an earlier run's durable queues, and waits are generous where a broker is slower
//! (expiry, deliveries over the network). Every case panics on a broken contract.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::embedded::{EmbeddedBus, EmbeddedLimits};
use super::*;

/// Longest wait for something that must happen.
pub(crate) const WAIT: Duration = Duration::from_secs(10);
/// How long nothing must happen to count as "nothing happens".
pub(crate) const QUIET: Duration = Duration::from_millis(300);

/// A prefix no earlier run used.
pub(crate) fn new_prefix() -> String {
    format!("contract-{:016x}", rand::random::<u64>())
}

fn temporary(name: String) -> QueueSpec {
    QueueSpec {
        name,
        kind: QueueKind::Temporary,
    }
}

fn named(name: String) -> QueueSpec {
    QueueSpec {
        name,
        kind: QueueKind::Named,
    }
}

fn message(target: Target, body: &str) -> OutgoingMessage {
    OutgoingMessage {
        target,
        body: Bytes::from(format!("{{\"n\":\"{body}\"}}")),
        correlation_id: body.to_owned(),
        reply_to: String::new(),
        priority: 0,
        expiration: Duration::from_secs(60),
        headers: Vec::new(),
    }
}

fn to_queue(queue: &str, body: &str) -> OutgoingMessage {
    message(Target::Queue(queue.to_owned()), body)
}

fn to_exchange(exchange: &str, routing_key: &str, body: &str) -> OutgoingMessage {
    message(
        Target::Exchange {
            name: exchange.to_owned(),
            routing_key: routing_key.to_owned(),
        },
        body,
    )
}

async fn publish(bus: &SharedBus, message: OutgoingMessage) {
    let what = format!("{:?}", message.target);
    let published = bus.publish(message).await;
    assert_eq!(published, Ok(Published::Routed), "publish to {what}");
}

/// The next delivery (panics after [`WAIT`]).
pub(crate) async fn next(consumer: &mut Consumer) -> Delivery {
    match tokio::time::timeout(WAIT, consumer.deliveries.recv()).await {
        Ok(Some(delivery)) => delivery,
        Ok(None) => panic!("consumer of {} closed", consumer.queue),
        Err(_) => panic!("no delivery on {} within {WAIT:?}", consumer.queue),
    }
}

/// Panics if a delivery arrives within [`QUIET`].
pub(crate) async fn quiet(consumer: &mut Consumer) {
    if let Ok(Some(delivery)) = tokio::time::timeout(QUIET, consumer.deliveries.recv()).await {
        panic!("unexpected delivery {delivery:?}");
    }
}

/// A named queue that exists with no consumer.
async fn idle_named_queue(bus: &SharedBus, name: &str) {
    let consumer = bus.consume(&named(name.to_owned()), 1).await;
    drop(consumer.expect("declare named queue"));
}

pub(crate) async fn temp_queue_round_trip(bus: &SharedBus, prefix: &str) {
    let name = format!("{prefix}-temp");
    let mut consumer = bus
        .consume(&temporary(name.clone()), 5)
        .await
        .expect("consume");
    assert_eq!(consumer.queue, name);
    let mut outgoing = to_queue(&name, "one");
    outgoing.reply_to = format!("{prefix}-reply");
    outgoing.priority = 2;
    outgoing.headers = vec![("traceparent".into(), "00-abc-def-01".into())];
    publish(bus, outgoing).await;
    let delivery = next(&mut consumer).await;
    assert_eq!(delivery.queue, name);
    assert_eq!(delivery.exchange, "");
    assert_eq!(delivery.correlation_id, "one");
    assert_eq!(delivery.reply_to, format!("{prefix}-reply"));
    assert_eq!(delivery.priority, 2);
    assert_eq!(delivery.body, Bytes::from_static(b"{\"n\":\"one\"}"));
    assert!(!delivery.redelivered);
    assert!(delivery
        .headers
        .iter()
        .any(|(k, v)| k == "traceparent" && v == "00-abc-def-01"));
    delivery.ack();
    quiet(&mut consumer).await;
    // The queue goes with its consumer (a broker deletes it a moment later).
    drop(consumer);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match bus.publish(to_queue(&name, "late")).await {
            Ok(Published::Unroutable) => break,
            Ok(Published::Routed) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!("temporary queue {name} still there after its consumer: {other:?}"),
        }
    }
}

pub(crate) async fn named_queue_survives_consumer(bus: &SharedBus, prefix: &str) {
    let name = format!("{prefix}-durable");
    idle_named_queue(bus, &name).await;
    for body in ["a", "b", "c"] {
        publish(bus, to_queue(&name, body)).await;
    }
    let mut consumer = bus
        .consume(&named(name.clone()), 10)
        .await
        .expect("consume");
    for body in ["a", "b", "c"] {
        let delivery = next(&mut consumer).await;
        assert_eq!(delivery.correlation_id, body);
        delivery.ack();
    }
    quiet(&mut consumer).await;
}

pub(crate) async fn round_robin(bus: &SharedBus, prefix: &str) {
    let name = format!("{prefix}-shared");
    let mut first = bus
        .consume(&named(name.clone()), 20)
        .await
        .expect("consume");
    let mut second = bus
        .consume(&named(name.clone()), 20)
        .await
        .expect("consume");
    for n in 0..10 {
        publish(bus, to_queue(&name, &n.to_string())).await;
    }
    let (mut got_first, mut got_second) = (0, 0);
    while got_first + got_second < 10 {
        tokio::select! {
            Some(delivery) = first.deliveries.recv() => { got_first += 1; delivery.ack(); }
            Some(delivery) = second.deliveries.recv() => { got_second += 1; delivery.ack(); }
            _ = tokio::time::sleep(WAIT) => panic!("only {} of 10 delivered", got_first + got_second),
        }
    }
    // Round-robin: both share the work (a broker may not alternate exactly).
    assert!(
        got_first >= 4 && got_second >= 4,
        "split {got_first}/{got_second}"
    );
}

pub(crate) async fn prefetch_credit(bus: &SharedBus, prefix: &str) {
    let name = format!("{prefix}-credit");
    let mut consumer = bus
        .consume(&temporary(name.clone()), 2)
        .await
        .expect("consume");
    for body in ["1", "2", "3"] {
        publish(bus, to_queue(&name, body)).await;
    }
    let one = next(&mut consumer).await;
    let two = next(&mut consumer).await;
    assert_eq!(
        (one.correlation_id.as_str(), two.correlation_id.as_str()),
        ("1", "2")
    );
    // Two unacknowledged: the third waits.
    quiet(&mut consumer).await;
    one.ack();
    let three = next(&mut consumer).await;
    assert_eq!(three.correlation_id, "3");
    two.ack();
    three.ack();
}

pub(crate) async fn redelivery_after_consumer_drop(bus: &SharedBus, prefix: &str) {
    let name = format!("{prefix}-redeliver");
    let mut leaving = bus.consume(&named(name.clone()), 1).await.expect("consume");
    publish(bus, to_queue(&name, "kept")).await;
    let held = next(&mut leaving).await;
    assert!(!held.redelivered);
    let mut staying = bus.consume(&named(name.clone()), 1).await.expect("consume");
    quiet(&mut staying).await;
    // The consumer goes away with a delivery it never acknowledged.
    drop(leaving);
    drop(held);
    let again = next(&mut staying).await;
    assert_eq!(again.correlation_id, "kept");
    assert!(again.redelivered);
    again.ack();
    quiet(&mut staying).await;
}

pub(crate) async fn priority_order(bus: &SharedBus, prefix: &str) {
    let name = format!("{prefix}-priority");
    idle_named_queue(bus, &name).await;
    for n in 0..20 {
        publish(bus, to_queue(&name, &format!("low{n}"))).await;
    }
    let mut urgent = to_queue(&name, "urgent");
    urgent.priority = MAX_PRIORITY;
    publish(bus, urgent).await;
    let mut consumer = bus.consume(&named(name.clone()), 1).await.expect("consume");
    let first = next(&mut consumer).await;
    assert_eq!(first.correlation_id, "urgent");
    assert_eq!(first.priority, MAX_PRIORITY);
    first.ack();
    for n in 0..3 {
        let delivery = next(&mut consumer).await;
        assert_eq!(delivery.correlation_id, format!("low{n}"));
        delivery.ack();
    }
}

/// `dead_letters` is the bus's [`Bus::take_dead_letters`] receiver; letters of other
/// runs or nodes are skipped.
pub(crate) async fn ttl_dead_letter(
    bus: &SharedBus,
    prefix: &str,
    dead_letters: &mut mpsc::Receiver<DeadLetter>,
) {
    let name = format!("{prefix}-ttl");
    idle_named_queue(bus, &name).await;
    let reply_to = format!("{prefix}-caller");
    // `silent` first: a broker expires messages at the head of the queue, so once the
    // letter of `expiring` arrives, `silent` is gone too.
    let mut silent = to_queue(&name, &format!("{prefix}-silent"));
    silent.expiration = Duration::from_millis(300);
    publish(bus, silent).await;
    let mut wants_reply = to_queue(&name, &format!("{prefix}-expiring"));
    wants_reply.reply_to = reply_to.clone();
    wants_reply.expiration = Duration::from_millis(300);
    let body = wants_reply.body.clone();
    publish(bus, wants_reply).await;
    let mut keeps = to_queue(&name, &format!("{prefix}-keeps"));
    keeps.reply_to = reply_to.clone();
    publish(bus, keeps).await;

    let letter = wait_dead_letter(dead_letters, prefix).await;
    assert_eq!(
        letter,
        DeadLetter {
            queue: name.clone(),
            correlation_id: format!("{prefix}-expiring"),
            reply_to,
            body,
        }
    );
    // Only the unexpired message is left, and the silent one left no letter.
    let mut consumer = bus.consume(&named(name), 5).await.expect("consume");
    let left = next(&mut consumer).await;
    assert_eq!(left.correlation_id, format!("{prefix}-keeps"));
    left.ack();
    quiet(&mut consumer).await;
    while let Ok(letter) = dead_letters.try_recv() {
        assert!(!letter.correlation_id.starts_with(prefix), "{letter:?}");
    }
}

async fn wait_dead_letter(
    dead_letters: &mut mpsc::Receiver<DeadLetter>,
    prefix: &str,
) -> DeadLetter {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, dead_letters.recv()).await {
            Ok(Some(letter)) if letter.correlation_id.starts_with(prefix) => return letter,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("dead-letter channel closed"),
            Err(_) => panic!("no dead letter within {WAIT:?}"),
        }
    }
}

pub(crate) async fn unroutable(bus: &SharedBus, prefix: &str) {
    let missing = bus
        .publish(to_queue(&format!("{prefix}-nobody"), "x"))
        .await;
    assert_eq!(missing, Ok(Published::Unroutable));
    let exchange = format!("{prefix}-unbound");
    bus.declare_exchange(&exchange, ExchangeKind::Fanout)
        .await
        .expect("declare");
    let unbound = bus.publish(to_exchange(&exchange, "", "x")).await;
    assert_eq!(unbound, Ok(Published::Unroutable));
    let unknown = format!("{prefix}-no-exchange");
    let result = bus.publish(to_exchange(&unknown, "", "x")).await;
    assert_eq!(result, Err(BusError::UnknownExchange(unknown)));
}

/// Two temporary queues `a` and `b` bound to a new exchange of `kind` with the keys.
async fn exchange_with_queues(
    bus: &SharedBus,
    prefix: &str,
    kind: ExchangeKind,
    keys: (&str, &str),
) -> (String, Consumer, Consumer) {
    let exchange = format!("{prefix}-{}", kind.as_str());
    bus.declare_exchange(&exchange, kind)
        .await
        .expect("declare");
    let mut consumers = Vec::new();
    for (side, key) in [("a", keys.0), ("b", keys.1)] {
        let queue = format!("{exchange}-{side}");
        let consumer = bus
            .consume(&temporary(queue.clone()), 10)
            .await
            .expect("consume");
        bus.bind(&queue, &exchange, key).await.expect("bind");
        consumers.push(consumer);
    }
    let b = consumers.pop().expect("two consumers");
    let a = consumers.pop().expect("two consumers");
    (exchange, a, b)
}

async fn expect_body(consumer: &mut Consumer, exchange: &str, routing_key: &str, body: &str) {
    let delivery = next(consumer).await;
    assert_eq!(delivery.correlation_id, body, "on {}", consumer.queue);
    assert_eq!(delivery.exchange, exchange);
    assert_eq!(delivery.routing_key, routing_key);
    assert_eq!(delivery.queue, consumer.queue);
    delivery.ack();
}

pub(crate) async fn direct_exchange(bus: &SharedBus, prefix: &str) {
    let (exchange, mut a, mut b) =
        exchange_with_queues(bus, prefix, ExchangeKind::Direct, ("red", "blue")).await;
    publish(bus, to_exchange(&exchange, "red", "r1")).await;
    publish(bus, to_exchange(&exchange, "blue", "b1")).await;
    let none = bus.publish(to_exchange(&exchange, "green", "g1")).await;
    assert_eq!(none, Ok(Published::Unroutable));
    expect_body(&mut a, &exchange, "red", "r1").await;
    expect_body(&mut b, &exchange, "blue", "b1").await;
    quiet(&mut a).await;
    quiet(&mut b).await;
}

pub(crate) async fn fanout_exchange(bus: &SharedBus, prefix: &str) {
    let (exchange, mut a, mut b) =
        exchange_with_queues(bus, prefix, ExchangeKind::Fanout, ("ignored", "")).await;
    publish(bus, to_exchange(&exchange, "any.key", "all")).await;
    expect_body(&mut a, &exchange, "any.key", "all").await;
    expect_body(&mut b, &exchange, "any.key", "all").await;
    quiet(&mut a).await;
    quiet(&mut b).await;
}

pub(crate) async fn topic_exchange(bus: &SharedBus, prefix: &str) {
    let (exchange, mut a, mut b) =
        exchange_with_queues(bus, prefix, ExchangeKind::Topic, ("stock.*", "stock.#")).await;
    publish(bus, to_exchange(&exchange, "stock.nyse", "one-word")).await;
    publish(bus, to_exchange(&exchange, "stock.nyse.ibm", "two-words")).await;
    publish(bus, to_exchange(&exchange, "stock", "no-word")).await;
    let none = bus
        .publish(to_exchange(&exchange, "bond.nyse", "bond"))
        .await;
    assert_eq!(none, Ok(Published::Unroutable));
    expect_body(&mut a, &exchange, "stock.nyse", "one-word").await;
    quiet(&mut a).await;
    expect_body(&mut b, &exchange, "stock.nyse", "one-word").await;
    expect_body(&mut b, &exchange, "stock.nyse.ibm", "two-words").await;
    expect_body(&mut b, &exchange, "stock", "no-word").await;
    quiet(&mut b).await;
}

pub(crate) async fn headers_exchange(bus: &SharedBus, prefix: &str) {
    // Bindings carry no arguments: x-match all over nothing matches every message.
    let (exchange, mut a, mut b) =
        exchange_with_queues(bus, prefix, ExchangeKind::Headers, ("", "whatever")).await;
    let mut outgoing = to_exchange(&exchange, "key", "h1");
    outgoing.headers = vec![("format".into(), "pdf".into())];
    publish(bus, outgoing).await;
    publish(bus, to_exchange(&exchange, "", "h2")).await;
    expect_body(&mut a, &exchange, "key", "h1").await;
    expect_body(&mut a, &exchange, "", "h2").await;
    expect_body(&mut b, &exchange, "key", "h1").await;
    expect_body(&mut b, &exchange, "", "h2").await;
}

pub(crate) async fn declare_and_bind_errors(bus: &SharedBus, prefix: &str) {
    let exchange = format!("{prefix}-kind");
    bus.declare_exchange(&exchange, ExchangeKind::Direct)
        .await
        .expect("declare");
    bus.declare_exchange(&exchange, ExchangeKind::Direct)
        .await
        .expect("declaring again is idempotent");
    let mismatch = bus.declare_exchange(&exchange, ExchangeKind::Fanout).await;
    assert_eq!(
        mismatch,
        Err(BusError::ExchangeKindMismatch {
            name: exchange.clone(),
            existing: "direct".into(),
        })
    );
    let queue = format!("{prefix}-binder");
    let _consumer = bus
        .consume(&temporary(queue.clone()), 1)
        .await
        .expect("consume");
    let missing_queue = format!("{prefix}-no-queue");
    let result = bus.bind(&missing_queue, &exchange, "k").await;
    assert_eq!(result, Err(BusError::UnknownQueue(missing_queue)));
    let missing_exchange = format!("{prefix}-no-exchange");
    let result = bus.bind(&queue, &missing_exchange, "k").await;
    assert_eq!(result, Err(BusError::UnknownExchange(missing_exchange)));
}

/// The whole suite; `dead_letters` as for [`ttl_dead_letter`].
pub(crate) async fn run_all(
    bus: &SharedBus,
    prefix: &str,
    dead_letters: &mut mpsc::Receiver<DeadLetter>,
) {
    temp_queue_round_trip(bus, prefix).await;
    named_queue_survives_consumer(bus, prefix).await;
    round_robin(bus, prefix).await;
    prefetch_credit(bus, prefix).await;
    redelivery_after_consumer_drop(bus, prefix).await;
    priority_order(bus, prefix).await;
    ttl_dead_letter(bus, prefix, dead_letters).await;
    unroutable(bus, prefix).await;
    direct_exchange(bus, prefix).await;
    fanout_exchange(bus, prefix).await;
    topic_exchange(bus, prefix).await;
    headers_exchange(bus, prefix).await;
    declare_and_bind_errors(bus, prefix).await;
}

fn embedded() -> SharedBus {
    std::sync::Arc::new(EmbeddedBus::new(EmbeddedLimits::default()))
}

macro_rules! on_embedded {
    ($($case:ident),* $(,)?) => {
        mod embedded_contract {
            use super::*;
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(&embedded(), &new_prefix()).await;
                }
            )*
        }
    };
}

on_embedded!(
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

#[tokio::test]
async fn embedded_contract_ttl_dead_letter() {
    let bus = embedded();
    let mut dead_letters = bus.take_dead_letters().expect("first take");
    assert!(bus.take_dead_letters().is_none());
    ttl_dead_letter(&bus, &new_prefix(), &mut dead_letters).await;
}

/// All cases on one bus, as a broker runs them (names must not collide).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_contract_run_all_on_one_bus() {
    let bus = embedded();
    let mut dead_letters = bus.take_dead_letters().expect("first take");
    run_all(&bus, &new_prefix(), &mut dead_letters).await;
}
