//! Deleting documents (`deleteone`, `deletemany`): every matched document is checked,
//! gets its history record, and the delete is awaited; the count is what was really
//! deleted.

use bson::{doc, Bson, DateTime, Document};

use super::query;
use super::scope::Scope;
use crate::acl::Right;
use crate::error::OpenCoreError;
use crate::history;
use crate::users::{rules, USERS_COLLECTION};

/// Documents deleted per store call.
const BATCH: usize = 1000;

pub struct Deleted {
    pub count: u64,
    /// Matched documents that may never be deleted (built-in users and roles).
    pub protected: usize,
}

/// Deletes what `filter` matches among the documents the caller may delete (the first
/// match only with `just_one`).
pub async fn delete(
    scope: &Scope,
    filter: Document,
    just_one: bool,
) -> Result<Deleted, OpenCoreError> {
    scope.ensure_writable()?;
    if scope.collection == "audit" && !scope.is_admin() {
        return Err(OpenCoreError::AccessDenied);
    }
    let restricted = scope.restrict(filter, Right::Delete);
    let options = crate::store::FindOptions {
        limit: u64::from(just_one),
        ..Default::default()
    };
    let matched = scope
        .store()
        .find(&scope.collection, &restricted, &options)
        .await?;
    let total = matched.len();
    let mut doomed: Vec<Document> = matched
        .into_iter()
        .filter(|d| scope.can(d, Right::Delete))
        .filter(|d| {
            !(scope.collection == USERS_COLLECTION && d.get_str("_id").is_ok_and(rules::is_builtin))
        })
        .collect();
    let protected = total - doomed.len();
    if just_one {
        doomed.truncate(1);
    }
    let mut count = 0;
    for chunk in doomed.chunks(BATCH) {
        if scope.keeps_history() {
            let now = DateTime::now();
            let records = chunk
                .iter()
                .map(|d| history::record::deleted(d, &scope.user, now))
                .collect();
            history::record::write(&scope.services, &scope.collection, records).await?;
        }
        let ids: Vec<Bson> = chunk.iter().filter_map(|d| d.get("_id").cloned()).collect();
        let filter = scope.restrict(query::and([doc! {"_id": {"$in": ids}}]), Right::Delete);
        count += scope
            .store()
            .delete(&scope.collection, &filter, false)
            .await?;
    }
    Ok(Deleted { count, protected })
}
