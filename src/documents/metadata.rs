//! The metadata fields the server maintains on every document:
//!
//! | field | set |
//! |---|---|
//! | `_id` | on insert when absent or empty: a new ObjectId, stored as its 24-hex string |
//! | `_type` | lower-cased; `unknown` when absent |
//! | `_created`, `_createdby`, `_createdbyid` | on insert; never changed afterwards |
//! | `_modified`, `_modifiedby`, `_modifiedbyid` | on insert and every update |
//! | `_version` | 0 on insert, +1 per effective update |
//!
//! `_updatereason` (the reason stored with the history record) and `_skiphistory` are
//! request-only fields and never stored.

use bson::{oid::ObjectId, Bson, DateTime, Document};

use crate::auth::ResolvedUser;

pub const CREATED_FIELDS: [&str; 3] = ["_created", "_createdby", "_createdbyid"];
pub const MODIFIED_FIELDS: [&str; 3] = ["_modified", "_modifiedby", "_modifiedbyid"];

pub fn new_id() -> String {
    ObjectId::new().to_hex()
}

/// `_id` as text: strings as they are, ObjectIds as hex, anything else as JSON.
pub fn id_text(id: &Bson) -> String {
    match id {
        Bson::String(text) => text.clone(),
        Bson::ObjectId(oid) => oid.to_hex(),
        other => super::output::value_to_json(other),
    }
}

/// Whether the document carries a usable `_id` (not absent, null or "").
pub fn has_id(document: &Document) -> bool {
    !matches!(document.get("_id"), None | Some(Bson::Null)) && document.get_str("_id") != Ok("")
}

/// Returns the document with `_id` first, generating one when missing.
pub fn with_id_first(mut document: Document) -> Document {
    let id = if has_id(&document) {
        document.remove("_id").unwrap_or(Bson::Null)
    } else {
        Bson::String(new_id())
    };
    document.remove("_id");
    let mut out = Document::new();
    out.insert("_id", id);
    out.extend(document);
    out
}

/// The name used in metadata and ACEs for a user.
pub fn user_name(user: &ResolvedUser) -> &str {
    if user.name.is_empty() {
        &user.username
    } else {
        &user.name
    }
}

/// `_type` lower-cased, `fallback` when absent or not a string.
pub fn normalise_type(document: &mut Document, fallback: &str) {
    let value = match document.get("_type") {
        Some(Bson::String(kind)) if !kind.is_empty() => kind.to_lowercase(),
        _ => fallback.to_string(),
    };
    document.insert("_type", value);
}

pub fn stamp_created(document: &mut Document, user: &ResolvedUser, now: DateTime) {
    document.insert("_created", now);
    document.insert("_createdby", user_name(user));
    document.insert("_createdbyid", &user.id);
}

pub fn stamp_modified(document: &mut Document, user: &ResolvedUser, now: DateTime) {
    document.insert("_modified", now);
    document.insert("_modifiedby", user_name(user));
    document.insert("_modifiedbyid", &user.id);
}

/// Removes the request-only fields; returns `_updatereason` when given.
pub fn take_request_fields(document: &mut Document) -> Option<String> {
    document.remove("_skiphistory");
    match document.remove("_updatereason") {
        Some(Bson::String(reason)) if !reason.is_empty() => Some(reason),
        _ => None,
    }
}

/// `_version` as a number (0 when absent).
pub fn version_of(document: &Document) -> i64 {
    match document.get("_version") {
        Some(Bson::Int32(n)) => i64::from(*n),
        Some(Bson::Int64(n)) => *n,
        Some(Bson::Double(n)) if n.is_finite() => *n as i64,
        _ => 0,
    }
}

/// A filter pinning the document's current `_version` (optimistic concurrency).
pub fn version_filter(document: &Document) -> Document {
    match document.get("_version") {
        Some(value) => bson::doc! {"_version": value.clone()},
        None => bson::doc! {"_version": {"$exists": false}},
    }
}

/// Whether two versions differ in anything but the modification stamps and version.
pub fn same_content(a: &Document, b: &Document) -> bool {
    let strip = |d: &Document| {
        let mut d = d.clone();
        for field in MODIFIED_FIELDS {
            d.remove(field);
        }
        d.remove("_version");
        d
    };
    strip(a) == strip(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[test]
    fn ids_and_types() {
        let d = with_id_first(doc! {"a": 1, "_id": ""});
        assert_eq!(d.keys().next().map(String::as_str), Some("_id"));
        assert_eq!(d.get_str("_id").unwrap().len(), 24);
        let d = with_id_first(doc! {"a": 1, "_id": "mine"});
        assert_eq!(d, doc! {"_id": "mine", "a": 1});
        let mut d = doc! {"_type": "Thing"};
        normalise_type(&mut d, "unknown");
        assert_eq!(d.get_str("_type").unwrap(), "thing");
        let mut d = doc! {};
        normalise_type(&mut d, "unknown");
        assert_eq!(d.get_str("_type").unwrap(), "unknown");
        assert!(same_content(
            &doc! {"a": 1, "_version": 1, "_modified": 1},
            &doc! {"_modified": 2, "a": 1}
        ));
        assert_eq!(
            version_filter(&doc! {}),
            doc! {"_version": {"$exists": false}}
        );
    }
}
