//! Query planning and execution over the embedded store's tables.
//!
//! Access paths, best first:
//! - `IDHACK`: `_id` pinned by equality or `$in`: point lookups in the data table;
//! - `IXSCAN`: an index whose leading fields are pinned (`Eq`/`In`, from
//!   `Filter::constraints()`), optionally followed by one range field; the index with
//!   the most pinned fields wins (then: a range, providing the sort, unique);
//! - `IDSCAN`: a range on `_id` (the data table is ordered by the encoded `_id`);
//! - `COLLSCAN`: every document, in `_id` order.
//!
//! An index also provides the sort when the sort keys follow its pinned prefix (in the
//! index's direction or all reversed) and it is not multikey; then execution streams in
//! order and stops after skip + limit. Without a usable constraint, a sort walks a
//! sort-providing index in order (rather than holding the matches for an in-memory sort). Every candidate document is re-checked with
//! the full filter, so an index only ever narrows the scan.

use std::collections::HashSet;
use std::ops::Bound;
use std::sync::Arc;

use std::cmp::Ordering;

use bson::{Bson, Document, RawBsonRef, RawDocument};
use redb::ReadableTable;

use super::catalog::{CollectionMeta, IndexMeta};
use super::{backend, decode_raw};
use crate::store::engine::compare::type_rank;
use crate::store::engine::path::parse_index;
use crate::store::engine::{compare_bson, FieldConstraint, Filter, SortSpec};
use crate::store::keys::{encode_id, encode_value, invert, prefix_end, rank_tag};
use crate::store::{StoreError, StoreResult};

/// Most point ranges an `$in` expansion may produce before the planner stops using
/// further index fields.
const MAX_POINTS: usize = 4096;

type KeyRange = (Bound<Vec<u8>>, Bound<Vec<u8>>);

#[derive(Debug, Clone)]
pub(crate) enum Access {
    IdPoints(Vec<Vec<u8>>),
    IdRange(KeyRange),
    Index {
        index: Arc<IndexMeta>,
        ranges: Vec<KeyRange>,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub access: Access,
    /// Walk the ranges backwards.
    pub reverse: bool,
    /// The output comes in the requested sort order.
    pub sorted: bool,
    /// Necessary conditions checked on raw bytes before a document is decoded.
    pub prefilter: Prefilter,
}

impl Plan {
    pub fn collscan() -> Plan {
        Plan {
            access: Access::IdRange((Bound::Unbounded, Bound::Unbounded)),
            reverse: false,
            sorted: false,
            prefilter: Prefilter::default(),
        }
    }

    pub fn describe(&self) -> String {
        match &self.access {
            Access::IdPoints(_) => "IDHACK".into(),
            Access::IdRange((Bound::Unbounded, Bound::Unbounded)) => "COLLSCAN".into(),
            Access::IdRange(_) => "IDSCAN".into(),
            Access::Index { index, .. } => format!("IXSCAN {}", index.name),
        }
    }

    /// Documents come in `_id` order (what an in-memory sort keeps for ties).
    pub fn natural_order(&self) -> bool {
        !self.reverse && !matches!(self.access, Access::Index { .. })
    }

    pub fn index(&self) -> Option<&Arc<IndexMeta>> {
        match &self.access {
            Access::Index { index, .. } => Some(index),
            _ => None,
        }
    }
}

/// The filter's top-level constraints, evaluated on a document's raw bytes: decoding
/// a document costs far more than reading a few fields, so a scan rejects most
/// non-matching documents without decoding them. Only certain answers count: a path
/// through an array (multikey semantics) is left to the full filter.
#[derive(Debug, Clone, Default)]
pub(crate) struct Prefilter {
    checks: Vec<(Vec<String>, FieldConstraint)>,
}

impl Prefilter {
    fn new(constraints: &[(String, FieldConstraint)]) -> Prefilter {
        let checks = constraints
            .iter()
            .filter(|(path, _)| path.split('.').all(|part| parse_index(part).is_none()))
            .map(|(path, c)| (path.split('.').map(str::to_string).collect(), c.clone()))
            .collect();
        Prefilter { checks }
    }

