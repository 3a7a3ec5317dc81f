//! Update documents: replacement or operator style (`$set`, `$inc`, `$push`,
//! ...), positional `$` and `$[]`, and upsert seeding.
//!
//! Like MongoDB 5.0+, operators are applied in order of their (expanded)
//! field paths, not in the order they appear in the update; new fields are
//! appended to the document in that order.

use std::cmp::Ordering;

use bson::{Bson, Document};

use super::compare::{
    compare_bson, fmt_bson, num_add_strict, num_mul_strict, type_name, values_equal, Num,
};
use super::error::EngineError;
use super::filter::{Filter, ValueMatcher};
use super::path::parse_index;
use super::sort::SortSpec;
use super::Result;

/// A parsed update. Parse once, apply to every matched document.
#[derive(Debug, Clone)]
pub struct Update {
    kind: Kind,
}

/// Per-document context for [`Update::apply`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ApplyContext<'a> {
    /// True when applying to a freshly seeded upsert document
    /// (`$setOnInsert` applies only then).
    pub is_upsert_insert: bool,
    /// Array offset matched by the query, for the positional `$` operator.
    /// If `None` and `filter` is given, it is computed from the filter.
    pub matched_array_index: Option<usize>,
    /// The update's query filter (used to compute the positional match).
    pub filter: Option<&'a Filter>,
}

#[derive(Debug, Clone)]
enum Kind {
    Replacement(Document),
    Ops(Vec<Entry>),
}

#[derive(Debug, Clone)]
struct Entry {
    path: Vec<String>,
    op: Op,
}

#[derive(Debug, Clone)]
enum Op {
    Set(Bson),
    SetOnInsert(Bson),
    Unset,
    Inc(Bson),
    Mul(Bson),
    Min(Bson),
    Max(Bson),
    /// Stored at the destination path; holds the source path.
    Rename(Vec<String>),
    Push(Box<PushSpec>),
    AddToSet(Vec<Bson>),
    Pull(Box<PullCond>),
    PullAll(Vec<Bson>),
    Pop(bool),
    CurrentDate(bool),
}

#[derive(Debug, Clone)]
struct PushSpec {
    each: Vec<Bson>,
    slice: Option<i64>,
    sort: Option<PushSort>,
    position: Option<i64>,
}

#[derive(Debug, Clone)]
enum PushSort {
    Whole(bool),
    Fields(SortSpec),
}

#[derive(Debug, Clone)]
enum PullCond {
    Eq(Bson),
    Matcher(ValueMatcher),
    Query(Filter),
}

fn path_str(p: &[String]) -> String {
    p.join(".")
}

/// Path component order used for applying operators: numeric names in numeric
/// order, everything else bytewise.
fn cmp_component(a: &str, b: &str) -> Ordering {
    match (parse_index(a), parse_index(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ => a.as_bytes().cmp(b.as_bytes()),
    }
}

fn cmp_paths(a: &[String], b: &[String]) -> Ordering {
    for (x, y) in a.iter().zip(b.iter()) {
        let o = cmp_component(x, y);
        if o != Ordering::Equal {
            return o;
        }
    }
    a.len().cmp(&b.len())
}

fn is_prefix(a: &[String], b: &[String]) -> bool {
    a.len() <= b.len() && a.iter().zip(b.iter()).all(|(x, y)| x == y)
}

/// Order- and type-sensitive equality (MongoDB's "binary equal"), used for
/// no-op detection and `_id` immutability.
pub(crate) fn bin_eq(a: &Bson, b: &Bson) -> bool {
    match (a, b) {
        (Bson::Document(x), Bson::Document(y)) => doc_bin_eq(x, y),
        (Bson::Array(x), Bson::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y.iter()).all(|(p, q)| bin_eq(p, q))
        }
        (Bson::Double(x), Bson::Double(y)) => {
            x.to_bits() == y.to_bits() || x == y && x.is_sign_negative() == y.is_sign_negative()
        }
        _ => a == b,
    }
}

fn doc_bin_eq(x: &Document, y: &Document) -> bool {
    x.len() == y.len()
        && x.iter()
            .zip(y.iter())
            .all(|((k1, v1), (k2, v2))| k1 == k2 && bin_eq(v1, v2))
}

