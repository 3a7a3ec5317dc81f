//! `pushworkitem` / `pushworkitems`: new items in a queue the caller may invoke. Every
//! item is stored (files first) and the store write is awaited before the reply.
//!
//! `nextrun` is the given one, else `_created` + the queue's `initialdelay`, computed
//! from the same `now` as `_created`, so without a delay an item is ready at once and
//! items of one priority pop in push order.

use std::sync::Arc;

use bson::{Bson, DateTime, Document};
use prost_types::Timestamp;

use super::convert::{id_of, timestamp_to_date};
use super::{check_text, files, queue, state, DEFAULT_PRIORITY, ITEMS_COLLECTION, ITEM_TYPE};
use crate::acl::Principals;
use crate::auth::ResolvedUser;
use crate::documents::{guard, json, metadata};
use crate::error::OpenCoreError;
use crate::proto;
use crate::services::Services;

/// Where items go when they finish (request-level for `pushworkitems`).
#[derive(Debug, Clone, Default)]
pub struct Targets {
    pub success_wiq: String,
    pub success_wiqid: String,
    pub failed_wiq: String,
    pub failed_wiqid: String,
}

/// One item to push.
#[derive(Debug, Clone, Default)]
pub struct NewItem {
    pub name: String,
    pub payload: String,
    pub nextrun: Option<Timestamp>,
    pub priority: i32,
    pub files: Vec<proto::WorkitemFile>,
}

/// A payload as stored: an object (other JSON values wrapped as `{value: v}`); empty is `{}`.
pub fn parse_payload(text: &str) -> Result<Document, OpenCoreError> {
    let text = text.trim();
    if text.is_empty() || text == "null" {
        return Ok(Document::new());
    }
    let value = json::parse_value("payload", text)?;
    let payload = match value {
        Bson::Document(document) => document,
        other => bson::doc! {"value": other},
    };
    guard::refuse_javascript(&payload)?;
    Ok(payload)
}

/// Room for the fields of one item in a reply besides its name and payload (ids,
/// dates, state, queue, targets), and for one file entry.
const REPLY_ITEM_OVERHEAD: usize = 1024;
const REPLY_FILE_OVERHEAD: usize = 160;

/// About how large the reply echoing these items will be.
pub fn estimated_reply(items: &[NewItem]) -> usize {
    items
        .iter()
        .map(|item| {
            item.payload.len()
                + item.name.len()
                + REPLY_ITEM_OVERHEAD
                + item.files.len() * REPLY_FILE_OVERHEAD
                + item.files.iter().map(|f| f.filename.len()).sum::<usize>()
        })
        .sum()
}

/// Pushes `items` to the queue `wiq`/`wiqid`; returns them as stored. `reply_limit`:
/// the largest reply the caller's transport can deliver; a push whose reply would not
/// fit is refused before anything is stored.
pub async fn push(
    services: &Services,
    user: &Arc<ResolvedUser>,
    wiq: &str,
    wiqid: &str,
    targets: &Targets,
    items: Vec<NewItem>,
    reply_limit: usize,
) -> Result<Vec<Document>, OpenCoreError> {
    if items.len() > super::MAX_PUSH_ITEMS {
        return Err(OpenCoreError::TooManyWorkitems {
            count: items.len(),
            limit: super::MAX_PUSH_ITEMS,
        });
    }
    let size = estimated_reply(&items);
    if size > reply_limit {
        return Err(OpenCoreError::PushReplyTooLarge {
            size,
            limit: reply_limit,
        });
    }
    if items.is_empty() {
        return Err(OpenCoreError::WorkitemInvalid("items is mandatory".into()));
    }
    for (key, value) in [
        ("success_wiq", &targets.success_wiq),
        ("success_wiqid", &targets.success_wiqid),
        ("failed_wiq", &targets.failed_wiq),
        ("failed_wiqid", &targets.failed_wiqid),
    ] {
        check_text(key, value, super::MAX_NAME_LENGTH)?;
    }
    let scope = queue::scope(services, user).await?;
    let queue = queue::for_items(&scope, wiq, wiqid).await?;
    let now = DateTime::now();
    let mut documents = Vec::with_capacity(items.len());
    for item in &items {
        documents.push(build(&queue, user, targets, item, now)?);
    }
    let principals = Principals::of(user);
    let stored = store_all(services, user, &principals, &queue, &items, &mut documents).await;
    if let Err(err) = stored {
        // Nothing of a failed push stays behind.
        for document in &documents {
            let _ = files::delete_item_files(services, &id_of(document)).await;
        }
        return Err(err);
    }
    Ok(documents)
}

