//! Query filters (`find`/`$match` predicates) with MongoDB matching semantics.

use std::cmp::Ordering;

use bson::{Bson, Document};

use super::aggregate::expression::{Expr, Vars};
use super::compare::{compare_bson, fmt_bson, type_number, type_rank, values_equal, Num};
use super::error::EngineError;
use super::path::{walk, walk_value, FieldPath, Found, PathPart};
use super::Result;

/// MongoDB refuses query trees deeper than this; so do we (protects the stack).
use super::limits::MAX_SPEC_DEPTH as MAX_DEPTH;

/// A parsed query filter. Parse once with [`Filter::parse`], then call
/// [`Filter::matches`] for every candidate document.
#[derive(Debug, Clone)]
pub struct Filter {
    root: Node,
}

/// Outcome of [`Filter::match_details`]: whether the document matched and, if
/// an array was traversed, the matched offset used by the positional `$`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MatchDetails {
    pub matched: bool,
    pub array_index: Option<usize>,
}

/// A necessary condition on one top-level field, for index selection. A
/// document satisfying the filter always satisfies each constraint, where
/// "value at path" follows MongoDB's multikey rules (an array field satisfies
/// `Eq(v)` when any element equals `v`). Candidates fetched through an index
/// must still be checked with [`Filter::matches`].
#[derive(Debug, Clone, PartialEq)]
pub enum FieldConstraint {
    /// Value equals this (never null, regex, array or document).
    Eq(Bson),
    /// Value equals one of these (same restrictions as `Eq`).
    In(Vec<Bson>),
    /// Value lies in this range, within the bound's type bracket. Each bound
    /// is `(value, inclusive)`.
    Range {
        min: Option<(Bson, bool)>,
        max: Option<(Bson, bool)>,
    },
}

