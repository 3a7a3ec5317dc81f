//! `pushworkitems`: several new items in one queue, stored before the reply (the
//! reference does not wait for the write), at most `MAX_PUSH_ITEMS` per request.

use super::{CommandContext, Outcome};
use crate::error::OpenCoreError;
use crate::proto::{PushWorkitemsRequest, PushWorkitemsResponse};
use crate::workitems::{convert, push};

pub async fn run(ctx: CommandContext) -> Result<Outcome, OpenCoreError> {
    let request: PushWorkitemsRequest = ctx.request(true)?;
    let user = ctx.user()?.clone();
    let (wiq, wiqid) = (request.wiq.clone(), request.wiqid.clone());
    let (targets, items) = push::from_push_many(request);
    let stored = push::push(
        &ctx.services,
        &user,
        &wiq,
        &wiqid,
        &targets,
        items,
        ctx.reply_limit(),
    )
    .await?;
    Ok(ctx.reply(&PushWorkitemsResponse {
        workitems: stored.iter().map(convert::workitem).collect(),
    }))
}
