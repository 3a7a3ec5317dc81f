//! Aggregation pipelines.
//!
//! [`Pipeline::parse`] validates every stage up front; [`Pipeline::run`]
//! streams documents through the stages. Foreign collections (`$lookup`) are
//! read through the caller's [`ForeignSource`], never from storage directly,
//! so the caller can enforce access control (see
//! [`Pipeline::foreign_collections`]).

pub mod accumulator;
pub mod expression;

#[cfg(test)]
mod tests;

use std::collections::HashMap;

use bson::{Bson, Document};

use self::accumulator::{Acc, AccKind, AccSpec};
use self::expression::{Expr, Vars};
use super::budget::{self, HeldDocs};
use super::compare::{fmt_bson, fmt_doc, hash_key, type_name, Num};
use super::error::EngineError;
use super::filter::{Filter, MatchCtx};
use super::limits::{self, LimitError, MAX_PIPELINE_NESTING, MAX_PIPELINE_STAGES};
use super::path::{walk, FieldPath};
use super::projection::Projection;
use super::sort::SortSpec;
use super::Result;

/// Supplies the documents of other collections for `$lookup`. The caller
/// implements it (and applies its ACLs); the engine never reads storage.
pub trait ForeignSource {
    fn collection(&self, name: &str) -> std::result::Result<Vec<Document>, EngineError>;
}

/// A [`ForeignSource`] with no collections: `$lookup` fails with an error.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoForeign;

impl ForeignSource for NoForeign {
    fn collection(&self, name: &str) -> std::result::Result<Vec<Document>, EngineError> {
        Err(EngineError::Foreign(format!(
            "collection '{name}' is not available to $lookup"
        )))
    }
}

/// Foreign collections given as a map (handy for tests and small callers).
impl ForeignSource for HashMap<String, Vec<Document>> {
    fn collection(&self, name: &str) -> std::result::Result<Vec<Document>, EngineError> {
        Ok(self.get(name).cloned().unwrap_or_default())
    }
}

/// A parsed aggregation pipeline.
#[derive(Debug, Clone)]
pub struct Pipeline {
    stages: Vec<Stage>,
}

#[derive(Debug, Clone)]
enum Stage {
    Match(Filter),
    Project(Projection),
    AddFields(Projection),
    Group(Box<Group>),
    Sort(SortSpec),
    Skip(u64),
    Limit(u64),
    Unwind(Unwind),
    Count(String),
    ReplaceRoot(Expr),
    Lookup(Box<Lookup>),
    SortByCount(Expr),
    Facet(Vec<(String, Pipeline)>),
}

#[derive(Debug, Clone)]
struct Group {
    id: Expr,
    accs: Vec<AccSpec>,
}

#[derive(Debug, Clone)]
struct Unwind {
    path: Vec<String>,
    include_index: Option<Vec<String>>,
    preserve: bool,
}

#[derive(Debug, Clone)]
struct Lookup {
    from: String,
    as_path: Vec<String>,
    local: Option<FieldPath>,
    foreign: Option<FieldPath>,
    lets: Vec<(String, Expr)>,
    pipeline: Option<Pipeline>,
}

/// Stages MongoDB has that write or read other collections on their own; the
/// server decides whether to run them (admins only / refuse).
const RESTRICTED_STAGES: &[&str] = &["$out", "$merge", "$unionWith", "$graphLookup"];

/// Real MongoDB stages this engine does not implement.
const UNSUPPORTED_STAGES: &[&str] = &[
    "$sample",
    "$bucket",
    "$bucketAuto",
    "$densify",
    "$fill",
    "$geoNear",
    "$indexStats",
    "$collStats",
    "$redact",
    "$setWindowFields",
    "$search",
    "$searchMeta",
    "$changeStream",
    "$currentOp",
    "$listSessions",
    "$listLocalSessions",
    "$documents",
    "$planCacheStats",
    "$vectorSearch",
];

fn field_name_of_path(s: &str, what: &str) -> Result<Vec<String>> {
    if s.is_empty() || s.starts_with('$') {
        return Err(EngineError::bad(format!(
            "{what} must be a non-empty field name not starting with '$'"
        )));
    }
    super::limits::check_path(s)?;
    let parts: Vec<String> = s.split('.').map(str::to_string).collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(EngineError::bad(format!(
            "FieldPath field names may not be empty strings: '{s}'"
        )));
    }
    Ok(parts)
}

