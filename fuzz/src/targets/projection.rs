//! Target 5: a `projection` string (with the `query` and `orderby` it comes with)
//! parsed as the server does, compiled as a find projection, a `$project` stage and an
//! `$addFields` stage, and applied to every document; plus the whole find path
//! (filter, sort, skip, limit, project).
//!
//! Properties: a find projection that excludes `_id` never returns it; find returns at
//! most `limit` documents; every result serialises to JSON for the reply; nothing
//! panics.

use bson::{Bson, Document};
use opencore::documents::{output, query};
use opencore::store::engine::{self, Filter, FindOptions, Projection};

/// Line 0: the projection. Line 1: the query. Line 2: the orderby. Lines 3..: extra
/// documents.
pub fn run(data: &[u8]) {
    let lines = super::input::lines(data);
    let Some(Ok(Some(spec))) = lines.first().map(|line| query::parse_projection(line)) else {
        return;
    };
    let query = lines
        .get(1)
        .and_then(|line| query::parse_query(line).ok())
        .unwrap_or_default();
    let sort = lines
        .get(2)
        .and_then(|line| query::parse_sort(line).ok())
        .flatten();
    let extra = lines.get(3..).unwrap_or(&[]);
    check(
        &spec,
        &query,
        sort.as_ref(),
        &super::input::documents(extra),
    );
}

/// The properties of one projection spec over `documents`.
pub fn check(spec: &Document, query: &Document, sort: Option<&Document>, documents: &[Document]) {
    let filter = Filter::parse(query).ok();
    let hides_id = matches!(spec.get("_id"), Some(Bson::Int32(0) | Bson::Boolean(false)));
    if let Ok(projection) = Projection::parse(spec) {
        let _ = projection.is_inclusion();
        for document in documents {
            if let Ok(projected) = projection.apply(document, filter.as_ref()) {
                if hides_id {
                    assert!(!projected.contains_key("_id"), "{{_id: 0}} returned _id");
                }
                let _ = output::document_to_json(&projected);
            }
        }
    }
    let stages = [
        Projection::parse_project_stage(spec),
        Projection::parse_add_fields(spec),
    ];
    for projection in stages.iter().flatten() {
        for document in documents {
            let _ = projection.apply(document, None);
        }
    }
    for (skip, limit) in [(0, 0), (1, 2)] {
        let Ok(options) = FindOptions::parse(query, Some(spec), sort, skip, limit) else {
            return;
        };
        if let Ok(found) = engine::find(documents.iter(), &options) {
            if limit > 0 {
                assert!(found.len() as u64 <= limit, "find returned more than limit");
            }
            let _ = output::documents_to_json(&found);
        }
    }
}