impl Update {
    /// Parses an update document: a replacement (no `$` keys) or operators.
    pub fn parse(update: &Document) -> Result<Update> {
        let first_is_op = update.keys().next().is_some_and(|k| k.starts_with('$'));
        if !first_is_op {
            for k in update.keys() {
                if k.starts_with('$') {
                    return Err(EngineError::bad(format!(
                        "The dollar ($) prefixed field '{k}' in '{k}' is not allowed in the context of an update's replacement document. Consider using an aggregation pipeline with $replaceWith."
                    )));
                }
            }
            return Ok(Update {
                kind: Kind::Replacement(update.clone()),
            });
        }
        let mut entries = Vec::new();
        for (modifier, arg) in update {
            let Bson::Document(fields) = arg else {
                return Err(EngineError::FailedToParse(format!(
                    "Modifiers operate on fields but we found type {} instead. For example: {{$mod: {{<field>: ...}}}} not {{{modifier}: {}}}",
                    type_name_long(arg),
                    fmt_bson(arg)
                )));
            };
            for (field, v) in fields {
                let path = parse_update_path(field)?;
                let op = match modifier.as_str() {
                    "$set" => Op::Set(v.clone()),
                    "$setOnInsert" => Op::SetOnInsert(v.clone()),
                    "$unset" => Op::Unset,
                    "$inc" | "$mul" => {
                        if Num::from_bson(v).is_none() {
                            let verb = if modifier == "$inc" { "increment" } else { "multiply" };
                            return Err(EngineError::TypeMismatch(format!(
                                "Cannot {verb} with non-numeric argument: {{{field}: {}}}",
                                fmt_bson(v)
                            )));
                        }
                        if modifier == "$inc" {
                            Op::Inc(v.clone())
                        } else {
                            Op::Mul(v.clone())
                        }
                    }
                    "$min" => Op::Min(v.clone()),
                    "$max" => Op::Max(v.clone()),
                    "$rename" => {
                        let Bson::String(to) = v else {
                            return Err(EngineError::bad(format!(
                                "The 'to' field for $rename must be a string: {field}: {}",
                                fmt_bson(v)
                            )));
                        };
                        let to_path = parse_update_path(to)?;
                        if path.iter().any(|c| c.starts_with('$')) {
                            return Err(EngineError::bad(format!("The source field for $rename may not be dynamic: {field}")));
                        }
                        if to_path.iter().any(|c| c.starts_with('$')) {
                            return Err(EngineError::bad(format!("The destination field for $rename may not be dynamic: {to}")));
                        }
                        if to_path == path {
                            return Err(EngineError::bad(format!(
                                "The source and target field for $rename must differ: {field}: \"{to}\""
                            )));
                        }
                        if is_prefix(&path, &to_path) || is_prefix(&to_path, &path) {
                            return Err(EngineError::bad(format!(
                                "The source and target field for $rename must not be on the same path: {field}: \"{to}\""
                            )));
                        }
                        // Registered at the destination; an empty-source marker at the
                        // source path takes part in the conflict check only.
                        entries.push(Entry { path: path.clone(), op: Op::Rename(Vec::new()) });
                        entries.push(Entry { path: to_path, op: Op::Rename(path.clone()) });
                        continue;
                    }
                    "$push" => Op::Push(Box::new(parse_push(v)?)),
                    "$addToSet" => Op::AddToSet(parse_add_to_set(v)?),
                    "$pull" => Op::Pull(Box::new(parse_pull(v)?)),
                    "$pullAll" => {
                        let Bson::Array(a) = v else {
                            return Err(EngineError::bad(format!(
                                "$pullAll requires an array argument but was given a {}",
                                type_name(v)
                            )));
                        };
                        Op::PullAll(a.clone())
                    }
                    "$pop" => {
                        let n = Num::from_bson(v).map(|n| n.as_f64());
                        match n {
                            Some(1.0) => Op::Pop(false),
                            Some(-1.0) => Op::Pop(true),
                            Some(_) => return Err(EngineError::FailedToParse(format!("$pop expects 1 or -1, found: {}", fmt_bson(v)))),
                            None => return Err(EngineError::TypeMismatch(format!("Expected a number in: {field}: {}", fmt_bson(v)))),
                        }
                    }
                    "$currentDate" => match v {
                        Bson::Boolean(_) => Op::CurrentDate(false),
                        Bson::Document(d) => match d.get("$type") {
                            Some(Bson::String(t)) if t == "date" => Op::CurrentDate(false),
                            Some(Bson::String(t)) if t == "timestamp" => Op::CurrentDate(true),
                            _ => {
                                return Err(EngineError::bad(
                                    "The '$type' string field is required to be 'date' or 'timestamp': {$currentDate: {field : {$type: 'date'}}}",
                                ))
                            }
                        },
                        _ => {
                            return Err(EngineError::bad(format!(
                                "{} is not valid type for $currentDate. Please use a boolean ('true') or a $type expression ({{$type: 'timestamp/date'}}).",
                                type_name(v)
                            )))
                        }
                    },
                    "$bit" => return Err(EngineError::Unsupported("$bit".into())),
                    other => return Err(EngineError::UnknownModifier(other.to_string())),
                };
                entries.push(Entry { path, op });
            }
        }
        // Conflict check: no path may be a prefix of (or equal to) another.
        let mut sorted: Vec<&Vec<String>> = entries.iter().map(|e| &e.path).collect();
        sorted.sort_by(|a, b| cmp_paths(a, b));
        for w in sorted.windows(2) {
            if is_prefix(w[0], w[1]) {
                return Err(EngineError::ConflictingUpdateOperators(format!(
                    "Updating the path '{}' would create a conflict at '{}'",
                    path_str(w[1]),
                    path_str(w[0])
                )));
            }
        }
        // Drop the rename-source markers (empty Rename) now that conflicts are checked.
        entries.retain(|e| !matches!(&e.op, Op::Rename(src) if src.is_empty()));
        Ok(Update {
            kind: Kind::Ops(entries),
        })
    }

