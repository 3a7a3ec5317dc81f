//! `updateworkitem`: state changes (with retries), error details, payload, targets and
//! files; when an item reaches `successful` or `failed` and a target queue is set (on
//! the item, else on its queue), a copy is pushed there with copies of its files.
//!
//! `retry`: while `retries + 1 < maxretries` (or with `ignoremaxretries`) the item
//! goes back to `new` with `retries + 1` and `nextrun = now + retrydelay` (or the
//! given nextrun); otherwise it is `failed`. A business error never retries unless
//! `ignoremaxretries`.

use std::sync::Arc;

use bson::{doc, Bson, DateTime, Document};

use super::convert::{file_entries, id_of, int, timestamp_to_date};
use super::push::parse_payload;
use super::{check_text, files, queue, state, ITEMS_COLLECTION};
use crate::acl::{has_right, AclLocation, Principals, Right};
use crate::auth::ResolvedUser;
use crate::documents::metadata::{self, user_name};
use crate::documents::Scope;
use crate::error::OpenCoreError;
use crate::proto;
use crate::services::Services;

pub struct Update {
    pub workitem: proto::Workitem,
    pub ignoremaxretries: bool,
    pub files: Vec<proto::WorkitemFile>,
}

/// The next state, or the reference's error for one that is not allowed.
fn next_state(
    requested: &str,
    current: &str,
    errortype: &str,
    ignore_max: bool,
    retries: i32,
    maxretries: i32,
) -> Result<(String, bool), OpenCoreError> {
    let requested = requested.to_lowercase();
    let allowed = matches!(
        requested.as_str(),
        state::FAILED | state::SUCCESSFUL | state::RETRY | state::PROCESSING
    ) || (requested == state::NEW && current == state::NEW);
    if !allowed {
        return Err(OpenCoreError::WorkitemIllegalState(requested));
    }
    if requested != state::RETRY {
        return Ok((requested, false));
    }
    if errortype == "business" && !ignore_max {
        return Ok((state::FAILED.to_string(), false));
    }
    if ignore_max || retries.saturating_add(1) < maxretries {
        return Ok((state::NEW.to_string(), true));
    }
    Ok((state::FAILED.to_string(), false))
}

