//! `createcollection` (admins): a collection, optionally timeseries
//! (`timeseries{timeField, metaField, granularity}`, `expireAfterSeconds` passed on).
//! For a normal collection `expireAfterSeconds > 0` becomes a TTL index on `_created`,
//! as in the reference. Reserved names are refused. Collation, capped, size and max are
//! accepted and ignored.

use bson::doc;

use super::{CommandContext, Outcome};
use crate::documents::collections;
use crate::error::OpenCoreError;
use crate::proto::{CreateCollectionRequest, CreateCollectionResponse};
use crate::store::{CollectionOptions, IndexSpec, TimeseriesOptions};

pub async fn run(ctx: CommandContext) -> Result<Outcome, OpenCoreError> {
    let request: CreateCollectionRequest = ctx.request(true)?;
    let name =
        collections::for_admin_command(&request.collectionname, ctx.user()?.is_admin(), |name| {
            format!("creating reserved collection {name}")
        })?;
    let non_empty = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_string());
    let timeseries = request.timeseries.as_ref().and_then(|ts| {
        non_empty(&ts.time_field).map(|time_field| TimeseriesOptions {
            time_field,
            meta_field: non_empty(&ts.meta_field),
            granularity: non_empty(&ts.granularity),
        })
    });
    let expire =
        (request.expire_after_seconds > 0).then_some(i64::from(request.expire_after_seconds));
    let is_timeseries = timeseries.is_some();
    let options = CollectionOptions {
        timeseries,
        expire_after_seconds: if is_timeseries { expire } else { None },
    };
    let store = ctx.services.store.as_ref();
    store.create_collection(&name, &options).await?;
    ctx.services.documents.catalog.forget(&name);
    if let (false, Some(seconds)) = (is_timeseries, expire) {
        let spec = IndexSpec {
            keys: doc! {"_created": 1},
            expire_after_seconds: Some(seconds),
            ..Default::default()
        };
        store.create_index(&name, &spec).await?;
    }
    Ok(ctx.reply(&CreateCollectionResponse {}))
}