#[derive(Debug, Clone)]
pub(crate) enum Node {
    And(Vec<Node>),
    Or(Vec<Node>),
    Nor(Vec<Node>),
    Field(FieldPath, Vec<Pred>),
    Expr(Box<Expr>),
    Const(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Gt,
    Gte,
    Lt,
    Lte,
}

#[derive(Debug, Clone)]
pub(crate) struct RegexPred {
    re: regex::Regex,
    pattern: String,
    options: String,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct InList {
    values: Vec<Bson>,
    regexes: Vec<RegexPred>,
    has_null: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum TypeSel {
    Number,
    Code(i32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BitsOp {
    AllSet,
    AnySet,
    AllClear,
    AnyClear,
}

#[derive(Debug, Clone)]
pub(crate) enum Pred {
    Eq(Bson),
    Ne(Bson),
    Cmp(CmpOp, Bson),
    In(InList),
    Nin(InList),
    Exists(bool),
    Type(Vec<TypeSel>),
    Regex(Box<RegexPred>),
    Size(i64),
    /// Each inner predicate must match (`$all`); an empty `$all` matches nothing.
    All(Vec<Pred>),
    ElemMatchDoc(Box<Node>),
    ElemMatchVal(Vec<Pred>),
    Not(Vec<Pred>),
    Mod(i64, i64),
    Bits(BitsOp, Vec<u8>),
}

/// State threaded through one match: positional bookkeeping, `$expr`
/// variables, and the first evaluation error (if any).
pub(crate) struct MatchCtx<'v> {
    pub pos: Option<usize>,
    pub record: bool,
    pub vars: Option<&'v Vars>,
    pub err: Option<EngineError>,
}

impl<'v> MatchCtx<'v> {
    pub(crate) fn new(record: bool, vars: Option<&'v Vars>) -> Self {
        MatchCtx {
            pos: None,
            record,
            vars,
            err: None,
        }
    }
}

impl Filter {
    /// Parses a MongoDB query document.
    pub fn parse(query: &Document) -> Result<Filter> {
        Ok(Filter {
            root: parse_doc(query, 0)?,
        })
    }

    /// A filter that matches everything (`{}`).
    pub fn match_all() -> Filter {
        Filter {
            root: Node::And(Vec::new()),
        }
    }

    /// True when the filter is `{}` (matches every document).
    pub fn is_match_all(&self) -> bool {
        matches!(&self.root, Node::And(v) if v.is_empty())
    }

    /// Does `doc` match? `$expr` evaluation errors count as "no match"; use
    /// [`Filter::try_matches`] to surface them.
    #[inline]
    pub fn matches(&self, doc: &Document) -> bool {
        let mut ctx = MatchCtx::new(false, None);
        self.root.matches(doc, &mut ctx)
    }

    /// Like [`Filter::matches`] but reports `$expr` evaluation errors.
    pub fn try_matches(&self, doc: &Document) -> Result<bool> {
        let mut ctx = MatchCtx::new(false, None);
        let m = self.root.matches(doc, &mut ctx);
        match ctx.err {
            Some(e) => Err(e),
            None => Ok(m),
        }
    }

    /// Matches and records the array offset the positional `$` operator uses.
    pub fn match_details(&self, doc: &Document) -> MatchDetails {
        let mut ctx = MatchCtx::new(true, None);
        let matched = self.root.matches(doc, &mut ctx);
        MatchDetails {
            matched,
            array_index: if matched { ctx.pos } else { None },
        }
    }

    pub(crate) fn matches_ctx(&self, doc: &Document, ctx: &mut MatchCtx<'_>) -> bool {
        self.root.matches(doc, ctx)
    }

    /// Top-level equality value required on `path`, if the filter pins one
    /// (e.g. `{_id: 5}` or `{$and: [{_id: 5}, ...]}`). Only "index-safe"
    /// values are returned (no null/regex/array/document).
    pub fn equality_on(&self, path: &str) -> Option<&Bson> {
        fn find<'a>(n: &'a Node, path: &str) -> Option<&'a Bson> {
            match n {
                Node::And(ch) => ch.iter().find_map(|c| find(c, path)),
                Node::Field(p, preds) if p.as_str() == path => {
                    preds.iter().find_map(|pr| match pr {
                        Pred::Eq(v) if index_safe(v) => Some(v),
                        _ => None,
                    })
                }
                _ => None,
            }
        }
        find(&self.root, path)
    }

    /// All top-level (AND-ed) constraints, one entry per path, for a planner.
    pub fn constraints(&self) -> Vec<(String, FieldConstraint)> {
        let mut out: Vec<(String, FieldConstraint)> = Vec::new();
        fn visit(n: &Node, out: &mut Vec<(String, FieldConstraint)>) {
            match n {
                Node::And(ch) => ch.iter().for_each(|c| visit(c, out)),
                Node::Field(p, preds) => {
                    for pr in preds {
                        let c = match pr {
                            Pred::Eq(v) if index_safe(v) => FieldConstraint::Eq(v.clone()),
                            Pred::In(l)
                                if l.regexes.is_empty()
                                    && !l.has_null
                                    && l.values.iter().all(index_safe) =>
                            {
                                FieldConstraint::In(l.values.clone())
                            }
                            Pred::Cmp(op, v) if index_safe(v) => match op {
                                CmpOp::Gt => FieldConstraint::Range {
                                    min: Some((v.clone(), false)),
                                    max: None,
                                },
                                CmpOp::Gte => FieldConstraint::Range {
                                    min: Some((v.clone(), true)),
                                    max: None,
                                },
                                CmpOp::Lt => FieldConstraint::Range {
                                    min: None,
                                    max: Some((v.clone(), false)),
                                },
                                CmpOp::Lte => FieldConstraint::Range {
                                    min: None,
                                    max: Some((v.clone(), true)),
                                },
                            },
                            _ => continue,
                        };
                        merge_constraint(out, p.as_str(), c);
                    }
                }
                _ => {}
            }
        }
        visit(&self.root, &mut out);
        out
    }
}

fn index_safe(v: &Bson) -> bool {
    !matches!(
        v,
        Bson::Null
            | Bson::Undefined
            | Bson::RegularExpression(_)
            | Bson::Array(_)
            | Bson::Document(_)
            | Bson::MinKey
            | Bson::MaxKey
    ) && !matches!(v, Bson::Double(f) if f.is_nan())
}

fn merge_constraint(out: &mut Vec<(String, FieldConstraint)>, path: &str, c: FieldConstraint) {
    let Some(slot) = out.iter_mut().find(|(p, _)| p == path) else {
        out.push((path.to_string(), c));
        return;
    };
    // Equality beats everything; two ranges are intersected bound by bound.
    match (&mut slot.1, c) {
        (FieldConstraint::Eq(_), _) => {}
        (existing, c @ FieldConstraint::Eq(_)) => *existing = c,
        (
            FieldConstraint::Range { min, max },
            FieldConstraint::Range {
                min: nmin,
                max: nmax,
            },
        ) => {
            if let Some(n) = nmin {
                let tighter = match min {
                    None => true,
                    Some(m) => {
                        type_rank(&m.0) == type_rank(&n.0)
                            && compare_bson(&n.0, &m.0) == Ordering::Greater
                    }
                };
                if tighter {
                    *min = Some(n);
                }
            }
            if let Some(n) = nmax {
                let tighter = match max {
                    None => true,
                    Some(m) => {
                        type_rank(&m.0) == type_rank(&n.0)
                            && compare_bson(&n.0, &m.0) == Ordering::Less
                    }
                };
                if tighter {
                    *max = Some(n);
                }
            }
        }
        (existing @ FieldConstraint::Range { .. }, c @ FieldConstraint::In(_)) => *existing = c,
        _ => {}
    }
}

// ---------------------------------------------------------------- parsing

fn parse_doc(d: &Document, depth: usize) -> Result<Node> {
    if depth > MAX_DEPTH {
        return Err(super::limits::LimitError::too_deep("The query", MAX_DEPTH).into());
    }
    let mut children = Vec::with_capacity(d.len());
    for (k, v) in d {
        if let Some(op) = k.strip_prefix('$') {
            match op {
                "and" | "or" | "nor" => {
                    let Bson::Array(arr) = v else {
                        return Err(EngineError::bad(format!("{k} must be an array")));
                    };
                    if arr.is_empty() {
                        return Err(EngineError::bad("$and/$or/$nor must be a nonempty array"));
                    }
                    let mut subs = Vec::with_capacity(arr.len());
                    for e in arr {
                        let Bson::Document(sd) = e else {
                            return Err(EngineError::bad(
                                "$or/$and/$nor entries need to be full objects",
                            ));
                        };
                        subs.push(parse_doc(sd, depth + 1)?);
                    }
                    children.push(match op {
                        "and" => Node::And(subs),
                        "or" => Node::Or(subs),
                        _ => Node::Nor(subs),
                    });
                }
                "expr" => children.push(Node::Expr(Box::new(Expr::parse(v)?))),
                "where" | "function" | "accumulator" => {
                    return Err(EngineError::JavaScriptNotAllowed(k.clone()))
                }
                "comment" => {}
                "alwaysTrue" => children.push(Node::Const(true)),
                "alwaysFalse" => children.push(Node::Const(false)),
                "text" | "jsonSchema" | "sampleRate" => {
                    return Err(EngineError::Unsupported(k.clone()))
                }
                _ => return Err(EngineError::UnknownTopLevelOperator(k.clone())),
            }
        } else {
            children.push(parse_field(k, v, depth)?);
        }
    }
    if children.len() == 1 {
        if let Some(only) = children.pop() {
            return Ok(only);
        }
    }
    Ok(Node::And(children))
}

/// Is `d` an operator document (`{$gt: 1}`) rather than a literal sub-document?
/// MongoDB decides on the first field name.
fn is_operator_doc(d: &Document) -> bool {
    match d.keys().next() {
        Some(k) => k.starts_with('$') && k != "$ref" && k != "$id" && k != "$db",
        None => false,
    }
}

fn parse_field(path: &str, v: &Bson, depth: usize) -> Result<Node> {
    let fp = FieldPath::checked(path)?;
    let preds = parse_value_preds(v, depth)?;
    Ok(Node::Field(fp, preds))
}

/// Predicates for the value side of `{path: <v>}`.
pub(crate) fn parse_value_preds(v: &Bson, depth: usize) -> Result<Vec<Pred>> {
    match v {
        Bson::Document(d) if is_operator_doc(d) => parse_operators(d, depth),
        Bson::RegularExpression(r) => Ok(vec![Pred::Regex(Box::new(RegexPred::new(
            &r.pattern, &r.options,
        )?))]),
        other => Ok(vec![Pred::Eq(other.clone())]),
    }
}

fn parse_operators(d: &Document, depth: usize) -> Result<Vec<Pred>> {
    if depth > MAX_DEPTH {
        return Err(super::limits::LimitError::too_deep("The query", MAX_DEPTH).into());
    }
    let mut preds = Vec::with_capacity(d.len());
    let mut regex_seen = false;
    for (k, v) in d {
        let p = match k.as_str() {
            "$eq" => Pred::Eq(v.clone()),
            "$ne" => {
                if let Bson::RegularExpression(_) = v {
                    return Err(EngineError::bad("Can't have regex as arg to $ne."));
                }
                Pred::Ne(v.clone())
            }
            "$gt" => Pred::Cmp(CmpOp::Gt, v.clone()),
            "$gte" => Pred::Cmp(CmpOp::Gte, v.clone()),
            "$lt" => Pred::Cmp(CmpOp::Lt, v.clone()),
            "$lte" => Pred::Cmp(CmpOp::Lte, v.clone()),
            "$in" => Pred::In(parse_in_list(v, "$in")?),
            "$nin" => Pred::Nin(parse_in_list(v, "$nin")?),
            "$exists" => Pred::Exists(super::compare::truthy(Some(v))),
            "$type" => Pred::Type(parse_type_sels(v)?),
            "$regex" => {
                regex_seen = true;
                let opts_field = match d.get("$options") {
                    None => None,
                    Some(Bson::String(s)) => Some(s.as_str()),
                    Some(_) => return Err(EngineError::bad("$options has to be a string")),
                };
                match v {
                    Bson::String(pat) => {
                        Pred::Regex(Box::new(RegexPred::new(pat, opts_field.unwrap_or(""))?))
                    }
                    Bson::RegularExpression(r) => {
                        if opts_field.is_some() && !r.options.is_empty() {
                            return Err(EngineError::bad(
                                "options set in both $regex and $options",
                            ));
                        }
                        let opts = opts_field.unwrap_or(&r.options);
                        Pred::Regex(Box::new(RegexPred::new(&r.pattern, opts)?))
                    }
                    _ => return Err(EngineError::bad("$regex has to be a string")),
                }
            }
            "$options" => continue,
            "$size" => Pred::Size(parse_size(v)?),
            "$all" => parse_all(v, depth)?,
            "$elemMatch" => {
                let Bson::Document(sd) = v else {
                    return Err(EngineError::bad("$elemMatch needs an Object"));
                };
                if is_elem_match_value_form(sd) {
                    Pred::ElemMatchVal(parse_operators(sd, depth + 1)?)
                } else {
                    Pred::ElemMatchDoc(Box::new(parse_doc(sd, depth + 1)?))
                }
            }
            "$not" => match v {
                Bson::RegularExpression(r) => Pred::Not(vec![Pred::Regex(Box::new(
                    RegexPred::new(&r.pattern, &r.options)?,
                ))]),
                Bson::Document(sd) => {
                    if sd.is_empty() {
                        return Err(EngineError::bad("$not cannot be empty"));
                    }
                    if !is_operator_doc(sd) {
                        return Err(EngineError::bad(format!(
                            "unknown operator: {}",
                            sd.keys().next().map(String::as_str).unwrap_or("")
                        )));
                    }
                    Pred::Not(parse_operators(sd, depth + 1)?)
                }
                _ => return Err(EngineError::bad("$not needs a regex or a document")),
            },
            "$mod" => parse_mod(v)?,
            "$bitsAllSet" => Pred::Bits(BitsOp::AllSet, parse_bitmask(k, v)?),
            "$bitsAnySet" => Pred::Bits(BitsOp::AnySet, parse_bitmask(k, v)?),
            "$bitsAllClear" => Pred::Bits(BitsOp::AllClear, parse_bitmask(k, v)?),
            "$bitsAnyClear" => Pred::Bits(BitsOp::AnyClear, parse_bitmask(k, v)?),
            "$where" | "$function" | "$accumulator" => {
                return Err(EngineError::JavaScriptNotAllowed(k.clone()))
            }
            "$geoWithin" | "$geoIntersects" | "$near" | "$nearSphere" | "$within" | "$text" => {
                return Err(EngineError::Unsupported(k.clone()))
            }
            _ => return Err(EngineError::UnknownOperator(k.clone())),
        };
        preds.push(p);
    }
    if d.contains_key("$options") && !regex_seen {
        return Err(EngineError::bad("$options needs a $regex"));
    }
    Ok(preds)
}

/// `$elemMatch: {$gt: 1}` applies operators to each element; `$elemMatch:
/// {a: 1}` or `{$and: [...]}` is a query on sub-documents.
fn is_elem_match_value_form(d: &Document) -> bool {
    match d.keys().next() {
        Some(k) => {
            k.starts_with('$')
                && !matches!(
                    k.as_str(),
                    "$and" | "$or" | "$nor" | "$expr" | "$where" | "$comment" | "$text"
                )
        }
        None => false,
    }
}

fn parse_in_list(v: &Bson, op: &str) -> Result<InList> {
    let Bson::Array(arr) = v else {
        return Err(EngineError::bad(format!("{op} needs an array")));
    };
    let mut l = InList::default();
    for e in arr {
        match e {
            Bson::RegularExpression(r) => l.regexes.push(RegexPred::new(&r.pattern, &r.options)?),
            Bson::Document(d) if is_operator_doc(d) => {
                return Err(EngineError::bad(format!("cannot nest $ under {op}")))
            }
            Bson::Null => {
                l.has_null = true;
                l.values.push(Bson::Null);
            }
            other => l.values.push(other.clone()),
        }
    }
    Ok(l)
}

fn parse_type_sels(v: &Bson) -> Result<Vec<TypeSel>> {
    fn one(v: &Bson) -> Result<TypeSel> {
        if let Some(n) = Num::from_bson(v) {
            let Some(i) = n.as_exact_i64() else {
                return Err(EngineError::bad(format!(
                    "Invalid numerical type code: {}",
                    fmt_bson(v)
                )));
            };
            if !(matches!(i, -1 | 127) || (1..=19).contains(&i)) {
                return Err(EngineError::bad(format!(
                    "Invalid numerical type code: {i}"
                )));
            }
            return Ok(TypeSel::Code(i as i32));
        }
        let Bson::String(s) = v else {
            return Err(EngineError::TypeMismatch(
                "type must be represented as a number or a string".into(),
            ));
        };
        let code = match s.as_str() {
            "number" => return Ok(TypeSel::Number),
            "double" => 1,
            "string" => 2,
            "object" => 3,
            "array" => 4,
            "binData" => 5,
            "undefined" => 6,
            "objectId" => 7,
            "bool" => 8,
            "date" => 9,
            "null" => 10,
            "regex" => 11,
            "dbPointer" => 12,
            "javascript" => 13,
            "symbol" => 14,
            "javascriptWithScope" => 15,
            "int" => 16,
            "timestamp" => 17,
            "long" => 18,
            "decimal" => 19,
            "minKey" => -1,
            "maxKey" => 127,
            _ => return Err(EngineError::bad(format!("Unknown type name alias: {s}"))),
        };
        Ok(TypeSel::Code(code))
    }
    match v {
        Bson::Array(arr) => arr.iter().map(one).collect(),
        other => Ok(vec![one(other)?]),
    }
}

fn parse_size(v: &Bson) -> Result<i64> {
    let Some(n) = Num::from_bson(v) else {
        return Err(EngineError::bad("$size needs a number"));
    };
    match n.as_exact_i64() {
        Some(i) if i >= 0 => Ok(i),
        Some(_) => Err(EngineError::bad("$size may not be negative")),
        None => Err(EngineError::bad("$size must be a whole number")),
    }
}

fn parse_all(v: &Bson, depth: usize) -> Result<Pred> {
    let Bson::Array(arr) = v else {
        return Err(EngineError::bad("$all needs an array"));
    };
    let mut preds = Vec::with_capacity(arr.len());
    for e in arr {
        match e {
            Bson::Document(d) if d.keys().next().map(String::as_str) == Some("$elemMatch") => {
                let mut p = parse_operators(d, depth + 1)?;
                preds.append(&mut p);
            }
            Bson::Document(d) if is_operator_doc(d) => {
                return Err(EngineError::bad("no $ expressions in $all"))
            }
            Bson::RegularExpression(r) => preds.push(Pred::Regex(Box::new(RegexPred::new(
                &r.pattern, &r.options,
            )?))),
            other => preds.push(Pred::Eq(other.clone())),
        }
    }
    Ok(Pred::All(preds))
}

fn parse_mod(v: &Bson) -> Result<Pred> {
    let Bson::Array(arr) = v else {
        return Err(EngineError::bad("malformed mod, needs to be an array"));
    };
    if arr.len() < 2 {
        return Err(EngineError::bad("malformed mod, not enough elements"));
    }
    if arr.len() > 2 {
        return Err(EngineError::bad("malformed mod, too many elements"));
    }
    let to_i = |b: &Bson, what: &str| -> Result<i64> {
        let n = Num::from_bson(b)
            .ok_or_else(|| EngineError::bad(format!("malformed mod, {what} not a number")))?;
        let f = n.as_f64();
        if !f.is_finite() {
            return Err(EngineError::bad(format!("malformed mod, {what} value is invalid :: caused by :: Unable to coerce NaN/Inf to integral type")));
        }
        Ok(match n {
            Num::I32(i) => i as i64,
            Num::I64(i) => i,
            _ => f.trunc() as i64,
        })
    };
    let d = to_i(&arr[0], "divisor")?;
    let r = to_i(&arr[1], "remainder")?;
    if d == 0 {
        return Err(EngineError::bad("divisor cannot be 0"));
    }
    Ok(Pred::Mod(d, r))
}

/// Bit masks are stored as little-endian bytes regardless of how they were given.
fn parse_bitmask(op: &str, v: &Bson) -> Result<Vec<u8>> {
    if let Some(n) = Num::from_bson(v) {
        let Some(i) = n.as_exact_i64() else {
            return Err(EngineError::bad(format!(
                "{op} cannot represent value as a 64-bit integer: {}",
                fmt_bson(v)
            )));
        };
        if i < 0 {
            return Err(EngineError::bad(format!(
                "{op} cannot take a negative number: {i}"
            )));
        }
        return Ok((i as u64).to_le_bytes().to_vec());
    }
    match v {
        Bson::Binary(b) => Ok(b.bytes.clone()),
        Bson::Array(positions) => {
            let mut mask = Vec::new();
            for p in positions {
                let Some(i) = Num::from_bson(p).and_then(|n| n.as_exact_i64()) else {
                    return Err(EngineError::bad(format!(
                        "bit positions must be an integer but got: {}",
                        fmt_bson(p)
                    )));
                };
                if i < 0 {
                    return Err(EngineError::bad(format!(
                        "bit positions must be >= 0 but got: {i}"
                    )));
                }
                if i > 1 << 20 {
                    return Err(EngineError::bad("bit position too large"));
                }
                let (byte, bit) = ((i / 8) as usize, (i % 8) as u32);
                if mask.len() <= byte {
                    mask.resize(byte + 1, 0);
                }
                mask[byte] |= 1 << bit;
            }
            Ok(mask)
        }
        _ => Err(EngineError::bad(format!(
            "{op} takes an Array, a number, or a BinData but received: {}",
            fmt_bson(v)
        ))),
    }
}

impl RegexPred {
    pub(crate) fn new(pattern: &str, options: &str) -> Result<RegexPred> {
        let re = build_regex(pattern, options)?;
        Ok(RegexPred {
            re,
            pattern: pattern.to_string(),
            options: options.to_string(),
        })
    }

