//! Operators no request may carry, whatever the backend: server-side JavaScript
//! (`$where`, `$function`, `$accumulator`). The embedded engine refuses them itself;
//! this check stops them before they could reach a MongoDB backend, at any depth of a
//! filter, update or pipeline.

use bson::{Bson, Document};

use crate::error::OpenCoreError;

const JAVASCRIPT_OPERATORS: &[&str] = &["$where", "$function", "$accumulator"];

pub fn refuse_javascript(document: &Document) -> Result<(), OpenCoreError> {
    for (key, value) in document {
        if JAVASCRIPT_OPERATORS.contains(&key.as_str()) {
            return Err(OpenCoreError::BadRequest(format!("{key} is not allowed")));
        }
        refuse_in_value(value)?;
    }
    Ok(())
}

pub fn refuse_javascript_in(documents: &[Document]) -> Result<(), OpenCoreError> {
    documents.iter().try_for_each(refuse_javascript)
}

fn refuse_in_value(value: &Bson) -> Result<(), OpenCoreError> {
    match value {
        Bson::Document(document) => refuse_javascript(document),
        Bson::Array(items) => items.iter().try_for_each(refuse_in_value),
        Bson::JavaScriptCode(_) | Bson::JavaScriptCodeWithScope(_) => Err(
            OpenCoreError::BadRequest("JavaScript values are not allowed".into()),
        ),
        _ => Ok(()),
    }
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
}
