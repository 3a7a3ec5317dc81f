//! The AMQP bus against a real RabbitMQ (`AMQP_URL`, default the local broker).
//! Without a broker listening, each test prints a loud skip notice and passes; CI
//! always has one. Names are unique per run (durable queues outlive a run; the tests
//! delete what they create, best effort).

use std::time::{Duration, Instant};

use bytes::Bytes;
use lapin::options::{ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldArray, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties};

use super::{dead_letters, redact_url, AmqpBus};
use crate::bus::{
    Bus, BusError, Delivery, ExchangeKind, OutgoingMessage, Published, QueueKind, QueueSpec, Target,
};

const WAIT: Duration = Duration::from_secs(10);
const QUIET: Duration = Duration::from_millis(500);

fn url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// A name no earlier run used.
fn unique(what: &str) -> String {
    format!(
        "opencore-test.{what}.{:012x}",
        rand::random::<u64>() & 0xffff_ffff_ffff
    )
}

/// `None` (after a loud notice) when no broker listens at `AMQP_URL`.
async fn new_bus() -> Option<AmqpBus> {
    bus_with(&unique("conn"), None).await
}

async fn bus_with(name: &str, dead_letter_queue: Option<&str>) -> Option<AmqpBus> {
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
    Some(
        AmqpBus::connect_with(&url, name, dead_letter_queue)
            .await
            .expect("connect to RabbitMQ"),
    )
}

/// A plain lapin connection, to set things up the way another program would.
async fn raw() -> (Connection, Channel) {
    let connection = Connection::connect(&url(), ConnectionProperties::default())
        .await
        .expect("raw connect");
    let channel = connection.create_channel().await.expect("raw channel");
    (connection, channel)
}

async fn delete_queue(name: &str) {
    let (_connection, channel) = raw().await;
    let _ = channel
        .queue_delete(name.into(), QueueDeleteOptions::default())
        .await;
}

async fn delete_exchange(name: &str) {
    let (_connection, channel) = raw().await;
    let _ = channel
        .exchange_delete(name.into(), ExchangeDeleteOptions::default())
        .await;
}

fn temporary(name: &str) -> QueueSpec {
    QueueSpec {
        name: name.to_string(),
        kind: QueueKind::Temporary,
    }
}

fn named(name: &str) -> QueueSpec {
    QueueSpec {
        name: name.to_string(),
        kind: QueueKind::Named,
    }
}

