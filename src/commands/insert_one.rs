//! `insertone`: stores one document (metadata, ACL defaults, `users` rules) and
//! returns it as stored, `_id` included.

use super::{CommandContext, Outcome};
use crate::documents::users::redact;
use crate::documents::{insert, json, output};
use crate::error::OpenCoreError;
use crate::proto::{InsertOneRequest, InsertOneResponse};

pub async fn run(ctx: CommandContext) -> Result<Outcome, OpenCoreError> {
    let request: InsertOneRequest = ctx.request(true)?;
    let scope = ctx.scope(&request.collectionname).await?;
    let item = parse_item(&request.item)?;
    let mut stored = insert::insert(&scope, vec![item]).await?;
    let mut document = stored.pop().ok_or(OpenCoreError::Internal)?;
    redact::redact(&scope.collection, &mut document);
    Ok(ctx.reply(&InsertOneResponse {
        result: output::document_to_json(&document),
    }))
}

/// An item to store: a JSON object; empty or `null` is "Cannot create null item".
pub fn parse_item(text: &str) -> Result<bson::Document, OpenCoreError> {
    let text = text.trim();
    if text.is_empty() || text == "null" {
        return Err(OpenCoreError::NullItem);
    }
    let item = json::parse_document("item", text)?;
    crate::documents::guard::refuse_javascript(&item)?;
    Ok(item)
}
