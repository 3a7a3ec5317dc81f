//! Message queues as clients see them, over the bus (`crate::bus`): the rules on names
//! and rights, message bodies, the consumer actors that deliver to connections, and
//! the timeout replies for messages nobody took.
//!
//! It sits between the commands (`registerqueue`, `registerexchange`, `queuemessage`,
//! `unregisterqueue`) and the bus; `Services` holds one [`Queues`] per node.

pub mod body;
pub mod consumer;
pub mod names;
pub mod objects;
pub mod timeouts;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use crate::bus::SharedBus;
use crate::config::BusSettings;
use crate::documents::state::DocumentState;
use objects::QueueObjects;

/// Names that bounced recently, at most this many (oldest forgotten first).
const MAX_BAD_QUEUES: usize = 1000;

pub struct Queues {
    pub bus: SharedBus,
    pub settings: BusSettings,
    pub objects: QueueObjects,
    pub bad: BadQueues,
    pub counters: Arc<QueueCounters>,
}

impl Queues {
    pub fn new(bus: SharedBus, settings: BusSettings, documents: Arc<DocumentState>) -> Queues {
        Queues {
            bus,
            settings,
            objects: QueueObjects::new(documents),
            bad: BadQueues::default(),
            counters: Arc::default(),
        }
    }
}

/// Queue traffic of this node (the admin view).
#[derive(Default, Debug)]
pub struct QueueCounters {
    pub published: AtomicU64,
    pub unroutable: AtomicU64,
    /// Written to a client's connection and acknowledged to the bus.
    pub delivered: AtomicU64,
    /// Returned to their queue because the connection closed before writing them.
    pub requeued: AtomicU64,
    /// Larger than the consumer's transport accepts.
    pub dropped: AtomicU64,
    pub timeouts: AtomicU64,
}

/// Queue names a message could not be routed to: the first bounce of an RPC is
/// answered with a `timeout` event, later sends with a `bad queue` error, until the
/// name routes again (every send is still tried, so a queue registered on another node
/// is found at once).
#[derive(Default)]
pub struct BadQueues {
    /// Names in the order they bounced (oldest first), and the same names for lookups.
    names: Mutex<(
        std::collections::VecDeque<String>,
        std::collections::HashSet<String>,
    )>,
    /// How many are held: every successful send asks `routed`, and this keeps that
    /// lock-free while nothing bounced.
    held: std::sync::atomic::AtomicUsize,
}

impl BadQueues {
    /// Records a bounce; `true` if the name had bounced before.
    pub fn bounced(&self, name: &str) -> bool {
        let mut guard = self.names.lock().unwrap_or_else(|p| p.into_inner());
        let (order, known) = &mut *guard;
        if known.contains(name) {
            return true;
        }
        if order.len() >= MAX_BAD_QUEUES {
            if let Some(oldest) = order.pop_front() {
                known.remove(&oldest);
            }
        }
        order.push_back(name.to_string());
        known.insert(name.to_string());
        self.held
            .store(order.len(), std::sync::atomic::Ordering::Relaxed);
        false
    }

    /// The name routes (again).
    pub fn routed(&self, name: &str) {
        if self.held.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            return;
        }
        let mut guard = self.names.lock().unwrap_or_else(|p| p.into_inner());
        let (order, known) = &mut *guard;
        if known.remove(name) {
            order.retain(|held| held != name);
            self.held
                .store(order.len(), std::sync::atomic::Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_queues_remember_bounces_until_routed_and_stay_bounded() {
        let bad = BadQueues::default();
        assert!(!bad.bounced("a"));
        assert!(bad.bounced("a"));
        bad.routed("a");
        assert!(!bad.bounced("a"));
        for i in 0..MAX_BAD_QUEUES + 10 {
            bad.bounced(&format!("q{i}"));
        }
        assert_eq!(bad.names.lock().unwrap().0.len(), MAX_BAD_QUEUES);
        assert_eq!(bad.names.lock().unwrap().1.len(), MAX_BAD_QUEUES);
    }
}
