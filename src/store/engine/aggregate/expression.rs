//! Aggregation expressions (`$add`, `$cond`, field paths, `$$vars`, ...).
//!
//! Evaluation returns `Option<Bson>`: `None` is MongoDB's "missing", which is
//! distinct from null (e.g. object expressions drop missing fields, and
//! `$eq: ["$nope", null]` is false).

use std::cmp::Ordering;
use std::sync::Arc;

use bson::{Bson, Document};

use crate::store::engine::budget::{check_built_value, check_new_value};
use crate::store::engine::compare::{
    compare_bson, f64_to_decimal, fmt_bson, num_add, num_mul, truthy, type_name, Num,
};
use crate::store::engine::error::EngineError;
use crate::store::engine::limits::{measure, SLOT_BYTES as SLOT};
use crate::store::engine::path::get_expr_path_value;
use crate::store::engine::Result;

/// Collects the values an expression builds into one array or object,
/// refusing as soon as their total passes the budget (each element was
/// cloned or computed already; this bounds how many of them pile up).
#[derive(Default)]
struct Building {
    bytes: u64,
}

impl Building {
    fn add(&mut self, v: &Bson) -> Result<()> {
        self.bytes += measure(v).bytes;
        Ok(check_new_value(self.bytes)?)
    }
}

/// User variables in scope (`$$name`), innermost last.
///
/// Values are shared (`Arc`), so opening a scope (`$let`, `$map`, `$filter`,
/// `$reduce`) copies handles, not values: a chain of `$let`s that each double
/// the previous variable would otherwise hold every value once per level. The
/// bytes bound in one scope chain are counted and capped like one built value
/// ([`check_new_value`]), so variables cannot pile up past that cap either.
#[derive(Debug, Clone, Default)]
pub struct Vars {
    /// `None` = bound to "missing" (e.g. `let: {x: "$nope"}`).
    entries: Vec<(String, Option<Arc<Bson>>)>,
    /// Measured bytes of the values bound in this chain of scopes.
    held: u64,
}

impl Vars {
    pub fn new() -> Vars {
        Vars::default()
    }

    /// Outer `None`: not defined; inner `None`: defined as missing.
    pub fn get(&self, name: &str) -> Option<Option<&Bson>> {
        self.entries
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_deref())
    }

    /// A child scope with `name` bound to `value`.
    pub fn with(&self, name: &str, value: Bson) -> Result<Vars> {
        let mut v = self.clone();
        v.push(name, Some(value))?;
        Ok(v)
    }

    /// Binds `name` in this scope; refused when the scope chain would hold more
    /// than one built value may.
    pub fn push(&mut self, name: &str, value: Option<Bson>) -> Result<()> {
        if let Some(value) = &value {
            self.held = self.held.saturating_add(measure(value).bytes);
            check_new_value(self.held)?;
        }
        self.entries.push((name.to_string(), value.map(Arc::new)));
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Add,
    Subtract,
    Multiply,
    Divide,
    Mod,
    Abs,
    Floor,
    Ceil,
    Sqrt,
    Pow,
    Trunc,
    Round,
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
    Cmp,
    And,
    Or,
    Not,
    IfNull,
    Concat,
    ToLower,
    ToUpper,
    SubstrBytes,
    SubstrCP,
    StrLenCP,
    StrLenBytes,
    Split,
    Strcasecmp,
    Size,
    ArrayElemAt,
    In,
    First,
    Last,
    ConcatArrays,
    IsArray,
    ReverseArray,
    Slice,
    Range,
    IndexOfArray,
    ObjectToArray,
    ArrayToObject,
    ToString,
    ToInt,
    ToLong,
    ToDouble,
    ToDecimal,
    ToBool,
    ToDate,
    ToObjectId,
    Type,
    IsNumber,
    MergeObjects,
    Sum,
    Avg,
    Min,
    Max,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DatePart {
    Year,
    Month,
    DayOfMonth,
    Hour,
    Minute,
    Second,
    Millisecond,
    DayOfWeek,
    DayOfYear,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TrimKind {
    Both,
    Left,
    Right,
}

/// A parsed aggregation expression.
#[derive(Debug, Clone)]
pub enum Expr {
    Lit(Bson),
    /// `$a.b` (relative to `$$CURRENT`, which is always the root here).
    Field(Vec<String>),
    /// `$$ROOT.x` / `$$CURRENT.x`.
    Root(Vec<String>),
    /// `$$name.x` for user variables.
    Var(String, Vec<String>),
    Remove,
    Now,
    Obj(Vec<(String, Expr)>),
    Arr(Vec<Expr>),
    #[doc(hidden)]
    Op(OpBox),
}

/// Boxed operator node (keeps `Expr` small).
#[derive(Debug, Clone)]
pub struct OpBox(Box<OpNode>);

#[derive(Debug, Clone)]
pub(crate) enum OpNode {
    Nary(Op, Vec<Expr>),
    Cond(Expr, Expr, Expr),
    Switch(Vec<(Expr, Expr)>, Option<Expr>),
    Filter {
        input: Expr,
        var: String,
        cond: Expr,
        limit: Option<Expr>,
    },
    Map {
        input: Expr,
        var: String,
        body: Expr,
    },
    Reduce {
        input: Expr,
        initial: Expr,
        body: Expr,
    },
    Let {
        vars: Vec<(String, Expr)>,
        body: Expr,
    },
    DatePart(DatePart, Expr, Option<Expr>),
    Trim(TrimKind, Expr, Option<Expr>),
    Convert {
        input: Expr,
        to: Expr,
        on_error: Option<Expr>,
        on_null: Option<Expr>,
    },
}

fn op(node: OpNode) -> Expr {
    Expr::Op(OpBox(Box::new(node)))
}

fn split_path(s: &str) -> Result<Vec<String>> {
    crate::store::engine::limits::check_path(s)?;
    let parts: Vec<String> = s.split('.').map(str::to_string).collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(EngineError::bad(format!(
            "FieldPath field names may not be empty strings: '{s}'"
        )));
    }
    Ok(parts)
}

impl Expr {
    /// Parses an expression value (`"$a"`, `{$add: [...]}`, literals, ...).
    pub fn parse(v: &Bson) -> Result<Expr> {
        parse_expr(v, 0)
    }

    /// True when this is a plain constant.
    pub fn is_const(&self) -> bool {
        matches!(self, Expr::Lit(_))
    }

    /// Evaluates against `root` (also `$$CURRENT`).
    pub fn eval(&self, root: &Document, vars: &Vars) -> Result<Option<Bson>> {
        eval(self, root, vars)
    }

    /// Does the expression reference user variables (`$$x`)? Used to decide
    /// whether `$lookup` sub-pipelines depend on the outer document.
    pub fn uses_vars(&self) -> bool {
        match self {
            Expr::Var(..) => true,
            Expr::Obj(f) => f.iter().any(|(_, e)| e.uses_vars()),
            Expr::Arr(a) => a.iter().any(Expr::uses_vars),
            Expr::Op(_) => true, // conservative
            _ => false,
        }
    }
}

use crate::store::engine::limits::MAX_SPEC_DEPTH;

fn parse_expr(v: &Bson, depth: usize) -> Result<Expr> {
    if depth > MAX_SPEC_DEPTH {
        return Err(crate::store::engine::limits::LimitError::too_deep(
            "The expression",
            MAX_SPEC_DEPTH,
        )
        .into());
    }
    match v {
        Bson::String(s) if s.starts_with("$$") => {
            let rest = &s[2..];
            let mut it = rest.splitn(2, '.');
            let name = it.next().unwrap_or("");
            let sub = match it.next() {
                Some(p) => split_path(p)?,
                None => Vec::new(),
            };
            match name {
                "ROOT" | "CURRENT" => Ok(Expr::Root(sub)),
                "REMOVE" => Ok(Expr::Remove),
                "NOW" | "CLUSTER_TIME" => Ok(Expr::Now),
                "" => Err(EngineError::bad("empty variable name")),
                n => {
                    if !n.starts_with(|c: char| c.is_ascii_lowercase() || !c.is_ascii()) {
                        return Err(EngineError::bad(format!("Use of undefined variable: {n}")));
                    }
                    Ok(Expr::Var(n.to_string(), sub))
                }
            }
        }
        Bson::String(s) if s.starts_with('$') => {
            if s.len() == 1 {
                return Err(EngineError::bad("'$' by itself is not a valid FieldPath"));
            }
            Ok(Expr::Field(split_path(&s[1..])?))
        }
        Bson::Array(a) => Ok(Expr::Arr(
            a.iter()
                .map(|e| parse_expr(e, depth + 1))
                .collect::<Result<_>>()?,
        )),
        Bson::Document(d) => {
            let first = d.keys().next();
            match first {
                Some(k) if k.starts_with('$') => {
                    if d.len() != 1 {
                        return Err(EngineError::bad(format!(
                            "an expression specification must contain exactly one field, the name of the expression. Found {} fields in {}",
                            d.len(),
                            crate::store::engine::compare::fmt_doc(d)
                        )));
                    }
                    let arg = d.get(k).unwrap_or(&Bson::Null);
                    parse_operator(k, arg, depth)
                }
                _ => {
                    let mut fields = Vec::with_capacity(d.len());
                    for (k, fv) in d {
                        if k.starts_with('$') {
                            return Err(EngineError::bad(format!(
                                "Invalid $project :: caused by :: FieldPath field names may not start with '$'. Consider using $getField or $setField. : {k}"
                            )));
                        }
                        if k.contains('.') {
                            return Err(EngineError::bad(format!(
                                "Invalid $project :: caused by :: FieldPath field names may not contain '.'. : {k}"
                            )));
                        }
                        fields.push((k.clone(), parse_expr(fv, depth + 1)?));
                    }
                    Ok(Expr::Obj(fields))
                }
            }
        }
        other => Ok(Expr::Lit(other.clone())),
    }
}

fn args_of(arg: &Bson, depth: usize) -> Result<Vec<Expr>> {
    match arg {
        Bson::Array(a) => a.iter().map(|e| parse_expr(e, depth + 1)).collect(),
        other => Ok(vec![parse_expr(other, depth + 1)?]),
    }
}

fn check_arity(name: &str, args: &[Expr], min: usize, max: usize) -> Result<()> {
    let n = args.len();
    if n < min || n > max {
        let msg = if min == max {
            format!("Expression {name} takes exactly {min} arguments. {n} were passed in.")
        } else if max == usize::MAX {
            format!("Expression {name} takes at least {min} arguments. {n} were passed in.")
        } else {
            format!("Expression {name} takes at least {min} arguments, and at most {max}. {n} were passed in.")
        };
        return Err(EngineError::bad(msg));
    }
    Ok(())
}

fn obj_arg<'a>(name: &str, arg: &'a Bson) -> Result<&'a Document> {
    match arg {
        Bson::Document(d) => Ok(d),
        _ => Err(EngineError::bad(format!(
            "{name} only supports an object as its argument"
        ))),
    }
}

