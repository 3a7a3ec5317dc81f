//! `deleteone`: deletes the document with this id if the caller may delete it, after
//! writing its history record. `affectedrows` is what was really deleted (0 when the
//! document does not exist or is not the caller's to delete; the reference said 1).

use super::{CommandContext, Outcome};
use crate::documents::{query, remove};
use crate::error::OpenCoreError;
use crate::proto::{DeleteOneRequest, DeleteOneResponse};

pub async fn run(ctx: CommandContext) -> Result<Outcome, OpenCoreError> {
    let request: DeleteOneRequest = ctx.request(true)?;
    let scope = ctx.scope(&request.collectionname).await?;
    let id = request.id.trim();
    if id.is_empty() {
        return Err(OpenCoreError::IdRequired);
    }
    let deleted = remove::delete(&scope, query::id_filter(id), true).await?;
    if deleted.count == 0 && deleted.protected > 0 {
        return Err(OpenCoreError::AccessDeniedBecause(format!(
            "{id} is a built-in entity and cannot be deleted"
        )));
    }
    Ok(ctx.reply(&DeleteOneResponse {
        affectedrows: deleted.count.min(i32::MAX as u64) as i32,
    }))
}
