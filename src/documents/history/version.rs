//! Reading history: a given version, or the newest record (for deleted documents and
//! for re-inserting a deleted document's `_id`).

use bson::{doc, Bson, Document};

use super::record::record_id;
use crate::documents::collections::history_of;
use crate::error::OpenCoreError;
use crate::store::{FindOptions, Store};

/// The record of exactly `version`, or else the newest one before it.
pub async fn at(
    store: &dyn Store,
    collection: &str,
    id: &Bson,
    version: i64,
) -> Result<Option<Document>, OpenCoreError> {
    let history = history_of(collection);
    if let Some(record) = store
        .find_by_id(&history, &Bson::String(record_id(id, version)))
        .await?
    {
        return Ok(Some(record));
    }
    let options = FindOptions {
        sort: Some(doc! {"_version": -1}),
        limit: 1,
        ..Default::default()
    };
    let filter = doc! {"id": id.clone(), "_version": {"$lte": version}};
    Ok(store
        .find(&history, &filter, &options)
        .await?
        .into_iter()
        .next())
}

/// The newest record of the document.
pub async fn latest(
    store: &dyn Store,
    collection: &str,
    id: &Bson,
) -> Result<Option<Document>, OpenCoreError> {
    let options = FindOptions {
        sort: Some(doc! {"_version": -1}),
        limit: 1,
        ..Default::default()
    };
    Ok(store
        .find(&history_of(collection), &doc! {"id": id.clone()}, &options)
        .await?
        .into_iter()
        .next())
}

/// The newest version below `below` at which the document was deleted, if any:
/// versions up to it belong to earlier lives of the `_id` (it was inserted again
/// afterwards), whoever owned them.
pub async fn deleted_before(
    store: &dyn Store,
    collection: &str,
    id: &Bson,
    below: i64,
) -> Result<Option<i64>, OpenCoreError> {
    let options = FindOptions {
        sort: Some(doc! {"_version": -1}),
        limit: 1,
        projection: Some(doc! {"_version": 1}),
        ..Default::default()
    };
    let filter = doc! {"id": id.clone(), "_deleted": {"$exists": true}, "_version": {"$lt": below}};
    Ok(store
        .find(&history_of(collection), &filter, &options)
        .await?
        .first()
        .map(crate::documents::metadata::version_of))
}

/// The document stored in a record.
pub fn item(record: Document) -> Option<Document> {
    match record.get("item") {
        Some(Bson::Document(item)) => Some(item.clone()),
        _ => None,
    }
}