/// Operators taking a plain argument list go through small stack frames on
/// the way down (a client controls how deep expressions nest); the others
/// are parsed by [`parse_special`].
fn parse_operator(name: &str, arg: &Bson, depth: usize) -> Result<Expr> {
    if let Some((o, min, max)) = nary_op(name) {
        let args = args_of(arg, depth)?;
        check_arity(name, &args, min, max)?;
        return Ok(op(OpNode::Nary(o, args)));
    }
    if matches!(
        name,
        "$year"
            | "$month"
            | "$dayOfMonth"
            | "$hour"
            | "$minute"
            | "$second"
            | "$millisecond"
            | "$dayOfWeek"
            | "$dayOfYear"
    ) {
        return parse_date_part(name, arg, depth);
    }
    parse_special(name, arg, depth)
}

const ANY: usize = usize::MAX;

/// The n-ary operators: (operator, least and most arguments).
fn nary_op(name: &str) -> Option<(Op, usize, usize)> {
    Some(match name {
        "$add" => (Op::Add, 0, ANY),
        "$subtract" => (Op::Subtract, 2, 2),
        "$multiply" => (Op::Multiply, 0, ANY),
        "$divide" => (Op::Divide, 2, 2),
        "$mod" => (Op::Mod, 2, 2),
        "$abs" => (Op::Abs, 1, 1),
        "$floor" => (Op::Floor, 1, 1),
        "$ceil" => (Op::Ceil, 1, 1),
        "$sqrt" => (Op::Sqrt, 1, 1),
        "$pow" => (Op::Pow, 2, 2),
        "$trunc" => (Op::Trunc, 1, 2),
        "$round" => (Op::Round, 1, 2),
        "$eq" => (Op::Eq, 2, 2),
        "$ne" => (Op::Ne, 2, 2),
        "$gt" => (Op::Gt, 2, 2),
        "$gte" => (Op::Gte, 2, 2),
        "$lt" => (Op::Lt, 2, 2),
        "$lte" => (Op::Lte, 2, 2),
        "$cmp" => (Op::Cmp, 2, 2),
        "$and" => (Op::And, 0, ANY),
        "$or" => (Op::Or, 0, ANY),
        "$not" => (Op::Not, 1, 1),
        "$ifNull" => (Op::IfNull, 2, ANY),
        "$concat" => (Op::Concat, 0, ANY),
        "$toLower" => (Op::ToLower, 1, 1),
        "$toUpper" => (Op::ToUpper, 1, 1),
        "$substr" | "$substrBytes" => (Op::SubstrBytes, 3, 3),
        "$substrCP" => (Op::SubstrCP, 3, 3),
        "$strLenCP" => (Op::StrLenCP, 1, 1),
        "$strLenBytes" => (Op::StrLenBytes, 1, 1),
        "$split" => (Op::Split, 2, 2),
        "$strcasecmp" => (Op::Strcasecmp, 2, 2),
        "$size" => (Op::Size, 1, 1),
        "$arrayElemAt" => (Op::ArrayElemAt, 2, 2),
        "$in" => (Op::In, 2, 2),
        "$first" => (Op::First, 1, 1),
        "$last" => (Op::Last, 1, 1),
        "$concatArrays" => (Op::ConcatArrays, 0, ANY),
        "$isArray" => (Op::IsArray, 1, 1),
        "$reverseArray" => (Op::ReverseArray, 1, 1),
        "$slice" => (Op::Slice, 2, 3),
        "$range" => (Op::Range, 2, 3),
        "$indexOfArray" => (Op::IndexOfArray, 2, 4),
        "$objectToArray" => (Op::ObjectToArray, 1, 1),
        "$arrayToObject" => (Op::ArrayToObject, 1, 1),
        "$toString" => (Op::ToString, 1, 1),
        "$toInt" => (Op::ToInt, 1, 1),
        "$toLong" => (Op::ToLong, 1, 1),
        "$toDouble" => (Op::ToDouble, 1, 1),
        "$toDecimal" => (Op::ToDecimal, 1, 1),
        "$toBool" => (Op::ToBool, 1, 1),
        "$toDate" => (Op::ToDate, 1, 1),
        "$toObjectId" => (Op::ToObjectId, 1, 1),
        "$type" => (Op::Type, 1, 1),
        "$isNumber" => (Op::IsNumber, 1, 1),
        "$mergeObjects" => (Op::MergeObjects, 0, ANY),
        "$sum" => (Op::Sum, 0, ANY),
        "$avg" => (Op::Avg, 0, ANY),
        "$min" => (Op::Min, 0, ANY),
        "$max" => (Op::Max, 0, ANY),
        _ => return None,
    })
}

