//! RabbitMQ bus through `lapin`: one AMQP connection per node, shared by every
//! client connection of that node, interoperating with the reference server on the
//! same broker (same dead-letter exchange, same queue arguments where it matters).
//!
//! - [`connection`]: the connection, its health, and the reconnect loop that puts
//!   every live consumer back after a broker outage;
//! - [`publish`]: publishing with publisher confirms, pipelined on one channel;
//! - [`consume`]: one channel per consumer, acknowledgements, cancellation;
//! - [`dead_letters`]: the shared queue on `openflow-dlx` that turns expired messages
//!   into [`DeadLetter`]s.
//!
//! lapin logs every returned (unroutable) message at `warn` with its body, which
//! carries the sender's `__jwt`, and every channel the broker closes (an expected
//! passive-declare 404) at `error`: the log filter should quiet
//! `lapin::returned_messages` and `lapin::channel`.

mod connection;
mod consume;
mod dead_letters;
mod publish;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use super::{
    Bus, BusError, BusHealth, Consumer, DeadLetter, ExchangeKind, OutgoingMessage, Published,
    QueueSpec,
};
use connection::Link;
use consume::ConsumerState;

/// A RabbitMQ-backed [`Bus`]. Dropping it stops its background tasks and closes its
/// connection.
pub struct AmqpBus {
    shared: Arc<Shared>,
}

impl AmqpBus {
    /// Connects to `url` (`amqp://user:password@host:port/vhost`), waiting at most
    /// [`connection::FIRST_CONNECT_TIMEOUT`] for the broker; later outages are
    /// repaired in the background.
    pub async fn connect(url: &str) -> Result<AmqpBus, BusError> {
        AmqpBus::connect_with(url, "opencore", Some(dead_letters::DEAD_LETTER_QUEUE)).await
    }

    /// Like [`AmqpBus::connect`], with the connection name the broker shows and the
    /// dead-letter queue to share (`None`: none). Tests use both to stay apart from
    /// each other and from servers on the same broker.
    pub(crate) async fn connect_with(
        url: &str,
        connection_name: &str,
        dead_letter_queue: Option<&str>,
    ) -> Result<AmqpBus, BusError> {
        // A malformed URL is reported at once rather than retried for seconds.
        if let Err(error) = url.parse::<lapin::uri::AMQPUri>() {
            let shared = Shared::new(url);
            return Err(BusError::Unavailable(format!(
                "invalid AMQP URL {}: {}",
                shared.redacted_url,
                shared.scrub(&error)
            )));
        }
        let shared = Arc::new(Shared::new(url));
        if let Some(queue) = dead_letter_queue {
            dead_letters::register(&shared, queue);
        }
        connection::start(&shared, connection_name).await?;
        Ok(AmqpBus { shared })
    }
}

impl Drop for AmqpBus {
    fn drop(&mut self) {
        // The background tasks hold the shared state; they stop on this token and
        // drop the connection's channels, which closes it.
        self.shared.shutdown.cancel();
    }
}

#[async_trait::async_trait]
impl Bus for AmqpBus {
    fn kind(&self) -> &'static str {
        "amqp"
    }

    async fn consume(&self, queue: &QueueSpec, prefetch: u16) -> Result<Consumer, BusError> {
        consume::consume(&self.shared, queue, prefetch).await
    }

    async fn declare_exchange(&self, name: &str, kind: ExchangeKind) -> Result<(), BusError> {
        let link = self.shared.link()?;
        publish::declare_exchange(&self.shared, &link, name, kind).await?;
        lock(&self.shared.declared_exchanges).insert(name.to_string(), kind);
        lock(&self.shared.known_exchanges).insert(name.to_string());
        Ok(())
    }

    async fn bind(&self, queue: &str, exchange: &str, routing_key: &str) -> Result<(), BusError> {
        let link = self.shared.link()?;
        consume::bind(&self.shared, &link, queue, exchange, routing_key).await
    }

    async fn publish(&self, message: OutgoingMessage) -> Result<Published, BusError> {
        // Every step is bounded on its own (confirms by the in-flight deadline, broker
        // calls by `bounded`); this outer bound covers any wait between them (a channel
        // being replaced during a reconnect), so a publish answers in bounded time.
        let limit = crate::bus::PUBLISH_TIMEOUT * 2;
        match tokio::time::timeout(limit, publish::publish(&self.shared, message)).await {
            Ok(result) => result,
            Err(_) => Err(BusError::Unavailable(format!(
                "RabbitMQ did not take the message within {} s",
                limit.as_secs()
            ))),
        }
    }

    async fn delete_temporary(&self, name: &str) -> Result<(), BusError> {
        if !lock(&self.shared.temp_queues).contains(name) {
            return Ok(());
        }
        let link = self.shared.link()?;
        let channel = connection::throwaway_channel(&self.shared, &link).await?;
        // The broker cancels the queue's consumer, which then ends (not restored).
        let deleted = connection::bounded(channel.queue_delete(
            short("queue", name)?,
            lapin::options::QueueDeleteOptions::default(),
        ))
        .await;
        let _ = channel.close(200, "done".into()).await;
        deleted.map(|_| ()).map_err(|e| map_error(&self.shared, &e))
    }

    fn take_dead_letters(&self) -> Option<mpsc::Receiver<DeadLetter>> {
        lock(&self.shared.dead_letters_rx).take()
    }

    fn health(&self) -> BusHealth {
        let health = lock(&self.shared.health);
        let up = health.up && self.shared.link().is_ok();
        BusHealth {
            kind: "amqp",
            up,
            last_error: health.last_error.clone(),
        }
    }
}

