//! In-process change feed: every committed write publishes one event per document on
//! its collection's channel, and bumps the collection's generation counter (caches such
//! as role resolution compare generations instead of subscribing).
//!
//! A backend whose changes come from elsewhere (MongoDB change streams) registers a
//! watch hook and an unwatch hook, so it only follows collections in use:
//!
//! * A collection is in use while it has subscribers (`Subscription`s alive) or is
//!   pinned. Reading its generation pins it (a cache that compares generations never
//!   says when it stops caring), and so does `pin` (the store's own `users`). Pinned
//!   collections stay followed for the feed's life.
//! * The watch hook is told when a collection comes into use (first subscriber of an
//!   unpinned collection, or first pin without subscribers); the unwatch hook when the
//!   last subscriber of an unpinned collection leaves. Both can race (a subscriber
//!   arrives while the last one leaves): the backend re-checks `in_use` under its own
//!   lock before it stops anything, and the watch side always (re)starts.
//! * Dropping a collection publishes one `Drop` event on its channel (no document).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use bson::{Bson, Document};
use dashmap::DashMap;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOperation {
    Insert,
    Update,
    Replace,
    Delete,
    /// The collection was dropped (MongoDB: also renamed away or its database
    /// dropped). Later writes start a new collection of the same name.
    Drop,
}

