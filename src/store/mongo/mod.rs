//! The MongoDB backend: the `Store` contract on a MongoDB (or MongoDB-protocol) server
//! through the official driver.
//!
//! * Every driver call runs on the runtime that connected the store (the server's main
//!   multi-thread runtime), whatever thread calls the store: the driver's connections
//!   and background tasks live there, and worker threads never poll its sockets.
//! * Filters, updates, projections, sorts and pipelines go to the server unchanged.
//! * `insert_many` of several documents runs in a transaction (all or none). On a
//!   deployment without transactions (a standalone server) it falls back to an ordered
//!   insert and deletes what it inserted when a later document fails; other readers
//!   (and the change stream) may then briefly see the partial batch.
//! * Memory per request: finds and aggregations run with `allowDiskUse: false` (the
//!   server's own in-memory sort/stage limits apply), and what this node collects is
//!   capped like the embedded store's: aggregation results by `aggregate_mb`,
//!   `distinct` values by `distinct_mb` (`MemoryLimits`).
//! * Change events come only from change streams (`changes.rs`): one per collection
//!   in use on this node (subscribed to, or pinned: `users` and collections whose
//!   generation a cache reads); a stream closes when its last subscriber leaves. The
//!   store's own acknowledged writes bump the collection's generation at once, so
//!   caches (roles) do not wait for the stream.

mod changes;
pub mod convert;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bson::{doc, Bson, Document};
use futures_util::TryStreamExt;
use mongodb::error::{
    Error as MongoError, ErrorKind, TRANSIENT_TRANSACTION_ERROR, UNKNOWN_TRANSACTION_COMMIT_RESULT,
};
use mongodb::options::{ClientOptions, ReturnDocument};
use mongodb::{Client, Collection, Database};

use crate::store::names::USERS_COLLECTION;
use crate::store::{
    mb_to_bytes, ChangeFeed, CollectionInfo, CollectionOptions, FindAndModifyOptions, FindOptions,
    IndexSpec, MemoryLimits, Store, StoreError, StoreResult, UpdateOptions, UpdateOutcome,
};
use changes::Pumps;
use convert::{codes, server_code, store_error};

pub use changes::RESTART_DELAY;
pub use convert::redact_url;

/// How long `connect` waits for the `users` change stream before going on without it
/// (it keeps retrying in the background).
const USERS_STREAM_WAIT: Duration = Duration::from_secs(10);
/// Connections to the server when the URL sets no `maxPoolSize` (the reference's
/// Node.js driver default; the Rust driver's own default is 10).
const DEFAULT_POOL_SIZE: u32 = 100;
/// Connections for change streams: one per watched collection.
const STREAM_POOL_SIZE: u32 = 1000;
/// Attempts of a multi-document insert transaction on transient errors.
const TRANSACTION_ATTEMPTS: usize = 3;

pub struct MongoStore {
    client: Client,
    /// The change streams' own connection pool.
    stream_client: Client,
    db: Database,
    feed: Arc<ChangeFeed>,
    pumps: Arc<Pumps>,
    runtime: tokio::runtime::Handle,
    closed: AtomicBool,
    /// False once the deployment refused a transaction (standalone server).
    transactions: Arc<AtomicBool>,
    limits: MemoryLimits,
}

impl MongoStore {
    /// Connects (checking the server answers) and starts following `users`.
    pub async fn connect(url: &str, database: &str) -> StoreResult<Self> {
        Self::connect_with(url, database, RESTART_DELAY).await
    }

