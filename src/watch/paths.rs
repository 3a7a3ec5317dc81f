//! The `paths` of a watch: JSONPath expressions (RFC 9535, through `serde_json_path`)
//! evaluated like the reference's, against the wrapper `{"a": <document>}`; a document
//! passes when any path selects something. No paths, or only empty ones (the official
//! clients send `[""]`), pass every document.
//!
//! The reference's JSONPath dialect writes `$.[?(...)]` where RFC 9535 writes
//! `$[?(...)]`; `.[` outside string literals is read as `[`, so the clients' form works.

use serde_json::Value;
use serde_json_path::JsonPath;

use crate::error::OpenCoreError;

/// Longest path accepted, in bytes: a filter is evaluated on every event.
const MAX_PATH_LEN: usize = 4096;
/// Paths per watch.
const MAX_PATHS: usize = 32;
/// Brackets and parentheses nest at most this deep: the parser recurses per level, and
/// a path is checked before it is parsed.
const MAX_NESTING: usize = 32;
/// Descendant segments (`..`) per path: each one multiplies the nodes a path visits by
/// the document's size, and paths run on every event.
const MAX_DESCENDANTS: usize = 1;

#[derive(Debug, Clone, Default)]
pub struct PathFilter {
    paths: Vec<JsonPath>,
}

impl PathFilter {
    /// Compiles the paths of a `WatchRequest`; an invalid path is an error now, not a
    /// watch that never matches.
    pub fn compile(paths: &[String]) -> Result<PathFilter, OpenCoreError> {
        let paths: Vec<&str> = paths
            .iter()
            .map(|p| p.trim())
            .filter(|p| !p.is_empty())
            .collect();
        if paths.len() > MAX_PATHS {
            return Err(OpenCoreError::BadRequest(format!(
                "A watch takes at most {MAX_PATHS} paths"
            )));
        }
        let mut compiled = Vec::with_capacity(paths.len());
        for path in paths {
            let invalid = |reason: String| OpenCoreError::InvalidWatchPath {
                path: path.chars().take(200).collect(),
                reason,
            };
            if path.len() > MAX_PATH_LEN {
                return Err(invalid(format!("longer than {MAX_PATH_LEN} bytes")));
            }
            let shape = Shape::of(path);
            if shape.nesting > MAX_NESTING {
                return Err(invalid(format!("nested deeper than {MAX_NESTING} levels")));
            }
            if shape.descendants > MAX_DESCENDANTS {
                return Err(invalid(format!(
                    "more than {MAX_DESCENDANTS} descendant segment (..)"
                )));
            }
            let parsed =
                JsonPath::parse(&shape.normalised).map_err(|err| invalid(err.to_string()))?;
            compiled.push(parsed);
        }
        Ok(PathFilter { paths: compiled })
    }

    /// Every document passes.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// Whether any path selects something in `wrapped` (`{"a": <document>}`).
    pub fn matches(&self, wrapped: &Value) -> bool {
        self.is_empty()
            || self
                .paths
                .iter()
                .any(|path| !path.query(wrapped).is_empty())
    }
}

/// A path read once, outside its string literals: the reference dialect's `.[` as `[`,
/// how deep it nests and how many descendant segments it has.
struct Shape {
    normalised: String,
    nesting: usize,
    descendants: usize,
}

impl Shape {
    fn of(path: &str) -> Shape {
        let mut normalised = String::with_capacity(path.len());
        let (mut depth, mut nesting, mut descendants) = (0usize, 0usize, 0usize);
        let mut quote: Option<char> = None;
        let mut escaped = false;
        let mut chars = path.chars().peekable();
        while let Some(c) = chars.next() {
            if let Some(q) = quote {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
                normalised.push(c);
                continue;
            }
            match c {
                '\'' | '"' => quote = Some(c),
                '[' | '(' => {
                    depth += 1;
                    nesting = nesting.max(depth);
                }
                ']' | ')' => depth = depth.saturating_sub(1),
                '.' if normalised.ends_with('.') => descendants += 1,
                // `$.[x]` is `$[x]` (but `$..[x]` stays a descendant step).
                '.' if chars.peek() == Some(&'[') => continue,
                _ => {}
            }
            normalised.push(c);
        }
        Shape {
            normalised,
            nesting,
            descendants,
        }
    }
}
