//! Consumers: one channel each (so `basic_qos` is per consumer and closing it
//! requeues exactly its unacknowledged messages), a task forwarding deliveries into
//! the consumer's bounded mpsc, and a registry so a reconnect can start each live
//! consumer again on the new connection, feeding the same mpsc.

use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::protocol::AMQPSoftError;
use lapin::types::FieldTable;
use lapin::{Acker, Channel};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::connection::{bounded, throwaway_channel, Link};
use super::{
    amqp_error, dead_letters, headers_to_strings, is_soft, lock, map_error, queue_arguments, short,
    Shared,
};
use crate::bus::{Acknowledge, BusError, Consumer, Delivery, QueueKind, QueueSpec, MAX_PRIORITY};

/// A consumer as the bus remembers it across reconnects.
pub(super) struct ConsumerState {
    pub(super) id: u64,
    pub(super) queue: String,
    pub(super) role: Role,
    prefetch: u16,
    /// Cancelled by the consumer's guard (or when the bus gives the consumer up).
    pub(super) cancel: CancellationToken,
    /// The sender the forwarding tasks clone; taken away to end the consumer, so its
    /// owner's receiver sees the end once the last task stops.
    deliveries: std::sync::Mutex<Option<mpsc::Sender<Delivery>>>,
    /// On which link (generation, task token) a forwarding task runs; held while
    /// (re-)establishing so two restores never start the consumer twice.
    running: tokio::sync::Mutex<Option<(u64, u64)>>,
}

pub(super) enum Role {
    Client(QueueKind),
    /// The node's share of `openflow-dlx` (see [`dead_letters`]).
    DeadLetters,
}

impl ConsumerState {
    pub(super) fn new(
        shared: &Shared,
        queue: String,
        role: Role,
        prefetch: u16,
        deliveries: Option<mpsc::Sender<Delivery>>,
    ) -> ConsumerState {
        ConsumerState {
            id: shared.next_id(),
            queue,
            role,
            prefetch,
            cancel: CancellationToken::new(),
            deliveries: std::sync::Mutex::new(deliveries),
            running: tokio::sync::Mutex::new(None),
        }
    }
}

/// Cancels its consumer when dropped (also when `consume` fails or is abandoned).
struct Guard {
    shared: Arc<Shared>,
    state: Arc<ConsumerState>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        forget(&self.shared, &self.state);
    }
}

/// Stops a consumer for good: its task closes its channel (the broker requeues what
/// was unacknowledged and deletes a temporary queue) and no reconnect restores it.
fn forget(shared: &Shared, state: &ConsumerState) {
    state.cancel.cancel();
    lock(&state.deliveries).take();
    lock(&shared.consumers).remove(&state.id);
    if matches!(state.role, Role::Client(QueueKind::Temporary)) {
        lock(&shared.temp_queues).remove(&state.queue);
        lock(&shared.temp_bindings).remove(&state.queue);
    }
}

pub(super) async fn consume(
    shared: &Arc<Shared>,
    spec: &QueueSpec,
    prefetch: u16,
) -> Result<Consumer, BusError> {
    short("queue name", &spec.name)?;
    if spec.kind == QueueKind::Named && lock(&shared.temp_queues).contains(&spec.name) {
        return Err(BusError::QueueLocked(spec.name.clone()));
    }
    let link = shared.link()?;
    let (tx, rx) = mpsc::channel(usize::from(prefetch.max(1)));
    let state = Arc::new(ConsumerState::new(
        shared,
        spec.name.clone(),
        Role::Client(spec.kind),
        prefetch,
        Some(tx),
    ));
    // One consumer per temporary queue: the broker would let this connection's
    // clients share it.
    if spec.kind == QueueKind::Temporary && !lock(&shared.temp_queues).insert(spec.name.clone()) {
        return Err(BusError::QueueLocked(spec.name.clone()));
    }
    lock(&shared.consumers).insert(state.id, state.clone());
    let guard = Guard {
        shared: shared.clone(),
        state: state.clone(),
    };
    establish(shared, &link, &state).await?;
    Ok(Consumer {
        queue: spec.name.clone(),
        deliveries: rx,
        guard: Box::new(guard),
    })
}

