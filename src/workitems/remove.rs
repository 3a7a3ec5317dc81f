//! `deleteworkitem`: needs invoke and delete on the item; its stored files go with it.

use std::sync::Arc;

use bson::{doc, Bson};

use super::{convert::id_of, files, ITEMS_COLLECTION};
use crate::acl::{has_right, AclLocation, Principals, Right};
use crate::auth::ResolvedUser;
use crate::documents::query::id_forms;
use crate::error::OpenCoreError;
use crate::services::Services;

pub async fn delete(
    services: &Services,
    user: &Arc<ResolvedUser>,
    id: &str,
) -> Result<(), OpenCoreError> {
    if id.is_empty() {
        return Err(OpenCoreError::WorkitemIdRequired);
    }
    let principals = Principals::of(user);
    let mut found = None;
    for form in id_forms(id) {
        if let Some(item) = services.store.find_by_id(ITEMS_COLLECTION, &form).await? {
            found = Some(item);
            break;
        }
    }
    let item = found
        .filter(|item| {
            has_right(&principals, item, Right::Invoke, AclLocation::Root)
                && has_right(&principals, item, Right::Delete, AclLocation::Root)
        })
        .ok_or(OpenCoreError::WorkitemDeleteDenied)?;
    files::delete_item_files(services, &id_of(&item)).await?;
    let stored_id = item.get("_id").cloned().unwrap_or(Bson::Null);
    services
        .store
        .delete(ITEMS_COLLECTION, &doc! {"_id": stored_id}, true)
        .await?;
    Ok(())
}
