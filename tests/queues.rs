//! Queues and exchanges over the raw protocol, on the embedded bus and on RabbitMQ
//! (`AMQP_URL`, or a broker listening on 127.0.0.1:5672; `.ci/run` starts one): temp
//! and named queues, round-robin, RPC with replyto, timeouts and `bad queue`, priority,
//! every exchange type, the sender fields, ACLs on names (claims, other users' and
//! other connections' queues, reserved names), limits, and redelivery when a consumer
//! dies with messages it never got.

mod common;
mod data_support;
mod queue_support;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use data_support::create_user;
use opencore::proto::*;
use queue_support::*;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_queue_round_trip_and_generated_correlation_id() {
    for bus in buses() {
        let server = server_on(&bus, |_| {});
        let mut consumer = Client::admin(&server).await;
        let mut sender = Client::admin(&server).await;
        let queue = consumer.register("").await.unwrap();
        assert!(queue.contains('.') && queue.len() > 20, "{queue}");
        let other = consumer.register("").await.unwrap();
        assert_ne!(queue, other, "temporary names are unique");
        let reply = sender.send_to(&queue, json!({"n": 1})).await.unwrap();
        assert!(
            !reply.correlation_id.is_empty(),
            "a generated correlationId is returned"
        );
        let event = consumer.event().await;
        assert_eq!(event.queuename, queue);
        assert_eq!(event.correlation_id, reply.correlation_id);
        assert_eq!(data(&event), json!({"n": 1}));
        // Text that is not JSON arrives as a JSON string.
        sender.send_to(&queue, json!("x")).await.unwrap();
        sender
            .send(QueueMessageRequest {
                queuename: queue.clone(),
                data: "hi mom".into(),
                striptoken: true,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(data(&consumer.event().await), json!("x"));
        assert_eq!(data(&consumer.event().await), json!("hi mom"));
        // Gone with its consumer (RabbitMQ deletes it a moment after the cancel).
        consumer.unregister(&queue).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let err = loop {
            match sender.send_to(&queue, json!({})).await {
                Err(err) => break err,
                Ok(_) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Ok(_) => panic!("the temporary queue outlived its consumer"),
            }
        };
        assert!(err.contains("bad queue"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_with_replyto_and_timeouts_for_missing_queues() {
    for bus in buses() {
        let server = server_on(&bus, |_| {});
        let mut worker = Client::admin(&server).await;
        let mut requester = Client::admin(&server).await;
        let service = unique("rpc");
        assert_eq!(worker.register(&service).await.unwrap(), service);
        let inbox = requester.register("").await.unwrap();
        for round in 0..2 {
            requester
                .send(QueueMessageRequest {
                    queuename: service.clone(),
                    replyto: inbox.clone(),
                    correlation_id: format!("c{round}"),
                    data: json!({"question": round}).to_string(),
                    ..Default::default()
                })
                .await
                .unwrap();
            let request = worker.event().await;
            assert_eq!(request.replyto, inbox);
            assert_eq!(request.correlation_id, format!("c{round}"));
            let body = data(&request);
            assert_eq!(body["question"], json!(round));
            assert_eq!(body["__user"]["username"], json!(ADMIN), "{body}");
            assert!(body["__jwt"].as_str().is_some_and(|t| !t.is_empty()));
            worker
                .send(QueueMessageRequest {
                    queuename: request.replyto.clone(),
                    correlation_id: request.correlation_id.clone(),
                    data: json!({"answer": round}).to_string(),
                    striptoken: true,
                    ..Default::default()
                })
                .await
                .unwrap();
            let answer = requester.event().await;
            assert_eq!(answer.correlation_id, format!("c{round}"));
            assert_eq!(answer.replyto, "");
            assert_eq!(
                data(&answer),
                json!({"answer": round}),
                "striptoken removes the sender"
            );
        }
        // A queue nobody registered: the RPC is answered with a timeout, then refused.
        let missing = unique("missing");
        let rpc = QueueMessageRequest {
            queuename: missing.clone(),
            replyto: inbox.clone(),
            correlation_id: "lost".into(),
            data: json!({"q": 1}).to_string(),
            ..Default::default()
        };
        requester.send(rpc.clone()).await.unwrap();
        let timeout = requester.event().await;
        assert_eq!(timeout.correlation_id, "lost");
        assert_eq!(timeout.replyto, "");
        assert_eq!(data(&timeout)["command"], json!("timeout"));
        assert!(data(&timeout).get("__jwt").is_none());
        let err = requester.send(rpc.clone()).await.unwrap_err();
        assert_eq!(err, format!("bad queue: {missing} correlationId: lost"));
        // Registered again: it routes again.
        let mut late = Client::admin(&server).await;
        late.register(&missing).await.unwrap();
        requester.send(rpc).await.unwrap();
        assert_eq!(late.event().await.correlation_id, "lost");
        // Without replyto a missing queue is an error at once.
        let err = requester
            .send_to(&unique("nobody"), json!({}))
            .await
            .unwrap_err();
        assert!(err.starts_with("bad queue: "), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_rpc_gets_a_timeout_reply() {
    for bus in buses() {
        let server = server_on(&bus, |_| {});
        let mut owner = Client::admin(&server).await;
        let mut requester = Client::admin(&server).await;
        let queue = unique("slow");
        owner.register(&queue).await.unwrap();
        owner.unregister(&queue).await;
        let inbox = requester.register("").await.unwrap();
        requester
            .send(QueueMessageRequest {
                queuename: queue.clone(),
                replyto: inbox.clone(),
                correlation_id: "late".into(),
                expiration: 300,
                data: json!({"q": 1}).to_string(),
                ..Default::default()
            })
            .await
            .unwrap();
        let timeout = requester.event().await;
        assert_eq!(timeout.correlation_id, "late");
        assert_eq!(data(&timeout)["command"], json!("timeout"));
        // It really left the queue.
        owner.register(&queue).await.unwrap();
        owner.no_event(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_queues_are_shared_round_robin_and_keep_messages_without_consumers() {
    for bus in buses() {
        let server = server_on(&bus, |_| {});
        let queue = unique("shared");
        let mut a = Client::admin(&server).await;
        let mut b = Client::admin(&server).await;
        let mut sender = Client::admin(&server).await;
        a.register(&queue).await.unwrap();
        b.register(&queue).await.unwrap();
        for i in 0..10 {
            sender.send_to(&queue, json!({"i": i})).await.unwrap();
        }
        let mut seen = HashSet::new();
        let (mut got_a, mut got_b) = (0, 0);
        while seen.len() < 10 {
            tokio::select! {
                Some((event, _)) = a.event_within(WAIT) => { got_a += 1; seen.insert(data(&event)["i"].clone()); }
                Some((event, _)) = b.event_within(WAIT) => { got_b += 1; seen.insert(data(&event)["i"].clone()); }
                else => panic!("messages missing: saw {seen:?}"),
            }
        }
        assert!(
            got_a >= 3 && got_b >= 3,
            "round-robin: a {got_a}, b {got_b}"
        );
        // Survives its consumers: messages wait for the next one.
        drop(a);
        b.unregister(&queue).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        sender
            .send_to(&queue, json!({"waiting": true}))
            .await
            .unwrap();
        let mut c = Client::admin(&server).await;
        c.register(&queue).await.unwrap();
        assert_eq!(data(&c.event().await), json!({"waiting": true}));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn higher_priority_is_delivered_first() {
    for bus in buses() {
        let server = server_on(&bus, |_| {});
        let queue = unique("prio");
        let mut consumer = Client::admin(&server).await;
        let mut sender = Client::admin(&server).await;
        consumer.register(&queue).await.unwrap();
        consumer.unregister(&queue).await;
        // The consumer is away: 100 of priority 0, then one of priority 3.
        for i in 0..100 {
            let request = QueueMessageRequest {
                queuename: queue.clone(),
                data: json!({"i": i}).to_string(),
                striptoken: true,
                ..Default::default()
            };
            let reply = sender.call_with_priority("queuemessage", &request, 0).await;
            result::<QueueMessageResponse>(&reply).unwrap();
        }
        let urgent = QueueMessageRequest {
            queuename: queue.clone(),
            data: json!({"urgent": true}).to_string(),
            striptoken: true,
            ..Default::default()
        };
        let reply = sender.call_with_priority("queuemessage", &urgent, 3).await;
        result::<QueueMessageResponse>(&reply).unwrap();
        consumer.register(&queue).await.unwrap();
        let (first, priority) = consumer.event_within(WAIT).await.expect("an event");
        assert_eq!(
            data(&first),
            json!({"urgent": true}),
            "priority 3 overtakes"
        );
        assert_eq!(priority, 3, "the priority travels in the envelope");
        let (second, _) = consumer.event_within(WAIT).await.unwrap();
        assert_eq!(data(&second), json!({"i": 0}), "FIFO within a priority");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_exchange_type_routes() {
    for bus in buses() {
        let server = server_on(&bus, |_| {});
        let mut a = Client::admin(&server).await;
        let mut b = Client::admin(&server).await;
        let mut sender = Client::admin(&server).await;
        let send = |exchange: &str, key: &str, data: Value| QueueMessageRequest {
            exchangename: exchange.into(),
            routingkey: key.into(),
            data: data.to_string(),
            striptoken: true,
            ..Default::default()
        };
        // fanout: everyone bound.
        let fanout = unique("fan");
        let qa = a.exchange(&fanout, "fanout", "").await.unwrap();
        let qb = b.exchange(&fanout, "fanout", "").await.unwrap();
        sender
            .send(send(&fanout, "", json!({"f": 1})))
            .await
            .unwrap();
        let (ea, eb) = (a.event().await, b.event().await);
        assert_eq!(
            (ea.queuename.as_str(), eb.queuename.as_str()),
            (qa.as_str(), qb.as_str())
        );
        assert_eq!(ea.exchangename, fanout);
        // direct: the routing key decides.
        let direct = unique("direct");
        a.exchange(&direct, "direct", "red").await.unwrap();
        b.exchange(&direct, "direct", "blue").await.unwrap();
        sender
            .send(send(&direct, "blue", json!({"d": "blue"})))
            .await
            .unwrap();
        let event = b.event().await;
        assert_eq!(
            (data(&event), event.routingkey.as_str()),
            (json!({"d": "blue"}), "blue")
        );
        a.no_event(Duration::from_millis(300)).await;
        // topic: wildcards.
        let topic = unique("topic");
        a.exchange(&topic, "topic", "stock.*.nyse").await.unwrap();
        b.exchange(&topic, "topic", "stock.#").await.unwrap();
        sender
            .send(send(&topic, "stock.ibm.nyse", json!({"t": 1})))
            .await
            .unwrap();
        sender
            .send(send(&topic, "stock.ibm.lse.x", json!({"t": 2})))
            .await
            .unwrap();
        assert_eq!(data(&a.event().await), json!({"t": 1}));
        assert_eq!(data(&b.event().await), json!({"t": 1}));
        assert_eq!(data(&b.event().await), json!({"t": 2}));
        a.no_event(Duration::from_millis(300)).await;
        // headers (the reference's `header`): bindings without arguments take everything.
        let headers = unique("hdr");
        a.exchange(&headers, "header", "").await.unwrap();
        sender
            .send(send(&headers, "any", json!({"h": 1})))
            .await
            .unwrap();
        assert_eq!(data(&a.event().await), json!({"h": 1}));
        // Bad algorithms and kinds.
        let err = a.exchange(&unique("x"), "", "").await.unwrap_err();
        assert_eq!(
            err,
            "algorithm is mandatory, as either direct, fanout, topic or header"
        );
        let err = a.exchange(&unique("x"), "round", "").await.unwrap_err();
        assert_eq!(
            err,
            "invalid algorithm must be either direct, fanout, topic or header"
        );
        let err = a.exchange(&fanout, "direct", "").await.unwrap_err();
        assert!(err.contains(&fanout), "{err}");
        // Publishing to an exchange nobody declared is an error, and the bus goes on.
        let err = sender
            .send(send(&unique("nowhere"), "", json!({})))
            .await
            .unwrap_err();
        assert!(err.starts_with("Unknown exchange"), "{err}");
        sender
            .send(send(&fanout, "", json!({"after": 1})))
            .await
            .unwrap();
        assert_eq!(data(&b.event().await), json!({"after": 1}));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_names_belong_to_their_first_registrant() {
    for bus in buses() {
        let server = server_on(&bus, |_| {});
        let mut root = Client::admin(&server).await;
        let alice_id = create_user(&mut root.raw, "alice", "alice-password").await;
        create_user(&mut root.raw, "bob", "bob-password").await;
        let mut alice = Client::user(&server, "alice", "alice-password").await;
        let mut bob = Client::user(&server, "bob", "bob-password").await;
        let queue = unique("alices");
        alice.register(&queue).await.unwrap();
        let err = bob.register(&queue).await.unwrap_err();
        assert_eq!(
            err,
            format!("[bob] Unknown queue {queue} or access denied, missing read permission on queue object")
        );
        let err = bob.send_to(&queue, json!({})).await.unwrap_err();
        assert!(
            err.contains("missing read permission"),
            "senders need read: {err}"
        );
        // A user's personal queue (its id): its owner may consume, others may not.
        alice.register(&alice_id).await.unwrap();
        let err = bob.register(&alice_id).await.unwrap_err();
        assert!(err.contains("access denied"), "{err}");
        // Reserved names.
        for reserved in ["openflow", "OpenFlow", "openflow-dlx"] {
            assert_eq!(bob.register(reserved).await.unwrap_err(), "Access denied");
            let err = bob.send_to(reserved, json!({})).await.unwrap_err();
            assert_eq!(err, "Access denied");
        }
        // Another connection's temporary queue cannot be taken over, even by its user.
        let inbox = alice.register("").await.unwrap();
        let err = bob.register(&inbox).await.unwrap_err();
        assert!(err.contains(&inbox), "{err}");
        let mut alice2 = Client::user(&server, "alice", "alice-password").await;
        let err = alice2.register(&inbox).await.unwrap_err();
        assert!(err.contains(&inbox), "{err}");
        // ... and still works for its owner.
        bob.send_to(&inbox, json!({"still": "mine"})).await.unwrap();
        assert_eq!(data(&alice.event().await), json!({"still": "mine"}));
        // Exchanges are claimed the same way.
        let exchange = unique("alicex");
        alice.exchange(&exchange, "fanout", "").await.unwrap();
        let err = bob.exchange(&exchange, "fanout", "").await.unwrap_err();
        assert!(
            err.contains("missing read permission on exchange object"),
            "{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sender_cannot_be_forged_and_bad_messages_are_refused() {
    let server = server_on(&None, |config| config.bus.max_queue_message_size = 10_000);
    let mut root = Client::admin(&server).await;
    create_user(&mut root.raw, "mallory", "mallory-password").await;
    let mut mallory = Client::user(&server, "mallory", "mallory-password").await;
    let inbox = root.register("").await.unwrap();
    mallory
        .send(QueueMessageRequest {
            queuename: inbox.clone(),
            data: json!({"__user": {"username": "admin"}, "__jwt": "forged", "jwt": "x.y.z"})
                .to_string(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    mallory
        .send(QueueMessageRequest {
            queuename: inbox.clone(),
            data: json!({"__user": {"username": "admin"}, "__jwt": "forged"}).to_string(),
            ..Default::default()
        })
        .await
        .unwrap();
    let body = data(&root.event().await);
    assert_eq!(body["__user"]["username"], json!("mallory"));
    assert_ne!(body["__jwt"], json!("forged"));
    // Missing data, no target, too large.
    let err = mallory
        .send(QueueMessageRequest {
            queuename: inbox.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(err.contains("data is mandatory"), "{err}");
    let err = mallory.send_to("", json!({})).await.unwrap_err();
    assert_eq!(err, "queuename or exchange must be given");
    let err = mallory
        .send_to(&inbox, json!({"big": "x".repeat(20_000)}))
        .await
        .unwrap_err();
    assert!(
        err.contains("larger than configured max size 10000"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_per_connection_are_capped_and_need_a_connection() {
    let server = server_on(&None, |config| config.bus.max_queues_per_connection = 2);
    let mut client = Client::admin(&server).await;
    client.register("").await.unwrap();
    client.register("").await.unwrap();
    let err = client.register("").await.unwrap_err();
    assert!(err.contains("Too many queues"), "{err}");
    // Re-registering a name replaces its consumer instead of adding one.
    let mut other = Client::admin(&server).await;
    let name = unique("same");
    other.register(&name).await.unwrap();
    other.register(&name).await.unwrap();
    let inbox = other.register("").await.unwrap();
    // Unary gRPC has no connection to deliver to.
    let (mut grpc, signed) = grpc_admin(&server).await;
    let mut request = tonic::Request::new(RegisterQueueRequest {
        queuename: String::new(),
    });
    request
        .metadata_mut()
        .insert("jwt", signed.jwt.parse().expect("ascii"));
    let status = grpc.register_queue(request).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    // Sending works unary.
    let mut request = tonic::Request::new(QueueMessageRequest {
        queuename: inbox.clone(),
        data: json!({"unary": true}).to_string(),
        striptoken: true,
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("jwt", signed.jwt.parse().expect("ascii"));
    grpc.queue_message(request).await.unwrap();
    assert_eq!(data(&other.event().await), json!({"unary": true}));
}

/// What `/admin/stats` says about queue traffic.
async fn queue_stats(server: &TestServer) -> Value {
    let (_, signed) = grpc_admin(server).await;
    let (status, body) = http_get(server.http(), "/admin/stats", Some(&signed.jwt)).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["queues"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_dies_loses_no_message_it_was_not_given() {
    for bus in buses() {
        let server = server_on(&bus, |config| config.bus.queue_prefetch = 25);
        let queue = unique("durable");
        let mut first = Client::admin(&server).await;
        let mut sender = Client::admin(&server).await;
        first.register(&queue).await.unwrap();
        // Large enough that a client that stops reading fills its socket long before
        // it was given them all.
        const TOTAL: u64 = 200;
        let padding = "x".repeat(64 * 1024);
        for i in 0..TOTAL {
            sender
                .send_to(&queue, json!({"i": i, "padding": padding}))
                .await
                .unwrap();
        }
        let mut seen = HashSet::new();
        for _ in 0..5 {
            seen.insert(data(&first.event().await)["i"].as_u64().unwrap());
        }
        // The first consumer stops reading: the server writes until the socket is full,
        // holds the rest unacknowledged, then the connection dies.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let written = queue_stats(&server).await["delivered"].as_u64().unwrap();
        assert!(
            written < TOTAL,
            "the stalled client was given everything ({written})"
        );
        drop(first);
        let mut second = Client::admin(&server).await;
        second.register(&queue).await.unwrap();
        let mut redelivered = HashSet::new();
        while let Some((event, _)) = second.event_within(Duration::from_secs(5)).await {
            redelivered.insert(data(&event)["i"].as_u64().unwrap());
        }
        // Everything the first connection was never given reaches the second.
        assert!(
            redelivered.len() as u64 >= TOTAL - written,
            "written to the first: {written}, redelivered: {} of {TOTAL}",
            redelivered.len()
        );
        let requeued = queue_stats(&server).await["requeued"].as_u64().unwrap();
        assert!(requeued > 0, "held deliveries went back to the queue");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_commands_need_a_signed_in_user() {
    let server = server_on(&None, |_| {});
    let mut anonymous = RawClient::connect(server.tcp()).await;
    let reply = anonymous
        .request("registerqueue", &RegisterQueueRequest::default())
        .await;
    assert_eq!(
        error_message(&reply).as_deref(),
        Some("Not signed in, and missing jwt")
    );
    let reply = anonymous
        .request(
            "queuemessage",
            &QueueMessageRequest {
                queuename: "x".into(),
                data: "{}".into(),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(
        error_message(&reply).as_deref(),
        Some("Not signed in, and missing jwt")
    );
}