    pub fn is_empty(&self) -> bool {
        self.checks.is_empty()
    }

    /// False when the document certainly does not match.
    pub fn admits(&self, raw: &RawDocument) -> bool {
        'checks: for (parts, constraint) in &self.checks {
            let mut doc = raw;
            for (i, part) in parts.iter().enumerate() {
                let last = i + 1 == parts.len();
                let value = match doc.get(part) {
                    Ok(Some(value)) => value,
                    // Missing: no constraint (never null) is satisfied.
                    Ok(None) => return false,
                    Err(_) => continue 'checks,
                };
                match value {
                    RawBsonRef::Array(_) => continue 'checks,
                    RawBsonRef::Document(inner) if !last => doc = inner,
                    // A scalar in the middle of the path: the rest is missing.
                    _ if !last => return false,
                    // Constraint values are never documents.
                    RawBsonRef::Document(_) => return false,
                    scalar => match Bson::try_from(scalar) {
                        Ok(v) if !satisfies(&v, constraint) => return false,
                        _ => continue 'checks,
                    },
                }
            }
        }
        true
    }
}

fn satisfies(v: &Bson, constraint: &FieldConstraint) -> bool {
    let bound = |b: &Option<(Bson, bool)>, want: Ordering| {
        b.as_ref().is_none_or(|(b, inclusive)| {
            type_rank(v) == type_rank(b) && {
                let o = compare_bson(v, b);
                o == want || (*inclusive && o == Ordering::Equal)
            }
        })
    };
    match constraint {
        FieldConstraint::Eq(x) => compare_bson(v, x) == Ordering::Equal,
        FieldConstraint::In(xs) => xs.iter().any(|x| compare_bson(v, x) == Ordering::Equal),
        FieldConstraint::Range { min, max } => {
            bound(min, Ordering::Greater) && bound(max, Ordering::Less)
        }
    }
}

const OVER_BUDGET: &str = "\u{0}query exceeded its inline budget";

/// The error a budgeted execution stops with; never leaves the store.
pub(crate) fn over_budget() -> StoreError {
    StoreError::Backend(OVER_BUDGET.into())
}

pub(crate) fn is_over_budget(err: &StoreError) -> bool {
    matches!(err, StoreError::Backend(m) if m == OVER_BUDGET)
}

/// What a plan looked at: index entries and documents fetched.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Examined {
    pub keys: u64,
    pub docs: u64,
    /// Encoded size of the documents handed on (they are held in memory from there).
    pub bytes: u64,
}

/// Bounds of one execution.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    /// Documents plus index entries examined; past it, [`over_budget`].
    pub work: u64,
    /// Bytes of documents handed on; past it, `StoreError::TooLarge` with `limit_mb`.
    pub bytes: u64,
    pub limit_mb: u64,
}

impl Budget {
    pub const UNLIMITED: Budget = Budget {
        work: u64::MAX,
        bytes: u64::MAX,
        limit_mb: 0,
    };
}

/// One bound of a field's interval, in that field's (possibly inverted) byte space.
enum FieldBound {
    /// A value's encoding; inclusive or not.
    Value(Vec<u8>, bool),
    /// Every encoding starting with these bytes (a whole type bracket).
    Prefix(Vec<u8>),
}

fn encoded(value: &Bson, asc: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    encode_value(value, &mut out);
    if !asc {
        invert(&mut out);
    }
    out
}

fn bracket(value: &Bson, asc: bool) -> Vec<u8> {
    let tag = rank_tag(type_rank(value));
    vec![if asc { tag } else { !tag }]
}

fn concat(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    out.extend_from_slice(a);
    out.extend_from_slice(b);
    out
}

