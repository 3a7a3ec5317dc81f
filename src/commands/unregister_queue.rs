//! `unregisterqueue`: stops this connection's consumer of a queue (a temporary queue
//! goes with it; a named queue keeps its messages). Unknown names are not an error.

use super::{CommandContext, Outcome};
use crate::connections::ChildKind;
use crate::error::OpenCoreError;
use crate::proto::{UnRegisterQueueRequest, UnRegisterQueueResponse};

pub async fn run(ctx: CommandContext) -> Result<Outcome, OpenCoreError> {
    let request: UnRegisterQueueRequest = ctx.request(false)?;
    let connection = ctx.connection()?;
    let name = request.queuename.trim().to_lowercase();
    connection.detach(ChildKind::Queue, name).await;
    Ok(ctx.reply(&UnRegisterQueueResponse {}))
}
