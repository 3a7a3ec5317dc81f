//! The single writer of the embedded store. It drains every queued write into one
//! redb transaction, commits durably once, then answers each caller and publishes the
//! change events, so concurrent writers share one fsync (group commit).
//!
//! Each operation is atomic on its own: every table change it makes is recorded in an
//! undo log, and an operation that fails (duplicate key, bad update, ...) is rolled back
//! inside the shared transaction before the next one runs. A panic inside one
//! operation is caught and treated the same way (`resilience`): that write fails, the
//! rest of its group commits, and the writer thread goes on. Since one thread applies
//! all writes in order, a find-and-modify cannot race with anything.
//!
//! Events are gathered per operation and published only after the commit: updates
//! name the top-level fields that differ from the old document (so watchers can skip
//! changes they do not care about, like heartbeats), and dropping an existing
//! collection publishes one `Drop` event.

use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use bson::{Bson, Document};
use redb::{Database, ReadableTable, Table, TableError, TableHandle, WriteTransaction};
use tokio::sync::oneshot;

use super::catalog::{
    data_table, is_id_index, validate_options, Catalog, CollectionMeta, IndexMeta, META,
};
use super::collect::SortedCollector;
use super::plan::{self, execute, Budget, Examined};
use super::resilience::{self, Reply};
use super::{backend, decode_doc, definition, Shared};
use crate::store::engine::path::walk_keys;
use crate::store::engine::{ApplyContext, Filter, Projection, SortSpec, Update};
use crate::store::keys::encode_id;
use crate::store::{
    ChangeEvent, ChangeFeed, ChangeOperation, CollectionOptions, FindAndModifyOptions, IndexSpec,
    StoreError, StoreResult, UpdateOptions, UpdateOutcome,
};

/// Unit tests only: an update whose result carries this field panics in the writer
/// after writing it (never compiled into the server).
#[cfg(test)]
pub(super) const TEST_PANIC_FIELD: &str = "__test_panic_in_writer";
/// Unit tests only: a group writing a document with this field panics before its commit.
#[cfg(test)]
pub(super) const TEST_PANIC_COMMIT_FIELD: &str = "__test_panic_before_commit";

/// Most writes committed together; bounds latency of a commit under load.
const MAX_BATCH: usize = 512;
/// Most documents one TTL pass deletes per index (the rest wait for the next pass).
const TTL_BATCH: usize = 10_000;

pub enum WriteOp {
    Insert {
        collection: String,
        documents: Vec<Document>,
    },
    Replace {
        collection: String,
        filter: Document,
        replacement: Document,
        upsert: bool,
    },
    Update {
        collection: String,
        filter: Document,
        update: Document,
        options: UpdateOptions,
    },
    FindAndModify {
        collection: String,
        filter: Document,
        update: Document,
        options: FindAndModifyOptions,
    },
    Delete {
        collection: String,
        filter: Document,
        just_one: bool,
    },
    CreateCollection {
        collection: String,
        options: CollectionOptions,
    },
    DropCollection {
        collection: String,
    },
    CreateIndex {
        collection: String,
        spec: IndexSpec,
    },
    DropIndex {
        collection: String,
        name: String,
    },
    /// Deletes documents whose TTL index date is older than its expiry, as of `now`.
    Expire {
        now_millis: i64,
    },
}

#[derive(Debug)]
pub enum WriteOutcome {
    Inserted,
    Updated(UpdateOutcome),
    Found(Option<Document>),
    Deleted(u64),
    Dropped(bool),
    IndexName(String),
    Done,
}

// Jobs are moved once through the queue; boxing the large variant buys nothing.
#[allow(clippy::large_enum_variant)]
enum Job {
    Write { op: WriteOp, reply: Reply },
    Stop(oneshot::Sender<()>),
}

pub struct Writer {
    queue: Mutex<Option<mpsc::Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// A handle the TTL task uses to queue expiry passes.
#[derive(Clone)]
pub struct Submitter(mpsc::Sender<Job>);

impl Submitter {
    /// Queues `op` and waits (blocking) for its outcome.
    pub fn submit_blocking(&self, op: WriteOp) -> StoreResult<WriteOutcome> {
        let (reply, answer) = oneshot::channel();
        let reply = Reply::new(reply);
        self.0
            .send(Job::Write { op, reply })
            .map_err(|_| StoreError::Closed)?;
        answer.blocking_recv().map_err(|_| StoreError::Closed)?
    }
}

impl Writer {
    /// Loads (and if needed initialises) the catalog, then starts the writer thread.
    pub fn start(
        db: Arc<Database>,
        feed: Arc<ChangeFeed>,
        shared: Arc<Shared>,
    ) -> StoreResult<Self> {
        let catalog = Arc::new(initial_catalog(&db)?);
        *shared.catalog.write().map_err(|_| StoreError::Closed)? = catalog.clone();
        let (sender, receiver) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || run(db, feed, shared, catalog, receiver))
            .map_err(backend)?;
        Ok(Writer {
            queue: Mutex::new(Some(sender)),
            thread: Mutex::new(Some(thread)),
        })
    }

    pub fn submitter(&self) -> StoreResult<Submitter> {
        let queue = self.queue.lock().map_err(|_| StoreError::Closed)?;
        Ok(Submitter(queue.as_ref().ok_or(StoreError::Closed)?.clone()))
    }

