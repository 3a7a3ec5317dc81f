//! Document storage behind one trait. The embedded backend (redb, the default) and
//! the MongoDB backend implement the same contract: collections of BSON documents,
//! MongoDB-shaped filters, and a change feed per collection.

pub mod changes;
pub mod embedded;
pub mod engine;
pub mod keys;
pub mod mongo;
pub mod names;

use std::sync::Arc;

use async_trait::async_trait;
use bson::{Bson, Document};

pub use changes::{ChangeEvent, ChangeFeed, ChangeOperation, Subscription};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    #[error("E11000 duplicate key error collection: {collection} dup key: {key}")]
    DuplicateKey { collection: String, key: String },
    #[error("{0}")]
    Query(String),
    #[error("storage failure: {0}")]
    Backend(String),
    #[error("the store is closed")]
    Closed,
    #[error("ns not found: {0}")]
    NoSuchCollection(String),
    #[error("index not found with name [{0}]")]
    NoSuchIndex(String),
    #[error("{0}")]
    InvalidOptions(String),
    /// A read would hold more document bytes in memory than it is allowed.
    #[error("Query size exceeded {limit_mb} mb")]
    TooLarge { limit_mb: u64 },
    /// The query engine refused client data that exceeds one of its bounds.
    #[error("{0}")]
    Limit(engine::LimitError),
    /// A sort no index provides would hold more document bytes than `sort_mb`.
    #[error("Sort exceeded the memory limit of {limit_mb} MB")]
    SortTooLarge { limit_mb: u64 },
    /// `distinct` found more value bytes than `distinct_mb`.
    #[error("distinct too big: its values exceed {limit_mb} MB")]
    DistinctTooLarge { limit_mb: u64 },
    /// The store failed internally while applying this one write (a bug, e.g. a panic);
    /// the write was rolled back, the store goes on. The text is for logs only.
    #[error("the write failed inside the store and was rolled back: {0}")]
    WriteFailed(String),
}

