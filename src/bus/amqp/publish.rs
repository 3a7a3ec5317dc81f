//! Publishing with publisher confirms on a small pool of confirm-mode channels,
//! pipelined: many publishes are in flight at once on each channel and one collector
//! task per channel settles them in order. A target always uses the same channel, so
//! messages to one queue keep their order (AMQP orders per channel only); several
//! channels let the broker spread the work over several channel processes.
//!
//! Two lapin details shape this:
//! - `basic_publish` takes the delivery tag and queues the frames in two steps; two
//!   tasks interleaving them would get each other's confirms. Both steps happen in
//!   the future's first poll, so that poll runs under a (never contended for long)
//!   mutex, which also orders the hand-over to the collector.
//! - lapin attaches a returned (unroutable) message to the first confirmation the
//!   broker's next ack completes, which with `multiple` acks may be another
//!   publish's. Each message therefore carries its own id as `message_id`, and the
//!   collector matches returns by that id, looking at every confirmation of the same
//!   ack before settling a publish.

use std::collections::{HashSet, VecDeque};
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll, Waker};

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::protocol::AMQPSoftError;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, PublisherConfirm};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::warn;

use super::connection::{bounded, throwaway_channel, Link};
use super::{amqp_error, is_soft, lock, map_error, short, Shared};
use crate::bus::PUBLISH_TIMEOUT;
use crate::bus::{BusError, ExchangeKind, OutgoingMessage, Published, Target, MAX_PRIORITY};

/// Publish channels per connection.
const PUBLISH_CHANNELS: usize = 4;

/// The publish channels of a link.
pub(super) struct Publisher {
    slots: Vec<Slot>,
}

/// One publish channel, reopened if the broker closes it alone.
struct Slot {
    current: RwLock<Arc<PublishChannel>>,
    reopen: tokio::sync::Mutex<()>,
}

struct PublishChannel {
    channel: Channel,
    /// Held for the first poll of each publish and the hand-over to the collector.
    submit: Mutex<mpsc::UnboundedSender<InFlight>>,
}

type Settled = Result<Published, Failure>;

enum Failure {
    /// The broker could not take the message (publisher nack).
    Nack,
    Timeout,
    Lapin(lapin::Error),
}
type Sending = Pin<Box<dyn Future<Output = lapin::Result<PublisherConfirm>> + Send>>;

struct InFlight {
    id: u64,
    /// Settled as a timeout past this (one timer for the head instead of one per
    /// publish).
    deadline: Instant,
    stage: Stage,
    reply: oneshot::Sender<Settled>,
}

enum Stage {
    /// Frames queued, not yet written.
    Sending(Sending),
    Confirming(PublisherConfirm),
    /// `Ok(acked)`; a return for it may still be attached to a later confirmation.
    Done(lapin::Result<bool>),
}

impl Publisher {
    pub(super) async fn open(connection: &Connection) -> lapin::Result<Publisher> {
        let mut slots = Vec::with_capacity(PUBLISH_CHANNELS);
        for _ in 0..PUBLISH_CHANNELS {
            slots.push(Slot {
                current: RwLock::new(PublishChannel::open(connection).await?),
                reopen: tokio::sync::Mutex::new(()),
            });
        }
        Ok(Publisher { slots })
    }

    /// The channel for messages to `target`.
    async fn channel(
        &self,
        connection: &Connection,
        target: &Target,
    ) -> lapin::Result<Arc<PublishChannel>> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::hash::DefaultHasher::new();
        match target {
            Target::Queue(queue) => ("", queue.as_str()).hash(&mut hasher),
            Target::Exchange { name, routing_key } => {
                (name.as_str(), routing_key.as_str()).hash(&mut hasher)
            }
        }
        let index = hasher.finish() as usize % self.slots.len().max(1);
        match self.slots.get(index) {
            Some(slot) => slot.channel(connection).await,
            None => Err(std::io::Error::other("no publish channel").into()),
        }
    }
}