    /// True for replacement-style updates.
    pub fn is_replacement(&self) -> bool {
        matches!(self.kind, Kind::Replacement(_))
    }

    /// Does the update use the positional `$` operator?
    pub fn uses_positional(&self) -> bool {
        match &self.kind {
            Kind::Replacement(_) => false,
            Kind::Ops(es) => es.iter().any(|e| e.path.iter().any(|c| c == "$")),
        }
    }

    /// Applies the update to `doc` in place. Returns whether the document
    /// changed. On error the document is left untouched.
    pub fn apply(&self, doc: &mut Document, ctx: &ApplyContext<'_>) -> Result<bool> {
        match &self.kind {
            Kind::Replacement(r) => {
                check_result_depth(r)?;
                apply_replacement(doc, r)
            }
            Kind::Ops(entries) => {
                let mut work = doc.clone();
                let changed = self.apply_ops(&mut work, entries, ctx)?;
                let old_id = doc.get("_id");
                if let Some(old) = old_id {
                    match work.get("_id") {
                        Some(new) if bin_eq(old, new) => {}
                        _ => {
                            return Err(EngineError::ImmutableField(
                                "Performing an update on the path '_id' would modify the immutable field '_id'".into(),
                            ))
                        }
                    }
                }
                if changed {
                    check_result_depth(&work)?;
                    *doc = work;
                }
                Ok(changed)
            }
        }
    }

    fn apply_ops(
        &self,
        doc: &mut Document,
        entries: &[Entry],
        ctx: &ApplyContext<'_>,
    ) -> Result<bool> {
        let needs_pos = entries.iter().any(|e| e.path.iter().any(|c| c == "$"));
        let pos = if needs_pos {
            let p = ctx
                .matched_array_index
                .or_else(|| ctx.filter.and_then(|f| f.match_details(doc).array_index));
            if p.is_none() || ctx.is_upsert_insert {
                return Err(EngineError::PositionalNoMatch);
            }
            p
        } else {
            None
        };
        // Expand $ and $[] into concrete paths, then apply in path order.
        let mut expanded: Vec<(Vec<String>, &Op)> = Vec::with_capacity(entries.len());
        for e in entries {
            if matches!(e.op, Op::SetOnInsert(_)) && !ctx.is_upsert_insert {
                continue;
            }
            if e.path.iter().any(|c| c.starts_with('$')) {
                for p in expand_path(doc, &e.path, pos)? {
                    expanded.push((p, &e.op));
                }
            } else {
                expanded.push((e.path.clone(), &e.op));
            }
        }
        expanded.sort_by(|a, b| cmp_paths(&a.0, &b.0));
        let mut changed = false;
        let id = doc.get("_id").cloned();
        for (path, op) in &expanded {
            changed |= apply_one(doc, path, op, id.as_ref())?;
        }
        Ok(changed)
    }

    /// Builds the seed document for an upsert that matched nothing: the
    /// query's equality conditions (incl. `$and`, `$eq`, single-value `$in`,
    /// dotted paths), or only its `_id` for replacement updates.
    pub fn upsert_seed(&self, query: &Document) -> Result<Document> {
        let mut eqs: Vec<(String, Bson)> = Vec::new();
        collect_equalities(query, &mut eqs)?;
        if self.is_replacement() {
            eqs.retain(|(p, _)| p == "_id");
        }
        // MongoDB keeps these in a map ordered by path.
        eqs.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let mut doc = Document::new();
        for (p, v) in eqs {
            super::limits::check_path(&p)?;
            let comps: Vec<String> = p.split('.').map(str::to_string).collect();
            if comps.iter().any(|c| c.starts_with('$')) {
                continue;
            }
            set_path(&mut doc, &comps, v).map_err(|_| {
                EngineError::bad(format!(
                    "cannot infer query fields to set, path '{p}' is matched twice"
                ))
            })?;
        }
        move_id_first(&mut doc);
        Ok(doc)
    }

