//! Work item queue notifications (§8.7): a consumer of a queue's `amqpqueue` name hears
//! about a push at once (not on a poll), at most once a second while items are ready,
//! and nothing once the queue is empty; consumers of other names hear nothing. Also
//! `--workitem-timeout`: an item whose worker vanished comes back to `new`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use opencore::proto::{
    AddWorkItemQueueRequest, Envelope, PopWorkitemRequest, PopWorkitemResponse,
    PushWorkitemRequest, PushWorkitemResponse, QueueEvent, RegisterQueueRequest, WorkItemQueue,
};

async fn signed_in(server: &TestServer) -> RawClient {
    let mut client = RawClient::connect(server.tcp()).await;
    client.signin(ADMIN, ADMIN_PASSWORD).await;
    client
}

async fn add_queue(client: &mut RawClient, name: &str, amqpqueue: &str) -> String {
    let reply = client
        .request(
            "addworkitemqueue",
            &AddWorkItemQueueRequest {
                workitemqueue: Some(WorkItemQueue {
                    name: name.into(),
                    amqpqueue: amqpqueue.into(),
                    maxretries: 2,
                    ..Default::default()
                }),
                skiprole: true,
            },
        )
        .await;
    assert_eq!(
        reply.command,
        "addworkitemqueuereply",
        "{:?}",
        error_message(&reply)
    );
    let added: opencore::proto::AddWorkItemQueueResponse = decode(&reply);
    added.workitemqueue.expect("the queue").id
}

async fn push(client: &mut RawClient, wiq: &str) -> String {
    let reply = client
        .request(
            "pushworkitem",
            &PushWorkitemRequest {
                wiq: wiq.into(),
                payload: "{}".into(),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(
        reply.command,
        "pushworkitemreply",
        "{:?}",
        error_message(&reply)
    );
    let pushed: PushWorkitemResponse = decode(&reply);
    pushed.workitem.expect("an item").id
}

async fn pop(client: &mut RawClient, wiq: &str) -> Option<String> {
    let reply = client
        .request(
            "popworkitem",
            &PopWorkitemRequest {
                wiq: wiq.into(),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(
        reply.command,
        "popworkitemreply",
        "{:?}",
        error_message(&reply)
    );
    let popped: PopWorkitemResponse = decode(&reply);
    popped.workitem.map(|item| item.id)
}

/// The next `queueevent` within `wait`, skipping pings and the like.
async fn next_event(client: &mut RawClient, wait: Duration) -> Option<QueueEvent> {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        let envelope: Envelope = tokio::time::timeout(left, client.recv()).await.ok()??;
        if envelope.command == "queueevent" {
            return Some(decode(&envelope));
        }
    }
}

async fn register(client: &mut RawClient, name: &str) {
    let reply = client
        .request(
            "registerqueue",
            &RegisterQueueRequest {
                queuename: name.into(),
            },
        )
        .await;
    assert_eq!(
        reply.command,
        "registerqueuereply",
        "{:?}",
        error_message(&reply)
    );
}

#[tokio::test]
async fn consumers_of_a_queues_amqpqueue_hear_of_ready_items_at_once_and_at_most_once_a_second() {
    let server = TestServer::start();
    let mut producer = signed_in(&server).await;
    let mut robot = signed_in(&server).await;
    let mut bystander = signed_in(&server).await;
    register(&mut robot, "robots").await;
    register(&mut bystander, "others").await;
    let wiqid = add_queue(&mut producer, "jobs", "Robots").await;

    let pushed_at = Instant::now();
    push(&mut producer, "jobs").await;
    let event = next_event(&mut robot, Duration::from_secs(3))
        .await
        .expect("a notification after the push");
    let latency = pushed_at.elapsed();
    assert!(
        latency < Duration::from_secs(2),
        "notified after {latency:?}: a push must not wait for a poll"
    );
    assert_eq!(event.queuename, "robots");
    let data: serde_json::Value = serde_json::from_str(&event.data).unwrap();
    assert_eq!(data["wiq"], "jobs");
    assert_eq!(data["wiqid"], wiqid.as_str());

    // A second push within the second is not announced separately...
    push(&mut producer, "jobs").await;
    let soon = next_event(&mut robot, Duration::from_millis(400)).await;
    assert!(
        soon.is_none(),
        "two notifications within a second: {soon:?}"
    );
    // ...but the queue still has ready items, so the consumer hears again.
    assert!(
        next_event(&mut robot, Duration::from_secs(3))
            .await
            .is_some(),
        "no repeated notification while items were ready"
    );
    assert!(next_event(&mut bystander, Duration::from_millis(100))
        .await
        .is_none());

    // Emptied: at most the notification already on its way, then silence.
    while pop(&mut producer, "jobs").await.is_some() {}
    let _ = next_event(&mut robot, Duration::from_millis(1200)).await;
    let late = next_event(&mut robot, Duration::from_millis(2500)).await;
    assert!(late.is_none(), "notified about an empty queue: {late:?}");
}

#[tokio::test]
async fn an_item_left_processing_past_the_workitem_timeout_returns_to_new() {
    let server = TestServer::start_with(|config| {
        config.work.workitem_timeout = Some(Duration::from_secs(1));
    });
    let mut client = signed_in(&server).await;
    add_queue(&mut client, "slow", "").await;
    let id = push(&mut client, "slow").await;
    assert_eq!(pop(&mut client, "slow").await.as_deref(), Some(id.as_str()));
    assert_eq!(
        pop(&mut client, "slow").await,
        None,
        "the item is being processed"
    );
    // The worker never answers: after the timeout (swept every second) it is back.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if let Some(again) = pop(&mut client, "slow").await {
            assert_eq!(again, id);
            break;
        }
        assert!(Instant::now() < deadline, "the stuck item never came back");
    }
}
