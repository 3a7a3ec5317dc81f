//! Deleting documents (`deleteone`, `deletemany`): every matched document is checked,
//! gets its history record, and the delete is awaited; the count is what was really
//! deleted.

use bson::{doc, Bson, DateTime, Document};

use super::query;
use super::scope::Scope;
use crate::acl::Right;
use crate::documents::history;
use crate::documents::metadata::id_text;
use crate::documents::users::{ids::is_builtin, USERS_COLLECTION};
use crate::error::OpenCoreError;
use crate::store::UpdateOptions;

/// Documents deleted per store call.
const BATCH: usize = 1000;

pub struct Deleted {
    pub count: u64,
    /// Matched documents that may never be deleted (built-in users and roles).
    pub protected: usize,
}

/// Deletes what `filter` matches among the documents the caller may delete (the first
/// match only with `just_one`).
///
/// Works in batches of `BATCH` documents, so deleting a large collection never holds
/// more than one batch in memory: each round reads the next matches, writes their
/// history records, deletes them. Matches that stay (built-in users, documents the
/// in-memory ACL check refuses) are excluded from later rounds by `_id`.
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
    let batch = if just_one { 1 } else { BATCH };
    let mut kept: Vec<Bson> = Vec::new();
    let mut deleted = Deleted {
        count: 0,
        protected: 0,
    };
    loop {
        let round = if kept.is_empty() {
            restricted.clone()
        } else {
            query::and([restricted.clone(), doc! {"_id": {"$nin": kept.clone()}}])
        };
        let options = crate::store::FindOptions {
            limit: batch as u64,
            ..Default::default()
        };
        let matched = scope
            .store()
            .find(&scope.collection, &round, &options)
            .await?;
        let exhausted = matched.len() < batch;
        // A work item queue goes with its items, files and role: only its own command
        // deletes it (the reference's rule).
        if scope.collection == "mq"
            && matched
                .iter()
                .any(|d| d.get_str("_type") == Ok("workitemqueue") && scope.can(d, Right::Delete))
        {
            return Err(OpenCoreError::AccessDeniedBecause(
                "you must call DeleteWorkItemQueue to delete".into(),
            ));
        }
        let (mut doomed, stay): (Vec<Document>, Vec<Document>) =
            matched.into_iter().partition(|d| may_delete(scope, d));
        deleted.protected += stay.len();
        kept.extend(stay.iter().filter_map(|d| d.get("_id").cloned()));
        if just_one {
            doomed.truncate(1);
        }
        let count = delete_batch(scope, &doomed).await?;
        if (count as usize) < doomed.len() {
            // Some were not deleted after all (a concurrent change): never read them
            // again, so every round makes progress.
            kept.extend(doomed.iter().filter_map(|d| d.get("_id").cloned()));
        }
        deleted.count += count;
        if exhausted || just_one {
            return Ok(deleted);
        }
    }
}

fn may_delete(scope: &Scope, document: &Document) -> bool {
    scope.can(document, Right::Delete)
        && !(scope.collection == USERS_COLLECTION
            && document
                .get("_id")
                .is_some_and(|id| is_builtin(&id_text(id))))
}

/// A deleted user or role stops being a member anywhere, so nothing it was given
/// through a role outlives it. (Its id is never reused, see `users::ids`, so ACL
/// entries naming it grant nobody.)
async fn remove_memberships(scope: &Scope, deleted: &[Document]) -> Result<(), OpenCoreError> {
    let ids: Vec<Bson> = deleted
        .iter()
        .filter(|d| matches!(d.get_str("_type"), Ok("user" | "role")))
        .filter_map(|d| d.get("_id"))
        .flat_map(|id| query::id_forms(&id_text(id)))
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    let filter = doc! {"_type": "role", "members._id": {"$in": ids.clone()}};
    let update = doc! {"$pull": {"members": {"_id": {"$in": ids}}}};
    let options = UpdateOptions {
        upsert: false,
        multi: true,
    };
    scope
        .store()
        .update(USERS_COLLECTION, &filter, &update, options)
        .await?;
    Ok(())
}

/// Writes the history records of `doomed`, then deletes them; returns how many went.
async fn delete_batch(scope: &Scope, doomed: &[Document]) -> Result<u64, OpenCoreError> {
    if doomed.is_empty() {
        return Ok(0);
    }
    if scope.keeps_history() {
        let now = DateTime::now();
        let records = doomed
            .iter()
            .map(|d| history::record::deleted(d, &scope.user, now))
            .collect();
        history::record::write(&scope.state, &scope.collection, records).await?;
    }
    let ids: Vec<Bson> = doomed
        .iter()
        .filter_map(|d| d.get("_id").cloned())
        .collect();
    let filter = scope.restrict(query::and([doc! {"_id": {"$in": ids}}]), Right::Delete);
    let count = scope
        .store()
        .delete(&scope.collection, &filter, false)
        .await?;
    if scope.collection == USERS_COLLECTION {
        remove_memberships(scope, doomed).await?;
    }
    if let Some(bucket) = crate::files::bucket_of(&scope.collection) {
        remove_file_content(scope, bucket, doomed, count).await?;
    }
    Ok(count)
}

/// A deleted `.files` document takes its content (`<bucket>.chunks`) with it. Only the
/// content of documents that are really gone is removed: when fewer than all were
/// deleted (a concurrent change), the ones still there are looked up first.
async fn remove_file_content(
    scope: &Scope,
    bucket: &str,
    doomed: &[Document],
    count: u64,
) -> Result<(), OpenCoreError> {
    let mut ids: Vec<Bson> = doomed
        .iter()
        .filter_map(|d| d.get("_id").cloned())
        .collect();
    if (count as usize) < ids.len() {
        let options = crate::store::FindOptions {
            projection: Some(doc! {"_id": 1}),
            ..Default::default()
        };
        let still = scope
            .store()
            .find(
                &scope.collection,
                &doc! {"_id": {"$in": ids.clone()}},
                &options,
            )
            .await?;
        let still: Vec<Bson> = still
            .into_iter()
            .filter_map(|mut d| d.remove("_id"))
            .collect();
        ids.retain(|id| !still.contains(id));
    }
    if ids.is_empty() {
        return Ok(());
    }
    scope
        .store()
        .delete(
            &crate::files::chunks_of(bucket),
            &doc! {"files_id": {"$in": ids}},
            false,
        )
        .await?;
    Ok(())
}