fn message(target: Target, body: &str) -> OutgoingMessage {
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

fn to_queue(queue: &str, body: &str) -> OutgoingMessage {
    message(Target::Queue(queue.to_string()), body)
}

fn to_exchange(exchange: &str, key: &str, body: &str) -> OutgoingMessage {
    message(
        Target::Exchange {
            name: exchange.to_string(),
            routing_key: key.to_string(),
        },
        body,
    )
}

async fn next(consumer: &mut crate::bus::Consumer) -> Delivery {
    match tokio::time::timeout(WAIT, consumer.deliveries.recv()).await {
        Ok(Some(delivery)) => delivery,
        Ok(None) => panic!("consumer of {} ended", consumer.queue),
        Err(_) => panic!("nothing delivered from {} within {WAIT:?}", consumer.queue),
    }
}

/// The next delivery's correlation id, acknowledged (a dropped delivery would come
/// back).
async fn acked(consumer: &mut crate::bus::Consumer) -> String {
    let delivery = next(consumer).await;
    let correlation_id = delivery.correlation_id.clone();
    delivery.ack();
    correlation_id
}

async fn nothing(consumer: &mut crate::bus::Consumer) {
    if let Ok(Some(delivery)) = tokio::time::timeout(QUIET, consumer.deliveries.recv()).await {
        panic!("unexpected delivery {delivery:?}");
    }
}

async fn publish(bus: &AmqpBus, message: OutgoingMessage) -> Published {
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
async fn unknown_exchange_leaves_publishing_intact() {
    let Some(bus) = new_bus().await else { return };
    let queue = unique("after404");
    let mut consumer = bus.consume(&temporary(&queue), 5).await.expect("consume");
    let missing = unique("no-exchange");
    assert_eq!(
        bus.publish(to_exchange(&missing, "", "x")).await,
        Err(BusError::UnknownExchange(missing.clone()))
    );
    assert_eq!(
        publish(&bus, to_queue(&queue, "fine")).await,
        Published::Routed
    );
    assert_eq!(acked(&mut consumer).await, "fine");
    assert_eq!(
        bus.bind(&queue, &missing, "").await,
        Err(BusError::UnknownExchange(missing))
    );
    assert!(bus.health().up);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_types_route_like_rabbitmq() {
    let Some(bus) = new_bus().await else { return };
    let kinds = [
        ExchangeKind::Direct,
        ExchangeKind::Fanout,
        ExchangeKind::Topic,
        ExchangeKind::Headers,
    ];
    let names: Vec<String> = kinds.iter().map(|k| unique(k.as_str())).collect();
    for (name, kind) in names.iter().zip(kinds) {
        bus.declare_exchange(name, kind)
            .await
            .expect("declare exchange");
    }
    let (direct, fanout, topic, headers) = (&names[0], &names[1], &names[2], &names[3]);
    let (q1, q2) = (unique("q1"), unique("q2"));
    let mut c1 = bus.consume(&temporary(&q1), 10).await.expect("consume q1");
    let mut c2 = bus.consume(&temporary(&q2), 10).await.expect("consume q2");

    bus.bind(&q1, direct, "a").await.expect("bind direct");
    assert_eq!(
        publish(&bus, to_exchange(direct, "a", "d1")).await,
        Published::Routed
    );
    assert_eq!(
        publish(&bus, to_exchange(direct, "b", "d2")).await,
        Published::Unroutable
    );
    let d = next(&mut c1).await;
    assert_eq!(
        (
            d.exchange.as_str(),
            d.routing_key.as_str(),
            d.correlation_id.as_str()
        ),
        (direct.as_str(), "a", "d1")
    );
    d.ack();

    bus.bind(&q1, fanout, "").await.expect("bind fanout 1");
    bus.bind(&q2, fanout, "").await.expect("bind fanout 2");
    assert_eq!(
        publish(&bus, to_exchange(fanout, "any", "f1")).await,
        Published::Routed
    );
    assert_eq!(acked(&mut c1).await, "f1");
    assert_eq!(acked(&mut c2).await, "f1");

    bus.bind(&q2, topic, "orders.*").await.expect("bind topic");
    assert_eq!(
        publish(&bus, to_exchange(topic, "orders.new", "t1")).await,
        Published::Routed
    );
    assert_eq!(
        publish(&bus, to_exchange(topic, "users.new", "t2")).await,
        Published::Unroutable
    );
    assert_eq!(acked(&mut c2).await, "t1");

    // A binding without arguments matches every message (x-match all of nothing).
    bus.bind(&q1, headers, "").await.expect("bind headers");
    let mut with_headers = to_exchange(headers, "", "h1");
    with_headers.headers = vec![("k".into(), "v".into())];
    assert_eq!(publish(&bus, with_headers).await, Published::Routed);
    let d = next(&mut c1).await;
    assert_eq!(d.correlation_id, "h1");
    assert!(d.headers.contains(&("k".into(), "v".into())));
    d.ack();
    nothing(&mut c1).await;
    nothing(&mut c2).await;
    drop((c1, c2));
    for name in &names {
        delete_exchange(name).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_kind_mismatch_is_an_error_not_a_failure() {
    let Some(bus) = new_bus().await else { return };
    let name = unique("mismatch");
    bus.declare_exchange(&name, ExchangeKind::Direct)
        .await
        .expect("declare");
    assert_eq!(
        bus.declare_exchange(&name, ExchangeKind::Fanout).await,
        Err(BusError::ExchangeKindMismatch {
            name: name.clone(),
            existing: "direct".into()
        })
    );
    bus.declare_exchange(&name, ExchangeKind::Direct)
        .await
        .expect("same kind again");
    let queue = unique("still-fine");
    let mut consumer = bus.consume(&temporary(&queue), 1).await.expect("consume");
    bus.bind(&queue, &name, "k").await.expect("bind");
    assert_eq!(
        publish(&bus, to_exchange(&name, "k", "ok")).await,
        Published::Routed
    );
    assert_eq!(acked(&mut consumer).await, "ok");
    drop(consumer);
    delete_exchange(&name).await;
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