    /// As `connect`, with the first delay before a failed change stream is reopened.
    pub async fn connect_with(
        url: &str,
        database: &str,
        restart_delay: Duration,
    ) -> StoreResult<Self> {
        let mut options = ClientOptions::parse(url).await.map_err(|err| {
            StoreError::InvalidOptions(format!("invalid MongoDB URL {}: {err}", redact_url(url)))
        })?;
        if options.app_name.is_none() {
            options.app_name = Some("opencore".into());
        }
        if options.max_pool_size.is_none() {
            options.max_pool_size = Some(DEFAULT_POOL_SIZE);
        }
        // Change streams hold a connection each (a getMore waits on the server), so
        // they get their own pool and never starve requests of connections.
        let mut stream_options = options.clone();
        stream_options.max_pool_size = Some(STREAM_POOL_SIZE);
        stream_options.min_pool_size = None;
        let invalid = |err: MongoError| StoreError::InvalidOptions(err.to_string());
        let client = Client::with_options(options).map_err(invalid)?;
        let stream_client = Client::with_options(stream_options).map_err(invalid)?;
        let db = client.database(database);
        db.run_command(doc! {"ping": 1}).await.map_err(|err| {
            StoreError::Backend(format!(
                "MongoDB at {} does not answer: {err}",
                redact_url(url)
            ))
        })?;

        let runtime = tokio::runtime::Handle::current();
        let feed = Arc::new(ChangeFeed::default());
        let pumps = Pumps::new(
            stream_client.database(database),
            Arc::downgrade(&feed),
            runtime.clone(),
            restart_delay,
        );
        let hook_pumps = pumps.clone();
        feed.set_watch_hook(Box::new(move |collection: &str| {
            hook_pumps.ensure(collection);
        }));
        let hook_pumps = pumps.clone();
        feed.set_unwatch_hook(Box::new(move |collection: &str| {
            hook_pumps.release(collection);
        }));
        // Role and user caches on every node depend on seeing `users` change: its
        // stream never closes.
        feed.pin(USERS_COLLECTION);
        for collection in feed.watched_collections() {
            pumps.ensure(&collection);
        }
        let store = MongoStore {
            client,
            stream_client,
            db,
            feed,
            pumps,
            runtime,
            closed: AtomicBool::new(false),
            transactions: Arc::new(AtomicBool::new(true)),
            limits: MemoryLimits::default(),
        };
        if !store
            .wait_watching(USERS_COLLECTION, USERS_STREAM_WAIT)
            .await
        {
            tracing::warn!("the users change stream is not open yet; changes by other nodes reach caches once it is");
        }
        Ok(store)
    }

    /// Sets the per-request memory limits (`MemoryLimits::default()` until then).
    pub fn with_limits(mut self, limits: MemoryLimits) -> Self {
        self.limits = limits;
        self
    }

    pub fn database_name(&self) -> &str {
        self.db.name()
    }

    /// Makes sure `collection` has its change stream and waits (at most `timeout`)
    /// until it is open: changes committed after this returns true produce events.
    /// It neither subscribes nor pins: a stream started here closes when the last
    /// subscriber of the collection leaves.
    pub async fn wait_watching(&self, collection: &str, timeout: Duration) -> bool {
        let mut open = self.pumps.ensure(collection);
        tokio::time::timeout(timeout, open.wait_for(|open| *open))
            .await
            .map(|result| result.is_ok())
            .unwrap_or(false)
    }

    /// Collections this node follows with a change stream now (in use, see
    /// `ChangeFeed`).
    pub fn watched_collections(&self) -> Vec<String> {
        self.pumps.collections()
    }

    fn collection(&self, name: &str) -> Collection<Document> {
        self.db.collection::<Document>(name)
    }

    /// Runs driver work on the store's runtime.
    async fn run<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: Future<Output = StoreResult<T>> + Send + 'static,
    {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        match self.runtime.spawn(work).await {
            Ok(result) => result,
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            Err(_) => Err(StoreError::Closed),
        }
    }

    /// A write was acknowledged (or may have partly happened): caches must reload.
    fn bump(&self, collection: &str) {
        self.feed.bump(collection);
    }

    async fn collection_exists(db: &Database, name: &str) -> Result<bool, MongoError> {
        Ok(!db
            .list_collection_names()
            .filter(doc! {"name": name})
            .await?
            .is_empty())
    }
}

impl Drop for MongoStore {
    fn drop(&mut self) {
        self.pumps.signal_stop();
    }
}

