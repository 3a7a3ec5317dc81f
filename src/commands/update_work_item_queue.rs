//! `updateworkitemqueue`: settings, name, ACL; `purge` deletes every item and file.

use super::{CommandContext, Outcome};
use crate::error::OpenCoreError;
use crate::proto::{UpdateWorkItemQueueRequest, UpdateWorkItemQueueResponse};
use crate::workitems::{convert, queue};

pub async fn run(ctx: CommandContext) -> Result<Outcome, OpenCoreError> {
    let request: UpdateWorkItemQueueRequest = ctx.request(true)?;
    let user = ctx.user()?.clone();
    let stored = queue::update(&ctx.services, &user, &request).await?;
    Ok(ctx.reply(&UpdateWorkItemQueueResponse {
        workitemqueue: Some(convert::queue(&stored)),
    }))
}