impl Pipeline {
    /// Parses and validates all stages.
    pub fn parse(stages: &[Document]) -> Result<Pipeline> {
        Pipeline::parse_nested(stages, 0)
    }

    fn parse_nested(stages: &[Document], depth: usize) -> Result<Pipeline> {
        if depth > MAX_PIPELINE_NESTING {
            return Err(
                LimitError::too_deep("The pipeline's sub-pipelines", MAX_PIPELINE_NESTING).into(),
            );
        }
        if stages.len() > MAX_PIPELINE_STAGES {
            return Err(EngineError::bad(format!(
                "Pipeline length must be no longer than {MAX_PIPELINE_STAGES} stages"
            )));
        }
        let mut out = Vec::with_capacity(stages.len());
        for s in stages {
            if s.len() != 1 {
                return Err(EngineError::bad(format!(
                    "A pipeline stage specification object must contain exactly one field. Found: {}",
                    fmt_doc(s)
                )));
            }
            let Some((name, arg)) = s.iter().next() else {
                return Err(EngineError::bad(
                    "A pipeline stage specification object must contain exactly one field.",
                ));
            };
            out.push(parse_stage(name, arg, depth)?);
        }
        Ok(Pipeline { stages: out })
    }

    /// Names of all collections this pipeline reads via `$lookup` (including
    /// nested `$lookup`/`$facet` pipelines), deduplicated, in first-seen order.
    pub fn foreign_collections(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.collect_foreign(&mut out);
        out
    }

    fn collect_foreign(&self, out: &mut Vec<String>) {
        for s in &self.stages {
            match s {
                Stage::Lookup(l) => {
                    if !out.contains(&l.from) {
                        out.push(l.from.clone());
                    }
                    if let Some(p) = &l.pipeline {
                        p.collect_foreign(out);
                    }
                }
                Stage::Facet(fs) => fs.iter().for_each(|(_, p)| p.collect_foreign(out)),
                _ => {}
            }
        }
    }

    /// Runs the pipeline over `input` with no byte budget (documents are
    /// still depth-checked and expression values capped).
    pub fn run(&self, input: Vec<Document>, foreign: &dyn ForeignSource) -> Result<Vec<Document>> {
        self.run_with_budget(input, foreign, 0)
    }

    /// Runs the pipeline over `input` holding at most `limit_mb` megabytes
    /// of documents and built values at any time (0 = unlimited); past it
    /// the run fails with [`LimitError::Memory`] (see [`super::budget`]).
    pub fn run_with_budget(
        &self,
        input: Vec<Document>,
        foreign: &dyn ForeignSource,
        limit_mb: u64,
    ) -> Result<Vec<Document>> {
        budget::with_budget(limit_mb, || {
            self.run_with_vars(input, foreign, &Vars::default())
        })
    }

    /// Runs with user variables in scope (`$lookup` `let`).
    pub fn run_with_vars(
        &self,
        input: Vec<Document>,
        foreign: &dyn ForeignSource,
        vars: &Vars,
    ) -> Result<Vec<Document>> {
        let held = self.run_held(input, foreign, vars)?;
        budget::release(held.bytes);
        Ok(held.docs)
    }

    /// Runs the stages, each one's output charged to the budget as it is
    /// produced and its input released once consumed. The result is still
    /// charged (the caller keeps it).
    fn run_held(
        &self,
        input: Vec<Document>,
        foreign: &dyn ForeignSource,
        vars: &Vars,
    ) -> Result<HeldDocs> {
        let mut held = HeldDocs::hold_all(input)?;
        let mut i = 0;
        while i < self.stages.len() {
            // $sort immediately followed by $limit: partial top-k sort.
            if let (Stage::Sort(spec), Some(Stage::Limit(n))) =
                (&self.stages[i], self.stages.get(i + 1))
            {
                let top = (*n).min(usize::MAX as u64) as usize;
                let mut docs = std::mem::take(&mut held.docs);
                sorting(spec, docs.len().min(top), || spec.sort_top(&mut docs, top))?;
                budget::release(held.bytes);
                held = HeldDocs::hold_all(docs)?;
                i += 2;
                continue;
            }
            let input_bytes = held.bytes;
            held = run_stage(&self.stages[i], held, foreign, vars)?;
            budget::release(input_bytes);
            i += 1;
        }
        Ok(held)
    }
}

