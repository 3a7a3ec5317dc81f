//! `insertorupdatemany`: `insertorupdateone` for each item of a JSON array, in order
//! (so items sharing a key within one request update each other rather than collide).
//! Every item is attempted; the first failure is reported after all of them.

use super::{CommandContext, Outcome};
use crate::documents::users::redact;
use crate::documents::{json, output, upsert};
use crate::error::OpenCoreError;
use crate::proto::{InsertOrUpdateManyRequest, InsertOrUpdateManyResponse};

pub async fn run(ctx: CommandContext) -> Result<Outcome, OpenCoreError> {
    let request: InsertOrUpdateManyRequest = ctx.request(true)?;
    let scope = ctx.scope(&request.collectionname).await?;
    let items = json::parse_items(&request.items)?;
    let mut results = Vec::with_capacity(items.len());
    let mut first_error = None;
    for item in items {
        match upsert::insert_or_update(&scope, &request.uniqeness, item).await {
            Ok(mut document) => {
                redact::redact(&scope.collection, &mut document);
                results.push(document);
            }
            Err(err) => {
                first_error.get_or_insert(err);
            }
        }
    }
    if let Some(err) = first_error {
        return Err(err);
    }
    let results = if request.skipresults {
        "[]".to_string()
    } else {
        output::documents_to_json(&results)
    };
    Ok(ctx.reply(&InsertOrUpdateManyResponse { results }))
}
