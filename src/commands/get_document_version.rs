//! `getdocumentversion`: a document as it was at a given `_version`.
//!
//! Version semantics (the reference's protobuf behaviour, kept deliberately):
//! `version >= 0` asks for exactly that version, so 0 is the document as first
//! inserted; a negative version asks for the latest. A version at or above the current
//! one answers the current document. For a deleted document the latest version is the
//! one it had when deleted (with `_deleted*` fields). The answer is `null` when the
//! document (or, once deleted, its last version) is not readable by the caller, or
//! when there is no such version. Versions from before a delete and re-insert of the
//! same `_id` belong to another document: they are checked against their own history
//! record's `_acl`, never the current document's.

use bson::Document;

use super::{CommandContext, Outcome};
use crate::acl::Right;
use crate::documents::history;
use crate::documents::users::redact;
use crate::documents::{metadata, output, query, Scope};
use crate::error::OpenCoreError;
use crate::proto::{GetDocumentVersionRequest, GetDocumentVersionResponse};

pub async fn run(ctx: CommandContext) -> Result<Outcome, OpenCoreError> {
    let request: GetDocumentVersionRequest = ctx.request(true)?;
    let scope = ctx.scope(&request.collectionname).await?;
    let id = request.id.trim();
    if id.is_empty() {
        return Err(OpenCoreError::IdRequired);
    }
    let found = find(&scope, id, i64::from(request.version)).await?;
    let result = match found {
        Some(mut document) => {
            redact::redact(&scope.collection, &mut document);
            output::document_to_json(&document)
        }
        None => "null".to_string(),
    };
    Ok(ctx.reply(&GetDocumentVersionResponse { result }))
}

async fn find(scope: &Scope, id: &str, version: i64) -> Result<Option<Document>, OpenCoreError> {
    let store = scope.store();
    let mut current = None;
    for form in query::id_forms(id) {
        if let Some(document) = scope.by_stored_id(&form).await? {
            current = Some(document);
            break;
        }
    }
    if let Some(current) = current {
        let current_version = metadata::version_of(&current);
        if version < 0 || version >= current_version || !scope.keeps_history() {
            return Ok(scope.can(&current, Right::Read).then_some(current));
        }
        let id = current.get("_id").cloned().unwrap_or(bson::Bson::Null);
        return older_version(scope, &id, version, &current, current_version).await;
    }
    if !scope.keeps_history() {
        return Ok(None);
    }
    // Deleted: its history decides, readable as its last version was.
    for form in query::id_forms(id) {
        let Some(latest) = history::version::latest(store, &scope.collection, &form).await? else {
            continue;
        };
        let last_version = metadata::version_of(&latest);
        let Some(last) = history::version::item(latest) else {
            return Ok(None);
        };
        if version < 0 || version >= last_version {
            return Ok(scope.can(&last, Right::Read).then_some(last));
        }
        return older_version(scope, &form, version, &last, last_version).await;
    }
    Ok(None)
}

/// Version `version` (below `newest`, the version of `governing`): versions of the
/// same life as `governing` are readable as it is; versions from before a delete and
/// re-insert of the `_id` only as they were (their record's own `_acl`).
async fn older_version(
    scope: &Scope,
    id: &bson::Bson,
    version: i64,
    governing: &Document,
    newest: i64,
) -> Result<Option<Document>, OpenCoreError> {
    let store = scope.store();
    let Some(record) = history::version::at(store, &scope.collection, id, version).await? else {
        return Ok(None);
    };
    let life_began_after =
        history::version::deleted_before(store, &scope.collection, id, newest).await?;
    if life_began_after.is_none_or(|deleted| metadata::version_of(&record) > deleted) {
        return Ok(scope
            .can(governing, Right::Read)
            .then(|| history::version::item(record))
            .flatten());
    }
    Ok(readable_item(scope, Some(record)))
}

/// The document in a history record, when the record's own ACL (the ACL that version
/// had) lets the caller read it. The current document's ACL says nothing about older
/// versions: the `_id` may have been deleted and inserted again by someone else.
fn readable_item(scope: &Scope, record: Option<Document>) -> Option<Document> {
    record
        .filter(|record| scope.can(record, Right::Read))
        .and_then(history::version::item)
}
