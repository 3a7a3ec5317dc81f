//! `updateworkitem`: state, retries, errors, payload and files of one item; finished
//! items are copied to their success/failed target queue.

use super::{CommandContext, Outcome};
use crate::error::OpenCoreError;
use crate::proto::{UpdateWorkitemRequest, UpdateWorkitemResponse};
use crate::workitems::{convert, update};

pub async fn run(ctx: CommandContext) -> Result<Outcome, OpenCoreError> {
    let request: UpdateWorkitemRequest = ctx.request(true)?;
    let user = ctx.user()?.clone();
    let workitem = request.workitem.ok_or(OpenCoreError::WorkitemIdRequired)?;
    let saved = update::update(
        &ctx.services,
        &user,
        update::Update {
            workitem,
            ignoremaxretries: request.ignoremaxretries,
            files: request.files,
        },
    )
    .await?;
    Ok(ctx.reply(&UpdateWorkitemResponse {
        workitem: Some(convert::workitem(&saved)),
    }))
}
