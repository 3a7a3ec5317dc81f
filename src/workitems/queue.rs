//! Work item queue documents (`mq`, `_type: "workitemqueue"`): lookup, add, update,
//! purge, delete, and the ready-item count the queue monitor needs.

use std::sync::Arc;

use bson::{doc, Bson, DateTime, Document};

use super::convert::{acl_from_proto, id_of, int};
use super::{check_text, root, state, ITEMS_COLLECTION, QUEUES_COLLECTION, QUEUE_TYPE};
use crate::acl::ace::{self, Ace};
use crate::acl::{rights, Right};
use crate::auth::builtin::{USERS_COLLECTION, WORKITEM_QUEUE_ADMINS_ROLE_ID};
use crate::auth::ResolvedUser;
use crate::documents::metadata::user_name;
use crate::documents::query::id_forms;
use crate::documents::{insert, remove, replace, Scope};
use crate::error::OpenCoreError;
use crate::proto;
use crate::services::Services;
use crate::store::{FindOptions, Store};

/// The caller's view of `mq`.
pub async fn scope(services: &Services, user: &Arc<ResolvedUser>) -> Result<Scope, OpenCoreError> {
    Scope::for_user(services.documents.clone(), user.clone(), QUEUES_COLLECTION).await
}

/// The queue with this id, else this name, without any ACL check (the server's own
/// lookups: chaining targets, the queue monitor, the timeout sweep).
pub async fn find_unchecked(
    store: &dyn Store,
    wiqid: &str,
    wiq: &str,
) -> Result<Option<Document>, OpenCoreError> {
    if !wiqid.is_empty() {
        for form in id_forms(wiqid) {
            if let Some(found) = store.find_by_id(QUEUES_COLLECTION, &form).await? {
                if found.get_str("_type") == Ok(QUEUE_TYPE) {
                    return Ok(Some(found));
                }
            }
        }
    }
    if wiq.is_empty() {
        return Ok(None);
    }
    let one = FindOptions {
        limit: 1,
        ..Default::default()
    };
    Ok(store
        .find(
            QUEUES_COLLECTION,
            &doc! {"_type": QUEUE_TYPE, "name": wiq},
            &one,
        )
        .await?
        .pop())
}

/// The queue with this id, else this name, if the caller may read it.
pub async fn find(
    scope: &Scope,
    wiqid: &str,
    wiq: &str,
) -> Result<Option<Document>, OpenCoreError> {
    Ok(find_unchecked(scope.store(), wiqid, wiq)
        .await?
        .filter(|queue| scope.can(queue, Right::Read)))
}

/// The queue an item command names, which the caller must be able to invoke.
pub async fn for_items(scope: &Scope, wiq: &str, wiqid: &str) -> Result<Document, OpenCoreError> {
    if wiq.is_empty() && wiqid.is_empty() {
        return Err(OpenCoreError::WorkitemQueueRequired);
    }
    let queue =
        find(scope, wiqid, wiq)
            .await?
            .ok_or_else(|| OpenCoreError::WorkitemQueueNotFound {
                wiq: wiq.to_string(),
                wiqid: wiqid.to_string(),
            })?;
    if !scope.can(&queue, Right::Invoke) {
        return Err(OpenCoreError::WorkitemQueueMissingInvoke(
            user_name(&scope.user).to_string(),
        ));
    }
    Ok(queue)
}

/// Items of the queue ready to pop now (`state: new`, `nextrun <= now`).
pub async fn count_ready(store: &dyn Store, wiqid: &str) -> Result<u64, OpenCoreError> {
    let filter = doc! {"wiqid": wiqid, "state": state::NEW, "nextrun": {"$lte": DateTime::now()}};
    Ok(store.count(ITEMS_COLLECTION, &filter).await?)
}

pub fn name_of(queue: &Document) -> String {
    queue.get_str("name").unwrap_or_default().to_string()
}

fn role_name(queue_name: &str) -> String {
    format!("{queue_name} users")
}