/// Starts every registered consumer on a new link. A consumer the broker now refuses
/// is ended (its owner sees its receiver close); a lost connection fails the link.
pub(super) async fn restore_all(shared: &Arc<Shared>, link: &Arc<Link>) -> Result<(), String> {
    let states: Vec<_> = lock(&shared.consumers).values().cloned().collect();
    for state in states {
        match establish(shared, link, &state).await {
            Ok(()) => {}
            Err(BusError::Unavailable(error)) => return Err(error),
            Err(error) if matches!(state.role, Role::DeadLetters) => {
                // Kept registered: the next reconnect tries again.
                warn!(%error, "dead-letter consumer not restored");
            }
            Err(error) => {
                warn!(queue = %state.queue, %error, "consumer not restored; ending it");
                forget(shared, &state);
            }
        }
    }
    Ok(())
}

/// Declares the consumer's queue, sets its prefetch and starts consuming on a new
/// channel, unless it already runs on this link. (Boxed: it spawns the forwarding
/// task, which may call it again.)
fn establish<'a>(
    shared: &'a Arc<Shared>,
    link: &'a Link,
    state: &'a Arc<ConsumerState>,
) -> Pin<Box<dyn Future<Output = Result<(), BusError>> + Send + 'a>> {
    Box::pin(establish_now(shared, link, state))
}

async fn establish_now(
    shared: &Arc<Shared>,
    link: &Link,
    state: &Arc<ConsumerState>,
) -> Result<(), BusError> {
    let mut running = state.running.lock().await;
    if state.cancel.is_cancelled()
        || running.is_some_and(|(generation, _)| generation == link.generation)
    {
        return Ok(());
    }
    let queue = short("queue name", &state.queue)?;
    let channel = throwaway_channel(shared, link).await?;
    let channel = match &state.role {
        Role::Client(kind) => declare_queue(shared, link, channel, &state.queue, *kind).await?,
        Role::DeadLetters => dead_letters::declare(shared, link, channel, &state.queue).await?,
    };
    if matches!(state.role, Role::Client(QueueKind::Temporary)) {
        rebind(shared, link, &state.queue).await;
    }
    bounded(channel.basic_qos(state.prefetch, BasicQosOptions::default()))
        .await
        .map_err(|e| map_error(shared, &e))?;
    let options = BasicConsumeOptions {
        no_ack: false,
        ..BasicConsumeOptions::default()
    };
    let consumer = bounded(channel.basic_consume(queue, "".into(), options, FieldTable::default()))
        .await
        .map_err(|e| consume_error(shared, &state.queue, &e))?;
    let token = shared.next_id();
    *running = Some((link.generation, token));
    let deliveries = lock(&state.deliveries).clone();
    tokio::spawn(forward(
        shared.clone(),
        state.clone(),
        channel,
        consumer,
        link.generation,
        token,
        deliveries,
    ));
    Ok(())
}

/// Declares a client queue with the bus's arguments. A queue that exists with other
/// arguments (e.g. created by the reference server, which sets no `x-max-priority`)
/// is used as it is; the broker closed the channel, so a new one is returned.
async fn declare_queue(
    shared: &Shared,
    link: &Link,
    channel: Channel,
    name: &str,
    kind: QueueKind,
) -> Result<Channel, BusError> {
    let queue = short("queue name", name)?;
    let options = match kind {
        QueueKind::Named => QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        QueueKind::Temporary => QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..Default::default()
        },
    };
    let error =
        match bounded(channel.queue_declare(queue.clone(), options, queue_arguments())).await {
            Ok(_) => return Ok(channel),
            Err(error) => error,
        };
    if is_soft(&error, AMQPSoftError::RESOURCELOCKED)
        || (kind == QueueKind::Temporary && is_soft(&error, AMQPSoftError::PRECONDITIONFAILED))
    {
        // Another connection's exclusive queue; or a temporary name that is taken.
        return Err(BusError::QueueLocked(name.to_string()));
    }
    if !is_soft(&error, AMQPSoftError::PRECONDITIONFAILED) {
        return Err(map_error(shared, &error));
    }
    let text = amqp_error(&error).map(|(_, text)| text).unwrap_or_default();
    warn!(queue = %name, broker = %text, "queue exists with other arguments; consuming it as it is");
    passive_declare(shared, link, name).await
}

