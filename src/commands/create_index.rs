//! `createindex` (admins): `index` is a JSON key spec, `options` JSON (`unique`,
//! `expireAfterSeconds`, `partialFilterExpression`, `name`), `name` wins over
//! `options.name`. Answers the index name.

use bson::{Bson, Document};

use super::{CommandContext, Outcome};
use crate::documents::{collections, json};
use crate::error::OpenCoreError;
use crate::proto::{CreateIndexRequest, CreateIndexResponse};
use crate::store::IndexSpec;

pub async fn run(ctx: CommandContext) -> Result<Outcome, OpenCoreError> {
    let request: CreateIndexRequest = ctx.request(true)?;
    let name = collections::resolve(request.collectionname.trim()).to_string();
    collections::validate(&name)?;
    if !ctx.user()?.is_admin() {
        return Err(OpenCoreError::AccessDenied);
    }
    if request.index.trim().is_empty() {
        return Err(OpenCoreError::BadRequest("index is mandatory".into()));
    }
    let keys = json::parse_document("index", &request.index)?;
    if keys.is_empty() {
        return Err(OpenCoreError::BadRequest("index is mandatory".into()));
    }
    let options = if request.options.trim().is_empty() {
        Document::new()
    } else {
        json::parse_document("options", &request.options)?
    };
    let number = |value: Option<&Bson>| match value {
        Some(Bson::Int32(n)) => Some(i64::from(*n)),
        Some(Bson::Int64(n)) => Some(*n),
        Some(Bson::Double(n)) => Some(*n as i64),
        _ => None,
    };
    let index_name = match request.name.trim() {
        "" => options.get_str("name").ok().map(str::to_string),
        given => Some(given.to_string()),
    };
    let spec = IndexSpec {
        keys,
        name: index_name,
        unique: options.get_bool("unique").unwrap_or(false),
        expire_after_seconds: number(options.get("expireAfterSeconds")),
        partial_filter: options
            .get_document("partialFilterExpression")
            .ok()
            .cloned(),
    };
    let created = ctx.services.store.create_index(&name, &spec).await?;
    Ok(ctx.reply(&CreateIndexResponse { result: created }))
}
