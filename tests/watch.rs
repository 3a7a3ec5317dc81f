//! `watch` / `unwatch` over the raw protocol: events for every kind of change, the
//! watcher's read right checked per event (grants and revocations at once), paths,
//! limits, and cleanup when connections close.

mod common;
mod data_support;

use std::time::Duration;

use common::*;
use data_support::*;
use opencore::proto::*;
use serde_json::{json, Value};

async fn watch(c: &mut RawClient, collection: &str, paths: &[&str]) -> Result<String, String> {
    let r: WatchResponse = call(
        c,
        "watch",
        &WatchRequest {
            collectionname: collection.into(),
            paths: paths.iter().map(|p| p.to_string()).collect(),
        },
    )
    .await?;
    Ok(r.id)
}

async fn unwatch(c: &mut RawClient, id: &str) {
    let _: UnWatchResponse = call(c, "unwatch", &UnWatchRequest { id: id.into() })
        .await
        .expect("unwatch");
}

/// The next `watchevent` (other pushes skipped); `None` when none comes within `wait`.
async fn next_event(c: &mut RawClient, wait: Duration) -> Option<(WatchEvent, Value)> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let envelope = tokio::time::timeout(left, c.recv()).await.ok()??;
        if envelope.command == "watchevent" {
            assert!(envelope.rid.is_empty(), "events carry no rid");
            let event: WatchEvent = decode(&envelope);
            let document = parse(&event.document);
            return Some((event, document));
        }
    }
}

async fn expect_event(c: &mut RawClient) -> (WatchEvent, Value) {
    next_event(c, WAIT).await.expect("a watchevent")
}

async fn expect_silence(c: &mut RawClient) {
    if let Some((event, document)) = next_event(c, Duration::from_millis(400)).await {
        panic!("unexpected event {} {document}", event.operation);
    }
}

