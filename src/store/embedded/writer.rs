//! The single writer of the embedded store. It drains every queued write into one
//! redb transaction, commits durably once, then answers each caller and publishes the
//! change events, so concurrent writers share one fsync (group commit).

use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use bson::{Bson, Document};
use std::sync::Mutex;
use redb::{Database, ReadableTable, WriteTransaction};
use tokio::sync::oneshot;

use super::read::decode;
use super::{backend, definition, table};
use crate::store::engine::Filter;
use crate::store::keys::encode_id;
use crate::store::{ChangeEvent, ChangeFeed, ChangeOperation, StoreError, StoreResult, UpdateOutcome};

/// Most writes committed together; bounds latency of a commit under load.
const MAX_BATCH: usize = 512;


pub enum WriteOp {
    Insert { collection: String, documents: Vec<Document> },
    Replace { collection: String, filter: Document, replacement: Document, upsert: bool },
    Delete { collection: String, filter: Document, just_one: bool },
}

#[derive(Debug)]
pub enum WriteOutcome {
    Inserted,
    Updated(UpdateOutcome),
    Deleted(u64),
}

enum Job {
    Write { op: WriteOp, reply: oneshot::Sender<StoreResult<WriteOutcome>> },
    Stop(oneshot::Sender<()>),
}

pub struct Writer {
    queue: Mutex<Option<mpsc::Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    pub fn start(db: Arc<Database>, feed: Arc<ChangeFeed>) -> StoreResult<Self> {
        let (sender, receiver) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || run(db, feed, receiver))
            .map_err(backend)?;
        Ok(Writer { queue: Mutex::new(Some(sender)), thread: Mutex::new(Some(thread)) })
    }

    pub async fn submit(&self, op: WriteOp) -> StoreResult<WriteOutcome> {
        let (reply, answer) = oneshot::channel();
        {
            let queue = self.queue.lock().map_err(|_| StoreError::Closed)?;
            let sender = queue.as_ref().ok_or(StoreError::Closed)?;
            sender.send(Job::Write { op, reply }).map_err(|_| StoreError::Closed)?;
        }
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Finishes queued writes, then stops the thread.
    pub async fn stop(&self) -> StoreResult<()> {
        let sender = self.queue.lock().map_err(|_| StoreError::Closed)?.take();
        if let Some(sender) = sender {
            let (done, finished) = oneshot::channel();
            if sender.send(Job::Stop(done)).is_ok() {
                let _ = finished.await;
            }
        }
        let thread = self.thread.lock().map_err(|_| StoreError::Closed)?.take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        Ok(())
    }
}

fn run(db: Arc<Database>, feed: Arc<ChangeFeed>, receiver: mpsc::Receiver<Job>) {
    while let Ok(first) = receiver.recv() {
        let mut batch = Vec::with_capacity(16);
        let mut stop = None;
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Write { op, reply } => batch.push((op, reply)),
                Job::Stop(done) => {
                    stop = Some(done);
                    break;
                }
            }
            if batch.len() < MAX_BATCH {
                next = receiver.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            commit_batch(&db, &feed, batch);
        }
        if let Some(done) = stop {
            let _ = done.send(());
            return;
        }
    }
}

type Pending = (StoreResult<WriteOutcome>, Vec<ChangeEvent>);

fn commit_batch(db: &Database, feed: &ChangeFeed, batch: Vec<(WriteOp, oneshot::Sender<StoreResult<WriteOutcome>>)>) {
    let mut txn = match db.begin_write() {
        Ok(txn) => txn,
        Err(err) => {
            for (_, reply) in batch {
                let _ = reply.send(Err(backend(&err)));
            }
            return;
        }
    };
    let _ = txn.set_durability(redb::Durability::Immediate);
    let mut results: Vec<(Pending, oneshot::Sender<StoreResult<WriteOutcome>>)> = Vec::with_capacity(batch.len());
    for (op, reply) in batch {
        // Each op validates before it writes, so a failed op leaves nothing behind.
        let mut events = Vec::new();
        let outcome = apply(&mut txn, op, &mut events);
        results.push(((outcome, events), reply));
    }
    match txn.commit() {
        Ok(()) => {
            for ((outcome, events), reply) in results {
                for event in events {
                    feed.publish(event);
                }
                let _ = reply.send(outcome);
            }
        }
        Err(err) => {
            for (_, reply) in results {
                let _ = reply.send(Err(backend(&err)));
            }
        }
    }
}

fn apply(txn: &mut WriteTransaction, op: WriteOp, events: &mut Vec<ChangeEvent>) -> StoreResult<WriteOutcome> {
    match op {
        WriteOp::Insert { collection, documents } => insert(txn, &collection, documents, events),
        WriteOp::Replace { collection, filter, replacement, upsert } => {
            replace(txn, &collection, &filter, replacement, upsert, events)
        }
        WriteOp::Delete { collection, filter, just_one } => delete(txn, &collection, &filter, just_one, events),
    }
}

fn id_of(doc: &Document) -> StoreResult<Bson> {
    doc.get("_id").cloned().ok_or_else(|| StoreError::Query("document has no _id".into()))
}

fn encode(doc: &Document) -> StoreResult<Vec<u8>> {
    let mut bytes = Vec::with_capacity(256);
    doc.to_writer(&mut bytes).map_err(backend)?;
    Ok(bytes)
}