/// Inserts several documents all or none (see the module docs).
async fn insert_all(
    client: Client,
    coll: Collection<Document>,
    documents: Vec<Document>,
    transactions: Arc<AtomicBool>,
) -> Result<(), MongoError> {
    if documents.len() > 1 && transactions.load(Ordering::Acquire) {
        match insert_in_transaction(&client, &coll, &documents).await {
            Err(err)
                if matches!(err.kind.as_ref(), ErrorKind::Transaction { .. })
                    || is_transactions_unsupported(&err) =>
            {
                tracing::warn!(%err, "the MongoDB deployment has no transactions; multi-document inserts are undone by hand when they fail");
                transactions.store(false, Ordering::Release);
            }
            other => return other,
        }
    }
    match coll.insert_many(&documents).ordered(true).await {
        Ok(_) => Ok(()),
        Err(err) => {
            if documents.len() > 1 {
                undo_partial_insert(&coll, &documents, &err).await;
            }
            Err(err)
        }
    }
}

fn is_transactions_unsupported(err: &MongoError) -> bool {
    // "Transaction numbers are only allowed on a replica set member or mongos".
    convert::server_error(err)
        .map(|(code, message)| code == 20 && message.contains("Transaction numbers"))
        .unwrap_or(false)
}

async fn insert_in_transaction(
    client: &Client,
    coll: &Collection<Document>,
    documents: &[Document],
) -> Result<(), MongoError> {
    let mut session = client.start_session().await?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        session.start_transaction().await?;
        if let Err(err) = coll
            .insert_many(documents)
            .ordered(true)
            .session(&mut session)
            .await
        {
            let _ = session.abort_transaction().await;
            if err.contains_label(TRANSIENT_TRANSACTION_ERROR) && attempt < TRANSACTION_ATTEMPTS {
                continue;
            }
            return Err(err);
        }
        let mut commits = 0;
        loop {
            commits += 1;
            match session.commit_transaction().await {
                Ok(()) => return Ok(()),
                Err(err)
                    if err.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT)
                        && commits < TRANSACTION_ATTEMPTS =>
                {
                    continue
                }
                Err(err)
                    if err.contains_label(TRANSIENT_TRANSACTION_ERROR)
                        && attempt < TRANSACTION_ATTEMPTS =>
                {
                    break
                }
                Err(err) => return Err(err),
            }
        }
    }
}

/// After an ordered insert failed at some index, deletes the documents before it.
async fn undo_partial_insert(
    coll: &Collection<Document>,
    documents: &[Document],
    err: &MongoError,
) {
    let failed_at = match err.kind.as_ref() {
        ErrorKind::InsertMany(insert) => insert
            .write_errors
            .as_ref()
            .and_then(|errors| errors.first())
            .map(|e| e.index),
        _ => None,
    };
    let Some(failed_at) = failed_at else { return };
    let ids: Vec<Bson> = documents[..failed_at.min(documents.len())]
        .iter()
        .filter_map(|d| d.get("_id").cloned())
        .collect();
    if ids.is_empty() {
        return;
    }
    if let Err(undo) = coll.delete_many(doc! {"_id": {"$in": ids}}).await {
        tracing::error!(%undo, "could not undo a partial insert");
    }
}

#[async_trait]
impl Store for MongoStore {
    async fn find(
        &self,
        collection: &str,
        filter: &Document,
        options: &FindOptions,
    ) -> StoreResult<Vec<Document>> {
        let coll = self
            .collection(collection)
            .clone_with_type::<bson::RawDocumentBuf>();
        let (name, filter, options) = (collection.to_string(), filter.clone(), options.clone());
        let limit_mb = self.limits.aggregate_mb;
        self.run(async move {
            let mut find = coll.find(filter).allow_disk_use(false);
            if let Some(projection) = options.projection {
                find = find.projection(projection);
            }
            if let Some(sort) = options.sort {
                find = find.sort(sort);
            }
            if options.skip > 0 {
                find = find.skip(options.skip);
            }
            if options.limit > 0 {
                find = find.limit(i64::try_from(options.limit).unwrap_or(i64::MAX));
            }
            let cursor = find.await.map_err(|err| store_error(&name, err))?;
            collect_bounded(cursor, &name, limit_mb).await
        })
        .await
    }

