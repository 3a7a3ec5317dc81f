//! `aggregate`: a pipeline over the documents the caller (and `queryas`) may read.
//!
//! The read ACL `$match` goes first; every foreign read (`$lookup`, `$unionWith`, at
//! any depth) starts with the foreign collection's ACL match (`acl::pipeline`);
//! `$graphLookup`, `$out`, `$merge` are for admins; JavaScript operators are refused.
//! Reads of `users` start with an `$unset` of `passwordhash`, so no later stage can see
//! it. A pipeline that never mentions `$limit` gets `{$limit: 500}` appended (the
//! reference's rule).

use bson::{doc, Document};

use super::{CommandContext, Outcome};
use crate::acl::pipeline::{self, Prefixes};
use crate::acl::{self, Principals, Right};
use crate::documents::catalog::AclLocation;
use crate::documents::users::redact;
use crate::documents::{guard, json, output, read};
use crate::error::OpenCoreError;
use crate::proto::{AggregateRequest, AggregateResponse};

/// `$limit` appended to pipelines without one.
pub const DEFAULT_LIMIT: i32 = 500;

pub async fn run(ctx: CommandContext) -> Result<Outcome, OpenCoreError> {
    let request: AggregateRequest = ctx.request(true)?;
    let scope = ctx.scope(&request.collectionname).await?;
    if request.aggregates.trim().is_empty() {
        return Err(OpenCoreError::BadRequest("aggregates is mandatory".into()));
    }
    let stages = json::parse_documents("aggregates", &request.aggregates)?;
    guard::refuse_javascript_in(&stages)?;
    if read::hidden_from(&scope) {
        return Ok(ctx.reply(&AggregateResponse {
            results: "[]".into(),
        }));
    }
    let target = match request.queryas.trim() {
        "" => None,
        id => Some(
            Principals::queryas(ctx.services.store.as_ref(), ctx.services.directory(), id).await?,
        ),
    };
    let prefix_for = |collection: &str, location: AclLocation| -> Vec<Document> {
        let mut prefix: Vec<Document> = Vec::new();
        for principals in std::iter::once(&scope.principals).chain(target.as_ref()) {
            if let Some(filter) = acl::acl_filter(principals, Right::Read, location) {
                prefix.push(doc! {"$match": filter});
            }
        }
        if redact::applies(collection) {
            prefix.push(redact::unset_stage());
        }
        prefix
    };
    let mut prefixes = Prefixes::new();
    for foreign in pipeline::foreign_collections(&stages)? {
        let kind = ctx
            .services
            .documents
            .catalog
            .kind(ctx.services.store.as_ref(), &foreign)
            .await?;
        let prefix = prefix_for(&foreign, kind.acl_location());
        prefixes.insert(foreign, prefix);
    }
    let body = pipeline::restrict(stages, scope.is_admin(), &prefixes)?;
    let mut full = prefix_for(&scope.collection, scope.location());
    full.extend(body);
    let writes = full
        .last()
        .and_then(|s| s.keys().next())
        .is_some_and(|k| k == "$out" || k == "$merge");
    if !request.aggregates.contains("$limit") && !writes {
        full.push(doc! {"$limit": DEFAULT_LIMIT});
    }
    let mut documents = scope.store().aggregate(&scope.collection, &full).await?;
    for document in &mut documents {
        redact::redact(&scope.collection, document);
    }
    Ok(ctx.reply(&AggregateResponse {
        results: output::documents_to_json(&documents),
    }))
}
