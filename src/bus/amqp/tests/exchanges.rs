//! Exchanges: the four types, conflicts, unknown names.

use super::*;

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