/// The operators with named arguments. Their arguments sit one object
/// deeper, and this function's frame is large: they count two levels.
#[inline(never)]
fn parse_special(name: &str, arg: &Bson, depth: usize) -> Result<Expr> {
    match name {
        "$literal" => Ok(Expr::Lit(arg.clone())),
        "$cond" => match arg {
            Bson::Document(d) => {
                for k in d.keys() {
                    if !matches!(k.as_str(), "if" | "then" | "else") {
                        return Err(EngineError::bad(format!(
                            "Unrecognized parameter to $cond: {k}"
                        )));
                    }
                }
                let get = |k: &str| -> Result<Expr> {
                    match d.get(k) {
                        Some(v) => parse_expr(v, depth + 2),
                        None => Err(EngineError::bad(format!(
                            "Missing '{k}' parameter to $cond"
                        ))),
                    }
                };
                Ok(op(OpNode::Cond(get("if")?, get("then")?, get("else")?)))
            }
            _ => {
                let mut a = args_of(arg, depth + 1)?;
                check_arity(name, &a, 3, 3)?;
                let e = a.pop().unwrap_or(Expr::Lit(Bson::Null));
                let t = a.pop().unwrap_or(Expr::Lit(Bson::Null));
                let i = a.pop().unwrap_or(Expr::Lit(Bson::Null));
                Ok(op(OpNode::Cond(i, t, e)))
            }
        },
        "$switch" => {
            let d = obj_arg(name, arg)?;
            let mut branches = Vec::new();
            let mut default = None;
            for (k, v) in d {
                match k.as_str() {
                    "branches" => {
                        let Bson::Array(bs) = v else {
                            return Err(EngineError::bad(
                                "$switch expected an array for 'branches'",
                            ));
                        };
                        for b in bs {
                            let Bson::Document(bd) = b else {
                                return Err(EngineError::bad(
                                    "$switch expected each branch to be an object",
                                ));
                            };
                            let case = bd.get("case").ok_or_else(|| {
                                EngineError::bad(
                                    "$switch requires each branch have a 'case' expression",
                                )
                            })?;
                            let then = bd.get("then").ok_or_else(|| {
                                EngineError::bad(
                                    "$switch requires each branch have a 'then' expression.",
                                )
                            })?;
                            branches
                                .push((parse_expr(case, depth + 2)?, parse_expr(then, depth + 2)?));
                        }
                    }
                    "default" => default = Some(parse_expr(v, depth + 2)?),
                    other => {
                        return Err(EngineError::bad(format!(
                            "$switch found an unknown argument: {other}"
                        )))
                    }
                }
            }
            if branches.is_empty() {
                return Err(EngineError::bad("$switch requires at least one branch."));
            }
            Ok(op(OpNode::Switch(branches, default)))
        }
        "$filter" | "$map" => {
            let d = obj_arg(name, arg)?;
            let input = d
                .get("input")
                .ok_or_else(|| EngineError::bad(format!("Missing 'input' parameter to {name}")))?;
            let var = match d.get("as") {
                Some(Bson::String(s)) => s.clone(),
                Some(_) => {
                    return Err(EngineError::bad(format!(
                        "'as' parameter to {name} must be a string"
                    )))
                }
                None => "this".to_string(),
            };
            let input = parse_expr(input, depth + 2)?;
            if name == "$filter" {
                for k in d.keys() {
                    if !matches!(k.as_str(), "input" | "as" | "cond" | "limit") {
                        return Err(EngineError::bad(format!(
                            "Unrecognized parameter to $filter: {k}"
                        )));
                    }
                }
                let cond = d
                    .get("cond")
                    .ok_or_else(|| EngineError::bad("Missing 'cond' parameter to $filter"))?;
                let limit = match d.get("limit") {
                    Some(l) => Some(parse_expr(l, depth + 2)?),
                    None => None,
                };
                Ok(op(OpNode::Filter {
                    input,
                    var,
                    cond: parse_expr(cond, depth + 2)?,
                    limit,
                }))
            } else {
                for k in d.keys() {
                    if !matches!(k.as_str(), "input" | "as" | "in") {
                        return Err(EngineError::bad(format!(
                            "Unrecognized parameter to $map: {k}"
                        )));
                    }
                }
                let body = d
                    .get("in")
                    .ok_or_else(|| EngineError::bad("Missing 'in' parameter to $map"))?;
                Ok(op(OpNode::Map {
                    input,
                    var,
                    body: parse_expr(body, depth + 2)?,
                }))
            }
        }
        "$reduce" => {
            let d = obj_arg(name, arg)?;
            let g = |k: &str| -> Result<Expr> {
                parse_expr(
                    d.get(k).ok_or_else(|| {
                        EngineError::bad(format!("Missing '{k}' parameter to $reduce"))
                    })?,
                    depth + 2,
                )
            };
            Ok(op(OpNode::Reduce {
                input: g("input")?,
                initial: g("initialValue")?,
                body: g("in")?,
            }))
        }
        "$let" => {
            let d = obj_arg(name, arg)?;
            let Some(Bson::Document(vd)) = d.get("vars") else {
                return Err(EngineError::bad("Missing 'vars' parameter to $let"));
            };
            let body = d
                .get("in")
                .ok_or_else(|| EngineError::bad("Missing 'in' parameter to $let"))?;
            let vars = vd
                .iter()
                .map(|(k, v)| Ok((k.clone(), parse_expr(v, depth + 2)?)))
                .collect::<Result<_>>()?;
            Ok(op(OpNode::Let {
                vars,
                body: parse_expr(body, depth + 2)?,
            }))
        }
        "$trim" | "$ltrim" | "$rtrim" => {
            let d = obj_arg(name, arg)?;
            let input = d
                .get("input")
                .ok_or_else(|| EngineError::bad(format!("{name} requires an 'input' field")))?;
            let chars = match d.get("chars") {
                Some(c) => Some(parse_expr(c, depth + 2)?),
                None => None,
            };
            let kind = match name {
                "$trim" => TrimKind::Both,
                "$ltrim" => TrimKind::Left,
                _ => TrimKind::Right,
            };
            Ok(op(OpNode::Trim(kind, parse_expr(input, depth + 2)?, chars)))
        }
        "$convert" => {
            let d = obj_arg(name, arg)?;
            let input = d
                .get("input")
                .ok_or_else(|| EngineError::bad("Missing 'input' parameter to $convert"))?;
            let to = d
                .get("to")
                .ok_or_else(|| EngineError::bad("Missing 'to' parameter to $convert"))?;
            let opt = |k: &str| -> Result<Option<Expr>> {
                d.get(k).map(|v| parse_expr(v, depth + 2)).transpose()
            };
            Ok(op(OpNode::Convert {
                input: parse_expr(input, depth + 2)?,
                to: parse_expr(to, depth + 2)?,
                on_error: opt("onError")?,
                on_null: opt("onNull")?,
            }))
        }
        "$function" | "$accumulator" | "$where" => {
            Err(EngineError::JavaScriptNotAllowed(name.to_string()))
        }
        other => Err(EngineError::UnrecognizedExpression(other.to_string())),
    }
}

/// `$year`, `$month`, ...: one argument, which may nest directly (`{$year: {$year: …}}`).
fn parse_date_part(name: &str, arg: &Bson, depth: usize) -> Result<Expr> {
    let part = match name {
        "$year" => DatePart::Year,
        "$month" => DatePart::Month,
        "$dayOfMonth" => DatePart::DayOfMonth,
        "$hour" => DatePart::Hour,
        "$minute" => DatePart::Minute,
        "$second" => DatePart::Second,
        "$millisecond" => DatePart::Millisecond,
        "$dayOfWeek" => DatePart::DayOfWeek,
        _ => DatePart::DayOfYear,
    };
    match arg {
        Bson::Document(d) if d.contains_key("date") => {
            let tz = d
                .get("timezone")
                .map(|t| parse_expr(t, depth + 1))
                .transpose()?;
            Ok(op(OpNode::DatePart(
                part,
                parse_expr(d.get("date").unwrap_or(&Bson::Null), depth + 1)?,
                tz,
            )))
        }
        Bson::Array(a) => {
            if a.len() != 1 {
                return Err(EngineError::bad(format!(
                    "Expression {name} takes exactly 1 arguments. {} were passed in.",
                    a.len()
                )));
            }
            Ok(op(OpNode::DatePart(
                part,
                parse_expr(&a[0], depth + 1)?,
                None,
            )))
        }
        other => Ok(op(OpNode::DatePart(
            part,
            parse_expr(other, depth + 1)?,
            None,
        ))),
    }
}

// ---------------------------------------------------------------- evaluation

type V = Option<Bson>;

fn is_nullish(v: &V) -> bool {
    matches!(v, None | Some(Bson::Null) | Some(Bson::Undefined))
}

/// Missing compares below null in expressions.
fn cmp_values(a: &V, b: &V) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(x), Some(y)) => compare_bson(x, y),
    }
}

fn type_of(v: &V) -> &'static str {
    match v {
        None => "missing",
        Some(b) => type_name(b),
    }
}

fn eval_all(args: &[Expr], root: &Document, vars: &Vars) -> Result<Vec<V>> {
    args.iter().map(|a| eval(a, root, vars)).collect()
}

pub(crate) fn eval(e: &Expr, root: &Document, vars: &Vars) -> Result<V> {
    match e {
        Expr::Lit(b) => Ok(Some(b.clone())),
        Expr::Field(p) => Ok(crate::store::engine::path::get_expr_path(root, p)),
        Expr::Root(p) => {
            if p.is_empty() {
                Ok(Some(Bson::Document(root.clone())))
            } else {
                Ok(crate::store::engine::path::get_expr_path(root, p))
            }
        }
        Expr::Var(name, p) => match vars.get(name) {
            Some(Some(v)) => Ok(get_expr_path_value(v, p)),
            Some(None) => Ok(None),
            None => Err(EngineError::bad(format!(
                "Use of undefined variable: {name}"
            ))),
        },
        Expr::Remove => Ok(None),
        Expr::Now => Ok(Some(Bson::DateTime(bson::DateTime::now()))),
        Expr::Obj(fields) => {
            let mut d = Document::new();
            let mut size = Building::default();
            for (k, fe) in fields {
                if let Some(v) = eval(fe, root, vars)? {
                    size.add(&v)?;
                    d.insert(k.clone(), v);
                }
            }
            Ok(Some(Bson::Document(d)))
        }
        Expr::Arr(items) => {
            let mut out = Vec::with_capacity(items.len());
            let mut size = Building::default();
            for it in items {
                // Missing values inside array literals become null.
                let v = eval(it, root, vars)?.unwrap_or(Bson::Null);
                size.add(&v)?;
                out.push(v);
            }
            Ok(Some(Bson::Array(out)))
        }
        Expr::Op(b) => eval_op(&b.0, root, vars),
    }
}

