//! Bounds on the work one request can make the engine do, in one place.
//!
//! Every dotted path the engine builds from client data goes through
//! [`check_path`] at parse time, and every document or value that can nest
//! without a parser in front of it (update results, aggregation output,
//! `$reduce` accumulators) through [`measure`], so the recursive code that
//! follows (matching, comparing, encoding, dropping) never sees more than
//! these depths. The numbers follow MongoDB: field paths of at most 200
//! parts, stored documents at most 100 levels deep.

use bson::{Bson, Document};

/// Most components of one dotted field path (MongoDB's `FieldPath` limit).
pub const MAX_PATH_SEGMENTS: usize = 200;
/// Deepest document a client may send or an update may produce
/// (MongoDB's limit for stored documents).
pub const MAX_DOCUMENT_DEPTH: usize = 100;
/// Deepest value a computation may build in memory (aggregation output,
/// expression results): room for a path's worth of nesting on top of a
/// stored document, as MongoDB's in-memory BSON depth limit.
pub const MAX_VALUE_DEPTH: usize = 200;
/// Deepest operator tree in a filter, and deepest expression tree.
pub const MAX_SPEC_DEPTH: usize = 100;
/// Deepest nesting of sub-pipelines (`$lookup`, `$facet`, `$unionWith`).
pub const MAX_PIPELINE_NESTING: usize = 20;
/// Most stages in one pipeline (MongoDB's default).
pub const MAX_PIPELINE_STAGES: usize = 1000;
/// Longest regular expression pattern, in bytes (MongoDB's limit).
pub const MAX_REGEX_PATTERN_BYTES: usize = 16 * 1024;
/// Compiled size limit handed to the regex crate.
pub const REGEX_COMPILED_SIZE_LIMIT: usize = 4 * 1024 * 1024;
/// Largest single value (string or array) an expression may build when no
/// aggregation budget is smaller: MongoDB's document size limit.
pub const MAX_VALUE_BYTES: u64 = 16 * 1024 * 1024;

/// A bound that client data ran into. Each names its limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("Field path '{path}' has {segments} parts; the limit is {limit} (MAX_PATH_SEGMENTS)")]
    PathTooLong {
        path: String,
        segments: usize,
        limit: usize,
    },
    #[error("{what} exceeds the maximum nesting depth of {limit}")]
    TooDeep { what: String, limit: usize },
    #[error("Regular expression is too long: {length} bytes; the limit is {limit}")]
    RegexTooLong { length: usize, limit: usize },
    #[error("Regular expression is too large to compile (limit {limit} bytes compiled)")]
    RegexTooLarge { limit: usize },
    #[error("Sort exceeded memory limit of {limit_mb} mb: add an index, a $limit after the $sort, or narrow the query")]
    SortMemory { limit_mb: u64 },
    #[error("An expression would build a value of more than {limit} bytes (MAX_VALUE_BYTES)")]
    ValueTooLarge { limit: u64 },
    /// The aggregation's byte budget (`--max-aggregate-mb`) ran out.
    #[error("Query size exceeded {limit_mb} mb")]
    Memory { limit_mb: u64 },
}

impl LimitError {
    /// Stable wire code of the error (`OpenCoreError::code`).
    pub fn code(&self) -> i32 {
        match self {
            LimitError::Memory { .. } => 2019,
            LimitError::PathTooLong { .. } => 2020,
            LimitError::TooDeep { .. } => 2021,
            LimitError::SortMemory { .. } => 2022,
            LimitError::RegexTooLong { .. } | LimitError::RegexTooLarge { .. } => 2023,
            LimitError::ValueTooLarge { .. } => 2024,
        }
    }

    pub fn too_deep(what: impl Into<String>, limit: usize) -> LimitError {
        LimitError::TooDeep {
            what: what.into(),
            limit,
        }
    }
}

/// Refuses a dotted path with more than [`MAX_PATH_SEGMENTS`] parts. Cheap:
/// counts dots without splitting.
pub fn check_path(raw: &str) -> Result<(), LimitError> {
    check_path_parts(raw, 0)
}

/// Like [`check_path`] for a path appended below `prefix_parts` parts
/// (nested projection documents, positions inside `$elemMatch`).
pub fn check_path_parts(raw: &str, prefix_parts: usize) -> Result<(), LimitError> {
    let segments = prefix_parts + raw.bytes().filter(|b| *b == b'.').count() + 1;
    if segments > MAX_PATH_SEGMENTS {
        let mut shown: String = raw.chars().take(40).collect();
        if shown.len() < raw.len() {
            shown.push('…');
        }
        return Err(LimitError::PathTooLong {
            path: shown,
            segments,
            limit: MAX_PATH_SEGMENTS,
        });
    }
    Ok(())
}

