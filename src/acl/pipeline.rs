//! Aggregation pipelines under ACL. The command puts the caller's read filter in front
//! of the pipeline; this module makes every OTHER collection the pipeline reads carry
//! the same restriction:
//!
//! - `$lookup` (also inside `$lookup` pipelines and `$facet`): the foreign collection's
//!   ACL `$match` becomes the first stage of the lookup's `pipeline`. A
//!   `localField`/`foreignField` lookup keeps its fields and gains the `pipeline` too
//!   (MongoDB 5+ and the embedded engine run both together: the equality join, then the
//!   pipeline on the joined documents).
//! - `$unionWith`: the same, on its `pipeline`. Without `coll` (MongoDB 6's
//!   `$documents` sub-pipelines) there is no collection to restrict: admins only.
//! - Every other stage is checked against an ALLOWLIST ([`CLIENT_STAGES`]), at every
//!   depth (`$facet`, `$lookup.pipeline`, `$unionWith.pipeline`): stages that only
//!   transform the documents flowing through. Anything else — `$graphLookup`
//!   (recursive reads that cannot carry a per-hop filter), `$out` and `$merge`
//!   (writes), `$documents`, the stages that read server state (`$currentOp`,
//!   `$collStats`, …) and any stage a future MongoDB adds — is for admins only.
//!
//! What goes in front of each foreign read is decided by the caller (`prefixes`): the
//! ACL match, a `queryas` match, and for `users` an `$unset` of `passwordhash`.

use std::collections::HashMap;

use bson::{doc, Bson, Document};

use crate::error::OpenCoreError;
use crate::store::engine::limits::{LimitError, MAX_PIPELINE_NESTING};

/// Stages every signed-in user may run: the embedded engine's stages and the
/// MongoDB stages that only read the documents flowing through the pipeline (or,
/// for `$lookup`/`$unionWith` with a collection, a collection given its ACL
/// prefix). Everything else is for admins only.
pub const CLIENT_STAGES: &[&str] = &[
    "$addFields",
    "$bucket",
    "$bucketAuto",
    "$count",
    "$densify",
    "$facet",
    "$fill",
    "$geoNear",
    "$group",
    "$limit",
    "$lookup",
    "$match",
    "$project",
    "$redact",
    "$replaceRoot",
    "$replaceWith",
    "$sample",
    "$set",
    "$setWindowFields",
    "$skip",
    "$sort",
    "$sortByCount",
    "$unionWith",
    "$unset",
    "$unwind",
];

fn admins_only(what: &str) -> OpenCoreError {
    OpenCoreError::AccessDeniedBecause(format!("{what} is only allowed for admins"))
}

/// Sub-pipelines nest at most as deep as the engine runs them.
fn check_nesting(depth: usize) -> Result<(), OpenCoreError> {
    if depth > MAX_PIPELINE_NESTING {
        return Err(
            LimitError::too_deep("The pipeline's sub-pipelines", MAX_PIPELINE_NESTING).into(),
        );
    }
    Ok(())
}

/// Stages to put in front of every read of a collection, by collection name.
pub type Prefixes = HashMap<String, Vec<Document>>;

fn stage_of(stage: &Document) -> Result<(&str, &Bson), OpenCoreError> {
    match (stage.len(), stage.iter().next()) {
        (1, Some((name, arg))) => Ok((name.as_str(), arg)),
        _ => Err(OpenCoreError::BadRequest(
            "A pipeline stage specification object must contain exactly one field.".into(),
        )),
    }
}

fn sub_pipeline(value: Option<&Bson>) -> Result<Vec<Document>, OpenCoreError> {
    match value {
        None => Ok(Vec::new()),
        Some(Bson::Array(stages)) => stages
            .iter()
            .map(|s| match s {
                Bson::Document(d) => Ok(d.clone()),
                _ => Err(OpenCoreError::BadRequest(
                    "pipeline stages must be objects".into(),
                )),
            })
            .collect(),
        Some(_) => Err(OpenCoreError::BadRequest(
            "a sub-pipeline must be an array".into(),
        )),
    }
}

/// The collection a `$lookup` reads (`from` as a name or `{db, coll}`).
fn lookup_from(arg: &Document) -> Option<(Option<&Bson>, String)> {
    match arg.get("from") {
        Some(Bson::String(name)) => Some((None, name.clone())),
        Some(Bson::Document(target)) => target
            .get_str("coll")
            .ok()
            .map(|c| (target.get("db"), c.to_string())),
        _ => None,
    }
}

