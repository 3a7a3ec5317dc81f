//! The AMQP bus against a real RabbitMQ (`AMQP_URL`, default the local broker).
//! Without a broker listening, each test prints a loud skip notice and passes; CI
//! always has one. Names are unique per run (durable queues outlive a run; the tests
//! delete what they create, best effort).

use std::time::{Duration, Instant};

use bytes::Bytes;
use lapin::options::{ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldArray, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties};

mod bench;
mod contract;
mod exchanges;
mod recovery;

use super::{dead_letters, redact_url, AmqpBus};
use crate::bus::{
    Bus, BusError, Delivery, ExchangeKind, OutgoingMessage, Published, QueueKind, QueueSpec, Target,
};

pub(super) const WAIT: Duration = Duration::from_secs(10);
pub(super) const QUIET: Duration = Duration::from_millis(500);

pub(super) fn url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// A name no earlier run used.
pub(super) fn unique(what: &str) -> String {
    format!(
        "opencore-test.{what}.{:012x}",
        rand::random::<u64>() & 0xffff_ffff_ffff
    )
}

/// `None` (after a loud notice) when no broker listens at `AMQP_URL`.
pub(super) async fn new_bus() -> Option<AmqpBus> {
    bus_with(&unique("conn"), None).await
}

pub(super) async fn bus_with(name: &str, dead_letter_queue: Option<&str>) -> Option<AmqpBus> {
    let url = url();
    let authority = url
        .split("://")
        .nth(1)
        .unwrap_or("")
        .split('/')
        .next()
        .unwrap_or("");
    let host_port = authority
        .rsplit('@')
        .next()
        .unwrap_or("127.0.0.1:5672")
        .to_string();
    let probe = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(&host_port),
    );
    if !matches!(probe.await, Ok(Ok(_))) {
        eprintln!("!!!!!!!! SKIPPED: no RabbitMQ listening at {host_port} (set AMQP_URL) !!!!!!!!");
        return None;
    }
    if let Some(queue) = dead_letter_queue {
        // Receives every dead letter of the broker: made to vanish a minute after
        // its last use even if the test panics before deleting it. (The bus then
        // finds it with other arguments and uses it as it is.)
        let (_connection, channel) = raw().await;
        let mut args = FieldTable::default();
        args.insert("x-expires".into(), AMQPValue::LongInt(60_000));
        let options = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .queue_declare(queue.into(), options, args)
            .await
            .expect("declare the test's dead-letter queue");
    }
    Some(
        AmqpBus::connect_with(&url, name, dead_letter_queue)
            .await
            .expect("connect to RabbitMQ"),
    )
}

/// A plain lapin connection, to set things up the way another program would.
pub(super) async fn raw() -> (Connection, Channel) {
    let connection = Connection::connect(&url(), ConnectionProperties::default())
        .await
        .expect("raw connect");
    let channel = connection.create_channel().await.expect("raw channel");
    (connection, channel)
}

pub(super) async fn delete_queue(name: &str) {
    let (_connection, channel) = raw().await;
    let _ = channel
        .queue_delete(name.into(), QueueDeleteOptions::default())
        .await;
}

pub(super) async fn delete_exchange(name: &str) {
    let (_connection, channel) = raw().await;
    let _ = channel
        .exchange_delete(name.into(), ExchangeDeleteOptions::default())
        .await;
}

pub(super) fn temporary(name: &str) -> QueueSpec {
    QueueSpec {
        name: name.to_string(),
        kind: QueueKind::Temporary,
    }
}

pub(super) fn named(name: &str) -> QueueSpec {
    QueueSpec {
        name: name.to_string(),
        kind: QueueKind::Named,
    }
}

pub(super) fn message(target: Target, body: &str) -> OutgoingMessage {
    OutgoingMessage {
        target,
        body: Bytes::from(format!("{{\"n\":\"{body}\"}}")),
        correlation_id: body.to_string(),
        reply_to: String::new(),
        priority: 0,
        expiration: Duration::from_secs(60),
        headers: Vec::new(),
    }
}

