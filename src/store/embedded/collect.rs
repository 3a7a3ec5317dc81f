//! Bounded in-memory collectors for the reads that must see every match before they
//! can answer: a sort no index provides, and `distinct`.
//!
//! A sort with a limit keeps only the best `skip + limit` documents seen so far (a
//! buffer compacted to that many whenever it doubles), so memory follows what is asked
//! for, not the collection. Whatever is held counts against a byte limit; past it the
//! read fails with an error naming the limit instead of growing without bound.

use std::collections::HashSet;

use bson::{Bson, Document};

use crate::store::engine::compare::{compare_bson, hash_key};
use crate::store::engine::path::{walk_keys, FieldPath};
use crate::store::engine::SortSpec;
use crate::store::keys::encode_id;
use crate::store::{mb_to_bytes, StoreError, StoreResult};

/// Documents below this many are never compacted (sorting tiny buffers often costs
/// more than it saves).
const MIN_COMPACT: usize = 64;

/// Collects documents in `sort` order, keeping the first `keep` (`None`: all).
///
/// Ties keep `_id` order, whatever order the documents arrive in (so an index never
/// changes a result); `natural` says they already arrive in `_id` order.
pub(crate) struct SortedCollector<'a> {
    sort: &'a SortSpec,
    keep: Option<usize>,
    natural: bool,
    docs: Vec<Document>,
    sizes: Vec<u64>,
    bytes: u64,
    limit_bytes: u64,
    limit_mb: u64,
}

impl<'a> SortedCollector<'a> {
    pub fn new(sort: &'a SortSpec, keep: Option<usize>, natural: bool, limit_mb: u64) -> Self {
        SortedCollector {
            sort,
            keep,
            natural,
            docs: Vec::new(),
            sizes: Vec::new(),
            bytes: 0,
            limit_bytes: mb_to_bytes(limit_mb),
            limit_mb,
        }
    }

    /// Adds one document of `size` encoded bytes.
    pub fn push(&mut self, doc: Document, size: usize) -> StoreResult<()> {
        self.docs.push(doc);
        self.sizes.push(size as u64);
        self.bytes = self.bytes.saturating_add(size as u64);
        if let Some(keep) = self.keep {
            if self.docs.len() >= keep.saturating_mul(2).max(MIN_COMPACT) {
                self.compact(keep);
            }
        }
        if self.bytes > self.limit_bytes {
            if let Some(keep) = self.keep.filter(|k| *k < self.docs.len()) {
                self.compact(keep);
            }
            if self.bytes > self.limit_bytes {
                return Err(StoreError::SortTooLarge {
                    limit_mb: self.limit_mb,
                });
            }
        }
        Ok(())
    }

    /// The kept documents, sorted.
    pub fn finish(mut self) -> Vec<Document> {
        let keep = self.keep.unwrap_or(usize::MAX);
        self.compact(keep);
        self.docs
    }

    /// Sorts the buffer (ties by `_id`) and keeps its first `keep` documents.
    fn compact(&mut self, keep: usize) {
        if !self.natural {
            let keys: Vec<Vec<u8>> = self
                .docs
                .iter()
                .map(|d| encode_id(d.get("_id").unwrap_or(&Bson::Null)))
                .collect();
            let mut by_id: Vec<usize> = (0..self.docs.len()).collect();
            by_id.sort_by(|&a, &b| keys[a].cmp(&keys[b]));
            self.reorder(&by_id);
        }
        // Stable: ties keep the `_id` order established above (or by arrival).
        let mut order = self.sort.permutation(&self.docs);
        order.truncate(keep);
        self.reorder(&order);
    }

    /// Keeps the documents at `order`'s positions, in that order.
    fn reorder(&mut self, order: &[usize]) {
        let mut docs: Vec<Option<Document>> = self.docs.drain(..).map(Some).collect();
        let sizes = std::mem::take(&mut self.sizes);
        self.bytes = 0;
        for &i in order {
            if let Some(doc) = docs.get_mut(i).and_then(Option::take) {
                self.docs.push(doc);
                self.sizes.push(sizes[i]);
                self.bytes = self.bytes.saturating_add(sizes[i]);
            }
        }
    }
}

/// The distinct values of one field (arrays contribute their elements), as MongoDB's
/// `distinct` finds them, within a byte limit.
pub(crate) struct DistinctCollector {
    path: FieldPath,
    seen: HashSet<Vec<u8>>,
    values: Vec<Bson>,
    bytes: u64,
    limit_bytes: u64,
    limit_mb: u64,
}

