//! Projections: find projections, `$project`, and `$addFields`/`$set`
//! (computed-field-only trees), following MongoDB's projection executor:
//! included fields keep input-document order, computed fields come after
//! them in spec order, `$elemMatch` and positional `.$` fields come last.

use bson::{Bson, Document};

use super::aggregate::expression::{Expr, Vars};
use super::compare::Num;
use super::error::EngineError;
use super::filter::Filter;
use super::Result;

/// How a projection spec is interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProjMode {
    /// `find` projection: `$slice`, `$elemMatch` and `a.$` are projection operators.
    Find,
    /// Aggregation `$project`: those are expressions instead.
    Project,
    /// `$addFields`/`$set`: every leaf is an expression; the input is kept.
    AddFields,
}

#[derive(Debug, Clone)]
enum Item {
    Include,
    Exclude,
    Nested(Node),
    Computed(Expr),
    Slice(Option<i64>, i64),
    ElemMatch(Box<Filter>),
    Positional,
}

#[derive(Debug, Clone, Default)]
struct Node {
    fields: Vec<(String, Item)>,
}

impl Node {
    #[inline]
    fn get(&self, k: &str) -> Option<&Item> {
        self.fields.iter().find(|(n, _)| n == k).map(|(_, i)| i)
    }

    fn has_computed(&self) -> bool {
        self.fields.iter().any(|(_, i)| match i {
            Item::Computed(_) => true,
            Item::Nested(n) => n.has_computed(),
            _ => false,
        })
    }
}

/// A parsed projection. Build with [`Projection::parse`] (find semantics) and
/// apply with [`Projection::apply`].
#[derive(Debug, Clone)]
pub struct Projection {
    inclusion: bool,
    root: Node,
    mode: ProjMode,
    /// Fields handled after the main projection (`$elemMatch`, `a.$`).
    has_late: bool,
    recurse_nested_arrays: bool,
}

impl Projection {
    /// Parses an optional spec; absent or empty means none.
    pub fn parse_optional(spec: Option<&Document>) -> Result<Option<Projection>> {
        spec.filter(|s| !s.is_empty())
            .map(Projection::parse)
            .transpose()
    }

    /// Parses a `find` projection document.
    pub fn parse(spec: &Document) -> Result<Projection> {
        Projection::parse_mode(spec, ProjMode::Find)
    }

    /// Parses an aggregation `$project` specification.
    pub fn parse_project_stage(spec: &Document) -> Result<Projection> {
        if spec.is_empty() {
            return Err(EngineError::bad("Invalid $project :: caused by :: projection specification must have at least one field"));
        }
        Projection::parse_mode(spec, ProjMode::Project)
    }

    /// Parses an `$addFields`/`$set` specification.
    pub fn parse_add_fields(spec: &Document) -> Result<Projection> {
        Projection::parse_mode(spec, ProjMode::AddFields)
    }

    /// Builds an exclusion projection for the given paths (`$unset` stage).
    pub fn exclusion_of(paths: &[String]) -> Result<Projection> {
        let mut spec = Document::new();
        for p in paths {
            spec.insert(p.clone(), Bson::Int32(0));
        }
        Projection::parse_mode(&spec, ProjMode::Project)
    }