impl Slot {
    async fn channel(&self, connection: &Connection) -> lapin::Result<Arc<PublishChannel>> {
        let current = self
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if current.channel.status().connected() {
            return Ok(current);
        }
        let _reopening = self.reopen.lock().await;
        let current = self
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if current.channel.status().connected() {
            return Ok(current);
        }
        let fresh = PublishChannel::open(connection).await?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = fresh.clone();
        Ok(fresh)
    }
}

impl PublishChannel {
    async fn open(connection: &Connection) -> lapin::Result<Arc<PublishChannel>> {
        let channel = bounded(connection.create_channel()).await?;
        bounded(channel.confirm_select(ConfirmSelectOptions::default())).await?;
        let (submit, pending) = mpsc::unbounded_channel();
        tokio::spawn(collect(pending));
        Ok(Arc::new(PublishChannel {
            channel,
            submit: Mutex::new(submit),
        }))
    }
}

pub(super) async fn publish(
    shared: &Shared,
    message: OutgoingMessage,
) -> Result<Published, BusError> {
    let link = shared.link()?;
    let (exchange, routing_key) = match &message.target {
        Target::Queue(queue) => (short("queue name", "")?, short("queue name", queue)?),
        Target::Exchange { name, routing_key } => {
            ensure_exchange(shared, &link, name).await?;
            (
                short("exchange name", name)?,
                short("routing key", routing_key)?,
            )
        }
    };
    let id = shared.next_id();
    let properties = properties(&message, id)?;
    let publish_channel = link
        .publisher
        .channel(&link.connection, &message.target)
        .await
        .map_err(|e| map_error(shared, &e))?;

    let channel = publish_channel.channel.clone();
    let body = message.body.clone();
    let options = BasicPublishOptions {
        mandatory: true,
        immediate: false,
    };
    let mut sending: Sending = Box::pin(async move {
        channel
            .basic_publish(exchange, routing_key, options, &body, properties)
            .await
    });
    let (reply, settled) = oneshot::channel();
    {
        let submit = lock(&publish_channel.submit);
        // Takes the delivery tag and queues the frames (see the module comment).
        let first = sending
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()));
        let stage = match first {
            Poll::Ready(Ok(confirm)) => Stage::Confirming(confirm),
            Poll::Ready(Err(error)) => Stage::Done(Err(error)),
            Poll::Pending => Stage::Sending(sending),
        };
        let deadline = Instant::now() + PUBLISH_TIMEOUT;
        if submit
            .send(InFlight {
                id,
                deadline,
                stage,
                reply,
            })
            .is_err()
        {
            return Err(BusError::Unavailable("publish channel closed".into()));
        }
    }
    match settled.await {
        Ok(Ok(published)) => Ok(published),
        Ok(Err(Failure::Nack)) => Err(BusError::Refused(
            "the broker did not accept the message".into(),
        )),
        Ok(Err(Failure::Timeout)) => Err(BusError::Unavailable(format!(
            "no publisher confirm within {} s",
            PUBLISH_TIMEOUT.as_secs()
        ))),
        Ok(Err(Failure::Lapin(error))) => Err(publish_error(shared, &message.target, &error)),
        Err(_) => Err(BusError::Unavailable("publish channel closed".into())),
    }
}

fn properties(message: &OutgoingMessage, id: u64) -> Result<BasicProperties, BusError> {
    let mut headers = FieldTable::default();
    for (key, value) in &message.headers {
        headers.insert(
            short("header name", key)?,
            AMQPValue::LongString(value.as_str().into()),
        );
    }
    let mut properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_priority(message.priority.min(MAX_PRIORITY))
        .with_message_id(id.to_string().into())
        .with_headers(headers);
    if !message.correlation_id.is_empty() {
        properties =
            properties.with_correlation_id(short("correlation id", &message.correlation_id)?);
    }
    if !message.reply_to.is_empty() {
        properties = properties.with_reply_to(short("reply to", &message.reply_to)?);
    }
    // Zero means no time limit (RabbitMQ would read "0" as "now or never").
    let ttl = message.expiration.as_millis();
    if ttl > 0 {
        properties = properties.with_expiration(ttl.to_string().into());
    }
    Ok(properties)
}

