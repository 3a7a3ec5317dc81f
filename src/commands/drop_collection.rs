//! `dropcollection` (admins): drops a collection, its `_hist` collection, and for
//! `X.files` also `X.chunks`. Reserved names are refused (with the reference's text).

use super::{CommandContext, Outcome};
use crate::documents::collections;
use crate::error::OpenCoreError;
use crate::proto::{DropCollectionRequest, DropCollectionResponse};

pub async fn run(ctx: CommandContext) -> Result<Outcome, OpenCoreError> {
    let request: DropCollectionRequest = ctx.request(true)?;
    let name =
        collections::for_admin_command(&request.collectionname, ctx.user()?.is_admin(), |name| {
            format!("droppping collection {name}")
        })?;
    let mut doomed = vec![name.clone()];
    if !collections::is_history(&name) {
        doomed.push(collections::history_of(&name));
    }
    if let Some(prefix) = name.strip_suffix(".files") {
        doomed.push(format!("{prefix}.chunks"));
    }
    let store = ctx.services.store.as_ref();
    for collection in &doomed {
        store.drop_collection(collection).await?;
        ctx.services.documents.catalog.forget(collection);
    }
    Ok(ctx.reply(&DropCollectionResponse {}))
}
