//! `pushworkitem` (the reference's internal `addworkitem`): one new item.

use super::{CommandContext, Outcome};
use crate::error::OpenCoreError;
use crate::proto::{PushWorkitemRequest, PushWorkitemResponse};
use crate::workitems::{convert, push};

pub async fn run(ctx: CommandContext) -> Result<Outcome, OpenCoreError> {
    let request: PushWorkitemRequest = ctx.request(true)?;
    let user = ctx.user()?.clone();
    let (targets, item) = push::from_push(&request);
    let stored = push::push(
        &ctx.services,
        &user,
        &request.wiq,
        &request.wiqid,
        &targets,
        vec![item],
        ctx.reply_limit(),
    )
    .await?;
    Ok(ctx.reply(&PushWorkitemResponse {
        workitem: stored.first().map(convert::workitem),
    }))
}
