//! What never leaves the server from the `users` collection: `passwordhash`.

use bson::{doc, Document};

use super::USERS_COLLECTION;

/// Whether reads of `collection` must hide password hashes.
pub fn applies(collection: &str) -> bool {
    collection == USERS_COLLECTION || collection == "users_hist"
}

/// Removes password hashes from a document read from `collection`.
pub fn redact(collection: &str, document: &mut Document) {
    if applies(collection) {
        document.remove("passwordhash");
        if let Ok(item) = document.get_document_mut("item") {
            item.remove("passwordhash");
        }
    }
}

/// The pipeline stage that hides password hashes from every later stage.
pub fn unset_stage() -> Document {
    doc! {"$unset": ["passwordhash", "item.passwordhash"]}
}
