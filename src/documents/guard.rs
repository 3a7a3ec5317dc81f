//! Operators no request may carry, whatever the backend: server-side JavaScript
//! (`$where`, `$function`, `$accumulator`). The embedded engine refuses them itself;
//! this check stops them before they could reach a MongoDB backend, at any depth of a
//! filter, update or pipeline.

use bson::{Bson, Document};

use crate::error::OpenCoreError;

const JAVASCRIPT_OPERATORS: &[&str] = &["$where", "$function", "$accumulator"];

/// Walks the document with an explicit stack, so a document of any depth (even one
/// that did not come through the depth-limited JSON parser) cannot overflow a thread.
pub fn refuse_javascript(document: &Document) -> Result<(), OpenCoreError> {
    let mut pending: Vec<&Bson> = Vec::new();
    check_document(document, &mut pending)?;
    while let Some(value) = pending.pop() {
        match value {
            Bson::Document(inner) => check_document(inner, &mut pending)?,
            Bson::Array(items) => pending.extend(items),
            Bson::JavaScriptCode(_) | Bson::JavaScriptCodeWithScope(_) => {
                return Err(OpenCoreError::BadRequest(
                    "JavaScript values are not allowed".into(),
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

fn check_document<'a>(
    document: &'a Document,
    pending: &mut Vec<&'a Bson>,
) -> Result<(), OpenCoreError> {
    for (key, value) in document {
        if JAVASCRIPT_OPERATORS.contains(&key.as_str()) {
            return Err(OpenCoreError::BadRequest(format!("{key} is not allowed")));
        }
        pending.push(value);
    }
    Ok(())
}

pub fn refuse_javascript_in(documents: &[Document]) -> Result<(), OpenCoreError> {
    documents.iter().try_for_each(refuse_javascript)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[test]
    fn finds_javascript_at_any_depth() {
        assert!(refuse_javascript(&doc! {"a": 1, "$or": [{"b": 2}]}).is_ok());
        assert!(refuse_javascript(&doc! {"$where": "1"}).is_err());
        assert!(refuse_javascript(
            &doc! {"$and": [{"$expr": {"$function": {"body": "", "args": [], "lang": "js"}}}]}
        )
        .is_err());
        let pipeline = [doc! {"$group": {"_id": null, "x": {"$accumulator": {}}}}];
        assert!(refuse_javascript_in(&pipeline).is_err());
    }

    #[test]
    fn walks_any_depth_without_recursion() {
        let mut value = Bson::Document(doc! {"$where": "1"});
        for _ in 0..100_000 {
            value = Bson::Array(vec![value]);
        }
        let document = doc! {"a": value};
        assert!(refuse_javascript(&document).is_err());
        if let Some(deep) = document.into_iter().next().map(|(_, v)| v) {
            crate::store::engine::limits::drop_deep(deep);
        }
    }
}