/// Runs a sort of `n` documents with its working set (keys and
/// permutation) charged; running out of budget here is a sort error.
fn sorting(spec: &SortSpec, n: usize, sort: impl FnOnce()) -> Result<()> {
    let working = (n as u64).saturating_mul(16 * (spec.keys().count() as u64 + 1));
    budget::charge(working).map_err(|err| match err {
        LimitError::Memory { limit_mb } => LimitError::SortMemory { limit_mb },
        other => other,
    })?;
    sort();
    budget::release(working);
    Ok(())
}

fn parse_stage(name: &str, arg: &Bson, depth: usize) -> Result<Stage> {
    let want_doc = |what: &str| -> Result<&Document> {
        match arg {
            Bson::Document(d) => Ok(d),
            _ => Err(EngineError::bad(format!(
                "the {what} specification must be an object"
            ))),
        }
    };
    Ok(match name {
        "$match" => {
            let Bson::Document(d) = arg else {
                return Err(EngineError::bad(
                    "the match filter must be an expression in an object",
                ));
            };
            Stage::Match(Filter::parse(d)?)
        }
        "$project" => Stage::Project(Projection::parse_project_stage(want_doc("$project")?)?),
        "$addFields" | "$set" => {
            let d = want_doc(name)?;
            if d.is_empty() {
                return Err(EngineError::bad(format!(
                    "Invalid {name} :: caused by :: specification must have at least one field"
                )));
            }
            Stage::AddFields(Projection::parse_add_fields(d)?)
        }
        "$unset" => {
            let paths: Vec<String> = match arg {
                Bson::String(s) => vec![s.clone()],
                Bson::Array(a) if !a.is_empty() => a
                    .iter()
                    .map(|x| match x {
                        Bson::String(s) => Ok(s.clone()),
                        _ => Err(EngineError::bad("$unset specification must be a string or an array containing only string values")),
                    })
                    .collect::<Result<_>>()?,
                _ => return Err(EngineError::bad("$unset specification must be a string or an array with at least one field")),
            };
            Stage::Project(Projection::exclusion_of(&paths)?)
        }
        "$group" => {
            let d = want_doc("$group")?;
            let mut id = None;
            let mut accs = Vec::new();
            for (k, v) in d {
                if k == "_id" {
                    id = Some(Expr::parse(v)?);
                } else {
                    if k.contains('.') {
                        return Err(EngineError::bad(format!(
                            "The field name '{k}' cannot contain '.'"
                        )));
                    }
                    if k.starts_with('$') {
                        return Err(EngineError::bad(format!(
                            "The field name '{k}' cannot be an operator name"
                        )));
                    }
                    accs.push(AccSpec::parse(k, v)?);
                }
            }
            let id =
                id.ok_or_else(|| EngineError::bad("a group specification must include an _id"))?;
            Stage::Group(Box::new(Group { id, accs }))
        }
        "$sort" => Stage::Sort(SortSpec::parse(want_doc("$sort")?)?),
        "$skip" => {
            let n = Num::from_bson(arg).and_then(|n| n.as_exact_i64());
            match n {
                Some(n) if n >= 0 => Stage::Skip(n as u64),
                _ => {
                    return Err(EngineError::bad(format!(
                    "invalid argument to $skip stage: Expected a non-negative number in: $skip: {}",
                    fmt_bson(arg)
                )))
                }
            }
        }
        "$limit" => {
            let n = Num::from_bson(arg).and_then(|n| n.as_exact_i64());
            match n {
                Some(n) if n > 0 => Stage::Limit(n as u64),
                Some(_) => return Err(EngineError::bad("the limit must be positive")),
                None => return Err(EngineError::bad("the limit must be specified as a number")),
            }
        }
        "$unwind" => Stage::Unwind(parse_unwind(arg)?),
        "$count" => {
            let Bson::String(s) = arg else {
                return Err(EngineError::bad(
                    "the count field must be a non-empty string",
                ));
            };
            if s.is_empty() {
                return Err(EngineError::bad(
                    "the count field must be a non-empty string",
                ));
            }
            if s.starts_with('$') {
                return Err(EngineError::bad(
                    "the count field cannot be a $-prefixed path",
                ));
            }
            if s.contains('.') {
                return Err(EngineError::bad("the count field cannot contain '.'"));
            }
            Stage::Count(s.clone())
        }
        "$replaceRoot" => {
            let d = want_doc("$replaceRoot")?;
            let nr = d.get("newRoot").ok_or_else(|| {
                EngineError::bad("no newRoot specified for the $replaceRoot stage")
            })?;
            if d.len() != 1 {
                return Err(EngineError::bad(
                    "$replaceRoot only takes a 'newRoot' field",
                ));
            }
            Stage::ReplaceRoot(Expr::parse(nr)?)
        }
        "$replaceWith" => Stage::ReplaceRoot(Expr::parse(arg)?),
        "$lookup" => Stage::Lookup(Box::new(parse_lookup(want_doc("$lookup")?, depth)?)),
        "$sortByCount" => {
            match arg {
                Bson::String(s) if s.starts_with('$') => {}
                Bson::Document(d) if d.keys().next().is_some_and(|k| k.starts_with('$')) => {}
                _ => return Err(EngineError::bad(
                    "the sortByCount field must be defined as a $-prefixed path or an expression",
                )),
            }
            Stage::SortByCount(Expr::parse(arg)?)
        }
        "$facet" => {
            let d = want_doc("$facet")?;
            if d.is_empty() {
                return Err(EngineError::bad(
                    "the $facet specification must be a non-empty object",
                ));
            }
            let mut facets = Vec::new();
            for (k, v) in d {
                let Bson::Array(stages) = v else {
                    return Err(EngineError::bad(format!(
                        "arguments to $facet must be arrays, {k} is type {}",
                        type_name(v)
                    )));
                };
                let docs: Vec<Document> = stages
                    .iter()
                    .map(|s| match s {
                        Bson::Document(d) => Ok(d.clone()),
                        _ => Err(EngineError::bad("subpipeline stages must be objects")),
                    })
                    .collect::<Result<_>>()?;
                for sd in &docs {
                    if let Some(n) = sd.keys().next() {
                        if matches!(n.as_str(), "$facet" | "$out" | "$merge") {
                            return Err(EngineError::bad(format!(
                                "{n} is not allowed to be used within a $facet stage"
                            )));
                        }
                    }
                }
                facets.push((k.clone(), Pipeline::parse_nested(&docs, depth + 1)?));
            }
            Stage::Facet(facets)
        }
        n if RESTRICTED_STAGES.contains(&n) => {
            return Err(EngineError::StageNotAllowed(n.to_string()))
        }
        n if UNSUPPORTED_STAGES.contains(&n) => {
            return Err(EngineError::Unsupported(n.to_string()))
        }
        "$where" | "$function" | "$accumulator" => {
            return Err(EngineError::JavaScriptNotAllowed(name.to_string()))
        }
        other => return Err(EngineError::UnrecognizedStage(other.to_string())),
    })
}

