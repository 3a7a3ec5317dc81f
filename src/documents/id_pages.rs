//! Walking every document a filter matches, one bounded page at a time, in `_id`
//! order (keyset pagination). Unlike `deletemany`'s rounds, the matches need not go
//! away: an updated document may still match, and the next page simply starts after
//! the last `_id` seen.
//!
//! `$gt` compares within one type bracket only (MongoDB semantics: `{$gt: "m"}` never
//! matches an ObjectId), so when a page comes back short, the bracket of the last `_id`
//! is exhausted and the walk goes on with the `_id`s of the brackets that sort after it.

use bson::{doc, Bson, Document};

use super::query;
use crate::store::engine::compare::type_rank;

/// Every `$type` alias with the sort bracket (`type_rank`) of its values.
const TYPE_BRACKETS: &[(&str, u8)] = &[
    ("minKey", 0),
    ("undefined", 1),
    ("null", 5),
    ("double", 10),
    ("int", 10),
    ("long", 10),
    ("decimal", 10),
    ("string", 15),
    ("symbol", 15),
    ("object", 20),
    ("array", 25),
    ("binData", 30),
    ("objectId", 35),
    ("bool", 40),
    ("date", 45),
    ("timestamp", 47),
    ("regex", 50),
    ("dbPointer", 55),
    ("javascript", 60),
    ("javascriptWithScope", 65),
    ("maxKey", 127),
];

#[derive(Debug, Clone)]
enum Position {
    Start,
    /// After this `_id`, within its bracket.
    After(Bson),
    /// Past every `_id` of brackets up to this one.
    AfterBracket(u8),
    Done,
}

/// The filters of successive pages: ask `next_filter`, read up to `page_size`
/// documents sorted by [`IdPages::SORT`], hand them to `advance`.
#[derive(Debug, Clone)]
pub struct IdPages {
    filter: Document,
    page_size: usize,
    position: Position,
}

impl IdPages {
    pub fn new(filter: Document, page_size: usize) -> IdPages {
        IdPages {
            filter,
            page_size: page_size.max(1),
            position: Position::Start,
        }
    }

    pub fn sort() -> Document {
        doc! {"_id": 1}
    }

    pub fn page_size(&self) -> usize {
        self.page_size
    }

    /// The filter of the next page; `None` when every match has been seen.
    pub fn next_filter(&self) -> Option<Document> {
        let after = match &self.position {
            Position::Start => return Some(self.filter.clone()),
            Position::Done => return None,
            // `$gt: NaN` matches nothing, yet NaN sorts below every other number.
            Position::After(Bson::Double(f)) if f.is_nan() => {
                doc! {"_id": {"$gte": f64::NEG_INFINITY}}
            }
            Position::After(id) => doc! {"_id": {"$gt": id.clone()}},
            Position::AfterBracket(rank) => {
                let later: Vec<&str> = TYPE_BRACKETS
                    .iter()
                    .filter(|(_, r)| r > rank)
                    .map(|(alias, _)| *alias)
                    .collect();
                if later.is_empty() {
                    return None;
                }
                doc! {"_id": {"$type": later}}
            }
        };
        Some(query::and([self.filter.clone(), after]))
    }

    /// Moves past `page` (the documents the last filter returned, in `_id` order).
    pub fn advance(&mut self, page: &[Document]) {
        let last = page.last().and_then(|d| d.get("_id")).cloned();
        let full = page.len() >= self.page_size;
        self.position = match (&self.position, last) {
            (Position::Done, _) => Position::Done,
            (_, Some(last)) if full => Position::After(last),
            // A short page after an `_id`: its bracket is exhausted, later ones are not.
            (Position::After(id), last) => {
                Position::AfterBracket(type_rank(last.as_ref().unwrap_or(id)))
            }
            // A short page from the start or across the later brackets: all seen.
            _ => Position::Done,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::engine::{Filter, SortSpec};

    /// Pages through `docs` the way a store would answer each filter.
    fn walk(docs: &[Document], page_size: usize) -> Vec<Bson> {
        let sort = SortSpec::parse(&IdPages::sort()).unwrap();
        let mut pages = IdPages::new(doc! {"keep": true}, page_size);
        let mut seen = Vec::new();
        let mut rounds = 0;
        while let Some(filter) = pages.next_filter() {
            rounds += 1;
            assert!(rounds < 1000, "the walk ends");
            let filter = Filter::parse(&filter).unwrap();
            let mut page: Vec<Document> =
                docs.iter().filter(|d| filter.matches(d)).cloned().collect();
            sort.sort(&mut page);
            page.truncate(page_size);
            seen.extend(page.iter().map(|d| d.get("_id").cloned().unwrap()));
            pages.advance(&page);
        }
        seen
    }

    #[test]
    fn sees_every_match_once_across_id_types() {
        let oid = bson::oid::ObjectId::new();
        let ids = vec![
            Bson::Int32(3),
            Bson::Double(f64::NAN),
            Bson::Int64(-7),
            Bson::String("b".into()),
            Bson::String("a".into()),
            Bson::ObjectId(oid),
            Bson::Boolean(true),
            Bson::Null,
            Bson::String("c".into()),
            Bson::Double(2.5),
        ];
        let mut docs: Vec<Document> = ids
            .iter()
            .map(|id| doc! {"_id": id.clone(), "keep": true})
            .collect();
        docs.push(doc! {"_id": "x", "keep": false});
        for page_size in [1, 2, 3, 4, 10, 11, 100] {
            let seen = walk(&docs, page_size);
            assert_eq!(seen.len(), ids.len(), "page size {page_size}: {seen:?}");
            for id in &ids {
                let n = seen
                    .iter()
                    .filter(|s| format!("{s:?}") == format!("{id:?}"))
                    .count();
                assert_eq!(n, 1, "page size {page_size}: {id:?} in {seen:?}");
            }
        }
    }

    #[test]
    fn nothing_matching_ends_at_once() {
        let mut pages = IdPages::new(doc! {}, 10);
        assert_eq!(pages.next_filter(), Some(doc! {}));
        pages.advance(&[]);
        assert_eq!(pages.next_filter(), None);
    }
}
