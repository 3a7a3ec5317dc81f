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
    let services = &ctx.services;
    if services
        .connections
        .has_child(connection.id, ChildKind::Queue, &name)
    {
        // Ours (a temporary name is one connection's), and deleted while its consumer
        // still holds it: gone before the reply, so a message sent after it is
        // unroutable (an RPC gets its timeout), never lost in a queue being deleted.
        services.queues.bus.delete_temporary(&name).await?;
    }
    connection.detach(ChildKind::Queue, name).await;
    Ok(ctx.reply(&UnRegisterQueueResponse {}))
}