/// Checks that a queue exists, on a new channel (returned for further use).
pub(super) async fn passive_declare(
    shared: &Shared,
    link: &Link,
    name: &str,
) -> Result<Channel, BusError> {
    let queue = short("queue name", name)?;
    let channel = throwaway_channel(shared, link).await?;
    let options = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    match bounded(channel.queue_declare(queue, options, FieldTable::default())).await {
        Ok(_) => Ok(channel),
        Err(e) if is_soft(&e, AMQPSoftError::RESOURCELOCKED) => {
            Err(BusError::QueueLocked(name.to_string()))
        }
        Err(e) if is_soft(&e, AMQPSoftError::NOTFOUND) => {
            Err(BusError::UnknownQueue(name.to_string()))
        }
        Err(e) => Err(map_error(shared, &e)),
    }
}

fn consume_error(shared: &Shared, queue: &str, error: &lapin::Error) -> BusError {
    if is_soft(error, AMQPSoftError::RESOURCELOCKED) || is_soft(error, AMQPSoftError::ACCESSREFUSED)
    {
        BusError::QueueLocked(queue.to_string())
    } else if is_soft(error, AMQPSoftError::NOTFOUND) {
        BusError::UnknownQueue(queue.to_string())
    } else {
        map_error(shared, error)
    }
}

/// Binds on a throwaway channel (a missing queue or exchange closes it) and
/// remembers the bindings of temporary queues, which die with the connection.
pub(super) async fn bind(
    shared: &Shared,
    link: &Link,
    queue: &str,
    exchange: &str,
    routing_key: &str,
) -> Result<(), BusError> {
    bind_once(shared, link, queue, exchange, routing_key).await?;
    if lock(&shared.temp_queues).contains(queue) {
        let mut bindings = lock(&shared.temp_bindings);
        let list = bindings.entry(queue.to_string()).or_default();
        let binding = (exchange.to_string(), routing_key.to_string());
        if !list.contains(&binding) {
            list.push(binding);
        }
    }
    Ok(())
}

async fn bind_once(
    shared: &Shared,
    link: &Link,
    queue: &str,
    exchange: &str,
    routing_key: &str,
) -> Result<(), BusError> {
    let (q, ex, key) = (
        short("queue name", queue)?,
        short("exchange name", exchange)?,
        short("routing key", routing_key)?,
    );
    let channel = throwaway_channel(shared, link).await?;
    let bound = channel.queue_bind(
        q,
        ex,
        key,
        QueueBindOptions::default(),
        FieldTable::default(),
    );
    match bounded(bound).await {
        Ok(()) => Ok(()),
        Err(e) if is_soft(&e, AMQPSoftError::NOTFOUND) => {
            let text = amqp_error(&e).map(|(_, text)| text).unwrap_or_default();
            if text.contains("no exchange") {
                Err(BusError::UnknownExchange(exchange.to_string()))
            } else {
                Err(BusError::UnknownQueue(queue.to_string()))
            }
        }
        Err(e) if is_soft(&e, AMQPSoftError::RESOURCELOCKED) => {
            Err(BusError::QueueLocked(queue.to_string()))
        }
        Err(e) => Err(map_error(shared, &e)),
    }
}

/// Re-creates a temporary queue's bindings after a reconnect (best effort: an
/// exchange may be gone).
async fn rebind(shared: &Shared, link: &Link, queue: &str) {
    let bindings = lock(&shared.temp_bindings)
        .get(queue)
        .cloned()
        .unwrap_or_default();
    for (exchange, routing_key) in bindings {
        if let Err(error) = bind_once(shared, link, queue, &exchange, &routing_key).await {
            warn!(%queue, %exchange, %error, "binding not restored");
        }
    }
}