/// `<name> users`: reused when it exists, else created with the caller and `workitem
/// queue admins` as members. Returns its id.
async fn ensure_role(
    services: &Services,
    user: &Arc<ResolvedUser>,
    queue_name: &str,
) -> Result<String, OpenCoreError> {
    let name = role_name(queue_name);
    let one = FindOptions {
        limit: 1,
        ..Default::default()
    };
    if let Some(found) = services
        .store
        .find(
            USERS_COLLECTION,
            &doc! {"_type": "role", "name": &name},
            &one,
        )
        .await?
        .pop()
    {
        return Ok(id_of(&found));
    }
    let root = root(services).await?;
    let users = Scope::for_user(services.documents.clone(), root, USERS_COLLECTION).await?;
    let role = doc! {
        "_type": "role",
        "name": &name,
        "members": [
            {"_id": &user.id, "name": user_name(user)},
            {"_id": WORKITEM_QUEUE_ADMINS_ROLE_ID, "name": "workitem queue admins"},
        ],
        "_acl": [{"_id": &user.id, "name": user_name(user), "rights": rights::FULL_CONTROL}],
    };
    let stored = insert::insert(&users, vec![role]).await?;
    stored.first().map(id_of).ok_or(OpenCoreError::Internal)
}

fn checked_name(name: &str) -> Result<String, OpenCoreError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(OpenCoreError::WorkitemInvalid("Name is mandatory".into()));
    }
    check_text("name", name, super::MAX_NAME_LENGTH)?;
    Ok(name.to_string())
}

/// The fields a client sets on add and update (targets, queues to notify, delays).
fn copy_settings(
    target: &mut Document,
    from: &proto::WorkItemQueue,
    adding: bool,
) -> Result<(), OpenCoreError> {
    for (key, value) in [
        ("workflowid", &from.workflowid),
        ("robotqueue", &from.robotqueue),
        ("amqpqueue", &from.amqpqueue),
        ("projectid", &from.projectid),
        ("packageid", &from.packageid),
        ("success_wiq", &from.success_wiq),
        ("success_wiqid", &from.success_wiqid),
        ("failed_wiq", &from.failed_wiq),
        ("failed_wiqid", &from.failed_wiqid),
    ] {
        check_text(key, value, super::MAX_NAME_LENGTH)?;
        if value.is_empty() {
            // An empty target clears it (proto cannot send null).
            target.remove(key);
        } else {
            target.insert(key, value.as_str());
        }
    }
    // Proto cannot tell 0 from absent: on update only non-zero numbers change.
    if adding || from.maxretries != 0 {
        let retries = if from.maxretries < 1 {
            super::DEFAULT_MAX_RETRIES
        } else {
            from.maxretries
        };
        target.insert("maxretries", retries);
    }
    if adding || from.retrydelay != 0 {
        target.insert("retrydelay", from.retrydelay.max(0));
    }
    if adding || from.initialdelay != 0 {
        target.insert("initialdelay", from.initialdelay.max(0));
    }
    Ok(())
}

/// `addworkitemqueue`.
pub async fn add(
    services: &Services,
    user: &Arc<ResolvedUser>,
    request: &proto::AddWorkItemQueueRequest,
) -> Result<Document, OpenCoreError> {
    let wanted = request
        .workitemqueue
        .as_ref()
        .ok_or_else(|| OpenCoreError::WorkitemInvalid("workitemqueue is mandatory".into()))?;
    let name = checked_name(&wanted.name)?;
    // One add per name at a time, so two racing adds cannot both pass the check.
    let _serialised = services
        .documents
        .key_locks
        .lock(format!("workitemqueue\u{0}{name}"))
        .await;
    if find_unchecked(services.store.as_ref(), "", &name)
        .await?
        .is_some()
    {
        return Err(OpenCoreError::WorkitemQueueExists(name));
    }
    let mut acl: Vec<Ace> = acl_from_proto(&wanted.acl);
    let mut queue = doc! {"_type": QUEUE_TYPE, "name": &name};
    if request.skiprole {
        ace::ensure(
            &mut acl,
            WORKITEM_QUEUE_ADMINS_ROLE_ID,
            "workitem queue admins",
            rights::FULL_CONTROL,
        );
    } else {
        // Kept whatever `_acl` the client sent (the reference loses it when the
        // protobuf `_acl` is an empty array).
        let role = ensure_role(services, user, &name).await?;
        ace::ensure(&mut acl, &role, &role_name(&name), rights::FULL_CONTROL);
        queue.insert("usersrole", role);
    }
    copy_settings(&mut queue, wanted, true)?;
    queue.insert("_acl", ace::to_bson(&acl));
    let scope = scope(services, user).await?;
    let mut stored = insert::insert(&scope, vec![queue]).await?;
    tracing::info!(user = %user.name, queue = %name, "work item queue added");
    stored.pop().ok_or(OpenCoreError::Internal)
}