fn lower(prefix: &[u8], bound: Option<FieldBound>) -> Bound<Vec<u8>> {
    match bound {
        None if prefix.is_empty() => Bound::Unbounded,
        None => Bound::Included(prefix.to_vec()),
        Some(FieldBound::Value(v, true)) | Some(FieldBound::Prefix(v)) => {
            Bound::Included(concat(prefix, &v))
        }
        Some(FieldBound::Value(v, false)) => match prefix_end(&concat(prefix, &v)) {
            Some(end) => Bound::Included(end),
            None => Bound::Excluded(concat(prefix, &v)),
        },
    }
}

fn upper(prefix: &[u8], bound: Option<FieldBound>) -> Bound<Vec<u8>> {
    let until = |bytes: Vec<u8>| match prefix_end(&bytes) {
        Some(end) => Bound::Excluded(end),
        None => Bound::Unbounded,
    };
    match bound {
        None if prefix.is_empty() => Bound::Unbounded,
        None => until(prefix.to_vec()),
        Some(FieldBound::Value(v, true)) | Some(FieldBound::Prefix(v)) => until(concat(prefix, &v)),
        Some(FieldBound::Value(v, false)) => Bound::Excluded(concat(prefix, &v)),
    }
}

/// The field interval of a range constraint (values within the bounds' type brackets).
fn range_bounds(
    min: &Option<(Bson, bool)>,
    max: &Option<(Bson, bool)>,
    asc: bool,
    multikey: bool,
) -> (Option<FieldBound>, Option<FieldBound>) {
    // On a multikey field, `$gt` and `$lt` may be satisfied by different elements:
    // only one bound is a necessary condition.
    let (min, max) = match (min, max) {
        (Some(_), Some(_)) if multikey => (min.clone(), None),
        _ => (min.clone(), max.clone()),
    };
    let low = match (&min, &max) {
        (Some((v, inclusive)), _) => FieldBound::Value(encoded(v, true), *inclusive),
        (None, Some((v, _))) => FieldBound::Prefix(bracket(v, true)),
        (None, None) => return (None, None),
    };
    let high = match (&max, &min) {
        (Some((v, inclusive)), _) => FieldBound::Value(encoded(v, true), *inclusive),
        (None, Some((v, _))) => FieldBound::Prefix(bracket(v, true)),
        (None, None) => return (None, None),
    };
    if asc {
        return (Some(low), Some(high));
    }
    // Inverted bytes: the high value bounds from below.
    let flip = |b: FieldBound| match b {
        FieldBound::Value(mut v, inc) => {
            invert(&mut v);
            FieldBound::Value(v, inc)
        }
        FieldBound::Prefix(mut v) => {
            invert(&mut v);
            FieldBound::Prefix(v)
        }
    };
    (Some(flip(high)), Some(flip(low)))
}

fn empty_range(range: &KeyRange) -> bool {
    match range {
        (Bound::Included(lo), Bound::Excluded(hi)) | (Bound::Excluded(lo), Bound::Excluded(hi)) => {
            lo >= hi
        }
        (Bound::Included(lo), Bound::Included(hi)) => lo > hi,
        (Bound::Excluded(lo), Bound::Included(hi)) => lo >= hi,
        _ => false,
    }
}

struct Candidate {
    plan: Plan,
    pinned: usize,
    ranged: bool,
    unique: bool,
}

impl Candidate {
    fn score(&self) -> (usize, bool, bool, bool) {
        (self.pinned, self.ranged, self.plan.sorted, self.unique)
    }
}

fn constraint<'a>(
    constraints: &'a [(String, FieldConstraint)],
    path: &str,
) -> Option<&'a FieldConstraint> {
    constraints.iter().find(|(p, _)| p == path).map(|(_, c)| c)
}

fn single_value(c: Option<&FieldConstraint>) -> bool {
    match c {
        Some(FieldConstraint::Eq(_)) => true,
        Some(FieldConstraint::In(values)) => values.len() == 1,
        _ => false,
    }
}

