//! One relay per watched collection on this node, shared by all its watches.
//!
//! The relay holds the store's subscription for the collection (so the MongoDB backend
//! keeps one change stream for it, opened with the first watch and closed after the
//! last) and re-publishes each event prepared once: password hashes removed, the
//! document as JSON text (the conventions of `query` results), and its JSON value for
//! path filters built on first use. Watches hold the relay; when the last one stops,
//! the relay's task ends and its store subscription is dropped.
//!
//! If the relay itself falls behind the store's feed, events are gone for every watch
//! of the collection: it publishes a `Lost` marker, and each watch closes its
//! connection rather than go on with a hole.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use bson::{Bson, Document};
use serde_json::Value;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use crate::documents::output::{document_to_json, value_to_json};
use crate::documents::users::redact;
use crate::error::OpenCoreError;
use crate::proto::WatchEvent;
use crate::store::{ChangeEvent, ChangeOperation, SharedStore};
use prost::Message;

/// Events a relay keeps for watches that are behind; one further and they are lagging.
pub const RELAY_CAPACITY: usize = 4096;

/// One change, prepared for every watch of its collection.
pub enum Prepared {
    Change(PreparedChange),
    /// The relay missed this many events of the store's feed.
    Lost(u64),
}

pub struct PreparedChange {
    pub operation: ChangeOperation,
    /// The document after the change (for deletes, its last version); `None` for drops
    /// and for deletes whose last version is unknown.
    pub document: Option<Document>,
    /// `WatchEvent.document`.
    pub json: String,
    /// `WatchEvent{operation, document}` encoded once; a watch prepends its `id` field
    /// (protobuf fields may come in any order), so N watches copy it, not re-encode it.
    pub encoded: Vec<u8>,
    /// An update of `users` that only touched heartbeat fields.
    pub heartbeat_only: bool,
    wrapped: OnceLock<Value>,
}

impl PreparedChange {
    pub fn new(collection: &str, event: &ChangeEvent) -> PreparedChange {
        let mut document = event.full_document.clone();
        if let Some(document) = document.as_mut() {
            redact::redact(collection, document);
        }
        let json = match (&document, event.operation) {
            (Some(document), _) => document_to_json(document),
            (None, ChangeOperation::Drop) => "{}".to_string(),
            (None, _) => format!("{{\"_id\":{}}}", value_to_json(&event.document_key)),
        };
        let heartbeat_only = collection == crate::auth::builtin::USERS_COLLECTION
            && event.operation == ChangeOperation::Update
            && updated_fields(event).is_some_and(super::is_heartbeat_only);
        let encoded = WatchEvent {
            id: String::new(),
            operation: event.operation.as_str().to_string(),
            document: json.clone(),
        }
        .encode_to_vec();
        PreparedChange {
            operation: event.operation,
            document,
            json,
            encoded,
            heartbeat_only,
            wrapped: OnceLock::new(),
        }
    }

    /// `{"a": <document>}`, what watch paths are evaluated against.
    pub fn wrapped(&self) -> &Value {
        self.wrapped.get_or_init(|| {
            let document: Value = serde_json::from_str(&self.json).unwrap_or(Value::Null);
            serde_json::json!({ "a": document })
        })
    }

    /// The document's `_id`, for logs.
    pub fn id(&self) -> Option<&Bson> {
        self.document.as_ref().and_then(|d| d.get("_id"))
    }
}

/// The top-level fields an update set or removed, when the backend reports them.
fn updated_fields(event: &ChangeEvent) -> Option<&[String]> {
    event.updated_fields.as_deref()
}

pub struct Relay {
    collection: String,
    sender: broadcast::Sender<Arc<Prepared>>,
    events: Arc<AtomicU64>,
    task: tokio::task::AbortHandle,
}

