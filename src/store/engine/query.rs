//! Convenience entry points tying filter, sort, skip/limit and projection
//! together the way the `find`, `count` and `distinct` commands do.

use std::collections::HashSet;

use bson::{Bson, Document};

use super::compare::hash_key;
use super::filter::Filter;
use super::path::{walk_keys, FieldPath};
use super::projection::Projection;
use super::sort::SortSpec;
use super::Result;

/// Parsed options of a `find`.
#[derive(Debug, Clone)]
pub struct FindOptions {
    pub filter: Filter,
    pub projection: Option<Projection>,
    pub sort: Option<SortSpec>,
    pub skip: u64,
    /// 0 = no limit.
    pub limit: u64,
}

impl FindOptions {
    /// Parses the pieces of a find command.
    pub fn parse(
        filter: &Document,
        projection: Option<&Document>,
        sort: Option<&Document>,
        skip: u64,
        limit: u64,
    ) -> Result<FindOptions> {
        Ok(FindOptions {
            filter: Filter::parse(filter)?,
            projection: match projection {
                Some(p) if !p.is_empty() => Some(Projection::parse(p)?),
                _ => None,
            },
            sort: match sort {
                Some(s) if !s.is_empty() => Some(SortSpec::parse(s)?),
                _ => None,
            },
            skip,
            limit,
        })
    }
}

/// Runs a find over `docs` (in natural order): filter, sort, skip, limit,
/// project. Only the surviving documents are cloned.
pub fn find<'a, I>(docs: I, opts: &FindOptions) -> Result<Vec<Document>>
where
    I: IntoIterator<Item = &'a Document>,
{
    let mut matched: Vec<&Document> = Vec::new();
    for d in docs {
        if opts.filter.try_matches(d)? {
            matched.push(d);
            // Without a sort we can stop as soon as skip+limit are satisfied.
            if opts.sort.is_none()
                && opts.limit > 0
                && matched.len() as u64 >= opts.skip.saturating_add(opts.limit)
            {
                break;
            }
        }
    }
    if let Some(s) = &opts.sort {
        let top = (opts.limit > 0)
            .then(|| opts.skip.saturating_add(opts.limit).min(usize::MAX as u64) as usize);
        matched = s.sort_refs(matched, top);
    }
    let skip = opts.skip.min(usize::MAX as u64) as usize;
    let it = matched.into_iter().skip(skip);
    let selected: Vec<&Document> = if opts.limit > 0 {
        it.take(opts.limit.min(usize::MAX as u64) as usize)
            .collect()
    } else {
        it.collect()
    };
    selected
        .into_iter()
        .map(|d| match &opts.projection {
            Some(p) => p.apply(d, Some(&opts.filter)),
            None => Ok(d.clone()),
        })
        .collect()
}

/// Number of documents matching `filter`.
pub fn count<'a, I>(docs: I, filter: &Filter) -> Result<u64>
where
    I: IntoIterator<Item = &'a Document>,
{
    let mut n = 0u64;
    for d in docs {
        if filter.try_matches(d)? {
            n += 1;
        }
    }
    Ok(n)
}

/// Distinct values of `field` among matching documents. Arrays contribute
/// their elements (one level); values are deduplicated with query equality
/// (so 1 and 1.0 are one value) and returned in MongoDB's BSON order.
pub fn distinct<'a, I>(docs: I, field: &str, filter: &Filter) -> Result<Vec<Bson>>
where
    I: IntoIterator<Item = &'a Document>,
{
    let path = FieldPath::parse(field)?;
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    let mut out: Vec<Bson> = Vec::new();
    for d in docs {
        if !filter.try_matches(d)? {
            continue;
        }
        walk_keys(d, path.parts(), &mut |f| {
            if f.whole_array {
                return false;
            }
            if let Some(v) = f.value {
                let mut k = Vec::new();
                hash_key(v, &mut k);
                if seen.insert(k) {
                    out.push(v.clone());
                }
            }
            false
        });
    }
    out.sort_by(super::compare::compare_bson);
    Ok(out)
}
