//! `getindexes` (admins): the collection's indexes as MongoDB's listIndexes shows them.

use super::{CommandContext, Outcome};
use crate::documents::{collections, output};
use crate::error::OpenCoreError;
use crate::proto::{GetIndexesRequest, GetIndexesResponse};

pub async fn run(ctx: CommandContext) -> Result<Outcome, OpenCoreError> {
    let request: GetIndexesRequest = ctx.request(true)?;
    let name = collections::resolve(request.collectionname.trim()).to_string();
    collections::validate(&name)?;
    if !ctx.user()?.is_admin() {
        return Err(OpenCoreError::AccessDenied);
    }
    let indexes = ctx.services.store.list_indexes(&name).await?;
    Ok(ctx.reply(&GetIndexesResponse {
        results: output::documents_to_json(&indexes),
    }))
}