/// Does walking `index` (after its pinned fields) yield `sort` order? `Some(reverse)`.
fn sort_direction(
    index: &IndexMeta,
    sort: &SortSpec,
    constraints: &[(String, FieldConstraint)],
) -> Option<bool> {
    if index.multikey {
        return None;
    }
    let keys: Vec<(&str, bool)> = sort.keys().collect();
    let (mut i, mut j) = (0, 0);
    let mut reverse = None;
    while j < keys.len() {
        let (path, asc) = keys[j];
        if let Some((field, field_asc)) = index.fields.get(i) {
            if field.as_str() == path {
                let rev = *field_asc != asc;
                if reverse.is_some_and(|r| r != rev) {
                    return None;
                }
                reverse = Some(rev);
                i += 1;
                j += 1;
                continue;
            }
            if single_value(constraint(constraints, field.as_str())) {
                i += 1;
                continue;
            }
        }
        // A pinned sort key is constant only where it cannot be an array: on a field of
        // this (non-multikey) index.
        if single_value(constraint(constraints, path))
            && index.fields.iter().any(|(f, _)| f.as_str() == path)
        {
            j += 1;
            continue;
        }
        return None;
    }
    Some(reverse.unwrap_or(false))
}

fn index_candidate(
    index: &Arc<IndexMeta>,
    query: &Document,
    constraints: &[(String, FieldConstraint)],
    sort: Option<&SortSpec>,
) -> Option<Candidate> {
    if !index.plannable() || !index.usable_for(query, constraints) {
        return None;
    }
    let mut prefixes: Vec<Vec<u8>> = vec![Vec::new()];
    let mut pinned = 0;
    let mut bounds: (Option<FieldBound>, Option<FieldBound>) = (None, None);
    let mut ranged = false;
    for (path, asc) in &index.fields {
        match constraint(constraints, path.as_str()) {
            Some(FieldConstraint::Eq(v)) => {
                let bytes = encoded(v, *asc);
                prefixes
                    .iter_mut()
                    .for_each(|p| p.extend_from_slice(&bytes));
                pinned += 1;
            }
            Some(FieldConstraint::In(values)) => {
                let mut encs: Vec<Vec<u8>> = values.iter().map(|v| encoded(v, *asc)).collect();
                encs.sort_unstable();
                encs.dedup();
                if encs.is_empty() || prefixes.len() * encs.len() > MAX_POINTS {
                    break;
                }
                prefixes = prefixes
                    .iter()
                    .flat_map(|p| encs.iter().map(move |e| concat(p, e)))
                    .collect();
                pinned += 1;
            }
            Some(FieldConstraint::Range { min, max }) => {
                bounds = range_bounds(min, max, *asc, index.multikey);
                ranged = bounds.0.is_some() || bounds.1.is_some();
                break;
            }
            None => break,
        }
    }
    let direction = sort.and_then(|s| {
        if prefixes.len() == 1 {
            sort_direction(index, s, constraints)
        } else {
            None
        }
    });
    let mut ranges = Vec::with_capacity(prefixes.len());
    for p in &prefixes {
        let lo = lower(p, bounds.0.as_ref().map(clone_bound));
        let hi = upper(p, bounds.1.as_ref().map(clone_bound));
        let range = (lo, hi);
        if !empty_range(&range) {
            ranges.push(range);
        }
    }
    Some(Candidate {
        plan: Plan {
            access: Access::Index {
                index: index.clone(),
                ranges,
            },
            reverse: direction.unwrap_or(false),
            sorted: sort.is_none() || direction.is_some(),
            prefilter: Prefilter::default(),
        },
        pinned,
        ranged,
        unique: index.unique,
    })
}

fn clone_bound(b: &FieldBound) -> FieldBound {
    match b {
        FieldBound::Value(v, inc) => FieldBound::Value(v.clone(), *inc),
        FieldBound::Prefix(v) => FieldBound::Prefix(v.clone()),
    }
}

/// `Some(reverse)` when `sort` starts with `_id` (keys after a unique `_id` never
/// matter).
fn id_sort(sort: Option<&SortSpec>) -> Option<bool> {
    match sort?.keys().next() {
        Some(("_id", asc)) => Some(!asc),
        _ => None,
    }
}

