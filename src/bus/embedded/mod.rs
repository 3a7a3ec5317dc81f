//! The in-process bus: queues and exchanges in memory, behaving as RabbitMQ does for
//! everything a client can see (see the [`crate::bus`] module).
//!
//! - Names → queues and exchanges in two `DashMap`s (sharded: a publish takes one
//!   shard's read lock to find its queue, no global lock).
//! - Each queue has its own mutex ([`queue`]): priority lanes, consumers and credit.
//! - Message expiry: a per-queue index of deadlines plus one timer thread that holds
//!   one entry per queue with deadlines ([`expiry`]).
//! - Body bytes are counted by the messages themselves (released when the last copy
//!   goes), so the byte limit holds on every path a message can leave by.

mod expiry;
mod queue;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Instant;

use dashmap::mapref::entry::Entry as MapEntry;
use dashmap::DashMap;
use tokio::sync::mpsc;

use self::expiry::Timer;
use self::queue::{Gone, Message, MessageParts, Queue, Refusal, Shared};
use super::routing;
use super::{
    Bus, BusError, BusHealth, Consumer, DeadLetter, ExchangeKind, OutgoingMessage, Published,
    QueueKind, QueueSpec, Target, MAX_PRIORITY,
};
use crate::config::BusSettings;

/// Dead letters waiting for the server; beyond that they are dropped (and counted).
const DEAD_LETTER_BUFFER: usize = 10_000;

/// What the embedded bus may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbeddedLimits {
    /// Body bytes of all the messages it holds (queued or unacknowledged) together.
    pub max_bytes: usize,
    /// Ready messages one queue may hold.
    pub max_queue_length: usize,
    /// Queues that may exist at once.
    pub max_queues: usize,
}

impl Default for EmbeddedLimits {
    fn default() -> Self {
        EmbeddedLimits {
            max_bytes: 512 * 1024 * 1024,
            max_queue_length: 100_000,
            max_queues: 100_000,
        }
    }
}

impl From<&BusSettings> for EmbeddedLimits {
    fn from(settings: &BusSettings) -> Self {
        EmbeddedLimits {
            max_bytes: settings.embedded_max_bytes,
            max_queue_length: settings.embedded_max_queue_length,
            max_queues: settings.embedded_max_queues,
        }
    }
}

/// The in-process [`Bus`]. Cheap to share (`Arc`); usable from any runtime or thread.
pub struct EmbeddedBus {
    registry: Arc<Registry>,
    shared: Arc<Shared>,
    dead_letters: Mutex<Option<mpsc::Receiver<DeadLetter>>>,
}

/// Queues and exchanges by name (what consumer guards need to delete a queue).
struct Registry {
    limits: EmbeddedLimits,
    queues: DashMap<String, Arc<Queue>>,
    /// Entries in `queues` (kept apart: `DashMap::len` locks every shard).
    queue_count: AtomicUsize,
    exchanges: DashMap<String, Arc<Exchange>>,
    next_id: AtomicU64,
}

struct Exchange {
    kind: ExchangeKind,
    bindings: RwLock<Vec<Binding>>,
}

struct Binding {
    queue: Arc<Queue>,
    routing_key: String,
}

impl EmbeddedBus {
    /// An empty bus. Starts its expiry thread (`bus-expiry`), which ends when the bus
    /// is dropped; it needs no tokio runtime.
    pub fn new(limits: EmbeddedLimits) -> EmbeddedBus {
        let timer = Arc::new(Timer::default());
        expiry::start(&timer);
        let (sender, receiver) = mpsc::channel(DEAD_LETTER_BUFFER);
        EmbeddedBus {
            registry: Arc::new(Registry {
                limits,
                queues: DashMap::new(),
                queue_count: AtomicUsize::new(0),
                exchanges: DashMap::new(),
                next_id: AtomicU64::new(1),
            }),
            shared: Arc::new(Shared::new(limits.max_bytes, sender, timer)),
            dead_letters: Mutex::new(Some(receiver)),
        }
    }

    /// Queues that exist now.
    pub fn queue_count(&self) -> usize {
        self.registry.queue_count.load(Ordering::Relaxed)
    }