fn eval_op(node: &OpNode, root: &Document, vars: &Vars) -> Result<V> {
    match node {
        OpNode::Nary(o, args) => eval_nary(*o, args, root, vars),
        OpNode::Cond(i, t, e) => {
            if truthy(eval(i, root, vars)?.as_ref()) {
                eval(t, root, vars)
            } else {
                eval(e, root, vars)
            }
        }
        OpNode::Switch(branches, default) => {
            for (c, t) in branches {
                if truthy(eval(c, root, vars)?.as_ref()) {
                    return eval(t, root, vars);
                }
            }
            match default {
                Some(d) => eval(d, root, vars),
                None => Err(EngineError::expr(
                    "$switch could not find a matching branch for an input, and no default was specified.",
                )),
            }
        }
        OpNode::Filter {
            input,
            var,
            cond,
            limit,
        } => {
            let inp = eval(input, root, vars)?;
            let arr = match inp {
                None | Some(Bson::Null) | Some(Bson::Undefined) => return Ok(Some(Bson::Null)),
                Some(Bson::Array(a)) => a,
                Some(other) => {
                    return Err(EngineError::expr(format!(
                        "input to $filter must be an array not {}",
                        type_name(&other)
                    )))
                }
            };
            let lim = match limit {
                None => usize::MAX,
                Some(l) => match eval(l, root, vars)? {
                    None | Some(Bson::Null) => usize::MAX,
                    Some(b) => match Num::from_bson(&b).and_then(|n| n.as_exact_i64()) {
                        Some(n) if n > 0 => n as usize,
                        _ => return Err(EngineError::expr("$filter: limit must be represented as a positive 32-bit integral value")),
                    },
                },
            };
            let mut out = Vec::new();
            for el in arr {
                if out.len() >= lim {
                    break;
                }
                let scope = vars.with(var, el)?;
                if truthy(eval(cond, root, &scope)?.as_ref()) {
                    if let Some((_, Some(v))) = scope.entries.into_iter().last() {
                        out.push(Arc::unwrap_or_clone(v));
                    }
                }
            }
            Ok(Some(Bson::Array(out)))
        }
        OpNode::Map { input, var, body } => {
            let arr = match eval(input, root, vars)? {
                None | Some(Bson::Null) | Some(Bson::Undefined) => return Ok(Some(Bson::Null)),
                Some(Bson::Array(a)) => a,
                Some(other) => {
                    return Err(EngineError::expr(format!(
                        "input to $map must be an array not {}",
                        type_name(&other)
                    )))
                }
            };
            let mut out = Vec::with_capacity(arr.len());
            let mut size = Building::default();
            for el in arr {
                let scope = vars.with(var, el)?;
                let v = eval(body, root, &scope)?.unwrap_or(Bson::Null);
                size.add(&v)?;
                out.push(v);
            }
            Ok(Some(Bson::Array(out)))
        }
        OpNode::Reduce {
            input,
            initial,
            body,
        } => {
            let arr = match eval(input, root, vars)? {
                None | Some(Bson::Null) | Some(Bson::Undefined) => return Ok(Some(Bson::Null)),
                Some(Bson::Array(a)) => a,
                Some(other) => {
                    return Err(EngineError::expr(format!(
                        "input to $reduce must be an array not {}",
                        type_name(&other)
                    )))
                }
            };
            let mut acc = eval(initial, root, vars)?.unwrap_or(Bson::Null);
            for el in arr {
                let scope = vars.with("value", acc)?.with("this", el)?;
                acc = eval(body, root, &scope)?.unwrap_or(Bson::Null);
                // The only loop that feeds a value back into itself: bound
                // its depth and size every round, before it can grow on.
                if matches!(acc, Bson::Array(_) | Bson::Document(_) | Bson::String(_)) {
                    check_built_value(&acc)?;
                }
            }
            Ok(Some(acc))
        }
        OpNode::Let { vars: defs, body } => {
            let mut scope = vars.clone();
            for (k, ve) in defs {
                let v = eval(ve, root, vars)?;
                scope.push(k, v)?;
            }
            eval(body, root, &scope)
        }
        OpNode::DatePart(part, de, tz) => {
            let v = eval(de, root, vars)?;
            if is_nullish(&v) {
                return Ok(Some(Bson::Null));
            }
            let offset_ms = match tz {
                None => 0,
                Some(t) => match eval(t, root, vars)? {
                    None | Some(Bson::Null) => return Ok(Some(Bson::Null)),
                    Some(Bson::String(s)) => parse_tz_offset(&s)?,
                    Some(_) => return Err(EngineError::expr("timezone must evaluate to a string")),
                },
            };
            let ms = date_millis(v.as_ref())?;
            Ok(Some(Bson::Int32(date_part(*part, ms + offset_ms)?)))
        }
        OpNode::Trim(kind, input, chars) => {
            let s = match eval(input, root, vars)? {
                None | Some(Bson::Null) | Some(Bson::Undefined) => return Ok(Some(Bson::Null)),
                Some(Bson::String(s)) => s,
                Some(o) => {
                    return Err(EngineError::expr(format!(
                        "$trim requires its input to be a string, got {} (of type {}) instead.",
                        fmt_bson(&o),
                        type_name(&o)
                    )))
                }
            };
            let set: Option<Vec<char>> = match chars {
                None => None,
                Some(c) => match eval(c, root, vars)? {
                    None | Some(Bson::Null) => return Ok(Some(Bson::Null)),
                    Some(Bson::String(cs)) => Some(cs.chars().collect()),
                    Some(_) => {
                        return Err(EngineError::expr("$trim requires 'chars' to be a string"))
                    }
                },
            };
            let is_trim = |c: char| match &set {
                Some(cs) => cs.contains(&c),
                None => matches!(
                    c,
                    ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c' | '\0' | '\u{a0}' | '\u{2000}'
                        ..='\u{200a}'
                            | '\u{3000}'
                            | '\u{1680}'
                            | '\u{2028}'
                            | '\u{2029}'
                            | '\u{202f}'
                            | '\u{205f}'
                ),
            };
            let out = match kind {
                TrimKind::Both => s.trim_matches(is_trim),
                TrimKind::Left => s.trim_start_matches(is_trim),
                TrimKind::Right => s.trim_end_matches(is_trim),
            };
            Ok(Some(Bson::String(out.to_string())))
        }
        OpNode::Convert {
            input,
            to,
            on_error,
            on_null,
        } => {
            let v = eval(input, root, vars)?;
            if is_nullish(&v) {
                return match on_null {
                    Some(e) => eval(e, root, vars),
                    None => Ok(Some(Bson::Null)),
                };
            }
            let target = match eval(to, root, vars)? {
                Some(Bson::String(s)) => s,
                Some(b) => match Num::from_bson(&b).and_then(|n| n.as_exact_i64()) {
                    Some(1) => "double".into(),
                    Some(2) => "string".into(),
                    Some(7) => "objectId".into(),
                    Some(8) => "bool".into(),
                    Some(9) => "date".into(),
                    Some(16) => "int".into(),
                    Some(18) => "long".into(),
                    Some(19) => "decimal".into(),
                    _ => {
                        return Err(EngineError::expr(format!(
                            "Unknown type name: {}",
                            fmt_bson(&b)
                        )))
                    }
                },
                None => return Err(EngineError::expr("Missing 'to' parameter to $convert")),
            };
            let v = v.unwrap_or(Bson::Null);
            match convert(&v, &target) {
                Ok(r) => Ok(Some(r)),
                Err(e) => match on_error {
                    Some(oe) => eval(oe, root, vars),
                    None => Err(e),
                },
            }
        }
    }
}

fn num_arg(name: &str, v: &Bson) -> Result<Num> {
    Num::from_bson(v).ok_or_else(|| {
        EngineError::expr(format!(
            "{name} only supports numeric types, not {}",
            type_name(v)
        ))
    })
}

