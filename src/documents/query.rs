//! Request pieces shared by the read and write commands: the query (with the `_id`
//! string/ObjectId rewrite), sort, projection, and how filters are combined.

use bson::{doc, oid::ObjectId, Bson, Document};

use super::{guard, json};
use crate::error::OpenCoreError;

/// `QueryRequest.query` and friends: mandatory JSON object, `_id` rewritten so a
/// 24-hex id matches both its string and ObjectId form, JavaScript refused.
pub fn parse_query(text: &str) -> Result<Document, OpenCoreError> {
    if text.trim().is_empty() {
        return Err(OpenCoreError::QueryMandatory);
    }
    let mut query = json::parse_document("query", text)?;
    guard::refuse_javascript(&query)?;
    rewrite_id(&mut query);
    Ok(query)
}

pub use crate::auth::roles::id_forms;

/// A filter on `_id` matching either stored form.
pub fn id_filter(id: &str) -> Document {
    let forms = id_forms(id);
    if forms.len() == 1 {
        doc! {"_id": id}
    } else {
        doc! {"_id": {"$in": forms}}
    }
}

fn other_form(value: &Bson) -> Option<Bson> {
    match value {
        Bson::String(s) if s.len() == 24 => ObjectId::parse_str(s).ok().map(Bson::ObjectId),
        Bson::ObjectId(oid) => Some(Bson::String(oid.to_hex())),
        _ => None,
    }
}

fn with_other_forms(values: &[Bson]) -> Vec<Bson> {
    let mut out = Vec::with_capacity(values.len() * 2);
    for value in values {
        out.push(value.clone());
        if let Some(other) = other_form(value) {
            out.push(other);
        }
    }
    out
}

/// Rewrites a top-level `_id` condition in place so 24-hex ids match both forms:
/// `_id: "hex"` → `_id: {$in: ["hex", ObjectId]}`; `$eq`/`$ne`/`$in`/`$nin` likewise.
/// The rest of the query (a user's own `$or` included) is untouched.
pub fn rewrite_id(query: &mut Document) {
    let Some(value) = query.get_mut("_id") else {
        return;
    };
    match value {
        Bson::String(_) | Bson::ObjectId(_) => {
            if let Some(other) = other_form(value) {
                *value = Bson::Document(doc! {"$in": [value.clone(), other]});
            }
        }
        Bson::Document(condition) => {
            let mut rewritten = Document::new();
            for (op, operand) in condition.iter() {
                match (op.as_str(), operand) {
                    ("$eq", single) if other_form(single).is_some() => {
                        rewritten.insert("$in", with_other_forms(std::slice::from_ref(single)));
                    }
                    ("$ne", single) if other_form(single).is_some() => {
                        rewritten.insert("$nin", with_other_forms(std::slice::from_ref(single)));
                    }
                    ("$in" | "$nin", Bson::Array(list)) => {
                        rewritten.insert(op.clone(), with_other_forms(list));
                    }
                    _ => {
                        rewritten.insert(op.clone(), operand.clone());
                    }
                }
            }
            // `$eq` and `$in` (or `$ne` and `$nin`) together: keep the original then.
            if rewritten.len() == condition.len() {
                *condition = rewritten;
            }
        }
        _ => {}
    }
}

/// `orderby`: JSON sort spec when it looks like one (a field name when it does not
/// parse), a bare field name otherwise, nothing when empty.
pub fn parse_sort(orderby: &str) -> Result<Option<Document>, OpenCoreError> {
    let orderby = orderby.trim();
    if orderby.is_empty() {
        return Ok(None);
    }
    if orderby.contains('{') {
        if let Ok(sort) = json::parse_document("orderby", orderby) {
            return Ok((!sort.is_empty()).then_some(sort));
        }
    }
    Ok(Some(doc! {orderby: 1}))
}

/// `projection`: optional JSON object.
pub fn parse_projection(text: &str) -> Result<Option<Document>, OpenCoreError> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    let projection = json::parse_document("projection", text)?;
    guard::refuse_javascript(&projection)?;
    Ok((!projection.is_empty()).then_some(projection))
}

/// ANDs filters together, leaving out empty ones (`{}` when nothing is left).
pub fn and(parts: impl IntoIterator<Item = Document>) -> Document {
    let mut parts: Vec<Document> = parts.into_iter().filter(|p| !p.is_empty()).collect();
    match parts.len() {
        0 => Document::new(),
        1 => parts.pop().unwrap_or_default(),
        _ => doc! {"$and": parts},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "5a1702fa245d9013697656fb";

    #[test]
    fn id_rewrite_keeps_a_user_or() {
        let q = parse_query(&format!(
            r#"{{"_id": "{HEX}", "$or": [{{"a": 1}}, {{"b": 2}}]}}"#
        ))
        .unwrap();
        let oid = ObjectId::parse_str(HEX).unwrap();
        assert_eq!(
            q,
            doc! {"_id": {"$in": [HEX, oid]}, "$or": [{"a": 1}, {"b": 2}]}
        );
        let q = parse_query(r#"{"_id": "plain"}"#).unwrap();
        assert_eq!(q, doc! {"_id": "plain"});
        let q = parse_query(&format!(r#"{{"_id": {{"$in": ["{HEX}", "x"]}}}}"#)).unwrap();
        assert_eq!(q, doc! {"_id": {"$in": [HEX, oid, "x"]}});
        let q = parse_query(&format!(r#"{{"_id": {{"$ne": "{HEX}"}}}}"#)).unwrap();
        assert_eq!(q, doc! {"_id": {"$nin": [HEX, oid]}});
    }

    #[test]
    fn mandatory_and_javascript() {
        assert_eq!(parse_query(""), Err(OpenCoreError::QueryMandatory));
        assert!(parse_query(r#"{"$where": "sleep(1)"}"#).is_err());
    }

    #[test]
    fn sorts() {
        assert_eq!(parse_sort("").unwrap(), None);
        assert_eq!(parse_sort("name").unwrap(), Some(doc! {"name": 1}));
        assert_eq!(
            parse_sort(r#"{"b": -1, "a": 1}"#).unwrap(),
            Some(doc! {"b": -1, "a": 1})
        );
        assert_eq!(and([doc! {}, doc! {"a": 1}]), doc! {"a": 1});
        assert_eq!(
            and([doc! {"b": 1}, doc! {"a": 1}]),
            doc! {"$and": [{"b": 1}, {"a": 1}]}
        );
    }
}
