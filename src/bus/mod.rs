//! The message bus: queues and exchanges that clients send each other messages
//! through. Two implementations behind one trait, chosen at start:
//!
//! - [`embedded`] (default): in-process queues and exchanges, messages in memory;
//! - [`amqp`]: RabbitMQ through `lapin` (`--amqp-url`), shared by every node.
//!
//! Both give a client the same observable behaviour: temporary and named queues,
//! round-robin between a queue's consumers, the four exchange types, per-message TTL
//! with dead letters (the server turns them into `timeout` replies), priorities 0–3,
//! per-consumer credit (`prefetch`) and redelivery of what a consumer never
//! acknowledged.
//!
//! This module is a leaf: it knows nothing of connections, users or ACLs. The
//! commands (`commands::register_queue`, …) apply those before they touch the bus.

pub mod amqp;
pub mod embedded;
pub mod routing;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

/// The bus as the server holds it.
pub type SharedBus = Arc<dyn Bus>;

/// Highest message priority; envelope priorities above it are capped.
pub const MAX_PRIORITY: u8 = 3;

/// Exchange the server's queues dead-letter into (the reference's name, so both can
/// share one broker).
pub const DEAD_LETTER_EXCHANGE: &str = "openflow-dlx";

#[async_trait::async_trait]
pub trait Bus: Send + Sync + 'static {
    /// `"embedded"` or `"amqp"`, for logs and the admin view.
    fn kind(&self) -> &'static str;

    /// Declares `queue` if it does not exist and starts a consumer on it with `prefetch`
    /// deliveries unacknowledged at most. A named queue that is currently some
    /// connection's temporary queue is refused ([`BusError::QueueLocked`]).
    async fn consume(&self, queue: &QueueSpec, prefetch: u16) -> Result<Consumer, BusError>;

    /// Declares an exchange; declaring an existing one with another kind is an error
    /// ([`BusError::ExchangeKindMismatch`]), never fatal to the bus.
    async fn declare_exchange(&self, name: &str, kind: ExchangeKind) -> Result<(), BusError>;

    /// Binds an existing queue to an existing exchange.
    async fn bind(&self, queue: &str, exchange: &str, routing_key: &str) -> Result<(), BusError>;

    /// Publishes one message and waits until the bus has taken responsibility for it
    /// (embedded: queued; AMQP: publisher confirm). A message no queue takes is
    /// [`Published::Unroutable`]; an unknown exchange is [`BusError::UnknownExchange`].
    async fn publish(&self, message: OutgoingMessage) -> Result<Published, BusError>;

    /// Deletes the temporary queue `name` now, with its messages, before its consumer
    /// has gone (the caller owns that consumer: `unregisterqueue` answers only once the
    /// name no longer routes). Named queues and unknown names are left alone.
    async fn delete_temporary(&self, name: &str) -> Result<(), BusError>;

    /// Messages that expired in a queue (or were rejected) and carried a `reply_to`,
    /// for the server's timeout replies. Each dead letter is reported on one node only.
    /// Called once, at start; later calls get `None`.
    fn take_dead_letters(&self) -> Option<mpsc::Receiver<DeadLetter>>;

    /// Whether the bus can publish now, and the last error it saw.
    fn health(&self) -> BusHealth;

    /// Queues and exchanges with their depth, for the admin view. Empty where the
    /// broker holds that state (AMQP: RabbitMQ's own management API has it).
    fn snapshot(&self) -> BusSnapshot {
        BusSnapshot::default()
    }
}

/// What the admin view shows of a bus's queues and exchanges.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct BusSnapshot {
    pub queues: Vec<QueueStat>,
    pub exchanges: Vec<ExchangeStat>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct QueueStat {
    pub name: String,
    /// `temporary` or `named`.
    pub kind: &'static str,
    /// Messages waiting (not yet delivered to a consumer).
    pub messages: usize,
    pub consumers: usize,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ExchangeStat {
    pub name: String,
    pub kind: &'static str,
    pub bindings: usize,
}

/// What kind of queue to consume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    pub name: String,
    pub kind: QueueKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueKind {
    /// One consumer only (its connection's); deleted with that consumer.
    Temporary,
    /// Durable: survives its consumers (and, on AMQP, a broker restart); several
    /// consumers share its messages round-robin.
    Named,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeKind {
    Direct,
    Fanout,
    Topic,
    Headers,
}

impl ExchangeKind {
    /// The reference's `header` is RabbitMQ's `headers`.
    pub fn parse(algorithm: &str) -> Option<ExchangeKind> {
        Some(match algorithm {
            "direct" => ExchangeKind::Direct,
            "fanout" => ExchangeKind::Fanout,
            "topic" => ExchangeKind::Topic,
            "header" | "headers" => ExchangeKind::Headers,
            _ => return None,
        })
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            ExchangeKind::Direct => "direct",
            ExchangeKind::Fanout => "fanout",
            ExchangeKind::Topic => "topic",
            ExchangeKind::Headers => "headers",
        }
    }
}

/// Where a message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Straight to one queue (AMQP: the default exchange with the queue's name as key).
    Queue(String),
    Exchange {
        name: String,
        routing_key: String,
    },
}