/// State shared by the bus handle and its background tasks.
pub(super) struct Shared {
    url: String,
    /// The URL without its password, for logs and errors.
    redacted_url: String,
    /// The live connection; `None` while the broker is unreachable.
    link: RwLock<Option<Arc<Link>>>,
    health: Mutex<HealthState>,
    /// Exchanges declared through this bus, re-declared after a reconnect.
    declared_exchanges: Mutex<HashMap<String, ExchangeKind>>,
    /// Exchanges known to exist (declared here or checked passively): publishing to
    /// a missing one would make the broker close the shared publish channel.
    known_exchanges: Mutex<HashSet<String>>,
    /// Temporary queues this node declared: `exclusive` does not keep this node's
    /// other clients out (they share its one connection), so the bus does.
    temp_queues: Mutex<HashSet<String>>,
    /// Bindings of temporary queues, re-created with them after a reconnect.
    temp_bindings: Mutex<HashMap<String, Vec<(String, String)>>>,
    /// Live consumers by id, re-established after a reconnect.
    consumers: Mutex<HashMap<u64, Arc<ConsumerState>>>,
    next_id: AtomicU64,
    dead_letters_tx: mpsc::Sender<DeadLetter>,
    dead_letters_rx: Mutex<Option<mpsc::Receiver<DeadLetter>>>,
    /// Wakes the supervisor when an operation notices the connection is gone.
    connection_lost: Notify,
    shutdown: CancellationToken,
}

#[derive(Debug, Default)]
struct HealthState {
    up: bool,
    last_error: Option<String>,
}

/// Dead letters waiting for the server; beyond this the dead-letter consumer waits
/// (its unacknowledged messages then go to other nodes).
const DEAD_LETTER_BUFFER: usize = 1024;

impl Shared {
    fn new(url: &str) -> Shared {
        let (dead_letters_tx, dead_letters_rx) = mpsc::channel(DEAD_LETTER_BUFFER);
        Shared {
            url: url.to_string(),
            redacted_url: redact_url(url),
            link: RwLock::new(None),
            health: Mutex::new(HealthState::default()),
            declared_exchanges: Mutex::new(HashMap::new()),
            known_exchanges: Mutex::new(HashSet::new()),
            temp_queues: Mutex::new(HashSet::new()),
            temp_bindings: Mutex::new(HashMap::new()),
            consumers: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            dead_letters_tx,
            dead_letters_rx: Mutex::new(Some(dead_letters_rx)),
            connection_lost: Notify::new(),
            shutdown: CancellationToken::new(),
        }
    }

    /// The live connection, or `Unavailable` at once (operations never wait for a
    /// reconnect).
    fn link(&self) -> Result<Arc<Link>, BusError> {
        let link = self.link.read().unwrap_or_else(|e| e.into_inner()).clone();
        match link {
            Some(link) if link.connection.status().connected() => Ok(link),
            Some(_) => {
                // Noticed before the supervisor: wake it rather than wait for its tick.
                self.connection_lost.notify_one();
                Err(self.unavailable())
            }
            None => Err(self.unavailable()),
        }
    }

    fn unavailable(&self) -> BusError {
        let health = lock(&self.health);
        BusError::Unavailable(
            health
                .last_error
                .clone()
                .unwrap_or_else(|| "not connected to RabbitMQ".into()),
        )
    }