    pub(crate) fn parse_mode(spec: &Document, mode: ProjMode) -> Result<Projection> {
        let mut root = Node::default();
        // Decided by the first non-_id field that determines a mode.
        let mut decided: Option<bool> = None;
        let mut id_item: Option<Item> = None;
        let mut has_late = false;
        for (key, v) in spec {
            super::limits::check_path(key)?;
            let (path, positional) = match (mode, key.strip_suffix(".$")) {
                (ProjMode::Find, Some(p)) => (p, true),
                _ => (key.as_str(), false),
            };
            if path.is_empty() || path.split('.').any(|s| s.is_empty()) {
                return Err(EngineError::bad(format!(
                    "FieldPath field names may not be empty strings: '{key}'"
                )));
            }
            if mode != ProjMode::Find
                && path.contains('$')
                && path.split('.').any(|s| s.starts_with('$'))
            {
                return Err(EngineError::bad(format!(
                    "FieldPath field names may not start with '$'. Consider using $getField or $setField. : {key}"
                )));
            }
            let item = if positional {
                if !super::compare::truthy(Some(v)) {
                    return Err(EngineError::bad(
                        "positional projection must be an inclusion",
                    ));
                }
                has_late = true;
                Item::Positional
            } else {
                parse_item(path, v, mode, &mut has_late)?
            };
            let is_id = path == "_id";
            // Mode bookkeeping (the _id field never decides the mode).
            let incl = match &item {
                Item::Include | Item::Computed(_) | Item::ElemMatch(_) | Item::Positional => {
                    Some(true)
                }
                Item::Exclude => Some(false),
                Item::Nested(n) => nested_mode(n)?,
                Item::Slice(..) => None,
            };
            if mode == ProjMode::AddFields {
                insert_path(&mut root, path, item)?;
                continue;
            }
            if is_id {
                if matches!(item, Item::Computed(_)) && decided == Some(false) {
                    return Err(EngineError::bad("Invalid $project :: caused by :: Cannot use expression other than $meta in exclusion projection"));
                }
                id_item = Some(item);
                continue;
            }
            if let Some(i) = incl {
                match decided {
                    None => decided = Some(i),
                    Some(d) if d != i => {
                        return Err(EngineError::bad(if d {
                            format!("Cannot do exclusion on field {key} in inclusion projection")
                        } else {
                            format!("Cannot do inclusion on field {key} in exclusion projection")
                        }))
                    }
                    _ => {}
                }
            }
            insert_path(&mut root, path, item)?;
        }
        if mode == ProjMode::AddFields {
            return Ok(Projection {
                inclusion: false,
                root,
                mode,
                has_late: false,
                recurse_nested_arrays: true,
            });
        }
        // `{_id: 1}` alone is an inclusion; `{_id: 0}` alone an exclusion; a
        // computed _id makes it an inclusion.
        let inclusion = match decided {
            Some(d) => d,
            None => matches!(id_item, Some(Item::Include) | Some(Item::Computed(_))),
        };
        if !inclusion && matches!(id_item, Some(Item::Computed(_))) {
            return Err(EngineError::bad("Invalid $project :: caused by :: Cannot use expression other than $meta in exclusion projection"));
        }
        let id_final = match id_item {
            Some(Item::Exclude) => Some(Item::Exclude),
            Some(Item::Computed(e)) => Some(Item::Computed(e)),
            Some(Item::Nested(n)) => Some(Item::Nested(n)),
            Some(other) => Some(if inclusion { Item::Include } else { other }),
            None => inclusion.then_some(Item::Include),
        };
        if let Some(it) = id_final {
            // _id goes first in the tree so computed _id values lead the output.
            root.fields.insert(0, ("_id".to_string(), it));
        }
        Ok(Projection {
            inclusion,
            root,
            mode,
            has_late,
            // find and $project both recurse into nested arrays (MongoDB's
            // default ArrayRecursionPolicy).
            recurse_nested_arrays: true,
        })
    }

    /// True for inclusion projections.
    pub fn is_inclusion(&self) -> bool {
        self.inclusion
    }

    /// Applies the projection. `filter` is needed only for positional (`a.$`)
    /// projections, which take the array offset the filter matched.
    pub fn apply(&self, doc: &Document, filter: Option<&Filter>) -> Result<Document> {
        let vars = Vars::default();
        let out = self.apply_with_vars(doc, filter, &vars)?;
        // Computed fields can nest a result deeper than any stored document
        // (aggregation stages check their output the same way).
        if self.root.has_computed() {
            use super::limits::{check_doc_depth, MAX_VALUE_DEPTH};
            check_doc_depth(&out, "The projected document", MAX_VALUE_DEPTH)?;
        }
        Ok(out)
    }

    pub(crate) fn apply_with_vars(
        &self,
        doc: &Document,
        filter: Option<&Filter>,
        vars: &Vars,
    ) -> Result<Document> {
        let ctx = Ctx {
            root: doc,
            vars,
            recurse: self.recurse_nested_arrays,
        };
        let mut out = if self.mode == ProjMode::AddFields {
            doc.clone()
        } else if self.inclusion {
            include_doc(&self.root, doc, &ctx)
        } else {
            exclude_doc(&self.root, doc, &ctx)
        };
        if self.root.has_computed() {
            add_computed(&self.root, &mut out, &ctx)?;
        }
        if self.has_late {
            self.apply_late(doc, filter, &mut out)?;
        }
        Ok(out)
    }

