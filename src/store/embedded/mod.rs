//! The embedded default store: redb in the data dir.
//!
//! Tables:
//! - `c:<collection>`: documents as raw BSON, keyed by the order-preserving encoding of
//!   their `_id` (`keys::encode_id`);
//! - `x:<n>`: one per secondary index; key = the encoded (descending fields inverted)
//!   index values followed by the document's primary key, value = the primary key.
//!   Arrays produce one entry per element (multikey);
//! - `__meta`: the catalog (collection options, index definitions, a version).
//!
//! Reads run on redb's MVCC snapshots from any thread, planned against the catalog of
//! their own snapshot (see `plan`). Writes go to one writer thread that commits
//! whatever has queued up in a single durable transaction (group commit), then
//! acknowledges each write and publishes its change events. An acknowledged write is
//! therefore always on disk, and a crash can only lose writes nobody was told about.
//! Small queries run on the caller's thread under a work budget (`INLINE_BUDGET`);
//! larger ones move to the blocking pool. A background thread queues a TTL pass every
//! `ttl_interval`.

mod catalog;
mod collect;
mod plan;
mod read;
mod resilience;
mod writer;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use bson::{Bson, Document, RawDocument};
use redb::{Database, TableDefinition};

use crate::store::{
    ChangeFeed, CollectionInfo, CollectionOptions, FindAndModifyOptions, FindOptions, IndexSpec,
    MemoryLimits, Store, StoreError, StoreResult, UpdateOptions, UpdateOutcome,
};
use catalog::Catalog;
use plan::Examined;
use read::Snapshot;
use writer::{WriteOp, WriteOutcome, Writer};

pub(crate) fn definition(name: &str) -> TableDefinition<'_, &'static [u8], &'static [u8]> {
    TableDefinition::new(name)
}

pub(crate) fn backend(err: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(err.to_string())
}

pub(crate) fn decode_doc(bytes: &[u8]) -> StoreResult<Document> {
    decode_raw(RawDocument::from_bytes(bytes).map_err(backend)?)
}

pub(crate) fn decode_raw(raw: &RawDocument) -> StoreResult<Document> {
    Document::try_from(raw).map_err(backend)
}

pub(crate) fn encode_doc(doc: &Document) -> StoreResult<Vec<u8>> {
    let mut bytes = Vec::with_capacity(256);
    doc.to_writer(&mut bytes).map_err(backend)?;
    Ok(bytes)
}

/// Tuning of the embedded store.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// redb page cache.
    pub cache_size: usize,
    /// How often expired documents (TTL indexes, timeseries expiry) are deleted.
    pub ttl_interval: Duration,
    /// Memory one request may hold: aggregation input, unindexed sorts, `distinct`.
    pub limits: MemoryLimits,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            cache_size: 256 * 1024 * 1024,
            ttl_interval: Duration::from_secs(5),
            limits: MemoryLimits::default(),
        }
    }
}

/// Cumulative counters (diagnostics, tests, benchmarks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Durable transactions committed by the writer.
    pub commits: u64,
    /// Write operations committed (`writes / commits` = mean group-commit batch).
    pub writes: u64,
    /// Documents fetched and matched by queries (reads and writes).
    pub docs_examined: u64,
    /// Index entries visited by queries.
    pub keys_examined: u64,
}

#[derive(Default)]
pub(crate) struct Stats {
    commits: AtomicU64,
    writes: AtomicU64,
    docs_examined: AtomicU64,
    keys_examined: AtomicU64,
}

impl Stats {
    pub(crate) fn examined(&self, examined: Examined) {
        if examined.docs > 0 {
            self.docs_examined
                .fetch_add(examined.docs, Ordering::Relaxed);
        }
        if examined.keys > 0 {
            self.keys_examined
                .fetch_add(examined.keys, Ordering::Relaxed);
        }
    }

    pub(crate) fn committed(&self, writes: u64) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.writes.fetch_add(writes, Ordering::Relaxed);
    }
}

