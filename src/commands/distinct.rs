//! `distinct`: the distinct values of a field among readable matching documents, as
//! strings (`DistinctResponse.results` is `repeated string`: non-strings are given as
//! JSON, ObjectIds as hex, dates as ISO text).

use super::{CommandContext, Outcome};
use crate::documents::{output, query, read};
use crate::error::OpenCoreError;
use crate::proto::{DistinctRequest, DistinctResponse};

pub async fn run(ctx: CommandContext) -> Result<Outcome, OpenCoreError> {
    let request: DistinctRequest = ctx.request(true)?;
    let scope = ctx.scope(&request.collectionname).await?;
    if request.field.trim().is_empty() {
        return Err(OpenCoreError::BadRequest("field is mandatory".into()));
    }
    let text = if request.query.trim().is_empty() {
        "{}"
    } else {
        request.query.as_str()
    };
    let filter = query::parse_query(text)?;
    read::refuse_password_probe(&scope, &[text, &request.field])?;
    if (scope.collection == "users" || scope.collection == "users_hist")
        && request.field.contains("passwordhash")
    {
        return Ok(ctx.reply(&DistinctResponse {
            results: Vec::new(),
        }));
    }
    if read::hidden_from(&scope) {
        return Ok(ctx.reply(&DistinctResponse {
            results: Vec::new(),
        }));
    }
    let filter = read::read_filter(&scope, filter, &request.queryas).await?;
    let values = scope
        .store()
        .distinct(&scope.collection, &request.field, &filter)
        .await?;
    Ok(ctx.reply(&DistinctResponse {
        results: values.iter().map(output::value_to_text).collect(),
    }))
}
