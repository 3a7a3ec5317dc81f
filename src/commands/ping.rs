//! `ping` from a client: answered with `pong` (with data, as every reply).

use super::{CommandContext, Outcome};
use crate::error::OpenCoreError;
use crate::proto::PingResponse;

pub fn run(ctx: CommandContext) -> Result<Outcome, OpenCoreError> {
    Ok(ctx.reply(&PingResponse {}))
}