/// Chooses how to read the documents `filter` may match.
pub(crate) fn plan(
    filter: &Filter,
    query: &Document,
    sort: Option<&SortSpec>,
    meta: Option<&CollectionMeta>,
) -> Plan {
    let constraints = filter.constraints();
    let prefilter = Prefilter::new(&constraints);
    let plan = choose(&constraints, query, sort, meta);
    Plan { prefilter, ..plan }
}

fn choose(
    constraints: &[(String, FieldConstraint)],
    query: &Document,
    sort: Option<&SortSpec>,
    meta: Option<&CollectionMeta>,
) -> Plan {
    let constraints = constraints.to_vec();
    let by_id = id_sort(sort);
    match constraint(&constraints, "_id") {
        Some(FieldConstraint::Eq(v)) => {
            return Plan {
                access: Access::IdPoints(vec![encode_id(v)]),
                reverse: false,
                sorted: true,
                ..Plan::collscan()
            };
        }
        Some(FieldConstraint::In(values)) => {
            let mut keys: Vec<Vec<u8>> = values.iter().map(encode_id).collect();
            keys.sort_unstable();
            keys.dedup();
            return Plan {
                access: Access::IdPoints(keys),
                reverse: by_id.unwrap_or(false),
                sorted: sort.is_none() || by_id.is_some(),
                ..Plan::collscan()
            };
        }
        _ => {}
    }
    let mut best: Option<Candidate> = None;
    if let Some(FieldConstraint::Range { min, max }) = constraint(&constraints, "_id") {
        let (lo, hi) = range_bounds(min, max, true, false);
        let range = (lower(&[], lo), upper(&[], hi));
        best = Some(Candidate {
            plan: Plan {
                access: Access::IdRange(range),
                reverse: by_id.unwrap_or(false),
                sorted: sort.is_none() || by_id.is_some(),
                ..Plan::collscan()
            },
            pinned: 0,
            ranged: true,
            unique: true,
        });
    }
    let mut sort_only: Option<Plan> = None;
    for index in meta.map(|m| m.indexes.as_slice()).unwrap_or_default() {
        let Some(candidate) = index_candidate(index, query, &constraints, sort) else {
            continue;
        };
        if candidate.pinned == 0 && !candidate.ranged {
            if sort.is_some() && candidate.plan.sorted && sort_only.is_none() {
                sort_only = Some(candidate.plan);
            }
            continue;
        }
        if best.as_ref().is_none_or(|b| candidate.score() > b.score()) {
            best = Some(candidate);
        }
    }
    if let Some(best) = best {
        return best.plan;
    }
    if let Some(reverse) = by_id {
        return Plan {
            reverse,
            sorted: true,
            ..Plan::collscan()
        };
    }
    // Walking a sort-providing index streams in order; an in-memory sort would have
    // to hold the matches (within --max-sort-mb).
    if let Some(plan) = sort_only {
        return plan;
    }
    Plan {
        sorted: sort.is_none(),
        ..Plan::collscan()
    }
}

/// The entries of a single-field index whose value is below `value`, within its type
/// bracket (TTL: dates before the cutoff).
pub(crate) fn before(index: &IndexMeta, value: &Bson) -> KeyRange {
    let asc = index.fields.first().is_none_or(|f| f.1);
    let (lo, hi) = range_bounds(&None, &Some((value.clone(), false)), asc, false);
    (lower(&[], lo), upper(&[], hi))
}

fn as_slices(range: &KeyRange) -> (Bound<&[u8]>, Bound<&[u8]>) {
    (
        range.0.as_ref().map(Vec::as_slice),
        range.1.as_ref().map(Vec::as_slice),
    )
}