    async fn find_by_id(&self, collection: &str, id: &Bson) -> StoreResult<Option<Document>> {
        let coll = self.collection(collection);
        let (name, id) = (collection.to_string(), id.clone());
        self.run(async move {
            coll.find_one(doc! {"_id": id})
                .await
                .map_err(|err| store_error(&name, err))
        })
        .await
    }

    async fn count(&self, collection: &str, filter: &Document) -> StoreResult<u64> {
        let coll = self.collection(collection);
        let (name, filter) = (collection.to_string(), filter.clone());
        self.run(async move {
            coll.count_documents(filter)
                .await
                .map_err(|err| store_error(&name, err))
        })
        .await
    }

    async fn distinct(
        &self,
        collection: &str,
        field: &str,
        filter: &Document,
    ) -> StoreResult<Vec<Bson>> {
        let coll = self.collection(collection);
        let (name, field, filter) = (collection.to_string(), field.to_string(), filter.clone());
        let limit_mb = self.limits.distinct_mb;
        self.run(async move {
            let values = coll
                .distinct(field, filter)
                .await
                .map_err(|err| store_error(&name, err))?;
            let bytes = values.iter().fold(0u64, |sum, value| {
                let mut key = Vec::new();
                crate::store::engine::compare::hash_key(value, &mut key);
                sum.saturating_add(key.len() as u64)
            });
            if bytes > mb_to_bytes(limit_mb) {
                return Err(StoreError::DistinctTooLarge { limit_mb });
            }
            Ok(values)
        })
        .await
    }

    async fn aggregate(
        &self,
        collection: &str,
        pipeline: &[Document],
    ) -> StoreResult<Vec<Document>> {
        let coll = self.collection(collection);
        let (name, pipeline) = (collection.to_string(), pipeline.to_vec());
        let limit_mb = self.limits.aggregate_mb;
        self.run(async move {
            let cursor = coll
                .aggregate(pipeline)
                .allow_disk_use(false)
                .await
                .map_err(|err| store_error(&name, err))?
                .with_type::<bson::RawDocumentBuf>();
            collect_bounded(cursor, &name, limit_mb).await
        })
        .await
    }

    async fn insert_many(&self, collection: &str, documents: Vec<Document>) -> StoreResult<()> {
        if documents.is_empty() {
            return Ok(());
        }
        let coll = self.collection(collection);
        let (name, client, transactions) = (
            collection.to_string(),
            self.client.clone(),
            self.transactions.clone(),
        );
        let result = self
            .run(async move {
                insert_all(client, coll, documents, transactions)
                    .await
                    .map_err(|err| store_error(&name, err))
            })
            .await;
        self.bump_after(collection, &result, |_| true);
        result
    }

    async fn replace_one(
        &self,
        collection: &str,
        filter: &Document,
        replacement: Document,
        upsert: bool,
    ) -> StoreResult<UpdateOutcome> {
        let coll = self.collection(collection);
        let (name, filter) = (collection.to_string(), filter.clone());
        let result = self
            .run(async move {
                let result = coll
                    .replace_one(filter, replacement)
                    .upsert(upsert)
                    .await
                    .map_err(|err| store_error(&name, err))?;
                Ok(outcome_of(result))
            })
            .await;
        self.bump_after(collection, &result, UpdateOutcome::changed);
        result
    }

    async fn update(
        &self,
        collection: &str,
        filter: &Document,
        update: &Document,
        options: UpdateOptions,
    ) -> StoreResult<UpdateOutcome> {
        let coll = self.collection(collection);
        let (name, filter, update) = (collection.to_string(), filter.clone(), update.clone());
        let result = self
            .run(async move {
                let result = if options.multi {
                    coll.update_many(filter, update)
                        .upsert(options.upsert)
                        .await
                } else {
                    coll.update_one(filter, update).upsert(options.upsert).await
                }
                .map_err(|err| store_error(&name, err))?;
                Ok(outcome_of(result))
            })
            .await;
        self.bump_after(collection, &result, UpdateOutcome::changed);
        result
    }

