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

/// A new id: an ObjectId made of the time in seconds, a process-wide counter and 4
/// random bytes. The driver's `ObjectId::new()` has no random part per id (a fixed
/// per-process value and a counter), so anyone who saw one id could predict the next
/// and claim it first in its other form; with 32 random bits that takes billions of
/// guesses, which is why inserts check only client-chosen ids for a stored twin
/// (`id_forms`). Time and counter first keep new ids in ascending order, so the
/// store appends them at the end of its key order.
pub fn new_id() -> String {
    static COUNTER: std::sync::OnceLock<std::sync::atomic::AtomicU32> = std::sync::OnceLock::new();
    let counter = COUNTER
        .get_or_init(|| std::sync::atomic::AtomicU32::new(rand::random()))
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let seconds = DateTime::now().timestamp_millis().div_euclid(1000) as u32;
    let mut bytes = [0u8; 12];
    bytes[..4].copy_from_slice(&seconds.to_be_bytes());
    bytes[4..8].copy_from_slice(&counter.to_be_bytes());
    bytes[8..].copy_from_slice(&rand::random::<[u8; 4]>());
    ObjectId::from_bytes(bytes).to_hex()
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

    #[test]
    fn new_ids_cannot_be_predicted_from_earlier_ones() {
        // The driver's ObjectId::new() has no random part per id; ours end in 4 random
        // bytes, and time and counter keep them ascending.
        let ids: Vec<ObjectId> = (0..64)
            .map(|_| ObjectId::parse_str(new_id()).expect("a 24-hex id"))
            .collect();
        let tails: std::collections::HashSet<[u8; 4]> = ids
            .iter()
            .map(|id| id.bytes()[8..].try_into().expect("4 bytes"))
            .collect();
        assert!(tails.len() > 60, "random tails repeat: {}", tails.len());
        let ascending = ids.windows(2).filter(|w| w[0] < w[1]).count();
        assert!(ascending >= 62, "ids mostly ascending: {ascending}");
    }
}
