//! Two opencore nodes on one RabbitMQ form one system: a message from a client on
//! node A reaches a consumer on node B, an RPC round trip crosses nodes both ways, and
//! a fanout exchange reaches consumers on both. Needs RabbitMQ (`AMQP_URL`, or one on
//! 127.0.0.1:5672; `.ci/run` starts it).

mod common;
mod data_support;
mod queue_support;

use opencore::proto::*;
use queue_support::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_broker_are_one_system() {
    let Some(url) = amqp_url() else {
        return;
    };
    let bus = Some(url);
    let node_a = server_on(&bus, |_| {});
    let node_b = server_on(&bus, |_| {});
    let mut on_a = Client::admin(&node_a).await;
    let mut on_b = Client::admin(&node_b).await;

    // A → B, to a temporary queue.
    let inbox_b = on_b.register("").await.unwrap();
    on_a.send_to(&inbox_b, json!({"hop": "a->b"}))
        .await
        .unwrap();
    assert_eq!(data(&on_b.event().await), json!({"hop": "a->b"}));

    // RPC: requester on A, worker on B, and back.
    let service = unique("cross-rpc");
    on_b.register(&service).await.unwrap();
    let inbox_a = on_a.register("").await.unwrap();
    on_a.send(QueueMessageRequest {
        queuename: service.clone(),
        replyto: inbox_a.clone(),
        correlation_id: "x1".into(),
        data: json!({"ask": 1}).to_string(),
        ..Default::default()
    })
    .await
    .unwrap();
    let request = on_b.event().await;
    assert_eq!(request.replyto, inbox_a);
    on_b.send(QueueMessageRequest {
        queuename: request.replyto,
        correlation_id: request.correlation_id,
        data: json!({"answer": 2}).to_string(),
        striptoken: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let answer = on_a.event().await;
    assert_eq!(
        (answer.correlation_id.as_str(), data(&answer)),
        ("x1", json!({"answer": 2}))
    );

    // A fanout exchange reaches consumers on both nodes.
    let fanout = unique("cross-fan");
    on_a.exchange(&fanout, "fanout", "").await.unwrap();
    on_b.exchange(&fanout, "fanout", "").await.unwrap();
    let mut sender = Client::admin(&node_a).await;
    sender
        .send(QueueMessageRequest {
            exchangename: fanout.clone(),
            data: json!({"all": true}).to_string(),
            striptoken: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(data(&on_a.event().await), json!({"all": true}));
    assert_eq!(data(&on_b.event().await), json!({"all": true}));

    // A temporary queue of node A cannot be consumed from node B.
    let err = on_b.register(&inbox_a).await.unwrap_err();
    assert!(err.contains(&inbox_a), "{err}");
}
