//! `--workitem-timeout`: work items left `processing` longer than the timeout (their
//! worker died or forgot them) go back to `new` with one more retry, or to `failed`
//! once the queue's `maxretries` is used up (the same rule as `updateworkitem` with
//! state `retry`). Every return is logged.
//!
//! Each item is claimed with a conditional update on the `lastrun` it was found with,
//! so a worker's own update that lands first wins and is never overwritten. On several
//! nodes each runs the sweep; the condition makes that safe.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bson::{doc, Bson, DateTime, Document};

use crate::documents::metadata::id_text;
use crate::services::Services;
use crate::store::{FindOptions, IndexSpec, SharedStore, StoreResult, UpdateOptions};

use crate::workitems::{ITEMS_COLLECTION as WORKITEMS, QUEUES_COLLECTION as QUEUES};
/// Items returned per sweep; the next sweep takes the rest.
const BATCH: u64 = 500;
/// The reference's default when a queue has none.
const DEFAULT_MAX_RETRIES: i64 = crate::workitems::DEFAULT_MAX_RETRIES as i64;

/// Starts the sweep when `--workitem-timeout` is set.
pub fn start(services: Arc<Services>) -> Option<tokio::task::JoinHandle<()>> {
    let timeout = services.config.work.workitem_timeout?;
    let period = (timeout / 4).clamp(Duration::from_secs(1), Duration::from_secs(30));
    Some(tokio::spawn(async move {
        let store = services.store.clone();
        let index = IndexSpec {
            keys: doc! {"state": 1, "lastrun": 1},
            ..Default::default()
        };
        if let Err(err) = store.create_index(WORKITEMS, &index).await {
            tracing::warn!(%err, "could not create the work item timeout index");
        }
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(err) = sweep(&store, timeout).await {
                tracing::warn!(%err, "work item timeout sweep failed");
            }
        }
    }))
}

/// Returns the items stuck in `processing` for longer than `timeout`; how many.
pub async fn sweep(store: &SharedStore, timeout: Duration) -> StoreResult<usize> {
    let cutoff = DateTime::from_millis(
        DateTime::now()
            .timestamp_millis()
            .saturating_sub(timeout.as_millis() as i64),
    );
    let filter = doc! {"_type": "workitem", "state": "processing", "lastrun": {"$lt": cutoff}};
    let options = FindOptions {
        limit: BATCH,
        ..Default::default()
    };
    let stuck = store.find(WORKITEMS, &filter, &options).await?;
    let mut max_retries: HashMap<String, i64> = HashMap::new();
    let mut returned = 0;
    for item in stuck {
        let wiqid = item.get_str("wiqid").unwrap_or_default().to_string();
        let limit = match max_retries.get(&wiqid) {
            Some(limit) => *limit,
            None => {
                let limit = queue_max_retries(store, &wiqid).await?;
                max_retries.insert(wiqid.clone(), limit);
                limit
            }
        };
        if expire(store, &item, limit).await? {
            returned += 1;
        }
    }
    Ok(returned)
}

async fn queue_max_retries(store: &SharedStore, wiqid: &str) -> StoreResult<i64> {
    let queue = store
        .find_by_id(QUEUES, &Bson::String(wiqid.to_string()))
        .await?;
    Ok(queue
        .as_ref()
        .and_then(|q| number(q.get("maxretries")?))
        .filter(|n| *n >= 1)
        .unwrap_or(DEFAULT_MAX_RETRIES))
}

/// One stuck item back to `new` (or to `failed`), unless it changed meanwhile.
async fn expire(store: &SharedStore, item: &Document, max_retries: i64) -> StoreResult<bool> {
    let Some(id) = item.get("_id") else {
        return Ok(false);
    };
    let retries = item.get("retries").and_then(number).unwrap_or(0);
    let lastrun = item.get("lastrun").cloned().unwrap_or(Bson::Null);
    let now = DateTime::now();
    let (state, update) = if retries + 1 < max_retries {
        (
            "new",
            doc! {
                "$set": {"state": "new", "retries": (retries + 1) as i32, "nextrun": now, "_modified": now},
                "$unset": {"userid": "", "username": ""},
            },
        )
    } else {
        (
            "failed",
            doc! {
                "$set": {
                    "state": "failed",
                    "errormessage": "Work item timed out in processing",
                    "errortype": "application",
                    "errorsource": "opencore",
                    "_modified": now,
                },
                "$unset": {"nextrun": ""},
            },
        )
    };
    let filter = doc! {"_id": id.clone(), "state": "processing", "lastrun": lastrun};
    let outcome = store
        .update(WORKITEMS, &filter, &update, UpdateOptions::default())
        .await?;
    if outcome.modified == 0 {
        return Ok(false);
    }
    tracing::info!(
        workitem = %id_text(id),
        wiqid = item.get_str("wiqid").unwrap_or_default(),
        worker = item.get_str("username").unwrap_or_default(),
        retries = retries + 1,
        state,
        "work item stayed processing past --workitem-timeout"
    );
    Ok(true)
}

fn number(value: &Bson) -> Option<i64> {
    match value {
        Bson::Int32(n) => Some(i64::from(*n)),
        Bson::Int64(n) => Some(*n),
        Bson::Double(n) => Some(*n as i64),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::EmbeddedStore;

    #[tokio::test]
    async fn stuck_items_return_to_new_until_their_retries_run_out() {
        let dir = tempfile::tempdir().unwrap();
        let store: SharedStore = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        store
            .insert_many(
                QUEUES,
                vec![doc! {"_id": "q", "_type": "workitemqueue", "name": "q", "maxretries": 2}],
            )
            .await
            .unwrap();
        let long_ago = DateTime::from_millis(DateTime::now().timestamp_millis() - 60_000);
        let item = |id: &str, retries: i32, lastrun: DateTime| {
            doc! {"_id": id, "_type": "workitem", "wiqid": "q", "state": "processing",
            "retries": retries, "lastrun": lastrun, "userid": "u", "username": "worker"}
        };
        store
            .insert_many(
                WORKITEMS,
                vec![
                    item("first", 0, long_ago),
                    item("last", 1, long_ago),
                    item("fresh", 0, DateTime::now()),
                ],
            )
            .await
            .unwrap();
        let returned = sweep(&store, Duration::from_secs(30)).await.unwrap();
        assert_eq!(returned, 2);
        let get = |id: &'static str| {
            let store = store.clone();
            async move {
                store
                    .find_by_id(WORKITEMS, &Bson::String(id.into()))
                    .await
                    .unwrap()
                    .unwrap()
            }
        };
        let first = get("first").await;
        assert_eq!(first.get_str("state").unwrap(), "new");
        assert_eq!(first.get_i32("retries").unwrap(), 1);
        assert!(first.get("username").is_none());
        assert!(first.get_datetime("nextrun").is_ok());
        let last = get("last").await;
        assert_eq!(last.get_str("state").unwrap(), "failed");
        assert!(last.get("nextrun").is_none());
        assert_eq!(get("fresh").await.get_str("state").unwrap(), "processing");
        // Nothing left to return.
        assert_eq!(sweep(&store, Duration::from_secs(30)).await.unwrap(), 0);
    }
}
