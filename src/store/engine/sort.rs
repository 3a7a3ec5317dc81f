//! Sorting with MongoDB's cross-type order. Arrays sort by their smallest
//! element ascending and largest descending; missing sorts as null; an empty
//! array sorts below null in both directions.

use std::cmp::Ordering;

use bson::{Bson, Document};

use super::compare::{compare_bson, Num};
use super::error::EngineError;
use super::path::{walk_keys, FieldPath};
use super::Result;

/// A parsed sort specification (`{a: 1, "b.c": -1}`).
#[derive(Debug, Clone)]
pub struct SortSpec {
    keys: Vec<(FieldPath, bool)>,
}

static NULL: Bson = Bson::Null;
/// Stand-in key for an empty array: sorts below null (MinKey < it < null).
static EMPTY_ARRAY_KEY: Bson = Bson::Undefined;

impl SortSpec {
    /// Parses an optional spec; absent or empty means none.
    pub fn parse_optional(spec: Option<&Document>) -> Result<Option<SortSpec>> {
        spec.filter(|s| !s.is_empty())
            .map(SortSpec::parse)
            .transpose()
    }

    /// Parses a sort document; values must be 1 or -1.
    pub fn parse(spec: &Document) -> Result<SortSpec> {
        if spec.is_empty() {
            return Err(EngineError::bad(
                "$sort stage must have at least one sort key",
            ));
        }
        let mut keys = Vec::with_capacity(spec.len());
        for (k, v) in spec {
            if let Bson::Document(d) = v {
                if d.contains_key("$meta") {
                    return Err(EngineError::Unsupported("$meta sort".into()));
                }
            }
            let dir = Num::from_bson(v).map(|n| n.as_f64());
            let asc = match dir {
                Some(1.0) => true,
                Some(-1.0) => false,
                _ => {
                    return Err(EngineError::bad(
                        "$sort key ordering must be 1 (for ascending) or -1 (for descending)",
                    ))
                }
            };
            keys.push((FieldPath::parse(k)?, asc));
        }
        Ok(SortSpec { keys })
    }

    /// Sort keys as `(path, ascending)` pairs.
    pub fn keys(&self) -> impl Iterator<Item = (&str, bool)> {
        self.keys.iter().map(|(p, a)| (p.as_str(), *a))
    }

