//! Target 3: a `query` string parsed as the server does (JSON, JavaScript guard,
//! `_id` rewrite), compiled into a `Filter`, and matched against the fixed documents
//! plus any documents given on later lines; also count and distinct over them.
//!
//! Properties: `matches`, `try_matches` and `match_details` agree; `count` counts
//! what `matches` accepts; a filter that pins `_id` to a value only matches documents
//! whose `_id` equals it; nothing panics.

use opencore::documents::query;
use opencore::store::engine::{self, values_equal, Filter};

/// Line 0: the query. Lines 1..: extra documents.
pub fn run(data: &[u8]) {
    let lines = super::input::lines(data);
    let Some(text) = lines.first() else {
        return;
    };
    let Ok(parsed) = query::parse_query(text) else {
        return;
    };
    let Ok(filter) = Filter::parse(&parsed) else {
        return;
    };
    let documents = super::input::documents(&lines[1..]);
    check(&filter, &documents);
}

/// The properties of one compiled filter over `documents`.
pub fn check(filter: &Filter, documents: &[bson::Document]) {
    let mut matched = 0u64;
    let mut any_error = false;
    for document in documents {
        let plain = filter.matches(document);
        let details = filter.match_details(document);
        assert_eq!(
            details.matched, plain,
            "match_details disagrees with matches"
        );
        match filter.try_matches(document) {
            Ok(tried) => assert_eq!(tried, plain, "try_matches disagrees with matches"),
            Err(_) => any_error = true,
        }
        if plain {
            matched += 1;
            if let (Some(pinned), Some(id)) = (filter.equality_on("_id"), document.get("_id")) {
                if !matches!(id, bson::Bson::Array(_)) {
                    assert!(
                        values_equal(pinned, id),
                        "{{_id: {pinned}}} matched _id {id}"
                    );
                }
            }
        }
    }
    let _ = filter.constraints();
    let _ = filter.is_match_all();
    if !any_error {
        if let Ok(counted) = engine::count(documents.iter(), filter) {
            assert_eq!(counted, matched, "count disagrees with matches");
        }
    }
    for field in ["a", "_id", "c.0", "arr.x", "d.f.g"] {
        let _ = engine::distinct(documents.iter(), field, filter);
    }
}
