//! The embedded default store: redb in the data dir, one table per collection,
//! documents as raw BSON keyed by their encoded `_id`.
//!
//! Reads run on redb's MVCC snapshots from any thread. Writes go to one writer thread
//! that commits whatever has queued up in a single durable transaction (group commit),
//! then acknowledges each write and publishes its change events. An acknowledged write
//! is therefore always on disk, and a crash can only lose writes nobody was told about.

mod read;
mod writer;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bson::{Bson, Document};
use redb::{Database, TableDefinition};

use crate::store::{ChangeFeed, FindOptions, Store, StoreError, StoreResult, UpdateOutcome};
use writer::{WriteOp, WriteOutcome, Writer};

pub(crate) fn table(collection: &str) -> String {
    format!("c:{collection}")
}

pub(crate) fn definition(name: &str) -> TableDefinition<'_, &'static [u8], &'static [u8]> {
    TableDefinition::new(name)
}

pub(crate) fn backend(err: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(err.to_string())
}

pub struct EmbeddedStore {
    db: Arc<Database>,
    writer: Writer,
    feed: Arc<ChangeFeed>,
}

impl EmbeddedStore {
    /// Opens (or creates) `<data_dir>/opencore.redb`.
    pub fn open(data_dir: &Path) -> StoreResult<Self> {
        std::fs::create_dir_all(data_dir).map_err(backend)?;
        let db = Database::builder()
            .set_cache_size(256 * 1024 * 1024)
            .create(data_dir.join("opencore.redb"))
            .map_err(backend)?;
        let db = Arc::new(db);
        let feed = Arc::new(ChangeFeed::default());
        let writer = Writer::start(db.clone(), feed.clone())?;
        Ok(EmbeddedStore { db, writer, feed })
    }

    async fn write(&self, op: WriteOp) -> StoreResult<WriteOutcome> {
        self.writer.submit(op).await
    }

    /// Runs a read on the blocking pool: scans may take long and must not stall actors.
    async fn read<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> StoreResult<T> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || work(&db)).await.map_err(backend)?
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn find(&self, collection: &str, filter: &Document, options: &FindOptions) -> StoreResult<Vec<Document>> {
        let (collection, filter, options) = (collection.to_string(), filter.clone(), options.clone());
        self.read(move |db| read::find(db, &collection, &filter, &options)).await
    }

    async fn find_by_id(&self, collection: &str, id: &Bson) -> StoreResult<Option<Document>> {
        // A point read is a few microseconds: no need to leave the calling thread.
        read::get(&self.db, collection, id)
    }

    async fn count(&self, collection: &str, filter: &Document) -> StoreResult<u64> {
        let (collection, filter) = (collection.to_string(), filter.clone());
        self.read(move |db| read::count(db, &collection, &filter)).await
    }

    async fn insert_many(&self, collection: &str, documents: Vec<Document>) -> StoreResult<()> {
        self.write(WriteOp::Insert { collection: collection.to_string(), documents }).await.map(|_| ())
    }

    async fn replace_one(
        &self,
        collection: &str,
        filter: &Document,
        replacement: Document,
        upsert: bool,
    ) -> StoreResult<UpdateOutcome> {
        let op = WriteOp::Replace { collection: collection.to_string(), filter: filter.clone(), replacement, upsert };
        match self.write(op).await? {
            WriteOutcome::Updated(outcome) => Ok(outcome),
            WriteOutcome::Deleted(_) | WriteOutcome::Inserted => Err(StoreError::Backend("unexpected outcome".into())),
        }
    }

    async fn delete(&self, collection: &str, filter: &Document, just_one: bool) -> StoreResult<u64> {
        let op = WriteOp::Delete { collection: collection.to_string(), filter: filter.clone(), just_one };
        match self.write(op).await? {
            WriteOutcome::Deleted(n) => Ok(n),
            _ => Err(StoreError::Backend("unexpected outcome".into())),
        }
    }

    fn changes(&self) -> &ChangeFeed {
        &self.feed
    }

    async fn close(&self) -> StoreResult<()> {
        self.writer.stop().await
    }
}

#[cfg(test)]
mod tests;