    pub async fn submit(&self, op: WriteOp) -> StoreResult<WriteOutcome> {
        let (reply, answer) = oneshot::channel();
        let reply = Reply::new(reply);
        {
            let queue = self.queue.lock().map_err(|_| StoreError::Closed)?;
            let sender = queue.as_ref().ok_or(StoreError::Closed)?;
            sender
                .send(Job::Write { op, reply })
                .map_err(|_| StoreError::Closed)?;
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

/// The catalog on disk; collections written by older versions (data tables without
/// metadata) are registered.
pub(super) fn initial_catalog(db: &Database) -> StoreResult<Catalog> {
    let txn = db.begin_write().map_err(backend)?;
    let mut catalog = {
        let meta = txn.open_table(META).map_err(backend)?;
        Catalog::load(&meta)?
    };
    let before = catalog.clone();
    let mut missing = Vec::new();
    for handle in txn.list_tables().map_err(backend)? {
        if let Some(name) = handle.name().strip_prefix("c:") {
            if !catalog.collections.contains_key(name) {
                missing.push(name.to_string());
            }
        }
    }
    for name in missing {
        let table = txn
            .open_table(definition(&data_table(&name)))
            .map_err(backend)?;
        if !redb::ReadableTableMetadata::is_empty(&table).map_err(backend)? {
            catalog.collections.insert(
                name.clone(),
                Arc::new(CollectionMeta::new(&name, CollectionOptions::default())),
            );
        }
    }
    if catalog.version == 0 || catalog.collections.len() != before.collections.len() {
        let mut meta = txn.open_table(META).map_err(backend)?;
        catalog.persist(&before, &mut meta)?;
    }
    txn.commit().map_err(backend)?;
    Ok(catalog)
}

fn run(
    db: Arc<Database>,
    feed: Arc<ChangeFeed>,
    shared: Arc<Shared>,
    mut catalog: Arc<Catalog>,
    receiver: mpsc::Receiver<Job>,
) {
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
            // A panic outside any one operation (committing, persisting the catalog)
            // fails what the group had not answered yet: an uncommitted transaction is
            // dropped (aborted), every caller is answered, and the catalog is read back
            // from the database, which is the truth whether the commit happened or not.
            let (writes, started) = (batch.len(), std::time::Instant::now());
            let outcome = resilience::catch("a group commit", || {
                commit_batch(&db, &feed, &shared, &mut catalog, batch);
                Ok(())
            });
            crate::telemetry::metrics::record_group_commit(writes, started.elapsed());
            if outcome.is_err() {
                match initial_catalog(&db) {
                    Ok(reloaded) => catalog = Arc::new(reloaded),
                    Err(err) => tracing::error!("store writer: cannot reload the catalog: {err}"),
                }
            }
        }
        if let Some(done) = stop {
            let _ = done.send(());
            return;
        }
    }
}

/// What a successful operation hands back after the commit.
struct Done {
    outcome: StoreResult<WriteOutcome>,
    events: Vec<ChangeEvent>,
}

pub(super) fn commit_batch(
    db: &Database,
    feed: &ChangeFeed,
    shared: &Shared,
    catalog: &mut Arc<Catalog>,
    batch: Vec<(WriteOp, Reply)>,
) {
    let fail_all = |batch: Vec<Reply>, err: StoreError| {
        for reply in batch {
            reply.send(Err(err.clone()));
        }
    };
    let mut txn = match db.begin_write() {
        Ok(txn) => txn,
        Err(err) => return fail_all(batch.into_iter().map(|(_, r)| r).collect(), backend(err)),
    };
    let _ = txn.set_durability(redb::Durability::Immediate);
    let batch_start = catalog.clone();
    let ops = batch.len() as u64;
    let mut results: Vec<(Done, Reply)> = Vec::with_capacity(batch.len());
    let mut fatal: Option<StoreError> = None;
    {
        let mut ctx = Ctx::new(&txn, catalog.clone());
        for (op, reply) in batch {
            if fatal.is_some() {
                results.push((
                    Done {
                        outcome: Err(StoreError::Closed),
                        events: Vec::new(),
                    },
                    reply,
                ));
                continue;
            }
            let before = ctx.catalog.clone();
            let mut done = Done {
                outcome: Ok(WriteOutcome::Done),
                events: Vec::new(),
            };
            let outcome = resilience::catch("a write", || apply(&mut ctx, op, &mut done));
            let undo = std::mem::take(&mut ctx.undo);
            if outcome.is_err() {
                if let Err(err) = ctx.rollback(undo) {
                    fatal = Some(err);
                }
                ctx.catalog = before;
                done.events.clear();
            }
            done.outcome = outcome;
            results.push((done, reply));
        }
        if fatal.is_none() && !Arc::ptr_eq(&ctx.catalog, &batch_start) {
            let mut changed = (*ctx.catalog).clone();
            let persisted = txn
                .open_table(META)
                .map_err(backend)
                .and_then(|mut meta| changed.persist(&batch_start, &mut meta));
            match persisted {
                Ok(()) => ctx.catalog = Arc::new(changed),
                Err(err) => fatal = Some(err),
            }
        }
        shared.stats.examined(ctx.examined);
        *catalog = ctx.catalog.clone();
    }
    #[cfg(test)]
    if results.iter().any(|(done, _)| {
        done.events.iter().any(|e| {
            e.full_document
                .as_ref()
                .is_some_and(|d| d.contains_key(TEST_PANIC_COMMIT_FIELD))
        })
    }) {
        panic!("test hook: this group panics before its commit");
    }
    let committed = match fatal {
        Some(err) => {
            let _ = txn.abort();
            Err(err)
        }
        None => txn.commit().map_err(backend),
    };
    match committed {
        Ok(()) => {
            shared.stats.committed(ops);
            if let Ok(mut slot) = shared.catalog.write() {
                if slot.version <= catalog.version {
                    *slot = catalog.clone();
                }
            }
            for (done, reply) in results {
                for event in done.events {
                    feed.publish(event);
                }
                reply.send(done.outcome);
            }
        }
        Err(err) => {
            *catalog = batch_start;
            fail_all(results.into_iter().map(|(_, r)| r).collect(), err);
        }
    }
}

type RawTable<'t> = Table<'t, &'static [u8], &'static [u8]>;

/// The tables a batch has opened (kept open across its operations), the operation's
/// undo log, and the catalog as the batch has changed it so far.
struct Ctx<'t> {
    txn: &'t WriteTransaction,
    slots: Vec<Option<RawTable<'t>>>,
    by_name: HashMap<String, usize>,
    /// (slot, key, previous value): replayed backwards to undo a failed operation.
    undo: Vec<(usize, Vec<u8>, Option<Vec<u8>>)>,
    catalog: Arc<Catalog>,
    examined: Examined,
    /// Encoding buffer reused by every document write of the batch.
    buffer: Vec<u8>,
}

