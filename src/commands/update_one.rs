//! `updateone`: replaces a whole document (by `item._id`), keeping metadata, bumping
//! `_version` and writing history; returns the new document.

use super::insert_one::parse_item;
use super::{CommandContext, Outcome};
use crate::documents::users::redact;
use crate::documents::{output, replace};
use crate::error::OpenCoreError;
use crate::proto::{UpdateOneRequest, UpdateOneResponse};

pub async fn run(ctx: CommandContext) -> Result<Outcome, OpenCoreError> {
    let request: UpdateOneRequest = ctx.request(true)?;
    let scope = ctx.scope(&request.collectionname).await?;
    let item = parse_item(&request.item).map_err(|err| match err {
        OpenCoreError::NullItem => OpenCoreError::UpdateWithoutId,
        other => other,
    })?;
    let mut document = replace::update_one(&scope, item, None).await?;
    redact::redact(&scope.collection, &mut document);
    Ok(ctx.reply(&UpdateOneResponse {
        result: output::document_to_json(&document),
    }))
}