fn parse_unwind(arg: &Bson) -> Result<Unwind> {
    let (path, idx, preserve) = match arg {
        Bson::String(s) => (s.clone(), None, false),
        Bson::Document(d) => {
            let mut path = None;
            let mut idx = None;
            let mut preserve = false;
            for (k, v) in d {
                match (k.as_str(), v) {
                    ("path", Bson::String(s)) => path = Some(s.clone()),
                    ("path", _) => return Err(EngineError::bad("expected a string as the path for $unwind stage")),
                    ("includeArrayIndex", Bson::String(s)) => {
                        if s.is_empty() || s.starts_with('$') {
                            return Err(EngineError::bad(format!(
                                "includeArrayIndex option to $unwind stage should not be prefixed with a '$': {s}"
                            )));
                        }
                        idx = Some(field_name_of_path(s, "includeArrayIndex")?);
                    }
                    ("includeArrayIndex", _) => {
                        return Err(EngineError::bad("expected a non-empty string for the includeArrayIndex option to $unwind stage"))
                    }
                    ("preserveNullAndEmptyArrays", Bson::Boolean(b)) => preserve = *b,
                    ("preserveNullAndEmptyArrays", _) => {
                        return Err(EngineError::bad("expected a boolean for the preserveNullAndEmptyArrays option to $unwind stage"))
                    }
                    (other, _) => return Err(EngineError::bad(format!("unrecognized option to $unwind stage: {other}"))),
                }
            }
            let path =
                path.ok_or_else(|| EngineError::bad("no path specified to $unwind stage"))?;
            (path, idx, preserve)
        }
        _ => {
            return Err(EngineError::bad(format!(
                "expected either a string or an object as specification for $unwind stage, got {}",
                type_name(arg)
            )))
        }
    };
    let Some(p) = path.strip_prefix('$') else {
        return Err(EngineError::bad(format!(
            "path option to $unwind stage should be prefixed with a '$': {path}"
        )));
    };
    Ok(Unwind {
        path: field_name_of_path(p, "$unwind path")?,
        include_index: idx,
        preserve,
    })
}