impl ChangeOperation {
    /// The operation names MongoDB change streams (and so the clients) use.
    pub fn as_str(&self) -> &'static str {
        match self {
            ChangeOperation::Insert => "insert",
            ChangeOperation::Update => "update",
            ChangeOperation::Replace => "replace",
            ChangeOperation::Delete => "delete",
            ChangeOperation::Drop => "drop",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ChangeEvent {
    pub collection: String,
    pub operation: ChangeOperation,
    /// The document's `_id`; `Bson::Null` for `Drop`.
    pub document_key: Bson,
    /// The document after the change; for deletes, the document as it was (MongoDB:
    /// its last history record's `item`, when there is one).
    pub full_document: Option<Document>,
    /// For `Update`: the top-level fields set or removed. `None` for other operations.
    pub updated_fields: Option<Vec<String>>,
}

const CHANNEL_CAPACITY: usize = 4096;

/// Called with a collection's name when it comes into use (watch hook) or goes out of
/// use (unwatch hook); see the module docs.
pub type WatchHook = Box<dyn Fn(&str) + Send + Sync>;

#[derive(Default)]
struct Hooks {
    watch: OnceLock<WatchHook>,
    unwatch: OnceLock<WatchHook>,
}

#[derive(Default)]
struct CollectionState {
    generation: AtomicU64,
    subscribers: AtomicUsize,
    pinned: AtomicBool,
}

#[derive(Default)]
pub struct ChangeFeed {
    /// Per collection while it has subscribers: dropped with the last one, so watching
    /// many names one after another does not keep a 4,096-slot channel for each.
    channels: Arc<DashMap<String, broadcast::Sender<Arc<ChangeEvent>>>>,
    collections: DashMap<String, Arc<CollectionState>>,
    hooks: Arc<Hooks>,
}

/// One subscriber's view of a collection's events. Dropping it leaves the collection
/// (see the module docs).
pub struct Subscription {
    receiver: broadcast::Receiver<Arc<ChangeEvent>>,
    collection: String,
    state: Arc<CollectionState>,
    hooks: Arc<Hooks>,
    /// Weak: a subscription must not keep the feed's senders alive (dropping the feed
    /// closes every subscription).
    channels: Weak<DashMap<String, broadcast::Sender<Arc<ChangeEvent>>>>,
}

impl Subscription {
    /// The next event, as `broadcast::Receiver::recv`: `Lagged(n)` when `n` events
    /// were missed because this subscriber fell behind, `Closed` when the feed is gone.
    pub async fn recv(&mut self) -> Result<Arc<ChangeEvent>, RecvError> {
        self.receiver.recv().await
    }

    /// An event already waiting, without waiting for one.
    pub fn try_recv(&mut self) -> Result<Arc<ChangeEvent>, TryRecvError> {
        self.receiver.try_recv()
    }

    pub fn collection(&self) -> &str {
        &self.collection
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // SeqCst pairs with `pin` (sets pinned, then reads subscribers): one of the two
        // sees the other, so a collection pinned meanwhile is not left unfollowed.
        if self.state.subscribers.fetch_sub(1, Ordering::SeqCst) == 1 {
            // Only this subscription's receiver is left (a racing `subscribe` holds the
            // same shard lock and would count): nobody can miss an event.
            if let Some(channels) = self.channels.upgrade() {
                channels.remove_if(&self.collection, |_, sender| sender.receiver_count() <= 1);
            }
            if !self.state.pinned.load(Ordering::SeqCst) {
                if let Some(hook) = self.hooks.unwatch.get() {
                    hook(&self.collection);
                }
            }
        }
    }
}

impl ChangeFeed {
    /// Events of `collection` from now on, until the subscription is dropped.
    pub fn subscribe(&self, collection: &str) -> Subscription {
        let state = self.state(collection);
        let receiver = self
            .channels
            .entry(collection.to_string())
            .or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0)
            .subscribe();
        if state.subscribers.fetch_add(1, Ordering::SeqCst) == 0
            && !state.pinned.load(Ordering::SeqCst)
        {
            self.call_watch(collection);
        }
        Subscription {
            receiver,
            collection: collection.to_string(),
            state,
            hooks: self.hooks.clone(),
            channels: Arc::downgrade(&self.channels),
        }
    }

    pub fn publish(&self, event: ChangeEvent) {
        self.bump(&event.collection);
        if let Some(sender) = self.channels.get(&event.collection) {
            // No receivers is fine: nobody watches this collection right now.
            let _ = sender.send(Arc::new(event));
        }
    }

    /// Increases with every committed change to `collection`. Pins the collection.
    pub fn generation(&self, collection: &str) -> u64 {
        let state = self.state(collection);
        self.pin_state(collection, &state);
        state.generation.load(Ordering::Acquire)
    }

    /// Keeps `collection` followed for the feed's life, with or without subscribers.
    pub fn pin(&self, collection: &str) {
        let state = self.state(collection);
        self.pin_state(collection, &state);
    }

    /// Increases the generation without publishing an event (a backend whose events
    /// arrive later, from elsewhere, bumps on its own acknowledged writes).
    pub fn bump(&self, collection: &str) {
        self.state(collection)
            .generation
            .fetch_add(1, Ordering::Release);
    }

    /// Registers the backend's watch hook (once; false if one was already set). Call
    /// `watched_collections` afterwards for collections in use before it was set.
    pub fn set_watch_hook(&self, hook: WatchHook) -> bool {
        self.hooks.watch.set(hook).is_ok()
    }

    /// Registers the backend's unwatch hook (once; false if one was already set).
    pub fn set_unwatch_hook(&self, hook: WatchHook) -> bool {
        self.hooks.unwatch.set(hook).is_ok()
    }

    /// Collections in use now: subscribed to, or pinned.
    pub fn watched_collections(&self) -> Vec<String> {
        self.collections
            .iter()
            .filter(|entry| in_use(entry.value()))
            .map(|entry| entry.key().clone())
            .collect()
    }

    /// Whether `collection` has subscribers or is pinned.
    pub fn in_use(&self, collection: &str) -> bool {
        self.collections
            .get(collection)
            .is_some_and(|state| in_use(state.value()))
    }

    /// Live subscriptions of `collection`.
    pub fn subscribers(&self, collection: &str) -> usize {
        self.collections
            .get(collection)
            .map_or(0, |state| state.subscribers.load(Ordering::SeqCst))
    }

    fn pin_state(&self, collection: &str, state: &CollectionState) {
        if !state.pinned.load(Ordering::Relaxed)
            && !state.pinned.swap(true, Ordering::SeqCst)
            && state.subscribers.load(Ordering::SeqCst) == 0
        {
            self.call_watch(collection);
        }
    }

    fn call_watch(&self, collection: &str) {
        if let Some(hook) = self.hooks.watch.get() {
            hook(collection);
        }
    }

    fn state(&self, collection: &str) -> Arc<CollectionState> {
        if let Some(state) = self.collections.get(collection) {
            return state.clone();
        }
        self.collections
            .entry(collection.to_string())
            .or_default()
            .clone()
    }
}

fn in_use(state: &CollectionState) -> bool {
    state.pinned.load(Ordering::SeqCst) || state.subscribers.load(Ordering::SeqCst) > 0
}

#[cfg(test)]
mod tests;
