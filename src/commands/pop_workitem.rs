//! `popworkitem`: claims the next ready item (atomic, priority then FIFO); an empty
//! queue is a reply without a work item.

use prost::Message;

use super::{CommandContext, Outcome};
use crate::error::OpenCoreError;
use crate::proto::{PopWorkitemRequest, PopWorkitemResponse};
use crate::workitems::pop;

pub async fn run(ctx: CommandContext) -> Result<Outcome, OpenCoreError> {
    let request: PopWorkitemRequest = ctx.request(true)?;
    let user = ctx.user()?.clone();
    let claimed = pop::claim(&ctx.services, &user, &request.wiq, &request.wiqid).await?;
    let Some(item) = claimed else {
        return Ok(ctx.reply(&PopWorkitemResponse { workitem: None }));
    };
    let limit = ctx.reply_limit();
    let workitem = pop::reply_item(
        &ctx.services,
        &user,
        &item,
        request.includefiles,
        request.compressed,
        limit,
    )
    .await;
    // A reply that cannot be delivered must not leave the item claimed by nobody.
    let size = workitem
        .as_ref()
        .map(|w| w.encoded_len() + 1024)
        .unwrap_or(0);
    if workitem.is_err() || size > limit {
        if let Err(err) = pop::release(&ctx.services, &item).await {
            tracing::warn!(%err, "could not hand back a popped work item");
        }
    }
    let workitem = Some(workitem?);
    if size > limit {
        return Err(OpenCoreError::ReplyTooLarge { size, limit });
    }
    Ok(ctx.reply(&PopWorkitemResponse { workitem }))
}