impl<'t> Ctx<'t> {
    fn new(txn: &'t WriteTransaction, catalog: Arc<Catalog>) -> Self {
        Ctx {
            txn,
            slots: Vec::new(),
            by_name: HashMap::new(),
            undo: Vec::new(),
            catalog,
            examined: Examined::default(),
            buffer: Vec::with_capacity(4096),
        }
    }

    /// Opens (creating if needed) a table, once per batch.
    fn slot(&mut self, name: &str) -> StoreResult<usize> {
        if let Some(&slot) = self.by_name.get(name) {
            return Ok(slot);
        }
        let table = self.txn.open_table(definition(name)).map_err(backend)?;
        self.slots.push(Some(table));
        let slot = self.slots.len() - 1;
        self.by_name.insert(name.to_string(), slot);
        Ok(slot)
    }

    fn table(&mut self, slot: usize) -> StoreResult<&mut RawTable<'t>> {
        self.slots
            .get_mut(slot)
            .and_then(Option::as_mut)
            .ok_or_else(|| backend("table closed"))
    }

    fn table_ref(&self, slot: usize) -> StoreResult<&RawTable<'t>> {
        self.slots
            .get(slot)
            .and_then(Option::as_ref)
            .ok_or_else(|| backend("table closed"))
    }

    /// Closes and deletes a table.
    fn delete_table(&mut self, name: &str) -> StoreResult<bool> {
        if let Some(slot) = self.by_name.remove(name) {
            self.slots[slot] = None;
        }
        match self.txn.delete_table(definition(name)) {
            Ok(existed) => Ok(existed),
            Err(TableError::TableDoesNotExist(_)) => Ok(false),
            Err(err) => Err(backend(err)),
        }
    }

    fn put(&mut self, slot: usize, key: &[u8], value: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        let old = self
            .table(slot)?
            .insert(key, value)
            .map_err(backend)?
            .map(|v| v.value().to_vec());
        self.undo.push((slot, key.to_vec(), old.clone()));
        Ok(old)
    }

    fn remove(&mut self, slot: usize, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        let old = self
            .table(slot)?
            .remove(key)
            .map_err(backend)?
            .map(|v| v.value().to_vec());
        if old.is_some() {
            self.undo.push((slot, key.to_vec(), old.clone()));
        }
        Ok(old)
    }

    fn rollback(&mut self, undo: Vec<(usize, Vec<u8>, Option<Vec<u8>>)>) -> StoreResult<()> {
        for (slot, key, old) in undo.into_iter().rev() {
            let Some(Some(table)) = self.slots.get_mut(slot) else {
                return Err(backend("cannot undo a write to a closed table"));
            };
            match old {
                Some(value) => {
                    table
                        .insert(key.as_slice(), value.as_slice())
                        .map_err(backend)?;
                }
                None => {
                    table.remove(key.as_slice()).map_err(backend)?;
                }
            }
        }
        Ok(())
    }

    fn collection(&self, name: &str) -> Option<Arc<CollectionMeta>> {
        self.catalog.collection(name).cloned()
    }

    /// The collection's metadata, registering it on first use (implicit creation).
    fn ensure_collection(&mut self, name: &str) -> StoreResult<Arc<CollectionMeta>> {
        if let Some(meta) = self.collection(name) {
            return Ok(meta);
        }
        if name.is_empty() || name.contains('\0') || name.starts_with("system.") {
            return Err(StoreError::InvalidOptions(format!(
                "Invalid collection name: '{name}'"
            )));
        }
        let meta = Arc::new(CollectionMeta::new(name, CollectionOptions::default()));
        Arc::make_mut(&mut self.catalog)
            .collections
            .insert(name.to_string(), meta.clone());
        Ok(meta)
    }

    fn set_multikey(&mut self, collection: &str, index: &str) {
        let known = self
            .catalog
            .collection(collection)
            .and_then(|m| m.index(index))
            .is_none_or(|i| i.multikey);
        if known {
            return;
        }
        let catalog = Arc::make_mut(&mut self.catalog);
        if let Some(meta) = catalog.collections.get_mut(collection) {
            let meta = Arc::make_mut(meta);
            if let Some(ix) = meta.indexes.iter_mut().find(|i| i.name == index) {
                Arc::make_mut(ix).multikey = true;
            }
        }
    }
}

