//! `insertmany`: like `insertone` for a JSON array, in one awaited, all-or-none write
//! (the reference's unawaited bulk write lost errors). `skipresults` answers `"[]"`.

use super::{CommandContext, Outcome};
use crate::documents::users::redact;
use crate::documents::{insert, json, output};
use crate::error::OpenCoreError;
use crate::proto::{InsertManyRequest, InsertManyResponse};

pub async fn run(ctx: CommandContext) -> Result<Outcome, OpenCoreError> {
    let request: InsertManyRequest = ctx.request(true)?;
    let scope = ctx.scope(&request.collectionname).await?;
    let items = json::parse_items(&request.items)?;
    let mut stored = insert::insert(&scope, items).await?;
    if request.skipresults {
        return Ok(ctx.reply(&InsertManyResponse {
            results: "[]".into(),
        }));
    }
    for document in &mut stored {
        redact::redact(&scope.collection, document);
    }
    Ok(ctx.reply(&InsertManyResponse {
        results: output::documents_to_json(&stored),
    }))
}
