//! Dead letters: client queues dead-letter into the reference's fanout exchange
//! `openflow-dlx`. Every opencore node consumes one shared durable queue bound to it
//! (competing consumers), so each dead letter is reported by one node only; the
//! server turns those with a `reply_to` into `timeout` replies. (Reference servers
//! bind their own temporary queues to the same exchange and answer only for their
//! own reply queues.)

use std::sync::Arc;

use bytes::Bytes;
use lapin::options::{
    BasicAckOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::protocol::AMQPSoftError;
use lapin::types::{AMQPValue, FieldTable};
use lapin::Channel;
use tracing::{debug, warn};

use super::connection::{bounded, throwaway_channel, Link};
use super::consume::{fire, passive_declare, ConsumerState, Role};
use super::{is_soft, lock, map_error, short, Shared};
use crate::bus::{BusError, DeadLetter, DEAD_LETTER_EXCHANGE};

/// The queue all opencore nodes share on `openflow-dlx`.
pub(super) const DEAD_LETTER_QUEUE: &str = "opencore.dlx";
/// Unacknowledged dead letters per node; the rest wait for other nodes.
const PREFETCH: u16 = 32;

/// Registers the dead-letter consumer; the first connection (and every reconnect)
/// starts it like any other consumer.
pub(super) fn register(shared: &Shared, queue: &str) {
    let state = ConsumerState::new(shared, queue.to_string(), Role::DeadLetters, PREFETCH, None);
    lock(&shared.consumers).insert(state.id, Arc::new(state));
}

/// Declares the exchange as the reference does (fanout, not durable, not
/// auto-delete, no arguments) and the shared queue (durable, no dead-letter exchange
/// of its own so nothing loops), bound to it. Returns a channel to consume on.
pub(super) async fn declare(
    shared: &Shared,
    link: &Link,
    channel: Channel,
    queue: &str,
) -> Result<Channel, BusError> {
    let options = ExchangeDeclareOptions {
        durable: false,
        auto_delete: false,
        ..Default::default()
    };
    let declared = channel.exchange_declare(
        DEAD_LETTER_EXCHANGE.into(),
        lapin::ExchangeKind::Fanout,
        options,
        FieldTable::default(),
    );
    let channel = match bounded(declared).await {
        Ok(()) => channel,
        Err(e) if is_soft(&e, AMQPSoftError::PRECONDITIONFAILED) => {
            warn!(exchange = DEAD_LETTER_EXCHANGE, error = %e, "dead-letter exchange exists with other settings; using it");
            throwaway_channel(shared, link).await?
        }
        Err(e) => return Err(map_error(shared, &e)),
    };
    let options = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let name = short("dead-letter queue", queue)?;
    let declared = channel.queue_declare(name.clone(), options, FieldTable::default());
    let channel = match bounded(declared).await {
        Ok(_) => channel,
        Err(e) if is_soft(&e, AMQPSoftError::PRECONDITIONFAILED) => {
            warn!(%queue, error = %e, "dead-letter queue exists with other arguments; using it");
            passive_declare(shared, link, queue).await?
        }
        Err(e) => return Err(map_error(shared, &e)),
    };
    let bound = channel.queue_bind(
        name,
        DEAD_LETTER_EXCHANGE.into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    );
    bounded(bound).await.map_err(|e| map_error(shared, &e))?;
    Ok(channel)
}

/// Reports one dead letter (if it wants a reply) and acknowledges it. While nobody
/// reads the dead letters this waits, leaving the rest to other nodes.
pub(super) async fn handle(shared: &Shared, delivery: lapin::message::Delivery) {
    let lapin::message::Delivery {
        routing_key,
        properties,
        data,
        acker,
        ..
    } = delivery;
    let reply_to = properties
        .reply_to()
        .as_ref()
        .map(|s| s.to_string())
        .unwrap_or_default();
    if !reply_to.is_empty() {
        let dead_letter = DeadLetter {
            queue: original_queue(properties.headers().as_ref())
                .unwrap_or_else(|| routing_key.to_string()),
            correlation_id: properties
                .correlation_id()
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_default(),
            reply_to,
            body: Bytes::from(data),
        };
        tokio::select! {
            sent = shared.dead_letters_tx.send(dead_letter) => if sent.is_err() {
                debug!("dead letter dropped: nobody reads dead letters any more");
            },
            // Unacknowledged, it goes back to the queue when the channel closes.
            _ = shared.shutdown.cancelled() => return,
        }
    }
    fire(acker.ack(BasicAckOptions::default()));
}

/// The queue a message died in: the `queue` of the newest `x-death` entry.
pub(super) fn original_queue(headers: Option<&FieldTable>) -> Option<String> {
    let AMQPValue::FieldArray(deaths) = headers?.inner().get("x-death")? else {
        return None;
    };
    let AMQPValue::FieldTable(newest) = deaths.as_slice().first()? else {
        return None;
    };
    match newest.inner().get("queue")? {
        AMQPValue::LongString(queue) => {
            Some(String::from_utf8_lossy(queue.as_bytes()).into_owned())
        }
        AMQPValue::ShortString(queue) => Some(queue.to_string()),
        _ => None,
    }
}