fn apply(ctx: &mut Ctx<'_>, op: WriteOp, done: &mut Done) -> StoreResult<WriteOutcome> {
    let events = &mut done.events;
    match op {
        WriteOp::Insert {
            collection,
            documents,
        } => insert(ctx, &collection, documents, events),
        WriteOp::Replace {
            collection,
            filter,
            replacement,
            upsert,
        } => replace(ctx, &collection, &filter, replacement, upsert, events),
        WriteOp::Update {
            collection,
            filter,
            update,
            options,
        } => update_docs(ctx, &collection, &filter, &update, options, events),
        WriteOp::FindAndModify {
            collection,
            filter,
            update,
            options,
        } => find_and_modify(ctx, &collection, &filter, &update, &options, events),
        WriteOp::Delete {
            collection,
            filter,
            just_one,
        } => delete(ctx, &collection, &filter, just_one, events),
        WriteOp::CreateCollection {
            collection,
            options,
        } => create_collection(ctx, &collection, &options),
        WriteOp::DropCollection { collection } => drop_collection(ctx, &collection, events),
        WriteOp::CreateIndex { collection, spec } => create_index(ctx, &collection, &spec),
        WriteOp::DropIndex { collection, name } => drop_index(ctx, &collection, &name),
        WriteOp::Expire { now_millis } => expire(ctx, now_millis, events),
    }
}

// ------------------------------------------------------------------ documents

fn id_of(doc: &Document) -> StoreResult<Bson> {
    doc.get("_id")
        .cloned()
        .ok_or_else(|| StoreError::Query("document has no _id".into()))
}

/// MongoDB keeps `_id` as the first field.
fn id_first(doc: Document) -> Document {
    if doc.keys().next().map(String::as_str) == Some("_id") {
        return doc;
    }
    let mut out = Document::new();
    let mut doc = doc;
    if let Some(id) = doc.remove("_id") {
        out.insert("_id", id);
    }
    out.extend(doc);
    out
}

fn duplicate_id(collection: &str, id: &Bson) -> StoreError {
    StoreError::DuplicateKey {
        collection: collection.to_string(),
        key: format!("{{ _id: {id} }}"),
    }
}

fn duplicate_index_key(collection: &str, index: &IndexMeta, doc: &Document) -> StoreError {
    let fields: Vec<String> = index
        .fields
        .iter()
        .map(|(path, _)| {
            let mut value = None;
            walk_keys(doc, path.parts(), &mut |found| {
                if !found.whole_array {
                    value = Some(found.value.cloned().unwrap_or(Bson::Null));
                }
                value.is_some()
            });
            format!("{}: {}", path.as_str(), value.unwrap_or(Bson::Null))
        })
        .collect();
    StoreError::DuplicateKey {
        collection: format!("{collection} index: {}", index.name),
        key: format!("{{ {} }}", fields.join(", ")),
    }
}

/// Slots of the collection's data table and of each of its indexes (same order as
/// `meta.indexes`).
fn open_collection(ctx: &mut Ctx<'_>, meta: &CollectionMeta) -> StoreResult<(usize, Vec<usize>)> {
    let data = ctx.slot(&data_table(&meta.name))?;
    let mut indexes = Vec::with_capacity(meta.indexes.len());
    for index in &meta.indexes {
        indexes.push(ctx.slot(&index.table)?);
    }
    Ok((data, indexes))
}

/// Writes `new` (replacing `old`, the stored version, if any) and maintains every
/// index: stale entries out, new entries in, unique keys checked.
fn put_doc(
    ctx: &mut Ctx<'_>,
    meta: &CollectionMeta,
    slots: &(usize, Vec<usize>),
    pk: &[u8],
    old: Option<&Document>,
    new: &Document,
) -> StoreResult<()> {
    // One reusable buffer: documents are encoded once per write, then copied by redb.
    let mut bytes = std::mem::take(&mut ctx.buffer);
    bytes.clear();
    new.to_writer(&mut bytes).map_err(backend)?;
    let previous = ctx.put(slots.0, pk, &bytes);
    ctx.buffer = bytes;
    let previous = previous?;
    if old.is_none() && previous.is_some() {
        return Err(duplicate_id(
            &meta.name,
            new.get("_id").unwrap_or(&Bson::Null),
        ));
    }
    for (index, &slot) in meta.indexes.iter().zip(&slots.1) {
        let (new_keys, multikey) = index.entries(new, pk)?;
        let old_keys = match old {
            Some(old) => index.entries(old, pk)?.0,
            None => Vec::new(),
        };
        if multikey && !index.multikey {
            ctx.set_multikey(&meta.name, &index.name);
        }
        for key in old_keys
            .iter()
            .filter(|k| new_keys.binary_search(k).is_err())
        {
            ctx.remove(slot, key)?;
        }
        for key in new_keys
            .iter()
            .filter(|k| old_keys.binary_search(k).is_err())
        {
            if index.unique {
                let prefix = &key[..key.len() - pk.len()];
                let table = ctx.table_ref(slot)?;
                let mut range = table.range::<&[u8]>(prefix..).map_err(backend)?;
                if let Some(entry) = range.next() {
                    let (existing, _) = entry.map_err(backend)?;
                    if existing.value().starts_with(prefix) {
                        return Err(duplicate_index_key(&meta.name, index, new));
                    }
                }
            }
            ctx.put(slot, key, pk)?;
        }
    }
    Ok(())
}