    #[inline]
    fn matches_value(&self, v: &Bson) -> bool {
        match v {
            Bson::String(s) | Bson::Symbol(s) => self.re.is_match(s),
            Bson::RegularExpression(r) => r.pattern == self.pattern && r.options == self.options,
            _ => false,
        }
    }
}

/// Compiles a MongoDB (PCRE-flavoured) regex with flags i, m, s, x (u is
/// accepted and implied).
pub(crate) fn build_regex(pattern: &str, options: &str) -> Result<regex::Regex> {
    use super::limits::{LimitError, MAX_REGEX_PATTERN_BYTES, REGEX_COMPILED_SIZE_LIMIT};
    if pattern.len() > MAX_REGEX_PATTERN_BYTES {
        return Err(LimitError::RegexTooLong {
            length: pattern.len(),
            limit: MAX_REGEX_PATTERN_BYTES,
        }
        .into());
    }
    let mut b = regex::RegexBuilder::new(pattern);
    for c in options.chars() {
        match c {
            'i' => {
                b.case_insensitive(true);
            }
            'm' => {
                b.multi_line(true);
            }
            's' => {
                b.dot_matches_new_line(true);
            }
            'x' => {
                b.ignore_whitespace(true);
            }
            'u' => {}
            other => {
                return Err(EngineError::bad(format!(
                    "invalid flag in regex options: {other}"
                )))
            }
        }
    }
    b.size_limit(REGEX_COMPILED_SIZE_LIMIT);
    b.dfa_size_limit(REGEX_COMPILED_SIZE_LIMIT);
    b.build().map_err(|e| match e {
        regex::Error::CompiledTooBig(_) => LimitError::RegexTooLarge {
            limit: REGEX_COMPILED_SIZE_LIMIT,
        }
        .into(),
        e => EngineError::bad(format!("Regular expression is invalid: {e}")),
    })
}

// ---------------------------------------------------------------- matching

impl Node {
    pub(crate) fn matches(&self, doc: &Document, ctx: &mut MatchCtx<'_>) -> bool {
        match self {
            Node::And(ch) => ch.iter().all(|c| c.matches(doc, ctx)),
            Node::Or(ch) => ch.iter().any(|c| c.matches(doc, ctx)),
            Node::Nor(ch) => {
                let rec = std::mem::replace(&mut ctx.record, false);
                let r = !ch.iter().any(|c| c.matches(doc, ctx));
                ctx.record = rec;
                r
            }
            Node::Field(path, preds) => {
                preds.iter().all(|p| p.matches_path(doc, path.parts(), ctx))
            }
            Node::Expr(e) => {
                let empty = Vars::default();
                let vars = ctx.vars.unwrap_or(&empty);
                match e.eval(doc, vars) {
                    Ok(v) => super::compare::truthy(v.as_ref()),
                    Err(err) => {
                        if ctx.err.is_none() {
                            ctx.err = Some(err);
                        }
                        false
                    }
                }
            }
            Node::Const(b) => *b,
        }
    }
}

impl Pred {
    /// Applies the predicate to every value `parts` resolves to in `doc`.
    fn matches_path(&self, doc: &Document, parts: &[PathPart], ctx: &mut MatchCtx<'_>) -> bool {
        match self {
            Pred::Ne(t) => !walk(doc, parts, true, &mut |f| eq_matches(t, f.value)),
            Pred::Nin(l) => !walk(doc, parts, true, &mut |f| in_matches(l, f.value)),
            Pred::Exists(false) => !walk(doc, parts, true, &mut |f| f.value.is_some()),
            Pred::Not(ps) => {
                let rec = std::mem::replace(&mut ctx.record, false);
                let r = !ps.iter().all(|p| p.matches_path(doc, parts, ctx));
                ctx.record = rec;
                r
            }
            Pred::All(ps) => !ps.is_empty() && ps.iter().all(|p| p.matches_path(doc, parts, ctx)),
            Pred::Size(_) | Pred::ElemMatchDoc(_) | Pred::ElemMatchVal(_) => {
                let mut pos = None;
                let rec = ctx.record;
                let m = self.any_match_array(doc, parts, ctx, &mut pos);
                if m && rec {
                    if let Some(p) = pos {
                        ctx.pos = Some(p);
                    }
                }
                m
            }
            _ => {
                let mut pos = None;
                let m = self.any_match(doc, parts, true, &mut pos);
                if m && ctx.record {
                    if let Some(p) = pos {
                        ctx.pos = Some(p);
                    }
                }
                m
            }
        }
    }

