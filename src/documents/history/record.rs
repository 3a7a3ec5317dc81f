//! Writing history records (see the module docs for the format).

use bson::{doc, Bson, DateTime, Document};
use futures_util::future::try_join_all;

use crate::auth::ResolvedUser;
use crate::documents::collections::history_of;
use crate::documents::metadata::{id_text, user_name, version_of, CREATED_FIELDS, MODIFIED_FIELDS};
use crate::documents::state::DocumentState;
use crate::error::OpenCoreError;
use crate::store::StoreError;

/// `_id` of the record of version `version` of the document with `_id` `id`.
pub fn record_id(id: &Bson, version: i64) -> String {
    format!("{}:{version}", id_text(id))
}

/// The record of `document` as it is now (its current `_version`).
pub fn snapshot(document: &Document, reason: Option<&str>) -> Document {
    let id = document.get("_id").cloned().unwrap_or(Bson::Null);
    let version = version_of(document);
    let mut item = document.clone();
    item.remove("passwordhash");
    let mut record = doc! {"_id": record_id(&id, version), "id": id, "_version": version};
    for field in ["name", "_type", "_acl"]
        .iter()
        .chain(CREATED_FIELDS.iter())
        .chain(MODIFIED_FIELDS.iter())
    {
        if let Some(value) = item.get(*field) {
            record.insert(*field, value.clone());
        }
    }
    if let Some(reason) = reason {
        record.insert("reason", reason);
    }
    record.insert("item", item);
    record
}

/// The record of a document being deleted.
pub fn deleted(document: &Document, user: &ResolvedUser, now: DateTime) -> Document {
    let mut record = snapshot(document, None);
    let marks = doc! {"_deleted": now, "_deletedby": user_name(user), "_deletedbyid": &user.id};
    if let Ok(item) = record.get_document_mut("item") {
        item.extend(marks.clone());
    }
    record.extend(marks);
    record
}

/// Stores records in `<collection>_hist`, awaited. Writing the same record twice (two
/// racing updates of the same version) is harmless: a record's content is fixed by
/// its document id and version.
pub async fn write(
    state: &DocumentState,
    collection: &str,
    records: Vec<Document>,
) -> Result<(), OpenCoreError> {
    if records.is_empty() {
        return Ok(());
    }
    let store = state.store.as_ref();
    let history = history_of(collection);
    state.catalog.ensure_history_index(store, &history).await;
    match store.insert_many(&history, records.clone()).await {
        Ok(()) => Ok(()),
        Err(StoreError::DuplicateKey { .. }) => {
            let upserts = records.into_iter().map(|record| {
                let filter = doc! {"_id": record.get("_id").cloned().unwrap_or(Bson::Null)};
                let history = history.clone();
                async move { store.replace_one(&history, &filter, record, true).await }
            });
            try_join_all(upserts).await?;
            Ok(())
        }
        Err(err) => Err(err.into()),
    }
}
