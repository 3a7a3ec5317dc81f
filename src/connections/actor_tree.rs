//! Every long-lived actor and background task of this node, for the admin view: kind,
//! name, parent, age, messages handled, mailbox depth, restarts. It sits in the
//! `connections` leaf so that everything that starts actors (connections, supervisors,
//! watches, queue consumers, uploads, server tasks) can register without importing
//! the actor layer.
//!
//! Registration returns an [`ActorGuard`]; dropping it removes the entry, so an actor
//! that holds its guard can never leave a stale entry behind. The only hot-path cost
//! is [`ActorGuard::handled`]: one relaxed atomic increment per message.

use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use dashmap::DashMap;

pub type ActorId = u64;

/// Live numbers of one actor, shared between the actor (writer) and the admin view.
#[derive(Default, Debug)]
pub struct ActorCounters {
    pub handled: AtomicU64,
    /// Messages sent to the actor and not yet handled, where the actor can count them
    /// cheaply (see each kind in the admin view); 0 otherwise.
    pub mailbox: AtomicI64,
    pub restarts: AtomicU32,
}

struct Entry {
    kind: &'static str,
    name: String,
    parent: Option<ActorId>,
    started: Instant,
    counters: Arc<ActorCounters>,
}

/// A copy of one entry, for listing.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ActorSnapshot {
    pub id: ActorId,
    pub kind: &'static str,
    pub name: String,
    pub parent: Option<ActorId>,
    pub age_ms: u64,
    pub handled: u64,
    pub mailbox: i64,
    pub restarts: u32,
}

#[derive(Default)]
pub struct ActorTree {
    entries: DashMap<ActorId, Entry>,
    next: AtomicU64,
}

impl ActorTree {
    pub fn new() -> Arc<Self> {
        Arc::new(ActorTree::default())
    }

    /// Adds an entry; it lives as long as the returned guard.
    pub fn register(
        self: &Arc<Self>,
        kind: &'static str,
        name: impl Into<String>,
        parent: Option<ActorId>,
    ) -> ActorGuard {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let counters = Arc::new(ActorCounters::default());
        self.entries.insert(
            id,
            Entry {
                kind,
                name: name.into(),
                parent,
                started: Instant::now(),
                counters: counters.clone(),
            },
        );
        ActorGuard {
            tree: self.clone(),
            id,
            counters,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every entry, ordered by id (parents were registered before their children).
    pub fn snapshot(&self) -> Vec<ActorSnapshot> {
        let mut all: Vec<ActorSnapshot> = self
            .entries
            .iter()
            .map(|entry| ActorSnapshot {
                id: *entry.key(),
                kind: entry.kind,
                name: entry.name.clone(),
                parent: entry.parent,
                age_ms: entry.started.elapsed().as_millis() as u64,
                handled: entry.counters.handled.load(Ordering::Relaxed),
                mailbox: entry.counters.mailbox.load(Ordering::Relaxed),
                restarts: entry.counters.restarts.load(Ordering::Relaxed),
            })
            .collect();
        all.sort_by_key(|a| a.id);
        all
    }
}

/// Held by the registered actor; removes its entry when dropped.
pub struct ActorGuard {
    tree: Arc<ActorTree>,
    id: ActorId,
    counters: Arc<ActorCounters>,
}

impl ActorGuard {
    pub fn id(&self) -> ActorId {
        self.id
    }

    /// One message handled (the hot path: one relaxed increment).
    #[inline]
    pub fn handled(&self) {
        self.counters.handled.fetch_add(1, Ordering::Relaxed);
    }

    pub fn counters(&self) -> &Arc<ActorCounters> {
        &self.counters
    }

    /// Registers a child of this actor.
    pub fn child(&self, kind: &'static str, name: impl Into<String>) -> ActorGuard {
        self.tree.register(kind, name, Some(self.id))
    }
}

impl Drop for ActorGuard {
    fn drop(&mut self) {
        self.tree.entries.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_remove_their_entries() {
        let tree = ActorTree::new();
        let parent = tree.register("connection", "1", None);
        let child = parent.child("watch", "w1");
        child.handled();
        let all = tree.snapshot();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].parent, Some(parent.id()));
        assert_eq!(all[1].handled, 1);
        drop(child);
        assert_eq!(tree.len(), 1);
        drop(parent);
        assert!(tree.is_empty());
    }
}