    fn apply_late(
        &self,
        doc: &Document,
        filter: Option<&Filter>,
        out: &mut Document,
    ) -> Result<()> {
        // $elemMatch / positional live at the top level (or, for positional,
        // under nested documents); they are appended after the other fields.
        fn walk_late(
            node: &Node,
            src: &Document,
            out: &mut Document,
            pos: &mut dyn FnMut() -> Result<Option<usize>>,
        ) -> Result<()> {
            for (k, item) in &node.fields {
                match item {
                    Item::ElemMatch(f) => {
                        out.remove(k);
                        if let Some(Bson::Array(a)) = src.get(k) {
                            if let Some(e) = a
                                .iter()
                                .find(|e| matches!(e, Bson::Document(d) if f.matches(d)))
                            {
                                out.insert(k.clone(), Bson::Array(vec![e.clone()]));
                            }
                        }
                    }
                    Item::Positional => {
                        out.remove(k);
                        match src.get(k) {
                            Some(Bson::Array(a)) => {
                                let Some(i) = pos()? else {
                                    return Err(EngineError::Projection(
                                        "Executor error during find command :: caused by :: positional operator '.$' element mismatch".into(),
                                    ));
                                };
                                match a.get(i) {
                                    Some(e) => {
                                        out.insert(k.clone(), Bson::Array(vec![e.clone()]));
                                    }
                                    None => {
                                        return Err(EngineError::Projection(
                                            "Executor error during find command :: caused by :: positional operator '.$' element mismatch".into(),
                                        ))
                                    }
                                }
                            }
                            Some(other) => {
                                out.insert(k.clone(), other.clone());
                            }
                            None => {}
                        }
                    }
                    Item::Nested(n) => {
                        if let Some(Bson::Document(sd)) = src.get(k) {
                            let mut sub = match out.remove(k) {
                                Some(Bson::Document(d)) => d,
                                _ => Document::new(),
                            };
                            walk_late(n, sd, &mut sub, pos)?;
                            if !sub.is_empty() {
                                out.insert(k.clone(), sub);
                            }
                        }
                    }
                    _ => {}
                }
            }
            Ok(())
        }
        let mut cached: Option<Option<usize>> = None;
        let mut pos = || -> Result<Option<usize>> {
            if let Some(c) = cached {
                return Ok(c);
            }
            let p = filter
                .map(|f| f.match_details(doc))
                .and_then(|d| d.array_index);
            cached = Some(p);
            Ok(p)
        };
        walk_late(&self.root, doc, out, &mut pos)
    }
}

fn nested_mode(n: &Node) -> Result<Option<bool>> {
    let mut m = None;
    for (_, it) in &n.fields {
        let x = match it {
            Item::Include | Item::Computed(_) | Item::ElemMatch(_) | Item::Positional => Some(true),
            Item::Exclude => Some(false),
            Item::Nested(c) => nested_mode(c)?,
            Item::Slice(..) => None,
        };
        if let Some(x) = x {
            match m {
                None => m = Some(x),
                Some(p) if p != x => {
                    return Err(EngineError::bad(
                        "Cannot do exclusion and inclusion in the same sub-projection",
                    ))
                }
                _ => {}
            }
        }
    }
    Ok(m)
}

