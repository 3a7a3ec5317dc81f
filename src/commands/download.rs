//! `download`: streams a stored file to the connection (see `files::download` for the
//! order and the back-pressure), by `_id` (preferred) or by `filename` (the newest),
//! if the caller may read it (`metadata._acl`). Not found and not readable are one
//! answer, so a file's existence is not revealed. Needs a streaming connection.
//!
//! The command runs until the reply is written, so a download counts as in flight
//! (the connection's in-flight limit caps parallel downloads); `endstream` follows
//! ~200 ms later and the reply itself is sent by the streaming (deferred outcome).

use bson::{doc, Document};

use super::{CommandContext, Outcome};
use crate::acl::Right;
use crate::documents::Scope;
use crate::error::OpenCoreError;
use crate::files::{self, download};
use crate::proto::{DownloadRequest, DownloadResponse};
use crate::store::FindOptions;

pub async fn run(ctx: CommandContext) -> Result<Outcome, OpenCoreError> {
    let request: DownloadRequest = ctx.request(true)?;
    let connection = ctx.connection()?.clone();
    let id = request.id.trim();
    let filename = request.filename.trim();
    if id.is_empty() && filename.is_empty() {
        return Err(OpenCoreError::DownloadWithoutId);
    }
    let named = if id.is_empty() { filename } else { id };
    let denied = || OpenCoreError::DownloadDenied(named.to_string());
    let bucket = bucket_for(&request.collectionname).ok_or_else(denied)?;
    let scope = ctx.scope(&files::files_of(&bucket)).await?;
    let file = find_readable(&scope, id, filename)
        .await?
        .ok_or_else(denied)?;
    let response = DownloadResponse {
        id: file
            .get("_id")
            .map(crate::documents::metadata::id_text)
            .unwrap_or_default(),
        filename: file.get_str("filename").unwrap_or_default().to_string(),
        mimetype: file.get_str("contentType").unwrap_or_default().to_string(),
    };
    let reader = ctx.services.files.reader(&bucket, &file);
    let rid = ctx.envelope.id.clone();
    download::stream_file(&connection, &rid, reader, &response).await?;
    let mut outcome = ctx.deferred();
    outcome.after_reply = Some(Box::new(move || download::end_stream(connection, rid)));
    Ok(outcome)
}

/// The bucket a `collectionname` names: "", `fs`, `fs.files` and `files` are the
/// default one; `X.files` is bucket `X`. `X.chunks` names no bucket (the content, not
/// the files).
pub fn bucket_for(collectionname: &str) -> Option<String> {
    let name = collectionname.trim();
    if name.is_empty() || name == "files" || name == files::DEFAULT_BUCKET {
        return Some(files::DEFAULT_BUCKET.to_string());
    }
    if let Some(bucket) = files::bucket_of(name) {
        return (!bucket.is_empty()).then(|| bucket.to_string());
    }
    (!name.ends_with(".chunks")).then(|| name.to_string())
}

/// The file by id (ObjectId or string form) or else the newest with this name, if the
/// caller may read it.
pub async fn find_readable(
    scope: &Scope,
    id: &str,
    filename: &str,
) -> Result<Option<Document>, OpenCoreError> {
    if !id.is_empty() {
        return scope.readable_by_id(id).await;
    }
    let filter = scope.restrict(doc! {"filename": filename}, Right::Read);
    let options = FindOptions {
        sort: Some(doc! {"uploadDate": -1}),
        limit: 1,
        ..Default::default()
    };
    let found = scope
        .store()
        .find(&scope.collection, &filter, &options)
        .await?;
    Ok(found.into_iter().next())
}

#[cfg(test)]
mod tests {
    use super::bucket_for;

    #[test]
    fn buckets() {
        for name in ["", "fs", "fs.files", "files", " files "] {
            assert_eq!(bucket_for(name).as_deref(), Some("fs"), "{name}");
        }
        assert_eq!(bucket_for("photos.files").as_deref(), Some("photos"));
        assert_eq!(bucket_for("fs.chunks"), None);
        assert_eq!(bucket_for(".files"), None);
    }
}