/// Runs `plan`: every document that matches `filter` goes to `visit` (in plan order,
/// with its encoded size) until it returns `false`.
///
/// `budget` bounds the work (documents plus index entries examined): past it,
/// execution stops with [`over_budget`] (inline reads then move to the blocking pool).
/// It also bounds the bytes of the documents handed to `visit`.
pub(crate) fn execute<D, I>(
    plan: &Plan,
    data: &D,
    index: Option<&I>,
    filter: &Filter,
    budget: Budget,
    examined: &mut Examined,
    visit: &mut dyn FnMut(Document, usize) -> StoreResult<bool>,
) -> StoreResult<()>
where
    D: ReadableTable<&'static [u8], &'static [u8]>,
    I: ReadableTable<&'static [u8], &'static [u8]>,
{
    let match_all = filter.is_match_all();
    let prefilter = &plan.prefilter;
    let mut check = |bytes: &[u8], examined: &mut Examined| -> StoreResult<bool> {
        examined.docs += 1;
        if examined.docs + examined.keys > budget.work {
            return Err(over_budget());
        }
        let raw = RawDocument::from_bytes(bytes).map_err(backend)?;
        if !prefilter.is_empty() && !prefilter.admits(raw) {
            return Ok(true);
        }
        let doc = decode_raw(raw)?;
        // An expression that fails (or exceeds a limit) fails the read, as in MongoDB,
        // instead of quietly not matching.
        if match_all || filter.try_matches(&doc)? {
            examined.bytes += bytes.len() as u64;
            if examined.bytes > budget.bytes {
                return Err(StoreError::TooLarge {
                    limit_mb: budget.limit_mb,
                });
            }
            visit(doc, bytes.len())
        } else {
            Ok(true)
        }
    };
    match &plan.access {
        Access::IdPoints(keys) => {
            let mut step = |key: &Vec<u8>| -> StoreResult<bool> {
                match data.get(key.as_slice()).map_err(backend)? {
                    Some(value) => check(value.value(), examined),
                    None => Ok(true),
                }
            };
            if plan.reverse {
                for key in keys.iter().rev() {
                    if !step(key)? {
                        break;
                    }
                }
            } else {
                for key in keys {
                    if !step(key)? {
                        break;
                    }
                }
            }
        }
        Access::IdRange(range) => {
            if empty_range(range) {
                return Ok(());
            }
            let iter = data.range::<&[u8]>(as_slices(range)).map_err(backend)?;
            let mut step = |entry: Result<_, redb::StorageError>| -> StoreResult<bool> {
                let (_, value): (redb::AccessGuard<&[u8]>, redb::AccessGuard<&[u8]>) =
                    entry.map_err(backend)?;
                check(value.value(), examined)
            };
            if plan.reverse {
                for entry in iter.rev() {
                    if !step(entry)? {
                        break;
                    }
                }
            } else {
                for entry in iter {
                    if !step(entry)? {
                        break;
                    }
                }
            }
        }
        Access::Index {
            index: meta,
            ranges,
        } => {
            let index =
                index.ok_or_else(|| backend(format!("index table of {} is missing", meta.name)))?;
            let dedup = meta.multikey || ranges.len() > 1;
            let mut seen: HashSet<Vec<u8>> = HashSet::new();
            let ordered: Vec<&KeyRange> = if plan.reverse {
                ranges.iter().rev().collect()
            } else {
                ranges.iter().collect()
            };
            'ranges: for range in ordered {
                let iter = index.range::<&[u8]>(as_slices(range)).map_err(backend)?;
                let mut step = |entry: Result<_, redb::StorageError>| -> StoreResult<bool> {
                    let (_, value): (redb::AccessGuard<&[u8]>, redb::AccessGuard<&[u8]>) =
                        entry.map_err(backend)?;
                    examined.keys += 1;
                    let pk = value.value();
                    if dedup && !seen.insert(pk.to_vec()) {
                        return Ok(true);
                    }
                    match data.get(pk).map_err(backend)? {
                        Some(doc) => check(doc.value(), examined),
                        None => Err(backend(format!(
                            "index {} points at a missing document",
                            meta.name
                        ))),
                    }
                };
                if plan.reverse {
                    for entry in iter.rev() {
                        if !step(entry)? {
                            break 'ranges;
                        }
                    }
                } else {
                    for entry in iter {
                        if !step(entry)? {
                            break 'ranges;
                        }
                    }
                }
            }
        }
    }
    Ok(())
}