pub(super) fn to_queue(queue: &str, body: &str) -> OutgoingMessage {
    message(Target::Queue(queue.to_string()), body)
}

pub(super) fn to_exchange(exchange: &str, key: &str, body: &str) -> OutgoingMessage {
    message(
        Target::Exchange {
            name: exchange.to_string(),
            routing_key: key.to_string(),
        },
        body,
    )
}

pub(super) async fn next(consumer: &mut crate::bus::Consumer) -> Delivery {
    match tokio::time::timeout(WAIT, consumer.deliveries.recv()).await {
        Ok(Some(delivery)) => delivery,
        Ok(None) => panic!("consumer of {} ended", consumer.queue),
        Err(_) => panic!("nothing delivered from {} within {WAIT:?}", consumer.queue),
    }
}

/// The next delivery's correlation id, acknowledged (a dropped delivery would come
/// back).
pub(super) async fn acked(consumer: &mut crate::bus::Consumer) -> String {
    let delivery = next(consumer).await;
    let correlation_id = delivery.correlation_id.clone();
    delivery.ack();
    correlation_id
}

pub(super) async fn nothing(consumer: &mut crate::bus::Consumer) {
    if let Ok(Some(delivery)) = tokio::time::timeout(QUIET, consumer.deliveries.recv()).await {
        panic!("unexpected delivery {delivery:?}");
    }
}

