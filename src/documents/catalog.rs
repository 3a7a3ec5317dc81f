//! What kind each collection is (normal, files, history, timeseries), cached per
//! server. Timeseries collections are only known from the store's collection list, so
//! that list is read for a name not in the cache. Only collections that exist are
//! cached (any client can name endless collections that do not), and at most
//! `MAX_CACHED` of them (an arbitrary one is evicted past that); `createcollection` and
//! `dropcollection` drop the cached answer.

use bson::Document;
use dashmap::DashMap;

use super::collections;
use crate::error::OpenCoreError;
use crate::store::{IndexSpec, Store};

pub use crate::acl::AclLocation;

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

/// Most collections whose kind (or history index) the cache remembers.
#[cfg(not(test))]
const MAX_CACHED: usize = 4096;
/// Small in unit tests, so eviction is reached quickly.
#[cfg(test)]
const MAX_CACHED: usize = 64;

#[derive(Default)]
pub struct Catalog {
    kinds: DashMap<String, CollectionKind>,
    history_indexed: DashMap<String, ()>,
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
        let listed = store.list_collections().await?;
        let Some(info) = listed.into_iter().find(|info| info.name == name) else {
            // Not there (yet): a normal collection, and nothing to remember.
            return Ok(CollectionKind::Normal);
        };
        let kind = CollectionKind::from_info(&info.kind, &info.options);
        if self.kinds.len() >= MAX_CACHED {
            evict_one(&self.kinds);
        }
        self.kinds.insert(info.name, kind.clone());
        Ok(kind)
    }

    /// How many collection kinds are cached.
    pub fn cached(&self) -> usize {
        self.kinds.len()
    }

    /// Forget what is known about `name` (it was created or dropped).
    pub fn forget(&self, name: &str) {
        self.kinds.remove(name);
        self.history_indexed.remove(name);
    }

    /// Makes sure the history collection has its lookup index `{id: 1, _version: -1}`
    /// (once per server and collection; failures are logged, history works without it).
    pub async fn ensure_history_index(&self, store: &dyn Store, history: &str) {
        if self.history_indexed.contains_key(history) {
            return;
        }
        let spec = IndexSpec {
            keys: bson::doc! {"id": 1, "_version": -1},
            ..Default::default()
        };
        match store.create_index(history, &spec).await {
            Ok(_) => {
                if self.history_indexed.len() >= MAX_CACHED {
                    evict_one(&self.history_indexed);
                }
                self.history_indexed.insert(history.to_string(), ());
            }
            Err(err) => {
                tracing::warn!(%err, collection = history, "could not create the history index")
            }
        }
    }
}

/// Makes room in a full cache by removing an arbitrary entry. The key is cloned first:
/// removing while iterating would deadlock a shard.
fn evict_one<V>(cache: &DashMap<String, V>) {
    let victim = cache.iter().next().map(|entry| entry.key().clone());
    if let Some(victim) = victim {
        cache.remove(&victim);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::EmbeddedStore;
    use crate::store::{CollectionOptions, TimeseriesOptions};

    #[tokio::test]
    async fn remembers_only_existing_collections_and_at_most_max_cached() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let catalog = Catalog::default();
        for n in 0..1_000 {
            let kind = catalog.kind(&store, &format!("nothing{n}")).await.unwrap();
            assert_eq!(kind, CollectionKind::Normal);
        }
        assert_eq!(
            catalog.cached(),
            0,
            "names that do not exist are not cached"
        );
        let options = CollectionOptions {
            timeseries: Some(TimeseriesOptions {
                time_field: "ts".into(),
                meta_field: None,
                granularity: None,
            }),
            expire_after_seconds: None,
        };
        store.create_collection("metrics", &options).await.unwrap();
        let kind = catalog.kind(&store, "metrics").await.unwrap();
        assert!(kind.is_timeseries());
        assert_eq!(catalog.cached(), 1);
        // Existing collections beyond the cap evict others; the answers stay right.
        let docs = vec![bson::doc! {"_id": 1}];
        for n in 0..MAX_CACHED + 10 {
            let name = format!("c{n}");
            store.insert_many(&name, docs.clone()).await.unwrap();
            assert_eq!(
                catalog.kind(&store, &name).await.unwrap(),
                CollectionKind::Normal
            );
        }
        assert!(catalog.cached() <= MAX_CACHED);
        assert!(catalog
            .kind(&store, "metrics")
            .await
            .unwrap()
            .is_timeseries());
    }
}
