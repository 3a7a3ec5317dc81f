//! Files attached to work items, kept in the file store (bucket `fs`). A stored file's
//! metadata names its item (`wi`) and queue (`wiq`, `wiqid`) and carries the queue's
//! ACL, so it goes with its item or queue and is readable by the queue's users.
//!
//! In: `files[]` entries with bytes (zlib or gzip when `compressed`, inflated with the
//! `--max-file-size` limit so a small bomb cannot make the server allocate more),
//! or references to an existing file by `_id` (which the caller must be able to read).
//! Out: entries `{name, filename, _id}`; a pop may inline content up to a byte budget.

use bson::{doc, Bson, DateTime, Document};

use super::convert::{file_entry, id_of};
use super::{check_text, FILES_BUCKET};
use crate::acl::{has_right, AclLocation, Principals, Right};
use crate::auth::ResolvedUser;
use crate::documents::metadata::user_name;
use crate::documents::query::id_forms;
use crate::error::OpenCoreError;
use crate::files::{compress, length_of, FileError, NewFile};
use crate::proto;
use crate::services::Services;

/// Longest file name (with its path) accepted.
const MAX_FILENAME: usize = 1024;

fn file_error(name: &str, err: FileError) -> OpenCoreError {
    match err {
        FileError::Store(store) => OpenCoreError::from(store),
        other => OpenCoreError::WorkitemFile {
            name: name.to_string(),
            reason: other.to_string(),
        },
    }
}

/// `dir/name.txt` (either separator) → (`dir`, `name.txt`).
pub fn split_path(path: &str) -> (&str, &str) {
    match path.rfind(['/', '\\']) {
        Some(at) => (&path[..at], &path[at + 1..]),
        None => ("", path),
    }
}

/// The new file's metadata: names, owner item and queue, the queue's ACL, stamps.
fn metadata(queue: &Document, item_id: &str, path: &str, user: &ResolvedUser) -> Document {
    let (dir, base) = split_path(path);
    let now = DateTime::now();
    doc! {
        "name": base,
        "filename": base,
        "path": dir,
        "wi": item_id,
        "wiq": queue.get_str("name").unwrap_or_default(),
        "wiqid": id_of(queue),
        "uniquename": format!("{}-{base}", crate::documents::metadata::new_id()),
        "_acl": queue.get("_acl").cloned().unwrap_or(Bson::Array(Vec::new())),
        "_created": now,
        "_createdby": user_name(user),
        "_createdbyid": &user.id,
        "_modified": now,
        "_modifiedby": user_name(user),
        "_modifiedbyid": &user.id,
    }
}

/// Stores or resolves one request file; `None` for an entry that names nothing.
pub async fn attach(
    services: &Services,
    user: &ResolvedUser,
    principals: &Principals,
    queue: &Document,
    item_id: &str,
    file: &proto::WorkitemFile,
) -> Result<Option<Document>, OpenCoreError> {
    check_text("filename", &file.filename, MAX_FILENAME)?;
    let path = file.filename.as_str();
    let (_, base) = split_path(path);
    let base = if base.is_empty() { "file" } else { base };
    let files = &services.files;
    if !file.file.is_empty() {
        // Bytes win over an `_id` (the Rust client sends `_id: "findme"` with them).
        let limit = files.max_file_size();
        let content = if file.compressed {
            compress::inflate(&file.file, limit).map_err(|err| OpenCoreError::WorkitemFile {
                name: base.to_string(),
                reason: err.to_string(),
            })?
        } else {
            file.file.to_vec()
        };
        let new = NewFile {
            filename: base.to_string(),
            content_type: String::new(),
            metadata: metadata(queue, item_id, path, user),
        };
        let stored = files
            .put(FILES_BUCKET, new, &content)
            .await
            .map_err(|err| file_error(base, err))?;
        return Ok(Some(
            doc! {"name": path, "filename": base, "_id": id_of(&stored)},
        ));
    }
    if file.id.is_empty() {
        return Ok(None);
    }
    let found = find(services, &file.id).await?;
    match found {
        Some(found) if has_right(principals, &found, Right::Read, AclLocation::Metadata) => {
            let filename = match found.get_str("filename") {
                Ok(name) if path.is_empty() => name.to_string(),
                _ => base.to_string(),
            };
            let name = if path.is_empty() {
                filename.clone()
            } else {
                path.to_string()
            };
            Ok(Some(
                doc! {"name": name, "filename": filename, "_id": id_of(&found)},
            ))
        }
        _ => Err(OpenCoreError::WorkitemFile {
            name: base.to_string(),
            reason: format!("file {} not found or access denied", file.id),
        }),
    }
}

