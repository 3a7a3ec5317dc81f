//! The state the document layer works on, owned here so the layer needs nothing above
//! it: the store, the user directory (roles for ACL checks, password hashing), which
//! kind each collection is, and the per-key locks of upserts and `_id` claims.
//! `Services` holds one and hands it to every scope.

use crate::auth::Directory;
use crate::store::SharedStore;

use super::catalog::Catalog;
use super::locks::KeyLocks;

pub struct DocumentState {
    pub store: SharedStore,
    pub directory: Directory,
    /// What kind each collection is (normal, files, history, timeseries).
    pub catalog: Catalog,
    /// Per-key locks of `insertorupdateone` and of `_id` claims.
    pub key_locks: KeyLocks,
}

impl DocumentState {
    pub fn new(store: SharedStore, directory: Directory) -> Self {
        DocumentState {
            store,
            directory,
            catalog: Catalog::default(),
            key_locks: KeyLocks::default(),
        }
    }
}