    fn any_match(
        &self,
        doc: &Document,
        parts: &[PathPart],
        expand: bool,
        pos: &mut Option<usize>,
    ) -> bool {
        walk(doc, parts, expand, &mut |f: Found<'_>| {
            if self.matches_item(f.value) {
                *pos = f.arr_idx;
                true
            } else {
                false
            }
        })
    }

    /// `$size`/`$elemMatch`: the resolved value itself must be an array.
    fn any_match_array(
        &self,
        doc: &Document,
        parts: &[PathPart],
        ctx: &mut MatchCtx<'_>,
        pos: &mut Option<usize>,
    ) -> bool {
        let vars = ctx.vars;
        walk(doc, parts, false, &mut |f: Found<'_>| {
            let Some(Bson::Array(arr)) = f.value else {
                return false;
            };
            match self {
                Pred::Size(n) => {
                    if arr.len() as i64 == *n {
                        *pos = f.arr_idx;
                        return true;
                    }
                    false
                }
                Pred::ElemMatchDoc(node) => {
                    for (i, e) in arr.iter().enumerate() {
                        if elem_matches_doc(node, e, vars) {
                            *pos = f.arr_idx.or(Some(i));
                            return true;
                        }
                    }
                    false
                }
                Pred::ElemMatchVal(ps) => {
                    for (i, e) in arr.iter().enumerate() {
                        if ps.iter().all(|p| p.matches_single(e)) {
                            *pos = f.arr_idx.or(Some(i));
                            return true;
                        }
                    }
                    false
                }
                _ => false,
            }
        })
    }

