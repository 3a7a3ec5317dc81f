//! In-process change feed: every committed write publishes one event per document on
//! its collection's channel, and bumps the collection's generation counter (caches such
//! as role resolution compare generations instead of subscribing).
//!
//! A backend whose changes come from elsewhere (MongoDB change streams) registers a
//! watch hook: it is told, once per collection, when something first subscribes to a
//! collection or reads its generation, so it only follows collections in use.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bson::{Bson, Document};
use dashmap::DashMap;
use tokio::sync::broadcast;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOperation {
    Insert,
    Update,
    Replace,
    Delete,
}

impl ChangeOperation {
    /// The operation names MongoDB change streams (and so the clients) use.
    pub fn as_str(&self) -> &'static str {
        match self {
            ChangeOperation::Insert => "insert",
            ChangeOperation::Update => "update",
            ChangeOperation::Replace => "replace",
            ChangeOperation::Delete => "delete",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ChangeEvent {
    pub collection: String,
    pub operation: ChangeOperation,
    pub document_key: Bson,
    /// The document after the change; for deletes, the document as it was.
    pub full_document: Option<Document>,
}

const CHANNEL_CAPACITY: usize = 4096;

/// Called with a collection's name the first time it is subscribed to or its
/// generation is read.
pub type WatchHook = Box<dyn Fn(&str) + Send + Sync>;

#[derive(Default)]
struct Generation {
    value: AtomicU64,
    /// Subscribed to, or its generation read, at least once.
    watched: AtomicBool,
}

#[derive(Default)]
pub struct ChangeFeed {
    channels: DashMap<String, broadcast::Sender<Arc<ChangeEvent>>>,
    generations: DashMap<String, Arc<Generation>>,
    watch_hook: OnceLock<WatchHook>,
}

impl ChangeFeed {
    pub fn subscribe(&self, collection: &str) -> broadcast::Receiver<Arc<ChangeEvent>> {
        self.mark_watched(collection, &self.generation_counter(collection));
        self.channels
            .entry(collection.to_string())
            .or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0)
            .subscribe()
    }

    pub fn publish(&self, event: ChangeEvent) {
        self.bump(&event.collection);
        if let Some(sender) = self.channels.get(&event.collection) {
            // No receivers is fine: nobody watches this collection right now.
            let _ = sender.send(Arc::new(event));
        }
    }

    /// Increases with every committed change to `collection`.
    pub fn generation(&self, collection: &str) -> u64 {
        let counter = self.generation_counter(collection);
        self.mark_watched(collection, &counter);
        counter.value.load(Ordering::Acquire)
    }

    /// Increases the generation without publishing an event (a backend whose events
    /// arrive later, from elsewhere, bumps on its own acknowledged writes).
    pub fn bump(&self, collection: &str) {
        self.generation_counter(collection)
            .value
            .fetch_add(1, Ordering::Release);
    }

    /// Registers the backend's watch hook (once; false if one was already set). Call
    /// `watched_collections` afterwards for collections watched before it was set.
    pub fn set_watch_hook(&self, hook: WatchHook) -> bool {
        self.watch_hook.set(hook).is_ok()
    }

    /// Collections that were subscribed to or had their generation read.
    pub fn watched_collections(&self) -> Vec<String> {
        self.generations
            .iter()
            .filter(|entry| entry.value().watched.load(Ordering::Acquire))
            .map(|entry| entry.key().clone())
            .collect()
    }

    fn mark_watched(&self, collection: &str, counter: &Generation) {
        if !counter.watched.load(Ordering::Relaxed) && !counter.watched.swap(true, Ordering::AcqRel)
        {
            if let Some(hook) = self.watch_hook.get() {
                hook(collection);
            }
        }
    }

    fn generation_counter(&self, collection: &str) -> Arc<Generation> {
        if let Some(counter) = self.generations.get(collection) {
            return counter.clone();
        }
        self.generations
            .entry(collection.to_string())
            .or_default()
            .clone()
    }
}