fn parse_lookup(d: &Document, depth: usize) -> Result<Lookup> {
    let mut from = None;
    let mut as_path = None;
    let mut local = None;
    let mut foreign = None;
    let mut lets = Vec::new();
    let mut pipeline = None;
    for (k, v) in d {
        match k.as_str() {
            "from" => match v {
                Bson::String(s) => from = Some(s.clone()),
                Bson::Document(fd) => match (fd.get("db"), fd.get("coll")) {
                    (_, Some(Bson::String(c))) => from = Some(c.clone()),
                    _ => {
                        return Err(EngineError::bad(
                            "$lookup 'from' field must be a string or {db, coll}",
                        ))
                    }
                },
                _ => {
                    return Err(EngineError::FailedToParse(format!(
                        "$lookup 'from' field must be a string, but found {}",
                        type_name(v)
                    )))
                }
            },
            "as" => match v {
                Bson::String(s) => as_path = Some(field_name_of_path(s, "$lookup 'as'")?),
                _ => {
                    return Err(EngineError::FailedToParse(
                        "$lookup argument 'as' must be a string".into(),
                    ))
                }
            },
            "localField" => match v {
                Bson::String(s) => local = Some(FieldPath::parse(s)?),
                _ => {
                    return Err(EngineError::FailedToParse(
                        "$lookup argument 'localField' must be a string".into(),
                    ))
                }
            },
            "foreignField" => match v {
                Bson::String(s) => foreign = Some(FieldPath::parse(s)?),
                _ => {
                    return Err(EngineError::FailedToParse(
                        "$lookup argument 'foreignField' must be a string".into(),
                    ))
                }
            },
            "let" => {
                let Bson::Document(ld) = v else {
                    return Err(EngineError::FailedToParse(
                        "$lookup argument 'let' must be an object".into(),
                    ));
                };
                for (name, e) in ld {
                    if !name.starts_with(|c: char| c.is_ascii_lowercase() || !c.is_ascii()) {
                        return Err(EngineError::bad(format!(
                            "'{name}' starts with an invalid character for a user variable name"
                        )));
                    }
                    lets.push((name.clone(), Expr::parse(e)?));
                }
            }
            "pipeline" => {
                let Bson::Array(stages) = v else {
                    return Err(EngineError::FailedToParse(
                        "$lookup argument 'pipeline' must be an array".into(),
                    ));
                };
                let docs: Vec<Document> = stages
                    .iter()
                    .map(|s| match s {
                        Bson::Document(d) => Ok(d.clone()),
                        _ => Err(EngineError::bad("$lookup pipeline stages must be objects")),
                    })
                    .collect::<Result<_>>()?;
                pipeline = Some(Pipeline::parse_nested(&docs, depth + 1)?);
            }
            other => {
                return Err(EngineError::FailedToParse(format!(
                    "unknown argument to $lookup: {other}"
                )))
            }
        }
    }
    let from = from.ok_or_else(|| {
        EngineError::FailedToParse("missing 'from' option to $lookup stage specification".into())
    })?;
    let as_path = as_path.ok_or_else(|| {
        EngineError::FailedToParse("must specify 'as' field for a $lookup".into())
    })?;
    if local.is_some() != foreign.is_some() {
        return Err(EngineError::FailedToParse(
            "$lookup requires both or neither of 'localField' and 'foreignField' to be specified"
                .into(),
        ));
    }
    if local.is_none() && pipeline.is_none() {
        return Err(EngineError::FailedToParse(
            "$lookup requires either 'pipeline' or both 'localField' and 'foreignField' to be specified".into(),
        ));
    }
    Ok(Lookup {
        from,
        as_path,
        local,
        foreign,
        lets,
        pipeline,
    })
}

