//! In-process change feed: every committed write publishes one event per document on
//! its collection's channel, and bumps the collection's generation counter (caches such
//! as role resolution compare generations instead of subscribing).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

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

#[derive(Default)]
pub struct ChangeFeed {
    channels: DashMap<String, broadcast::Sender<Arc<ChangeEvent>>>,
    generations: DashMap<String, Arc<AtomicU64>>,
}

impl ChangeFeed {
    pub fn subscribe(&self, collection: &str) -> broadcast::Receiver<Arc<ChangeEvent>> {
        self.channels
            .entry(collection.to_string())
            .or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0)
            .subscribe()
    }

    pub fn publish(&self, event: ChangeEvent) {
        self.generation_counter(&event.collection).fetch_add(1, Ordering::Release);
        if let Some(sender) = self.channels.get(&event.collection) {
            // No receivers is fine: nobody watches this collection right now.
            let _ = sender.send(Arc::new(event));
        }
    }

    /// Increases with every committed change to `collection`.
    pub fn generation(&self, collection: &str) -> u64 {
        self.generation_counter(collection).load(Ordering::Acquire)
    }

    fn generation_counter(&self, collection: &str) -> Arc<AtomicU64> {
        if let Some(counter) = self.generations.get(collection) {
            return counter.clone();
        }
        self.generations.entry(collection.to_string()).or_default().clone()
    }
}