/// The `.files` document with this id (either id form).
pub async fn find(services: &Services, id: &str) -> Result<Option<Document>, OpenCoreError> {
    for form in id_forms(id) {
        if let Some(found) = services
            .files
            .get(FILES_BUCKET, &form)
            .await
            .map_err(|err| file_error(id, err))?
        {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// The entries of a popped item the caller may read, with content inlined (zlib
/// deflated when `compressed`) while it fits in `budget` bytes; larger files are
/// left for a download by `_id`.
pub async fn for_reply(
    services: &Services,
    principals: &Principals,
    entries: &[Document],
    include: bool,
    compressed: bool,
    mut budget: usize,
) -> Result<Vec<proto::WorkitemFile>, OpenCoreError> {
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let mut file = file_entry(entry);
        let Some(found) = find(services, &file.id).await? else {
            continue;
        };
        if !has_right(principals, &found, Right::Read, AclLocation::Metadata) {
            continue;
        }
        if include {
            let length = length_of(&found) as usize;
            let content = if length <= budget {
                services
                    .files
                    .read_all(FILES_BUCKET, &found, budget as u64)
                    .await
                    .map_err(|err| file_error(&file.filename, err))?
            } else {
                None
            };
            let content = content.map(|c| if compressed { compress::deflate(&c) } else { c });
            match content {
                Some(content) if content.len() <= budget => {
                    budget -= content.len();
                    file.compressed = compressed;
                    file.file = content.into();
                }
                _ => tracing::info!(
                    file = %file.id,
                    length,
                    "work item file too large to inline in a pop reply; the client downloads it by _id"
                ),
            }
        }
        out.push(file);
    }
    Ok(out)
}

/// Copies an item's files for its copy in `target` (chaining), with the target's ACL.
pub async fn copy_to(
    services: &Services,
    user: &ResolvedUser,
    entries: &[Document],
    target: &Document,
    new_item_id: &str,
) -> Result<Vec<Document>, OpenCoreError> {
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let id = entry
            .get("_id")
            .map(crate::documents::metadata::id_text)
            .unwrap_or_default();
        let Some(found) = find(services, &id).await? else {
            tracing::warn!(file = %id, "a chained work item's file is gone; not copied");
            continue;
        };
        let filename = found.get_str("filename").unwrap_or("file").to_string();
        let path = entry.get_str("name").unwrap_or(&filename).to_string();
        let new = NewFile {
            filename: filename.clone(),
            content_type: found.get_str("contentType").unwrap_or_default().to_string(),
            metadata: metadata(target, new_item_id, &path, user),
        };
        let copied = services
            .files
            .copy(FILES_BUCKET, &found, new)
            .await
            .map_err(|err| file_error(&filename, err))?;
        out.push(doc! {"name": path, "filename": filename, "_id": id_of(&copied)});
    }
    Ok(out)
}

async fn delete_where(services: &Services, filter: Document) -> Result<u64, OpenCoreError> {
    services
        .files
        .delete_where(FILES_BUCKET, &filter)
        .await
        .map_err(|err| file_error("", err))
}

/// Deletes the files stored for an item (not files it only references).
pub async fn delete_item_files(services: &Services, item_id: &str) -> Result<u64, OpenCoreError> {
    delete_where(services, doc! {"metadata.wi": item_id}).await
}

/// Deletes the files stored for a queue's items.
pub async fn delete_queue_files(services: &Services, wiqid: &str) -> Result<u64, OpenCoreError> {
    delete_where(services, doc! {"metadata.wiqid": wiqid}).await
}

/// Deletes one file if it was stored for this item.
pub async fn delete_if_owned(
    services: &Services,
    file_id: &str,
    item_id: &str,
) -> Result<u64, OpenCoreError> {
    delete_where(
        services,
        doc! {"_id": {"$in": id_forms(file_id)}, "metadata.wi": item_id},
    )
    .await
}
