//! Dotted field paths and MongoDB's path resolution rules.
//!
//! Query-side resolution (`walk`) follows the matcher's element iterator:
//! arrays met in the middle of a path are traversed element by element
//! (documents inside them are descended into, numeric components may also
//! index the array), and an array at the end of a path yields each element
//! and then the array itself (so `{a: 1}` and `{a: [1, 2]}` both work).

use bson::{Bson, Document};

/// One component of a dotted path, with its array index pre-parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct PathPart {
    pub name: String,
    /// `Some(i)` when the component is a canonical non-negative integer.
    pub index: Option<usize>,
}

/// A parsed dotted path such as `a.b.0.c`.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldPath {
    raw: String,
    parts: Vec<PathPart>,
}

/// Parses a path component as an array index, MongoDB style (digits only, no
/// leading zeros except "0").
pub fn parse_index(s: &str) -> Option<usize> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

impl FieldPath {
    pub fn new(raw: &str) -> FieldPath {
        let parts = raw
            .split('.')
            .map(|p| PathPart {
                name: p.to_string(),
                index: parse_index(p),
            })
            .collect();
        FieldPath {
            raw: raw.to_string(),
            parts,
        }
    }

    /// A query path as written (empty components allowed, as MongoDB's
    /// matcher does), refused past [`super::limits::MAX_PATH_SEGMENTS`] parts.
    pub fn checked(raw: &str) -> crate::store::engine::Result<FieldPath> {
        super::limits::check_path(raw)?;
        Ok(FieldPath::new(raw))
    }

    /// Parses and validates (no empty components, at most
    /// [`super::limits::MAX_PATH_SEGMENTS`] parts).
    pub fn parse(raw: &str) -> crate::store::engine::Result<FieldPath> {
        super::limits::check_path(raw)?;
        if raw.is_empty() {
            return Err(crate::store::engine::EngineError::bad(
                "FieldPath cannot be constructed with empty string",
            ));
        }
        if raw.split('.').any(|p| p.is_empty()) {
            return Err(crate::store::engine::EngineError::bad(format!(
                "FieldPath field names may not be empty strings: '{raw}'"
            )));
        }
        Ok(FieldPath::new(raw))
    }

    #[inline]
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    #[inline]
    pub fn parts(&self) -> &[PathPart] {
        &self.parts
    }

    pub fn first(&self) -> &str {
        self.parts.first().map(|p| p.name.as_str()).unwrap_or("")
    }

    pub fn len(&self) -> usize {
        self.parts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }
}

/// One value produced by [`walk`]: `None` means "missing here".
/// `arr_idx` is the offset in the outermost array traversed on the way (what
/// MongoDB records as the positional `$` match).
#[derive(Debug, Clone, Copy)]
pub struct Found<'a> {
    pub value: Option<&'a Bson>,
    pub arr_idx: Option<usize>,
    /// True when this is a whole leaf array yielded after its elements.
    pub whole_array: bool,
}

/// Visits every value a query path resolves to in `doc`. `expand_leaf`
/// controls whether a terminal array yields its elements before itself (true
/// for ordinary comparison operators, false for `$size`/`$elemMatch`). The
/// visitor returns `true` to stop early; `walk` returns whether it stopped.
pub fn walk<'a>(
    doc: &'a Document,
    parts: &[PathPart],
    expand_leaf: bool,
    f: &mut dyn FnMut(Found<'a>) -> bool,
) -> bool {
    walk_doc(doc, parts, expand_leaf, false, None, f)
}

/// Key-extraction variant of [`walk`] used for sort keys and `distinct`
/// (MongoDB's index-key / dotted-path extraction): a numeric component that
/// follows an array is purely positional (`a.0` is the first element, never a
/// field named "0" inside element documents).
pub fn walk_keys<'a>(
    doc: &'a Document,
    parts: &[PathPart],
    f: &mut dyn FnMut(Found<'a>) -> bool,
) -> bool {
    walk_doc(doc, parts, true, true, None, f)
}

/// Like [`walk`] but starting from an arbitrary value; an empty path yields
/// the value itself (expanded if it is an array and `expand_leaf`).
pub fn walk_value<'a>(
    v: &'a Bson,
    parts: &[PathPart],
    expand_leaf: bool,
    f: &mut dyn FnMut(Found<'a>) -> bool,
) -> bool {
    if parts.is_empty() {
        return yield_leaf(v, expand_leaf, None, f);
    }
    match v {
        Bson::Document(d) => walk_doc(d, parts, expand_leaf, false, None, f),
        Bson::Array(a) => walk_array(a, parts, expand_leaf, false, None, f),
        _ => f(Found {
            value: None,
            arr_idx: None,
            whole_array: false,
        }),
    }
}

fn yield_leaf<'a>(
    v: &'a Bson,
    expand_leaf: bool,
    idx: Option<usize>,
    f: &mut dyn FnMut(Found<'a>) -> bool,
) -> bool {
    if expand_leaf {
        if let Bson::Array(a) = v {
            for (i, e) in a.iter().enumerate() {
                if f(Found {
                    value: Some(e),
                    arr_idx: idx.or(Some(i)),
                    whole_array: false,
                }) {
                    return true;
                }
            }
            return f(Found {
                value: Some(v),
                arr_idx: idx,
                whole_array: true,
            });
        }
    }
    f(Found {
        value: Some(v),
        arr_idx: idx,
        whole_array: false,
    })
}