/// Runs one stage over `held` (charged); returns its output, charged as it
/// was produced. The caller releases the input's charge.
fn run_stage(
    s: &Stage,
    held: HeldDocs,
    foreign: &dyn ForeignSource,
    vars: &Vars,
) -> Result<HeldDocs> {
    let docs = held.docs;
    let mut out = HeldDocs::with_capacity(match s {
        Stage::Match(_) | Stage::Project(_) | Stage::AddFields(_) | Stage::ReplaceRoot(_) => {
            docs.len()
        }
        _ => 0,
    });
    match s {
        Stage::Match(f) => {
            for d in docs {
                let mut ctx = MatchCtx::new(false, Some(vars));
                let m = f.matches_ctx(&d, &mut ctx);
                if let Some(e) = ctx.err {
                    return Err(e);
                }
                if m {
                    out.push(d)?;
                }
            }
        }
        Stage::Project(p) | Stage::AddFields(p) => {
            for d in &docs {
                out.push(p.apply_with_vars(d, None, vars)?)?;
            }
        }
        Stage::Group(g) => return run_group(g, docs, vars),
        Stage::Sort(spec) => {
            // Same documents, same charge: hand it over unchanged.
            let mut docs = docs;
            sorting(spec, docs.len(), || spec.sort(&mut docs))?;
            budget::hand_over(held.bytes);
            return Ok(HeldDocs {
                docs,
                bytes: held.bytes,
            });
        }
        Stage::Skip(n) => {
            for d in docs.into_iter().skip((*n).min(usize::MAX as u64) as usize) {
                out.push(d)?;
            }
        }
        Stage::Limit(n) => {
            for d in docs.into_iter().take((*n).min(usize::MAX as u64) as usize) {
                out.push(d)?;
            }
        }
        Stage::Unwind(u) => run_unwind(u, docs, &mut out)?,
        Stage::Count(name) => {
            if docs.is_empty() {
                return Ok(out);
            }
            let mut d = Document::new();
            let n = docs.len();
            d.insert(
                name.clone(),
                if n <= i32::MAX as usize {
                    Bson::Int32(n as i32)
                } else {
                    Bson::Int64(n as i64)
                },
            );
            out.push(d)?;
        }
        Stage::ReplaceRoot(e) => {
            for d in docs {
                match e.eval(&d, vars)? {
                    Some(Bson::Document(nd)) => out.push(nd)?,
                    other => {
                        let (val, ty) = match &other {
                            Some(b) => (fmt_bson(b), type_name(b)),
                            None => ("MISSING".to_string(), "missing"),
                        };
                        return Err(EngineError::expr(format!(
                            "'newRoot' expression must evaluate to an object, but resulting value was: {val}. Type of resulting value: '{ty}'. Input document: {}",
                            fmt_doc(&d)
                        )));
                    }
                }
            }
        }
        Stage::Lookup(l) => run_lookup(l, docs, foreign, vars, &mut out)?,
        Stage::SortByCount(e) => {
            let g = Group {
                id: e.clone(),
                accs: vec![AccSpec::parse(
                    "count",
                    &Bson::Document(bson::doc! {"$sum": 1}),
                )?],
            };
            let mut counted = run_group(&g, docs, vars)?;
            let spec = SortSpec::parse(&bson::doc! {"count": -1})?;
            let n = counted.docs.len();
            sorting(&spec, n, || spec.sort(&mut counted.docs))?;
            return Ok(counted);
        }
        Stage::Facet(facets) => {
            let mut d = Document::new();
            let mut bytes = 0;
            for (name, p) in facets {
                // The copy each facet consumes is charged by the sub-run.
                let res = p.run_held(docs.clone(), foreign, vars)?;
                bytes += res.bytes;
                d.insert(
                    name.clone(),
                    Bson::Array(res.docs.into_iter().map(Bson::Document).collect()),
                );
            }
            // The facets' results are already charged; the document is them.
            budget::release(bytes);
            out.push(d)?;
        }
    }
    Ok(out)
}

