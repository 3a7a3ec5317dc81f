//! One `_id` per value, whatever its form. The store keys `"X"` and `ObjectId(X)`
//! apart, but everything above it (token and role resolution, ACL principals, `_id`
//! queries) treats a 24-hex string and the ObjectId it spells as the same id. So an
//! insert whose `_id` is stored in the other form is a duplicate, like the store's own
//! E11000, in every collection.
//!
//! Race-free: the insert holds a per-key lock on the canonical (lower-case hex) form
//! from before the check until its write is stored, so two inserts of the two forms
//! are serialised and the second sees the first.

use bson::{oid::ObjectId, Bson, Document};

use super::locks::KeyGuard;
use super::scope::Scope;
use crate::error::OpenCoreError;
use crate::store::StoreError;

/// The canonical hex of an id that has another form.
fn canonical(id: &Bson) -> Option<String> {
    match id {
        Bson::String(text) if text.len() == 24 => {
            ObjectId::parse_str(text).ok().map(|o| o.to_hex())
        }
        Bson::ObjectId(oid) => Some(oid.to_hex()),
        _ => None,
    }
}

/// The forms of `id` other than itself.
fn other_forms(id: &Bson) -> Vec<Bson> {
    match id {
        Bson::String(text) => ObjectId::parse_str(text)
            .ok()
            .map(Bson::ObjectId)
            .into_iter()
            .collect(),
        Bson::ObjectId(oid) => vec![Bson::String(oid.to_hex())],
        _ => Vec::new(),
    }
}

fn duplicate(scope: &Scope, hex: &str) -> OpenCoreError {
    StoreError::DuplicateKey {
        collection: scope.collection.clone(),
        key: format!("{{ _id: \"{hex}\" }} (stored in its other form)"),
    }
    .into()
}

/// Locks the ids of `documents` that have another form (in sorted order, so two
/// inserts never wait for each other in a cycle) and refuses the batch when one of
/// them is stored in its other form, or appears twice in the batch. Keep the guards
/// until the write is stored.
pub async fn claim(scope: &Scope, documents: &[&Document]) -> Result<Vec<KeyGuard>, OpenCoreError> {
    let mut keys: Vec<String> = documents
        .iter()
        .filter_map(|d| d.get("_id"))
        .filter_map(canonical)
        .collect();
    keys.sort();
    if let Some(pair) = keys.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(duplicate(scope, &pair[0]));
    }
    let mut guards = Vec::with_capacity(keys.len());
    for hex in &keys {
        let key = format!("\u{1}_id\u{0}{}\u{0}{hex}", scope.collection);
        guards.push(scope.state.key_locks.lock(key).await);
    }
    for id in documents.iter().filter_map(|d| d.get("_id")) {
        for other in other_forms(id) {
            if scope.by_stored_id(&other).await?.is_some() {
                return Err(duplicate(scope, &canonical(id).unwrap_or_default()));
            }
        }
    }
    Ok(guards)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let hex = "5a1702fa245d9013697656fb";
        let oid = Bson::ObjectId(ObjectId::parse_str(hex).unwrap());
        assert_eq!(
            canonical(&Bson::String(hex.to_uppercase())).as_deref(),
            Some(hex)
        );
        assert_eq!(canonical(&oid).as_deref(), Some(hex));
        assert_eq!(canonical(&Bson::String("mine".into())), None);
        assert_eq!(other_forms(&oid), vec![Bson::String(hex.into())]);
        assert_eq!(other_forms(&Bson::String(hex.into())), vec![oid]);
        assert!(other_forms(&Bson::Int32(1)).is_empty());
    }
}
