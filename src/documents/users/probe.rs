//! Whether a non-admin's filter, projection, sort or field could reach `passwordhash`.
//!
//! Checked on the PARSED value (JSON escapes such as `passwordh\u0061sh` are already
//! resolved), at every depth, iteratively (no recursion on client data). Refused:
//!
//! - any key or string that names `passwordhash` (field paths, `"$passwordhash"`
//!   expressions, `$getField: "passwordhash"`, `item.passwordhash` in `users_hist`);
//! - any variable (`"$$ROOT"`, `"$$CURRENT"`, ...): a whole-document value carries the
//!   hash inside it, out of reach of the top-level redaction;
//! - operators that compute field names or inspect the whole document (`$expr`,
//!   `$jsonSchema`, `$getField`, `$objectToArray`, ...), since a name built at run time
//!   (`$concat: ["password", "hash"]`) never appears in the request.
//!
//! Aggregations need none of this: they start with an `$unset` of the hash.

use bson::Bson;

/// Operators that can reach a field whose name is not written in the request.
const DYNAMIC_OPERATORS: &[&str] = &[
    "$expr",
    "$jsonSchema",
    "$where",
    "$function",
    "$accumulator",
    "$text",
    "$getField",
    "$setField",
    "$unsetField",
    "$objectToArray",
];

const FIELD: &str = "passwordhash";

/// The first part of `value` that could reach the hash, if any.
pub fn find(value: &Bson) -> Option<String> {
    let mut pending: Vec<&Bson> = vec![value];
    while let Some(current) = pending.pop() {
        match current {
            Bson::Document(document) => {
                for (key, inner) in document {
                    if key.contains(FIELD) || DYNAMIC_OPERATORS.contains(&key.as_str()) {
                        return Some(key.clone());
                    }
                    pending.push(inner);
                }
            }
            Bson::Array(items) => pending.extend(items.iter()),
            Bson::String(text) if text.contains(FIELD) || text.starts_with("$$") => {
                return Some(text.clone());
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::bson;

    #[test]
    fn finds_every_spelling() {
        assert!(find(&bson!({"name": "x", "_id": {"$in": ["a"]}})).is_none());
        assert!(find(&bson!({"h": "$passwordhash"})).is_some());
        assert!(find(&bson!({"$or": [{"item.passwordhash": {"$exists": true}}]})).is_some());
        assert!(find(&bson!({"r": "$$ROOT"})).is_some());
        assert!(find(&bson!({"$expr": {"$eq": [1, 1]}})).is_some());
        assert!(find(&bson!({"h": {"$getField": {"$concat": ["password", "hash"]}}})).is_some());
        assert!(find(&bson!("passwordhash")).is_some());
        // Deep nesting is walked without recursion.
        let mut deep = bson!({"passwordhash": 1});
        for _ in 0..10_000 {
            deep = bson!({"$and": [deep]});
        }
        assert!(find(&deep).is_some());
        std::mem::forget(deep); // dropping it would recurse in bson's own Drop
    }
}