    /// Error texts may quote the URL (lapin's "Invalid URL: '…'"): never with its
    /// password.
    fn scrub(&self, text: &str) -> String {
        let mut text = text.replace(&self.url, &self.redacted_url);
        if let Some(password) = url_password(&self.url).filter(|p| p.len() >= 3) {
            text = text.replace(password, "***");
        }
        text
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn set_health(&self, up: bool, error: Option<String>) {
        let mut health = lock(&self.health);
        health.up = up;
        if error.is_some() {
            health.last_error = error;
        }
    }
}

/// Locks a mutex whose data stays consistent even if a holder panicked (every
/// critical section here is a plain insert/remove).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// `amqp://user:secret@host/vhost` → `amqp://user:***@host/vhost`.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<invalid url>".into();
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}{path}")
        }
        None => url.to_string(),
    }
}

fn url_password(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let userinfo = authority.rsplit_once('@')?.0;
    userinfo.split_once(':').map(|(_, password)| password)
}

/// AMQP short strings (names, keys, ids) are at most 255 bytes; lapin panics on
/// longer ones, so every client-supplied value goes through here.
fn short(what: &str, value: &str) -> Result<ShortString, BusError> {
    ShortString::try_new(value)
        .map_err(|_| BusError::Refused(format!("{what} is longer than 255 bytes")))
}

/// The broker's reply code and text when `error` is an AMQP error.
fn amqp_error(error: &lapin::Error) -> Option<(&AMQPErrorKind, String)> {
    match error.kind() {
        lapin::ErrorKind::ProtocolError(e) => Some((e.kind(), e.get_message().to_string())),
        _ => None,
    }
}

fn is_soft(error: &lapin::Error, code: AMQPSoftError) -> bool {
    matches!(amqp_error(error), Some((AMQPErrorKind::Soft(c), _)) if *c == code)
}

/// Maps an error of a broker operation: channel-level refusals keep the broker's
/// text, anything about the connection is `Unavailable`.
fn map_error(shared: &Shared, error: &lapin::Error) -> BusError {
    match amqp_error(error) {
        Some((AMQPErrorKind::Soft(_), text)) => BusError::Refused(text),
        Some((_, text)) => {
            shared.connection_lost.notify_one();
            BusError::Unavailable(text)
        }
        None if matches!(error.kind(), lapin::ErrorKind::ChannelsLimitReached) => {
            // A channel per consumer: the broker's channel_max (2047 by default)
            // bounds the consumers of one node.
            tracing::warn!(
                "RabbitMQ refused another channel: this node holds as many queue consumers as \
                 the broker's channel_max allows (docs/scaling.md)"
            );
            BusError::Refused(
                "too many consumers on this node's RabbitMQ connection (the broker's \
                 channel_max, 2047 by default)"
                    .into(),
            )
        }
        None => {
            shared.connection_lost.notify_one();
            BusError::Unavailable(error.to_string())
        }
    }
}

/// Queue arguments of every client queue: priorities 0–3 and expired messages to
/// the reference's dead-letter exchange.
fn queue_arguments() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-max-priority".into(),
        AMQPValue::LongInt(i32::from(super::MAX_PRIORITY)),
    );
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(super::DEAD_LETTER_EXCHANGE.into()),
    );
    args
}

/// Message headers as text: strings as they are, numbers and booleans formatted,
/// nested tables and arrays (e.g. `x-death`) left out.
fn headers_to_strings(headers: Option<&FieldTable>) -> Vec<(String, String)> {
    let Some(headers) = headers else {
        return Vec::new();
    };
    headers
        .inner()
        .iter()
        .filter_map(|(key, value)| Some((key.to_string(), value_to_string(value)?)))
        .collect()
}

fn value_to_string(value: &AMQPValue) -> Option<String> {
    Some(match value {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.to_string(),
        AMQPValue::Boolean(b) => b.to_string(),
        AMQPValue::ShortShortInt(n) => n.to_string(),
        AMQPValue::ShortShortUInt(n) => n.to_string(),
        AMQPValue::ShortInt(n) => n.to_string(),
        AMQPValue::ShortUInt(n) => n.to_string(),
        AMQPValue::LongInt(n) => n.to_string(),
        AMQPValue::LongUInt(n) => n.to_string(),
        AMQPValue::LongLongInt(n) => n.to_string(),
        AMQPValue::Timestamp(n) => n.to_string(),
        AMQPValue::Float(n) => n.to_string(),
        AMQPValue::Double(n) => n.to_string(),
        _ => return None,
    })
}