    /// Positive predicate on one resolved value (`None` = missing).
    fn matches_item(&self, v: Option<&Bson>) -> bool {
        match self {
            Pred::Eq(t) => eq_matches(t, v),
            Pred::Cmp(op, t) => cmp_matches(*op, t, v),
            Pred::In(l) => in_matches(l, v),
            Pred::Exists(b) => v.is_some() == *b,
            Pred::Type(sels) => match v {
                Some(x) => sels.iter().any(|s| match s {
                    TypeSel::Number => Num::from_bson(x).is_some(),
                    TypeSel::Code(c) => type_number(x) == *c,
                }),
                None => false,
            },
            Pred::Regex(r) => v.is_some_and(|x| r.matches_value(x)),
            Pred::Mod(d, r) => v.and_then(Num::from_bson).is_some_and(|n| {
                let x = match n {
                    Num::I32(i) => i as i64,
                    Num::I64(i) => i,
                    Num::F64(f) | Num::Dec(f) => {
                        if !f.is_finite() {
                            return false;
                        }
                        f.trunc() as i64
                    }
                };
                x.checked_rem(*d).unwrap_or(0) == *r
            }),
            Pred::Bits(op, mask) => v.is_some_and(|x| bits_match(*op, mask, x)),
            Pred::Size(_) | Pred::ElemMatchDoc(_) | Pred::ElemMatchVal(_) => match v {
                Some(x) => self.matches_single(x),
                None => false,
            },
            Pred::Ne(_) | Pred::Nin(_) | Pred::Not(_) | Pred::All(_) => match v {
                Some(x) => self.matches_single(x),
                None => !matches!(self, Pred::All(_)) && self.negated_missing(),
            },
        }
    }