    async fn find_one_and_update(
        &self,
        collection: &str,
        filter: &Document,
        update: &Document,
        options: &FindAndModifyOptions,
    ) -> StoreResult<Option<Document>> {
        let coll = self.collection(collection);
        let (name, filter, update, options) = (
            collection.to_string(),
            filter.clone(),
            update.clone(),
            options.clone(),
        );
        let upsert = options.upsert;
        let result = self
            .run(async move {
                let mut action = coll
                    .find_one_and_update(filter, update)
                    .upsert(options.upsert)
                    .return_document(if options.return_new {
                        ReturnDocument::After
                    } else {
                        ReturnDocument::Before
                    });
                if let Some(sort) = options.sort {
                    action = action.sort(sort);
                }
                if let Some(projection) = options.projection {
                    action = action.projection(projection);
                }
                action.await.map_err(|err| store_error(&name, err))
            })
            .await;
        self.bump_after(collection, &result, |found| found.is_some() || upsert);
        result
    }

    async fn delete(
        &self,
        collection: &str,
        filter: &Document,
        just_one: bool,
    ) -> StoreResult<u64> {
        let coll = self.collection(collection);
        let (name, filter) = (collection.to_string(), filter.clone());
        let result = self
            .run(async move {
                let result = if just_one {
                    coll.delete_one(filter).await
                } else {
                    coll.delete_many(filter).await
                };
                result
                    .map(|deleted| deleted.deleted_count)
                    .map_err(|err| store_error(&name, err))
            })
            .await;
        self.bump_after(collection, &result, |deleted| *deleted > 0);
        result
    }

    async fn list_collections(&self) -> StoreResult<Vec<CollectionInfo>> {
        let db = self.db.clone();
        self.run(async move {
            let cursor = db
                .list_collections()
                .await
                .map_err(|err| store_error("", err))?;
            let specs: Vec<Document> = cursor
                .with_type::<Document>()
                .try_collect()
                .await
                .map_err(|err| store_error("", err))?;
            let mut infos: Vec<CollectionInfo> = specs
                .into_iter()
                .filter_map(|spec| {
                    let name = spec.get_str("name").ok()?.to_string();
                    if name.starts_with("system.") {
                        return None;
                    }
                    Some(CollectionInfo {
                        kind: convert::collection_kind(&spec),
                        options: spec.get_document("options").cloned().unwrap_or_default(),
                        name,
                    })
                })
                .collect();
            infos.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(infos)
        })
        .await
    }

    async fn create_collection(&self, name: &str, options: &CollectionOptions) -> StoreResult<()> {
        let command = convert::create_command(name, options)?;
        let (db, name) = (self.db.clone(), name.to_string());
        self.run(async move {
            let exists =
                || StoreError::InvalidOptions(format!("Collection {name} already exists."));
            // Newer servers accept re-creating with identical options: refuse it the
            // same way everywhere.
            if Self::collection_exists(&db, &name)
                .await
                .map_err(|err| store_error(&name, err))?
            {
                return Err(exists());
            }
            match db.run_command(command).await {
                Ok(_) => Ok(()),
                Err(err) if server_code(&err) == Some(codes::NAMESPACE_EXISTS) => Err(exists()),
                Err(err) => Err(store_error(&name, err)),
            }
        })
        .await
    }

    async fn drop_collection(&self, name: &str) -> StoreResult<bool> {
        let (db, owned) = (self.db.clone(), name.to_string());
        let result = self
            .run(async move {
                // Newer servers answer "ok" for a missing collection: ask first.
                if !Self::collection_exists(&db, &owned)
                    .await
                    .map_err(|err| store_error(&owned, err))?
                {
                    return Ok(false);
                }
                match db.collection::<Document>(&owned).drop().await {
                    Ok(()) => Ok(true),
                    Err(err) if server_code(&err) == Some(codes::NAMESPACE_NOT_FOUND) => Ok(false),
                    Err(err) => Err(store_error(&owned, err)),
                }
            })
            .await;
        self.bump_after(name, &result, |dropped| *dropped);
        result
    }

