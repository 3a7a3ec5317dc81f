//! What every read (query, count, distinct, aggregate) adds to the caller's query:
//! the caller's read ACL, the `queryas` target's read ACL, and the rules that keep
//! `passwordhash` out of reach.

use bson::Document;

use super::query;
use super::scope::Scope;
use crate::acl::{self, Principals, Right};
use crate::error::OpenCoreError;
use crate::users::redact;

/// The read ACL of the `queryas` target (`None`: no target, or an admin target).
pub async fn queryas_filter(scope: &Scope, queryas: &str) -> Result<Option<Document>, OpenCoreError> {
    let queryas = queryas.trim();
    if queryas.is_empty() {
        return Ok(None);
    }
    let target = Principals::queryas(&scope.services, queryas).await?;
    Ok(acl::acl_filter(&target, Right::Read, scope.location()))
}

/// `query` AND the caller's read ACL AND the `queryas` target's.
pub async fn read_filter(scope: &Scope, query: Document, queryas: &str) -> Result<Document, OpenCoreError> {
    let target = queryas_filter(scope, queryas).await?;
    Ok(query::and([query].into_iter().chain(scope.filter(Right::Read)).chain(target)))
}

/// Non-admins may not filter, project or group on `passwordhash` (it would let them
/// test hashes even though they are never returned).
pub fn refuse_password_probe(scope: &Scope, texts: &[&str]) -> Result<(), OpenCoreError> {
    if scope.is_admin() || !redact::applies(&scope.collection) {
        return Ok(());
    }
    if texts.iter().any(|t| redact::mentions_password(t)) {
        return Err(OpenCoreError::AccessDeniedBecause("passwordhash cannot be queried".into()));
    }
    Ok(())
}

/// Guests never see the audit log.
pub fn hidden_from(scope: &Scope) -> bool {
    scope.collection == "audit" && scope.user.is_guest()
}