fn eval_nary(o: Op, args: &[Expr], root: &Document, vars: &Vars) -> Result<V> {
    // Short-circuiting operators first.
    match o {
        Op::And => {
            for a in args {
                if !truthy(eval(a, root, vars)?.as_ref()) {
                    return Ok(Some(Bson::Boolean(false)));
                }
            }
            return Ok(Some(Bson::Boolean(true)));
        }
        Op::Or => {
            for a in args {
                if truthy(eval(a, root, vars)?.as_ref()) {
                    return Ok(Some(Bson::Boolean(true)));
                }
            }
            return Ok(Some(Bson::Boolean(false)));
        }
        Op::IfNull => {
            let (last, init) = match args.split_last() {
                Some(x) => x,
                None => return Ok(Some(Bson::Null)),
            };
            for a in init {
                let v = eval(a, root, vars)?;
                if !is_nullish(&v) {
                    return Ok(v);
                }
            }
            return eval(last, root, vars);
        }
        _ => {}
    }
    let vals = eval_all(args, root, vars)?;
    let arg0 = || vals.first().cloned().flatten();
    match o {
        Op::Add => {
            let mut acc = Num::I32(0);
            let mut date: Option<i64> = None;
            for v in &vals {
                match v {
                    None | Some(Bson::Null) | Some(Bson::Undefined) => return Ok(Some(Bson::Null)),
                    Some(Bson::DateTime(d)) => {
                        if date.is_some() {
                            return Err(EngineError::expr(
                                "only one date allowed in an $add expression",
                            ));
                        }
                        date = Some(d.timestamp_millis());
                    }
                    Some(b) => {
                        let n = Num::from_bson(b).ok_or_else(|| {
                            EngineError::expr(format!(
                                "$add only supports numeric or date types, not {}",
                                type_name(b)
                            ))
                        })?;
                        acc = num_add(acc, n);
                    }
                }
            }
            match date {
                Some(ms) => {
                    let add = match acc {
                        Num::F64(f) | Num::Dec(f) => f.round() as i64,
                        n => n.as_exact_i64().unwrap_or(0),
                    };
                    Ok(Some(Bson::DateTime(bson::DateTime::from_millis(
                        ms.wrapping_add(add),
                    ))))
                }
                None => Ok(Some(acc.to_bson())),
            }
        }
        Op::Subtract => {
            let (a, b) = (&vals[0], &vals[1]);
            if is_nullish(a) || is_nullish(b) {
                return Ok(Some(Bson::Null));
            }
            let (Some(a), Some(b)) = (a, b) else {
                return Ok(Some(Bson::Null));
            };
            match (a, b) {
                (Bson::DateTime(x), Bson::DateTime(y)) => Ok(Some(Bson::Int64(
                    x.timestamp_millis().wrapping_sub(y.timestamp_millis()),
                ))),
                (Bson::DateTime(x), n) => {
                    let n = num_arg("$subtract", n)?;
                    let sub = match n {
                        Num::F64(f) | Num::Dec(f) => f.round() as i64,
                        n => n.as_exact_i64().unwrap_or(0),
                    };
                    Ok(Some(Bson::DateTime(bson::DateTime::from_millis(
                        x.timestamp_millis().wrapping_sub(sub),
                    ))))
                }
                (x, y) => {
                    let (Some(nx), Some(ny)) = (Num::from_bson(x), Num::from_bson(y)) else {
                        return Err(EngineError::expr(format!(
                            "can't $subtract {} from {}",
                            type_name(y),
                            type_name(x)
                        )));
                    };
                    Ok(Some(num_add(nx, negate(ny)).to_bson()))
                }
            }
        }
        Op::Multiply => {
            let mut acc = Num::I32(1);
            for v in &vals {
                match v {
                    None | Some(Bson::Null) | Some(Bson::Undefined) => return Ok(Some(Bson::Null)),
                    Some(b) => acc = num_mul(acc, num_arg("$multiply", b)?),
                }
            }
            Ok(Some(acc.to_bson()))
        }
        Op::Divide => {
            if vals.iter().any(is_nullish) {
                return Ok(Some(Bson::Null));
            }
            let (Some(a), Some(b)) = (&vals[0], &vals[1]) else {
                return Ok(Some(Bson::Null));
            };
            let (x, y) = (num_arg("$divide", a)?, num_arg("$divide", b)?);
            if y.is_zero() {
                return Err(EngineError::expr("can't $divide by zero"));
            }
            let r = x.as_f64() / y.as_f64();
            if matches!(x, Num::Dec(_)) || matches!(y, Num::Dec(_)) {
                Ok(Some(Bson::Decimal128(f64_to_decimal(r))))
            } else {
                Ok(Some(Bson::Double(r)))
            }
        }
        Op::Mod => {
            if vals.iter().any(is_nullish) {
                return Ok(Some(Bson::Null));
            }
            let (Some(a), Some(b)) = (&vals[0], &vals[1]) else {
                return Ok(Some(Bson::Null));
            };
            let (x, y) = (num_arg("$mod", a)?, num_arg("$mod", b)?);
            if y.is_zero() {
                return Err(EngineError::expr("can't $mod by zero"));
            }
            Ok(Some(match (x, y) {
                (Num::I32(p), Num::I32(q)) => Bson::Int32(p.wrapping_rem(q)),
                (Num::I32(_) | Num::I64(_), Num::I32(_) | Num::I64(_)) => Bson::Int64(
                    x.as_exact_i64()
                        .unwrap_or(0)
                        .wrapping_rem(y.as_exact_i64().unwrap_or(1)),
                ),
                (Num::Dec(_), _) | (_, Num::Dec(_)) => {
                    Bson::Decimal128(f64_to_decimal(x.as_f64() % y.as_f64()))
                }
                _ => Bson::Double(x.as_f64() % y.as_f64()),
            }))
        }
        Op::Abs | Op::Floor | Op::Ceil | Op::Sqrt => {
            let v = arg0();
            if is_nullish(&v) {
                return Ok(Some(Bson::Null));
            }
            let b = v.unwrap_or(Bson::Null);
            let name = match o {
                Op::Abs => "$abs",
                Op::Floor => "$floor",
                Op::Ceil => "$ceil",
                _ => "$sqrt",
            };
            let n = num_arg(name, &b)?;
            Ok(Some(match (o, n) {
                (Op::Abs, Num::I32(i)) => match i.checked_abs() {
                    Some(a) => Bson::Int32(a),
                    None => Bson::Int64((i as i64).abs()),
                },
                (Op::Abs, Num::I64(i)) => match i.checked_abs() {
                    Some(a) => Bson::Int64(a),
                    None => return Err(EngineError::expr("can't take $abs of long long min")),
                },
                (Op::Abs, _) => with_float_kind(n, n.as_f64().abs()),
                (Op::Floor | Op::Ceil, Num::I32(_) | Num::I64(_)) => b,
                (Op::Floor, _) => with_float_kind(n, n.as_f64().floor()),
                (Op::Ceil, _) => with_float_kind(n, n.as_f64().ceil()),
                _ => {
                    let f = n.as_f64();
                    if f < 0.0 {
                        return Err(EngineError::expr(
                            "$sqrt's argument must be greater than or equal to 0",
                        ));
                    }
                    if matches!(n, Num::Dec(_)) {
                        Bson::Decimal128(f64_to_decimal(f.sqrt()))
                    } else {
                        Bson::Double(f.sqrt())
                    }
                }
            }))
        }
        Op::Pow => {
            if vals.iter().any(is_nullish) {
                return Ok(Some(Bson::Null));
            }
            let (Some(a), Some(b)) = (&vals[0], &vals[1]) else {
                return Ok(Some(Bson::Null));
            };
            let (x, y) = (num_arg("$pow", a)?, num_arg("$pow", b)?);
            if let (Some(bx), Some(ey)) = (int_of(x), int_of(y)) {
                if ey >= 0 {
                    if let Some(r) = (ey <= u32::MAX as i64)
                        .then(|| bx.checked_pow(ey as u32))
                        .flatten()
                    {
                        let both_i32 = matches!(x, Num::I32(_)) && matches!(y, Num::I32(_));
                        if both_i32 && r >= i32::MIN as i64 && r <= i32::MAX as i64 {
                            return Ok(Some(Bson::Int32(r as i32)));
                        }
                        return Ok(Some(Bson::Int64(r)));
                    }
                } else if bx == 0 {
                    return Err(EngineError::expr(
                        "$pow cannot take a base of 0 and a negative exponent",
                    ));
                }
            }
            Ok(Some(Bson::Double(x.as_f64().powf(y.as_f64()))))
        }
        Op::Trunc | Op::Round => {
            let v = arg0();
            if is_nullish(&v) {
                return Ok(Some(Bson::Null));
            }
            let b = v.unwrap_or(Bson::Null);
            let n = num_arg(if o == Op::Trunc { "$trunc" } else { "$round" }, &b)?;
            let place = match vals.get(1) {
                None => 0,
                Some(p) if is_nullish(p) => return Ok(Some(Bson::Null)),
                Some(Some(p)) => Num::from_bson(p)
                    .and_then(|n| n.as_exact_i64())
                    .ok_or_else(|| EngineError::expr("place must be an integral number"))?,
                Some(None) => 0,
            };
            if matches!(n, Num::I32(_) | Num::I64(_)) && place >= 0 {
                return Ok(Some(b));
            }
            let f = n.as_f64();
            let scale = 10f64.powi(place as i32);
            let r = if o == Op::Trunc {
                (f * scale).trunc() / scale
            } else {
                // MongoDB rounds half to even.
                let x = f * scale;
                let rounded = x.round();
                let r = if (x - x.trunc()).abs() == 0.5 {
                    2.0 * (x / 2.0).round()
                } else {
                    rounded
                };
                r / scale
            };
            Ok(Some(match n {
                Num::I32(_) => Bson::Int32(r as i32),
                Num::I64(_) => Bson::Int64(r as i64),
                _ => with_float_kind(n, r),
            }))
        }
        Op::Eq | Op::Ne | Op::Gt | Op::Gte | Op::Lt | Op::Lte | Op::Cmp => {
            let c = cmp_values(&vals[0], &vals[1]);
            Ok(Some(match o {
                Op::Eq => Bson::Boolean(c == Ordering::Equal),
                Op::Ne => Bson::Boolean(c != Ordering::Equal),
                Op::Gt => Bson::Boolean(c == Ordering::Greater),
                Op::Gte => Bson::Boolean(c != Ordering::Less),
                Op::Lt => Bson::Boolean(c == Ordering::Less),
                Op::Lte => Bson::Boolean(c != Ordering::Greater),
                _ => Bson::Int32(match c {
                    Ordering::Less => -1,
                    Ordering::Equal => 0,
                    Ordering::Greater => 1,
                }),
            }))
        }
        Op::Not => Ok(Some(Bson::Boolean(!truthy(vals[0].as_ref())))),
        Op::Concat => {
            let total: u64 = vals
                .iter()
                .map(|v| match v {
                    Some(Bson::String(x)) => x.len() as u64,
                    _ => 0,
                })
                .sum();
            check_new_value(total)?;
            let mut s = String::new();
            for v in &vals {
                match v {
                    None | Some(Bson::Null) | Some(Bson::Undefined) => return Ok(Some(Bson::Null)),
                    Some(Bson::String(x)) => s.push_str(x),
                    Some(b) => {
                        return Err(EngineError::expr(format!(
                            "$concat only supports strings, not {}",
                            type_name(b)
                        )))
                    }
                }
            }
            Ok(Some(Bson::String(s)))
        }
        Op::ToLower | Op::ToUpper => {
            let s = coerce_to_string(
                &vals[0],
                if o == Op::ToLower {
                    "$toLower"
                } else {
                    "$toUpper"
                },
            )?;
            // MongoDB only case-maps ASCII letters.
            Ok(Some(Bson::String(if o == Op::ToLower {
                s.to_ascii_lowercase()
            } else {
                s.to_ascii_uppercase()
            })))
        }
        Op::SubstrBytes => {
            let s = coerce_to_string(&vals[0], "$substrBytes")?;
            let start = int_arg(
                &vals[1],
                "$substrBytes: starting index must be a numeric type",
            )?;
            let len = int_arg(&vals[2], "$substrBytes: length must be a numeric type")?;
            if start < 0 {
                return Ok(Some(Bson::String(String::new())));
            }
            let bytes = s.as_bytes();
            let st = (start as usize).min(bytes.len());
            let end = if len < 0 {
                bytes.len()
            } else {
                st.saturating_add(len as usize).min(bytes.len())
            };
            if !s.is_char_boundary(st) {
                return Err(EngineError::expr(
                    "$substrBytes:  Invalid range, starting index is a UTF-8 continuation byte.",
                ));
            }
            if !s.is_char_boundary(end) {
                return Err(EngineError::expr("$substrBytes:  Invalid range, ending index is in the middle of a UTF-8 character."));
            }
            Ok(Some(Bson::String(s[st..end].to_string())))
        }
        Op::SubstrCP => {
            let s = coerce_to_string(&vals[0], "$substrCP")?;
            let start = int_arg(&vals[1], "$substrCP: starting index must be a numeric type")?;
            let len = int_arg(&vals[2], "$substrCP: length must be a numeric type")?;
            if start < 0 {
                return Err(EngineError::expr(
                    "$substrCP: the starting index must be nonnegative integer.",
                ));
            }
            if len < 0 {
                return Err(EngineError::expr(
                    "$substrCP: length must be a nonnegative integer.",
                ));
            }
            Ok(Some(Bson::String(
                s.chars().skip(start as usize).take(len as usize).collect(),
            )))
        }
        Op::StrLenCP | Op::StrLenBytes => match &vals[0] {
            Some(Bson::String(s)) => {
                let n = if o == Op::StrLenCP {
                    s.chars().count()
                } else {
                    s.len()
                };
                Ok(Some(Bson::Int32(n as i32)))
            }
            v => Err(EngineError::expr(format!(
                "{} requires a string argument, found: {}",
                if o == Op::StrLenCP {
                    "$strLenCP"
                } else {
                    "$strLenBytes"
                },
                type_of(v)
            ))),
        },
        Op::Split => {
            if is_nullish(&vals[0]) {
                return Ok(Some(Bson::Null));
            }
            let Some(Bson::String(s)) = &vals[0] else {
                return Err(EngineError::expr(format!(
                    "$split requires an expression that evaluates to a string as a first argument, found: {}",
                    type_of(&vals[0])
                )));
            };
            let d = match &vals[1] {
                Some(Bson::String(d)) => d,
                v if is_nullish(v) => return Ok(Some(Bson::Null)),
                v => {
                    return Err(EngineError::expr(format!(
                        "$split requires an expression that evaluates to a string as a second argument, found: {}",
                        type_of(v)
                    )))
                }
            };
            if d.is_empty() {
                return Err(EngineError::expr("$split requires a non-empty separator"));
            }
            Ok(Some(Bson::Array(
                s.split(d.as_str())
                    .map(|p| Bson::String(p.to_string()))
                    .collect(),
            )))
        }
        Op::Strcasecmp => {
            let a = coerce_to_string(&vals[0], "$strcasecmp")?.to_ascii_lowercase();
            let b = coerce_to_string(&vals[1], "$strcasecmp")?.to_ascii_lowercase();
            Ok(Some(Bson::Int32(match a.cmp(&b) {
                Ordering::Less => -1,
                Ordering::Equal => 0,
                Ordering::Greater => 1,
            })))
        }
        Op::Size => match &vals[0] {
            Some(Bson::Array(a)) => Ok(Some(Bson::Int32(a.len() as i32))),
            v => Err(EngineError::expr(format!(
                "The argument to $size must be an array. Type of argument: {}",
                type_of(v)
            ))),
        },
        Op::ArrayElemAt => {
            if is_nullish(&vals[0]) || is_nullish(&vals[1]) {
                return Ok(Some(Bson::Null));
            }
            let Some(Bson::Array(a)) = &vals[0] else {
                return Err(EngineError::expr(format!(
                    "$arrayElemAt's first argument must be an array, but is {}",
                    type_of(&vals[0])
                )));
            };
            let idx = match vals[1]
                .as_ref()
                .and_then(Num::from_bson)
                .and_then(|n| n.as_exact_i64())
            {
                Some(i) => i,
                None => {
                    return Err(EngineError::expr(format!(
                        "$arrayElemAt's second argument must be a numeric value, but is {}",
                        type_of(&vals[1])
                    )))
                }
            };
            Ok(index_from(a, idx).cloned())
        }
        Op::In => {
            let Some(Bson::Array(a)) = &vals[1] else {
                return Err(EngineError::expr(format!(
                    "$in requires an array as a second argument, found: {}",
                    type_of(&vals[1])
                )));
            };
            let found = match &vals[0] {
                Some(x) => a.iter().any(|e| compare_bson(e, x) == Ordering::Equal),
                None => false,
            };
            Ok(Some(Bson::Boolean(found)))
        }
        Op::First | Op::Last => {
            let name = if o == Op::First { "$first" } else { "$last" };
            match &vals[0] {
                v if is_nullish(v) => Ok(Some(Bson::Null)),
                Some(Bson::Array(a)) => Ok(if o == Op::First {
                    a.first().cloned()
                } else {
                    a.last().cloned()
                }),
                v => Err(EngineError::expr(format!(
                    "{name}'s argument must be an array, but is {}",
                    type_of(v)
                ))),
            }
        }
        Op::ConcatArrays => {
            let mut size = Building::default();
            for v in vals.iter().flatten() {
                if let Bson::Array(a) = v {
                    size.add(v)?;
                    size.bytes += SLOT * a.len() as u64;
                }
            }
            let mut out = Vec::new();
            for v in vals {
                match v {
                    None | Some(Bson::Null) | Some(Bson::Undefined) => return Ok(Some(Bson::Null)),
                    Some(Bson::Array(a)) => out.extend(a),
                    Some(b) => {
                        return Err(EngineError::expr(format!(
                            "$concatArrays only supports arrays, not {}",
                            type_name(&b)
                        )))
                    }
                }
            }
            Ok(Some(Bson::Array(out)))
        }
        Op::IsArray => Ok(Some(Bson::Boolean(matches!(vals[0], Some(Bson::Array(_)))))),
        Op::ReverseArray => match &vals[0] {
            v if is_nullish(v) => Ok(Some(Bson::Null)),
            Some(Bson::Array(a)) => Ok(Some(Bson::Array(a.iter().rev().cloned().collect()))),
            v => Err(EngineError::expr(format!(
                "The argument to $reverseArray must be an array, but was of type: {}",
                type_of(v)
            ))),
        },
        Op::Slice => {
            if vals.iter().any(is_nullish) {
                return Ok(Some(Bson::Null));
            }
            let Some(Bson::Array(a)) = &vals[0] else {
                return Err(EngineError::expr(format!(
                    "First argument to $slice must be an array, but is of type: {}",
                    type_of(&vals[0])
                )));
            };
            // 32-bit, as in MongoDB: `-n1` below overflowed for i64::MIN, and the
            // wrapped count then sliced out of bounds.
            let n1 = int32_arg(
                &vals[1],
                "Second argument to $slice must be a numeric value",
            )?;
            let len = a.len() as i64;
            let (start, count) = if vals.len() == 3 {
                let n2 = int32_arg(&vals[2], "Third argument to $slice must be numeric")?;
                if n2 <= 0 {
                    return Err(EngineError::expr(format!(
                        "Third argument to $slice must be positive: {n2}"
                    )));
                }
                let s = if n1 < 0 {
                    (len + n1).max(0)
                } else {
                    n1.min(len)
                };
                (s, n2)
            } else if n1 < 0 {
                ((len + n1).max(0), -n1)
            } else {
                (0, n1)
            };
            let s = start as usize;
            let e = (start.saturating_add(count)).min(len) as usize;
            Ok(Some(Bson::Array(
                a[s.min(a.len())..e.max(s.min(a.len()))].to_vec(),
            )))
        }
        Op::Range => {
            // MongoDB takes 32-bit bounds and step; with them `i += step` below stays
            // far inside i64 (a 64-bit start near i64::MAX overflowed it).
            let start = int32_arg(
                &vals[0],
                "$range requires a starting value that can be represented as a 32-bit integer",
            )?;
            let end = int32_arg(
                &vals[1],
                "$range requires an ending value that can be represented as a 32-bit integer",
            )?;
            let step = if vals.len() == 3 {
                int32_arg(
                    &vals[2],
                    "$range requires a step value that can be represented as a 32-bit integer",
                )?
            } else {
                1
            };
            if step == 0 {
                return Err(EngineError::expr("$range requires a non-zero step value"));
            }
            // Refused before allocating: the element count is known up front.
            let count = if (step > 0 && start < end) || (step < 0 && start > end) {
                ((end as i128 - start as i128).unsigned_abs() - 1) / step.unsigned_abs() as u128 + 1
            } else {
                0
            };
            check_new_value((count as u64).saturating_mul(SLOT))?;
            let mut out = Vec::with_capacity(count as usize);
            let mut i = start;
            while (step > 0 && i < end) || (step < 0 && i > end) {
                out.push(Bson::Int32(i as i32));
                i = match i.checked_add(step) {
                    Some(next) => next,
                    None => break,
                };
            }
            Ok(Some(Bson::Array(out)))
        }
        Op::IndexOfArray => {
            if is_nullish(&vals[0]) {
                return Ok(Some(Bson::Null));
            }
            let Some(Bson::Array(a)) = &vals[0] else {
                return Err(EngineError::expr(format!(
                    "$indexOfArray requires an array as a first argument, found: {}",
                    type_of(&vals[0])
                )));
            };
            let start = if vals.len() > 2 {
                int_arg(
                    &vals[2],
                    "$indexOfArray requires an integral starting index",
                )?
                .max(0) as usize
            } else {
                0
            };
            let end = if vals.len() > 3 {
                int_arg(&vals[3], "$indexOfArray requires an integral ending index")?.max(0)
                    as usize
            } else {
                a.len()
            };
            let needle = &vals[1];
            for (i, e) in a.iter().enumerate().take(end.min(a.len())).skip(start) {
                if cmp_values(&Some(e.clone()), needle) == Ordering::Equal {
                    return Ok(Some(Bson::Int32(i as i32)));
                }
            }
            Ok(Some(Bson::Int32(-1)))
        }
        Op::ObjectToArray => match &vals[0] {
            v if is_nullish(v) => Ok(Some(Bson::Null)),
            Some(Bson::Document(d)) => Ok(Some(Bson::Array(
                d.iter()
                    .map(|(k, v)| {
                        let mut e = Document::new();
                        e.insert("k", k.clone());
                        e.insert("v", v.clone());
                        Bson::Document(e)
                    })
                    .collect(),
            ))),
            v => Err(EngineError::expr(format!(
                "$objectToArray requires a document input, found: {}",
                type_of(v)
            ))),
        },
        Op::ArrayToObject => match &vals[0] {
            v if is_nullish(v) => Ok(Some(Bson::Null)),
            Some(Bson::Array(a)) => {
                let mut d = Document::new();
                for e in a {
                    match e {
                        Bson::Document(kv) => match (kv.get("k"), kv.get("v")) {
                            (Some(Bson::String(k)), Some(v)) if kv.len() == 2 => {
                                d.insert(k.clone(), v.clone());
                            }
                            _ => return Err(EngineError::expr("$arrayToObject requires an object with keys 'k' and 'v'")),
                        },
                        Bson::Array(pair) if pair.len() == 2 => match &pair[0] {
                            Bson::String(k) => {
                                d.insert(k.clone(), pair[1].clone());
                            }
                            _ => return Err(EngineError::expr("$arrayToObject requires an array of key-value pairs, where the key must be of type string")),
                        },
                        _ => return Err(EngineError::expr("$arrayToObject requires an array of size 2 arrays or an array of objects")),
                    }
                }
                Ok(Some(Bson::Document(d)))
            }
            v => Err(EngineError::expr(format!(
                "$arrayToObject requires an array input, found: {}",
                type_of(v)
            ))),
        },
        Op::ToString
        | Op::ToInt
        | Op::ToLong
        | Op::ToDouble
        | Op::ToDecimal
        | Op::ToBool
        | Op::ToDate
        | Op::ToObjectId => {
            let v = &vals[0];
            if is_nullish(v) {
                return Ok(Some(Bson::Null));
            }
            let target = match o {
                Op::ToString => "string",
                Op::ToInt => "int",
                Op::ToLong => "long",
                Op::ToDouble => "double",
                Op::ToDecimal => "decimal",
                Op::ToBool => "bool",
                Op::ToDate => "date",
                _ => "objectId",
            };
            Ok(Some(convert(v.as_ref().unwrap_or(&Bson::Null), target)?))
        }
        Op::Type => Ok(Some(Bson::String(type_of(&vals[0]).to_string()))),
        Op::IsNumber => Ok(Some(Bson::Boolean(
            vals[0].as_ref().and_then(Num::from_bson).is_some(),
        ))),
        Op::MergeObjects => {
            let mut out = Document::new();
            let mut merge = |v: &V, _i: usize| -> Result<()> {
                match v {
                    None | Some(Bson::Null) | Some(Bson::Undefined) => Ok(()),
                    Some(Bson::Document(d)) => {
                        for (k, x) in d {
                            out.insert(k.clone(), x.clone());
                        }
                        Ok(())
                    }
                    Some(b) => Err(EngineError::expr(format!(
                        "$mergeObjects requires object inputs, but input {} is of type {}",
                        fmt_bson(b),
                        type_name(b)
                    ))),
                }
            };
            for (i, v) in vals.iter().enumerate() {
                merge(v, i)?;
            }
            Ok(Some(Bson::Document(out)))
        }
        Op::Sum | Op::Avg | Op::Min | Op::Max => {
            // One array argument: fold over its elements; otherwise over the args.
            let items: Vec<Bson> = if vals.len() == 1 {
                match &vals[0] {
                    Some(Bson::Array(a)) => a.clone(),
                    Some(b) => vec![b.clone()],
                    None => vec![],
                }
            } else {
                vals.into_iter().flatten().collect()
            };
            let mut acc = super::accumulator::Acc::new_simple(match o {
                Op::Sum => super::accumulator::AccKind::Sum,
                Op::Avg => super::accumulator::AccKind::Avg,
                Op::Min => super::accumulator::AccKind::Min,
                _ => super::accumulator::AccKind::Max,
            });
            for it in items {
                acc.add(Some(it))?;
            }
            Ok(Some(acc.finish()))
        }
        Op::And | Op::Or | Op::IfNull => Ok(None), // handled above
    }
}

