//! Insert-or-update by uniqueness fields (`insertorupdateone`, `insertorupdatemany`).
//!
//! `uniqeness` (sic) is a comma-separated list of top-level fields; empty or `_id`
//! means the item's `_id` (no `_id`: always an insert). Among the documents the caller
//! may read, none matching → insert (keeping the item's `_id` if it has one), one →
//! full update of that document, several → error.
//!
//! Atomic per key without a server-wide lock: callers upserting the same
//! (collection, uniqueness values) wait for each other on a per-key async lock;
//! everything else runs in parallel. (The reference serialised every upsert on the
//! server through one semaphore.)

use bson::{Bson, Document};

use super::scope::Scope;
use super::{insert, metadata, output, query, replace};
use crate::acl::Right;
use crate::error::OpenCoreError;
use crate::store::FindOptions;

pub async fn insert_or_update(
    scope: &Scope,
    uniqueness: &str,
    item: Document,
) -> Result<Document, OpenCoreError> {
    let fields: Vec<&str> = uniqueness
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .collect();
    let by_id = fields.is_empty() || fields == ["_id"];
    let shown;
    let filter = if by_id {
        if !metadata::has_id(&item) {
            return insert_one(scope, item).await;
        }
        let id = item.get("_id").cloned().unwrap_or(Bson::Null);
        shown = bson::doc! {"_id": id.clone()};
        match &id {
            Bson::String(text) => query::id_filter(text),
            _ => shown.clone(),
        }
    } else {
        let mut filter = Document::new();
        for field in &fields {
            filter.insert(*field, item.get(*field).cloned().unwrap_or(Bson::Null));
        }
        shown = filter.clone();
        query::rewrite_id(&mut filter);
        filter
    };
    let key = format!(
        "{}\u{0}{}",
        scope.collection,
        output::document_to_json(&shown)
    );
    let _guard = scope.services.key_locks.lock(key).await;
    let readable = scope.restrict(filter, Right::Read);
    let options = FindOptions {
        limit: 2,
        ..Default::default()
    };
    let mut found = scope
        .store()
        .find(&scope.collection, &readable, &options)
        .await?;
    match found.len() {
        0 => insert_one(scope, item).await,
        1 => {
            let original = found.pop().ok_or(OpenCoreError::Internal)?;
            let mut item = item;
            item.insert("_id", original.get("_id").cloned().unwrap_or(Bson::Null));
            replace::update_one(scope, item, Some(original)).await
        }
        _ => Err(OpenCoreError::NotUnique(output::document_to_json(&shown))),
    }
}

async fn insert_one(scope: &Scope, item: Document) -> Result<Document, OpenCoreError> {
    insert::insert(scope, vec![item])
        .await?
        .pop()
        .ok_or(OpenCoreError::Internal)
}