impl DistinctCollector {
    pub fn new(field: &str, limit_mb: u64) -> StoreResult<Self> {
        Ok(DistinctCollector {
            path: FieldPath::parse(field)?,
            seen: HashSet::new(),
            values: Vec::new(),
            bytes: 0,
            limit_bytes: mb_to_bytes(limit_mb),
            limit_mb,
        })
    }

    pub fn add(&mut self, doc: &Document) -> StoreResult<()> {
        let (seen, values, bytes) = (&mut self.seen, &mut self.values, &mut self.bytes);
        walk_keys(doc, self.path.parts(), &mut |found| {
            if found.whole_array {
                return false;
            }
            if let Some(value) = found.value {
                let mut key = Vec::new();
                hash_key(value, &mut key);
                // The key is about the size of the value: count both copies.
                let size = 2 * key.len() as u64;
                if seen.insert(key) {
                    values.push(value.clone());
                    *bytes = bytes.saturating_add(size);
                }
            }
            false
        });
        if self.bytes > self.limit_bytes {
            return Err(StoreError::DistinctTooLarge {
                limit_mb: self.limit_mb,
            });
        }
        Ok(())
    }

    pub fn finish(mut self) -> Vec<Bson> {
        self.values.sort_by(compare_bson);
        self.values
    }
}

#[cfg(test)]
mod tests {
    use bson::doc;

    use super::*;

    fn spec(sort: Document) -> SortSpec {
        SortSpec::parse(&sort).unwrap()
    }

    #[test]
    fn keeps_the_first_k_with_ties_in_id_order() {
        let sort = spec(doc! {"v": 1});
        // Arriving in reverse _id order (as from an index), many ties.
        let docs: Vec<Document> = (0..1000i32)
            .rev()
            .map(|i| doc! {"_id": i, "v": i % 7})
            .collect();
        let mut all = docs.clone();
        all.sort_by_key(|d| d.get_i32("_id").unwrap());
        sort.sort(&mut all);
        for keep in [0usize, 1, 5, 100, 999, 1000, 5000] {
            let mut c = SortedCollector::new(&sort, Some(keep), false, 0);
            for d in &docs {
                c.push(d.clone(), 10).unwrap();
            }
            let got = c.finish();
            assert_eq!(got, all[..keep.min(all.len())].to_vec(), "keep {keep}");
        }
    }

    #[test]
    fn holds_at_most_twice_what_it_keeps() {
        let sort = spec(doc! {"v": -1});
        // 10 bytes a document, limit 1 MB: 200,000 documents would be 2 MB.
        let mut c = SortedCollector::new(&sort, Some(10), true, 1);
        for i in 0..200_000i32 {
            c.push(doc! {"_id": i, "v": i}, 10).unwrap();
            assert!(c.docs.len() <= MIN_COMPACT);
        }
        let top: Vec<i32> = c.finish().iter().map(|d| d.get_i32("v").unwrap()).collect();
        assert_eq!(top, (199_990..200_000).rev().collect::<Vec<_>>());
    }

    #[test]
    fn refuses_past_the_byte_limit() {
        let sort = spec(doc! {"v": 1});
        let mut c = SortedCollector::new(&sort, None, true, 1);
        let mut failed = None;
        for i in 0..2000i32 {
            if let Err(err) = c.push(doc! {"_id": i, "v": i}, 1024) {
                failed = Some((i, err));
                break;
            }
        }
        let (at, err) = failed.expect("the limit stops the sort");
        assert_eq!(at, 1024);
        assert_eq!(err, StoreError::SortTooLarge { limit_mb: 1 });
        assert_eq!(err.to_string(), "Sort exceeded the memory limit of 1 MB");
    }

    #[test]
    fn distinct_dedups_numbers_and_caps_bytes() {
        let mut d = DistinctCollector::new("a", 0).unwrap();
        d.add(&doc! {"a": [1, 2.0, "x"]}).unwrap();
        d.add(&doc! {"a": 2}).unwrap();
        d.add(&doc! {"b": 1}).unwrap();
        assert_eq!(
            d.finish(),
            vec![Bson::Int32(1), Bson::Double(2.0), Bson::from("x")]
        );

        let mut d = DistinctCollector::new("a", 1).unwrap();
        let big = "x".repeat(100_000);
        let mut failed = false;
        for i in 0..20 {
            if d.add(&doc! {"a": format!("{i}{big}")}).is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed, "20 values of 100 kB are over 1 MB");
    }
}
