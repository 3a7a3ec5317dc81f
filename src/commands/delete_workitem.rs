//! `deleteworkitem`: one item and its stored files (invoke and delete rights).

use super::{CommandContext, Outcome};
use crate::error::OpenCoreError;
use crate::proto::{DeleteWorkitemRequest, DeleteWorkitemResponse};
use crate::workitems::remove;

pub async fn run(ctx: CommandContext) -> Result<Outcome, OpenCoreError> {
    let request: DeleteWorkitemRequest = ctx.request(true)?;
    let user = ctx.user()?.clone();
    remove::delete(&ctx.services, &user, &request.id).await?;
    Ok(ctx.reply(&DeleteWorkitemResponse {}))
}