    /// Exchanges declared.
    pub fn exchange_count(&self) -> usize {
        self.registry.exchanges.len()
    }

    /// Body bytes of the messages held now (queued or unacknowledged).
    pub fn held_bytes(&self) -> usize {
        self.shared.bytes()
    }

    /// Dead letters lost because nobody read them fast enough.
    pub fn dead_letters_dropped(&self) -> u64 {
        self.shared.dead_letters_dropped()
    }

    fn next_id(&self) -> u64 {
        self.registry.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Finds or creates the queue `spec` names.
    fn open_queue(&self, spec: &QueueSpec) -> Result<Arc<Queue>, BusError> {
        let registry = &self.registry;
        let create = || {
            Arc::new(Queue::new(
                self.next_id(),
                spec.name.clone(),
                spec.kind,
                registry.limits.max_queue_length,
                self.shared.clone(),
            ))
        };
        match registry.queues.entry(spec.name.clone()) {
            MapEntry::Occupied(mut occupied) => {
                let existing = occupied.get();
                if existing.is_deleted() {
                    // A temporary queue on its way out (its guard is unbinding it):
                    // the name is free. Its guard only removes its own entry.
                    let queue = create();
                    occupied.insert(queue.clone());
                    return Ok(queue);
                }
                match (spec.kind, existing.kind) {
                    (QueueKind::Named, QueueKind::Named) => Ok(existing.clone()),
                    _ => Err(BusError::QueueLocked(spec.name.clone())),
                }
            }
            MapEntry::Vacant(vacant) => {
                let max = registry.limits.max_queues;
                if registry.queue_count.fetch_add(1, Ordering::Relaxed) >= max {
                    registry.queue_count.fetch_sub(1, Ordering::Relaxed);
                    return Err(BusError::Refused(format!(
                        "cannot create queue {}: the bus holds its limit of {max} queues",
                        spec.name
                    )));
                }
                let queue = create();
                vacant.insert(queue.clone());
                Ok(queue)
            }
        }
    }

    fn admit(&self, parts: MessageParts, first_queue: &str) -> Result<Arc<Message>, BusError> {
        self.shared.admit(parts).ok_or_else(|| {
            BusError::Refused(format!(
                "queue {first_queue} is full: the message bus holds its limit of {} bytes of messages",
                self.registry.limits.max_bytes
            ))
        })
    }

    /// To the queue named by the routing key (the default exchange).
    fn publish_to_queue(&self, parts: MessageParts, now: Instant) -> Result<Published, BusError> {
        let found = self.registry.queues.get(&parts.routing_key);
        let Some(queue) = found.map(|entry| entry.value().clone()) else {
            return Ok(Published::Unroutable);
        };
        if queue.is_deleted() {
            return Ok(Published::Unroutable);
        }
        let message = self.admit(parts, &queue.name)?;
        let mut gone = Gone::new();
        let offered = {
            let mut state = queue.lock();
            queue.offer(&mut state, message, now, &mut gone)
        };
        drop(gone);
        match offered {
            Ok(()) => Ok(Published::Routed),
            Err(Refusal::Deleted) => Ok(Published::Unroutable),
            Err(Refusal::Full) => Err(BusError::Refused(queue.full_error())),
        }
    }

    fn publish_to_exchange(
        &self,
        parts: MessageParts,
        now: Instant,
    ) -> Result<Published, BusError> {
        let found = self.registry.exchanges.get(&parts.exchange);
        let Some(exchange) = found.map(|entry| entry.value().clone()) else {
            return Err(BusError::UnknownExchange(parts.exchange));
        };
        let mut targets: Vec<Arc<Queue>> = {
            let bindings = exchange
                .bindings
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            bindings
                .iter()
                .filter(|binding| {
                    !binding.queue.is_deleted()
                        && routing::matches(
                            exchange.kind,
                            &binding.routing_key,
                            &[],
                            &parts.routing_key,
                            &parts.headers,
                        )
                })
                .map(|binding| binding.queue.clone())
                .collect()
        };
        // One copy per queue however many of its bindings match; locked in id order so
        // two fanouts over the same queues cannot deadlock.
        targets.sort_unstable_by_key(|queue| queue.id);
        targets.dedup_by_key(|queue| queue.id);
        let Some(first) = targets.first() else {
            return Ok(Published::Unroutable);
        };
        let message = self.admit(parts, &first.name)?;
        let mut gone = Gone::new();
        let routed = {
            let mut states: Vec<_> = targets.iter().map(|queue| queue.lock()).collect();
            // All or nothing: check every queue before enqueueing in any.
            for (queue, state) in targets.iter().zip(&states) {
                if let Err(Refusal::Full) = queue.check_room(state) {
                    return Err(BusError::Refused(queue.full_error()));
                }
            }
            let mut routed = false;
            for (queue, state) in targets.iter().zip(states.iter_mut()) {
                routed |= queue.offer(state, message.clone(), now, &mut gone).is_ok();
            }
            routed
        };
        drop(gone);
        Ok(if routed {
            Published::Routed
        } else {
            Published::Unroutable
        })
    }
}

impl Drop for EmbeddedBus {
    fn drop(&mut self) {
        self.shared.timer.stop();
    }
}

impl std::fmt::Debug for EmbeddedBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBus")
            .field("limits", &self.registry.limits)
            .field("queues", &self.queue_count())
            .field("bytes", &self.held_bytes())
            .finish()
    }
}