fn negate(n: Num) -> Num {
    match n {
        Num::I32(i) => match i.checked_neg() {
            Some(x) => Num::I32(x),
            None => Num::I64(-(i as i64)),
        },
        Num::I64(i) => match i.checked_neg() {
            Some(x) => Num::I64(x),
            None => Num::F64(-(i as f64)),
        },
        Num::F64(f) => Num::F64(-f),
        Num::Dec(f) => Num::Dec(-f),
    }
}

fn int_of(n: Num) -> Option<i64> {
    match n {
        Num::I32(i) => Some(i as i64),
        Num::I64(i) => Some(i),
        _ => None,
    }
}

fn with_float_kind(n: Num, f: f64) -> Bson {
    match n {
        Num::Dec(_) => Bson::Decimal128(f64_to_decimal(f)),
        _ => Bson::Double(f),
    }
}

fn int_arg(v: &V, msg: &str) -> Result<i64> {
    match v.as_ref().and_then(Num::from_bson) {
        Some(n) => n
            .as_exact_i64()
            .ok_or_else(|| EngineError::expr(msg.to_string())),
        None => Err(EngineError::expr(format!("{msg}, found: {}", type_of(v)))),
    }
}

/// An integral argument that fits 32 bits, widened to i64.
fn int32_arg(v: &V, msg: &str) -> Result<i64> {
    let n = int_arg(v, msg)?;
    match i32::try_from(n) {
        Ok(_) => Ok(n),
        Err(_) => Err(EngineError::expr(format!("{msg}, found value: {n}"))),
    }
}

