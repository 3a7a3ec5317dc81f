//! `popworkitem`: one atomic `find_one_and_update` claims the first ready item of the
//! queue (`state: new`, `nextrun <= now`, invokable by the caller) in `pop_sort`
//! order, so two poppers (on any connection or node) never get the same item, and a
//! pop walks the pop index from its start rather than scanning the queue.

use std::sync::Arc;

use bson::{doc, DateTime, Document};

use super::{convert, files, pop_sort, queue, state, ITEMS_COLLECTION};
use crate::acl::{Principals, Right};
use crate::auth::ResolvedUser;
use crate::documents::metadata::user_name;
use crate::documents::{query, Scope};
use crate::error::OpenCoreError;
use crate::proto;
use crate::services::Services;
use crate::store::FindAndModifyOptions;

/// What a pop reply may spend on inlined file content: a gRPC client takes at most
/// 4 MiB per envelope, and the item itself needs room too.
pub const INLINE_BUDGET: usize = 3 * 1024 * 1024;

/// The filter of a pop: the queue's ready items the caller may invoke.
pub fn ready_filter(wiqid: &str, now: DateTime, acl: Option<Document>) -> Document {
    query::and(
        [doc! {"wiqid": wiqid, "state": state::NEW, "nextrun": {"$lte": now}}]
            .into_iter()
            .chain(acl),
    )
}

/// Claims the next item; `None` when nothing is ready.
pub async fn claim(
    services: &Services,
    user: &Arc<ResolvedUser>,
    wiq: &str,
    wiqid: &str,
) -> Result<Option<Document>, OpenCoreError> {
    let scope = queue::scope(services, user).await?;
    let queue = queue::for_items(&scope, wiq, wiqid).await?;
    let items = Scope::for_user(services.documents.clone(), user.clone(), ITEMS_COLLECTION).await?;
    let now = DateTime::now();
    let filter = ready_filter(&convert::id_of(&queue), now, items.filter(Right::Invoke));
    let update = doc! {
        "$set": {
            "state": state::PROCESSING,
            "userid": &user.id,
            "username": user_name(user),
            "lastrun": now,
            "_modified": now,
            "_modifiedby": user_name(user),
            "_modifiedbyid": &user.id,
        },
        "$unset": {"nextrun": ""},
    };
    let options = FindAndModifyOptions {
        sort: Some(pop_sort()),
        upsert: false,
        return_new: true,
        projection: None,
    };
    Ok(services
        .store
        .find_one_and_update(ITEMS_COLLECTION, &filter, &update, &options)
        .await?)
}

/// The reply's work item: files the caller may read, content inlined when asked.
pub async fn reply_item(
    services: &Services,
    user: &ResolvedUser,
    item: &Document,
    includefiles: bool,
    compressed: bool,
    reply_limit: usize,
) -> Result<proto::Workitem, OpenCoreError> {
    let mut workitem = convert::workitem(item);
    let entries = convert::file_entries(item);
    if entries.is_empty() {
        return Ok(workitem);
    }
    let budget = INLINE_BUDGET
        .min(reply_limit.saturating_sub(64 * 1024))
        .saturating_sub(workitem.payload.len());
    workitem.files = files::for_reply(
        services,
        &Principals::of(user),
        &entries,
        includefiles,
        compressed,
        budget,
    )
    .await?;
    Ok(workitem)
}

/// Hands a claimed item back (`new`, ready now, nobody's) when its reply cannot be
/// delivered, so it does not sit in `processing` until a timeout.
pub async fn release(services: &Services, item: &Document) -> Result<(), OpenCoreError> {
    let id = item.get("_id").cloned().unwrap_or(bson::Bson::Null);
    let filter = doc! {"_id": id, "state": state::PROCESSING, "userid": item.get("userid").cloned().unwrap_or(bson::Bson::Null)};
    let update = doc! {
        "$set": {"state": state::NEW, "nextrun": DateTime::now()},
        "$unset": {"userid": "", "username": ""},
    };
    services
        .store
        .update(ITEMS_COLLECTION, &filter, &update, Default::default())
        .await?;
    Ok(())
}