fn insert(
    txn: &mut WriteTransaction,
    collection: &str,
    documents: Vec<Document>,
    events: &mut Vec<ChangeEvent>,
) -> StoreResult<WriteOutcome> {
    let name = table(collection);
    let mut table = txn.open_table(definition(&name)).map_err(backend)?;
    let mut prepared = Vec::with_capacity(documents.len());
    let mut keys = std::collections::HashSet::new();
    for doc in documents {
        let id = id_of(&doc)?;
        let key = encode_id(&id);
        if !keys.insert(key.clone()) || table.get(key.as_slice()).map_err(backend)?.is_some() {
            return Err(StoreError::DuplicateKey { collection: collection.to_string(), key: format!("{{ _id: {id} }}") });
        }
        prepared.push((key, encode(&doc)?, id, doc));
    }
    for (key, bytes, id, doc) in prepared {
        table.insert(key.as_slice(), bytes.as_slice()).map_err(backend)?;
        events.push(ChangeEvent {
            collection: collection.to_string(),
            operation: ChangeOperation::Insert,
            document_key: id,
            full_document: Some(doc),
        });
    }
    Ok(WriteOutcome::Inserted)
}

/// Keys and documents matching `filter` inside the write transaction.
fn matching(
    txn: &WriteTransaction,
    name: &str,
    filter: &Filter,
    just_one: bool,
) -> StoreResult<Vec<(Vec<u8>, Document)>> {
    let table = txn.open_table(definition(name)).map_err(backend)?;
    let mut found = Vec::new();
    if let Some(id) = filter.equality_on("_id") {
        let key = encode_id(id);
        if let Some(value) = table.get(key.as_slice()).map_err(backend)? {
            let doc = decode(value.value())?;
            if filter.matches(&doc) {
                found.push((key, doc));
            }
        }
        return Ok(found);
    }
    for entry in table.iter().map_err(backend)? {
        let (key, value) = entry.map_err(backend)?;
        let doc = decode(value.value())?;
        if filter.matches(&doc) {
            found.push((key.value().to_vec(), doc));
            if just_one {
                break;
            }
        }
    }
    Ok(found)
}

fn replace(
    txn: &mut WriteTransaction,
    collection: &str,
    filter: &Document,
    mut replacement: Document,
    upsert: bool,
    events: &mut Vec<ChangeEvent>,
) -> StoreResult<WriteOutcome> {
    let parsed = Filter::parse(filter)?;
    let name = table(collection);
    let found = matching(txn, &name, &parsed, true)?;
    let mut table = txn.open_table(definition(&name)).map_err(backend)?;
    match found.into_iter().next() {
        Some((key, old)) => {
            let id = id_of(&old)?;
            if let Some(new_id) = replacement.get("_id") {
                if encode_id(new_id) != key {
                    return Err(StoreError::Query(
                        "After applying the update, the (immutable) field '_id' was found to have been altered".into(),
                    ));
                }
            }
            // MongoDB keeps `_id` first.
            let mut stored = Document::new();
            stored.insert("_id", id.clone());
            replacement.remove("_id");
            stored.extend(replacement);
            let modified = stored != old;
            if modified {
                table.insert(key.as_slice(), encode(&stored)?.as_slice()).map_err(backend)?;
                events.push(ChangeEvent {
                    collection: collection.to_string(),
                    operation: ChangeOperation::Replace,
                    document_key: id,
                    full_document: Some(stored),
                });
            }
            Ok(WriteOutcome::Updated(UpdateOutcome { matched: 1, modified: modified as u64, upserted_id: None }))
        }
        None if upsert => {
            let id = match replacement.get("_id").or_else(|| parsed.equality_on("_id")) {
                Some(id) => id.clone(),
                None => Bson::String(bson::oid::ObjectId::new().to_hex()),
            };
            let mut stored = Document::new();
            stored.insert("_id", id.clone());
            replacement.remove("_id");
            stored.extend(replacement);
            let key = encode_id(&id);
            if table.get(key.as_slice()).map_err(backend)?.is_some() {
                return Err(StoreError::DuplicateKey { collection: collection.to_string(), key: format!("{{ _id: {id} }}") });
            }
            table.insert(key.as_slice(), encode(&stored)?.as_slice()).map_err(backend)?;
            events.push(ChangeEvent {
                collection: collection.to_string(),
                operation: ChangeOperation::Insert,
                document_key: id.clone(),
                full_document: Some(stored),
            });
            Ok(WriteOutcome::Updated(UpdateOutcome { matched: 0, modified: 0, upserted_id: Some(id) }))
        }
        None => Ok(WriteOutcome::Updated(UpdateOutcome::default())),
    }
}

fn delete(
    txn: &mut WriteTransaction,
    collection: &str,
    filter: &Document,
    just_one: bool,
    events: &mut Vec<ChangeEvent>,
) -> StoreResult<WriteOutcome> {
    let parsed = Filter::parse(filter)?;
    let name = table(collection);
    let found = matching(txn, &name, &parsed, just_one)?;
    let mut table = txn.open_table(definition(&name)).map_err(backend)?;
    let count = found.len() as u64;
    for (key, doc) in found {
        table.remove(key.as_slice()).map_err(backend)?;
        events.push(ChangeEvent {
            collection: collection.to_string(),
            operation: ChangeOperation::Delete,
            document_key: doc.get("_id").cloned().unwrap_or(Bson::Null),
            full_document: Some(doc),
        });
    }
    Ok(WriteOutcome::Deleted(count))
}