    /// The key value MongoDB would sort `doc` by for one key.
    fn key<'a>(path: &FieldPath, asc: bool, doc: &'a Document) -> &'a Bson {
        let mut best: Option<&'a Bson> = None;
        let mut saw_empty_array = false;
        walk_keys(doc, path.parts(), &mut |f| {
            if f.whole_array {
                if matches!(f.value, Some(Bson::Array(a)) if a.is_empty()) {
                    saw_empty_array = true;
                }
                return false;
            }
            let v = f.value.unwrap_or(&NULL);
            best = Some(match best {
                None => v,
                Some(b) => {
                    let o = compare_bson(v, b);
                    if (asc && o == Ordering::Less) || (!asc && o == Ordering::Greater) {
                        v
                    } else {
                        b
                    }
                }
            });
            false
        });
        match best {
            Some(b) => b,
            None if saw_empty_array => &EMPTY_ARRAY_KEY,
            None => &NULL,
        }
    }

    fn doc_keys<'a>(&self, doc: &'a Document) -> Vec<&'a Bson> {
        self.keys
            .iter()
            .map(|(p, asc)| Self::key(p, *asc, doc))
            .collect()
    }

    fn cmp_keys(&self, a: &[&Bson], b: &[&Bson]) -> Ordering {
        for (i, (_, asc)) in self.keys.iter().enumerate() {
            let o = compare_bson(a[i], b[i]);
            if o != Ordering::Equal {
                return if *asc { o } else { o.reverse() };
            }
        }
        Ordering::Equal
    }

    /// Compares two documents under this spec.
    pub fn compare(&self, a: &Document, b: &Document) -> Ordering {
        self.cmp_keys(&self.doc_keys(a), &self.doc_keys(b))
    }

    /// Stable in-place sort (ties keep input order). Keys are computed once
    /// per document; documents are moved, never cloned.
    pub fn sort(&self, docs: &mut [Document]) {
        let perm = self.permutation(docs);
        permute_in_place(docs, &perm);
    }

    /// Sorts document references, keys computed once per document. With
    /// `top = Some(k)` only the first `k` results are kept (partial selection,
    /// O(n + k log k)). Ties keep input order.
    pub fn sort_refs<'a>(&self, docs: Vec<&'a Document>, top: Option<usize>) -> Vec<&'a Document> {
        let idx = self.sorted_indices(docs.iter().copied(), top);
        idx.into_iter().map(|i| docs[i]).collect()
    }

    /// Sorts owned documents keeping only the first `top` (for `$sort` + `$limit`).
    pub fn sort_top(&self, docs: &mut Vec<Document>, top: usize) {
        let idx = self.sorted_indices(docs.iter(), Some(top));
        apply_permutation(docs, &idx);
    }

    fn sorted_indices<'a, I: Iterator<Item = &'a Document>>(
        &self,
        docs: I,
        top: Option<usize>,
    ) -> Vec<usize> {
        let mut keyed: Vec<(Vec<&'a Bson>, usize)> = docs
            .enumerate()
            .map(|(i, d)| (self.doc_keys(d), i))
            .collect();
        let cmp = |a: &(Vec<&Bson>, usize), b: &(Vec<&Bson>, usize)| {
            self.cmp_keys(&a.0, &b.0).then(a.1.cmp(&b.1))
        };
        if let Some(k) = top {
            if k == 0 {
                return Vec::new();
            }
            if k < keyed.len() {
                keyed.select_nth_unstable_by(k - 1, cmp);
                keyed.truncate(k);
            }
        }
        keyed.sort_unstable_by(cmp);
        keyed.into_iter().map(|(_, i)| i).collect()
    }

    /// Indices of `docs` in sorted order; keys are computed once per document.
    pub fn permutation(&self, docs: &[Document]) -> Vec<usize> {
        let keys: Vec<Vec<&Bson>> = docs.iter().map(|d| self.doc_keys(d)).collect();
        let mut idx: Vec<usize> = (0..docs.len()).collect();
        idx.sort_by(|&x, &y| self.cmp_keys(&keys[x], &keys[y]));
        idx
    }
}

/// Reorders `docs` so that position `i` receives the document previously at
/// `perm[i]`, following permutation cycles (no clones).
fn permute_in_place(docs: &mut [Document], perm: &[usize]) {
    let mut done = vec![false; docs.len()];
    for start in 0..docs.len() {
        if done[start] || perm.get(start) == Some(&start) {
            continue;
        }
        let held = std::mem::take(&mut docs[start]);
        let mut cur = start;
        loop {
            done[cur] = true;
            let src = perm.get(cur).copied().unwrap_or(cur);
            if src == start {
                docs[cur] = held;
                break;
            }
            docs[cur] = std::mem::take(&mut docs[src]);
            cur = src;
        }
    }
}

pub(crate) fn apply_permutation(docs: &mut Vec<Document>, perm: &[usize]) {
    let mut slots: Vec<Option<Document>> = docs.drain(..).map(Some).collect();
    for &i in perm {
        if let Some(d) = slots.get_mut(i).and_then(Option::take) {
            docs.push(d);
        }
    }
}

/// Applies skip then limit (limit 0 = no limit, like `find`).
pub fn skip_limit(docs: Vec<Document>, skip: u64, limit: u64) -> Vec<Document> {
    let it = docs.into_iter().skip(skip.min(usize::MAX as u64) as usize);
    if limit == 0 {
        it.collect()
    } else {
        it.take(limit.min(usize::MAX as u64) as usize).collect()
    }
}