/// Settles in-flight publishes in delivery-tag order until the channel's
/// `PublishChannel` is gone and nothing is left.
async fn collect(mut pending: mpsc::UnboundedReceiver<InFlight>) {
    let mut queue: VecDeque<InFlight> = VecDeque::new();
    // Ids whose return was seen (on whichever confirmation lapin attached it to).
    let mut returned: HashSet<u64> = HashSet::new();
    // Entries at the front already known to be `Done`.
    let mut done_prefix = 0usize;
    let mut open = true;
    // Armed for the head's deadline (`timer_for` is the head's id).
    let mut timer = Box::pin(tokio::time::sleep(PUBLISH_TIMEOUT));
    let mut timer_for = None;
    poll_fn(|cx| loop {
        while open {
            match pending.poll_recv(cx) {
                Poll::Ready(Some(entry)) => queue.push_back(entry),
                Poll::Ready(None) => open = false,
                Poll::Pending => break,
            }
        }
        if done_prefix == 0 {
            match queue.front_mut() {
                None if open => return Poll::Pending,
                None => return Poll::Ready(()),
                Some(head) => {
                    if !advance(head, cx, &mut returned) {
                        if Instant::now() < head.deadline {
                            if timer_for != Some(head.id) {
                                timer.as_mut().reset(head.deadline);
                                timer_for = Some(head.id);
                            }
                            if timer.as_mut().poll(cx).is_pending() {
                                return Poll::Pending;
                            }
                        }
                        // No confirm in time: fail it (its confirm, if it ever
                        // comes, is ignored) and go on with the next.
                        if let Some(head) = queue.pop_front() {
                            let _ = head.reply.send(Err(Failure::Timeout));
                        }
                        continue;
                    }
                    done_prefix = 1;
                }
            }
        }
        // Every confirmation of the ack that settled the head is ready now: look at
        // them before deciding whether the head came back unroutable.
        while let Some(entry) = queue.get_mut(done_prefix) {
            if !advance(entry, cx, &mut returned) {
                break;
            }
            done_prefix += 1;
        }
        if let Some(head) = queue.pop_front() {
            done_prefix -= 1;
            settle(head, &mut returned);
        }
    })
    .await
}

/// Moves an entry forward; true once it is `Done`.
fn advance(entry: &mut InFlight, cx: &mut Context<'_>, returned: &mut HashSet<u64>) -> bool {
    loop {
        match &mut entry.stage {
            Stage::Sending(sending) => match sending.as_mut().poll(cx) {
                Poll::Ready(Ok(confirm)) => entry.stage = Stage::Confirming(confirm),
                Poll::Ready(Err(error)) => entry.stage = Stage::Done(Err(error)),
                Poll::Pending => return false,
            },
            Stage::Confirming(confirm) => match Pin::new(confirm).poll(cx) {
                Poll::Ready(Ok(confirmation)) => {
                    let acked = confirmation.is_ack();
                    if let Some(message) = confirmation.take_message() {
                        let id = message.delivery.properties.message_id().as_ref();
                        if let Some(id) = id.and_then(|id| id.as_str().parse::<u64>().ok()) {
                            returned.insert(id);
                        }
                    }
                    entry.stage = Stage::Done(Ok(acked));
                }
                Poll::Ready(Err(error)) => entry.stage = Stage::Done(Err(error)),
                Poll::Pending => return false,
            },
            Stage::Done(_) => return true,
        }
    }
}

fn settle(entry: InFlight, returned: &mut HashSet<u64>) {
    let result = match entry.stage {
        Stage::Done(Ok(_)) if returned.remove(&entry.id) => Ok(Published::Unroutable),
        Stage::Done(Ok(true)) => Ok(Published::Routed),
        Stage::Done(Ok(false)) => Err(Failure::Nack),
        Stage::Done(Err(error)) => Err(Failure::Lapin(error)),
        // Not reached: only `Done` entries are settled.
        Stage::Sending(_) | Stage::Confirming(_) => return,
    };
    // Returns are always seen before their message settles; anything older left in
    // the set can never match again.
    if returned.len() > 1024 {
        returned.retain(|id| *id > entry.id);
    }
    let _ = entry.reply.send(result);
}