impl From<engine::EngineError> for StoreError {
    fn from(err: engine::EngineError) -> Self {
        match err {
            engine::EngineError::Limit(engine::LimitError::Memory { limit_mb }) => {
                StoreError::TooLarge { limit_mb }
            }
            engine::EngineError::Limit(limit) => StoreError::Limit(limit),
            other => StoreError::Query(other.to_string()),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Memory one request may make the store hold, in megabytes (0 = unlimited). Both
/// backends apply them; MongoDB also enforces its own server-side limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryLimits {
    /// Documents one aggregation reads (embedded) or returns (both backends).
    pub aggregate_mb: u64,
    /// Documents a sort without a providing index holds (the top skip + limit, or all).
    pub sort_mb: u64,
    /// The values one `distinct` collects.
    pub distinct_mb: u64,
}

impl Default for MemoryLimits {
    fn default() -> Self {
        MemoryLimits {
            aggregate_mb: 256,
            sort_mb: 100,
            distinct_mb: 16,
        }
    }
}

/// Megabytes as bytes; 0 (unlimited) as `u64::MAX`.
pub(crate) fn mb_to_bytes(mb: u64) -> u64 {
    match mb {
        0 => u64::MAX,
        mb => mb.saturating_mul(1024 * 1024),
    }
}

/// Options of a find. `limit == 0` means no limit.
#[derive(Debug, Clone, Default)]
pub struct FindOptions {
    pub projection: Option<Document>,
    pub sort: Option<Document>,
    pub skip: u64,
    pub limit: u64,
}

/// Options of an update with operators (or a replacement document).
#[derive(Debug, Clone, Copy, Default)]
pub struct UpdateOptions {
    pub upsert: bool,
    /// Update every match (`updateMany`) instead of the first.
    pub multi: bool,
}

/// Options of an atomic find-one-and-update (workitem pops, upserts by key).
#[derive(Debug, Clone, Default)]
pub struct FindAndModifyOptions {
    /// Which match to take when several do.
    pub sort: Option<Document>,
    pub upsert: bool,
    /// Return the document after the update (else before it).
    pub return_new: bool,
    pub projection: Option<Document>,
}

/// Outcome of a replace/update.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpdateOutcome {
    pub matched: u64,
    pub modified: u64,
    pub upserted_id: Option<Bson>,
}

impl UpdateOutcome {
    /// Whether the write changed anything (a modification or an insert).
    pub fn changed(&self) -> bool {
        self.modified > 0 || self.upserted_id.is_some()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TimeseriesOptions {
    pub time_field: String,
    pub meta_field: Option<String>,
    pub granularity: Option<String>,
}

/// Options of `create_collection`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CollectionOptions {
    pub timeseries: Option<TimeseriesOptions>,
    /// Documents expire this long after their time field (timeseries collections).
    pub expire_after_seconds: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CollectionInfo {
    pub name: String,
    /// `collection` or `timeseries`, as MongoDB's listCollections reports it.
    pub kind: String,
    /// The creation options as MongoDB reports them (e.g. `{timeseries: {...}}`).
    pub options: Document,
}

/// A secondary index. `keys` is MongoDB's key document (`{a: 1, b: -1}`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IndexSpec {
    pub keys: Document,
    /// Generated MongoDB-style (`a_1_b_-1`) when absent.
    pub name: Option<String>,
    pub unique: bool,
    /// TTL: documents expire this long after the (date) value of the single key field.
    pub expire_after_seconds: Option<i64>,
    pub partial_filter: Option<Document>,
}

/// The storage contract both backends implement. Filters, updates, projections, sorts
/// and pipelines are MongoDB documents with MongoDB semantics. Every committed write
/// publishes its change events (with the full document) on `changes()`.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Documents matching `filter`, after sort/skip/limit/projection.
    async fn find(
        &self,
        collection: &str,
        filter: &Document,
        options: &FindOptions,
    ) -> StoreResult<Vec<Document>>;
    /// The document with this `_id`.
    async fn find_by_id(&self, collection: &str, id: &Bson) -> StoreResult<Option<Document>>;
    async fn count(&self, collection: &str, filter: &Document) -> StoreResult<u64>;
    /// Distinct values of `field` among matching documents (arrays contribute elements).
    async fn distinct(
        &self,
        collection: &str,
        field: &str,
        filter: &Document,
    ) -> StoreResult<Vec<Bson>>;
    /// Runs an aggregation pipeline. Foreign collections (`$lookup`) are read from the
    /// same store; the caller is responsible for restricting them (ACL stages).
    async fn aggregate(
        &self,
        collection: &str,
        pipeline: &[Document],
    ) -> StoreResult<Vec<Document>>;
    /// Inserts documents that already carry their `_id`; all or none.
    async fn insert_many(&self, collection: &str, documents: Vec<Document>) -> StoreResult<()>;
    /// Replaces the first document matching `filter` (keeping its `_id`).
    async fn replace_one(
        &self,
        collection: &str,
        filter: &Document,
        replacement: Document,
        upsert: bool,
    ) -> StoreResult<UpdateOutcome>;
    /// Applies an update document (operators) to the first or every match.
    async fn update(
        &self,
        collection: &str,
        filter: &Document,
        update: &Document,
        options: UpdateOptions,
    ) -> StoreResult<UpdateOutcome>;
    /// Atomically finds one document (by `sort` when several match), updates it and
    /// returns it; with `upsert`, inserts when nothing matches.
    async fn find_one_and_update(
        &self,
        collection: &str,
        filter: &Document,
        update: &Document,
        options: &FindAndModifyOptions,
    ) -> StoreResult<Option<Document>>;
    /// Deletes matching documents (at most one when `just_one`); returns how many.
    async fn delete(&self, collection: &str, filter: &Document, just_one: bool)
        -> StoreResult<u64>;
    async fn list_collections(&self) -> StoreResult<Vec<CollectionInfo>>;
    /// Creates a collection explicitly (collections also appear on first insert).
    async fn create_collection(&self, name: &str, options: &CollectionOptions) -> StoreResult<()>;
    /// Drops a collection with its indexes; false when it did not exist.
    async fn drop_collection(&self, name: &str) -> StoreResult<bool>;
    /// Creates an index (idempotent for an identical spec); returns its name.
    async fn create_index(&self, collection: &str, spec: &IndexSpec) -> StoreResult<String>;
    /// Indexes as MongoDB's listIndexes reports them (`{v, key, name, unique?, ...}`),
    /// including the implicit `_id_`.
    async fn list_indexes(&self, collection: &str) -> StoreResult<Vec<Document>>;
    async fn drop_index(&self, collection: &str, name: &str) -> StoreResult<()>;
    /// Change events of every collection, in commit order per collection.
    fn changes(&self) -> &ChangeFeed;
    /// Waits (at most `timeout`) until changes to `collection` committed from now on
    /// reach its subscribers; false when that did not happen in time. The embedded
    /// store publishes as it commits, so it is ready at once; MongoDB waits for the
    /// collection's change stream to open.
    async fn feed_ready(&self, _collection: &str, _timeout: std::time::Duration) -> bool {
        true
    }
    /// Flushes and stops background work.
    async fn close(&self) -> StoreResult<()>;
}

pub type SharedStore = Arc<dyn Store>;
