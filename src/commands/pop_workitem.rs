//! `popworkitem`: claims the next ready item (atomic, priority then FIFO); an empty
//! queue is a reply without a work item.

use super::{CommandContext, Outcome};
use crate::error::OpenCoreError;
use crate::proto::{PopWorkitemRequest, PopWorkitemResponse};
use crate::workitems::pop;

pub async fn run(ctx: CommandContext) -> Result<Outcome, OpenCoreError> {
    let request: PopWorkitemRequest = ctx.request(true)?;
    let user = ctx.user()?.clone();
    let claimed = pop::claim(&ctx.services, &user, &request.wiq, &request.wiqid).await?;
    let workitem = match claimed {
        Some(item) => Some(
            pop::reply_item(
                &ctx.services,
                &user,
                &item,
                request.includefiles,
                request.compressed,
                ctx.reply_limit(),
            )
            .await?,
        ),
        None => None,
    };
    Ok(ctx.reply(&PopWorkitemResponse { workitem }))
}
