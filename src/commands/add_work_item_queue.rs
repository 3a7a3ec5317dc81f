//! `addworkitemqueue`: a new work item queue (see `workitems::queue::add`).

use super::{CommandContext, Outcome};
use crate::error::OpenCoreError;
use crate::proto::{AddWorkItemQueueRequest, AddWorkItemQueueResponse};
use crate::workitems::{convert, queue};

pub async fn run(ctx: CommandContext) -> Result<Outcome, OpenCoreError> {
    let request: AddWorkItemQueueRequest = ctx.request(true)?;
    let user = ctx.user()?.clone();
    let stored = queue::add(&ctx.services, &user, &request).await?;
    Ok(ctx.reply(&AddWorkItemQueueResponse {
        workitemqueue: Some(convert::queue(&stored)),
    }))
}
