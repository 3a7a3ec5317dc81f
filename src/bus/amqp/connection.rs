//! The one AMQP connection of a node, watched by a supervisor task that notices its
//! loss, marks the bus down (operations then fail fast) and reconnects with backoff,
//! putting back the exchanges and consumers this bus had.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::{Channel, Connection, ConnectionProperties, Event};
use tracing::{info, warn};

use super::{consume, lock, publish, Shared};
use crate::bus::{BusError, PUBLISH_TIMEOUT};

/// How long [`super::AmqpBus::connect`] waits for the broker at start.
pub(super) const FIRST_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Fallback polling of the connection state: lapin reports a connection closed by
/// the broker through its state, not always through an event.
const WATCH_INTERVAL: Duration = Duration::from_millis(200);

/// One established connection and what lives on it.
pub(super) struct Link {
    /// Increases with each reconnect; consumers remember on which link they run.
    pub(super) generation: u64,
    pub(super) connection: Connection,
    pub(super) publisher: publish::Publisher,
}

/// Connects for the first time (retrying until [`FIRST_CONNECT_TIMEOUT`]) and starts
/// the supervisor.
pub(super) async fn start(shared: &Arc<Shared>, connection_name: &str) -> Result<(), BusError> {
    let deadline = Instant::now() + FIRST_CONNECT_TIMEOUT;
    let mut delay = BACKOFF_MIN;
    let link = loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let error =
            match tokio::time::timeout(remaining, open_link(shared, 1, connection_name)).await {
                Ok(Ok(link)) => break link,
                Ok(Err(error)) => error,
                Err(_) => "timed out".to_string(),
            };
        if Instant::now() + delay >= deadline {
            return Err(BusError::Unavailable(format!(
                "cannot connect to RabbitMQ at {} within {} s: {error}",
                shared.redacted_url,
                FIRST_CONNECT_TIMEOUT.as_secs()
            )));
        }
        warn!(url = %shared.redacted_url, %error, "RabbitMQ not reachable yet, retrying");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(BACKOFF_MAX);
    };
    install(shared, link.clone());
    info!(url = %shared.redacted_url, "connected to RabbitMQ");
    tokio::spawn(supervise(shared.clone(), link, connection_name.to_string()));
    Ok(())
}

fn install(shared: &Shared, link: Arc<Link>) {
    *shared.link.write().unwrap_or_else(|e| e.into_inner()) = Some(link);
    shared.set_health(true, None);
}

/// Opens a connection and puts back everything the bus had: its publish channel,
/// the exchanges declared through it, and every live consumer (the dead-letter one
/// included).
async fn open_link(
    shared: &Arc<Shared>,
    generation: u64,
    connection_name: &str,
) -> Result<Arc<Link>, String> {
    let properties = ConnectionProperties::default().with_connection_name(connection_name.into());
    let connection = Connection::connect(&shared.url, properties)
        .await
        .map_err(|e| {
            format!(
                "cannot connect to {}: {}",
                shared.redacted_url,
                shared.scrub(&e.to_string())
            )
        })?;
    let publisher = publish::Publisher::open(&connection)
        .await
        .map_err(|e| format!("cannot open the publish channel: {e}"))?;
    let link = Arc::new(Link {
        generation,
        connection,
        publisher,
    });

    let exchanges: Vec<_> = lock(&shared.declared_exchanges)
        .iter()
        .map(|(name, kind)| (name.clone(), *kind))
        .collect();
    for (name, kind) in exchanges {
        match publish::declare_exchange(shared, &link, &name, kind).await {
            Ok(()) => {}
            Err(BusError::Unavailable(e)) => return Err(e),
            Err(e) => warn!(exchange = %name, error = %e, "exchange not re-declared"),
        }
    }
    consume::restore_all(shared, &link).await?;
    Ok(link)
}

/// Watches the link; when it is lost, marks the bus down and reconnects.
async fn supervise(shared: Arc<Shared>, mut link: Arc<Link>, connection_name: String) {
    loop {
        let Some(error) = watch(&shared, &link).await else {
            // Shutdown: close politely so the broker requeues at once.
            *shared.link.write().unwrap_or_else(|e| e.into_inner()) = None;
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                link.connection.close(200, "OK".into()),
            )
            .await;
            return;
        };
        warn!(%error, "RabbitMQ connection lost; reconnecting");
        *shared.link.write().unwrap_or_else(|e| e.into_inner()) = None;
        shared.set_health(false, Some(error));
        let generation = link.generation + 1;
        let mut delay = BACKOFF_MIN;
        link = loop {
            // Wait first: a broker that just closed us is often restarting.
            tokio::select! {
                _ = shared.shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(BACKOFF_MAX);
            let attempt = tokio::time::timeout(
                PUBLISH_TIMEOUT,
                open_link(&shared, generation, &connection_name),
            );
            match attempt.await {
                Ok(Ok(new_link)) => break new_link,
                Ok(Err(error)) => {
                    warn!(%error, "RabbitMQ reconnect failed");
                    shared.set_health(false, Some(error));
                }
                Err(_) => shared.set_health(false, Some("reconnect timed out".into())),
            }
        };
        if shared.shutdown.is_cancelled() {
            return;
        }
        install(&shared, link.clone());
        info!(url = %shared.redacted_url, "reconnected to RabbitMQ");
    }
}

/// Resolves when the connection is no longer usable (with the last error seen), or
/// `None` on shutdown.
async fn watch(shared: &Shared, link: &Link) -> Option<String> {
    let mut events = Box::pin(link.connection.events_listener());
    let mut events_open = true;
    let mut tick = tokio::time::interval(WATCH_INTERVAL);
    let mut last_error: Option<String> = None;
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => return None,
            _ = shared.connection_lost.notified() => {}
            _ = tick.tick() => {}
            event = events.next(), if events_open => match event {
                // Channel errors come here too; they only matter if the connection
                // turns out to be down.
                Some(Event::Error(error)) => last_error = Some(error.to_string()),
                Some(_) => {}
                None => events_open = false,
            },
        }
        let status = link.connection.status();
        if !status.connected() {
            return Some(last_error.unwrap_or_else(|| "connection closed".to_string()));
        }
    }
}

/// A channel for one operation that may make the broker close it (passive declares,
/// declares that can conflict, binds); it closes when dropped.
pub(super) async fn throwaway_channel(shared: &Shared, link: &Link) -> Result<Channel, BusError> {
    let channel = bounded(link.connection.create_channel()).await;
    channel.map_err(|e| super::map_error(shared, &e))
}

/// Bounds a broker wait by [`PUBLISH_TIMEOUT`] so that no operation hangs on a
/// broker that stopped answering.
pub(super) async fn bounded<T>(
    operation: impl Future<Output = lapin::Result<T>>,
) -> lapin::Result<T> {
    match tokio::time::timeout(PUBLISH_TIMEOUT, operation).await {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "RabbitMQ did not answer within {} s",
                PUBLISH_TIMEOUT.as_secs()
            ),
        )
        .into()),
    }
}
