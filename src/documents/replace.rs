//! Full-document updates (`updateone`, the update half of the upserts).
//!
//! Merge rules (the reference's): `_`-fields of the original missing from the item are
//! kept, `_`-fields the item sets to `null` are removed, other fields absent from the
//! item are removed (it is a replacement); `_created*` always come from the original,
//! `_modified*` are stamped, `_version` goes up by one, `_type` is lower-cased, and an
//! item without an `_acl` array keeps the original ACL. Files collections only ever
//! replace `metadata`.
//!
//! Concurrency: the replace is conditional on the `_version` that was read (and on the
//! caller's update right); when another writer got there first, the update is redone
//! on the new version. An update that changes nothing writes nothing.

use bson::{doc, Bson, DateTime, Document};

use super::catalog::CollectionKind;
use super::insert::{acl_value, set_acl};
use super::metadata::{self, id_text};
use super::query;
use super::scope::Scope;
use crate::acl::{ace, Right};
use crate::documents::history;
use crate::documents::users::rules;
use crate::error::OpenCoreError;

const ATTEMPTS: usize = 5;

/// Replaces the document `item._id` names. `found`: the current document when the
/// caller already read it (checked for read rights).
pub async fn update_one(
    scope: &Scope,
    mut item: Document,
    found: Option<Document>,
) -> Result<Document, OpenCoreError> {
    scope.ensure_writable()?;
    if scope.collection == "audit" {
        return Err(OpenCoreError::AccessDenied);
    }
    if !metadata::has_id(&item) {
        return Err(OpenCoreError::UpdateWithoutId);
    }
    let id = id_text(item.get("_id").unwrap_or(&Bson::Null));
    let reason = metadata::take_request_fields(&mut item);
    let not_found = || OpenCoreError::NotFoundOrDenied {
        id: id.clone(),
        collection: scope.collection.clone(),
    };
    let mut known = found;
    for _ in 0..ATTEMPTS {
        let original = match known.take() {
            Some(document) => document,
            None => scope.readable_by_id(&id).await?.ok_or_else(not_found)?,
        };
        if !scope.can(&original, Right::Update) {
            return Err(OpenCoreError::AccessDeniedBecause(format!(
                "no authorization to UpdateOne {} {} to database",
                original.get_str("_type").unwrap_or_default(),
                original.get_str("name").unwrap_or(&id)
            )));
        }
        let mut next = merge(scope, &original, item.clone(), DateTime::now());
        rules::before_replace(scope, &original, &mut next).await?;
        let mut acl = ace::parse(acl_value(&next, scope.location()));
        let had = ace::parse(acl_value(&original, scope.location()));
        ace::apply_update_rule(&mut acl, &had, &scope.user, &scope.principals);
        ace::resolve_names(scope.store(), &scope.user, &[], &mut [&mut acl]).await?;
        set_acl(&mut next, scope.location(), &acl);
        if metadata::same_content(&original, &next) {
            return Ok(original);
        }
        if scope.kind != CollectionKind::Files {
            next.insert("_version", metadata::version_of(&original) + 1);
        }
        if scope.keeps_history() {
            history::record::write(
                &scope.state,
                &scope.collection,
                vec![history::record::snapshot(&original, reason.as_deref())],
            )
            .await?;
        }
        let stored_id = original.get("_id").cloned().unwrap_or(Bson::Null);
        let filter = scope.restrict(
            query::and([doc! {"_id": stored_id}, metadata::version_filter(&original)]),
            Right::Update,
        );
        let outcome = scope
            .store()
            .replace_one(&scope.collection, &filter, next.clone(), false)
            .await?;
        if outcome.matched > 0 {
            return Ok(next);
        }
    }
    Err(OpenCoreError::Query(format!(
        "ReplaceOne failed, matched 0 documents with query {{_id: '{id}'}}"
    )))
}

fn merge(scope: &Scope, original: &Document, item: Document, now: DateTime) -> Document {
    let mut next = Document::new();
    next.insert("_id", original.get("_id").cloned().unwrap_or(Bson::Null));
    if scope.kind == CollectionKind::Files {
        next.extend(
            original
                .iter()
                .filter(|(k, _)| k.as_str() != "_id")
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        if let Some(Bson::Document(mut metadata)) = item.get("metadata").cloned() {
            if !matches!(metadata.get("_acl"), Some(Bson::Array(_))) {
                if let Some(acl) = acl_value(original, scope.location()) {
                    metadata.insert("_acl", acl.clone());
                }
            }
            next.insert("metadata", metadata);
        }
        return next;
    }
    let mut nulled = Vec::new();
    for (key, value) in item {
        if key == "_id" {
            continue;
        }
        if key.starts_with('_') && value == Bson::Null {
            nulled.push(key);
            continue;
        }
        next.insert(key, value);
    }
    for (key, value) in original {
        // `_`-fields the item left out are kept; those it set to null stay removed.
        if key.starts_with('_') && !next.contains_key(key) && !nulled.contains(key) {
            next.insert(key.clone(), value.clone());
        }
    }
    for field in metadata::CREATED_FIELDS {
        match original.get(field) {
            Some(value) => next.insert(field, value.clone()),
            None => next.remove(field),
        };
    }
    if !matches!(next.get("_acl"), Some(Bson::Array(_))) {
        match original.get("_acl") {
            Some(acl) => next.insert("_acl", acl.clone()),
            None => next.remove("_acl"),
        };
    }
    if !scope.kind.is_timeseries() {
        let fallback = original.get_str("_type").unwrap_or("unknown").to_string();
        metadata::normalise_type(&mut next, &fallback);
        metadata::stamp_modified(&mut next, &scope.user, now);
    }
    next
}
