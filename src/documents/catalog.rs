//! What kind each collection is (normal, files, history, timeseries), cached per
//! server. Timeseries collections are only known from the store's collection list, so
//! that list is read once per unknown name and the answer kept; `createcollection` and
//! `dropcollection` drop the cached answer.

use bson::Document;
use dashmap::{DashMap, DashSet};

use super::collections;
use crate::error::OpenCoreError;
use crate::store::{IndexSpec, Store};

/// Where a collection's documents keep their ACL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclLocation {
    /// `_acl` at the top level.
    Root,
    /// `metadata._acl` (files, and timeseries collections whose metaField is `metadata`).
    Metadata,
}

impl AclLocation {
    pub fn path(&self) -> &'static str {
        match self {
            AclLocation::Root => "_acl",
            AclLocation::Metadata => "metadata._acl",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CollectionKind {
    Normal,
    /// `fs.files`, `*.files`, `*.chunks`.
    Files,
    /// `<collection>_hist`.
    History,
    Timeseries {
        time_field: String,
        meta_field: Option<String>,
    },
}

impl CollectionKind {
    pub fn acl_location(&self) -> AclLocation {
        match self {
            CollectionKind::Files => AclLocation::Metadata,
            CollectionKind::Timeseries {
                meta_field: Some(meta),
                ..
            } if meta == "metadata" => AclLocation::Metadata,
            _ => AclLocation::Root,
        }
    }

    pub fn is_timeseries(&self) -> bool {
        matches!(self, CollectionKind::Timeseries { .. })
    }

    fn from_info(kind: &str, options: &Document) -> CollectionKind {
        if kind != "timeseries" {
            return CollectionKind::Normal;
        }
        let timeseries = options.get_document("timeseries").ok();
        let text = |field: &str| {
            timeseries
                .and_then(|t| t.get_str(field).ok())
                .map(str::to_string)
        };
        CollectionKind::Timeseries {
            time_field: text("timeField").unwrap_or_else(|| "timestamp".into()),
            meta_field: text("metaField"),
        }
    }
}

#[derive(Default)]
pub struct Catalog {
    kinds: DashMap<String, CollectionKind>,
    history_indexed: DashSet<String>,
}

impl Catalog {
    pub async fn kind(
        &self,
        store: &dyn Store,
        name: &str,
    ) -> Result<CollectionKind, OpenCoreError> {
        if collections::is_files(name) {
            return Ok(CollectionKind::Files);
        }
        if collections::is_history(name) {
            return Ok(CollectionKind::History);
        }
        if let Some(kind) = self.kinds.get(name) {
            return Ok(kind.clone());
        }
        for info in store.list_collections().await? {
            self.kinds.insert(
                info.name.clone(),
                CollectionKind::from_info(&info.kind, &info.options),
            );
        }
        Ok(self
            .kinds
            .entry(name.to_string())
            .or_insert(CollectionKind::Normal)
            .clone())
    }

    /// Forget what is known about `name` (it was created or dropped).
    pub fn forget(&self, name: &str) {
        self.kinds.remove(name);
        self.history_indexed.remove(name);
    }

    /// Makes sure the history collection has its lookup index `{id: 1, _version: -1}`
    /// (once per server and collection; failures are logged, history works without it).
    pub async fn ensure_history_index(&self, store: &dyn Store, history: &str) {
        if self.history_indexed.contains(history) {
            return;
        }
        let spec = IndexSpec {
            keys: bson::doc! {"id": 1, "_version": -1},
            ..Default::default()
        };
        match store.create_index(history, &spec).await {
            Ok(_) => {
                self.history_indexed.insert(history.to_string());
            }
            Err(err) => {
                tracing::warn!(%err, collection = history, "could not create the history index")
            }
        }
    }
}