#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    pub target: Target,
    /// JSON text (the command layer makes sure of it).
    pub body: Bytes,
    pub correlation_id: String,
    /// Where the answer (or a `timeout`) goes; empty for none.
    pub reply_to: String,
    /// 0–[`MAX_PRIORITY`]; higher is delivered first.
    pub priority: u8,
    /// Time to live in its queue; expired messages with a `reply_to` become dead letters.
    pub expiration: Duration,
    /// Message headers (matched by headers exchanges; carries `traceparent`).
    pub headers: Vec<(String, String)>,
}

/// What happened to a published message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// At least one queue holds it.
    Routed,
    /// No queue matched (the target queue does not exist, or no binding matched).
    Unroutable,
}

/// One message handed to a consumer. Acknowledge it once the client has it; dropping
/// it unacknowledged returns it to its queue for another consumer.
pub struct Delivery {
    /// The consumed queue's name (what the client registered).
    pub queue: String,
    /// Exchange it was published to (empty: sent straight to the queue).
    pub exchange: String,
    pub routing_key: String,
    pub correlation_id: String,
    pub reply_to: String,
    pub priority: u8,
    pub body: Bytes,
    /// Delivered before to a consumer that did not acknowledge it.
    pub redelivered: bool,
    pub headers: Vec<(String, String)>,
    acker: Option<Box<dyn Acknowledge>>,
}

/// How a delivery settles with its bus.
pub trait Acknowledge: Send {
    fn ack(self: Box<Self>);
    /// Back to the queue, for any consumer (`redelivered` set).
    fn requeue(self: Box<Self>);
}

impl Delivery {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        queue: String,
        exchange: String,
        routing_key: String,
        correlation_id: String,
        reply_to: String,
        priority: u8,
        body: Bytes,
        redelivered: bool,
        headers: Vec<(String, String)>,
        acker: Box<dyn Acknowledge>,
    ) -> Delivery {
        Delivery {
            queue,
            exchange,
            routing_key,
            correlation_id,
            reply_to,
            priority,
            body,
            redelivered,
            headers,
            acker: Some(acker),
        }
    }

    /// Splits the delivery into its settlement and the rest (which can then move
    /// freely while the settlement waits for the write to the client).
    pub fn take_settlement(&mut self) -> Settlement {
        Settlement(self.acker.take())
    }

    pub fn ack(mut self) {
        self.take_settlement().ack();
    }

    pub fn requeue(mut self) {
        self.take_settlement().requeue();
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if let Some(acker) = self.acker.take() {
            acker.requeue();
        }
    }
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("queue", &self.queue)
            .field("exchange", &self.exchange)
            .field("routing_key", &self.routing_key)
            .field("correlation_id", &self.correlation_id)
            .field("priority", &self.priority)
            .field("bytes", &self.body.len())
            .finish()
    }
}

/// The acknowledgement of one delivery, apart from its content. Dropped unsettled, it
/// requeues.
pub struct Settlement(Option<Box<dyn Acknowledge>>);

impl Settlement {
    pub fn ack(mut self) {
        if let Some(acker) = self.0.take() {
            acker.ack();
        }
    }

    pub fn requeue(mut self) {
        if let Some(acker) = self.0.take() {
            acker.requeue();
        }
    }
}

impl Drop for Settlement {
    fn drop(&mut self) {
        if let Some(acker) = self.0.take() {
            acker.requeue();
        }
    }
}

/// A running consumer: its deliveries arrive on `deliveries` (at most `prefetch`
/// unacknowledged at once). Dropping it cancels the consumer; its unacknowledged
/// deliveries return to the queue, and a temporary queue is deleted.
pub struct Consumer {
    /// The queue's name (generated by the caller for temporary queues).
    pub queue: String,
    pub deliveries: mpsc::Receiver<Delivery>,
    /// Cancels the consumer when dropped.
    pub guard: Box<dyn Send + Sync>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("queue", &self.queue)
            .finish()
    }
}

/// A message that left its queue unconsumed (expired or rejected) and wants a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub queue: String,
    pub correlation_id: String,
    pub reply_to: String,
    /// The message's body (JSON text), for a timeout reply that echoes it.
    pub body: Bytes,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BusHealth {
    pub kind: &'static str,
    pub up: bool,
    pub last_error: Option<String>,
}

/// What the bus can fail with. The command layer maps each to a client error.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    /// The name is another connection's temporary queue.
    #[error("queue {0} is in use by another connection")]
    QueueLocked(String),
    #[error("Unknown exchange {0}")]
    UnknownExchange(String),
    #[error("exchange {name} exists with type {existing}")]
    ExchangeKindMismatch { name: String, existing: String },
    #[error("Unknown queue {0}")]
    UnknownQueue(String),
    /// The broker cannot be reached now (publishes fail fast instead of waiting).
    #[error("message broker unavailable: {0}")]
    Unavailable(String),
    /// The broker refused the operation (with its text).
    #[error("message broker refused: {0}")]
    Refused(String),
}

/// How long the embedded bus and the AMQP bus wait at most for a publish to settle.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);
