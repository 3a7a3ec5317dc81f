//! `deletemany`: deletes what a query (or a list of ids) matches among the documents
//! the caller may delete; every deleted document gets its history record, the delete
//! is awaited, and `affectedrows` is the real count.

use bson::{doc, Bson};

use super::{CommandContext, Outcome};
use crate::documents::{query, read, remove};
use crate::error::OpenCoreError;
use crate::proto::{DeleteManyRequest, DeleteManyResponse};

pub async fn run(ctx: CommandContext) -> Result<Outcome, OpenCoreError> {
    let request: DeleteManyRequest = ctx.request(true)?;
    let scope = ctx.scope(&request.collectionname).await?;
    let filter = if !request.query.trim().is_empty() {
        read::refuse_password_probe(&scope, &[&request.query])?;
        query::parse_query(&request.query)?
    } else {
        let ids: Vec<Bson> = request
            .ids
            .iter()
            .map(|id| id.trim())
            .filter(|id| !id.is_empty())
            .flat_map(query::id_forms)
            .collect();
        if ids.is_empty() {
            return Err(OpenCoreError::DeleteManyNeedsFilter);
        }
        doc! {"_id": {"$in": ids}}
    };
    let deleted = remove::delete(&scope, filter, false).await?;
    Ok(ctx.reply(&DeleteManyResponse {
        affectedrows: deleted.count.min(i32::MAX as u64) as i32,
    }))
}
