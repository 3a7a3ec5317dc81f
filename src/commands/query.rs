//! `query`: documents matching a JSON query, filtered by the caller's read rights (and
//! `queryas`'s). `top` 0 means 500; `top` is clamped to `--max-query-results`.

use super::{CommandContext, Outcome};
use crate::documents::users::redact;
use crate::documents::{output, query, read};
use crate::error::OpenCoreError;
use crate::proto::{QueryRequest, QueryResponse};
use crate::store::FindOptions;

/// `top` when the request leaves it at 0 (the reference's default).
pub const DEFAULT_TOP: usize = 500;

pub async fn run(ctx: CommandContext) -> Result<Outcome, OpenCoreError> {
    let request: QueryRequest = ctx.request(true)?;
    let scope = ctx.scope(&request.collectionname).await?;
    let filter = query::parse_query(&request.query)?;
    let projection = query::parse_projection(&request.projection)?;
    let sort = query::parse_sort(&request.orderby)?;
    read::refuse_password_probe(
        &scope,
        &[&request.query, &request.projection, &request.orderby],
    )?;
    if read::hidden_from(&scope) {
        return Ok(ctx.reply(&QueryResponse {
            results: "[]".into(),
        }));
    }
    let max = ctx.services.config.limits.max_query_results.max(1);
    let top = if request.top <= 0 {
        DEFAULT_TOP
    } else {
        request.top as usize
    }
    .min(max);
    let restricted = read::read_filter(&scope, filter.clone(), &request.queryas).await?;
    let options = FindOptions {
        projection,
        sort,
        skip: request.skip.max(0) as u64,
        limit: top as u64,
    };
    let mut documents = read::find(&scope, &filter, &restricted, &options).await?;
    for document in &mut documents {
        redact::redact(&scope.collection, document);
    }
    Ok(ctx.reply(&QueryResponse {
        results: output::documents_to_json(&documents),
    }))
}