/// `$group`: the group keys and what `$push`/`$addToSet` collect are charged
/// while they accumulate, then exchanged for the output documents' charge.
fn run_group(g: &Group, docs: Vec<Document>, vars: &Vars) -> Result<HeldDocs> {
    let mut index: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut groups: Vec<(Bson, Vec<Acc>)> = Vec::new();
    let mut key_buf = Vec::new();
    let mut state_bytes = 0u64;
    let mut hold = |bytes: u64| -> Result<()> {
        state_bytes += bytes;
        Ok(budget::charge(bytes)?)
    };
    for d in &docs {
        let key = g.id.eval(d, vars)?.unwrap_or(Bson::Null);
        key_buf.clear();
        hash_key(&key, &mut key_buf);
        let gi = match index.get(&key_buf) {
            Some(i) => *i,
            None => {
                hold(limits::measure(&key).bytes + key_buf.len() as u64)?;
                let accs = g.accs.iter().map(|a| Acc::new_simple(a.kind)).collect();
                groups.push((key, accs));
                index.insert(key_buf.clone(), groups.len() - 1);
                groups.len() - 1
            }
        };
        let accs = &mut groups[gi].1;
        for (spec, acc) in g.accs.iter().zip(accs.iter_mut()) {
            let value = spec.expr.eval(d, vars)?;
            if matches!(spec.kind, AccKind::Push | AccKind::AddToSet) {
                hold(value.as_ref().map_or(0, |v| limits::measure(v).bytes))?;
            }
            acc.add(value)?;
        }
    }
    drop(docs);
    drop(index);
    budget::release(state_bytes);
    let mut out = HeldDocs::with_capacity(groups.len());
    for (key, accs) in groups {
        let mut d = Document::new();
        d.insert("_id", key);
        for (spec, acc) in g.accs.iter().zip(accs) {
            d.insert(spec.name.clone(), acc.finish());
        }
        out.push(d)?;
    }
    Ok(out)
}

/// Sets a (possibly dotted) field in place, creating/overwriting
/// intermediate documents as `$unwind`/`$lookup` output fields do.
fn set_field(doc: &mut Document, path: &[String], value: Bson) {
    let Some((head, rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        doc.insert(head.clone(), value);
        return;
    }
    match doc.get_mut(head) {
        Some(Bson::Document(d)) => set_field(d, rest, value),
        _ => {
            let mut d = Document::new();
            set_field(&mut d, rest, value);
            doc.insert(head.clone(), d);
        }
    }
}

fn remove_field(doc: &mut Document, path: &[String]) {
    let Some((head, rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        doc.remove(head);
        return;
    }
    if let Some(Bson::Document(d)) = doc.get_mut(head) {
        remove_field(d, rest);
    }
}

fn get_field<'a>(doc: &'a Document, path: &[String]) -> Option<&'a Bson> {
    let (head, rest) = path.split_first()?;
    let v = doc.get(head)?;
    if rest.is_empty() {
        return Some(v);
    }
    match v {
        Bson::Document(d) => get_field(d, rest),
        _ => None,
    }
}