pub(super) async fn publish(bus: &AmqpBus, message: OutgoingMessage) -> Published {
    bus.publish(message).await.expect("publish")
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_queue_round_trip_then_auto_delete() {
    let Some(bus) = new_bus().await else { return };
    assert_eq!(bus.kind(), "amqp");
    assert!(bus.health().up);
    let queue = unique("temp");
    let mut consumer = bus.consume(&temporary(&queue), 5).await.expect("consume");
    let mut outgoing = to_queue(&queue, "hello");
    outgoing.reply_to = "some-reply-queue".into();
    outgoing.priority = 2;
    outgoing.headers = vec![("traceparent".into(), "00-abc-def-01".into())];
    assert_eq!(publish(&bus, outgoing).await, Published::Routed);

    let delivery = next(&mut consumer).await;
    assert_eq!(delivery.queue, queue);
    assert_eq!(delivery.exchange, "");
    assert_eq!(delivery.routing_key, queue);
    assert_eq!(delivery.correlation_id, "hello");
    assert_eq!(delivery.reply_to, "some-reply-queue");
    assert_eq!(delivery.priority, 2);
    assert_eq!(&delivery.body[..], b"{\"n\":\"hello\"}");
    assert!(!delivery.redelivered);
    assert!(delivery
        .headers
        .contains(&("traceparent".into(), "00-abc-def-01".into())));
    delivery.ack();

    drop(consumer);
    let deadline = Instant::now() + WAIT;
    loop {
        if publish(&bus, to_queue(&queue, "late")).await == Published::Unroutable {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "temporary queue {queue} still exists after its consumer left"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_queue_outlives_its_consumer() {
    let Some(bus) = new_bus().await else { return };
    let queue = unique("named");
    drop(bus.consume(&named(&queue), 5).await.expect("consume"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        publish(&bus, to_queue(&queue, "kept")).await,
        Published::Routed
    );
    let mut consumer = bus.consume(&named(&queue), 5).await.expect("consume again");
    let delivery = next(&mut consumer).await;
    assert_eq!(delivery.correlation_id, "kept");
    delivery.ack();
    drop(consumer);
    delete_queue(&queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_queue_round_robin() {
    let Some(bus) = new_bus().await else { return };
    let queue = unique("rr");
    let mut a = bus.consume(&named(&queue), 10).await.expect("consume a");
    let mut b = bus.consume(&named(&queue), 10).await.expect("consume b");
    for i in 0..10 {
        assert_eq!(
            publish(&bus, to_queue(&queue, &format!("m{i}"))).await,
            Published::Routed
        );
    }
    let (mut from_a, mut from_b) = (0, 0);
    while from_a + from_b < 10 {
        tokio::select! {
            Some(d) = a.deliveries.recv() => { from_a += 1; d.ack(); }
            Some(d) = b.deliveries.recv() => { from_b += 1; d.ack(); }
            _ = tokio::time::sleep(WAIT) => panic!("only {from_a}+{from_b} of 10 delivered"),
        }
    }
    assert!(
        from_a >= 3 && from_b >= 3,
        "not round-robin: {from_a} / {from_b}"
    );
    drop((a, b));
    delete_queue(&queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetch_bounds_unacknowledged_deliveries() {
    let Some(bus) = new_bus().await else { return };
    let queue = unique("prefetch");
    let mut consumer = bus.consume(&named(&queue), 2).await.expect("consume");
    for i in 0..5 {
        publish(&bus, to_queue(&queue, &format!("m{i}"))).await;
    }
    let first = next(&mut consumer).await;
    let second = next(&mut consumer).await;
    nothing(&mut consumer).await;
    first.ack();
    let third = next(&mut consumer).await;
    assert_eq!(third.correlation_id, "m2");
    nothing(&mut consumer).await;
    drop((second, third, consumer));
    delete_queue(&queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_delivery_is_redelivered() {
    let Some(bus) = new_bus().await else { return };
    let queue = unique("requeue");
    let mut a = bus.consume(&named(&queue), 1).await.expect("consume a");
    publish(&bus, to_queue(&queue, "again")).await;
    let first = next(&mut a).await;
    assert!(!first.redelivered);
    drop(first); // unsettled: requeued
    let second = next(&mut a).await;
    assert_eq!(second.correlation_id, "again");
    assert!(second.redelivered);

    // Another consumer gets it once the first consumer leaves without acknowledging.
    let mut b = bus.consume(&named(&queue), 1).await.expect("consume b");
    nothing(&mut b).await;
    drop(a);
    drop(second);
    let third = next(&mut b).await;
    assert_eq!(third.correlation_id, "again");
    assert!(third.redelivered);
    third.ack();
    drop(b);
    delete_queue(&queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn higher_priority_is_delivered_first() {
    let Some(bus) = new_bus().await else { return };
    let queue = unique("priority");
    drop(bus.consume(&named(&queue), 1).await.expect("declare"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..100 {
        publish(&bus, to_queue(&queue, &format!("low{i}"))).await;
    }
    let mut urgent = to_queue(&queue, "urgent");
    urgent.priority = 3;
    publish(&bus, urgent).await;
    let mut consumer = bus.consume(&named(&queue), 1).await.expect("consume");
    let first = next(&mut consumer).await;
    assert_eq!(
        (first.correlation_id.as_str(), first.priority),
        ("urgent", 3)
    );
    first.ack();
    let second = next(&mut consumer).await;
    assert_eq!(second.correlation_id, "low0");
    second.ack();
    drop(consumer);
    delete_queue(&queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_message_becomes_a_dead_letter() {
    // Its own dead-letter queue: other tests' buses are not competing for it.
    let dead_letter_queue = unique("dlx");
    let Some(bus) = bus_with(&unique("conn"), Some(&dead_letter_queue)).await else {
        return;
    };
    let mut dead_letters = bus.take_dead_letters().expect("dead letters");
    assert!(bus.take_dead_letters().is_none(), "handed out twice");
    let queue = unique("ttl");
    drop(bus.consume(&named(&queue), 1).await.expect("declare"));
    let mut outgoing = to_queue(&queue, &unique("corr"));
    outgoing.expiration = Duration::from_millis(200);
    outgoing.reply_to = "reply-here".into();
    let correlation_id = outgoing.correlation_id.clone();
    assert_eq!(publish(&bus, outgoing).await, Published::Routed);

    // Every dead letter of the broker arrives here: skip the others.
    let deadline = Instant::now() + Duration::from_secs(20);
    let dead_letter = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, dead_letters.recv()).await {
            Ok(Some(d)) if d.correlation_id == correlation_id => break d,
            Ok(Some(_)) => continue,
            _ => panic!("no dead letter for {correlation_id}"),
        }
    };
    assert_eq!(dead_letter.queue, queue);
    assert_eq!(dead_letter.reply_to, "reply-here");
    assert_eq!(
        &dead_letter.body[..],
        format!("{{\"n\":\"{correlation_id}\"}}").as_bytes()
    );
    drop(bus);
    delete_queue(&queue).await;
    delete_queue(&dead_letter_queue).await;
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_declared_with_other_arguments_is_consumed_as_it_is() {
    let Some(bus) = new_bus().await else { return };
    let queue = unique("foreign");
    {
        // As the reference server declares client queues: durable, DLX, no priorities.
        let (_connection, channel) = raw().await;
        let mut args = FieldTable::default();
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString("openflow-dlx".into()),
        );
        let options = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .queue_declare(queue.as_str().into(), options, args)
            .await
            .expect("raw declare");
    }
    let mut consumer = bus
        .consume(&named(&queue), 5)
        .await
        .expect("consume foreign queue");
    assert_eq!(
        publish(&bus, to_queue(&queue, "foreign")).await,
        Published::Routed
    );
    let delivery = next(&mut consumer).await;
    assert_eq!(delivery.correlation_id, "foreign");
    delivery.ack();
    assert!(bus.health().up);
    drop(consumer);
    delete_queue(&queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_queue_names_are_locked() {
    let Some(bus) = new_bus().await else { return };
    let queue = unique("locked");
    let consumer = bus.consume(&temporary(&queue), 1).await.expect("consume");
    assert_eq!(
        bus.consume(&temporary(&queue), 1).await.err(),
        Some(BusError::QueueLocked(queue.clone()))
    );
    assert_eq!(
        bus.consume(&named(&queue), 1).await.err(),
        Some(BusError::QueueLocked(queue.clone()))
    );
    // Another node (connection) is kept out by the broker.
    let Some(other) = new_bus().await else { return };
    assert_eq!(
        other.consume(&named(&queue), 1).await.err(),
        Some(BusError::QueueLocked(queue.clone()))
    );
    assert!(other.health().up);
    drop(consumer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishes_get_their_own_confirms() {
    let Some(bus) = new_bus().await else { return };
    let bus = std::sync::Arc::new(bus);
    let queue = unique("pipeline");
    let mut consumer = bus
        .consume(&temporary(&queue), 1000)
        .await
        .expect("consume");
    let missing = unique("missing");
    let tasks: Vec<_> = (0..400)
        .map(|i| {
            let bus = bus.clone();
            let target = if i % 3 == 0 {
                missing.clone()
            } else {
                queue.clone()
            };
            tokio::spawn(async move { (i, bus.publish(to_queue(&target, &format!("p{i}"))).await) })
        })
        .collect();
    let mut routed = 0;
    for task in tasks {
        let (i, result) = task.await.expect("task");
        let expected = if i % 3 == 0 {
            Published::Unroutable
        } else {
            Published::Routed
        };
        assert_eq!(result, Ok(expected), "publish {i}");
        routed += usize::from(expected == Published::Routed);
    }
    for _ in 0..routed {
        next(&mut consumer).await.ack();
    }
    nothing(&mut consumer).await;
}
#[test]
fn urls_are_logged_without_password() {
    assert_eq!(
        redact_url("amqp://guest:secret@host:5672/%2f"),
        "amqp://guest:***@host:5672/%2f"
    );
    assert_eq!(redact_url("amqp://host"), "amqp://host");
    assert_eq!(redact_url("nonsense"), "<invalid url>");
    assert!(!redact_url("amqp://u:p@ss@h/v").contains("p@ss"));
}

#[test]
fn dead_letter_queue_comes_from_x_death() {
    let mut death = FieldTable::default();
    death.insert("queue".into(), AMQPValue::LongString("orders".into()));
    let mut headers = FieldTable::default();
    headers.insert(
        "x-death".into(),
        AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::FieldTable(death)])),
    );
    assert_eq!(
        dead_letters::original_queue(Some(&headers)),
        Some("orders".into())
    );
    assert_eq!(dead_letters::original_queue(None), None);
}