fn remove_doc(
    ctx: &mut Ctx<'_>,
    meta: &CollectionMeta,
    slots: &(usize, Vec<usize>),
    pk: &[u8],
    old: &Document,
) -> StoreResult<()> {
    ctx.remove(slots.0, pk)?;
    for (index, &slot) in meta.indexes.iter().zip(&slots.1) {
        for key in index.entries(old, pk)?.0 {
            ctx.remove(slot, &key)?;
        }
    }
    Ok(())
}

/// Documents matching `filter`, through the planner, inside the write transaction:
/// all of them, or the first `limit` in `sort` order.
fn matching(
    ctx: &mut Ctx<'_>,
    meta: &CollectionMeta,
    slots: &(usize, Vec<usize>),
    filter: &Filter,
    query: &Document,
    sort: Option<&SortSpec>,
    limit: Option<usize>,
) -> StoreResult<Vec<Document>> {
    let plan = plan::plan(filter, query, sort, Some(meta));
    let index_slot = plan
        .index()
        .and_then(|ix| meta.indexes.iter().position(|i| Arc::ptr_eq(i, ix)))
        .map(|i| slots.1[i]);
    let data = ctx.table_ref(slots.0)?;
    let index = index_slot.map(|s| ctx.table_ref(s)).transpose()?;
    let mut found = Vec::new();
    let wanted = limit.unwrap_or(usize::MAX);
    let mut examined = Examined::default();
    // A sort the plan does not provide keeps the first `limit` in sort order, holding
    // at most about twice that many.
    let mut sorted = sort
        .filter(|_| !plan.sorted)
        .map(|sort| SortedCollector::new(sort, limit, plan.natural_order(), 0));
    execute(
        &plan,
        data,
        index,
        filter,
        Budget::UNLIMITED,
        &mut examined,
        &mut |doc, size| match sorted.as_mut() {
            Some(sorted) => sorted.push(doc, size).map(|()| true),
            None => {
                found.push(doc);
                Ok(found.len() < wanted)
            }
        },
    )?;
    if let Some(sorted) = sorted {
        found = sorted.finish();
    }
    ctx.examined.keys += examined.keys;
    ctx.examined.docs += examined.docs;
    Ok(found)
}

fn insert(
    ctx: &mut Ctx<'_>,
    collection: &str,
    documents: Vec<Document>,
    events: &mut Vec<ChangeEvent>,
) -> StoreResult<WriteOutcome> {
    let meta = ctx.ensure_collection(collection)?;
    let slots = open_collection(ctx, &meta)?;
    for doc in documents {
        let doc = id_first(doc);
        let id = id_of(&doc)?;
        meta.check_document(&doc)?;
        let pk = encode_id(&id);
        put_doc(ctx, &meta, &slots, &pk, None, &doc)?;
        events.push(ChangeEvent {
            collection: collection.to_string(),
            operation: ChangeOperation::Insert,
            document_key: id,
            full_document: Some(doc),
            updated_fields: None,
        });
    }
    Ok(WriteOutcome::Inserted)
}

/// Inserts the document an upsert produced.
fn upsert_insert(
    ctx: &mut Ctx<'_>,
    collection: &str,
    doc: Document,
    events: &mut Vec<ChangeEvent>,
) -> StoreResult<(Bson, Document)> {
    let meta = ctx.ensure_collection(collection)?;
    let slots = open_collection(ctx, &meta)?;
    let doc = id_first(doc);
    let id = id_of(&doc)?;
    meta.check_document(&doc)?;
    put_doc(ctx, &meta, &slots, &encode_id(&id), None, &doc)?;
    events.push(ChangeEvent {
        collection: collection.to_string(),
        operation: ChangeOperation::Insert,
        document_key: id.clone(),
        full_document: Some(doc.clone()),
        updated_fields: None,
    });
    Ok((id, doc))
}

/// Stores an updated version of a matched document and records its event.
fn store_update(
    ctx: &mut Ctx<'_>,
    meta: &CollectionMeta,
    slots: &(usize, Vec<usize>),
    old: &Document,
    new: Document,
    operation: ChangeOperation,
    events: &mut Vec<ChangeEvent>,
) -> StoreResult<Document> {
    let id = id_of(old)?;
    let new = id_first(new);
    meta.check_document(&new)?;
    put_doc(ctx, meta, slots, &encode_id(&id), Some(old), &new)?;
    #[cfg(test)]
    if new.contains_key(TEST_PANIC_FIELD) {
        panic!("test hook: this update panics inside the writer");
    }
    let updated_fields = match operation {
        ChangeOperation::Update => Some(changed_fields(old, &new)),
        _ => None,
    };
    events.push(ChangeEvent {
        collection: meta.name.clone(),
        operation,
        document_key: id,
        full_document: Some(new.clone()),
        updated_fields,
    });
    Ok(new)
}

/// Top-level fields whose value differs between `old` and `new` (set, changed or
/// removed), as MongoDB's `updateDescription` would name them (first path segment).
pub(super) fn changed_fields(old: &Document, new: &Document) -> Vec<String> {
    let set = new
        .iter()
        .filter(|(key, value)| old.get(key.as_str()) != Some(*value));
    let removed = old
        .iter()
        .filter(|(key, _)| !new.contains_key(key.as_str()));
    set.chain(removed).map(|(key, _)| key.clone()).collect()
}