fn parse_item(path: &str, v: &Bson, mode: ProjMode, has_late: &mut bool) -> Result<Item> {
    // `path` is the whole path down to here (nested sub-projections
    // included), so this bounds the depth of the projection tree.
    super::limits::check_path(path)?;
    match v {
        Bson::Boolean(_)
        | Bson::Int32(_)
        | Bson::Int64(_)
        | Bson::Double(_)
        | Bson::Decimal128(_) => {
            if mode == ProjMode::AddFields {
                return Ok(Item::Computed(Expr::Lit(v.clone())));
            }
            Ok(if super::compare::truthy(Some(v)) {
                Item::Include
            } else {
                Item::Exclude
            })
        }
        Bson::Document(d) => {
            let first = d.keys().next().map(String::as_str);
            match first {
                None => Err(EngineError::bad(format!(
                    "An empty sub-projection is not a valid value. Found empty object at path {path}"
                ))),
                Some("$slice") if mode == ProjMode::Find => parse_slice(d.get("$slice").unwrap_or(&Bson::Null)),
                Some("$elemMatch") if mode == ProjMode::Find => {
                    if path.contains('.') {
                        return Err(EngineError::bad("Cannot use $elemMatch projection on a nested field."));
                    }
                    let Some(Bson::Document(q)) = d.get("$elemMatch") else {
                        return Err(EngineError::bad("elemMatch: Invalid argument, object required."));
                    };
                    *has_late = true;
                    Ok(Item::ElemMatch(Box::new(Filter::parse(q)?)))
                }
                Some(k) if k.starts_with('$') => Ok(Item::Computed(Expr::parse(v)?)),
                Some(_) => {
                    let mut node = Node::default();
                    for (k, sv) in d {
                        if k.split('.').any(|s| s.is_empty()) {
                            return Err(EngineError::bad(format!("FieldPath field names may not be empty strings: '{k}'")));
                        }
                        let item = parse_item(&format!("{path}.{k}"), sv, mode, has_late)?;
                        insert_path(&mut node, k, item)?;
                    }
                    Ok(Item::Nested(node))
                }
            }
        }
        other => Ok(Item::Computed(Expr::parse(other)?)),
    }
}

fn parse_slice(v: &Bson) -> Result<Item> {
    let int = |b: &Bson| {
        Num::from_bson(b).map(|n| n.as_f64().clamp(i64::MIN as f64, i64::MAX as f64) as i64)
    };
    match v {
        Bson::Array(a) => {
            if a.len() != 2 {
                return Err(EngineError::bad(
                    "$slice array argument must be of the form [skip, limit]",
                ));
            }
            let (Some(s), Some(l)) = (int(&a[0]), int(&a[1])) else {
                return Err(EngineError::bad(
                    "$slice array argument must contain numbers",
                ));
            };
            if l <= 0 {
                return Err(EngineError::bad("$slice limit must be positive"));
            }
            Ok(Item::Slice(Some(s), l))
        }
        other => match int(other) {
            Some(n) => Ok(Item::Slice(None, n)),
            None => Err(EngineError::bad(
                "$slice only supports numbers and [skip, limit] arrays",
            )),
        },
    }
}

fn insert_path(node: &mut Node, path: &str, item: Item) -> Result<()> {
    let (head, rest) = match path.split_once('.') {
        Some((h, r)) => (h, Some(r)),
        None => (path, None),
    };
    let existing = node.fields.iter_mut().find(|(n, _)| n == head);
    match rest {
        None => match existing {
            Some((_, Item::Nested(n))) if matches!(item, Item::Nested(_)) => {
                // Merge `{a: {b: 1}}` with an earlier `a.c`.
                if let Item::Nested(new) = item {
                    for (k, it) in new.fields {
                        insert_path(n, &k, it)?;
                    }
                }
                Ok(())
            }
            Some(_) => Err(EngineError::bad(format!("Path collision at {path}"))),
            None => {
                node.fields.push((head.to_string(), item));
                Ok(())
            }
        },
        Some(r) => match existing {
            Some((_, Item::Nested(n))) => insert_path(n, r, item),
            Some(_) => Err(EngineError::bad(format!(
                "Path collision at {path} remaining portion {r}"
            ))),
            None => {
                let mut n = Node::default();
                insert_path(&mut n, r, item)?;
                node.fields.push((head.to_string(), Item::Nested(n)));
                Ok(())
            }
        },
    }
}

struct Ctx<'a> {
    root: &'a Document,
    vars: &'a Vars,
    recurse: bool,
}

fn slice_value(v: &Bson, skip: Option<i64>, limit: i64) -> Bson {
    let Bson::Array(a) = v else { return v.clone() };
    let len = a.len() as i64;
    let (start, end) = match skip {
        None => {
            if limit >= 0 {
                (0, limit.min(len))
            } else {
                ((len + limit).max(0), len)
            }
        }
        Some(s) => {
            let st = if s < 0 { (len + s).max(0) } else { s.min(len) };
            (st, st.saturating_add(limit).min(len))
        }
    };
    Bson::Array(a[start as usize..end.max(start) as usize].to_vec())
}