/// Cancels its consumer when dropped (see [`Queue::remove_consumer`]); a temporary
/// queue is then forgotten by name and unbound from its exchanges.
struct ConsumerGuard {
    queue: Arc<Queue>,
    id: u64,
    registry: Arc<Registry>,
}

impl Drop for ConsumerGuard {
    fn drop(&mut self) {
        if let Some(bound_to) = self.queue.remove_consumer(self.id) {
            forget(&self.registry, &self.queue, bound_to);
        }
    }
}

/// Removes a deleted queue's name and bindings (only its own entry: the name may
/// already belong to a new queue).
fn forget(registry: &Registry, deleted: &Arc<Queue>, bound_to: Vec<String>) {
    let removed = registry
        .queues
        .remove_if(&deleted.name, |_, queue| Arc::ptr_eq(queue, deleted));
    if removed.is_some() {
        registry.queue_count.fetch_sub(1, Ordering::Relaxed);
    }
    for name in bound_to {
        if let Some(exchange) = registry.exchanges.get(&name) {
            exchange
                .bindings
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .retain(|binding| !Arc::ptr_eq(&binding.queue, deleted));
        }
    }
}

#[async_trait::async_trait]
impl Bus for EmbeddedBus {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    async fn consume(&self, spec: &QueueSpec, prefetch: u16) -> Result<Consumer, BusError> {
        let queue = self.open_queue(spec)?;
        // Prefetch 0 is "unlimited" on RabbitMQ; a bounded channel needs a size.
        let credit = if prefetch == 0 { u16::MAX } else { prefetch };
        let (sender, deliveries) = mpsc::channel(usize::from(credit));
        let id = self.next_id();
        // Only the guard of a temporary queue deletes it, and this one has none yet;
        // named queues are never deleted. Kept as a check all the same.
        if !queue.add_consumer(id, sender, credit) {
            return Err(BusError::QueueLocked(spec.name.clone()));
        }
        Ok(Consumer {
            queue: spec.name.clone(),
            deliveries,
            guard: Box::new(ConsumerGuard {
                queue,
                id,
                registry: self.registry.clone(),
            }),
        })
    }

    async fn declare_exchange(&self, name: &str, kind: ExchangeKind) -> Result<(), BusError> {
        if name.is_empty() {
            return Err(BusError::Refused(
                "the default exchange cannot be declared".into(),
            ));
        }
        match self.registry.exchanges.entry(name.to_owned()) {
            MapEntry::Occupied(occupied) if occupied.get().kind != kind => {
                Err(BusError::ExchangeKindMismatch {
                    name: name.to_owned(),
                    existing: occupied.get().kind.as_str().to_owned(),
                })
            }
            MapEntry::Occupied(_) => Ok(()),
            MapEntry::Vacant(vacant) => {
                vacant.insert(Arc::new(Exchange {
                    kind,
                    bindings: RwLock::new(Vec::new()),
                }));
                Ok(())
            }
        }
    }