fn index_from(a: &[Bson], idx: i64) -> Option<&Bson> {
    if idx < 0 {
        let back = idx.unsigned_abs() as usize;
        if back > a.len() {
            None
        } else {
            a.get(a.len() - back)
        }
    } else {
        a.get(idx as usize)
    }
}

/// MongoDB's `coerceToString` (used by `$toLower`, `$substr`, ...).
fn coerce_to_string(v: &V, name: &str) -> Result<String> {
    match v {
        None | Some(Bson::Null) | Some(Bson::Undefined) => Ok(String::new()),
        Some(Bson::String(s)) | Some(Bson::Symbol(s)) => Ok(s.clone()),
        Some(
            b @ (Bson::Int32(_)
            | Bson::Int64(_)
            | Bson::Double(_)
            | Bson::Decimal128(_)
            | Bson::DateTime(_)
            | Bson::Timestamp(_)),
        ) => convert(b, "string").map(|s| match s {
            Bson::String(x) => x,
            _ => String::new(),
        }),
        Some(b) => Err(EngineError::expr(format!(
            "{name}: can't convert from BSON type {} to String",
            type_name(b)
        ))),
    }
}

/// Formats a double like C's `%g` (6 significant digits), which is what
/// MongoDB's string coercion of doubles produces.
pub(crate) fn format_double(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let sci = format!("{:.5e}", f);
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let mant = trim_zeros(mant);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mant}e{sign}{:02}", exp.abs())
    } else {
        let decimals = (5 - exp).max(0) as usize;
        trim_zeros(&format!("{:.*}", decimals, f)).to_string()
    }
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