fn union_target(arg: &Bson) -> Option<String> {
    match arg {
        Bson::String(name) => Some(name.clone()),
        Bson::Document(d) => d.get_str("coll").ok().map(str::to_string),
        _ => None,
    }
}

/// Every collection the pipeline reads besides its own, at any depth.
pub fn foreign_collections(stages: &[Document]) -> Result<Vec<String>, OpenCoreError> {
    let mut out = Vec::new();
    collect(stages, &mut out, 0)?;
    Ok(out)
}

fn collect(stages: &[Document], out: &mut Vec<String>, depth: usize) -> Result<(), OpenCoreError> {
    check_nesting(depth)?;
    let push = |name: String, out: &mut Vec<String>| {
        if !out.contains(&name) {
            out.push(name);
        }
    };
    for stage in stages {
        let (name, arg) = stage_of(stage)?;
        match (name, arg) {
            ("$lookup", Bson::Document(lookup)) => {
                if let Some((_, from)) = lookup_from(lookup) {
                    push(from, out);
                }
                collect(&sub_pipeline(lookup.get("pipeline"))?, out, depth + 1)?;
            }
            ("$unionWith", arg) => {
                if let Some(coll) = union_target(arg) {
                    push(coll, out);
                }
                if let Bson::Document(d) = arg {
                    collect(&sub_pipeline(d.get("pipeline"))?, out, depth + 1)?;
                }
            }
            ("$facet", Bson::Document(facets)) => {
                for (_, sub) in facets {
                    collect(&sub_pipeline(Some(sub))?, out, depth + 1)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Rewrites `stages` so every foreign read starts with its prefix, and refuses
/// stages outside [`CLIENT_STAGES`] for non-admins, at any depth.
pub fn restrict(
    stages: Vec<Document>,
    admin: bool,
    prefixes: &Prefixes,
) -> Result<Vec<Document>, OpenCoreError> {
    restrict_nested(stages, admin, prefixes, 0)
}

fn restrict_nested(
    stages: Vec<Document>,
    admin: bool,
    prefixes: &Prefixes,
    depth: usize,
) -> Result<Vec<Document>, OpenCoreError> {
    check_nesting(depth)?;
    let restrict = |stages, admin, prefixes| restrict_nested(stages, admin, prefixes, depth + 1);
    let mut out = Vec::with_capacity(stages.len());
    for stage in stages {
        let (name, arg) = stage_of(&stage)?;
        if !admin && !CLIENT_STAGES.contains(&name) {
            return Err(admins_only(name));
        }
        let rewritten = match (name, arg) {
            ("$lookup", Bson::Document(lookup)) => {
                let mut lookup = lookup.clone();
                let inner = restrict(sub_pipeline(lookup.get("pipeline"))?, admin, prefixes)?;
                let prefix = match lookup_from(&lookup) {
                    Some((Some(_db), _)) if !admin => {
                        return Err(OpenCoreError::AccessDeniedBecause(
                            "$lookup into another database is only allowed for admins".into(),
                        ))
                    }
                    Some((_, from)) => prefixes.get(&from).cloned().unwrap_or_default(),
                    None => Vec::new(),
                };
                if !prefix.is_empty() || lookup.contains_key("pipeline") {
                    let pipeline: Vec<Bson> = prefix
                        .into_iter()
                        .chain(inner)
                        .map(Bson::Document)
                        .collect();
                    lookup.insert("pipeline", pipeline);
                }
                doc! {"$lookup": lookup}
            }
            ("$unionWith", arg) => {
                let Some(coll) = union_target(arg) else {
                    if !admin {
                        return Err(admins_only("$unionWith without coll"));
                    }
                    out.push(stage.clone());
                    continue;
                };
                let (mut spec, inner) = match arg {
                    Bson::Document(d) => (
                        d.clone(),
                        restrict(sub_pipeline(d.get("pipeline"))?, admin, prefixes)?,
                    ),
                    _ => (doc! {"coll": &coll}, Vec::new()),
                };
                let prefix = prefixes.get(&coll).cloned().unwrap_or_default();
                if !prefix.is_empty() || spec.contains_key("pipeline") {
                    let pipeline: Vec<Bson> = prefix
                        .into_iter()
                        .chain(inner)
                        .map(Bson::Document)
                        .collect();
                    spec.insert("pipeline", pipeline);
                }
                doc! {"$unionWith": spec}
            }
            ("$facet", Bson::Document(facets)) => {
                let mut rewritten = Document::new();
                for (key, sub) in facets {
                    let inner = restrict(sub_pipeline(Some(sub))?, admin, prefixes)?;
                    rewritten.insert(
                        key.clone(),
                        inner.into_iter().map(Bson::Document).collect::<Vec<_>>(),
                    );
                }
                doc! {"$facet": rewritten}
            }
            _ => stage.clone(),
        };
        out.push(rewritten);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefixes() -> Prefixes {
        let mut p = Prefixes::new();
        p.insert("secret".into(), vec![doc! {"$match": {"acl": 1}}]);
        p
    }

    #[test]
    fn lookups_get_the_foreign_acl() {
        let stages = vec![
            doc! {"$lookup": {"from": "secret", "localField": "a", "foreignField": "b", "as": "x"}},
            doc! {"$facet": {"f": [{"$lookup": {"from": "secret", "pipeline": [{"$match": {"y": 1}}], "as": "z"}}]}},
            doc! {"$unionWith": "secret"},
            doc! {"$lookup": {"from": "open", "localField": "a", "foreignField": "b", "as": "o"}},
        ];
        assert_eq!(foreign_collections(&stages).unwrap(), ["secret", "open"]);
        let out = restrict(stages, false, &prefixes()).unwrap();
        assert_eq!(
            out[0],
            doc! {"$lookup": {"from": "secret", "localField": "a", "foreignField": "b", "as": "x", "pipeline": [{"$match": {"acl": 1}}]}}
        );
        assert_eq!(
            out[1],
            doc! {"$facet": {"f": [{"$lookup": {"from": "secret", "pipeline": [{"$match": {"acl": 1}}, {"$match": {"y": 1}}], "as": "z"}}]}}
        );
        assert_eq!(
            out[2],
            doc! {"$unionWith": {"coll": "secret", "pipeline": [{"$match": {"acl": 1}}]}}
        );
        assert_eq!(
            out[3],
            doc! {"$lookup": {"from": "open", "localField": "a", "foreignField": "b", "as": "o"}}
        );
    }

    #[test]
    fn admin_only_stages() {
        for stage in [
            doc! {"$out": "x"},
            doc! {"$merge": {"into": "x"}},
            doc! {"$graphLookup": {}},
        ] {
            let err = restrict(vec![stage.clone()], false, &Prefixes::new()).unwrap_err();
            assert!(err.to_string().starts_with("Access denied, $"), "{err}");
            assert!(restrict(vec![stage], true, &Prefixes::new()).is_ok());
        }
        let nested = vec![doc! {"$lookup": {"from": "a", "as": "b", "pipeline": [{"$out": "x"}]}}];
        assert!(restrict(nested, false, &Prefixes::new()).is_err());
    }

    #[test]
    fn stages_are_allowlisted_at_every_depth() {
        let refused = [
            doc! {"$documents": [{"a": 1}]},
            doc! {"$queryStats": {}},
            doc! {"$someFutureStage": {}},
            doc! {"$facet": {"f": [{"$listSampledQueries": {}}]}},
            doc! {"$lookup": {"from": "a", "as": "b", "pipeline": [{"$facet": {"g": [{"$documents": []}]}}]}},
            doc! {"$unionWith": {"coll": "a", "pipeline": [{"$currentOp": {}}]}},
            doc! {"$unionWith": {"pipeline": [{"$documents": [{"a": 1}]}]}},
        ];
        for stage in refused {
            let err = restrict(vec![stage.clone()], false, &Prefixes::new()).unwrap_err();
            assert_eq!(err.code(), 3010, "{stage}");
            assert!(
                err.to_string().ends_with("is only allowed for admins"),
                "{err}"
            );
            assert!(restrict(vec![stage], true, &Prefixes::new()).is_ok());
        }
        let everyday: Vec<Document> = CLIENT_STAGES
            .iter()
            .filter(|s| !matches!(**s, "$lookup" | "$unionWith" | "$facet"))
            .map(|s| doc! {*s: {}})
            .chain([doc! {"$facet": {"f": [{"$match": {}}, {"$sortByCount": "$a"}]}}])
            .collect();
        assert!(restrict(everyday, false, &Prefixes::new()).is_ok());
    }

    #[test]
    fn sub_pipeline_nesting_is_bounded() {
        let mut stage = doc! {"$match": {}};
        for _ in 0..=MAX_PIPELINE_NESTING {
            stage = doc! {"$facet": {"f": [stage]}};
        }
        let err = restrict(vec![stage.clone()], true, &Prefixes::new()).unwrap_err();
        assert_eq!(err.code(), 2021);
        assert!(foreign_collections(&[stage]).is_err());
    }
}