/// Applies the update; returns the item as saved.
pub async fn update(
    services: &Services,
    user: &Arc<ResolvedUser>,
    request: Update,
) -> Result<Document, OpenCoreError> {
    let wanted = &request.workitem;
    if wanted.id.is_empty() {
        return Err(OpenCoreError::WorkitemIdRequired);
    }
    let items = Scope::for_user(services.documents.clone(), user.clone(), ITEMS_COLLECTION).await?;
    let original = items
        .readable_by_id(&wanted.id)
        .await?
        .ok_or_else(|| OpenCoreError::WorkitemNotFound(wanted.id.clone()))?;
    let wiqid = original.get_str("wiqid").unwrap_or_default().to_string();
    let wiq = original.get_str("wiq").unwrap_or_default().to_string();
    let queue = queue::find_unchecked(services.store.as_ref(), &wiqid, &wiq)
        .await?
        .ok_or(OpenCoreError::WorkitemQueueNotFound { wiq, wiqid })?;
    // The item's rights are its queue's, as they are now.
    let principals = Principals::of(user);
    if !has_right(&principals, &queue, Right::Invoke, AclLocation::Root) {
        return Err(OpenCoreError::WorkitemMissingInvoke(
            user_name(user).to_string(),
        ));
    }
    let now = DateTime::now();
    let mut next = original.clone();
    next.insert(
        "_acl",
        queue
            .get("_acl")
            .cloned()
            .unwrap_or(Bson::Array(Vec::new())),
    );
    if !wanted.name.trim().is_empty() {
        check_text("name", wanted.name.trim(), super::MAX_NAME_LENGTH)?;
        next.insert("name", wanted.name.trim());
    }
    if !wanted.payload.trim().is_empty() {
        next.insert("payload", parse_payload(&wanted.payload)?);
    }
    for (key, value) in [
        ("errormessage", &wanted.errormessage),
        ("errorsource", &wanted.errorsource),
        ("errortype", &wanted.errortype),
    ] {
        if !value.is_empty() {
            next.insert(key, value.as_str());
        }
    }
    if !wanted.errormessage.is_empty() && wanted.errortype.is_empty() {
        next.insert("errortype", "application");
    }
    if wanted.priority != 0 {
        next.insert("priority", wanted.priority);
    }
    for (key, value) in [
        ("success_wiq", &wanted.success_wiq),
        ("success_wiqid", &wanted.success_wiqid),
        ("failed_wiq", &wanted.failed_wiq),
        ("failed_wiqid", &wanted.failed_wiqid),
    ] {
        check_text(key, value, super::MAX_NAME_LENGTH)?;
        if value.is_empty() {
            next.remove(key);
        } else {
            next.insert(key, value.as_str());
        }
    }
    let current = original.get_str("state").unwrap_or(state::NEW).to_string();
    let mut new_state = current.clone();
    if !wanted.state.is_empty() {
        let errortype = next.get_str("errortype").unwrap_or_default().to_string();
        let retries = int(&original, "retries").unwrap_or(0);
        let maxretries = queue::setting(&queue, "maxretries");
        let (decided, retrying) = next_state(
            &wanted.state,
            &current,
            &errortype,
            request.ignoremaxretries,
            retries,
            maxretries,
        )?;
        if retrying {
            next.insert("retries", retries.saturating_add(1));
            next.remove("userid");
            next.remove("username");
            let nextrun = match &wanted.nextrun {
                Some(ts) => timestamp_to_date("nextrun", ts)?,
                None => {
                    let delay = i64::from(queue::setting(&queue, "retrydelay").max(0));
                    DateTime::from_millis(now.timestamp_millis().saturating_add(delay * 1000))
                }
            };
            next.insert("nextrun", nextrun);
        } else if decided == state::NEW {
            if let Some(ts) = &wanted.nextrun {
                next.insert("nextrun", timestamp_to_date("nextrun", ts)?);
            }
        }
        if decided == state::PROCESSING && current != state::PROCESSING {
            next.insert("lastrun", now);
        }
        new_state = decided;
    }
    next.insert("state", new_state.as_str());
    if new_state != state::NEW {
        next.remove("nextrun");
    } else if !next.contains_key("nextrun") {
        next.insert("nextrun", now);
    }
    let item_id = id_of(&original);
    let entries = apply_files(
        services,
        user,
        &principals,
        &queue,
        &item_id,
        &original,
        &request,
    )
    .await?;
    next.insert(
        "files",
        entries.into_iter().map(Bson::Document).collect::<Vec<_>>(),
    );
    metadata::stamp_modified(&mut next, user, now);
    let stored_id = original.get("_id").cloned().unwrap_or(Bson::Null);
    services
        .store
        .replace_one(
            ITEMS_COLLECTION,
            &doc! {"_id": stored_id},
            next.clone(),
            false,
        )
        .await?;
    if new_state != current && (new_state == state::SUCCESSFUL || new_state == state::FAILED) {
        chain(services, user, &queue, &next, &new_state).await?;
    }
    Ok(next)
}

/// The item's file entries after the request's files: bytes replace (or add) the
/// same-named entry, an `_id` references a file, a name alone removes its entry.
async fn apply_files(
    services: &Services,
    user: &ResolvedUser,
    principals: &Principals,
    queue: &Document,
    item_id: &str,
    original: &Document,
    request: &Update,
) -> Result<Vec<Document>, OpenCoreError> {
    let mut entries = file_entries(original);
    let requested = request.workitem.files.iter().chain(&request.files);
    for file in requested {
        if file.filename.is_empty() && file.id.is_empty() && file.file.is_empty() {
            continue;
        }
        // An entry the item already has (a popped item sent back, possibly with the
        // content the pop inlined): unchanged, nothing to store again.
        if !file.id.is_empty()
            && entries
                .iter()
                .any(|e| e.get_str("_id") == Ok(file.id.as_str()))
        {
            continue;
        }
        let position = entries.iter().position(|e| {
            !file.filename.is_empty()
                && (e.get_str("name") == Ok(file.filename.as_str())
                    || e.get_str("filename") == Ok(file.filename.as_str()))
        });
        let replacement = files::attach(services, user, principals, queue, item_id, file).await?;
        if let Some(at) = position {
            let old = entries.remove(at);
            if let Ok(old_id) = old.get_str("_id") {
                files::delete_if_owned(services, old_id, item_id).await?;
            }
            if let Some(entry) = replacement {
                entries.insert(at, entry);
            }
        } else if let Some(entry) = replacement {
            entries.push(entry);
        }
    }
    Ok(entries)
}

