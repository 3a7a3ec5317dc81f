//! Target 4: an `updatedocument`/`updateone` update string parsed as the server does
//! (JSON, JavaScript guard), compiled into an `Update`, and applied to every document
//! (with the query filter of line 1 for the positional `$`), plus the upsert path.
//!
//! Properties: a failed or no-op apply leaves the document byte-for-byte as it was; a
//! successful apply never changes an existing `_id`; an upserted document starts with `_id`; every
//! result serialises to BSON or fails cleanly; nothing panics.

use bson::Document;
use opencore::documents::{guard, json, query};
use opencore::store::engine::{ApplyContext, Filter, Update};

/// Line 0: the update. Line 1: the query (optional). Lines 2..: extra documents.
pub fn run(data: &[u8]) {
    let lines = super::input::lines(data);
    let Some(text) = lines.first() else {
        return;
    };
    let Ok(spec) = json::parse_document("document", text) else {
        return;
    };
    if guard::refuse_javascript(&spec).is_err() {
        return;
    }
    let Ok(update) = Update::parse(&spec) else {
        return;
    };
    let query = lines
        .get(1)
        .and_then(|line| query::parse_query(line).ok())
        .unwrap_or_default();
    let filter = Filter::parse(&query).ok();
    let extra = lines.get(2..).unwrap_or(&[]);
    check(
        &update,
        &query,
        filter.as_ref(),
        &super::input::documents(extra),
    );
}

/// The properties of one compiled update applied to `documents`.
pub fn check(update: &Update, query: &Document, filter: Option<&Filter>, documents: &[Document]) {
    let _ = update.uses_positional();
    for original in documents {
        let ctx = ApplyContext {
            is_upsert_insert: false,
            matched_array_index: None,
            filter,
        };
        let mut document = original.clone();
        match update.apply(&mut document, &ctx) {
            // Stored documents always have an `_id`; one given without is seeded here.
            Ok(true) if original.contains_key("_id") => {
                assert_eq!(
                    bytes_of(original.get("_id")),
                    bytes_of(document.get("_id")),
                    "an update changed _id"
                );
                let _ = bson::to_vec(&document);
            }
            Ok(true) => {}
            Ok(false) | Err(_) => assert_eq!(
                bson::to_vec(original).ok(),
                bson::to_vec(&document).ok(),
                "a failed or no-op update changed the document"
            ),
        }
    }
    if let Ok(inserted) = update.upsert_document(query) {
        assert_eq!(
            inserted.keys().next().map(String::as_str),
            Some("_id"),
            "upsert without _id first"
        );
        let _ = bson::to_vec(&inserted);
    }
}

fn bytes_of(value: Option<&bson::Bson>) -> Option<Vec<u8>> {
    value.and_then(|v| bson::to_vec(&bson::doc! {"v": v.clone()}).ok())
}