    async fn create_index(&self, collection: &str, spec: &IndexSpec) -> StoreResult<String> {
        let model = convert::index_model(spec)?;
        let coll = self.collection(collection);
        let name = collection.to_string();
        self.run(async move {
            coll.create_index(model)
                .await
                .map(|created| created.index_name)
                .map_err(|err| store_error(&name, err))
        })
        .await
    }

    async fn list_indexes(&self, collection: &str) -> StoreResult<Vec<Document>> {
        let (db, coll, name) = (
            self.db.clone(),
            self.collection(collection),
            collection.to_string(),
        );
        self.run(async move {
            let indexes: Vec<Document> = match coll.list_indexes().await {
                Ok(cursor) => cursor
                    .with_type::<Document>()
                    .try_collect()
                    .await
                    .map_err(|err| store_error(&name, err))?,
                Err(err) => return Err(store_error(&name, err)),
            };
            // Some servers list nothing for a missing collection instead of failing.
            if indexes.is_empty()
                && !Self::collection_exists(&db, &name)
                    .await
                    .map_err(|err| store_error(&name, err))?
            {
                return Err(StoreError::NoSuchCollection(name));
            }
            Ok(indexes
                .into_iter()
                .map(|mut index| {
                    index.remove("ns");
                    index
                })
                .collect())
        })
        .await
    }

    async fn drop_index(&self, collection: &str, name: &str) -> StoreResult<()> {
        let coll = self.collection(collection);
        let (collection, name) = (collection.to_string(), name.to_string());
        self.run(async move {
            match coll.drop_index(&name).await {
                Ok(()) => Ok(()),
                Err(err) if server_code(&err) == Some(codes::INDEX_NOT_FOUND) => {
                    Err(StoreError::NoSuchIndex(name))
                }
                Err(err) => Err(store_error(&collection, err)),
            }
        })
        .await
    }

    async fn feed_ready(&self, collection: &str, timeout: Duration) -> bool {
        self.wait_watching(collection, timeout).await
    }

    fn changes(&self) -> &ChangeFeed {
        &self.feed
    }

    async fn close(&self) -> StoreResult<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.pumps.stop().await;
        let (client, stream_client) = (self.client.clone(), self.stream_client.clone());
        let shutdown = self.runtime.spawn(async move {
            stream_client.shutdown().immediate(true).await;
            client.shutdown().immediate(true).await;
        });
        let _ = tokio::time::timeout(Duration::from_secs(5), shutdown).await;
        Ok(())
    }
}

impl MongoStore {
    fn bump_after<T>(
        &self,
        collection: &str,
        result: &StoreResult<T>,
        changed: impl FnOnce(&T) -> bool,
    ) {
        match result {
            Ok(value) if changed(value) => self.bump(collection),
            Ok(_) | Err(StoreError::Closed) => {}
            // A failed write may still have changed something (update_many halfway).
            Err(_) => self.bump(collection),
        }
    }
}

fn outcome_of(result: mongodb::results::UpdateResult) -> UpdateOutcome {
    UpdateOutcome {
        matched: result.matched_count,
        modified: result.modified_count,
        upserted_id: result.upserted_id,
    }
}

/// Drains a cursor of results that are held here until the reply: at most `limit_mb`
/// megabytes of them (`--max-aggregate-mb`; 0 = unlimited), else `TooLarge` (2019).
async fn collect_bounded(
    mut cursor: mongodb::Cursor<bson::RawDocumentBuf>,
    name: &str,
    limit_mb: u64,
) -> StoreResult<Vec<Document>> {
    let (mut results, mut bytes) = (Vec::new(), 0u64);
    while let Some(raw) = cursor
        .try_next()
        .await
        .map_err(|err| store_error(name, err))?
    {
        bytes = bytes.saturating_add(raw.as_bytes().len() as u64);
        if bytes > mb_to_bytes(limit_mb) {
            return Err(StoreError::TooLarge { limit_mb });
        }
        results.push(
            Document::try_from(raw.as_ref())
                .map_err(|err| StoreError::Backend(format!("undecodable result: {err}")))?,
        );
    }
    Ok(results)
}
