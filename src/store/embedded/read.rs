//! Read paths of the embedded store. Every read runs on one redb snapshot (MVCC),
//! planned with the catalog of that same snapshot.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;

use bson::{Bson, Document};
use redb::{
    Database, ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTableMetadata, TableError,
};

use super::catalog::{data_table, Catalog, CollectionMeta, META, VERSION_KEY};
use super::collect::{DistinctCollector, SortedCollector};
use super::plan::{self, execute, Budget, Examined, Plan};
use super::{backend, decode_doc, definition, Explain, Shared};
use crate::store::engine::compare::Num;
use crate::store::engine::{EngineError, Filter, ForeignSource, Pipeline, Projection, SortSpec};
use crate::store::keys::encode_id;
use crate::store::{CollectionInfo, FindOptions, StoreError, StoreResult};

type DataTable = ReadOnlyTable<&'static [u8], &'static [u8]>;

/// A point read: no catalog, no planning.
pub fn get(db: &Database, collection: &str, id: &Bson) -> StoreResult<Option<Document>> {
    let txn = db.begin_read().map_err(backend)?;
    let name = data_table(collection);
    let table = match txn.open_table(definition(&name)) {
        Ok(table) => table,
        Err(TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(err) => return Err(backend(err)),
    };
    let key = encode_id(id);
    match table.get(key.as_slice()).map_err(backend)? {
        Some(value) => decode_doc(value.value()).map(Some),
        None => Ok(None),
    }
}

/// One read transaction and the catalog it contains.
pub(crate) struct Snapshot<'s> {
    txn: ReadTransaction,
    catalog: Arc<Catalog>,
    shared: &'s Shared,
    /// Most documents + index entries a query may examine (inline reads).
    budget: u64,
    /// Megabytes of documents this snapshot's reads may hand out (0 = unlimited), and
    /// the bytes handed out so far: aggregations hold all their input in memory.
    memory_limit_mb: Cell<u64>,
    bytes_read: Cell<u64>,
}