fn include_doc(node: &Node, src: &Document, ctx: &Ctx<'_>) -> Document {
    let mut out = Document::new();
    for (k, v) in src {
        match node.get(k) {
            Some(Item::Include) => {
                out.insert(k.clone(), v.clone());
            }
            Some(Item::Slice(s, l)) => {
                out.insert(k.clone(), slice_value(v, *s, *l));
            }
            Some(Item::Nested(child)) => {
                if let Some(x) = include_value(child, v, ctx) {
                    out.insert(k.clone(), x);
                }
            }
            _ => {}
        }
    }
    out
}

fn include_value(node: &Node, v: &Bson, ctx: &Ctx<'_>) -> Option<Bson> {
    match v {
        Bson::Document(d) => Some(Bson::Document(include_doc(node, d, ctx))),
        Bson::Array(a) => Some(Bson::Array(
            a.iter()
                .filter_map(|e| match e {
                    Bson::Array(_) if !ctx.recurse => None,
                    other => include_value(node, other, ctx),
                })
                .collect(),
        )),
        _ => None,
    }
}

fn exclude_doc(node: &Node, src: &Document, ctx: &Ctx<'_>) -> Document {
    let mut out = Document::new();
    for (k, v) in src {
        match node.get(k) {
            Some(Item::Exclude) => {}
            Some(Item::Slice(s, l)) => {
                out.insert(k.clone(), slice_value(v, *s, *l));
            }
            Some(Item::Nested(child)) => {
                out.insert(k.clone(), exclude_value(child, v, ctx));
            }
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    out
}

fn exclude_value(node: &Node, v: &Bson, ctx: &Ctx<'_>) -> Bson {
    match v {
        Bson::Document(d) => Bson::Document(exclude_doc(node, d, ctx)),
        Bson::Array(a) => Bson::Array(
            a.iter()
                .map(|e| match e {
                    Bson::Array(_) if !ctx.recurse => e.clone(),
                    other => exclude_value(node, other, ctx),
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Second phase: evaluate computed fields (in spec order) into `out`.
fn add_computed(node: &Node, out: &mut Document, ctx: &Ctx<'_>) -> Result<()> {
    for (k, item) in &node.fields {
        match item {
            Item::Computed(e) => match e.eval(ctx.root, ctx.vars)? {
                Some(v) => {
                    out.insert(k.clone(), v);
                }
                None => {
                    // $$REMOVE / missing: the field is absent from the output.
                    out.remove(k);
                }
            },
            Item::Nested(child) if child.has_computed() => {
                let cur = out.remove_entry_keep_pos(k);
                let newv = computed_into_value(child, cur, ctx)?;
                out.set_keep_pos(k, newv);
            }
            _ => {}
        }
    }
    Ok(())
}

fn computed_into_value(node: &Node, cur: Option<Bson>, ctx: &Ctx<'_>) -> Result<Bson> {
    match cur {
        Some(Bson::Document(mut d)) => {
            add_computed(node, &mut d, ctx)?;
            Ok(Bson::Document(d))
        }
        Some(Bson::Array(a)) => {
            let mut out = Vec::with_capacity(a.len());
            for e in a {
                if matches!(e, Bson::Array(_)) && !ctx.recurse {
                    out.push(e);
                } else {
                    out.push(computed_into_value(node, Some(e), ctx)?);
                }
            }
            Ok(Bson::Array(out))
        }
        _ => {
            let mut d = Document::new();
            add_computed(node, &mut d, ctx)?;
            Ok(Bson::Document(d))
        }
    }
}

/// Replace-in-place helpers: MongoDB keeps a field's position when a
/// computed value overwrites it, and appends new fields at the end.
trait KeepPos {
    fn remove_entry_keep_pos(&mut self, k: &str) -> Option<Bson>;
    fn set_keep_pos(&mut self, k: &str, v: Bson);
}

impl KeepPos for Document {
    fn remove_entry_keep_pos(&mut self, k: &str) -> Option<Bson> {
        // Leave a placeholder so a later `set_keep_pos` reuses the slot.
        self.get_mut(k)
            .map(|slot| std::mem::replace(slot, Bson::Null))
    }

    fn set_keep_pos(&mut self, k: &str, v: Bson) {
        self.insert(k.to_string(), v);
    }
}