fn fmt_date(ms: i64) -> String {
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(dt) => dt.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        None => ms.to_string(),
    }
}

fn conv_err(from: &Bson, to: &str) -> EngineError {
    EngineError::expr(format!(
        "Unsupported conversion from {} to {} in $convert with no onError value",
        type_name(from),
        to
    ))
}

fn parse_num_str(s: &str) -> Result<f64> {
    let t = s;
    if t.is_empty() || t.trim() != t {
        return Err(EngineError::expr(format!(
            "Failed to parse number '{s}' in $convert with no onError value: Did not consume whole string."
        )));
    }
    t.parse::<f64>().map_err(|_| {
        EngineError::expr(format!(
            "Failed to parse number '{s}' in $convert with no onError value: Did not consume whole string."
        ))
    })
}

/// The `$convert` conversion table (subset: the common scalar targets).
pub(crate) fn convert(v: &Bson, to: &str) -> Result<Bson> {
    let overflow = || {
        EngineError::expr("Conversion would overflow target type in $convert with no onError value")
    };
    match to {
        "double" => match v {
            Bson::Boolean(b) => Ok(Bson::Double(if *b { 1.0 } else { 0.0 })),
            Bson::String(s) => Ok(Bson::Double(parse_num_str(s)?)),
            Bson::DateTime(d) => Ok(Bson::Double(d.timestamp_millis() as f64)),
            b => match Num::from_bson(b) {
                Some(n) => Ok(Bson::Double(n.as_f64())),
                None => Err(conv_err(v, to)),
            },
        },
        "int" | "long" => {
            let is_int = to == "int";
            let i: i64 = match v {
                Bson::Boolean(b) => *b as i64,
                Bson::Int32(i) => *i as i64,
                Bson::Int64(i) => *i,
                Bson::Double(_) | Bson::Decimal128(_) => {
                    let f = Num::from_bson(v).map(|n| n.as_f64()).unwrap_or(f64::NAN);
                    if f.is_nan() {
                        return Err(EngineError::expr("Attempt to convert NaN value to integer type in $convert with no onError value"));
                    }
                    let t = f.trunc();
                    if !(-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&t) {
                        return Err(overflow());
                    }
                    t as i64
                }
                Bson::String(s) => s.parse::<i64>().map_err(|_| {
                    EngineError::expr(format!(
                        "Failed to parse number '{s}' in $convert with no onError value: Did not consume whole string."
                    ))
                })?,
                Bson::DateTime(d) if !is_int => d.timestamp_millis(),
                _ => return Err(conv_err(v, to)),
            };
            if is_int {
                if i < i32::MIN as i64 || i > i32::MAX as i64 {
                    return Err(overflow());
                }
                Ok(Bson::Int32(i as i32))
            } else {
                Ok(Bson::Int64(i))
            }
        }
        "decimal" => match v {
            Bson::Boolean(b) => Ok(Bson::Decimal128(f64_to_decimal(if *b { 1.0 } else { 0.0 }))),
            Bson::String(s) => s.parse().map(Bson::Decimal128).map_err(|_| {
                EngineError::expr(format!("Failed to parse number '{s}' in $convert with no onError value"))
            }),
            Bson::Int32(i) => Ok(Bson::Decimal128(i.to_string().parse().map_err(|_| conv_err(v, to))?)),
            Bson::Int64(i) => Ok(Bson::Decimal128(i.to_string().parse().map_err(|_| conv_err(v, to))?)),
            Bson::Double(f) => Ok(Bson::Decimal128(f64_to_decimal(*f))),
            Bson::Decimal128(_) => Ok(v.clone()),
            Bson::DateTime(d) => Ok(Bson::Decimal128(d.timestamp_millis().to_string().parse().map_err(|_| conv_err(v, to))?)),
            _ => Err(conv_err(v, to)),
        },
        "string" => Ok(Bson::String(match v {
            Bson::String(s) => s.clone(),
            Bson::Symbol(s) => s.clone(),
            Bson::Int32(i) => i.to_string(),
            Bson::Int64(i) => i.to_string(),
            Bson::Double(f) => format_double(*f),
            Bson::Decimal128(d) => d.to_string(),
            Bson::Boolean(b) => b.to_string(),
            Bson::ObjectId(o) => o.to_hex(),
            Bson::DateTime(d) => fmt_date(d.timestamp_millis()),
            Bson::Timestamp(t) => format!("Timestamp({}, {})", t.time, t.increment),
            _ => return Err(conv_err(v, to)),
        })),
        "bool" => Ok(Bson::Boolean(match v {
            Bson::Boolean(b) => *b,
            Bson::String(_) | Bson::ObjectId(_) | Bson::DateTime(_) | Bson::Document(_) | Bson::Array(_) => true,
            b => match Num::from_bson(b) {
                Some(n) => !n.is_zero(),
                None => return Err(conv_err(v, to)),
            },
        })),
        "date" => match v {
            Bson::DateTime(_) => Ok(v.clone()),
            Bson::Int64(i) => Ok(Bson::DateTime(bson::DateTime::from_millis(*i))),
            Bson::Double(f) => {
                if !f.is_finite() {
                    return Err(overflow());
                }
                Ok(Bson::DateTime(bson::DateTime::from_millis(f.trunc() as i64)))
            }
            Bson::ObjectId(o) => Ok(Bson::DateTime(bson::DateTime::from_millis(o.timestamp().timestamp_millis()))),
            Bson::Timestamp(t) => Ok(Bson::DateTime(bson::DateTime::from_millis(t.time as i64 * 1000))),
            Bson::String(s) => match bson::DateTime::parse_rfc3339_str(s) {
                Ok(d) => Ok(Bson::DateTime(d)),
                Err(_) => Err(EngineError::expr(format!(
                    "Error parsing date string '{s}'; in $convert with no onError value"
                ))),
            },
            _ => Err(conv_err(v, to)),
        },
        "objectId" => match v {
            Bson::ObjectId(_) => Ok(v.clone()),
            Bson::String(s) => bson::oid::ObjectId::parse_str(s).map(Bson::ObjectId).map_err(|_| {
                EngineError::expr(format!(
                    "Failed to parse objectId '{s}' in $convert with no onError value: Invalid string length for parsing to OID, expected 24 but found {}",
                    s.len()
                ))
            }),
            _ => Err(conv_err(v, to)),
        },
        other => Err(EngineError::expr(format!("Unknown type name: {other}"))),
    }
}

fn date_millis(v: Option<&Bson>) -> Result<i64> {
    match v {
        Some(Bson::DateTime(d)) => Ok(d.timestamp_millis()),
        Some(Bson::ObjectId(o)) => Ok(o.timestamp().timestamp_millis()),
        Some(Bson::Timestamp(t)) => Ok(t.time as i64 * 1000),
        Some(b) => Err(EngineError::expr(format!(
            "can't convert from BSON type {} to Date",
            type_name(b)
        ))),
        None => Err(EngineError::expr(
            "can't convert from BSON type missing to Date",
        )),
    }
}

/// Only UTC and fixed offsets ("+05:30", "-0800") are supported as timezones.
fn parse_tz_offset(s: &str) -> Result<i64> {
    if matches!(s, "UTC" | "GMT" | "Z" | "Etc/UTC") {
        return Ok(0);
    }
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'+') => (1, &s[1..]),
        Some(b'-') => (-1, &s[1..]),
        _ => return Err(EngineError::Unsupported(format!("timezone '{s}'"))),
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) || !(digits.len() == 2 || digits.len() == 4) {
        return Err(EngineError::bad(format!(
            "unrecognized time zone identifier: \"{s}\""
        )));
    }
    let h: i64 = digits[..2].parse().unwrap_or(0);
    let m: i64 = if digits.len() == 4 {
        digits[2..].parse().unwrap_or(0)
    } else {
        0
    };
    Ok(sign * (h * 3600 + m * 60) * 1000)
}

fn date_part(part: DatePart, ms: i64) -> Result<i32> {
    use chrono::{Datelike, Timelike};
    let dt = chrono::DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| EngineError::expr("date out of range"))?;
    Ok(match part {
        DatePart::Year => dt.year(),
        DatePart::Month => dt.month() as i32,
        DatePart::DayOfMonth => dt.day() as i32,
        DatePart::Hour => dt.hour() as i32,
        DatePart::Minute => dt.minute() as i32,
        DatePart::Second => dt.second() as i32,
        DatePart::Millisecond => (ms.rem_euclid(1000)) as i32,
        DatePart::DayOfWeek => dt.weekday().number_from_sunday() as i32,
        DatePart::DayOfYear => dt.ordinal() as i32,
    })
}