    fn negated_missing(&self) -> bool {
        match self {
            Pred::Ne(t) => !eq_matches(t, None),
            Pred::Nin(l) => !l.has_null,
            Pred::Not(ps) => !ps.iter().all(|p| p.matches_item(None)),
            _ => false,
        }
    }

    /// Predicate applied to a single value with no array expansion (the
    /// semantics inside `$elemMatch: {$op: ...}`).
    pub(crate) fn matches_single(&self, e: &Bson) -> bool {
        match self {
            Pred::Ne(t) => !eq_matches(t, Some(e)),
            Pred::Nin(l) => !in_matches(l, Some(e)),
            Pred::Not(ps) => !ps.iter().all(|p| p.matches_single(e)),
            Pred::All(ps) => !ps.is_empty() && ps.iter().all(|p| p.matches_single(e)),
            Pred::Size(n) => matches!(e, Bson::Array(a) if a.len() as i64 == *n),
            Pred::ElemMatchDoc(node) => match e {
                Bson::Array(a) => a.iter().any(|x| elem_matches_doc(node, x, None)),
                _ => false,
            },
            Pred::ElemMatchVal(ps) => match e {
                Bson::Array(a) => a.iter().any(|x| ps.iter().all(|p| p.matches_single(x))),
                _ => false,
            },
            other => other.matches_item(Some(e)),
        }
    }
}

