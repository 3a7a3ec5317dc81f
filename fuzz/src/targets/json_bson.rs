//! Target 2: JSON text → BSON, as every request's `query`/`item`/`projection`/
//! `orderby`/`aggregates` string is parsed (with the reference's revivers), and back
//! to JSON as replies are written.
//!
//! Properties: whatever parses, the reply JSON written for it is valid JSON that
//! parses again; a document that parses serialises to BSON; nothing panics.

use bson::Bson;
use opencore::documents::{json, output, query};

pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let text = text.as_ref();

    if let Ok(value) = json::parse_value("value", text) {
        let written = output::value_to_json(&value);
        assert!(
            json::parse_value("again", &written).is_ok(),
            "reply JSON does not parse again: {written}"
        );
        let _ = output::value_to_text(&value);
        if let Bson::Document(document) = &value {
            // Keys with NUL bytes cannot be BSON: an error, not a panic.
            let _ = bson::to_vec(document);
            let _ = output::document_to_json(document);
        }
    }
    let _ = json::parse_document("query", text);
    if let Ok(documents) = json::parse_documents("items", text) {
        let _ = output::documents_to_json(&documents);
    }
    let _ = json::parse_items(text);

    // The request-level wrappers: `_id` rewrite, JavaScript guard, orderby forms.
    let _ = query::parse_query(text);
    let _ = query::parse_projection(text);
    let _ = query::parse_sort(text);

    // The revivers see every string value.
    let _ = json::revive(text);
    let _ = json::parse_regex_literal(text);
}
