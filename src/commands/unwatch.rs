//! `unwatch`: stops one of this connection's watches. An unknown id is not an error
//! (the watch may have ended already); other connections' watches are out of reach.

use super::{CommandContext, Outcome};
use crate::connections::ChildKind;
use crate::error::OpenCoreError;
use crate::proto::{UnWatchRequest, UnWatchResponse};

pub async fn run(ctx: CommandContext) -> Result<Outcome, OpenCoreError> {
    let request: UnWatchRequest = ctx.request(true)?;
    let connection = ctx.connection()?;
    connection.detach(ChildKind::Watch, request.id).await;
    Ok(ctx.reply(&UnWatchResponse {}))
}