fn walk_doc<'a>(
    doc: &'a Document,
    parts: &[PathPart],
    expand_leaf: bool,
    keys: bool,
    idx: Option<usize>,
    f: &mut dyn FnMut(Found<'a>) -> bool,
) -> bool {
    let Some((head, rest)) = parts.split_first() else {
        return false;
    };
    match doc.get(&head.name) {
        None => f(Found {
            value: None,
            arr_idx: idx,
            whole_array: false,
        }),
        Some(v) if rest.is_empty() => yield_leaf(v, expand_leaf, idx, f),
        Some(Bson::Document(d)) => walk_doc(d, rest, expand_leaf, keys, idx, f),
        Some(Bson::Array(a)) => walk_array(a, rest, expand_leaf, keys, idx, f),
        // A scalar in the middle of the path: the rest is missing.
        Some(_) => f(Found {
            value: None,
            arr_idx: idx,
            whole_array: false,
        }),
    }
}

/// Traverses an array met in the middle of a path (`rest` is non-empty),
/// mirroring MongoDB's `BSONElementIterator`: document elements are searched
/// for the rest of the path (recording their offset) and then, if the next
/// component is this element's index, addressed by offset; other elements
/// are only reachable by offset. A value reached by offset is yielded as is
/// (a nested array there is not expanded).
fn walk_array<'a>(
    arr: &'a [Bson],
    rest: &[PathPart],
    expand_leaf: bool,
    keys: bool,
    idx: Option<usize>,
    f: &mut dyn FnMut(Found<'a>) -> bool,
) -> bool {
    let Some((head, tail)) = rest.split_first() else {
        return false;
    };
    if keys && head.index.is_some() {
        // Positional only; out of range behaves like a missing field.
        let Some(e) = head.index.and_then(|i| arr.get(i)) else {
            return f(Found {
                value: None,
                arr_idx: idx,
                whole_array: false,
            });
        };
        return if tail.is_empty() {
            yield_leaf(e, expand_leaf, idx, f)
        } else {
            match e {
                Bson::Document(d) => walk_doc(d, tail, expand_leaf, keys, idx, f),
                Bson::Array(inner) => walk_array(inner, tail, expand_leaf, keys, idx, f),
                _ => f(Found {
                    value: None,
                    arr_idx: idx,
                    whole_array: false,
                }),
            }
        };
    }
    for (i, e) in arr.iter().enumerate() {
        if let Bson::Document(d) = e {
            if walk_doc(d, rest, expand_leaf, keys, idx.or(Some(i)), f) {
                return true;
            }
        }
        if head.index != Some(i) {
            continue;
        }
        let stopped = if tail.is_empty() {
            f(Found {
                value: Some(e),
                arr_idx: idx,
                whole_array: false,
            })
        } else {
            match e {
                Bson::Document(d) => walk_doc(d, tail, expand_leaf, keys, idx, f),
                Bson::Array(inner) => walk_array(inner, tail, expand_leaf, keys, idx, f),
                _ => false,
            }
        };
        if stopped {
            return true;
        }
    }
    false
}

/// Strict lookup through documents and (numeric) array indexes, no array
/// traversal: what update operators and projections address.
pub fn get_strict<'a>(doc: &'a Document, parts: &[&str]) -> Option<&'a Bson> {
    let (head, rest) = parts.split_first()?;
    let v = doc.get(*head)?;
    if rest.is_empty() {
        return Some(v);
    }
    get_strict_value(v, rest)
}

pub fn get_strict_value<'a>(v: &'a Bson, parts: &[&str]) -> Option<&'a Bson> {
    let mut cur = v;
    for p in parts {
        cur = match cur {
            Bson::Document(d) => d.get(*p)?,
            Bson::Array(a) => a.get(parse_index(p)?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// Aggregation field-path semantics (`$a.b`): arrays are mapped over, values
/// missing inside array elements are dropped, numeric components are plain
/// field names. Returns `None` for missing.
pub fn get_expr_path(doc: &Document, parts: &[String]) -> Option<Bson> {
    let (head, rest) = parts.split_first()?;
    let v = doc.get(head)?;
    if rest.is_empty() {
        return Some(v.clone());
    }
    get_expr_path_value(v, rest)
}

pub fn get_expr_path_value(v: &Bson, parts: &[String]) -> Option<Bson> {
    if parts.is_empty() {
        return Some(v.clone());
    }
    match v {
        Bson::Document(d) => get_expr_path(d, parts),
        Bson::Array(a) => {
            let mut out = Vec::with_capacity(a.len());
            // Like MongoDB, only document elements are descended into
            // (nested arrays and scalars are skipped).
            for e in a {
                if let Bson::Document(d) = e {
                    if let Some(x) = get_expr_path(d, parts) {
                        out.push(x);
                    }
                }
            }
            Some(Bson::Array(out))
        }
        _ => None,
    }
}
