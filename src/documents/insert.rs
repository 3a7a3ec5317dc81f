//! Inserting documents (`insertone`, `insertmany`, the insert half of the upserts):
//! metadata, `users` rules, ACL defaults, then one awaited store write for all of them.

use bson::{Bson, DateTime, Document};

use super::catalog::{AclLocation, CollectionKind};
use super::scope::Scope;
use super::{id_forms, metadata};
use crate::acl::ace::{self, Ace};
use crate::acl::Right;
use crate::documents::history;
use crate::documents::users::rules;
use crate::error::OpenCoreError;

/// Prepares and stores `items`; returns them as stored. All or none.
pub async fn insert(scope: &Scope, items: Vec<Document>) -> Result<Vec<Document>, OpenCoreError> {
    scope.ensure_writable()?;
    // A `.files` document names its content by `_id` (`<bucket>.chunks.files_id`). A
    // non-admin's new one gets a fresh string id, which no content has, so no one can
    // point a document they control at content that is not theirs.
    if scope.kind == CollectionKind::Files
        && !scope.is_admin()
        && items.iter().any(metadata::has_id)
    {
        return Err(OpenCoreError::FileIdChosen(scope.collection.clone()));
    }
    if items.is_empty() {
        return Err(OpenCoreError::NullItem);
    }
    let now = DateTime::now();
    let mut documents = Vec::with_capacity(items.len());
    let mut acls: Vec<Vec<Ace>> = Vec::with_capacity(items.len());
    let mut known: Vec<(String, String)> = Vec::new();
    let mut chosen_ids: Vec<bool> = Vec::with_capacity(items.len());
    for item in items {
        chosen_ids.push(metadata::has_id(&item));
        let (document, acl, extras) = prepare(scope, item, now).await?;
        known.extend(extras.iter().map(|e| (e.id.clone(), e.name.clone())));
        documents.push(document);
        acls.push(acl);
    }
    {
        let mut refs: Vec<&mut Vec<Ace>> = acls.iter_mut().collect();
        ace::resolve_names(scope.store(), &scope.user, &known, &mut refs).await?;
    }
    for (document, acl) in documents.iter_mut().zip(&acls) {
        set_acl(document, scope.location(), acl);
    }
    // Generated ids are unpredictable (`metadata::new_id`): only chosen ones can have
    // a twin stored in the other form.
    let chosen: Vec<&Document> = documents
        .iter()
        .zip(&chosen_ids)
        .filter_map(|(document, chosen)| chosen.then_some(document))
        .collect();
    let _claimed = id_forms::claim(scope, &chosen).await?;
    scope
        .store()
        .insert_many(&scope.collection, documents.clone())
        .await?;
    Ok(documents)
}

/// Writes an ACL where this collection keeps it.
pub fn set_acl(document: &mut Document, location: AclLocation, acl: &[Ace]) {
    match location {
        AclLocation::Root => {
            document.insert("_acl", ace::to_bson(acl));
        }
        AclLocation::Metadata => {
            if !matches!(document.get("metadata"), Some(Bson::Document(_))) {
                document.insert("metadata", Document::new());
            }
            if let Ok(metadata) = document.get_document_mut("metadata") {
                metadata.insert("_acl", ace::to_bson(acl));
            }
        }
    }
}

/// The ACL a document carries where this collection keeps it.
pub fn acl_value(document: &Document, location: AclLocation) -> Option<&Bson> {
    match location {
        AclLocation::Root => document.get("_acl"),
        AclLocation::Metadata => document
            .get_document("metadata")
            .ok()
            .and_then(|m| m.get("_acl")),
    }
}

async fn prepare(
    scope: &Scope,
    item: Document,
    now: DateTime,
) -> Result<(Document, Vec<Ace>, Vec<Ace>), OpenCoreError> {
    let explicit_id = metadata::has_id(&item);
    let mut document = metadata::with_id_first(item);
    metadata::take_request_fields(&mut document);
    match &scope.kind {
        CollectionKind::Timeseries { time_field, .. } => {
            if !document.contains_key(time_field) {
                document.insert(time_field.clone(), now);
            }
            document.insert("_created", now);
            document.insert("_createdby", metadata::user_name(&scope.user));
            document.insert("_createdbyid", &scope.user.id);
        }
        CollectionKind::Files => {}
        _ => {
            metadata::normalise_type(&mut document, "unknown");
            metadata::stamp_created(&mut document, &scope.user, now);
            metadata::stamp_modified(&mut document, &scope.user, now);
            document.insert("_version", 0);
            if explicit_id && scope.keeps_history() {
                restore_from_history(scope, &mut document).await?;
            }
        }
    }
    let extras = rules::before_insert(scope, &mut document, explicit_id).await?;
    let mut acl = ace::parse(acl_value(&document, scope.location()));
    ace::apply_insert_defaults(&mut acl, &scope.user);
    for extra in &extras {
        ace::ensure(&mut acl, &extra.id, &extra.name, extra.rights);
    }
    Ok((document, acl, extras))
}

/// Re-inserting the `_id` of a deleted document continues its history: the next
/// version number (so no record is ever overwritten), and, when the caller could read
/// the deleted version, the original creation stamps. Someone else re-using the id
/// learns nothing of the old document (and `getdocumentversion` checks each old
/// version's own ACL).
async fn restore_from_history(scope: &Scope, document: &mut Document) -> Result<(), OpenCoreError> {
    let Some(id) = document.get("_id").cloned() else {
        return Ok(());
    };
    let Some(record) = history::version::latest(scope.store(), &scope.collection, &id).await?
    else {
        return Ok(());
    };
    document.insert("_version", metadata::version_of(&record) + 1);
    if !scope.can(&record, Right::Read) {
        return Ok(());
    }
    if let Some(item) = history::version::item(record) {
        for field in metadata::CREATED_FIELDS {
            if let Some(value) = item.get(field) {
                document.insert(field, value.clone());
            }
        }
    }
    Ok(())
}