    /// The full document an upsert inserts: seed, apply with
    /// `is_upsert_insert`, and ensure `_id` (generating an ObjectId) first.
    pub fn upsert_document(&self, query: &Document) -> Result<Document> {
        let mut doc = self.upsert_seed(query)?;
        let ctx = ApplyContext {
            is_upsert_insert: true,
            matched_array_index: None,
            filter: None,
        };
        match &self.kind {
            Kind::Replacement(r) => {
                apply_replacement(&mut doc, r)?;
            }
            Kind::Ops(entries) => {
                let seed_id = doc.get("_id").cloned();
                self.apply_ops(&mut doc, entries, &ctx)?;
                if let Some(old) = seed_id {
                    if !doc.get("_id").is_some_and(|n| bin_eq(&old, n)) {
                        return Err(EngineError::ImmutableField(format!(
                            "After applying the update, the (immutable) field '_id' was found to have been altered to _id: {}",
                            doc.get("_id").map(fmt_bson).unwrap_or_else(|| "missing".into())
                        )));
                    }
                }
            }
        }
        if !doc.contains_key("_id") {
            doc.insert("_id", Bson::ObjectId(bson::oid::ObjectId::new()));
        }
        move_id_first(&mut doc);
        check_result_depth(&doc)?;
        Ok(doc)
    }
}

/// Paths of up to `MAX_PATH_SEGMENTS` parts (and `$rename`) can nest a
/// document deeper than a client could send it; stored documents keep
/// MongoDB's depth limit.
fn check_result_depth(doc: &Document) -> Result<()> {
    use super::limits::{check_doc_depth, MAX_DOCUMENT_DEPTH};
    check_doc_depth(doc, "The document after this update", MAX_DOCUMENT_DEPTH)?;
    Ok(())
}

fn type_name_long(b: &Bson) -> &'static str {
    match b {
        Bson::Int32(_) => "int",
        Bson::Int64(_) => "long",
        Bson::Double(_) => "double",
        Bson::String(_) => "string",
        Bson::Array(_) => "array",
        Bson::Boolean(_) => "bool",
        Bson::Null => "null",
        other => type_name(other),
    }
}

fn move_id_first(doc: &mut Document) {
    if doc.keys().next().map(String::as_str) != Some("_id") {
        if let Some(id) = doc.remove("_id") {
            let mut out = Document::new();
            out.insert("_id", id);
            for (k, v) in std::mem::take(doc) {
                out.insert(k, v);
            }
            *doc = out;
        }
    }
}

fn parse_update_path(field: &str) -> Result<Vec<String>> {
    super::limits::check_path(field)?;
    if field.is_empty() {
        return Err(EngineError::bad("An empty update path is not valid."));
    }
    let comps: Vec<String> = field.split('.').map(str::to_string).collect();
    if comps.iter().any(|c| c.is_empty()) {
        return Err(EngineError::bad(format!(
            "The update path '{field}' contains an empty field name, which is not allowed."
        )));
    }
    let mut positional = 0;
    for c in &comps {
        if c == "$" {
            positional += 1;
        } else if c.starts_with("$[") && c.ends_with(']') {
            if c != "$[]" {
                return Err(EngineError::Unsupported(
                    "arrayFilters ($[<identifier>])".into(),
                ));
            }
        } else if c.starts_with('$') && comps.first() == Some(c) {
            return Err(EngineError::bad(format!(
                "The dollar ($) prefixed field '{c}' in '{field}' is not allowed in the context of an update's replacement document. Consider using an aggregation pipeline with $replaceWith."
            )));
        }
    }
    if positional > 1 {
        return Err(EngineError::bad(format!(
            "Too many positional (i.e. '$') elements found in path '{field}'"
        )));
    }
    if comps.first().is_some_and(|c| c == "$" || c == "$[]") {
        return Err(EngineError::bad(format!(
            "Cannot have array filter identifier (i.e. '$[<id>]') element in the first position in path '{field}'"
        )));
    }
    Ok(comps)
}

fn has_each(d: &Document) -> bool {
    d.contains_key("$each")
}