fn open_optional(txn: &ReadTransaction, name: &str) -> StoreResult<Option<DataTable>> {
    match txn.open_table(definition(name)) {
        Ok(table) => Ok(Some(table)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(err) => Err(backend(err)),
    }
}

impl<'s> Snapshot<'s> {
    /// A snapshot whose queries stop with `plan::over_budget()` after examining
    /// `budget` documents and index entries.
    pub fn budgeted(db: &Database, shared: &'s Shared, budget: u64) -> StoreResult<Snapshot<'s>> {
        Ok(Snapshot {
            budget,
            ..Snapshot::open(db, shared)?
        })
    }

    pub fn open(db: &Database, shared: &'s Shared) -> StoreResult<Snapshot<'s>> {
        let txn = db.begin_read().map_err(backend)?;
        let catalog = match txn.open_table(META) {
            Err(TableError::TableDoesNotExist(_)) => Arc::new(Catalog::default()),
            Err(err) => return Err(backend(err)),
            Ok(meta) => {
                let version = meta
                    .get(VERSION_KEY)
                    .map_err(backend)?
                    .map(|v| super::catalog::read_u64(v.value()));
                let cached = shared
                    .catalog
                    .read()
                    .map_err(|_| StoreError::Closed)?
                    .clone();
                if Some(cached.version) == version || (version.is_none() && cached.version == 0) {
                    cached
                } else {
                    let loaded = Arc::new(Catalog::load(&meta)?);
                    let mut slot = shared.catalog.write().map_err(|_| StoreError::Closed)?;
                    if loaded.version > slot.version {
                        *slot = loaded.clone();
                    }
                    loaded
                }
            }
        };
        Ok(Snapshot {
            txn,
            catalog,
            shared,
            budget: u64::MAX,
            memory_limit_mb: Cell::new(0),
            bytes_read: Cell::new(0),
        })
    }

    /// Runs `visit` over the documents of `collection` matching `filter`, by `plan`.
    fn run(
        &self,
        collection: &str,
        plan: &Plan,
        filter: &Filter,
        visit: &mut dyn FnMut(Document, usize) -> StoreResult<bool>,
    ) -> StoreResult<Examined> {
        let mut examined = Examined::default();
        let Some(data) = open_optional(&self.txn, &data_table(collection))? else {
            return Ok(examined);
        };
        let index = match plan.index() {
            Some(meta) => match open_optional(&self.txn, &meta.table)? {
                Some(table) => Some(table),
                // Cannot happen with a consistent catalog; scanning is always correct.
                None => return self.run(collection, &Plan::collscan(), filter, visit),
            },
            None => None,
        };
        let limit_mb = self.memory_limit_mb.get();
        let budget = Budget {
            work: self.budget,
            bytes: crate::store::mb_to_bytes(limit_mb).saturating_sub(self.bytes_read.get()),
            limit_mb,
        };
        execute(
            plan,
            &data,
            index.as_ref(),
            filter,
            budget,
            &mut examined,
            visit,
        )?;
        self.bytes_read.set(self.bytes_read.get() + examined.bytes);
        self.shared.stats.examined(examined);
        Ok(examined)
    }

    fn meta(&self, collection: &str) -> Option<&CollectionMeta> {
        self.catalog.collection(collection).map(|m| m.as_ref())
    }

    /// `find` with its plan and counters.
    pub fn find(
        &self,
        collection: &str,
        query: &Document,
        options: &FindOptions,
    ) -> StoreResult<(Vec<Document>, Explain)> {
        let filter = Filter::parse(query)?;
        let projection = Projection::parse_optional(options.projection.as_ref())?;
        let sort = SortSpec::parse_optional(options.sort.as_ref())?;
        let plan = plan::plan(&filter, query, sort.as_ref(), self.meta(collection));
        let wanted = if options.limit == 0 {
            u64::MAX
        } else {
            options.skip.saturating_add(options.limit)
        };
        let mut results = Vec::new();
        let examined = match sort.as_ref().filter(|_| !plan.sorted) {
            // In order already: skipped documents are counted, never held, and what is
            // held stays within the per-request memory limit (`--max-aggregate-mb`), so
            // `top` large documents cannot take the process's memory.
            None => {
                let mut seen = 0u64;
                let limit_mb = self.shared.limits.aggregate_mb;
                let limit = crate::store::mb_to_bytes(limit_mb);
                let mut held = 0u64;
                self.run(collection, &plan, &filter, &mut |doc, size| {
                    seen += 1;
                    if seen > options.skip {
                        held = held.saturating_add(size as u64);
                        if held > limit {
                            return Err(StoreError::TooLarge { limit_mb });
                        }
                        results.push(doc);
                    }
                    Ok(seen < wanted)
                })?
            }
            // An in-memory sort holds at most the best skip + limit, within sort_mb.
            Some(sort) => {
                let keep = (wanted != u64::MAX).then(|| wanted.min(usize::MAX as u64) as usize);
                let limit_mb = self.shared.limits.sort_mb;
                let mut sorted = SortedCollector::new(sort, keep, plan.natural_order(), limit_mb);
                let examined = self.run(collection, &plan, &filter, &mut |doc, size| {
                    sorted.push(doc, size)?;
                    Ok(true)
                })?;
                results = sorted.finish();
                let skip = (options.skip.min(usize::MAX as u64) as usize).min(results.len());
                results.drain(..skip);
                examined
            }
        };
        if options.limit > 0 {
            results.truncate(options.limit.min(usize::MAX as u64) as usize);
        }
        if let Some(projection) = projection {
            results = results
                .iter()
                .map(|doc| projection.apply(doc, Some(&filter)))
                .collect::<Result<_, _>>()?;
        }
        let explain = Explain {
            plan: plan.describe(),
            index: plan.index().map(|i| i.name.clone()),
            sorted_by_index: sort.is_some() && plan.sorted,
            keys_examined: examined.keys,
            docs_examined: examined.docs,
            returned: results.len() as u64,
        };
        Ok((results, explain))
    }

    pub fn count(&self, collection: &str, query: &Document) -> StoreResult<u64> {
        let filter = Filter::parse(query)?;
        if filter.is_match_all() {
            return match open_optional(&self.txn, &data_table(collection))? {
                Some(table) => table.len().map_err(backend),
                None => Ok(0),
            };
        }
        let plan = plan::plan(&filter, query, None, self.meta(collection));
        let mut n = 0u64;
        self.run(collection, &plan, &filter, &mut |_, _| {
            n += 1;
            Ok(true)
        })?;
        Ok(n)
    }

    pub fn distinct(
        &self,
        collection: &str,
        field: &str,
        query: &Document,
    ) -> StoreResult<Vec<Bson>> {
        // Streams the matches: only the distinct values are held, within distinct_mb.
        let mut values = DistinctCollector::new(field, self.shared.limits.distinct_mb)?;
        let filter = Filter::parse(query)?;
        let plan = plan::plan(&filter, query, None, self.meta(collection));
        self.run(collection, &plan, &filter, &mut |doc, _| {
            values.add(&doc)?;
            Ok(true)
        })?;
        Ok(values.finish())
    }

    /// Runs `pipeline`; its input and foreign collections together may hold at most
    /// `memory_limit_mb` megabytes of documents (0 = unlimited).
    pub fn aggregate(
        &self,
        collection: &str,
        pipeline: &[Document],
        memory_limit_mb: u64,
    ) -> StoreResult<Vec<Document>> {
        self.memory_limit_mb.set(memory_limit_mb);
        // Validate the whole pipeline first (restricted stages, syntax).
        Pipeline::parse(pipeline).map_err(pipeline_error)?;
        // A leading $match (then $sort, then $limit) runs through the planner.
        let mut options = FindOptions::default();
        let mut query = Document::new();
        let mut rest = 0;
        if let Some(Ok(m)) = pipeline
            .first()
            .and_then(|s| s.get("$match"))
            .map(|m| m.as_document().ok_or(()))
        {
            query = m.clone();
            rest = 1;
        }
        if let Some(Ok(sort)) = pipeline
            .get(rest)
            .and_then(|s| s.get("$sort"))
            .map(|s| s.as_document().ok_or(()))
        {
            let limit = pipeline
                .get(rest + 1)
                .and_then(|s| s.get("$limit"))
                .and_then(|l| Num::from_bson(l)?.as_exact_i64())
                .filter(|l| *l > 0);
            options.sort = Some(sort.clone());
            rest += 1;
            if let Some(limit) = limit {
                options.limit = limit as u64;
                rest += 1;
            }
        }
        let (docs, _) = self.find(collection, &query, &options)?;
        if rest == pipeline.len() {
            return Ok(docs);
        }
        let remaining = Pipeline::parse(&pipeline[rest..]).map_err(pipeline_error)?;
        let foreign = SnapshotSource {
            snapshot: self,
            loaded: RefCell::new(HashMap::new()),
            failure: RefCell::new(None),
        };
        // The engine charges what the stages hold and build to the same limit.
        let result = remaining.run_with_budget(docs, &foreign, memory_limit_mb);
        // A store failure inside a foreign read (such as the memory limit) keeps its kind.
        match foreign.failure.into_inner() {
            Some(failure) => Err(failure),
            None => result.map_err(pipeline_error),
        }
    }

    pub fn list_collections(&self) -> Vec<CollectionInfo> {
        self.catalog
            .collections
            .values()
            .map(|meta| CollectionInfo {
                name: meta.name.clone(),
                kind: meta.kind().to_string(),
                options: meta.options_document(),
            })
            .collect()
    }

    pub fn list_indexes(&self, collection: &str) -> StoreResult<Vec<Document>> {
        let meta = self
            .meta(collection)
            .ok_or_else(|| StoreError::NoSuchCollection(collection.to_string()))?;
        let mut out = vec![bson::doc! {"v": 2, "key": {"_id": 1}, "name": "_id_"}];
        out.extend(
            meta.indexes
                .iter()
                .filter(|i| !i.hidden)
                .map(|i| i.describe()),
        );
        Ok(out)
    }
}

/// `$lookup` reads other collections from the same snapshot.
struct SnapshotSource<'a, 's> {
    snapshot: &'a Snapshot<'s>,
    loaded: RefCell<HashMap<String, Vec<Document>>>,
    /// The store error a foreign read failed with, reported instead of the engine's.
    failure: RefCell<Option<StoreError>>,
}

impl ForeignSource for SnapshotSource<'_, '_> {
    fn collection(&self, name: &str) -> Result<Vec<Document>, EngineError> {
        if let Some(docs) = self.loaded.borrow().get(name) {
            return Ok(docs.clone());
        }
        let mut docs = Vec::new();
        self.snapshot
            .run(
                name,
                &Plan::collscan(),
                &Filter::match_all(),
                &mut |doc, _| {
                    docs.push(doc);
                    Ok(true)
                },
            )
            .map_err(|e| {
                let text = e.to_string();
                self.failure.borrow_mut().get_or_insert(e);
                EngineError::Foreign(text)
            })?;
        self.loaded
            .borrow_mut()
            .insert(name.to_string(), docs.clone());
        Ok(docs)
    }
}

/// Stages the engine will not run (`$out`, `$merge`, ...) get a clear refusal.
pub(crate) fn pipeline_error(err: EngineError) -> StoreError {
    match err {
        EngineError::StageNotAllowed(stage) => {
            StoreError::Query(format!("{stage} is not supported by the embedded store"))
        }
        other => other.into(),
    }
}
