//! `insertorupdateone`: insert, or full update of the one readable document with the
//! same values in the `uniqeness` fields (see `documents::upsert`).

use super::insert_one::parse_item;
use super::{CommandContext, Outcome};
use crate::documents::users::redact;
use crate::documents::{output, upsert};
use crate::error::OpenCoreError;
use crate::proto::{InsertOrUpdateOneRequest, InsertOrUpdateOneResponse};

pub async fn run(ctx: CommandContext) -> Result<Outcome, OpenCoreError> {
    let request: InsertOrUpdateOneRequest = ctx.request(true)?;
    let scope = ctx.scope(&request.collectionname).await?;
    let item = parse_item(&request.item)?;
    let mut document = upsert::insert_or_update(&scope, &request.uniqeness, item).await?;
    redact::redact(&scope.collection, &mut document);
    Ok(ctx.reply(&InsertOrUpdateOneResponse {
        result: output::document_to_json(&document),
    }))
}
