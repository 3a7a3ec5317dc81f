//! Two server processes' worth of nodes on one MongoDB-protocol server (`MONGODB_URL`,
//! e.g. SecantusDB): a document inserted through node A reaches a watcher connected to
//! node B, and a user disabled through node A loses its connections on node B. Without
//! `MONGODB_URL` the test prints `SKIPPED: MONGODB_URL not set` to stderr and returns.

mod common;
mod data_support;

use std::io::Write;
use std::time::Duration;

use common::*;
use data_support::*;
use opencore::proto::*;
use serde_json::json;

fn mongo_url() -> Option<String> {
    std::env::var("MONGODB_URL")
        .ok()
        .filter(|url| !url.is_empty())
}

fn node(url: &str, database: &str) -> TestServer {
    let (url, database) = (url.to_string(), database.to_string());
    TestServer::start_with(move |config| {
        config.mongodb_url = Some(url);
        config.mongodb_db = database;
        // Sessions are checked at keepalive too; make sure the revocation path is what
        // closes the connection in this test.
        config.limits.ping_interval = Duration::from_secs(3600);
    })
}

async fn next_event(c: &mut RawClient) -> Option<WatchEvent> {
    loop {
        let envelope = c.recv().await?;
        if envelope.command == "watchevent" {
            return Some(decode(&envelope));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_and_revocations_cross_nodes() {
    let Some(url) = mongo_url() else {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: MONGODB_URL not set (events_and_revocations_cross_nodes)"
        );
        return;
    };
    let database = format!("opencore_watch_{:016x}", rand::random::<u64>());
    let a = node(&url, &database);
    let b = node(&url, &database);

    let mut watcher = admin(&b).await;
    let r: WatchResponse = call(
        &mut watcher,
        "watch",
        &WatchRequest {
            collectionname: "crossnode".into(),
            paths: vec![],
        },
    )
    .await
    .expect("watch on node B");
    // The stream on node B opens asynchronously; insert until the first event arrives.
    let mut writer = admin(&a).await;
    let mut delivered = None;
    for attempt in 0..20 {
        insert_one(&mut writer, "crossnode", json!({"attempt": attempt}))
            .await
            .expect("insert on node A");
        if let Ok(Some(event)) =
            tokio::time::timeout(Duration::from_millis(500), next_event(&mut watcher)).await
        {
            delivered = Some(event);
            break;
        }
    }
    let event = delivered.expect("an insert through node A reaches a watcher on node B");
    assert_eq!(
        (event.id.as_str(), event.operation.as_str()),
        (r.id.as_str(), "insert")
    );

    // A user disabled through node A is disconnected from node B at once.
    let id = create_user(&mut writer, "frank", "frank-password").await;
    let mut frank = signed_in(&b, "frank", "frank-password").await;
    update_document(
        &mut writer,
        "users",
        json!({"_id": id}),
        json!({"$set": {"disabled": true}}),
    )
    .await
    .expect("disable frank");
    assert!(
        frank.closed().await,
        "node B closes the disabled user's connection"
    );
}