fn run_unwind(u: &Unwind, docs: Vec<Document>, out: &mut HeldDocs) -> Result<()> {
    for d in docs {
        match get_field(&d, &u.path) {
            Some(Bson::Array(a)) if !a.is_empty() => {
                let a = a.clone();
                for (i, e) in a.into_iter().enumerate() {
                    let mut nd = d.clone();
                    set_field(&mut nd, &u.path, e);
                    if let Some(ip) = &u.include_index {
                        set_field(&mut nd, ip, Bson::Int64(i as i64));
                    }
                    out.push(nd)?;
                }
            }
            Some(Bson::Array(_)) => {
                if u.preserve {
                    let mut nd = d;
                    remove_field(&mut nd, &u.path);
                    if let Some(ip) = &u.include_index {
                        set_field(&mut nd, ip, Bson::Null);
                    }
                    out.push(nd)?;
                }
            }
            None | Some(Bson::Null) | Some(Bson::Undefined) => {
                if u.preserve {
                    let mut nd = d;
                    if let Some(ip) = &u.include_index {
                        set_field(&mut nd, ip, Bson::Null);
                    }
                    out.push(nd)?;
                }
            }
            Some(_) => {
                // A non-array value is treated as a single-element array.
                let mut nd = d;
                if let Some(ip) = &u.include_index {
                    set_field(&mut nd, ip, Bson::Null);
                }
                out.push(nd)?;
            }
        }
    }
    Ok(())
}

/// `$lookup`: each output document (with its joined array) is charged as it
/// is produced, so a join that multiplies the input stops at the budget.
fn run_lookup(
    l: &Lookup,
    docs: Vec<Document>,
    foreign: &dyn ForeignSource,
    vars: &Vars,
    out: &mut HeldDocs,
) -> Result<()> {
    // The foreign documents are a copy held while the stage runs.
    let HeldDocs {
        docs: foreign_docs,
        bytes: foreign_bytes,
    } = HeldDocs::hold_all(foreign.collection(&l.from)?)?;
    // Equality index over the foreign field: value key -> foreign doc offsets.
    let index: Option<HashMap<Vec<u8>, Vec<usize>>> = match &l.foreign {
        Some(ff) => {
            let mut m: HashMap<Vec<u8>, Vec<usize>> = HashMap::new();
            for (i, fd) in foreign_docs.iter().enumerate() {
                let mut keys: Vec<Vec<u8>> = Vec::new();
                walk(fd, ff.parts(), true, &mut |f| {
                    let v = match f.value {
                        None | Some(Bson::Undefined) => &Bson::Null,
                        Some(v) => v,
                    };
                    let mut k = Vec::new();
                    hash_key(v, &mut k);
                    keys.push(k);
                    false
                });
                for k in keys {
                    let e = m.entry(k).or_default();
                    if e.last() != Some(&i) {
                        e.push(i);
                    }
                }
            }
            Some(m)
        }
        None => None,
    };
    for mut d in docs {
        let candidates: Vec<Document> = match (&l.local, &index) {
            (Some(lf), Some(idx)) => {
                let mut locals: Vec<&Bson> = Vec::new();
                walk(&d, lf.parts(), true, &mut |f| {
                    if let Some(v) = f.value {
                        if !f.whole_array {
                            locals.push(v);
                        }
                    }
                    false
                });
                let null = Bson::Null;
                if locals.is_empty() {
                    locals.push(&null);
                }
                let mut hits: Vec<usize> = Vec::new();
                for v in locals {
                    let v = if matches!(v, Bson::Undefined) {
                        &null
                    } else {
                        v
                    };
                    let mut k = Vec::new();
                    hash_key(v, &mut k);
                    if let Some(is) = idx.get(&k) {
                        hits.extend_from_slice(is);
                    }
                }
                hits.sort_unstable();
                hits.dedup();
                hits.into_iter().map(|i| foreign_docs[i].clone()).collect()
            }
            _ => foreign_docs.clone(),
        };
        let joined = match &l.pipeline {
            Some(p) => {
                let mut scope = vars.clone();
                for (name, e) in &l.lets {
                    let v = e.eval(&d, vars)?;
                    scope.push(name, v)?;
                }
                let joined = p.run_held(candidates, foreign, &scope)?;
                // Charged again below as part of the output document.
                budget::release(joined.bytes);
                joined.docs
            }
            None => candidates,
        };
        set_field(
            &mut d,
            &l.as_path,
            Bson::Array(joined.into_iter().map(Bson::Document).collect()),
        );
        out.push(d)?;
    }
    budget::release(foreign_bytes);
    Ok(())
}
