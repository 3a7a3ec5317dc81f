//! The consumer actor against a stand-in connection that holds write receipts until
//! told to release them: priority lanes decide what goes next while the client is
//! slow, acknowledgements wait for the write, and a connection that goes away returns
//! its deliveries to the queue.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use prost::Message as _;
use tokio::sync::{mpsc, oneshot};

use super::*;
use crate::bus::{Acknowledge, Consumer};
use crate::proto::QueueEvent;

#[derive(Default)]
struct Settlements {
    acked: AtomicUsize,
    requeued: AtomicUsize,
}

struct Counted(Arc<Settlements>);

impl Acknowledge for Counted {
    fn ack(self: Box<Self>) {
        self.0.acked.fetch_add(1, Ordering::SeqCst);
    }
    fn requeue(self: Box<Self>) {
        self.0.requeued.fetch_add(1, Ordering::SeqCst);
    }
}

fn delivery(priority: u8, tag: &str, settlements: &Arc<Settlements>) -> Delivery {
    Delivery::new(
        "jobs".into(),
        String::new(),
        String::new(),
        tag.into(),
        String::new(),
        priority,
        bytes::Bytes::from_static(b"{}"),
        false,
        vec![],
        Box::new(Counted(settlements.clone())),
    )
}

/// A connection that keeps every pushed envelope and its receipt.
#[derive(Default)]
struct SlowConnection {
    pushed: Vec<String>,
    receipts: Vec<oneshot::Sender<bool>>,
}

impl Actor for SlowConnection {
    type Context = Context<Self>;
}

impl Handler<PushTracked> for SlowConnection {
    type Result = ();
    fn handle(&mut self, push: PushTracked, _: &mut Context<Self>) {
        let event = QueueEvent::decode(push.envelope.data.unwrap().value.as_slice()).unwrap();
        self.pushed.push(event.correlation_id);
        self.receipts.push(push.written);
    }
}

/// Writes what is pending (or, with `false`, loses the connection: receipts dropped).
#[derive(Message)]
#[rtype(result = "Vec<String>")]
struct Release(bool);

impl Handler<Release> for SlowConnection {
    type Result = MessageResult<Release>;
    fn handle(&mut self, Release(written): Release, _: &mut Context<Self>) -> Self::Result {
        for receipt in self.receipts.drain(..) {
            if written {
                let _ = receipt.send(true);
            }
        }
        MessageResult(self.pushed.clone())
    }
}

async fn settle_a_moment() {
    tokio::time::sleep(Duration::from_millis(50)).await;
}

fn start_consumer(
    connection: &Addr<SlowConnection>,
) -> (Addr<QueueConsumer>, mpsc::Sender<Delivery>) {
    let (sender, deliveries) = mpsc::channel(256);
    let consumer = Consumer {
        queue: "jobs".into(),
        deliveries,
        guard: Box::new(()),
    };
    let actor = QueueConsumer::new(
        consumer,
        1,
        connection.clone().recipient(),
        Arc::new(QueueCounters::default()),
    )
    .start();
    actor.do_send(Begin);
    (actor, sender)
}

#[actix_rt::test]
async fn a_slow_client_gets_the_highest_priority_next() {
    let connection = SlowConnection::default().start();
    let (_actor, bus) = start_consumer(&connection);
    let settlements = Arc::new(Settlements::default());
    for i in 0..100 {
        bus.send(delivery(0, &format!("low{i}"), &settlements))
            .await
            .unwrap();
    }
    bus.send(delivery(3, "urgent", &settlements)).await.unwrap();
    settle_a_moment().await;
    // The client has not written anything: only IN_TRANSIT are on their way.
    let pushed = connection.send(Release(false)).await.unwrap();
    assert_eq!(pushed.len(), IN_TRANSIT);
    assert_eq!(
        settlements.acked.load(Ordering::SeqCst),
        0,
        "no ack before the write"
    );
    assert_eq!(
        settlements.requeued.load(Ordering::SeqCst),
        IN_TRANSIT,
        "receipts dropped unwritten requeue"
    );
    // The slots are free again: the urgent one overtakes the 92 waiting.
    settle_a_moment().await;
    let pushed = connection.send(Release(true)).await.unwrap();
    assert_eq!(pushed[IN_TRANSIT], "urgent", "{pushed:?}");
    assert_eq!(pushed[IN_TRANSIT + 1], format!("low{IN_TRANSIT}"));
}

#[actix_rt::test]
async fn acknowledged_only_after_the_write_and_requeued_when_stopped() {
    let connection = SlowConnection::default().start();
    let (actor, bus) = start_consumer(&connection);
    let settlements = Arc::new(Settlements::default());
    for i in 0..3 {
        bus.send(delivery(0, &format!("m{i}"), &settlements))
            .await
            .unwrap();
    }
    settle_a_moment().await;
    assert_eq!(settlements.acked.load(Ordering::SeqCst), 0);
    connection.send(Release(true)).await.unwrap();
    settle_a_moment().await;
    assert_eq!(settlements.acked.load(Ordering::SeqCst), 3);
    // Waiting deliveries go back when the consumer stops.
    for i in 0..(IN_TRANSIT + 5) {
        bus.send(delivery(0, &format!("n{i}"), &settlements))
            .await
            .unwrap();
    }
    settle_a_moment().await;
    actor.do_send(StopChild);
    settle_a_moment().await;
    assert_eq!(
        settlements.requeued.load(Ordering::SeqCst),
        5,
        "the 5 waiting in lanes"
    );
    // In transit when it stopped: settled by their receipts, not by the stop.
    connection.send(Release(true)).await.unwrap();
    settle_a_moment().await;
    assert_eq!(settlements.acked.load(Ordering::SeqCst), 3 + IN_TRANSIT);
}
