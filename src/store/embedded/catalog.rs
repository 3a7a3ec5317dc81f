//! Collection and index metadata of the embedded store.
//!
//! The catalog lives in the `__meta` table: one entry `c:<collection>` per collection
//! (its options and its indexes, as BSON), `version` (bumped by every catalog change)
//! and `next_id` (the counter naming index tables `x:<id>`; a dropped and re-created
//! index never reuses a table). The writer thread owns the authoritative copy and
//! persists it in the same transaction as the data it describes; readers check
//! `version` inside their own read snapshot and reload when their cached copy differs,
//! so a reader always plans with exactly the indexes its snapshot contains.

use std::collections::BTreeMap;
use std::sync::Arc;

use bson::{doc, Bson, Document};
use redb::{ReadableTable, TableDefinition};

use super::{backend, decode_doc, encode_doc};
use crate::store::engine::compare::Num;
use crate::store::engine::path::{walk_keys, FieldPath};
use crate::store::engine::{FieldConstraint, Filter};
use crate::store::keys::{encode_value, invert};
use crate::store::{CollectionOptions, IndexSpec, StoreError, StoreResult, TimeseriesOptions};

pub(crate) const META: TableDefinition<'static, &'static str, &'static [u8]> =
    TableDefinition::new("__meta");
pub(crate) const VERSION_KEY: &str = "version";
const NEXT_ID_KEY: &str = "next_id";
const COLLECTION_PREFIX: &str = "c:";

/// Most index keys one document may produce (multikey arrays).
const MAX_KEYS_PER_DOCUMENT: usize = 10_000;

