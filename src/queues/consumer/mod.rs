//! One actor per queue consumer (connection × queue), a child of its connection.
//!
//! Deliveries arrive from the bus (at most `--queue-prefetch` unacknowledged) and wait
//! in four priority lanes; the actor forwards the highest-priority one first, keeping
//! at most [`IN_TRANSIT`] on their way through the connection's outbound queue. A
//! delivery is acknowledged to the bus only when the connection's writer has handed it
//! to the transport; if the connection closes first its receipt is dropped and the
//! delivery goes back to the queue for another consumer (at least once, never lost).
//!
//! Back-pressure: a client that reads slowly holds its receipts, so the actor stops
//! forwarding, the bus stops delivering (no credit) and messages wait in the queue,
//! not in this server's memory.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix::prelude::*;
use prost::{Message as _, Name};
use tokio::sync::oneshot;
use tokio_stream::wrappers::ReceiverStream;

use super::{QueueCounters, Queues};
use crate::bus::{Consumer, Delivery, QueueSpec, Settlement, MAX_PRIORITY};
use crate::connections::{ChildKind, ConnectionHandle, PushTracked, StopChild};
use crate::error::OpenCoreError;
use crate::proto::{Envelope, QueueEvent};

/// Deliveries pushed to the connection and not yet written. Small, so that deliveries
/// held here are still ordered by priority when the client is slower than the bus.
pub const IN_TRANSIT: usize = 8;

const LANES: usize = MAX_PRIORITY as usize + 1;

/// Deliveries waiting to be forwarded, highest priority first, FIFO within one.
#[derive(Default)]
pub struct Lanes {
    lanes: [VecDeque<Delivery>; LANES],
}

impl Lanes {
    pub fn push(&mut self, delivery: Delivery) {
        let lane = usize::from(delivery.priority.min(MAX_PRIORITY));
        self.lanes[lane].push_back(delivery);
    }

    pub fn pop(&mut self) -> Option<Delivery> {
        self.lanes.iter_mut().rev().find_map(VecDeque::pop_front)
    }

    pub fn len(&self) -> usize {
        self.lanes.iter().map(VecDeque::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub struct QueueConsumer {
    /// The name the client knows the queue by (`QueueEvent.queuename`).
    queue: String,
    connection_id: u64,
    push: Recipient<PushTracked>,
    counters: Arc<QueueCounters>,
    /// Until `Begin`: the consumer whose deliveries this actor will take.
    pending: Option<Consumer>,
    /// Keeps the bus consumer alive (dropping it cancels).
    _guard: Option<Box<dyn Send + Sync>>,
    lanes: Lanes,
    in_transit: usize,
}

/// Start forwarding (sent once the client has the `registerqueue` reply, so it knows
/// the queue's name before its first event).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Begin;

/// A pushed delivery's receipt came back (written, refused or connection gone).
#[derive(Message)]
#[rtype(result = "()")]
struct Settled;

impl QueueConsumer {
    pub fn new(
        consumer: Consumer,
        connection_id: u64,
        push: Recipient<PushTracked>,
        counters: Arc<QueueCounters>,
    ) -> QueueConsumer {
        QueueConsumer {
            queue: consumer.queue.clone(),
            connection_id,
            push,
            counters,
            pending: Some(consumer),
            _guard: None,
            lanes: Lanes::default(),
            in_transit: 0,
        }
    }

    /// Forwards waiting deliveries while fewer than `IN_TRANSIT` are on their way.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        while self.in_transit < IN_TRANSIT {
            let Some(mut delivery) = self.lanes.pop() else {
                return;
            };
            let settlement = delivery.take_settlement();
            let envelope = event_envelope(&self.queue, delivery);
            let (written, receipt) = oneshot::channel();
            self.push.do_send(PushTracked { envelope, written });
            self.in_transit += 1;
            // Settled outside the actor: an unregister that stops it does not undo a
            // write that already happened.
            let counters = self.counters.clone();
            let me = ctx.address();
            let (queue, connection) = (self.queue.clone(), self.connection_id);
            actix::spawn(async move {
                settle(
                    settlement,
                    receipt.await.ok(),
                    &counters,
                    &queue,
                    connection,
                );
                me.do_send(Settled);
            });
        }
    }
}

fn settle(
    settlement: Settlement,
    written: Option<bool>,
    counters: &QueueCounters,
    queue: &str,
    connection: u64,
) {
    match written {
        Some(true) => {
            counters.delivered.fetch_add(1, Ordering::Relaxed);
            settlement.ack();
        }
        Some(false) => {
            // Larger than this client accepts: redelivering would loop forever.
            tracing::warn!(%queue, connection, "dropped a queue message larger than its consumer accepts");
            counters.dropped.fetch_add(1, Ordering::Relaxed);
            settlement.ack();
        }
        None => {
            counters.requeued.fetch_add(1, Ordering::Relaxed);
            settlement.requeue();
        }
    }
}

/// `queueevent` (no `rid`); the message priority travels in the envelope.
fn event_envelope(queue: &str, mut delivery: Delivery) -> Envelope {
    let event = QueueEvent {
        queuename: queue.to_string(),
        correlation_id: std::mem::take(&mut delivery.correlation_id),
        replyto: std::mem::take(&mut delivery.reply_to),
        routingkey: std::mem::take(&mut delivery.routing_key),
        exchangename: std::mem::take(&mut delivery.exchange),
        data: String::from_utf8_lossy(&delivery.body).into_owned(),
    };
    let (traceid, spanid) = delivery
        .headers
        .iter()
        .find(|(key, _)| key == "traceparent")
        .and_then(|(_, value)| crate::telemetry::traces::parse_traceparent(value))
        .unwrap_or_default();
    Envelope {
        command: "queueevent".to_string(),
        priority: i32::from(delivery.priority),
        traceid,
        spanid,
        data: Some(prost_types::Any {
            type_url: QueueEvent::type_url(),
            value: event.encode_to_vec(),
        }),
        ..Default::default()
    }
}

impl Actor for QueueConsumer {
    type Context = Context<Self>;

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        // Waiting deliveries go back to the queue as they drop; then the bus consumer.
        let waiting = self.lanes.len();
        self.lanes = Lanes::default();
        self._guard = None;
        self.pending = None;
        tracing::debug!(queue = %self.queue, connection = self.connection_id, waiting, "queue consumer stopped");
    }
}