/// `$elemMatch` on documents: MongoDB treats any BSON object, arrays
/// included (as `{"0": .., "1": ..}`), as a candidate element.
fn elem_matches_doc(node: &Node, e: &Bson, vars: Option<&Vars>) -> bool {
    match e {
        Bson::Document(d) => node.matches(d, &mut MatchCtx::new(false, vars)),
        Bson::Array(a) => {
            let d: Document = a
                .iter()
                .enumerate()
                .map(|(i, v)| (i.to_string(), v.clone()))
                .collect();
            node.matches(&d, &mut MatchCtx::new(false, vars))
        }
        _ => false,
    }
}

#[inline]
fn is_nullish(v: &Bson) -> bool {
    matches!(v, Bson::Null | Bson::Undefined)
}

#[inline]
fn eq_matches(t: &Bson, v: Option<&Bson>) -> bool {
    match v {
        None => matches!(t, Bson::Null),
        Some(x) => {
            if matches!(t, Bson::Null) {
                is_nullish(x)
            } else {
                values_equal(x, t)
            }
        }
    }
}

fn cmp_matches(op: CmpOp, t: &Bson, v: Option<&Bson>) -> bool {
    let inclusive = matches!(op, CmpOp::Gte | CmpOp::Lte);
    let Some(x) = v else {
        // Missing compares like null, and null is only ever equal to null;
        // MinKey/MaxKey bounds admit every other bracket, missing included.
        return match t {
            Bson::Null => inclusive,
            Bson::MinKey => matches!(op, CmpOp::Gt | CmpOp::Gte),
            Bson::MaxKey => matches!(op, CmpOp::Lt | CmpOp::Lte),
            _ => false,
        };
    };
    if matches!(t, Bson::Null) {
        return is_nullish(x) && inclusive;
    }
    if type_rank(x) != type_rank(t) {
        // MinKey/MaxKey bounds compare across brackets.
        if !matches!(t, Bson::MinKey | Bson::MaxKey) {
            return false;
        }
    } else if let (Some(a), Some(b)) = (Num::from_bson(x), Num::from_bson(t)) {
        let (an, bn) = (a.as_f64().is_nan(), b.as_f64().is_nan());
        if an || bn {
            return an && bn && inclusive;
        }
    }
    let o = compare_bson(x, t);
    match op {
        CmpOp::Gt => o == Ordering::Greater,
        CmpOp::Gte => o != Ordering::Less,
        CmpOp::Lt => o == Ordering::Less,
        CmpOp::Lte => o != Ordering::Greater,
    }
}

