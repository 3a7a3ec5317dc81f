//! `dropindex` (admins): drops an index by name.

use super::{CommandContext, Outcome};
use crate::documents::collections;
use crate::error::OpenCoreError;
use crate::proto::{DropIndexRequest, DropIndexResponse};

pub async fn run(ctx: CommandContext) -> Result<Outcome, OpenCoreError> {
    let request: DropIndexRequest = ctx.request(true)?;
    let name = collections::resolve(request.collectionname.trim()).to_string();
    collections::validate(&name)?;
    if !ctx.user()?.is_admin() {
        return Err(OpenCoreError::AccessDenied);
    }
    if request.name.trim().is_empty() {
        return Err(OpenCoreError::BadRequest("name is mandatory".into()));
    }
    ctx.services
        .store
        .drop_index(&name, request.name.trim())
        .await?;
    Ok(ctx.reply(&DropIndexResponse {}))
}