impl Handler<Begin> for QueueConsumer {
    type Result = ();

    fn handle(&mut self, _: Begin, ctx: &mut Context<Self>) {
        let Some(consumer) = self.pending.take() else {
            return;
        };
        self._guard = Some(consumer.guard);
        ctx.add_stream(ReceiverStream::new(consumer.deliveries));
    }
}

impl StreamHandler<Delivery> for QueueConsumer {
    fn handle(&mut self, delivery: Delivery, ctx: &mut Context<Self>) {
        self.lanes.push(delivery);
        self.pump(ctx);
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        // The bus ended the consumer (the queue was deleted): nothing more will come.
        tracing::debug!(queue = %self.queue, connection = self.connection_id, "bus ended the consumer");
        ctx.stop();
    }
}

impl Handler<Settled> for QueueConsumer {
    type Result = ();

    fn handle(&mut self, _: Settled, ctx: &mut Context<Self>) {
        self.in_transit = self.in_transit.saturating_sub(1);
        self.pump(ctx);
    }
}

impl Handler<StopChild> for QueueConsumer {
    type Result = ();

    fn handle(&mut self, _: StopChild, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// Starts consuming `spec` for `connection` (replacing the connection's consumer of
/// the same name), bound to an exchange when `binding` is given. The actor starts
/// forwarding on [`Begin`], which the caller sends once its reply is queued.
pub async fn start(
    queues: &Queues,
    connection: &ConnectionHandle,
    spec: QueueSpec,
    binding: Option<(&str, &str)>,
) -> Result<Addr<QueueConsumer>, OpenCoreError> {
    connection.detach(ChildKind::Queue, spec.name.clone()).await;
    let consumer = queues
        .bus
        .consume(&spec, queues.settings.queue_prefetch.max(1))
        .await?;
    if let Some((exchange, routing_key)) = binding {
        // Dropping `consumer` on failure deletes the temporary queue again.
        queues.bus.bind(&spec.name, exchange, routing_key).await?;
    }
    queues.bad.routed(&spec.name);
    let actor = QueueConsumer::new(
        consumer,
        connection.id,
        connection.tracked_pusher(),
        queues.counters.clone(),
    )
    .start();
    if let Err(err) = connection
        .attach(
            ChildKind::Queue,
            spec.name.clone(),
            actor.clone().recipient(),
        )
        .await
    {
        actor.do_send(StopChild);
        return Err(err);
    }
    tracing::debug!(connection = connection.id, queue = %spec.name, kind = ?spec.kind, "queue consumer started");
    Ok(actor)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod lane_tests {
    use super::*;
    use crate::bus::Acknowledge;

    struct Quiet;
    impl Acknowledge for Quiet {
        fn ack(self: Box<Self>) {}
        fn requeue(self: Box<Self>) {}
    }

    fn delivery(priority: u8, tag: &str) -> Delivery {
        Delivery::new(
            "q".into(),
            String::new(),
            String::new(),
            tag.into(),
            String::new(),
            priority,
            bytes::Bytes::new(),
            false,
            vec![],
            Box::new(Quiet),
        )
    }

    #[test]
    fn lanes_give_the_highest_priority_first_then_fifo() {
        let mut lanes = Lanes::default();
        for i in 0..5 {
            lanes.push(delivery(0, &format!("low{i}")));
        }
        lanes.push(delivery(3, "urgent"));
        lanes.push(delivery(9, "capped"));
        lanes.push(delivery(1, "one"));
        let order: Vec<String> = std::iter::from_fn(|| lanes.pop())
            .map(|d| d.correlation_id.clone())
            .collect();
        assert_eq!(
            order,
            ["urgent", "capped", "one", "low0", "low1", "low2", "low3", "low4"]
        );
        assert!(lanes.is_empty());
    }
}