/// Waits until the server's registry and relays agree that nothing is watched.
async fn wait_no_watches(server: &TestServer) {
    let services = &server.server.services;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let watches = services
            .connections
            .count_children(opencore::connections::ChildKind::Watch);
        let relays = services.feeds.snapshot();
        if watches == 0 && relays.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still watched: {watches} watches, relays {relays:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn insert_update_replace_delete_and_unwatch() {
    let server = start_server(|_| {});
    let mut watcher = admin(&server).await;
    let mut writer = admin(&server).await;
    let id = watch(&mut watcher, "things", &[]).await.expect("watch");
    assert!(id.len() >= 16, "watch ids are long random strings: {id}");

    let item = insert_one(&mut writer, "things", json!({"name": "a", "n": 1}))
        .await
        .unwrap();
    let doc_id = id_of(&item);
    let (event, document) = expect_event(&mut watcher).await;
    assert_eq!(
        (event.id.as_str(), event.operation.as_str()),
        (id.as_str(), "insert")
    );
    assert_eq!(document["_id"], json!(doc_id));
    assert_eq!(document["n"], json!(1));

    update_document(
        &mut writer,
        "things",
        json!({"_id": doc_id}),
        json!({"$set": {"n": 2}}),
    )
    .await
    .unwrap();
    let (event, document) = expect_event(&mut watcher).await;
    assert_eq!(event.operation, "update");
    assert_eq!(document["n"], json!(2));

    let mut replaced = item.clone();
    replaced["n"] = json!(3);
    update_one(&mut writer, "things", replaced).await.unwrap();
    let (event, document) = expect_event(&mut watcher).await;
    assert_eq!(event.operation, "replace");
    assert_eq!(document["n"], json!(3));

    delete_one(&mut writer, "things", &doc_id).await.unwrap();
    let (event, document) = expect_event(&mut watcher).await;
    assert_eq!(event.operation, "delete");
    assert_eq!(
        document["_id"],
        json!(doc_id),
        "deletes carry the last version"
    );
    assert_eq!(document["n"], json!(3));

    unwatch(&mut watcher, &id).await;
    insert_one(&mut writer, "things", json!({"name": "b"}))
        .await
        .unwrap();
    expect_silence(&mut watcher).await;
    // Unknown ids are not an error.
    unwatch(&mut watcher, "no-such-watch").await;
    wait_no_watches(&server).await;
}

#[tokio::test]
async fn read_rights_are_checked_per_event_and_grants_apply_at_once() {
    let server = start_server(|_| {});
    let mut admin = admin(&server).await;
    let alice_id = create_user(&mut admin, "alice", "alice-password").await;
    let bob_id = create_user(&mut admin, "bob", "bob-password").await;
    let mut alice = signed_in(&server, "alice", "alice-password").await;
    let mut bob = signed_in(&server, "bob", "bob-password").await;
    watch(&mut bob, "shared", &[]).await.expect("bob watches");

    let secret = insert_one(&mut alice, "shared", json!({"name": "alice's"}))
        .await
        .unwrap();
    expect_silence(&mut bob).await;

    // Alice grants bob read: the next change reaches him.
    let mut granted = secret.clone();
    granted["_acl"] = json!([
        {"_id": alice_id, "name": "alice", "rights": 65535},
        {"_id": bob_id, "name": "bob", "rights": 2},
    ]);
    update_one(&mut alice, "shared", granted).await.unwrap();
    let (event, document) = expect_event(&mut bob).await;
    assert_eq!(event.operation, "replace");
    assert_eq!(document["name"], json!("alice's"));

    // A role grant applies at once too: bob joins a role that reads carol's documents.
    let role = create_role(&mut admin, "readers").await;
    let mut readable = insert_one(&mut admin, "shared", json!({"name": "for readers"}))
        .await
        .unwrap();
    expect_silence(&mut bob).await;
    set_members(&mut admin, &role, &[(&bob_id, "bob")]).await;
    readable["_acl"] = json!([{"_id": role, "name": "readers", "rights": 2}]);
    update_one(&mut admin, "shared", readable).await.unwrap();
    let (_, document) = expect_event(&mut bob).await;
    assert_eq!(document["name"], json!("for readers"));

    // Revoked: removed from the role, the next change is not delivered.
    set_members(&mut admin, &role, &[]).await;
    insert_one(
        &mut admin,
        "shared",
        json!({"name": "x", "_acl": [{"_id": role, "rights": 2}]}),
    )
    .await
    .unwrap();
    expect_silence(&mut bob).await;
}

#[tokio::test]
async fn deletes_are_checked_against_the_deleted_version() {
    let server = start_server(|_| {});
    let mut admin = admin(&server).await;
    create_user(&mut admin, "bob", "bob-password").await;
    let mut bob = signed_in(&server, "bob", "bob-password").await;
    watch(&mut bob, "things", &[]).await.unwrap();
    let hidden = insert_one(&mut admin, "things", json!({"name": "hidden"}))
        .await
        .unwrap();
    delete_one(&mut admin, "things", &id_of(&hidden))
        .await
        .unwrap();
    expect_silence(&mut bob).await;
}

#[tokio::test]
async fn paths_filter_events_and_bad_paths_are_refused() {
    let server = start_server(|_| {});
    let mut admin = admin(&server).await;
    let mut writer = data_support::admin(&server).await;
    // The official clients' form, and `[""]` meaning everything.
    watch(&mut admin, "things", &["$.[?(@._type == 'test')]"])
        .await
        .expect("the clients' path form is accepted");
    let mut everything = data_support::admin(&server).await;
    watch(&mut everything, "things", &[""]).await.unwrap();

    insert_one(&mut writer, "things", json!({"_type": "other"}))
        .await
        .unwrap();
    insert_one(&mut writer, "things", json!({"_type": "test", "n": 7}))
        .await
        .unwrap();
    let (_, document) = expect_event(&mut admin).await;
    assert_eq!(document["_type"], json!("test"));
    expect_silence(&mut admin).await;
    let (_, first) = expect_event(&mut everything).await;
    let (_, second) = expect_event(&mut everything).await;
    assert_eq!(
        (first["_type"].clone(), second["_type"].clone()),
        (json!("other"), json!("test"))
    );

    // Member paths too.
    let mut by_member = data_support::admin(&server).await;
    watch(&mut by_member, "things", &["$.a.n"]).await.unwrap();
    insert_one(&mut writer, "things", json!({"x": 1}))
        .await
        .unwrap();
    insert_one(&mut writer, "things", json!({"n": 8}))
        .await
        .unwrap();
    let (_, document) = expect_event(&mut by_member).await;
    assert_eq!(document["n"], json!(8));

    let err = watch(&mut admin, "things", &["$[?(@.a =="])
        .await
        .unwrap_err();
    assert!(err.starts_with("Invalid watch path $[?(@.a =="), "{err}");
    let err = watch(&mut admin, "", &[]).await.unwrap_err();
    assert_eq!(err, "collectionname is mandatory");
}

#[tokio::test]
async fn users_passwords_never_travel_in_events() {
    let server = start_server(|_| {});
    let mut admin = admin(&server).await;
    // A separate writer: a connection's own request would skip the event while it
    // waits for its reply.
    let mut writer = data_support::admin(&server).await;
    watch(&mut admin, "users", &[]).await.unwrap();
    create_user(&mut writer, "dave", "dave-password").await;
    let (event, document) = expect_event(&mut admin).await;
    assert_eq!(event.operation, "insert");
    assert_eq!(document["username"], json!("dave"));
    assert!(document.get("passwordhash").is_none(), "{document}");
}

#[tokio::test]
async fn drop_is_delivered() {
    let server = start_server(|_| {});
    let mut admin = admin(&server).await;
    let mut writer = data_support::admin(&server).await;
    insert_one(&mut writer, "doomed", json!({"a": 1}))
        .await
        .unwrap();
    watch(&mut admin, "doomed", &[]).await.unwrap();
    let _: DropCollectionResponse = call(
        &mut writer,
        "dropcollection",
        &DropCollectionRequest {
            collectionname: "doomed".into(),
        },
    )
    .await
    .unwrap();
    let (event, _) = expect_event(&mut admin).await;
    assert_eq!(event.operation, "drop");
}

#[tokio::test]
async fn watches_per_connection_are_capped() {
    let server = start_server(|c| c.limits.max_watches_per_connection = 2);
    let mut admin = admin(&server).await;
    let first = watch(&mut admin, "a", &[]).await.unwrap();
    watch(&mut admin, "b", &[]).await.unwrap();
    let err = watch(&mut admin, "c", &[]).await.unwrap_err();
    assert_eq!(err, "Too many watches on this connection (limit 2)");
    unwatch(&mut admin, &first).await;
    watch(&mut admin, "c", &[])
        .await
        .expect("room again after unwatch");
}

#[tokio::test]
async fn distinct_watched_collections_are_capped_per_server() {
    let server = start_server(|c| c.limits.max_watched_collections = 2);
    let mut first = admin(&server).await;
    let mut second = data_support::admin(&server).await;
    watch(&mut first, "a", &[]).await.unwrap();
    watch(&mut second, "b", &[]).await.unwrap();
    let err = watch(&mut second, "c", &[]).await.unwrap_err();
    assert_eq!(
        err,
        "Too many collections are watched on this server (limit 2)"
    );
    watch(&mut second, "a", &[])
        .await
        .expect("an already watched collection is fine");
}

#[tokio::test]
async fn a_connection_cannot_unwatch_anothers_watch() {
    let server = start_server(|_| {});
    let mut owner = admin(&server).await;
    let mut other = data_support::admin(&server).await;
    let id = watch(&mut owner, "things", &[]).await.unwrap();
    unwatch(&mut other, &id).await;
    insert_one(&mut other, "things", json!({"a": 1}))
        .await
        .unwrap();
    expect_event(&mut owner).await;
}

#[tokio::test]
async fn closing_connections_remove_their_watches_and_relays() {
    let server = start_server(|_| {});
    let mut clients = Vec::new();
    for index in 0..5 {
        let mut client = admin(&server).await;
        watch(&mut client, &format!("c{}", index % 2), &[])
            .await
            .unwrap();
        watch(&mut client, "shared", &[]).await.unwrap();
        clients.push(client);
    }
    let services = &server.server.services;
    assert_eq!(
        services
            .connections
            .count_children(opencore::connections::ChildKind::Watch),
        10
    );
    // Five watchers of one collection share one relay.
    let relays = services.feeds.snapshot();
    assert_eq!(relays.len(), 3, "{relays:?}");
    assert!(relays
        .iter()
        .any(|r| r.collection == "shared" && r.watchers == 5));
    // The admin view shows them.
    let jwt = clients[0].signin(ADMIN, ADMIN_PASSWORD).await.jwt;
    let (status, body) = http_get(server.http(), "/admin/stats", Some(&jwt)).await;
    assert_eq!(status, 200, "{body}");
    let stats: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stats["watches"]["open"], json!(10), "{body}");
    assert_eq!(
        stats["watches"]["collections"].as_array().map(Vec::len),
        Some(3),
        "{body}"
    );
    drop(clients);
    wait_no_watches(&server).await;
}

#[tokio::test]
async fn disabling_a_user_closes_their_connections_at_once() {
    let server = start_server(|c| c.limits.ping_interval = Duration::from_secs(3600));
    let mut admin = admin(&server).await;
    let id = create_user(&mut admin, "erin", "erin-password").await;
    let mut erin = signed_in(&server, "erin", "erin-password").await;
    watch(&mut erin, "things", &[]).await.unwrap();
    update_document(
        &mut admin,
        "users",
        json!({"_id": id}),
        json!({"$set": {"disabled": true}}),
    )
    .await
    .unwrap();
    assert!(erin.closed().await, "the disabled user's connection closes");
    wait_no_watches(&server).await;
}

#[tokio::test]
async fn a_watcher_that_does_not_read_is_disconnected() {
    let server = start_server(|c| {
        c.limits.max_outbound_bytes = 256 * 1024;
        c.limits.slow_client_grace = Duration::from_millis(500);
    });
    let mut slow = admin(&server).await;
    watch(&mut slow, "big", &[]).await.unwrap();
    let mut writer = data_support::admin(&server).await;
    let blob = "x".repeat(100 * 1024);
    let before = server
        .server
        .services
        .counters
        .slow_client_disconnects
        .load(std::sync::atomic::Ordering::Relaxed);
    // Far more than the socket buffers and the outbound limit together.
    for _ in 0..300 {
        insert_one(&mut writer, "big", json!({"blob": blob}))
            .await
            .unwrap();
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let after = server
            .server
            .services
            .counters
            .slow_client_disconnects
            .load(std::sync::atomic::Ordering::Relaxed);
        if after > before {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "slow watcher not disconnected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_no_watches(&server).await;
}

#[tokio::test]
async fn watch_is_refused_before_signin_and_over_unary_grpc() {
    let server = start_server(|_| {});
    let mut anonymous = RawClient::connect(server.tcp()).await;
    let err = watch(&mut anonymous, "things", &[]).await.unwrap_err();
    assert_eq!(err, "Not signed in, and missing jwt");

    let (mut grpc, signed) = grpc_admin(&server).await;
    let mut request = tonic::Request::new(WatchRequest {
        collectionname: "things".into(),
        paths: vec![],
    });
    request
        .metadata_mut()
        .insert("jwt", signed.jwt.parse().expect("ascii"));
    let status = grpc.watch(request).await.expect_err("unary watch refused");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert!(
        status.message().contains("needs a streaming connection"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn heartbeat_updates_of_users_are_not_delivered() {
    let server = start_server(|_| {});
    let mut writer = admin(&server).await;
    let mut watcher = data_support::admin(&server).await;
    let id = create_user(&mut writer, "gina", "gina-password").await;
    watch(&mut watcher, "users", &[]).await.unwrap();
    update_document(
        &mut writer,
        "users",
        json!({"_id": id}),
        json!({"$set": {"lastseen": {"$date": "2026-01-01T00:00:00Z"}, "_heartbeat": 1}}),
    )
    .await
    .unwrap();
    expect_silence(&mut watcher).await;
    update_document(
        &mut writer,
        "users",
        json!({"_id": id}),
        json!({"$set": {"name": "Gina"}}),
    )
    .await
    .unwrap();
    let (event, document) = expect_event(&mut watcher).await;
    assert_eq!(
        (event.operation.as_str(), &document["name"]),
        ("update", &json!("Gina"))
    );
}

#[tokio::test]
async fn a_hostile_path_is_an_error_and_the_server_goes_on() {
    let server = start_server(|_| {});
    let mut client = admin(&server).await;
    // Nesting that would overflow the parser's stack, and paths whose work per event
    // grows with the document's size to a power.
    let deep = format!("$[?{}@.a{}]", "(".repeat(2000), ")".repeat(2000));
    for path in [deep.as_str(), "$..*..*..*..*"] {
        let err = watch(&mut client, "things", &[path]).await.unwrap_err();
        assert!(err.starts_with("Invalid watch path"), "{err}");
    }
    watch(&mut client, "things", &[])
        .await
        .expect("still serving");
}
