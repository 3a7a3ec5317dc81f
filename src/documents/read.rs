//! What every read (query, count, distinct, aggregate) adds to the caller's query:
//! the caller's read ACL, the `queryas` target's read ACL, and the rules that keep
//! `passwordhash` out of reach.

use bson::{Bson, Document};

use super::scope::Scope;
use super::{json, query};
use crate::acl::{self, Principals, Right};
use crate::documents::users::{probe, redact};
use crate::error::OpenCoreError;
use crate::store::engine::{Filter, Projection};
use crate::store::{FindOptions, StoreError};

/// Most ids a query may pin for the point-read path.
const MAX_POINT_READS: usize = 16;

/// The `_id` values a query pins at its top level (equality, or `$in` after the
/// string/ObjectId rewrite), when there are only a few.
fn pinned_ids(query: &Document) -> Option<Vec<Bson>> {
    let ids = match query.get("_id")? {
        id @ (Bson::String(_) | Bson::ObjectId(_)) => vec![id.clone()],
        Bson::Document(condition) if condition.len() == 1 => {
            condition.get_array("$in").ok()?.clone()
        }
        _ => return None,
    };
    let usable = ids.len() <= MAX_POINT_READS
        && ids
            .iter()
            .all(|id| matches!(id, Bson::String(_) | Bson::ObjectId(_)));
    usable.then_some(ids)
}

/// `find` with `filter` (the user's `query` with ACLs added). A query pinning a few
/// `_id`s without sort or skip is answered by point reads checked against the whole
/// filter (the common "get by id": no scan, no trip through the blocking pool);
/// everything else goes to the store's `find`.
pub async fn find(
    scope: &Scope,
    query: &Document,
    filter: &Document,
    options: &FindOptions,
) -> Result<Vec<Document>, OpenCoreError> {
    let point = options.sort.as_ref().is_none_or(Document::is_empty) && options.skip == 0;
    let Some(ids) = pinned_ids(query).filter(|_| point) else {
        return Ok(scope
            .store()
            .find(&scope.collection, filter, options)
            .await?);
    };
    let engine = |err| OpenCoreError::from(StoreError::from(err));
    let parsed = Filter::parse(filter).map_err(engine)?;
    let projection = Projection::parse_optional(options.projection.as_ref()).map_err(engine)?;
    let mut found: Vec<Document> = Vec::with_capacity(ids.len());
    for id in ids {
        if options.limit > 0 && found.len() as u64 >= options.limit {
            break;
        }
        if found.iter().any(|d| d.get("_id") == Some(&id)) {
            continue;
        }
        if let Some(document) = scope.store().find_by_id(&scope.collection, &id).await? {
            if parsed.try_matches(&document).map_err(engine)? {
                found.push(document);
            }
        }
    }
    match projection {
        Some(projection) => found
            .iter()
            .map(|d| projection.apply(d, Some(&parsed)).map_err(engine))
            .collect(),
        None => Ok(found),
    }
}

/// The read ACL of the `queryas` target (`None`: no target, or an admin target).
pub async fn queryas_filter(
    scope: &Scope,
    queryas: &str,
) -> Result<Option<Document>, OpenCoreError> {
    let queryas = queryas.trim();
    if queryas.is_empty() {
        return Ok(None);
    }
    let target = Principals::queryas(scope.store(), &scope.state.directory, queryas).await?;
    Ok(acl::acl_filter(&target, Right::Read, scope.location()))
}

/// `query` AND the caller's read ACL AND the `queryas` target's.
pub async fn read_filter(
    scope: &Scope,
    query: Document,
    queryas: &str,
) -> Result<Document, OpenCoreError> {
    let target = queryas_filter(scope, queryas).await?;
    Ok(query::and(
        [query]
            .into_iter()
            .chain(scope.filter(Right::Read))
            .chain(target),
    ))
}

/// Non-admins may not filter, project, sort or compute on `passwordhash` (it would let
/// them test hashes even though they are never returned). `texts` are the request's
/// JSON fields (query, projection, orderby, ...; plain text such as a `distinct` field
/// name is taken as a string). They are judged PARSED, so no JSON escape or other
/// spelling of the name gets past (see `users::probe`).
pub fn refuse_password_probe(scope: &Scope, texts: &[&str]) -> Result<(), OpenCoreError> {
    if scope.is_admin() || !redact::applies(&scope.collection) {
        return Ok(());
    }
    for text in texts.iter().map(|t| t.trim()).filter(|t| !t.is_empty()) {
        let value = json::parse_value("query", text).unwrap_or_else(|_| Bson::String(text.into()));
        if let Some(found) = probe::find(&value) {
            return Err(OpenCoreError::PasswordHashProbe(found));
        }
    }
    Ok(())
}

/// Guests never see the audit log.
pub fn hidden_from(scope: &Scope) -> bool {
    scope.collection == "audit" && scope.user.is_guest()
}