/// State shared by readers and the writer.
#[derive(Default)]
pub(crate) struct Shared {
    /// The newest catalog the writer committed (readers check its version against
    /// their snapshot's).
    pub catalog: RwLock<Arc<Catalog>>,
    pub stats: Stats,
    pub limits: MemoryLimits,
}

/// How a find was (or would be) executed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explain {
    /// `IDHACK`, `IXSCAN <index>`, `IDSCAN` (range on `_id`) or `COLLSCAN`.
    pub plan: String,
    pub index: Option<String>,
    /// The sort came from the access path (no in-memory sort).
    pub sorted_by_index: bool,
    pub keys_examined: u64,
    pub docs_examined: u64,
    pub returned: u64,
}

struct TtlTask {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

pub struct EmbeddedStore {
    db: Arc<Database>,
    writer: Writer,
    feed: Arc<ChangeFeed>,
    shared: Arc<Shared>,
    ttl: Mutex<Option<TtlTask>>,
}

impl EmbeddedStore {
    /// Opens (or creates) `<data_dir>/opencore.redb`.
    pub fn open(data_dir: &Path) -> StoreResult<Self> {
        Self::open_with(data_dir, EmbeddedOptions::default())
    }

    pub fn open_with(data_dir: &Path, options: EmbeddedOptions) -> StoreResult<Self> {
        std::fs::create_dir_all(data_dir).map_err(backend)?;
        let db = Database::builder()
            .set_cache_size(options.cache_size)
            .create(data_dir.join("opencore.redb"))
            .map_err(|err| match err {
                redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Backend(format!(
                    "the data dir {} is in use by another opencore process; the embedded \
                     store serves one node (run several nodes with --mongodb-url)",
                    data_dir.display()
                )),
                other => backend(other),
            })?;
        let db = Arc::new(db);
        let feed = Arc::new(ChangeFeed::default());
        let shared = Arc::new(Shared {
            limits: options.limits,
            ..Shared::default()
        });
        let writer = Writer::start(db.clone(), feed.clone(), shared.clone())?;
        let ttl = start_ttl(writer.submitter()?, options.ttl_interval)?;
        Ok(EmbeddedStore {
            db,
            writer,
            feed,
            shared,
            ttl: Mutex::new(Some(ttl)),
        })
    }

    async fn write(&self, op: WriteOp) -> StoreResult<WriteOutcome> {
        use tracing::Instrument;
        // A child of the request's span when traces are on; a disabled callsite otherwise.
        let span =
            tracing::info_span!(target: "opencore_trace", "store.write", otel.kind = "client");
        self.writer.submit(op).instrument(span).await
    }

    /// Runs a read on the blocking pool: scans may take long and must not stall actors.
    async fn read<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Snapshot<'_>) -> StoreResult<T> + Send + 'static,
    {
        use tracing::Instrument;
        let (db, shared) = (self.db.clone(), self.shared.clone());
        let span =
            tracing::info_span!(target: "opencore_trace", "store.read", otel.kind = "client");
        tokio::task::spawn_blocking(move || work(&Snapshot::open(&db, &shared)?))
            .instrument(span)
            .await
            .map_err(backend)?
    }

