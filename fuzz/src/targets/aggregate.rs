//! Target 6: an `aggregates` string handled as the `aggregate` command does (JSON
//! array of stages, JavaScript guard, ACL rewrite of every foreign read for a
//! non-admin, ACL `$match` in front, default `$limit`), parsed into a `Pipeline` and
//! run over the fixed documents, with the same documents as every foreign collection.
//!
//! Properties: every collection the engine would read was seen by the ACL rewrite (so
//! got its read filter); the run returns at most the default limit when the pipeline
//! has no `$limit` of its own; results serialise to reply JSON; nothing panics.

use std::collections::HashMap;

use bson::{doc, Document};
use opencore::acl::pipeline::{foreign_collections, restrict, Prefixes};
use opencore::documents::{guard, json, output};
use opencore::store::engine::Pipeline;

/// What the command appends to pipelines without a `$limit`.
const DEFAULT_LIMIT: i32 = 500;

/// Line 0: the pipeline. Lines 1..: extra documents.
/// The aggregation byte budget the target runs under, in megabytes.
const AGGREGATE_BUDGET_MB: u64 = 16;

pub fn run(data: &[u8]) {
    let lines = super::input::lines(data);
    let Some(text) = lines.first() else {
        return;
    };
    let Ok(stages) = json::parse_documents("aggregates", text) else {
        return;
    };
    if guard::refuse_javascript_in(&stages).is_err() {
        return;
    }
    let has_limit = text.contains("$limit");
    check(stages, has_limit, &super::input::documents(&lines[1..]));
}

/// The ACL match the command puts in front of each read.
fn acl_match() -> Document {
    doc! {"$match": {"$or": [{"_acl": {"$exists": false}}, {"_acl._id": "5a1702fa245d9013697656fb"}]}}
}

/// Runs `stages` the way the `aggregate` command does, for a non-admin caller.
pub fn check(stages: Vec<Document>, has_limit: bool, documents: &[Document]) {
    let Ok(foreign) = foreign_collections(&stages) else {
        return;
    };
    let prefixes: Prefixes = foreign
        .iter()
        .map(|name| (name.clone(), vec![acl_match()]))
        .collect();
    let Ok(body) = restrict(stages, false, &prefixes) else {
        return;
    };
    let mut full = vec![acl_match()];
    full.extend(body);
    if !has_limit {
        full.push(doc! {"$limit": DEFAULT_LIMIT});
    }
    let Ok(pipeline) = Pipeline::parse(&full) else {
        return;
    };
    for read in pipeline.foreign_collections() {
        assert!(
            foreign.contains(&read),
            "the engine reads '{read}', which the ACL rewrite did not see (saw {foreign:?})"
        );
    }
    let sources: HashMap<String, Vec<Document>> = foreign
        .iter()
        .map(|name| (name.clone(), documents.to_vec()))
        .collect();
    // Under a byte budget, as the server runs every aggregation (`--max-aggregate-mb`;
    // small here so that inputs whose output grows exponentially fail fast).
    if let Ok(results) = pipeline.run_with_budget(documents.to_vec(), &sources, AGGREGATE_BUDGET_MB)
    {
        if !has_limit {
            assert!(
                results.len() <= DEFAULT_LIMIT as usize,
                "default $limit exceeded"
            );
        }
        let _ = output::documents_to_json(&results);
    }
}
