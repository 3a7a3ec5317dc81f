//! `getdocumentversion`: a document as it was at a given `_version`.
//!
//! Version semantics (the reference's protobuf behaviour, kept deliberately):
//! `version >= 0` asks for exactly that version, so 0 is the document as first
//! inserted; a negative version asks for the latest. A version at or above the current
//! one answers the current document. For a deleted document the latest version is the
//! one it had when deleted (with `_deleted*` fields). The answer is `null` when the
//! document (or, once deleted, its last version) is not readable by the caller, when
//! the version asked for was not readable by the caller (each version is checked
//! against its own history record's `_acl`), or when there is no such version.

use bson::Document;

use super::{CommandContext, Outcome};
use crate::acl::Right;
use crate::documents::{metadata, output, query, Scope};
use crate::error::OpenCoreError;
use crate::history;
use crate::proto::{GetDocumentVersionRequest, GetDocumentVersionResponse};
use crate::users::redact;

pub async fn run(ctx: CommandContext) -> Result<Outcome, OpenCoreError> {
    let request: GetDocumentVersionRequest = ctx.request(true)?;
    let scope = Scope::open(&ctx, &request.collectionname).await?;
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
        if version < 0 || version >= metadata::version_of(&current) || !scope.keeps_history() {
            return Ok(scope.can(&current, Right::Read).then_some(current));
        }
        let id = current.get("_id").cloned().unwrap_or(bson::Bson::Null);
        let record = history::version::at(store, &scope.collection, &id, version).await?;
        return Ok(readable_item(scope, record));
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
        if !scope.can(&last, Right::Read) {
            return Ok(None);
        }
        if version < 0 || version >= last_version {
            return Ok(Some(last));
        }
        let record = history::version::at(store, &scope.collection, &form, version).await?;
        return Ok(readable_item(scope, record));
    }
    Ok(None)
}

/// The document in a history record, when the record's own ACL (the ACL that version
/// had) lets the caller read it. The current document's ACL says nothing about older
/// versions: the `_id` may have been deleted and inserted again by someone else.
fn readable_item(scope: &Scope, record: Option<Document>) -> Option<Document> {
    record
        .filter(|record| scope.can(record, Right::Read))
        .and_then(history::version::item)
}
