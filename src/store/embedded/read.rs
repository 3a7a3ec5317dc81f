//! Read paths of the embedded store: point lookups and filtered scans.

use bson::{Bson, Document};
use redb::{Database, ReadableDatabase, ReadableTable, TableError};

use super::{backend, definition, table};
use crate::store::engine::{Filter, Projection, SortSpec};
use crate::store::keys::encode_id;
use crate::store::{FindOptions, StoreResult};

pub(crate) fn decode(bytes: &[u8]) -> StoreResult<Document> {
    Document::from_reader(&mut &bytes[..]).map_err(backend)
}

pub fn get(db: &Database, collection: &str, id: &Bson) -> StoreResult<Option<Document>> {
    let txn = db.begin_read().map_err(backend)?;
    let name = table(collection);
    let table = match txn.open_table(definition(&name)) {
        Ok(table) => table,
        Err(TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(err) => return Err(backend(err)),
    };
    let key = encode_id(id);
    match table.get(key.as_slice()).map_err(backend)? {
        Some(value) => decode(value.value()).map(Some),
        None => Ok(None),
    }
}

/// Calls `visit` with every document matching `filter`, in `_id` order, until it returns false.
pub(crate) fn scan(
    db: &Database,
    collection: &str,
    filter: &Filter,
    mut visit: impl FnMut(Document) -> bool,
) -> StoreResult<()> {
    let txn = db.begin_read().map_err(backend)?;
    let name = table(collection);
    let table = match txn.open_table(definition(&name)) {
        Ok(table) => table,
        Err(TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(err) => return Err(backend(err)),
    };
    // An `_id` equality is a point lookup, not a scan.
    if let Some(id) = filter.equality_on("_id") {
        if let Some(value) = table.get(encode_id(id).as_slice()).map_err(backend)? {
            let doc = decode(value.value())?;
            if filter.matches(&doc) {
                visit(doc);
            }
        }
        return Ok(());
    }
    for entry in table.iter().map_err(backend)? {
        let (_, value) = entry.map_err(backend)?;
        let doc = decode(value.value())?;
        if filter.matches(&doc) && !visit(doc) {
            break;
        }
    }
    Ok(())
}

pub fn find(db: &Database, collection: &str, filter: &Document, options: &FindOptions) -> StoreResult<Vec<Document>> {
    let filter = Filter::parse(filter)?;
    let projection = options.projection.as_ref().filter(|p| !p.is_empty()).map(Projection::parse).transpose()?;
    let sort = options.sort.as_ref().filter(|s| !s.is_empty()).map(SortSpec::parse).transpose()?;
    let mut results = Vec::new();
    match &sort {
        None => {
            // Without a sort, stop scanning as soon as skip + limit documents are found.
            let wanted = if options.limit == 0 { u64::MAX } else { options.skip.saturating_add(options.limit) };
            scan(db, collection, &filter, |doc| {
                results.push(doc);
                (results.len() as u64) < wanted
            })?;
            let skip = (options.skip as usize).min(results.len());
            results.drain(..skip);
        }
        Some(sort) => {
            scan(db, collection, &filter, |doc| {
                results.push(doc);
                true
            })?;
            sort.sort(&mut results);
            let skip = (options.skip as usize).min(results.len());
            results.drain(..skip);
            if options.limit > 0 {
                results.truncate(options.limit as usize);
            }
        }
    }
    if let Some(projection) = projection {
        results = results.iter().map(|doc| projection.apply(doc, Some(&filter))).collect::<Result<_, _>>()?;
    }
    Ok(results)
}

pub fn count(db: &Database, collection: &str, filter: &Document) -> StoreResult<u64> {
    let filter = Filter::parse(filter)?;
    let mut n = 0u64;
    scan(db, collection, &filter, |_| {
        n += 1;
        true
    })?;
    Ok(n)
}
