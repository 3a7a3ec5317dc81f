//! `deleteworkitemqueue`: refused while items remain unless `purge`.

use super::{CommandContext, Outcome};
use crate::error::OpenCoreError;
use crate::proto::{DeleteWorkItemQueueRequest, DeleteWorkItemQueueResponse};
use crate::workitems::queue;

pub async fn run(ctx: CommandContext) -> Result<Outcome, OpenCoreError> {
    let request: DeleteWorkItemQueueRequest = ctx.request(true)?;
    let user = ctx.user()?.clone();
    queue::delete(
        &ctx.services,
        &user,
        &request.wiq,
        &request.wiqid,
        request.purge,
    )
    .await?;
    Ok(ctx.reply(&DeleteWorkItemQueueResponse {}))
}