fn in_matches(l: &InList, v: Option<&Bson>) -> bool {
    match v {
        None => l.has_null,
        Some(x) => {
            if is_nullish(x) && l.has_null {
                return true;
            }
            l.values
                .iter()
                .any(|t| !matches!(t, Bson::Null) && values_equal(x, t))
                || l.regexes.iter().any(|r| r.matches_value(x))
        }
    }
}

fn bits_match(op: BitsOp, mask: &[u8], v: &Bson) -> bool {
    // Little-endian bytes of the value; numbers must be integral int64s.
    let bytes: Vec<u8>;
    let sign_ext: u8;
    match v {
        Bson::Binary(b) => {
            bytes = b.bytes.clone();
            sign_ext = 0;
        }
        other => {
            let Some(n) = Num::from_bson(other) else {
                return false;
            };
            let i = match n {
                Num::I32(i) => i as i64,
                Num::I64(i) => i,
                Num::F64(f) | Num::Dec(f) => {
                    if !f.is_finite()
                        || f.fract() != 0.0
                        || !(-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&f)
                    {
                        return false;
                    }
                    f as i64
                }
            };
            bytes = i.to_le_bytes().to_vec();
            sign_ext = if i < 0 { 0xff } else { 0 };
        }
    }
    let mut all_set = true;
    let mut any_set = false;
    let mut all_clear = true;
    let mut any_clear = false;
    for (i, m) in mask.iter().enumerate() {
        if *m == 0 {
            continue;
        }
        let b = bytes.get(i).copied().unwrap_or(sign_ext);
        let set = b & m;
        if set != *m {
            all_set = false;
            any_clear = true;
        }
        if set != 0 {
            any_set = true;
            all_clear = false;
        }
    }
    match op {
        BitsOp::AllSet => all_set,
        BitsOp::AnySet => any_set,
        BitsOp::AllClear => all_clear,
        BitsOp::AnyClear => any_clear,
    }
}

/// A predicate applied to bare values rather than documents: the value side
/// of `$pull: {arr: {$gte: 5}}` (MongoDB wraps the element as `{"": elem}`).
#[derive(Debug, Clone)]
pub(crate) struct ValueMatcher {
    preds: Vec<Pred>,
}

impl ValueMatcher {
    pub(crate) fn parse(v: &Bson) -> Result<ValueMatcher> {
        Ok(ValueMatcher {
            preds: parse_value_preds(v, 0)?,
        })
    }

    pub(crate) fn matches(&self, v: &Bson) -> bool {
        self.preds.iter().all(|p| p.matches_value_root(v))
    }
}

impl Pred {
    fn matches_value_root(&self, v: &Bson) -> bool {
        match self {
            Pred::Ne(_) | Pred::Nin(_) | Pred::Exists(false) | Pred::Not(_) => {
                let positive_any = match self {
                    Pred::Ne(t) => walk_value(v, &[], true, &mut |f| eq_matches(t, f.value)),
                    Pred::Nin(l) => walk_value(v, &[], true, &mut |f| in_matches(l, f.value)),
                    Pred::Exists(_) => walk_value(v, &[], true, &mut |f| f.value.is_some()),
                    Pred::Not(ps) => ps.iter().all(|p| p.matches_value_root(v)),
                    _ => false,
                };
                !positive_any
            }
            Pred::All(ps) => !ps.is_empty() && ps.iter().all(|p| p.matches_value_root(v)),
            Pred::Size(_) | Pred::ElemMatchDoc(_) | Pred::ElemMatchVal(_) => self.matches_single(v),
            _ => walk_value(v, &[], true, &mut |f| self.matches_item(f.value)),
        }
    }
}
