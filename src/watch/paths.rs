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
            let parsed =
                JsonPath::parse(&normalise(path)).map_err(|err| invalid(err.to_string()))?;
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

/// Reads `.[` as `[` outside string literals (the reference dialect's bracket after a dot).
fn normalise(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut chars = path.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
                out.push(c);
            }
            None => {
                if c == '\'' || c == '"' {
                    quote = Some(c);
                    out.push(c);
                } else if c == '.' && chars.peek() == Some(&'[') && !out.ends_with('.') {
                    // dropped: `$.[x]` is `$[x]` (but `$..[x]` stays a descendant step)
                } else {
                    out.push(c);
                }
            }
        }
    }
    out
}
