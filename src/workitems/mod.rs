//! Work item queues and work items (the reference's §9): durable jobs that robots and
//! agents push, pop, retry and chain between queues, with files attached.
//!
//! - queues are `mq` documents (`_type: "workitemqueue"`), see `queue`;
//! - items are `workitems` documents (`_type: "workitem"`) carrying the queue's `_acl`,
//!   see `push`, `pop`, `update`, `remove`;
//! - item files live in the file store (bucket `fs`) with the queue's ACL in
//!   `metadata._acl` and `metadata.wi`/`metadata.wiqid` naming their item and queue,
//!   see `files`;
//! - `convert` turns documents into the wire types (dates as Timestamps everywhere).
//!
//! A pop is one atomic `find_one_and_update` on `(wiqid, state, priority, nextrun,
//! _created, _id)`, walked in index order, so an item is never handed out twice and
//! the order is priority (lower first), then FIFO. The commands in `src/commands/`
//! only parse requests and shape replies.

pub mod convert;
pub mod files;
pub mod pop;
pub mod push;
pub mod queue;
pub mod remove;
#[cfg(test)]
mod tests;
pub mod update;

use std::sync::Arc;

use bson::doc;

use crate::auth::builtin::ROOT_USER_ID;
use crate::auth::ResolvedUser;
use crate::error::OpenCoreError;
use crate::services::Services;
use crate::store::{IndexSpec, Store};

/// Where work item queues live (shared with queue and exchange names).
pub const QUEUES_COLLECTION: &str = crate::queues::objects::MQ_COLLECTION;
/// Where work items live.
pub const ITEMS_COLLECTION: &str = "workitems";
pub const QUEUE_TYPE: &str = "workitemqueue";
pub const ITEM_TYPE: &str = "workitem";
/// The file store bucket of work item files.
pub const FILES_BUCKET: &str = crate::files::DEFAULT_BUCKET;
/// Priority of items pushed without one (or with 0, which proto cannot tell apart).
pub const DEFAULT_PRIORITY: i32 = 2;
/// Retries of a queue created without `maxretries` (or with less than 1).
pub const DEFAULT_MAX_RETRIES: i32 = 3;
/// Most items one `pushworkitems` may carry.
pub const MAX_PUSH_ITEMS: usize = 1000;
/// Longest name (queue or item) accepted.
pub const MAX_NAME_LENGTH: usize = 1024;

/// Item states.
pub mod state {
    pub const NEW: &str = "new";
    pub const PROCESSING: &str = "processing";
    pub const SUCCESSFUL: &str = "successful";
    pub const FAILED: &str = "failed";
    pub const RETRY: &str = "retry";
}

/// The name of the pop index (see `ensure_indexes`).
pub const POP_INDEX: &str = "wiqid_1_state_1_priority_1_nextrun_1__created_1__id_1";

/// The sort of a pop; the pop index has the same fields after `wiqid` and `state`, so
/// the store walks it in order and stops at the first ready item.
pub fn pop_sort() -> bson::Document {
    doc! {"priority": 1, "nextrun": 1, "_created": 1, "_id": 1}
}

/// Creates the indexes work items rely on (idempotent; called at start-up): the pop
/// index on `workitems` (also serves counts and purges by `wiqid`), queue lookups by
/// name in `mq`, and the item/queue owner of files in `fs.files` (deleting an item or
/// purging a queue must not scan every file).
pub async fn ensure_indexes(store: &dyn Store) -> Result<(), OpenCoreError> {
    let pop = IndexSpec {
        keys: doc! {"wiqid": 1, "state": 1, "priority": 1, "nextrun": 1, "_created": 1, "_id": 1},
        name: Some(POP_INDEX.to_string()),
        ..Default::default()
    };
    store.create_index(ITEMS_COLLECTION, &pop).await?;
    let by_name = IndexSpec {
        keys: doc! {"name": 1},
        ..Default::default()
    };
    store.create_index(QUEUES_COLLECTION, &by_name).await?;
    let files = crate::files::files_of(FILES_BUCKET);
    for key in ["metadata.wi", "metadata.wiqid"] {
        let spec = IndexSpec {
            keys: doc! {key: 1},
            ..Default::default()
        };
        store.create_index(&files, &spec).await?;
    }
    Ok(())
}

/// The root user, for the server's own writes (role creation, chained copies, purges).
pub async fn root(services: &Services) -> Result<Arc<ResolvedUser>, OpenCoreError> {
    services
        .directory()
        .user_by_id(ROOT_USER_ID)
        .await?
        .ok_or(OpenCoreError::Internal)
}

/// A client-given name or text field: bounded, without control characters.
pub fn check_text(field: &str, value: &str, max: usize) -> Result<(), OpenCoreError> {
    if value.len() > max {
        return Err(OpenCoreError::WorkitemInvalid(format!(
            "{field} is longer than {max} bytes"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(OpenCoreError::WorkitemInvalid(format!(
            "{field} contains control characters"
        )));
    }
    Ok(())
}