    async fn bind(&self, queue: &str, exchange: &str, routing_key: &str) -> Result<(), BusError> {
        let registry = &self.registry;
        let Some(target) = registry
            .queues
            .get(queue)
            .map(|entry| entry.value().clone())
        else {
            return Err(BusError::UnknownQueue(queue.to_owned()));
        };
        if exchange.is_empty() {
            return Err(BusError::Refused(
                "the default exchange cannot be bound".into(),
            ));
        }
        let Some(source) = registry
            .exchanges
            .get(exchange)
            .map(|entry| entry.value().clone())
        else {
            return Err(BusError::UnknownExchange(exchange.to_owned()));
        };
        // Under the queue's lock, so a temporary queue being deleted either sees this
        // binding in `bound_to` (and removes it) or is seen deleted here.
        let mut state = target.lock();
        if target.is_deleted() {
            return Err(BusError::UnknownQueue(queue.to_owned()));
        }
        let mut bindings = source
            .bindings
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let exists = bindings.iter().any(|binding| {
            Arc::ptr_eq(&binding.queue, &target) && binding.routing_key == routing_key
        });
        if !exists {
            bindings.push(Binding {
                queue: target.clone(),
                routing_key: routing_key.to_owned(),
            });
            if !state.bound_to.iter().any(|name| name == exchange) {
                state.bound_to.push(exchange.to_owned());
            }
        }
        Ok(())
    }

    async fn publish(&self, message: OutgoingMessage) -> Result<Published, BusError> {
        let now = Instant::now();
        let OutgoingMessage {
            target,
            body,
            correlation_id,
            reply_to,
            priority,
            expiration,
            headers,
        } = message;
        let (queue, exchange, routing_key) = match target {
            // Straight to a queue is AMQP's default exchange, keyed by the queue name.
            Target::Queue(name) => (true, String::new(), name),
            Target::Exchange { name, routing_key } if name.is_empty() => (true, name, routing_key),
            Target::Exchange { name, routing_key } => (false, name, routing_key),
        };
        let parts = MessageParts {
            exchange,
            routing_key,
            correlation_id,
            reply_to,
            priority: priority.min(MAX_PRIORITY),
            body,
            headers,
            deadline: now.checked_add(expiration),
        };
        if queue {
            self.publish_to_queue(parts, now)
        } else {
            self.publish_to_exchange(parts, now)
        }
    }

    async fn delete_temporary(&self, name: &str) -> Result<(), BusError> {
        let Some(queue) = self.registry.queues.get(name).map(|entry| entry.clone()) else {
            return Ok(());
        };
        if queue.kind == QueueKind::Temporary {
            if let Some(bound_to) = queue.delete_temporary() {
                forget(&self.registry, &queue, bound_to);
            }
        }
        Ok(())
    }

    fn take_dead_letters(&self) -> Option<mpsc::Receiver<DeadLetter>> {
        self.dead_letters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    fn health(&self) -> BusHealth {
        BusHealth {
            kind: "embedded",
            up: true,
            last_error: None,
        }
    }

    fn snapshot(&self) -> crate::bus::BusSnapshot {
        let mut queues: Vec<crate::bus::QueueStat> = self
            .registry
            .queues
            .iter()
            .map(|entry| {
                let queue = entry.value();
                crate::bus::QueueStat {
                    name: queue.name.clone(),
                    kind: match queue.kind {
                        QueueKind::Temporary => "temporary",
                        QueueKind::Named => "named",
                    },
                    messages: queue.ready_len(),
                    consumers: queue.consumer_count(),
                }
            })
            .collect();
        queues.sort_by(|a, b| a.name.cmp(&b.name));
        let mut exchanges: Vec<crate::bus::ExchangeStat> = self
            .registry
            .exchanges
            .iter()
            .map(|entry| crate::bus::ExchangeStat {
                name: entry.key().clone(),
                kind: entry.value().kind.as_str(),
                bindings: entry
                    .value()
                    .bindings
                    .read()
                    .map(|bindings| bindings.len())
                    .unwrap_or(0),
            })
            .collect();
        exchanges.sort_by(|a, b| a.name.cmp(&b.name));
        crate::bus::BusSnapshot { queues, exchanges }
    }
}