/// A publish to an exchange deleted behind the bus's back closes the publish channel
/// ("NOT_FOUND - no exchange 'x' ..."): the exchange leaves the cache (the channel
/// reopens on the next publish).
fn publish_error(shared: &Shared, target: &Target, error: &lapin::Error) -> BusError {
    if is_soft(error, AMQPSoftError::NOTFOUND) {
        let text = amqp_error(error).map(|(_, text)| text).unwrap_or_default();
        let gone = text
            .split('\'')
            .nth(1)
            .filter(|_| text.contains("no exchange"));
        if let Some(gone) = gone {
            lock(&shared.known_exchanges).remove(gone);
            if matches!(target, Target::Exchange { name, .. } if name == gone) {
                return BusError::UnknownExchange(gone.to_string());
            }
        }
    }
    map_error(shared, error)
}

/// Publishing to a missing exchange makes the broker close the publish channel
/// (failing every publish in flight on it), so exchanges are checked first: known
/// ones from the cache, others with a passive declare on a throwaway channel.
async fn ensure_exchange(shared: &Shared, link: &Link, name: &str) -> Result<(), BusError> {
    if name.is_empty() || lock(&shared.known_exchanges).contains(name) {
        return Ok(());
    }
    let exchange = short("exchange name", name)?;
    let channel = throwaway_channel(shared, link).await?;
    let options = ExchangeDeclareOptions {
        passive: true,
        ..ExchangeDeclareOptions::default()
    };
    let declared = channel.exchange_declare(
        exchange,
        lapin::ExchangeKind::Direct, // ignored by a passive declare
        options,
        FieldTable::default(),
    );
    match bounded(declared).await {
        Ok(()) => {
            lock(&shared.known_exchanges).insert(name.to_string());
            Ok(())
        }
        Err(e) if is_soft(&e, AMQPSoftError::NOTFOUND) => {
            Err(BusError::UnknownExchange(name.to_string()))
        }
        Err(e) => Err(map_error(shared, &e)),
    }
}

/// Declares an exchange like the reference does (`durable: false, auto_delete:
/// false`), on a throwaway channel since a conflict closes it.
pub(super) async fn declare_exchange(
    shared: &Shared,
    link: &Link,
    name: &str,
    kind: ExchangeKind,
) -> Result<(), BusError> {
    let exchange = short("exchange name", name)?;
    let lapin_kind = match kind {
        ExchangeKind::Direct => lapin::ExchangeKind::Direct,
        ExchangeKind::Fanout => lapin::ExchangeKind::Fanout,
        ExchangeKind::Topic => lapin::ExchangeKind::Topic,
        ExchangeKind::Headers => lapin::ExchangeKind::Headers,
    };
    let channel = throwaway_channel(shared, link).await?;
    let options = ExchangeDeclareOptions {
        durable: false,
        auto_delete: false,
        ..Default::default()
    };
    let declared =
        channel.exchange_declare(exchange.clone(), lapin_kind, options, FieldTable::default());
    let error = match bounded(declared).await {
        Ok(()) => return Ok(()),
        Err(error) => error,
    };
    let Some((_, text)) =
        amqp_error(&error).filter(|_| is_soft(&error, AMQPSoftError::PRECONDITIONFAILED))
    else {
        return Err(map_error(shared, &error));
    };
    // "inequivalent arg 'type' for exchange 'x' in vhost '/': received 'fanout' but
    // current is 'direct'". The broker checks the type first, so any other
    // inequivalence (durable, auto_delete: older reference versions declare their
    // exchanges auto-delete) means the type matches: use the exchange as it is.
    if text.contains("inequivalent arg 'type'") {
        let existing = text
            .rsplit("current is '")
            .next()
            .and_then(|rest| rest.split('\'').next())
            .unwrap_or("unknown")
            .to_string();
        return Err(BusError::ExchangeKindMismatch {
            name: name.to_string(),
            existing,
        });
    }
    warn!(exchange = %name, broker = %text, "exchange exists with other settings; using it as it is");
    Ok(())
}