fn parse_push(v: &Bson) -> Result<PushSpec> {
    let Bson::Document(d) = v else {
        return Ok(PushSpec {
            each: vec![v.clone()],
            slice: None,
            sort: None,
            position: None,
        });
    };
    if !has_each(d) {
        return Ok(PushSpec {
            each: vec![v.clone()],
            slice: None,
            sort: None,
            position: None,
        });
    }
    let mut spec = PushSpec {
        each: Vec::new(),
        slice: None,
        sort: None,
        position: None,
    };
    for (k, x) in d {
        match k.as_str() {
            "$each" => {
                let Bson::Array(a) = x else {
                    return Err(EngineError::bad(format!(
                        "The argument to $each in $push must be an array but it was of type: {}",
                        type_name(x)
                    )));
                };
                spec.each = a.clone();
            }
            "$slice" => {
                let n = Num::from_bson(x)
                    .and_then(|n| n.as_exact_i64())
                    .ok_or_else(|| {
                        EngineError::bad(format!(
                            "The value for $slice must be an integer value but was given type: {}",
                            type_name(x)
                        ))
                    })?;
                spec.slice = Some(n);
            }
            "$position" => {
                let n = Num::from_bson(x)
                    .and_then(|n| n.as_exact_i64())
                    .ok_or_else(|| {
                        EngineError::bad(format!(
                            "The value for $position must be an integer value, not of type: {}",
                            type_name(x)
                        ))
                    })?;
                spec.position = Some(n);
            }
            "$sort" => {
                spec.sort = Some(match x {
                    Bson::Document(sd) => {
                        if sd.is_empty() {
                            return Err(EngineError::bad("The $sort pattern is empty when it should be a set of fields."));
                        }
                        PushSort::Fields(SortSpec::parse(sd).map_err(|_| {
                            EngineError::bad("The $sort element value must be either 1 or -1")
                        })?)
                    }
                    other => match Num::from_bson(other).map(|n| n.as_f64()) {
                        Some(1.0) => PushSort::Whole(true),
                        Some(-1.0) => PushSort::Whole(false),
                        _ => {
                            return Err(EngineError::bad(
                                "The $sort is invalid: use 1/-1 to sort the whole element, or {field:1/-1} to sort embedded fields",
                            ))
                        }
                    },
                });
            }
            other => {
                return Err(EngineError::bad(format!(
                    "Unrecognized clause in $push: {other}"
                )))
            }
        }
    }
    Ok(spec)
}

fn parse_add_to_set(v: &Bson) -> Result<Vec<Bson>> {
    match v {
        Bson::Document(d) if has_each(d) => {
            if d.len() != 1 {
                return Err(EngineError::bad(
                    "Found unexpected fields after $each in $addToSet",
                ));
            }
            match d.get("$each") {
                Some(Bson::Array(a)) => Ok(a.clone()),
                Some(x) => Err(EngineError::bad(format!(
                    "The argument to $each in $addToSet must be an array but it was of type {}",
                    type_name(x)
                ))),
                None => Ok(Vec::new()),
            }
        }
        other => Ok(vec![other.clone()]),
    }
}

fn parse_pull(v: &Bson) -> Result<PullCond> {
    match v {
        Bson::Document(d) => {
            let first = d.keys().next().map(String::as_str).unwrap_or("");
            if first.starts_with('$')
                && !matches!(
                    first,
                    "$and" | "$or" | "$nor" | "$expr" | "$where" | "$comment"
                )
            {
                Ok(PullCond::Matcher(ValueMatcher::parse(v)?))
            } else {
                Ok(PullCond::Query(Filter::parse(d)?))
            }
        }
        Bson::RegularExpression(_) => Ok(PullCond::Matcher(ValueMatcher::parse(v)?)),
        other => Ok(PullCond::Eq(other.clone())),
    }
}

fn collect_equalities(q: &Document, out: &mut Vec<(String, Bson)>) -> Result<()> {
    for (k, v) in q {
        match k.as_str() {
            "$and" => {
                if let Bson::Array(a) = v {
                    for e in a {
                        if let Bson::Document(d) = e {
                            collect_equalities(d, out)?;
                        }
                    }
                }
            }
            // A one-branch $or is optimised into its branch by MongoDB.
            "$or" => {
                if let Bson::Array(a) = v {
                    if let [Bson::Document(d)] = a.as_slice() {
                        collect_equalities(d, out)?;
                    }
                }
            }
            k if k.starts_with('$') => {}
            _ => {
                let eq = match v {
                    Bson::RegularExpression(_) => None,
                    Bson::Document(d) if d.keys().next().is_some_and(|f| f.starts_with('$')) => {
                        if let Some(x) = d.get("$eq") {
                            Some(x.clone())
                        } else if let Some(Bson::Array(a)) = d.get("$in") {
                            match a.as_slice() {
                                [one] if !matches!(one, Bson::RegularExpression(_)) => {
                                    Some(one.clone())
                                }
                                _ => None,
                            }
                        } else {
                            None
                        }
                    }
                    other => Some(other.clone()),
                };
                if let Some(x) = eq {
                    if out.iter().any(|(p, _)| p == k) {
                        return Err(EngineError::bad(format!(
                            "cannot infer query fields to set, path '{k}' is matched twice"
                        )));
                    }
                    out.push((k.clone(), x));
                }
            }
        }
    }
    Ok(())
}

fn apply_replacement(doc: &mut Document, repl: &Document) -> Result<bool> {
    let mut new = Document::new();
    match (doc.get("_id"), repl.get("_id")) {
        (Some(old), Some(n)) if !bin_eq(old, n) => {
            return Err(EngineError::ImmutableField(format!(
                "After applying the update, the (immutable) field '_id' was found to have been altered to _id: {}",
                fmt_bson(n)
            )));
        }
        (Some(old), _) => {
            new.insert("_id", old.clone());
            for (k, v) in repl {
                if k != "_id" {
                    new.insert(k.clone(), v.clone());
                }
            }
        }
        (None, _) => new = repl.clone(),
    }
    let changed = !doc_bin_eq(doc, &new);
    *doc = new;
    Ok(changed)
}