    /// Runs a small read on the calling thread (no unbounded work).
    fn read_inline<T>(&self, work: impl FnOnce(&Snapshot<'_>) -> StoreResult<T>) -> StoreResult<T> {
        work(&Snapshot::open(&self.db, &self.shared)?)
    }

    /// Runs a query on the calling thread while it stays within `INLINE_BUDGET`
    /// (point reads, index lookups, sorted-index pages); `None` when it needs the
    /// blocking pool.
    fn try_inline<T>(
        &self,
        work: impl FnOnce(&Snapshot<'_>) -> StoreResult<T>,
    ) -> StoreResult<Option<T>> {
        match work(&Snapshot::budgeted(&self.db, &self.shared, INLINE_BUDGET)?) {
            Ok(value) => Ok(Some(value)),
            Err(err) if plan::is_over_budget(&err) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Runs a find and reports how it was executed.
    pub async fn explain(
        &self,
        collection: &str,
        filter: &Document,
        options: &FindOptions,
    ) -> StoreResult<Explain> {
        let (collection, filter, options) =
            (collection.to_string(), filter.clone(), options.clone());
        self.read(move |s| {
            s.find(&collection, &filter, &options)
                .map(|(_, explain)| explain)
        })
        .await
    }

    /// Cumulative counters.
    pub fn stats(&self) -> StoreStats {
        let s = &self.shared.stats;
        StoreStats {
            commits: s.commits.load(Ordering::Relaxed),
            writes: s.writes.load(Ordering::Relaxed),
            docs_examined: s.docs_examined.load(Ordering::Relaxed),
            keys_examined: s.keys_examined.load(Ordering::Relaxed),
        }
    }

    /// Runs one TTL pass now (as the background task does periodically); returns how
    /// many documents expired.
    pub async fn expire_now(&self) -> StoreResult<u64> {
        let now_millis = bson::DateTime::now().timestamp_millis();
        match self.write(WriteOp::Expire { now_millis }).await? {
            WriteOutcome::Deleted(n) => Ok(n),
            _ => Err(unexpected()),
        }
    }
}

fn unexpected() -> StoreError {
    StoreError::Backend("unexpected write outcome".into())
}

/// Most documents plus index entries a find/count examines on the calling thread
/// (~0.3 ms); a query that needs more is re-run on the blocking pool.
const INLINE_BUDGET: u64 = 64;

fn start_ttl(submitter: writer::Submitter, interval: Duration) -> StoreResult<TtlTask> {
    let (stop, stopped) = mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("store-ttl".into())
        .spawn(move || loop {
            match stopped.recv_timeout(interval) {
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let now_millis = bson::DateTime::now().timestamp_millis();
                    match submitter.submit_blocking(WriteOp::Expire { now_millis }) {
                        Ok(_) => {}
                        Err(StoreError::Closed) => return,
                        Err(err) => tracing::warn!("TTL pass failed: {err}"),
                    }
                }
                _ => return,
            }
        })
        .map_err(backend)?;
    Ok(TtlTask { stop, thread })
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn find(
        &self,
        collection: &str,
        filter: &Document,
        options: &FindOptions,
    ) -> StoreResult<Vec<Document>> {
        if let Some(docs) =
            self.try_inline(|s| s.find(collection, filter, options).map(|(docs, _)| docs))?
        {
            return Ok(docs);
        }
        let (collection, filter, options) =
            (collection.to_string(), filter.clone(), options.clone());
        self.read(move |s| s.find(&collection, &filter, &options).map(|(docs, _)| docs))
            .await
    }

    async fn find_by_id(&self, collection: &str, id: &Bson) -> StoreResult<Option<Document>> {
        // A point read is a few microseconds: no need to leave the calling thread.
        read::get(&self.db, collection, id)
    }

    async fn count(&self, collection: &str, filter: &Document) -> StoreResult<u64> {
        if let Some(n) = self.try_inline(|s| s.count(collection, filter))? {
            return Ok(n);
        }
        let (collection, filter) = (collection.to_string(), filter.clone());
        self.read(move |s| s.count(&collection, &filter)).await
    }

    async fn distinct(
        &self,
        collection: &str,
        field: &str,
        filter: &Document,
    ) -> StoreResult<Vec<Bson>> {
        let (collection, field, filter) =
            (collection.to_string(), field.to_string(), filter.clone());
        self.read(move |s| s.distinct(&collection, &field, &filter))
            .await
    }

    async fn aggregate(
        &self,
        collection: &str,
        pipeline: &[Document],
    ) -> StoreResult<Vec<Document>> {
        let (collection, pipeline) = (collection.to_string(), pipeline.to_vec());
        let limit_mb = self.shared.limits.aggregate_mb;
        self.read(move |s| s.aggregate(&collection, &pipeline, limit_mb))
            .await
    }

    async fn insert_many(&self, collection: &str, documents: Vec<Document>) -> StoreResult<()> {
        self.write(WriteOp::Insert {
            collection: collection.to_string(),
            documents,
        })
        .await
        .map(|_| ())
    }

    async fn replace_one(
        &self,
        collection: &str,
        filter: &Document,
        replacement: Document,
        upsert: bool,
    ) -> StoreResult<UpdateOutcome> {
        let op = WriteOp::Replace {
            collection: collection.to_string(),
            filter: filter.clone(),
            replacement,
            upsert,
        };
        match self.write(op).await? {
            WriteOutcome::Updated(outcome) => Ok(outcome),
            _ => Err(unexpected()),
        }
    }

    async fn update(
        &self,
        collection: &str,
        filter: &Document,
        update: &Document,
        options: UpdateOptions,
    ) -> StoreResult<UpdateOutcome> {
        let op = WriteOp::Update {
            collection: collection.to_string(),
            filter: filter.clone(),
            update: update.clone(),
            options,
        };
        match self.write(op).await? {
            WriteOutcome::Updated(outcome) => Ok(outcome),
            _ => Err(unexpected()),
        }
    }

    async fn find_one_and_update(
        &self,
        collection: &str,
        filter: &Document,
        update: &Document,
        options: &FindAndModifyOptions,
    ) -> StoreResult<Option<Document>> {
        let op = WriteOp::FindAndModify {
            collection: collection.to_string(),
            filter: filter.clone(),
            update: update.clone(),
            options: options.clone(),
        };
        match self.write(op).await? {
            WriteOutcome::Found(doc) => Ok(doc),
            _ => Err(unexpected()),
        }
    }

    async fn delete(
        &self,
        collection: &str,
        filter: &Document,
        just_one: bool,
    ) -> StoreResult<u64> {
        let op = WriteOp::Delete {
            collection: collection.to_string(),
            filter: filter.clone(),
            just_one,
        };
        match self.write(op).await? {
            WriteOutcome::Deleted(n) => Ok(n),
            _ => Err(unexpected()),
        }
    }

    async fn list_collections(&self) -> StoreResult<Vec<CollectionInfo>> {
        self.read_inline(|s| Ok(s.list_collections()))
    }

    async fn create_collection(&self, name: &str, options: &CollectionOptions) -> StoreResult<()> {
        let op = WriteOp::CreateCollection {
            collection: name.to_string(),
            options: options.clone(),
        };
        self.write(op).await.map(|_| ())
    }

    async fn drop_collection(&self, name: &str) -> StoreResult<bool> {
        match self
            .write(WriteOp::DropCollection {
                collection: name.to_string(),
            })
            .await?
        {
            WriteOutcome::Dropped(existed) => Ok(existed),
            _ => Err(unexpected()),
        }
    }

    async fn create_index(&self, collection: &str, spec: &IndexSpec) -> StoreResult<String> {
        let op = WriteOp::CreateIndex {
            collection: collection.to_string(),
            spec: spec.clone(),
        };
        match self.write(op).await? {
            WriteOutcome::IndexName(name) => Ok(name),
            _ => Err(unexpected()),
        }
    }

    async fn list_indexes(&self, collection: &str) -> StoreResult<Vec<Document>> {
        self.read_inline(|s| s.list_indexes(collection))
    }

    async fn drop_index(&self, collection: &str, name: &str) -> StoreResult<()> {
        let op = WriteOp::DropIndex {
            collection: collection.to_string(),
            name: name.to_string(),
        };
        self.write(op).await.map(|_| ())
    }

    fn changes(&self) -> &ChangeFeed {
        &self.feed
    }

    async fn close(&self) -> StoreResult<()> {
        let ttl = self.ttl.lock().map_err(|_| StoreError::Closed)?.take();
        if let Some(ttl) = ttl {
            drop(ttl.stop);
            let _ = tokio::task::spawn_blocking(move || ttl.thread.join()).await;
        }
        self.writer.stop().await
    }
}

#[cfg(test)]
mod bounds_tests;
#[cfg(test)]
mod tests;