fn replace(
    ctx: &mut Ctx<'_>,
    collection: &str,
    query: &Document,
    mut replacement: Document,
    upsert: bool,
    events: &mut Vec<ChangeEvent>,
) -> StoreResult<WriteOutcome> {
    if let Some(key) = replacement.keys().find(|k| k.starts_with('$')) {
        return Err(StoreError::Query(format!(
            "The dollar ($) prefixed field '{key}' in '{key}' is not allowed in the context of a replacement document"
        )));
    }
    let filter = Filter::parse(query)?;
    let found = match ctx.collection(collection) {
        Some(meta) => {
            let slots = open_collection(ctx, &meta)?;
            let mut found = matching(ctx, &meta, &slots, &filter, query, None, Some(1))?;
            found.pop().map(|doc| (meta, slots, doc))
        }
        None => None,
    };
    match found {
        Some((meta, slots, old)) => {
            let id = id_of(&old)?;
            if let Some(new_id) = replacement.get("_id") {
                if encode_id(new_id) != encode_id(&id) {
                    return Err(StoreError::Query(
                        "After applying the update, the (immutable) field '_id' was found to have been altered".into(),
                    ));
                }
            }
            let mut stored = Document::new();
            stored.insert("_id", id);
            replacement.remove("_id");
            stored.extend(replacement);
            let modified = stored != old;
            if modified {
                store_update(
                    ctx,
                    &meta,
                    &slots,
                    &old,
                    stored,
                    ChangeOperation::Replace,
                    events,
                )?;
            }
            Ok(WriteOutcome::Updated(UpdateOutcome {
                matched: 1,
                modified: modified as u64,
                upserted_id: None,
            }))
        }
        None if upsert => {
            let id = match replacement.get("_id").or_else(|| filter.equality_on("_id")) {
                Some(id) => id.clone(),
                // MongoDB generates an ObjectId for upserts of either kind.
                None => Bson::ObjectId(bson::oid::ObjectId::new()),
            };
            let mut stored = Document::new();
            stored.insert("_id", id);
            replacement.remove("_id");
            stored.extend(replacement);
            let (id, _) = upsert_insert(ctx, collection, stored, events)?;
            Ok(WriteOutcome::Updated(UpdateOutcome {
                matched: 0,
                modified: 0,
                upserted_id: Some(id),
            }))
        }
        None => Ok(WriteOutcome::Updated(UpdateOutcome::default())),
    }
}

fn operation_of(update: &Update) -> ChangeOperation {
    if update.is_replacement() {
        ChangeOperation::Replace
    } else {
        ChangeOperation::Update
    }
}

fn update_docs(
    ctx: &mut Ctx<'_>,
    collection: &str,
    query: &Document,
    update: &Document,
    options: UpdateOptions,
    events: &mut Vec<ChangeEvent>,
) -> StoreResult<WriteOutcome> {
    let filter = Filter::parse(query)?;
    let spec = Update::parse(update)?;
    if spec.is_replacement() && options.multi {
        return Err(StoreError::Query(
            "multi update is not supported for replacement-style update".into(),
        ));
    }
    let mut outcome = UpdateOutcome::default();
    if let Some(meta) = ctx.collection(collection) {
        let slots = open_collection(ctx, &meta)?;
        let limit = if options.multi { None } else { Some(1) };
        let found = matching(ctx, &meta, &slots, &filter, query, None, limit)?;
        outcome.matched = found.len() as u64;
        let apply_ctx = ApplyContext {
            is_upsert_insert: false,
            matched_array_index: None,
            filter: Some(&filter),
        };
        for old in found {
            let mut doc = old.clone();
            if spec.apply(&mut doc, &apply_ctx)? {
                // Indexes may have changed with the previous document (multikey flags).
                let meta = ctx.collection(collection).unwrap_or(meta.clone());
                store_update(ctx, &meta, &slots, &old, doc, operation_of(&spec), events)?;
                outcome.modified += 1;
            }
        }
    }
    if outcome.matched == 0 && options.upsert {
        let doc = spec.upsert_document(query)?;
        let (id, _) = upsert_insert(ctx, collection, doc, events)?;
        outcome.upserted_id = Some(id);
    }
    Ok(WriteOutcome::Updated(outcome))
}

fn find_and_modify(
    ctx: &mut Ctx<'_>,
    collection: &str,
    query: &Document,
    update: &Document,
    options: &FindAndModifyOptions,
    events: &mut Vec<ChangeEvent>,
) -> StoreResult<WriteOutcome> {
    let filter = Filter::parse(query)?;
    let spec = Update::parse(update)?;
    let projection = Projection::parse_optional(options.projection.as_ref())?;
    let sort = SortSpec::parse_optional(options.sort.as_ref())?;
    let found = match ctx.collection(collection) {
        Some(meta) => {
            let slots = open_collection(ctx, &meta)?;
            let mut found = matching(ctx, &meta, &slots, &filter, query, sort.as_ref(), Some(1))?;
            found.pop().map(|doc| (meta, slots, doc))
        }
        None => None,
    };
    let (before, after) = match found {
        Some((meta, slots, old)) => {
            let mut doc = old.clone();
            let apply_ctx = ApplyContext {
                is_upsert_insert: false,
                matched_array_index: None,
                filter: Some(&filter),
            };
            let after = if spec.apply(&mut doc, &apply_ctx)? {
                store_update(ctx, &meta, &slots, &old, doc, operation_of(&spec), events)?
            } else {
                doc
            };
            (Some(old), after)
        }
        None if options.upsert => {
            let doc = spec.upsert_document(query)?;
            let (_, doc) = upsert_insert(ctx, collection, doc, events)?;
            (None, doc)
        }
        None => return Ok(WriteOutcome::Found(None)),
    };
    let result = if options.return_new {
        Some(after)
    } else {
        before
    };
    let result = match (result, projection) {
        (Some(doc), Some(p)) => Some(p.apply(&doc, Some(&filter))?),
        (other, _) => other,
    };
    Ok(WriteOutcome::Found(result))
}