/// Pushes a copy of a finished item (`finished`: `successful` or `failed`) to its
/// success or failed target queue (on the item, else on `queue`); nothing when none is
/// set. Public for the server's own state changes (the processing-timeout sweep).
pub async fn chain(
    services: &Services,
    user: &ResolvedUser,
    queue: &Document,
    item: &Document,
    finished: &str,
) -> Result<(), OpenCoreError> {
    let (id_key, name_key) = if finished == state::SUCCESSFUL {
        ("success_wiqid", "success_wiq")
    } else {
        ("failed_wiqid", "failed_wiq")
    };
    let pick = |key: &str| {
        item.get_str(key)
            .ok()
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let (wiqid, wiq) = match (pick(id_key), pick(name_key)) {
        (None, None) => (
            queue.get_str(id_key).unwrap_or_default().to_string(),
            queue.get_str(name_key).unwrap_or_default().to_string(),
        ),
        (id, name) => (id.unwrap_or_default(), name.unwrap_or_default()),
    };
    if wiqid.is_empty() && wiq.is_empty() {
        return Ok(());
    }
    let Some(target) = queue::find_unchecked(services.store.as_ref(), &wiqid, &wiq).await? else {
        tracing::warn!(item = %id_of(item), %wiq, %wiqid, "the target queue of a finished work item does not exist; no copy pushed");
        return Ok(());
    };
    let now = DateTime::now();
    let new_id = metadata::new_id();
    let mut copy = item.clone();
    for key in [
        "errormessage",
        "errorsource",
        "errortype",
        "lastrun",
        "userid",
        "username",
        "success_wiq",
        "success_wiqid",
        "failed_wiq",
        "failed_wiqid",
    ] {
        copy.remove(key);
    }
    let delay = i64::from(queue::setting(&target, "initialdelay").max(0));
    copy.insert("_id", new_id.as_str());
    copy.insert("state", state::NEW);
    copy.insert("retries", 0);
    copy.insert(
        "nextrun",
        DateTime::from_millis(now.timestamp_millis().saturating_add(delay * 1000)),
    );
    copy.insert("wiq", queue::name_of(&target));
    copy.insert("wiqid", id_of(&target));
    copy.insert(
        "_acl",
        target
            .get("_acl")
            .cloned()
            .unwrap_or(Bson::Array(Vec::new())),
    );
    metadata::stamp_created(&mut copy, user, now);
    metadata::stamp_modified(&mut copy, user, now);
    copy.insert("_version", 0);
    let copied = files::copy_to(services, user, &file_entries(item), &target, &new_id).await?;
    copy.insert(
        "files",
        copied.into_iter().map(Bson::Document).collect::<Vec<_>>(),
    );
    if let Err(err) = services
        .store
        .insert_many(ITEMS_COLLECTION, vec![copy])
        .await
    {
        let _ = files::delete_item_files(services, &new_id).await;
        return Err(err.into());
    }
    Ok(())
}

#[cfg(test)]
pub(super) fn decide(
    requested: &str,
    current: &str,
    errortype: &str,
    ignore_max: bool,
    retries: i32,
    maxretries: i32,
) -> Result<(String, bool), OpenCoreError> {
    next_state(
        requested, current, errortype, ignore_max, retries, maxretries,
    )
}