/// Expands `$` (matched index) and `$[]` (every element) in a path.
fn expand_path(doc: &Document, path: &[String], pos: Option<usize>) -> Result<Vec<Vec<String>>> {
    let mut acc: Vec<Vec<String>> = vec![Vec::new()];
    for c in path {
        if c == "$" {
            let i = pos.ok_or(EngineError::PositionalNoMatch)?;
            for p in &mut acc {
                p.push(i.to_string());
            }
        } else if c == "$[]" {
            let mut next = Vec::new();
            for p in acc {
                let refs: Vec<&str> = p.iter().map(String::as_str).collect();
                match super::path::get_strict(doc, &refs) {
                    Some(Bson::Array(a)) => {
                        for i in 0..a.len() {
                            let mut q = p.clone();
                            q.push(i.to_string());
                            next.push(q);
                        }
                    }
                    Some(other) => {
                        return Err(EngineError::bad(format!(
                            "Cannot apply array updates to non-array element {}: {}",
                            p.last().map(String::as_str).unwrap_or(""),
                            fmt_bson(other)
                        )))
                    }
                    None => {
                        return Err(EngineError::bad(format!(
                        "The path '{}' must exist in the document in order to apply array updates.",
                        path_str(&p)
                    )))
                    }
                }
            }
            acc = next;
        } else {
            for p in &mut acc {
                p.push(c.clone());
            }
        }
    }
    Ok(acc)
}