#[derive(Debug, Clone)]
pub(crate) struct IndexMeta {
    pub name: String,
    pub keys: Document,
    /// Key fields in order, `true` = ascending.
    pub fields: Vec<(FieldPath, bool)>,
    pub unique: bool,
    pub expire_after_seconds: Option<i64>,
    pub partial: Option<(Document, Filter)>,
    /// Some document produced several keys (an array on an indexed path). A multikey
    /// index cannot provide a sort, and a range on it uses one bound only.
    pub multikey: bool,
    /// The redb table holding the entries.
    pub table: String,
    /// Internal (the time-field index of a timeseries collection): not listed.
    pub hidden: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct CollectionMeta {
    pub name: String,
    pub options: CollectionOptions,
    pub indexes: Vec<Arc<IndexMeta>>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Catalog {
    pub version: u64,
    pub next_id: u64,
    pub collections: BTreeMap<String, Arc<CollectionMeta>>,
}

pub(crate) fn data_table(collection: &str) -> String {
    format!("c:{collection}")
}

// ------------------------------------------------------------------ index specs

fn direction(name: &str, value: &Bson) -> StoreResult<bool> {
    match Num::from_bson(value).map(|n| n.as_f64()) {
        Some(n) if n > 0.0 => Ok(true),
        Some(n) if n < 0.0 => Ok(false),
        Some(_) => Err(StoreError::InvalidOptions(format!(
            "Values in the index key pattern can't be all-zero: {{ {name}: 0 }}"
        ))),
        None => match value {
            Bson::String(kind) => Err(StoreError::InvalidOptions(format!(
                "'{kind}' indexes are not supported by the embedded store"
            ))),
            _ => Err(StoreError::InvalidOptions(format!(
                "bad index key pattern: {name}: {value}"
            ))),
        },
    }
}

fn key_value_name(value: &Bson) -> String {
    match value {
        Bson::Int32(n) => n.to_string(),
        Bson::Int64(n) => n.to_string(),
        Bson::Double(f) if f.fract() == 0.0 => format!("{}", *f as i64),
        Bson::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// MongoDB's generated index name: `a_1_b_-1`.
pub(crate) fn default_index_name(keys: &Document) -> String {
    keys.iter()
        .map(|(k, v)| format!("{k}_{}", key_value_name(v)))
        .collect::<Vec<_>>()
        .join("_")
}

/// True for `{_id: 1}` / `{_id: -1}`: the implicit primary index.
pub(crate) fn is_id_index(keys: &Document) -> bool {
    keys.len() == 1 && keys.keys().next().map(String::as_str) == Some("_id")
}

impl IndexMeta {
    pub fn from_spec(spec: &IndexSpec, table: String, hidden: bool) -> StoreResult<IndexMeta> {
        if spec.keys.is_empty() {
            return Err(StoreError::InvalidOptions(
                "Index keys cannot be empty.".into(),
            ));
        }
        let mut fields = Vec::with_capacity(spec.keys.len());
        for (name, value) in &spec.keys {
            let path =
                FieldPath::parse(name).map_err(|e| StoreError::InvalidOptions(e.to_string()))?;
            if name.split('.').any(|part| part.starts_with('$')) {
                return Err(StoreError::InvalidOptions(format!(
                    "Index key contains an illegal field name: {name}"
                )));
            }
            fields.push((path, direction(name, value)?));
        }
        if let Some(seconds) = spec.expire_after_seconds {
            if fields.len() != 1 {
                return Err(StoreError::InvalidOptions(
                    "TTL indexes are single-field indexes, compound indexes do not support TTL"
                        .into(),
                ));
            }
            if !(0..=i32::MAX as i64).contains(&seconds) {
                return Err(StoreError::InvalidOptions(format!(
                    "TTL index 'expireAfterSeconds' option must be within an acceptable range, got {seconds}"
                )));
            }
        }
        let partial = match &spec.partial_filter {
            Some(p) => Some((
                p.clone(),
                Filter::parse(p).map_err(|e| StoreError::InvalidOptions(e.to_string()))?,
            )),
            None => None,
        };
        let name = spec
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| default_index_name(&spec.keys));
        Ok(IndexMeta {
            name,
            keys: spec.keys.clone(),
            fields,
            unique: spec.unique,
            expire_after_seconds: spec.expire_after_seconds,
            partial,
            multikey: false,
            table,
            hidden,
        })
    }

    /// Same key pattern and options (what makes `create_index` idempotent).
    pub fn same_definition(&self, other: &IndexMeta) -> bool {
        self.same_keys(other)
            && self.unique == other.unique
            && self.expire_after_seconds == other.expire_after_seconds
            && self.partial.as_ref().map(|p| &p.0) == other.partial.as_ref().map(|p| &p.0)
    }

    pub fn same_keys(&self, other: &IndexMeta) -> bool {
        self.fields.len() == other.fields.len()
            && self
                .fields
                .iter()
                .zip(&other.fields)
                .all(|(a, b)| a.0.as_str() == b.0.as_str() && a.1 == b.1)
    }

    /// Usable by the planner: paths with numeric components resolve differently for
    /// queries (`a.0` may also name a field) than for index keys (positional only).
    pub fn plannable(&self) -> bool {
        self.fields
            .iter()
            .all(|(p, _)| p.parts().iter().all(|part| part.index.is_none()))
    }

    /// As MongoDB's listIndexes shows it.
    pub fn describe(&self) -> Document {
        let mut out = doc! {"v": 2, "key": self.keys.clone(), "name": self.name.clone()};
        if self.unique {
            out.insert("unique", true);
        }
        if let Some(seconds) = self.expire_after_seconds {
            out.insert("expireAfterSeconds", seconds);
        }
        if let Some((partial, _)) = &self.partial {
            out.insert("partialFilterExpression", partial.clone());
        }
        out
    }

    fn to_bson(&self) -> Document {
        let mut out = self.describe();
        out.insert("multikey", self.multikey);
        out.insert("table", self.table.clone());
        out.insert("hidden", self.hidden);
        out
    }

    fn from_bson(doc: &Document) -> StoreResult<IndexMeta> {
        let bad =
            |what: &str| StoreError::Backend(format!("corrupt index metadata ({what}): {doc}"));
        let spec = IndexSpec {
            keys: doc.get_document("key").map_err(|_| bad("key"))?.clone(),
            name: Some(doc.get_str("name").map_err(|_| bad("name"))?.to_string()),
            unique: doc.get_bool("unique").unwrap_or(false),
            expire_after_seconds: doc
                .get("expireAfterSeconds")
                .and_then(|v| Num::from_bson(v)?.as_exact_i64()),
            partial_filter: doc.get_document("partialFilterExpression").ok().cloned(),
        };
        let table = doc.get_str("table").map_err(|_| bad("table"))?.to_string();
        let mut meta = IndexMeta::from_spec(&spec, table, doc.get_bool("hidden").unwrap_or(false))?;
        meta.multikey = doc.get_bool("multikey").unwrap_or(false);
        Ok(meta)
    }

    /// Whether `doc` belongs in this index (partial indexes hold only matches).
    #[inline]
    pub fn covers(&self, doc: &Document) -> bool {
        self.partial
            .as_ref()
            .is_none_or(|(_, filter)| filter.matches(doc))
    }

    /// The index entry keys of `doc` (value encodings, then the primary key `pk`),
    /// sorted and deduplicated, and whether the document is multikey here. Empty when
    /// the document is outside a partial index.
    pub fn entries(&self, doc: &Document, pk: &[u8]) -> StoreResult<(Vec<Vec<u8>>, bool)> {
        if !self.covers(doc) {
            return Ok((Vec::new(), false));
        }
        let mut prefixes: Vec<Vec<u8>> = vec![Vec::with_capacity(32)];
        let mut multikey = false;
        let mut array_field: Option<&str> = None;
        for (path, asc) in &self.fields {
            let mut values: Vec<Vec<u8>> = Vec::new();
            let mut arrays = false;
            walk_keys(doc, path.parts(), &mut |found| {
                if found.arr_idx.is_some() || found.whole_array {
                    arrays = true;
                }
                if found.whole_array {
                    return false;
                }
                let mut bytes = Vec::with_capacity(16);
                encode_value(found.value.unwrap_or(&Bson::Null), &mut bytes);
                values.push(bytes);
                false
            });
            if values.is_empty() {
                // An empty array: MongoDB indexes it as undefined.
                let mut bytes = Vec::new();
                encode_value(&Bson::Undefined, &mut bytes);
                values.push(bytes);
                arrays = true;
            }
            values.sort_unstable();
            values.dedup();
            if !asc {
                values.iter_mut().for_each(|v| invert(v));
            }
            if arrays {
                multikey = true;
                if values.len() > 1 {
                    // Two different arrays in one compound key: MongoDB refuses the document.
                    if let Some(other) = array_field.filter(|o| first_component(o) != path.first())
                    {
                        return Err(StoreError::Query(format!(
                            "cannot index parallel arrays [{}] [{}]",
                            path.as_str(),
                            other
                        )));
                    }
                    array_field = Some(path.as_str());
                }
            }
            if prefixes.len() * values.len() > MAX_KEYS_PER_DOCUMENT {
                return Err(StoreError::Query(format!(
                    "too many index keys for one document in index {}",
                    self.name
                )));
            }
            if values.len() == 1 {
                prefixes
                    .iter_mut()
                    .for_each(|p| p.extend_from_slice(&values[0]));
            } else {
                let mut next = Vec::with_capacity(prefixes.len() * values.len());
                for p in &prefixes {
                    for v in &values {
                        let mut key = p.clone();
                        key.extend_from_slice(v);
                        next.push(key);
                    }
                }
                prefixes = next;
            }
        }
        for p in &mut prefixes {
            p.extend_from_slice(pk);
        }
        prefixes.sort_unstable();
        prefixes.dedup();
        Ok((prefixes, multikey))
    }

    /// Can a query with this filter use the (partial) index? Only when every
    /// document the filter matches is in the index: each condition of the partial
    /// filter appears literally in the query, or the query pins the field to values
    /// the condition accepts.
    pub fn usable_for(&self, query: &Document, constraints: &[(String, FieldConstraint)]) -> bool {
        match &self.partial {
            None => true,
            Some((partial, _)) => implies(query, partial, constraints),
        }
    }
}

fn first_component(path: &str) -> &str {
    path.split('.').next().unwrap_or(path)
}

fn contains_condition(query: &Document, key: &str, value: &Bson) -> bool {
    if query.get(key).is_some_and(|v| v == value) {
        return true;
    }
    if let Ok(clauses) = query.get_array("$and") {
        return clauses.iter().any(|c| {
            c.as_document()
                .is_some_and(|d| contains_condition(d, key, value))
        });
    }
    false
}

fn implies(
    query: &Document,
    partial: &Document,
    constraints: &[(String, FieldConstraint)],
) -> bool {
    partial.iter().all(|(key, condition)| {
        if key == "$and" {
            return condition.as_array().is_some_and(|clauses| {
                clauses.iter().all(|c| {
                    c.as_document()
                        .is_some_and(|d| implies(query, d, constraints))
                })
            });
        }
        if contains_condition(query, key, condition) {
            return true;
        }
        if key.starts_with('$') {
            return false;
        }
        // The query pins the field: does the partial condition accept every pinned value?
        let pinned: Vec<&Bson> = match constraints.iter().find(|(p, _)| p == key).map(|(_, c)| c) {
            Some(FieldConstraint::Eq(v)) => vec![v],
            Some(FieldConstraint::In(vs)) => vs.iter().collect(),
            _ => return false,
        };
        let Ok(check) = Filter::parse(&doc! { key: condition.clone() }) else {
            return false;
        };
        pinned.into_iter().all(|value| {
            let mut probe = Document::new();
            let parts: Vec<&str> = key.split('.').collect();
            let mut nested = value.clone();
            for part in parts[1..].iter().rev() {
                nested = Bson::Document(doc! { *part: nested });
            }
            probe.insert(parts[0], nested);
            check.matches(&probe)
        })
    })
}

// ------------------------------------------------------------------ collections

impl CollectionMeta {
    pub fn new(name: &str, options: CollectionOptions) -> CollectionMeta {
        CollectionMeta {
            name: name.to_string(),
            options,
            indexes: Vec::new(),
        }
    }

    pub fn kind(&self) -> &'static str {
        if self.options.timeseries.is_some() {
            "timeseries"
        } else {
            "collection"
        }
    }

    /// The creation options as MongoDB's listCollections reports them.
    pub fn options_document(&self) -> Document {
        let mut out = Document::new();
        if let Some(ts) = &self.options.timeseries {
            let mut t = doc! {"timeField": ts.time_field.clone()};
            if let Some(meta) = &ts.meta_field {
                t.insert("metaField", meta.clone());
            }
            t.insert(
                "granularity",
                ts.granularity.clone().unwrap_or_else(|| "seconds".into()),
            );
            out.insert("timeseries", t);
        }
        if let Some(seconds) = self.options.expire_after_seconds {
            out.insert("expireAfterSeconds", seconds);
        }
        out
    }

    pub fn index(&self, name: &str) -> Option<&Arc<IndexMeta>> {
        self.indexes.iter().find(|i| i.name == name)
    }

    fn to_bson(&self) -> Document {
        let indexes: Vec<Bson> = self
            .indexes
            .iter()
            .map(|i| Bson::Document(i.to_bson()))
            .collect();
        doc! {"options": self.options_document(), "indexes": indexes}
    }

    fn from_bson(name: &str, doc: &Document) -> StoreResult<CollectionMeta> {
        let options = doc.get_document("options").cloned().unwrap_or_default();
        let timeseries = options
            .get_document("timeseries")
            .ok()
            .map(|t| TimeseriesOptions {
                time_field: t.get_str("timeField").unwrap_or_default().to_string(),
                meta_field: t.get_str("metaField").ok().map(str::to_string),
                granularity: t.get_str("granularity").ok().map(str::to_string),
            });
        let expire_after_seconds = options
            .get("expireAfterSeconds")
            .and_then(|v| Num::from_bson(v)?.as_exact_i64());
        let mut indexes = Vec::new();
        for entry in doc
            .get_array("indexes")
            .map(|a| a.as_slice())
            .unwrap_or_default()
        {
            if let Some(entry) = entry.as_document() {
                indexes.push(Arc::new(IndexMeta::from_bson(entry)?));
            }
        }
        Ok(CollectionMeta {
            name: name.to_string(),
            options: CollectionOptions {
                timeseries,
                expire_after_seconds,
            },
            indexes,
        })
    }

    /// The timeseries time field, when documents must carry one.
    pub fn time_field(&self) -> Option<&str> {
        self.options
            .timeseries
            .as_ref()
            .map(|t| t.time_field.as_str())
    }

    /// MongoDB refuses timeseries measurements without a date in the time field.
    pub fn check_document(&self, doc: &Document) -> StoreResult<()> {
        if let Some(field) = self.time_field() {
            if !matches!(doc.get(field), Some(Bson::DateTime(_))) {
                return Err(StoreError::Query(format!(
                    "'{field}' must be present and contain a valid BSON UTC datetime value"
                )));
            }
        }
        Ok(())
    }
}

/// Validates `create_collection` options.
pub(crate) fn validate_options(options: &CollectionOptions) -> StoreResult<()> {
    if let Some(ts) = &options.timeseries {
        if ts.time_field.is_empty() || ts.time_field.contains('.') || ts.time_field.starts_with('$')
        {
            return Err(StoreError::InvalidOptions(format!(
                "Invalid timeField: '{}'",
                ts.time_field
            )));
        }
        if let Some(meta) = &ts.meta_field {
            if meta == &ts.time_field {
                return Err(StoreError::InvalidOptions(
                    "'metaField' cannot be the same as 'timeField'".into(),
                ));
            }
            if meta.is_empty() || meta.contains('.') || meta.starts_with('$') || meta == "_id" {
                return Err(StoreError::InvalidOptions(format!(
                    "Invalid metaField: '{meta}'"
                )));
            }
        }
        if let Some(g) = &ts.granularity {
            if !matches!(g.as_str(), "seconds" | "minutes" | "hours") {
                return Err(StoreError::InvalidOptions(format!(
                    "Invalid timeseries granularity: '{g}'; valid values are seconds, minutes, hours"
                )));
            }
        }
    }
    if let Some(seconds) = options.expire_after_seconds {
        if options.timeseries.is_none() {
            return Err(StoreError::InvalidOptions(
                "'expireAfterSeconds' is only supported on time-series collections".into(),
            ));
        }
        if seconds < 0 {
            return Err(StoreError::InvalidOptions(
                "'expireAfterSeconds' must be a non-negative number".into(),
            ));
        }
    }
    Ok(())
}

// ------------------------------------------------------------------ persistence

impl Catalog {
    pub fn collection(&self, name: &str) -> Option<&Arc<CollectionMeta>> {
        self.collections.get(name)
    }

    /// Reads the whole catalog from a `__meta` table.
    pub fn load<T: ReadableTable<&'static str, &'static [u8]>>(table: &T) -> StoreResult<Catalog> {
        let mut catalog = Catalog::default();
        for entry in table.iter().map_err(backend)? {
            let (key, value) = entry.map_err(backend)?;
            let key = key.value();
            if key == VERSION_KEY {
                catalog.version = read_u64(value.value());
            } else if key == NEXT_ID_KEY {
                catalog.next_id = read_u64(value.value());
            } else if let Some(name) = key.strip_prefix(COLLECTION_PREFIX) {
                let meta = CollectionMeta::from_bson(name, &decode_doc(value.value())?)?;
                catalog.collections.insert(name.to_string(), Arc::new(meta));
            }
        }
        Ok(catalog)
    }

    /// Writes what changed since `before` and bumps the version.
    pub fn persist(
        &mut self,
        before: &Catalog,
        table: &mut redb::Table<'_, &'static str, &'static [u8]>,
    ) -> StoreResult<()> {
        for (name, meta) in &self.collections {
            if before
                .collections
                .get(name)
                .is_some_and(|old| Arc::ptr_eq(old, meta))
            {
                continue;
            }
            let key = format!("{COLLECTION_PREFIX}{name}");
            table
                .insert(key.as_str(), encode_doc(&meta.to_bson())?.as_slice())
                .map_err(backend)?;
        }
        for name in before.collections.keys() {
            if !self.collections.contains_key(name) {
                let key = format!("{COLLECTION_PREFIX}{name}");
                table.remove(key.as_str()).map_err(backend)?;
            }
        }
        self.version = before.version.max(self.version) + 1;
        table
            .insert(VERSION_KEY, self.version.to_be_bytes().as_slice())
            .map_err(backend)?;
        table
            .insert(NEXT_ID_KEY, self.next_id.to_be_bytes().as_slice())
            .map_err(backend)?;
        Ok(())
    }

    /// A fresh index table name.
    pub fn allocate_table(&mut self) -> String {
        self.next_id += 1;
        format!("x:{}", self.next_id)
    }
}

pub(crate) fn read_u64(bytes: &[u8]) -> u64 {
    bytes.try_into().map(u64::from_be_bytes).unwrap_or(0)
}
