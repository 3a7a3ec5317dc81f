//! Document storage behind one trait. The embedded backend (redb, the default) and
//! the MongoDB backend implement the same contract: collections of BSON documents,
//! MongoDB-shaped filters, and a change feed per collection.

pub mod changes;
pub mod embedded;
pub mod engine;
pub mod keys;

use std::sync::Arc;

use async_trait::async_trait;
use bson::{Bson, Document};

pub use changes::{ChangeEvent, ChangeFeed, ChangeOperation};

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
}

impl From<engine::EngineError> for StoreError {
    fn from(err: engine::EngineError) -> Self {
        StoreError::Query(err.to_string())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Options of a find. `limit == 0` means no limit.
#[derive(Debug, Clone, Default)]
pub struct FindOptions {
    pub projection: Option<Document>,
    pub sort: Option<Document>,
    pub skip: u64,
    pub limit: u64,
}

/// Outcome of a replace/update.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpdateOutcome {
    pub matched: u64,
    pub modified: u64,
    pub upserted_id: Option<Bson>,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Documents matching `filter`, after sort/skip/limit/projection.
    async fn find(&self, collection: &str, filter: &Document, options: &FindOptions) -> StoreResult<Vec<Document>>;
    /// The document with this `_id`.
    async fn find_by_id(&self, collection: &str, id: &Bson) -> StoreResult<Option<Document>>;
    async fn count(&self, collection: &str, filter: &Document) -> StoreResult<u64>;
    /// Inserts documents that already carry their `_id`; all or none.
    async fn insert_many(&self, collection: &str, documents: Vec<Document>) -> StoreResult<()>;
    /// Replaces the first document matching `filter` (keeping its `_id`).
    async fn replace_one(&self, collection: &str, filter: &Document, replacement: Document, upsert: bool)
        -> StoreResult<UpdateOutcome>;
    /// Deletes matching documents (at most one when `just_one`); returns how many.
    async fn delete(&self, collection: &str, filter: &Document, just_one: bool) -> StoreResult<u64>;
    /// Change events of one collection, in commit order.
    fn changes(&self) -> &ChangeFeed;
    /// Flushes and stops background work.
    async fn close(&self) -> StoreResult<()>;
}

pub type SharedStore = Arc<dyn Store>;