/// Finds the queue an update or delete names (by `_id`, else by name), readable by the caller.
async fn locate(scope: &Scope, wiqid: &str, wiq: &str) -> Result<Document, OpenCoreError> {
    if !wiqid.is_empty() {
        return find(scope, wiqid, "")
            .await?
            .ok_or_else(|| OpenCoreError::WorkitemQueueIdNotFound(wiqid.to_string()));
    }
    if wiq.is_empty() {
        return Err(OpenCoreError::WorkitemQueueRequired);
    }
    find(scope, "", wiq)
        .await?
        .ok_or_else(|| OpenCoreError::WorkitemQueueNameNotFound(wiq.to_string()))
}

/// `updateworkitemqueue`.
pub async fn update(
    services: &Services,
    user: &Arc<ResolvedUser>,
    request: &proto::UpdateWorkItemQueueRequest,
) -> Result<Document, OpenCoreError> {
    let wanted = request
        .workitemqueue
        .as_ref()
        .ok_or_else(|| OpenCoreError::WorkitemInvalid("workitemqueue is mandatory".into()))?;
    let scope = scope(services, user).await?;
    let original = locate(&scope, &wanted.id, &wanted.name).await?;
    let old_name = name_of(&original);
    let mut item = original.clone();
    if !wanted.name.is_empty() && wanted.name.trim() != old_name {
        let name = checked_name(&wanted.name)?;
        if find_unchecked(services.store.as_ref(), "", &name)
            .await?
            .is_some()
        {
            return Err(OpenCoreError::WorkitemQueueExists(name));
        }
        item.insert("name", name);
    }
    copy_settings(&mut item, wanted, false)?;
    if !wanted.acl.is_empty() {
        let mut acl = acl_from_proto(&wanted.acl);
        // The queue's users role keeps its entry unless roles are being skipped.
        if let (Ok(role), false) = (original.get_str("usersrole"), request.skiprole) {
            if !role.is_empty() {
                ace::ensure(&mut acl, role, &role_name(&old_name), rights::FULL_CONTROL);
            }
        }
        item.insert("_acl", ace::to_bson(&acl));
    }
    let updated = replace::update_one(&scope, item, Some(original)).await?;
    if request.purge {
        purge(services, &updated).await?;
    }
    Ok(updated)
}

/// Deletes every item of the queue and their files (the caller's rights are checked
/// by the command that purges).
pub async fn purge(services: &Services, queue: &Document) -> Result<(), OpenCoreError> {
    let id = id_of(queue);
    let name = name_of(queue);
    let store = services.store.as_ref();
    let deleted = store
        .delete(ITEMS_COLLECTION, &doc! {"wiqid": &id}, false)
        .await?;
    if store.count(ITEMS_COLLECTION, &doc! {"wiqid": &id}).await? > 0 {
        return Err(OpenCoreError::WorkitemQueuePurgeFailed(name));
    }
    super::files::delete_queue_files(services, &id).await?;
    tracing::info!(queue = %name, items = deleted, "work item queue purged");
    Ok(())
}

/// `deleteworkitemqueue`.
pub async fn delete(
    services: &Services,
    user: &Arc<ResolvedUser>,
    wiq: &str,
    wiqid: &str,
    purge_items: bool,
) -> Result<(), OpenCoreError> {
    let scope = scope(services, user).await?;
    let queue = locate(&scope, wiqid, wiq).await?;
    let name = name_of(&queue);
    if !scope.can(&queue, Right::Delete) {
        return Err(OpenCoreError::AccessDeniedBecause(format!(
            "no authorization to delete work item queue {name}"
        )));
    }
    let id = id_of(&queue);
    let store = services.store.as_ref();
    if !purge_items && store.count(ITEMS_COLLECTION, &doc! {"wiqid": &id}).await? > 0 {
        return Err(OpenCoreError::WorkitemQueueNotEmpty(name));
    }
    purge(services, &queue).await?;
    let stored_id = queue.get("_id").cloned().unwrap_or(Bson::Null);
    store
        .delete(QUEUES_COLLECTION, &doc! {"_id": stored_id}, true)
        .await?;
    // Only the role this queue made (its name says so) goes with it.
    if let Ok(role) = queue.get_str("usersrole") {
        if !role.is_empty() {
            let root = root(services).await?;
            let users = Scope::for_user(services.documents.clone(), root, USERS_COLLECTION).await?;
            let filter =
                doc! {"_id": {"$in": id_forms(role)}, "_type": "role", "name": role_name(&name)};
            remove::delete(&users, filter, true).await?;
        }
    }
    tracing::info!(user = %user.name, queue = %name, "work item queue deleted");
    Ok(())
}

/// A queue's number setting (0 when absent).
pub fn setting(queue: &Document, key: &str) -> i32 {
    int(queue, key).unwrap_or(0)
}