async fn store_all(
    services: &Services,
    user: &ResolvedUser,
    principals: &Principals,
    queue: &Document,
    items: &[NewItem],
    documents: &mut [Document],
) -> Result<(), OpenCoreError> {
    for (item, document) in items.iter().zip(documents.iter_mut()) {
        if item.files.is_empty() {
            continue;
        }
        let id = id_of(document);
        let mut entries = Vec::new();
        for file in &item.files {
            if let Some(entry) = files::attach(services, user, principals, queue, &id, file).await?
            {
                entries.push(Bson::Document(entry));
            }
        }
        document.insert("files", entries);
    }
    services
        .store
        .insert_many(ITEMS_COLLECTION, documents.to_vec())
        .await?;
    Ok(())
}

fn build(
    queue: &Document,
    user: &ResolvedUser,
    targets: &Targets,
    item: &NewItem,
    now: DateTime,
) -> Result<Document, OpenCoreError> {
    let name = match item.name.trim() {
        "" => "New work item",
        name => name,
    };
    check_text("name", name, super::MAX_NAME_LENGTH)?;
    let payload = parse_payload(&item.payload)?;
    let nextrun = match &item.nextrun {
        Some(ts) => timestamp_to_date("nextrun", ts)?,
        None => {
            let delay = i64::from(queue::setting(queue, "initialdelay").max(0));
            DateTime::from_millis(now.timestamp_millis().saturating_add(delay * 1000))
        }
    };
    let priority = if item.priority == 0 {
        DEFAULT_PRIORITY
    } else {
        item.priority
    };
    let mut document = bson::doc! {
        "_id": metadata::new_id(),
        "_type": ITEM_TYPE,
        "name": name,
        "payload": payload,
        "priority": priority,
        "nextrun": nextrun,
        "lastrun": Bson::Null,
        "state": state::NEW,
        "wiq": queue::name_of(queue),
        "wiqid": id_of(queue),
        "retries": 0,
        "files": [],
        "_acl": queue.get("_acl").cloned().unwrap_or(Bson::Array(Vec::new())),
    };
    for (key, value) in [
        ("success_wiq", &targets.success_wiq),
        ("success_wiqid", &targets.success_wiqid),
        ("failed_wiq", &targets.failed_wiq),
        ("failed_wiqid", &targets.failed_wiqid),
    ] {
        if !value.is_empty() {
            document.insert(key, value.as_str());
        }
    }
    metadata::stamp_created(&mut document, user, now);
    metadata::stamp_modified(&mut document, user, now);
    document.insert("_version", 0);
    Ok(document)
}

/// The item of a `pushworkitem` request.
pub fn from_push(request: &proto::PushWorkitemRequest) -> (Targets, NewItem) {
    (
        Targets {
            success_wiq: request.success_wiq.clone(),
            success_wiqid: request.success_wiqid.clone(),
            failed_wiq: request.failed_wiq.clone(),
            failed_wiqid: request.failed_wiqid.clone(),
        },
        NewItem {
            name: request.name.clone(),
            payload: request.payload.clone(),
            nextrun: request.nextrun,
            priority: request.priority,
            files: request.files.clone(),
        },
    )
}

/// The items of a `pushworkitems` request: item fields win over request-level ones.
pub fn from_push_many(request: proto::PushWorkitemsRequest) -> (Targets, Vec<NewItem>) {
    let targets = Targets {
        success_wiq: request.success_wiq,
        success_wiqid: request.success_wiqid,
        failed_wiq: request.failed_wiq,
        failed_wiqid: request.failed_wiqid,
    };
    let items = request
        .items
        .into_iter()
        .map(|item| NewItem {
            name: item.name,
            payload: item.payload,
            nextrun: item.nextrun.or(request.nextrun),
            priority: if item.priority == 0 {
                request.priority
            } else {
                item.priority
            },
            files: item.files,
        })
        .collect();
    (targets, items)
}