impl Relay {
    fn start(store: &SharedStore, collection: &str) -> Relay {
        let (sender, _) = broadcast::channel(RELAY_CAPACITY);
        let events = Arc::new(AtomicU64::new(0));
        let mut subscription = store.changes().subscribe(collection);
        let task = {
            let sender = sender.clone();
            let events = events.clone();
            let collection = collection.to_string();
            tokio::spawn(async move {
                loop {
                    // Lost events count too: `events` is how far the relay got in the feed.
                    let (prepared, seen) = match subscription.recv().await {
                        Ok(event) => (
                            Prepared::Change(PreparedChange::new(&collection, &event)),
                            1,
                        ),
                        Err(RecvError::Lagged(missed)) => {
                            tracing::warn!(%collection, missed, "watch relay fell behind the change feed; closing its watchers' connections");
                            (Prepared::Lost(missed), missed)
                        }
                        Err(RecvError::Closed) => return,
                    };
                    events.fetch_add(seen, Ordering::Relaxed);
                    // No receivers: the last watch is leaving; the relay is dropped soon.
                    let _ = sender.send(Arc::new(prepared));
                }
            })
        };
        Relay {
            collection: collection.to_string(),
            sender,
            events,
            task: task.abort_handle(),
        }
    }

    pub fn collection(&self) -> &str {
        &self.collection
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Prepared>> {
        self.sender.subscribe()
    }

    pub fn watchers(&self) -> usize {
        self.sender.receiver_count()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // Ends the task, which drops the store subscription.
        self.task.abort();
    }
}

/// A collection's relay as the admin view shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FeedSnapshot {
    pub collection: String,
    pub watchers: usize,
    /// Feed events the relay got past: passed on, or lost because it fell behind.
    pub events: u64,
    /// Prepared events the slowest watch of the collection has not taken yet (it is
    /// disconnected past `RELAY_CAPACITY`).
    pub backlog: usize,
}

/// What watches did, for the admin view.
#[derive(Default, Debug)]
pub struct WatchCounters {
    /// `watchevent` envelopes handed to connections.
    pub delivered: AtomicU64,
    /// Connections closed because one of their watches fell behind.
    pub lag_disconnects: AtomicU64,
}

/// The live relays of this node, by collection.
#[derive(Default)]
pub struct Feeds {
    relays: Mutex<HashMap<String, Weak<Relay>>>,
    pub counters: Arc<WatchCounters>,
}

impl Feeds {
    /// The relay of `collection`, started if no watch holds one, unless `limit` relays
    /// run already: each costs a change stream (MongoDB) and two event buffers, and
    /// watches may name any collection. Must be called inside a tokio runtime (the
    /// relay's task is spawned there).
    pub fn join(
        &self,
        store: &SharedStore,
        collection: &str,
        limit: usize,
    ) -> Result<Arc<Relay>, OpenCoreError> {
        let mut relays = self
            .relays
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(relay) = relays.get(collection).and_then(Weak::upgrade) {
            return Ok(relay);
        }
        relays.retain(|_, relay| relay.strong_count() > 0);
        if relays.len() >= limit {
            return Err(OpenCoreError::TooManyWatchedCollections(limit));
        }
        let relay = Arc::new(Relay::start(store, collection));
        relays.insert(collection.to_string(), Arc::downgrade(&relay));
        Ok(relay)
    }

    pub fn snapshot(&self) -> Vec<FeedSnapshot> {
        let relays = self
            .relays
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut all: Vec<FeedSnapshot> = relays
            .values()
            .filter_map(Weak::upgrade)
            .map(|relay| FeedSnapshot {
                collection: relay.collection.clone(),
                watchers: relay.watchers(),
                events: relay.events.load(Ordering::Relaxed),
                backlog: relay.sender.len(),
            })
            .collect();
        all.sort_by(|a, b| a.collection.cmp(&b.collection));
        all
    }

    /// Collections with a live relay.
    pub fn collections(&self) -> Vec<String> {
        self.snapshot().into_iter().map(|s| s.collection).collect()
    }
}
