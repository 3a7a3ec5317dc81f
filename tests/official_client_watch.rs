//! The official Rust client (`openiap-client` 0.0.41) watching a collection over
//! WebSocket and gRPC: its `watch` (default paths `[""]`), the events its callback gets
//! for inserts, updates, replacements and deletes, and `unwatch`.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::*;
use openiap_client::{
    Client, DeleteOneRequest, EnvConfig, InsertOneRequest, UpdateDocumentRequest, UpdateOneRequest,
    WatchEvent, WatchRequest,
};
use serde_json::{json, Value};

fn next(events: &mpsc::Receiver<WatchEvent>) -> (String, Value) {
    let event = events
        .recv_timeout(WAIT)
        .expect("a watch event within the wait");
    let document = serde_json::from_str(&event.document).expect("the document is JSON");
    (event.operation, document)
}

async fn exercise(url: &str) {
    let client = Client::new_connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e:?}"));
    let collection = "clientwatch";
    let (sender, events) = mpsc::channel();
    let sender = std::sync::Mutex::new(sender);
    let watch_id = client
        .watch(
            WatchRequest {
                collectionname: collection.into(),
                paths: vec![],
            },
            EnvConfig::new(),
            Box::new(move |event| {
                if let Ok(sender) = sender.lock() {
                    let _ = sender.send(event);
                }
            }),
        )
        .await
        .expect("watch");
    assert!(!watch_id.is_empty());

    let inserted = client
        .insert_one(
            InsertOneRequest {
                collectionname: collection.into(),
                item: json!({"name": "w", "n": 1}).to_string(),
                ..Default::default()
            },
            EnvConfig::new(),
        )
        .await
        .expect("insert_one");
    let mut item: Value = serde_json::from_str(&inserted.result).unwrap();
    let id = item["_id"].as_str().unwrap().to_string();
    let (operation, document) = next(&events);
    assert_eq!(
        (operation.as_str(), &document["_id"]),
        ("insert", &json!(id))
    );

    client
        .update_document(
            UpdateDocumentRequest {
                collectionname: collection.into(),
                query: json!({"_id": id}).to_string(),
                document: json!({"$set": {"n": 2}}).to_string(),
                ..Default::default()
            },
            EnvConfig::new(),
        )
        .await
        .expect("update_document");
    let (operation, document) = next(&events);
    assert_eq!((operation.as_str(), &document["n"]), ("update", &json!(2)));

    item["n"] = json!(3);
    client
        .update_one(
            UpdateOneRequest {
                collectionname: collection.into(),
                item: item.to_string(),
                ..Default::default()
            },
            EnvConfig::new(),
        )
        .await
        .expect("update_one");
    let (operation, document) = next(&events);
    assert_eq!((operation.as_str(), &document["n"]), ("replace", &json!(3)));

    client
        .delete_one(
            DeleteOneRequest {
                collectionname: collection.into(),
                id: id.clone(),
                ..Default::default()
            },
            EnvConfig::new(),
        )
        .await
        .expect("delete_one");
    let (operation, document) = next(&events);
    assert_eq!(
        (operation.as_str(), &document["_id"]),
        ("delete", &json!(id))
    );

    client
        .unwatch(EnvConfig::new(), &watch_id)
        .await
        .expect("unwatch");
    client
        .insert_one(
            InsertOneRequest {
                collectionname: collection.into(),
                item: json!({"name": "after"}).to_string(),
                ..Default::default()
            },
            EnvConfig::new(),
        )
        .await
        .expect("insert_one");
    assert!(
        events.recv_timeout(Duration::from_millis(500)).is_err(),
        "no event after unwatch"
    );
    client.disconnect();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_client_watches_over_websocket() {
    let server = TestServer::start();
    exercise(&format!("ws://{ADMIN}:{ADMIN_PASSWORD}@{}", server.http())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_client_watches_over_grpc() {
    let server = TestServer::start();
    exercise(&format!(
        "grpc://{ADMIN}:{ADMIN_PASSWORD}@{}",
        server.grpc()
    ))
    .await;
}