fn delete(
    ctx: &mut Ctx<'_>,
    collection: &str,
    query: &Document,
    just_one: bool,
    events: &mut Vec<ChangeEvent>,
) -> StoreResult<WriteOutcome> {
    let filter = Filter::parse(query)?;
    let Some(meta) = ctx.collection(collection) else {
        return Ok(WriteOutcome::Deleted(0));
    };
    let slots = open_collection(ctx, &meta)?;
    let found = matching(
        ctx,
        &meta,
        &slots,
        &filter,
        query,
        None,
        just_one.then_some(1),
    )?;
    let count = found.len() as u64;
    for doc in found {
        let id = id_of(&doc)?;
        remove_doc(ctx, &meta, &slots, &encode_id(&id), &doc)?;
        events.push(ChangeEvent {
            collection: collection.to_string(),
            operation: ChangeOperation::Delete,
            document_key: id,
            full_document: Some(doc),
            updated_fields: None,
        });
    }
    Ok(WriteOutcome::Deleted(count))
}

// ------------------------------------------------------------------ collections and indexes

fn create_collection(
    ctx: &mut Ctx<'_>,
    collection: &str,
    options: &CollectionOptions,
) -> StoreResult<WriteOutcome> {
    validate_options(options)?;
    if let Some(existing) = ctx.collection(collection) {
        return if &existing.options == options {
            Ok(WriteOutcome::Done)
        } else {
            Err(StoreError::InvalidOptions(format!(
                "Collection {collection} already exists with different options"
            )))
        };
    }
    ctx.ensure_collection(collection)?;
    {
        let catalog = Arc::make_mut(&mut ctx.catalog);
        if let Some(meta) = catalog.collections.get_mut(collection) {
            Arc::make_mut(meta).options = options.clone();
        }
    }
    ctx.slot(&data_table(collection))?;
    if let Some(ts) = &options.timeseries {
        // The time field is indexed (internally): range queries on time, and TTL.
        let spec = IndexSpec {
            keys: bson::doc! { ts.time_field.clone(): 1 },
            name: Some(format!("__time_{}", ts.time_field)),
            unique: false,
            expire_after_seconds: options.expire_after_seconds,
            partial_filter: None,
        };
        build_index(ctx, collection, &spec, true)?;
    }
    Ok(WriteOutcome::Done)
}

/// Drops a collection; when it existed, its subscribers get one `Drop` event (after
/// the commit, like every event), which also moves its generation.
fn drop_collection(
    ctx: &mut Ctx<'_>,
    collection: &str,
    events: &mut Vec<ChangeEvent>,
) -> StoreResult<WriteOutcome> {
    let meta = ctx.collection(collection);
    let mut existed = meta.is_some();
    if let Some(meta) = &meta {
        for index in &meta.indexes {
            ctx.delete_table(&index.table)?;
        }
        Arc::make_mut(&mut ctx.catalog)
            .collections
            .remove(collection);
    }
    existed |= ctx.delete_table(&data_table(collection))?;
    if existed {
        events.push(ChangeEvent {
            collection: collection.to_string(),
            operation: ChangeOperation::Drop,
            document_key: Bson::Null,
            full_document: None,
            updated_fields: None,
        });
    }
    Ok(WriteOutcome::Dropped(existed))
}

fn create_index(
    ctx: &mut Ctx<'_>,
    collection: &str,
    spec: &IndexSpec,
) -> StoreResult<WriteOutcome> {
    if is_id_index(&spec.keys) {
        IndexMeta::from_spec(spec, String::new(), false)?;
        if spec.unique || spec.expire_after_seconds.is_some() || spec.partial_filter.is_some() {
            return Err(StoreError::InvalidOptions(
                "The _id index cannot have options".into(),
            ));
        }
        ctx.ensure_collection(collection)?;
        return Ok(WriteOutcome::IndexName("_id_".into()));
    }
    build_index(ctx, collection, spec, false).map(WriteOutcome::IndexName)
}