/// Approximate in-memory size and nesting depth of a value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Size {
    pub bytes: u64,
    pub depth: usize,
}

/// Fixed cost of one value slot: the `Bson` itself plus its key's `String` or its
/// map bucket. Counting the real slot size keeps arrays of small values (which
/// cost their slot, not their payload) from being undercounted several times over.
pub const SLOT_BYTES: u64 = std::mem::size_of::<Bson>() as u64 + 16;

/// Measures a value without recursion (an explicit stack), so it is safe on
/// values of any depth: the one place a too-deep value can be detected.
pub fn measure(value: &Bson) -> Size {
    let mut size = Size::default();
    let mut stack: Vec<(&Bson, usize)> = vec![(value, 0)];
    while let Some((v, depth)) = stack.pop() {
        size.bytes += SLOT_BYTES;
        match v {
            Bson::Document(d) => {
                size.depth = size.depth.max(depth + 1);
                for (k, child) in d {
                    size.bytes += k.len() as u64;
                    stack.push((child, depth + 1));
                }
            }
            Bson::Array(a) => {
                size.depth = size.depth.max(depth + 1);
                stack.extend(a.iter().map(|child| (child, depth + 1)));
            }
            other => size.bytes += scalar_bytes(other),
        }
    }
    size
}

/// [`measure`] of a document.
pub fn measure_doc(doc: &Document) -> Size {
    let mut size = Size {
        bytes: SLOT_BYTES,
        depth: 1,
    };
    for (k, v) in doc {
        let inner = measure(v);
        size.bytes += k.len() as u64 + inner.bytes;
        size.depth = size.depth.max(inner.depth + 1);
    }
    size
}

fn scalar_bytes(v: &Bson) -> u64 {
    match v {
        Bson::String(s) | Bson::Symbol(s) | Bson::JavaScriptCode(s) => s.len() as u64,
        Bson::Binary(b) => b.bytes.len() as u64,
        Bson::RegularExpression(r) => (r.pattern.len() + r.options.len()) as u64,
        Bson::JavaScriptCodeWithScope(c) => c.code.len() as u64 + measure_doc(&c.scope).bytes,
        Bson::DbPointer(_) => 24,
        _ => 0,
    }
}

/// Refuses a document deeper than `limit` (e.g. an update's result).
pub fn check_doc_depth(doc: &Document, what: &str, limit: usize) -> Result<Size, LimitError> {
    let size = measure_doc(doc);
    if size.depth > limit {
        return Err(LimitError::too_deep(what, limit));
    }
    Ok(size)
}

/// Drops a value of any depth without recursing (Rust's own drop glue for
/// nested `Bson` recurses once per level).
pub fn drop_deep(value: Bson) {
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Bson::Document(d) => stack.extend(d.into_iter().map(|(_, v)| v)),
            Bson::Array(a) => stack.extend(a),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    fn nested(levels: usize) -> Bson {
        let mut v = Bson::Int32(1);
        for _ in 0..levels {
            v = Bson::Array(vec![v]);
        }
        v
    }

    #[test]
    fn paths_are_counted_by_parts() {
        assert!(check_path(&vec!["a"; MAX_PATH_SEGMENTS].join(".")).is_ok());
        let err = check_path(&vec!["a"; MAX_PATH_SEGMENTS + 1].join(".")).unwrap_err();
        assert_eq!(err.code(), 2020);
        assert!(
            err.to_string().contains("201 parts; the limit is 200"),
            "{err}"
        );
        assert!(check_path_parts("a.b", MAX_PATH_SEGMENTS - 1).is_err());
    }

    #[test]
    fn measure_is_iterative_and_counts_depth() {
        // Far deeper than any thread stack could recurse through.
        let deep = nested(200_000);
        assert_eq!(measure(&deep).depth, 200_000);
        drop_deep(deep);
        let d = doc! {"a": {"b": [1, "xyz"]}};
        let size = measure_doc(&d);
        assert_eq!(size.depth, 3);
        assert!(size.bytes >= 3 + 16 * 4);
        assert!(check_doc_depth(&d, "doc", 3).is_ok());
        assert_eq!(check_doc_depth(&d, "doc", 2).unwrap_err().code(), 2021);
    }
}
