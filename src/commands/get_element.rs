//! `getelement`: a diagnostic echo. The Rust client sends it without data as its
//! guest handshake and needs the answer to be named `getelement`.

use super::{CommandContext, Outcome};
use crate::error::OpenCoreError;
use crate::proto::{GetElementRequest, GetElementResponse};

pub fn run(ctx: CommandContext) -> Result<Outcome, OpenCoreError> {
    let request: GetElementRequest = ctx.request(false)?;
    Ok(ctx.reply(&GetElementResponse {
        xpath: format!("Did you say {} ?", request.xpath),
    }))
}
