//! `count`: how many documents match, among those the caller (and `queryas`) may read.

use super::{CommandContext, Outcome};
use crate::documents::{query, read};
use crate::error::OpenCoreError;
use crate::proto::{CountRequest, CountResponse};

pub async fn run(ctx: CommandContext) -> Result<Outcome, OpenCoreError> {
    let request: CountRequest = ctx.request(true)?;
    let scope = ctx.scope(&request.collectionname).await?;
    // Clients send "{}" for "everything"; an empty query means the same here.
    let text = if request.query.trim().is_empty() {
        "{}"
    } else {
        request.query.as_str()
    };
    let filter = query::parse_query(text)?;
    read::refuse_password_probe(&scope, &[text])?;
    if read::hidden_from(&scope) {
        return Ok(ctx.reply(&CountResponse { result: 0 }));
    }
    let filter = read::read_filter(&scope, filter, &request.queryas).await?;
    let count = scope.store().count(&scope.collection, &filter).await?;
    Ok(ctx.reply(&CountResponse {
        result: count.min(i32::MAX as u64) as i32,
    }))
}
