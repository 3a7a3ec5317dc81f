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
use super::{insert, metadata, output, query, read, replace};
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
        // Either form of the id names the same document (see `id_forms`).
        let id = metadata::id_text(item.get("_id").unwrap_or(&Bson::Null));
        shown = bson::doc! {"_id": id.as_str()};
        query::id_filter(&id)
    } else {
        read::refuse_password_probe(scope, &[uniqueness])?;
        let mut filter = Document::new();
        for field in &fields {
            let value = item.get(*field).cloned().unwrap_or(Bson::Null);
            filter.insert(*field, value);
        }
        shown = filter.clone();
        // The item's values are matched as values: an object in the item is not an
        // operator of the query (`{"$regex": ...}` would probe other documents).
        for (field, value) in filter.iter_mut() {
            if matches!(value, Bson::Document(_)) || field != "_id" {
                *value = Bson::Document(bson::doc! {"$eq": value.clone()});
            }
        }
        query::rewrite_id(&mut filter);
        filter
    };
    let key = format!(
        "{}\u{0}{}",
        scope.collection,
        output::document_to_json(&shown)
    );
    let _guard = scope.state.key_locks.lock(key).await;
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
