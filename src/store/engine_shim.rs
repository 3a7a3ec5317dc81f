//! TEMPORARY shim (deleted when src/store/engine lands).
use bson::{Bson, Document};
use std::cmp::Ordering;

#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct EngineError(pub String);

pub struct Filter(Document);
impl Filter {
    pub fn parse(d: &Document) -> Result<Filter, EngineError> {
        Ok(Filter(d.clone()))
    }
    pub fn equality_on(&self, path: &str) -> Option<&Bson> {
        self.0.get(path).filter(|v| !matches!(v, Bson::Document(_)))
    }
    pub fn matches(&self, doc: &Document) -> bool {
        matches(&self.0, doc)
    }
}
fn matches(f: &Document, doc: &Document) -> bool {
    f.iter().all(|(k, v)| match k.as_str() {
        "$or" => v.as_array().map(|a| a.iter().any(|x| x.as_document().map(|d| matches(d, doc)).unwrap_or(false))).unwrap_or(false),
        "$and" => v.as_array().map(|a| a.iter().all(|x| x.as_document().map(|d| matches(d, doc)).unwrap_or(false))).unwrap_or(false),
        _ => doc.get(k) == Some(v),
    })
}
pub struct SortSpec;
impl SortSpec {
    pub fn parse(_d: &Document) -> Result<SortSpec, EngineError> {
        Ok(SortSpec)
    }
    pub fn sort(&self, docs: &mut [Document]) {
        docs.sort_by(|_, _| Ordering::Equal)
    }
}