/// Forwards deliveries until the consumer is cancelled or its channel ends.
async fn forward(
    shared: Arc<Shared>,
    state: Arc<ConsumerState>,
    channel: Channel,
    mut consumer: lapin::Consumer,
    generation: u64,
    token: u64,
    deliveries: Option<mpsc::Sender<Delivery>>,
) {
    // One stop future for the task's life: a fresh cancellation waiter per delivery
    // costs a lock each.
    let stop = async {
        tokio::select! {
            _ = state.cancel.cancelled() => {}
            _ = shared.shutdown.cancelled() => {}
        }
    };
    tokio::pin!(stop);
    loop {
        let next = tokio::select! {
            biased;
            next = consumer.next() => next,
            _ = &mut stop => break,
        };
        let delivery = match next {
            Some(Ok(delivery)) => delivery,
            // An error is always followed by the end of the stream.
            Some(Err(_)) => continue,
            None => {
                ended(&shared, &state, generation, token).await;
                return;
            }
        };
        let Some(tx) = &deliveries else {
            dead_letters::handle(&shared, delivery).await;
            continue;
        };
        let delivery = match tx.try_send(to_delivery(&state.queue, delivery)) {
            Ok(()) => continue,
            Err(mpsc::error::TrySendError::Full(delivery)) => delivery,
            Err(mpsc::error::TrySendError::Closed(_)) => {
                // The owner dropped its receiver without the guard: the unsent
                // delivery requeued as it dropped.
                forget(&shared, &state);
                break;
            }
        };
        tokio::select! {
            sent = tx.send(delivery) => if sent.is_err() {
                forget(&shared, &state);
                break;
            },
            _ = &mut stop => break,
        }
    }
    // Closing the channel requeues its unacknowledged deliveries at once (and lets a
    // temporary queue auto-delete).
    let _ = tokio::time::timeout(Duration::from_secs(2), channel.close(200, "OK".into())).await;
}

/// The consumer's stream ended without a cancel: the connection is gone (the
/// supervisor restores it on the next link), or the broker cancelled it alone (its
/// queue was deleted, its channel closed): then it is restarted on this link.
async fn ended(shared: &Arc<Shared>, state: &Arc<ConsumerState>, generation: u64, token: u64) {
    {
        let mut running = state.running.lock().await;
        if *running == Some((generation, token)) {
            *running = None;
        }
    }
    let mut delay = Duration::from_millis(500);
    while !state.cancel.is_cancelled() && !shared.shutdown.is_cancelled() {
        let Ok(link) = shared.link() else { return };
        if link.generation != generation {
            return;
        }
        tokio::time::sleep(delay).await;
        match establish(shared, &link, state).await {
            Ok(()) => return,
            Err(BusError::Unavailable(_)) => return,
            Err(error) if matches!(state.role, Role::DeadLetters) => {
                warn!(%error, "dead-letter consumer not restarted yet");
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(error) => {
                warn!(queue = %state.queue, %error, "consumer cancelled by the broker; ending it");
                forget(shared, state);
                return;
            }
        }
    }
}

fn to_delivery(queue: &str, delivery: lapin::message::Delivery) -> Delivery {
    let lapin::message::Delivery {
        exchange,
        routing_key,
        redelivered,
        properties,
        data,
        acker,
        ..
    } = delivery;
    let text = |value: &Option<lapin::types::ShortString>| {
        value.as_ref().map(|s| s.to_string()).unwrap_or_default()
    };
    Delivery::new(
        queue.to_string(),
        exchange.to_string(),
        routing_key.to_string(),
        text(properties.correlation_id()),
        text(properties.reply_to()),
        properties.priority().unwrap_or(0).min(MAX_PRIORITY),
        Bytes::from(data),
        redelivered,
        headers_to_strings(properties.headers().as_ref()),
        Box::new(AmqpAcker(acker)),
    )
}

/// Settles a delivery on the channel it came from. A closed channel makes this a
/// no-op, and the broker has requeued the message already.
struct AmqpAcker(Acker);

impl Acknowledge for AmqpAcker {
    fn ack(self: Box<Self>) {
        fire(self.0.ack(BasicAckOptions::default()));
    }

    fn requeue(self: Box<Self>) {
        fire(self.0.nack(BasicNackOptions {
            requeue: true,
            multiple: false,
        }));
    }
}

/// Runs a lapin ack/nack without waiting for it: the command is handed to lapin's IO
/// loop in the future's first poll, and AMQP sends no reply to await. This works in
/// any context (a `Delivery` may be dropped outside the runtime).
pub(super) fn fire(operation: impl Future) {
    let mut operation = pin!(operation);
    let _ = operation
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()));
}