/// Creates an index and fills it from the existing documents.
fn build_index(
    ctx: &mut Ctx<'_>,
    collection: &str,
    spec: &IndexSpec,
    hidden: bool,
) -> StoreResult<String> {
    let mut index = IndexMeta::from_spec(spec, String::new(), hidden)?;
    if index.name == "_id_" {
        return Err(StoreError::InvalidOptions(
            "The index name '_id_' is reserved for the _id index".into(),
        ));
    }
    let meta = ctx.ensure_collection(collection)?;
    for existing in meta.indexes.iter().filter(|i| !i.hidden) {
        if existing.name == index.name {
            return if existing.same_definition(&index) {
                Ok(index.name)
            } else {
                Err(StoreError::InvalidOptions(format!(
                    "An existing index has the same name as the requested index but a different definition. Requested index: {}, existing index: {}",
                    index.describe(),
                    existing.describe()
                )))
            };
        }
        if existing.same_keys(&index) && !hidden {
            return if existing.same_definition(&index) {
                Err(StoreError::InvalidOptions(format!(
                    "Index already exists with a different name: {}",
                    existing.name
                )))
            } else {
                Err(StoreError::InvalidOptions(format!(
                    "An equivalent index already exists with a different name and options. Requested index: {}, existing index: {}",
                    index.describe(),
                    existing.describe()
                )))
            };
        }
    }
    index.table = Arc::make_mut(&mut ctx.catalog).allocate_table();
    // Every entry of the existing documents, checked before anything is written.
    let data = ctx.slot(&data_table(collection))?;
    let mut entries: Vec<(Vec<u8>, usize)> = Vec::new();
    let mut multikey = false;
    let built: StoreResult<()> = (|| {
        let table = ctx.table_ref(data)?;
        for entry in table.iter().map_err(backend)? {
            let (key, value) = entry.map_err(backend)?;
            let doc = decode_doc(value.value())?;
            let pk = key.value();
            let (keys, many) = index.entries(&doc, pk)?;
            multikey |= many;
            entries.extend(keys.into_iter().map(|k| (k, pk.len())));
        }
        Ok(())
    })();
    built?;
    entries.sort_unstable();
    if index.unique {
        for pair in entries.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            let (pa, pb) = (&a.0[..a.0.len() - a.1], &b.0[..b.0.len() - b.1]);
            if pa == pb {
                let pk = &b.0[b.0.len() - b.1..];
                let doc = ctx
                    .table_ref(data)?
                    .get(pk)
                    .map_err(backend)?
                    .map(|v| decode_doc(v.value()))
                    .transpose()?;
                return Err(duplicate_index_key(
                    collection,
                    &index,
                    &doc.unwrap_or_default(),
                ));
            }
        }
    }
    index.multikey = multikey;
    let slot = ctx.slot(&index.table)?;
    {
        let table = ctx.table(slot)?;
        for (key, pk_len) in &entries {
            table
                .insert(key.as_slice(), &key[key.len() - pk_len..])
                .map_err(backend)?;
        }
    }
    let name = index.name.clone();
    let catalog = Arc::make_mut(&mut ctx.catalog);
    if let Some(meta) = catalog.collections.get_mut(collection) {
        Arc::make_mut(meta).indexes.push(Arc::new(index));
    }
    Ok(name)
}

fn drop_index(ctx: &mut Ctx<'_>, collection: &str, name: &str) -> StoreResult<WriteOutcome> {
    if name == "_id_" {
        return Err(StoreError::InvalidOptions("cannot drop _id index".into()));
    }
    let meta = ctx
        .collection(collection)
        .ok_or_else(|| StoreError::NoSuchCollection(collection.to_string()))?;
    let index = meta
        .indexes
        .iter()
        .find(|i| i.name == name && !i.hidden)
        .cloned()
        .ok_or_else(|| StoreError::NoSuchIndex(name.to_string()))?;
    ctx.delete_table(&index.table)?;
    let catalog = Arc::make_mut(&mut ctx.catalog);
    if let Some(meta) = catalog.collections.get_mut(collection) {
        Arc::make_mut(meta).indexes.retain(|i| i.name != name);
    }
    Ok(WriteOutcome::Done)
}

/// One TTL pass: for every TTL index, delete the documents whose indexed date is
/// older than the expiry (publishing delete events like any delete).
fn expire(
    ctx: &mut Ctx<'_>,
    now_millis: i64,
    events: &mut Vec<ChangeEvent>,
) -> StoreResult<WriteOutcome> {
    let mut deleted = 0u64;
    let collections: Vec<Arc<CollectionMeta>> = ctx.catalog.collections.values().cloned().collect();
    for meta in collections {
        for index in meta
            .indexes
            .iter()
            .filter(|i| i.expire_after_seconds.is_some())
        {
            let Some(seconds) = index.expire_after_seconds else {
                continue;
            };
            let cutoff = bson::DateTime::from_millis(
                now_millis.saturating_sub(seconds.saturating_mul(1000)),
            );
            let slots = open_collection(ctx, &meta)?;
            let position = meta
                .indexes
                .iter()
                .position(|i| Arc::ptr_eq(i, index))
                .unwrap_or(0);
            let range = plan::before(index, &Bson::DateTime(cutoff));
            let mut pks: Vec<Vec<u8>> = Vec::new();
            {
                let table = ctx.table_ref(slots.1[position])?;
                let iter = table
                    .range::<&[u8]>((
                        range.0.as_ref().map(Vec::as_slice),
                        range.1.as_ref().map(Vec::as_slice),
                    ))
                    .map_err(backend)?;
                for entry in iter {
                    let (_, pk) = entry.map_err(backend)?;
                    pks.push(pk.value().to_vec());
                    if pks.len() >= TTL_BATCH {
                        break;
                    }
                }
            }
            pks.sort_unstable();
            pks.dedup();
            for pk in pks {
                let doc = match ctx
                    .table_ref(slots.0)?
                    .get(pk.as_slice())
                    .map_err(backend)?
                {
                    Some(value) => decode_doc(value.value())?,
                    None => continue,
                };
                // Indexes may have been reopened; re-read the metadata each time.
                let meta = ctx.collection(&meta.name).unwrap_or(meta.clone());
                remove_doc(ctx, &meta, &slots, &pk, &doc)?;
                deleted += 1;
                events.push(ChangeEvent {
                    collection: meta.name.clone(),
                    operation: ChangeOperation::Delete,
                    document_key: doc.get("_id").cloned().unwrap_or(Bson::Null),
                    full_document: Some(doc),
                    updated_fields: None,
                });
            }
        }
    }
    Ok(WriteOutcome::Deleted(deleted))
}