/// Mutable lookup through documents and array indexes (no traversal).
fn get_mut_path<'a>(doc: &'a mut Document, path: &[String]) -> Option<&'a mut Bson> {
    let (head, rest) = path.split_first()?;
    let mut cur = doc.get_mut(head)?;
    for c in rest {
        cur = match cur {
            Bson::Document(d) => d.get_mut(c)?,
            Bson::Array(a) => a.get_mut(parse_index(c)?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn nested_value(rest: &[String], value: Bson) -> Bson {
    let mut v = value;
    for c in rest.iter().rev() {
        let mut d = Document::new();
        d.insert(c.clone(), v);
        v = Bson::Document(d);
    }
    v
}

/// Sets `path` to `value`, creating intermediate documents (and padding
/// arrays with nulls). Returns whether anything changed.
fn set_path(doc: &mut Document, path: &[String], value: Bson) -> Result<bool> {
    let Some((head, rest)) = path.split_first() else {
        return Ok(false);
    };
    if rest.is_empty() {
        return Ok(match doc.get_mut(head) {
            Some(slot) => {
                if bin_eq(slot, &value) {
                    false
                } else {
                    *slot = value;
                    true
                }
            }
            None => {
                doc.insert(head.clone(), value);
                true
            }
        });
    }
    match doc.get_mut(head) {
        None => {
            doc.insert(head.clone(), nested_value(rest, value));
            Ok(true)
        }
        Some(Bson::Document(d)) => set_path(d, rest, value),
        Some(Bson::Array(a)) => set_in_array(a, head, rest, value),
        Some(other) => Err(EngineError::PathNotViable(format!(
            "Cannot create field '{}' in element {{{}: {}}}",
            rest[0],
            head,
            fmt_bson(other)
        ))),
    }
}

fn set_in_array(a: &mut Vec<Bson>, name: &str, path: &[String], value: Bson) -> Result<bool> {
    let Some((head, rest)) = path.split_first() else {
        return Ok(false);
    };
    let Some(i) = parse_index(head) else {
        return Err(EngineError::PathNotViable(format!(
            "Cannot create field '{}' in element {{{}: {}}}",
            head,
            name,
            fmt_bson(&Bson::Array(a.clone()))
        )));
    };
    if i > 1_500_000 {
        return Err(EngineError::bad(
            "can't backfill array to larger than 1500000 elements",
        ));
    }
    if i >= a.len() {
        a.resize(i, Bson::Null);
        a.push(if rest.is_empty() {
            value
        } else {
            nested_value(rest, value)
        });
        return Ok(true);
    }
    if rest.is_empty() {
        if bin_eq(&a[i], &value) {
            return Ok(false);
        }
        a[i] = value;
        return Ok(true);
    }
    match &mut a[i] {
        Bson::Document(d) => set_path(d, rest, value),
        Bson::Array(inner) => set_in_array(inner, head, rest, value),
        other => Err(EngineError::PathNotViable(format!(
            "Cannot create field '{}' in element {{{}: {}}}",
            rest[0],
            head,
            fmt_bson(other)
        ))),
    }
}

/// Removes `path`; array elements addressed by index become null.
fn unset_path(doc: &mut Document, path: &[String]) -> bool {
    let Some((last, parent)) = path.split_last() else {
        return false;
    };
    if parent.is_empty() {
        return doc.remove(last).is_some();
    }
    match get_mut_path(doc, parent) {
        Some(Bson::Document(d)) => d.remove(last).is_some(),
        Some(Bson::Array(a)) => match parse_index(last).and_then(|i| a.get_mut(i)) {
            Some(slot) => {
                let changed = !matches!(slot, Bson::Null);
                *slot = Bson::Null;
                changed
            }
            None => false,
        },
        _ => false,
    }
}

fn id_desc(id: Option<&Bson>) -> String {
    match id {
        Some(v) => format!("{{_id: {}}}", fmt_bson(v)),
        None => "{}".into(),
    }
}

fn apply_one(doc: &mut Document, path: &[String], op: &Op, id: Option<&Bson>) -> Result<bool> {
    let field = || path_str(path);
    if path.first().is_some_and(|c| c == "_id")
        && !matches!(
            op,
            Op::Set(_) | Op::SetOnInsert(_) | Op::Min(_) | Op::Max(_) | Op::Inc(_) | Op::Mul(_)
        )
        && id.is_some()
    {
        return Err(EngineError::ImmutableField(
            "Performing an update on the path '_id' would modify the immutable field '_id'".into(),
        ));
    }
    match op {
        Op::Set(v) | Op::SetOnInsert(v) => set_path(doc, path, v.clone()),
        Op::Unset => Ok(unset_path(doc, path)),
        Op::Inc(v) | Op::Mul(v) => {
            let arg = Num::from_bson(v).unwrap_or(Num::I32(0));
            let is_inc = matches!(op, Op::Inc(_));
            match get_mut_path(doc, path) {
                Some(cur) => {
                    let Some(n) = Num::from_bson(cur) else {
                        return Err(EngineError::TypeMismatch(format!(
                            "Cannot apply {} to a value of non-numeric type. {} has the field '{}' of non-numeric type {}",
                            if is_inc { "$inc" } else { "$mul" },
                            id_desc(id),
                            path.last().map(String::as_str).unwrap_or(""),
                            type_name(cur)
                        )));
                    };
                    let r = if is_inc {
                        num_add_strict(n, arg)
                    } else {
                        num_mul_strict(n, arg)
                    };
                    let Some(r) = r else {
                        return Err(EngineError::bad(format!(
                            "Failed to apply {} operations to current value ({}) for document {}",
                            if is_inc { "$inc" } else { "$mul" },
                            fmt_bson(cur),
                            id_desc(id)
                        )));
                    };
                    let nb = r.to_bson();
                    if bin_eq(cur, &nb) {
                        Ok(false)
                    } else {
                        *cur = nb;
                        Ok(true)
                    }
                }
                None => {
                    let init = if is_inc {
                        v.clone()
                    } else {
                        num_mul_strict(Num::I32(0), arg)
                            .unwrap_or(Num::I32(0))
                            .to_bson()
                    };
                    set_path(doc, path, init)
                }
            }
        }
        Op::Min(v) | Op::Max(v) => {
            let want = if matches!(op, Op::Min(_)) {
                Ordering::Less
            } else {
                Ordering::Greater
            };
            match get_mut_path(doc, path) {
                Some(cur) => {
                    if compare_bson(v, cur) == want {
                        *cur = v.clone();
                        Ok(true)
                    } else {
                        Ok(false)
                    }
                }
                None => set_path(doc, path, v.clone()),
            }
        }
        Op::Rename(from) => {
            if from.first().is_some_and(|c| c == "_id") || path.first().is_some_and(|c| c == "_id")
            {
                return Err(EngineError::ImmutableField(
                    "Performing an update on the path '_id' would modify the immutable field '_id'"
                        .into(),
                ));
            }
            // Source must be reachable through documents only.
            let mut cur: &Bson;
            let Some(first) = doc.get(&from[0]) else {
                return Ok(false);
            };
            cur = first;
            for c in &from[1..] {
                match cur {
                    Bson::Document(d) => match d.get(c) {
                        Some(x) => cur = x,
                        None => return Ok(false),
                    },
                    Bson::Array(_) => {
                        return Err(EngineError::bad(format!(
                            "The source field cannot be an array element, '{}' in doc with {} being an array",
                            path_str(from),
                            c
                        )))
                    }
                    _ => return Ok(false),
                }
            }
            if let Bson::Array(_) = cur {
                // fine: renaming a whole array is allowed
            }
            // Destination may not traverse arrays.
            let mut probe = doc.get(&path[0]);
            for c in &path[1..] {
                match probe {
                    Some(Bson::Document(d)) => probe = d.get(c),
                    Some(Bson::Array(_)) => {
                        return Err(EngineError::bad(format!(
                            "The destination field cannot be an array element, '{}' in doc with {} being an array",
                            path_str(path),
                            c
                        )))
                    }
                    _ => break,
                }
            }
            let value = match remove_path(doc, from) {
                Some(v) => v,
                None => return Ok(false),
            };
            set_path(doc, path, value)?;
            Ok(true)
        }
        Op::Push(spec) => match get_mut_path(doc, path) {
            Some(Bson::Array(a)) => {
                apply_push(a, spec);
                Ok(true)
            }
            Some(other) => Err(EngineError::bad(format!(
                "The field '{}' must be an array but is of type {} in document {}",
                field(),
                type_name(other),
                id_desc(id)
            ))),
            None => {
                let mut a = Vec::new();
                apply_push(&mut a, spec);
                set_path(doc, path, Bson::Array(a))
            }
        },
        Op::AddToSet(vals) => match get_mut_path(doc, path) {
            Some(Bson::Array(a)) => {
                let mut changed = false;
                for v in vals {
                    if !a.iter().any(|e| values_equal(e, v)) {
                        a.push(v.clone());
                        changed = true;
                    }
                }
                Ok(changed)
            }
            Some(other) => Err(EngineError::bad(format!(
                "Cannot apply $addToSet to non-array field. Field named '{}' has non-array type {}",
                path.last().map(String::as_str).unwrap_or(""),
                type_name(other)
            ))),
            None => {
                let mut a: Vec<Bson> = Vec::new();
                for v in vals {
                    if !a.iter().any(|e| values_equal(e, v)) {
                        a.push(v.clone());
                    }
                }
                set_path(doc, path, Bson::Array(a))
            }
        },
        Op::Pull(cond) => match get_mut_path(doc, path) {
            Some(Bson::Array(a)) => {
                let before = a.len();
                a.retain(|e| !pull_matches(cond, e));
                Ok(a.len() != before)
            }
            Some(_) => Err(EngineError::bad("Cannot apply $pull to a non-array value")),
            None => Ok(false),
        },
        Op::PullAll(vals) => match get_mut_path(doc, path) {
            Some(Bson::Array(a)) => {
                let before = a.len();
                a.retain(|e| !vals.iter().any(|v| values_equal(e, v)));
                Ok(a.len() != before)
            }
            Some(_) => Err(EngineError::bad("Cannot apply $pull to a non-array value")),
            None => Ok(false),
        },
        Op::Pop(first) => match get_mut_path(doc, path) {
            Some(Bson::Array(a)) => {
                if a.is_empty() {
                    return Ok(false);
                }
                if *first {
                    a.remove(0);
                } else {
                    a.pop();
                }
                Ok(true)
            }
            Some(other) => Err(EngineError::bad(format!(
                "Path '{}' contains an element of non-array type '{}'",
                field(),
                type_name(other)
            ))),
            None => Ok(false),
        },
        Op::CurrentDate(ts) => {
            let now = bson::DateTime::now();
            let v = if *ts {
                Bson::Timestamp(bson::Timestamp {
                    time: (now.timestamp_millis() / 1000) as u32,
                    increment: 1,
                })
            } else {
                Bson::DateTime(now)
            };
            set_path(doc, path, v)
        }
    }
}

fn remove_path(doc: &mut Document, path: &[String]) -> Option<Bson> {
    let (last, parent) = path.split_last()?;
    if parent.is_empty() {
        return doc.remove(last);
    }
    match get_mut_path(doc, parent) {
        Some(Bson::Document(d)) => d.remove(last),
        _ => None,
    }
}

fn pull_matches(cond: &PullCond, e: &Bson) -> bool {
    match cond {
        PullCond::Eq(v) => values_equal(e, v),
        PullCond::Matcher(m) => m.matches(e),
        PullCond::Query(f) => match e {
            Bson::Document(d) => f.matches(d),
            _ => false,
        },
    }
}

fn apply_push(a: &mut Vec<Bson>, spec: &PushSpec) {
    let at = match spec.position {
        None => a.len(),
        Some(p) if p < 0 => (a.len() as i64 + p).max(0) as usize,
        Some(p) => (p as usize).min(a.len()),
    };
    // Insert $each values at the position, preserving their order.
    let tail = a.split_off(at);
    a.extend(spec.each.iter().cloned());
    a.extend(tail);
    if let Some(s) = &spec.sort {
        match s {
            PushSort::Whole(asc) => a.sort_by(|x, y| {
                let o = compare_bson(x, y);
                if *asc {
                    o
                } else {
                    o.reverse()
                }
            }),
            PushSort::Fields(spec) => {
                let empty = Document::new();
                a.sort_by(|x, y| {
                    let dx = if let Bson::Document(d) = x { d } else { &empty };
                    let dy = if let Bson::Document(d) = y { d } else { &empty };
                    spec.compare(dx, dy)
                });
            }
        }
    }
    if let Some(n) = spec.slice {
        if n >= 0 {
            a.truncate(n as usize);
        } else {
            let keep = n.unsigned_abs() as usize;
            if a.len() > keep {
                a.drain(..a.len() - keep);
            }
        }
    }
}
