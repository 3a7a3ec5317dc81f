//! Work item queues and work items through the official Rust client (`openiap-client`
//! 0.0.41) over WebSocket, and the gRPC unary RPCs: queue add/update/purge/delete, push,
//! pop (atomic, priority then FIFO), update (successful, retry until failed, business
//! errors), delete, files (plain, zlib, gzip; inlined on pop; a zip bomb refused),
//! chaining to a target queue with the files copied, ACL for another user, and 8
//! connections popping one queue of 10,000 items.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::Arc;

use common::*;
use openiap_client::{
    AddWorkItemQueueRequest, Client, DeleteWorkItemQueueRequest, DeleteWorkitemRequest, EnvConfig,
    InsertOneRequest, PopWorkitemRequest, PushWorkitemRequest, PushWorkitemsRequest,
    UpdateWorkItemQueueRequest, UpdateWorkitemRequest, WorkItemQueue, Workitem, WorkitemFile,
};
use serde_json::{json, Value};

const USER_B: &str = "wiuserb";
const USER_B_PASSWORD: &str = "wi-user-b-password";

fn ws_url(server: &TestServer, user: &str, password: &str) -> String {
    format!("ws://{user}:{password}@{}", server.http())
}

async fn connect(server: &TestServer, user: &str, password: &str) -> Client {
    let url = ws_url(server, user, password);
    Client::new_connect(&url)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e:?}"))
}

async fn admin(server: &TestServer) -> Client {
    connect(server, ADMIN, ADMIN_PASSWORD).await
}

async fn create_user_b(admin: &Client) {
    admin
        .insert_one(
            InsertOneRequest {
                collectionname: "users".into(),
                item: json!({"_type": "user", "name": USER_B, "username": USER_B, "newpassword": USER_B_PASSWORD})
                    .to_string(),
                ..Default::default()
            },
            EnvConfig::new(),
        )
        .await
        .expect("create user b");
}

async fn add_queue(client: &Client, queue: WorkItemQueue) -> WorkItemQueue {
    client
        .add_workitem_queue(
            AddWorkItemQueueRequest {
                workitemqueue: Some(queue),
                skiprole: false,
            },
            EnvConfig::new(),
        )
        .await
        .expect("add queue")
}

fn queue_named(name: &str, maxretries: i32) -> WorkItemQueue {
    WorkItemQueue {
        name: name.into(),
        maxretries,
        ..Default::default()
    }
}

async fn push(client: &Client, wiq: &str, name: &str, payload: Value) -> Workitem {
    client
        .push_workitem(
            PushWorkitemRequest {
                wiq: wiq.into(),
                name: name.into(),
                payload: payload.to_string(),
                ..Default::default()
            },
            EnvConfig::new(),
        )
        .await
        .expect("push")
        .workitem
        .expect("pushed item")
}

async fn pop(client: &Client, wiq: &str, includefiles: bool, compressed: bool) -> Option<Workitem> {
    let folder = tempfile::tempdir().expect("download dir");
    client
        .pop_workitem(
            PopWorkitemRequest {
                wiq: wiq.into(),
                includefiles,
                compressed,
                ..Default::default()
            },
            EnvConfig::new(),
            folder.path().to_str(),
        )
        .await
        .expect("pop")
        .workitem
}

async fn set_state(client: &Client, item: &Workitem, state: &str, errortype: &str) -> Workitem {
    let mut item = item.clone();
    item.state = state.into();
    item.errortype = errortype.into();
    if !errortype.is_empty() {
        item.errormessage = "it broke".into();
    }
    client
        .update_workitem(
            UpdateWorkitemRequest {
                workitem: Some(item),
                ..Default::default()
            },
            EnvConfig::new(),
        )
        .await
        .expect("update")
        .workitem
        .expect("updated item")
}

fn server_error<T: std::fmt::Debug>(result: Result<T, openiap_client::OpenIAPError>) -> String {
    format!("{:?}", result.expect_err("a server error"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle() {
    let server = TestServer::start();
    let client = admin(&server).await;
    let queue = add_queue(&client, queue_named("wiq_life", 3)).await;
    assert!(!queue.id.is_empty());
    assert_eq!(queue.maxretries, 3);
    assert!(!queue.usersrole.is_empty(), "a users role is made");
    assert!(
        queue
            .acl
            .iter()
            .any(|ace| ace.id == queue.usersrole && ace.rights == 65535),
        "the role's entry is kept even though the client sent an empty _acl: {:?}",
        queue.acl
    );
    let again = client
        .add_workitem_queue(
            AddWorkItemQueueRequest {
                workitemqueue: Some(queue_named("wiq_life", 3)),
                skiprole: false,
            },
            EnvConfig::new(),
        )
        .await;
    assert!(server_error(again).contains("Work item queue with name wiq_life already exists"));

    // Empty pop: no work item.
    assert!(pop(&client, "wiq_life", false, false).await.is_none());

    let pushed = push(&client, "wiq_life", "first", json!({"a": 1})).await;
    assert_eq!(pushed.state, "new");
    assert_eq!(pushed.priority, 2);
    assert_eq!(pushed.wiqid, queue.id);
    assert!(pushed.nextrun.is_some(), "dates are Timestamps");
    let popped = pop(&client, "wiq_life", false, false)
        .await
        .expect("an item");
    assert_eq!(popped.id, pushed.id);
    assert_eq!(popped.state, "processing");
    assert_eq!(popped.username, ADMIN);
    assert!(popped.lastrun.is_some());
    assert_eq!(
        serde_json::from_str::<Value>(&popped.payload).unwrap(),
        json!({"a": 1})
    );
    assert!(
        pop(&client, "wiq_life", false, false).await.is_none(),
        "popped once"
    );
    let done = set_state(&client, &popped, "successful", "").await;
    assert_eq!(done.state, "successful");

    // Retry until failed: maxretries 3 allows 3 attempts.
    let item = push(&client, "wiq_life", "retried", json!({})).await;
    for attempt in 1..=2 {
        let popped = pop(&client, "wiq_life", false, false)
            .await
            .expect("retry item");
        assert_eq!(popped.id, item.id);
        let retried = set_state(&client, &popped, "retry", "").await;
        assert_eq!(retried.state, "new", "attempt {attempt}");
        assert_eq!(retried.retries, attempt);
    }
    let popped = pop(&client, "wiq_life", false, false)
        .await
        .expect("last attempt");
    let failed = set_state(&client, &popped, "retry", "").await;
    assert_eq!(failed.state, "failed");

    // A business error does not retry.
    let item = push(&client, "wiq_life", "business", json!({})).await;
    let popped = pop(&client, "wiq_life", false, false).await.expect("item");
    assert_eq!(popped.id, item.id);
    let failed = set_state(&client, &popped, "retry", "business").await;
    assert_eq!(failed.state, "failed");
    assert_eq!(failed.errormessage, "it broke");

    // Illegal state.
    let mut bad = failed.clone();
    bad.state = "bogus".into();
    let result = client
        .update_workitem(
            UpdateWorkitemRequest {
                workitem: Some(bad),
                ..Default::default()
            },
            EnvConfig::new(),
        )
        .await;
    assert!(server_error(result).contains("Illegal state bogus on Workitem"));

    // Delete an item; delete the queue (not empty → refused; purge → gone).
    client
        .delete_workitem(
            DeleteWorkitemRequest {
                id: failed.id.clone(),
            },
            EnvConfig::new(),
        )
        .await
        .expect("delete item");
    let result = client
        .delete_workitem_queue(
            DeleteWorkItemQueueRequest {
                wiq: "wiq_life".into(),
                ..Default::default()
            },
            EnvConfig::new(),
        )
        .await;
    assert!(server_error(result)
        .contains("Work item queue wiq_life is not empty, enable purge to delete"));
    push(&client, "wiq_life", "waiting", json!({})).await;
    let purged = client
        .update_workitem_queue(
            UpdateWorkItemQueueRequest {
                workitemqueue: Some(WorkItemQueue {
                    id: queue.id.clone(),
                    ..Default::default()
                }),
                skiprole: false,
                purge: true,
            },
            EnvConfig::new(),
        )
        .await
        .expect("purge");
    assert_eq!(purged.name, "wiq_life");
    let by_deleteone = client
        .delete_one(
            openiap_client::DeleteOneRequest {
                collectionname: "mq".into(),
                id: queue.id.clone(),
                ..Default::default()
            },
            EnvConfig::new(),
        )
        .await;
    assert!(server_error(by_deleteone).contains("you must call DeleteWorkItemQueue to delete"));
    assert!(
        pop(&client, "wiq_life", false, false).await.is_none(),
        "purged"
    );
    client
        .delete_workitem_queue(
            DeleteWorkItemQueueRequest {
                wiq: "wiq_life".into(),
                ..Default::default()
            },
            EnvConfig::new(),
        )
        .await
        .expect("delete empty queue");
    let result = client
        .pop_workitem(
            PopWorkitemRequest {
                wiq: "wiq_life".into(),
                ..Default::default()
            },
            EnvConfig::new(),
            None,
        )
        .await;
    assert!(server_error(result).contains("Work item queue not found wiq_life () not found."));
    client.disconnect();
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn inflate(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn file(name: &str, bytes: Vec<u8>, compressed: bool) -> WorkitemFile {
    WorkitemFile {
        filename: name.into(),
        // The Rust client sends this with inline bytes; the server must ignore it.
        id: "findme".into(),
        compressed,
        file: bytes,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_and_chaining() {
    let server = TestServer::start_with(|config| config.work.max_file_size = 1024 * 1024);
    let client = admin(&server).await;
    add_queue(&client, queue_named("wiq_target", 3)).await;
    add_queue(&client, queue_named("wiq_source", 3)).await;
    let plain: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let text = b"hello work item".to_vec();
    let pushed = client
        .push_workitem(
            PushWorkitemRequest {
                wiq: "wiq_source".into(),
                name: "with files".into(),
                payload: "{}".into(),
                success_wiq: "wiq_target".into(),
                files: vec![
                    file("dir/plain.bin", plain.clone(), false),
                    file("zlib.txt", zlib(&text), true),
                    file("gzip.txt", gzip(&text), true),
                ],
                ..Default::default()
            },
            EnvConfig::new(),
        )
        .await
        .expect("push with files")
        .workitem
        .expect("item");
    assert_eq!(pushed.files.len(), 3);
    assert!(pushed
        .files
        .iter()
        .all(|f| !f.id.is_empty() && f.id != "findme"));
    assert_eq!(pushed.files[0].filename, "plain.bin");

    // A zip bomb (64 MiB of zeros, compressed) is refused past --max-file-size.
    let bomb = zlib(&vec![0u8; 64 * 1024 * 1024]);
    let result = client
        .push_workitem(
            PushWorkitemRequest {
                wiq: "wiq_source".into(),
                files: vec![file("bomb.bin", bomb, true)],
                ..Default::default()
            },
            EnvConfig::new(),
        )
        .await;
    let err = server_error(result);
    assert!(err.contains("inflates to more than 1048576 bytes"), "{err}");

    let popped = pop(&client, "wiq_source", true, true).await.expect("item");
    assert_eq!(popped.id, pushed.id);
    let by_name: HashMap<&str, &WorkitemFile> = popped
        .files
        .iter()
        .map(|f| (f.filename.as_str(), f))
        .collect();
    assert!(by_name["plain.bin"].compressed);
    assert_eq!(inflate(&by_name["plain.bin"].file), plain);
    assert_eq!(inflate(&by_name["zlib.txt"].file), text);
    assert_eq!(inflate(&by_name["gzip.txt"].file), text);

    // Chaining: the successful item is copied to the target with copies of its files.
    let done = set_state(&client, &popped, "successful", "").await;
    assert_eq!(done.state, "successful");
    // The popped item sent back with its inlined content keeps its files as they were.
    let mut kept: Vec<&str> = done.files.iter().map(|f| f.id.as_str()).collect();
    let mut before: Vec<&str> = pushed.files.iter().map(|f| f.id.as_str()).collect();
    kept.sort();
    before.sort();
    assert_eq!(kept, before);
    let chained = pop(&client, "wiq_target", true, false)
        .await
        .expect("chained copy");
    assert_ne!(chained.id, pushed.id);
    assert_eq!(chained.name, "with files");
    assert_eq!(chained.files.len(), 3);
    for f in &chained.files {
        assert!(!f.compressed);
        assert!(
            pushed.files.iter().all(|p| p.id != f.id),
            "files are copies"
        );
    }
    let copy: HashMap<&str, &WorkitemFile> = chained
        .files
        .iter()
        .map(|f| (f.filename.as_str(), f))
        .collect();
    assert_eq!(copy["plain.bin"].file, plain);
    assert_eq!(copy["zlib.txt"].file, text);

    // Files on update: bytes replace the same-named file (the old one is deleted), a
    // name alone removes its file.
    let old_zlib = copy["zlib.txt"].id.clone();
    let mut change = chained.clone();
    change.files = Vec::new();
    let updated = client
        .update_workitem(
            UpdateWorkitemRequest {
                workitem: Some(change),
                files: vec![
                    WorkitemFile {
                        filename: "zlib.txt".into(),
                        file: b"replaced".to_vec(),
                        ..Default::default()
                    },
                    WorkitemFile {
                        filename: "gzip.txt".into(),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            },
            EnvConfig::new(),
        )
        .await
        .expect("update files")
        .workitem
        .expect("item");
    let names: Vec<&str> = updated.files.iter().map(|f| f.filename.as_str()).collect();
    assert_eq!(names, vec!["plain.bin", "zlib.txt"]);
    assert_ne!(updated.files[1].id, old_zlib);
    let count_files = |query: Value| {
        let client = &client;
        async move {
            client
                .count(
                    openiap_client::CountRequest {
                        collectionname: "fs.files".into(),
                        query: query.to_string(),
                        ..Default::default()
                    },
                    EnvConfig::new(),
                )
                .await
                .expect("count")
                .result
        }
    };
    assert_eq!(
        count_files(json!({"_id": old_zlib})).await,
        0,
        "replaced file deleted"
    );
    assert_eq!(count_files(json!({"metadata.wi": chained.id})).await, 2);

    // Deleting the item deletes its files (the copies stay with the copy).
    client
        .delete_workitem(
            DeleteWorkitemRequest {
                id: chained.id.clone(),
            },
            EnvConfig::new(),
        )
        .await
        .expect("delete");
    let left = client
        .count(
            openiap_client::CountRequest {
                collectionname: "fs.files".into(),
                query: json!({"metadata.wi": chained.id}).to_string(),
                ..Default::default()
            },
            EnvConfig::new(),
        )
        .await
        .expect("count");
    assert_eq!(left.result, 0);
    client.disconnect();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_users_cannot_touch_items() {
    let server = TestServer::start();
    let a = admin(&server).await;
    create_user_b(&a).await;
    let queue = add_queue(&a, queue_named("wiq_private", 3)).await;
    let item = push(&a, "wiq_private", "secret", json!({"s": 1})).await;
    let b = connect(&server, USER_B, USER_B_PASSWORD).await;
    let push_b = b
        .push_workitem(
            PushWorkitemRequest {
                wiq: "wiq_private".into(),
                ..Default::default()
            },
            EnvConfig::new(),
        )
        .await;
    assert!(server_error(push_b).contains("Work item queue not found wiq_private () not found."));
    let pop_b = b
        .pop_workitem(
            PopWorkitemRequest {
                wiqid: queue.id.clone(),
                ..Default::default()
            },
            EnvConfig::new(),
            None,
        )
        .await;
    assert!(server_error(pop_b).contains("not found."));
    let mut changed = item.clone();
    changed.state = "successful".into();
    let update_b = b
        .update_workitem(
            UpdateWorkitemRequest {
                workitem: Some(changed),
                ..Default::default()
            },
            EnvConfig::new(),
        )
        .await;
    let err = server_error(update_b);
    assert!(
        err.contains(&format!("Work item  with _id {} not found.", item.id)),
        "{err}"
    );
    let delete_b = b
        .delete_workitem(
            DeleteWorkitemRequest {
                id: item.id.clone(),
            },
            EnvConfig::new(),
        )
        .await;
    assert!(server_error(delete_b).contains("Unknown work item or access denied"));

    // Read but no invoke: the queue is visible, items are not to be had.
    let user_b = b.get_user().expect("b signed in");
    let mut acl = queue.acl.clone();
    acl.push(openiap_client::Ace {
        id: user_b.id.clone(),
        deny: false,
        rights: 2,
    });
    a.update_workitem_queue(
        UpdateWorkItemQueueRequest {
            workitemqueue: Some(WorkItemQueue {
                id: queue.id.clone(),
                acl,
                ..Default::default()
            }),
            skiprole: false,
            purge: false,
        },
        EnvConfig::new(),
    )
    .await
    .expect("share the queue for reading");
    let push_b = b
        .push_workitem(
            PushWorkitemRequest {
                wiq: "wiq_private".into(),
                ..Default::default()
            },
            EnvConfig::new(),
        )
        .await;
    let err = server_error(push_b);
    assert!(
        err.contains(&format!(
            "Unknown work item queue or {USER_B} is missing invoke rights"
        )),
        "{err}"
    );
    // The item is still A's to pop.
    let popped = pop(&a, "wiq_private", false, false)
        .await
        .expect("still there");
    assert_eq!(popped.id, item.id);
    a.disconnect();
    b.disconnect();
}

fn authorized<T>(jwt: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("jwt", jwt.parse().expect("ascii token"));
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_unary_rpcs() {
    use opencore::proto;
    let server = TestServer::start();
    let (mut client, signed) = grpc_admin(&server).await;
    let jwt = signed.jwt.clone();
    let added = client
        .add_work_item_queue(authorized(
            &jwt,
            proto::AddWorkItemQueueRequest {
                workitemqueue: Some(proto::WorkItemQueue {
                    name: "wiq_grpc".into(),
                    ..Default::default()
                }),
                skiprole: true,
            },
        ))
        .await
        .expect("add")
        .into_inner()
        .workitemqueue
        .expect("queue");
    assert_eq!(added.maxretries, 3, "maxretries < 1 becomes 3");
    let pushed = client
        .push_workitems(authorized(
            &jwt,
            proto::PushWorkitemsRequest {
                wiqid: added.id.clone(),
                priority: 5,
                items: vec![
                    proto::Workitem {
                        name: "one".into(),
                        payload: "7".into(),
                        ..Default::default()
                    },
                    proto::Workitem {
                        name: "two".into(),
                        priority: 1,
                        ..Default::default()
                    },
                ],
                ..Default::default()
            },
        ))
        .await
        .expect("push many")
        .into_inner()
        .workitems;
    assert_eq!(pushed.len(), 2);
    assert!(
        pushed.iter().all(|w| w.nextrun.is_some()),
        "Timestamps in pushworkitems too"
    );
    assert_eq!(pushed[0].payload, r#"{"value":7}"#);
    let first = client
        .pop_workitem(authorized(
            &jwt,
            proto::PopWorkitemRequest {
                wiq: "wiq_grpc".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("pop")
        .into_inner()
        .workitem
        .expect("item");
    assert_eq!(first.name, "two", "lower priority first");
    let second = client
        .pop_workitem(authorized(
            &jwt,
            proto::PopWorkitemRequest {
                wiq: "wiq_grpc".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .workitem
        .expect("item");
    assert_eq!((second.name.as_str(), second.priority), ("one", 5));
    let empty = client
        .pop_workitem(authorized(
            &jwt,
            proto::PopWorkitemRequest {
                wiq: "wiq_grpc".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(empty.workitem.is_none());
    let too_many = client
        .push_workitems(authorized(
            &jwt,
            proto::PushWorkitemsRequest {
                wiq: "wiq_grpc".into(),
                items: vec![proto::Workitem::default(); 1001],
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(too_many.code(), tonic::Code::ResourceExhausted);
    assert!(too_many.message().contains("limit 1000"));
    // A push whose reply could not reach a gRPC client is refused before storing.
    let huge = json!({"s": "x".repeat(4 * 1024 * 1024)}).to_string();
    let too_big = client
        .push_workitem(authorized(
            &jwt,
            proto::PushWorkitemRequest {
                wiq: "wiq_grpc".into(),
                payload: huge,
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(too_big.code(), tonic::Code::ResourceExhausted);
    assert!(
        too_big.message().contains("push fewer or smaller items"),
        "{}",
        too_big.message()
    );
    let still_empty = client
        .pop_workitem(authorized(
            &jwt,
            proto::PopWorkitemRequest {
                wiq: "wiq_grpc".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(still_empty.workitem.is_none(), "nothing was stored");
    let denied = client
        .delete_work_item_queue(authorized(
            &jwt,
            proto::DeleteWorkItemQueueRequest {
                wiq: "wiq_grpc".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::FailedPrecondition);
    client
        .delete_work_item_queue(authorized(
            &jwt,
            proto::DeleteWorkItemQueueRequest {
                wiq: "wiq_grpc".into(),
                purge: true,
                ..Default::default()
            },
        ))
        .await
        .expect("delete with purge");
}

/// 8 connections pop one queue of 10,000 items (two priorities): every item exactly
/// once; per popper, priorities never go back and items of one priority come in push
/// order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_pops_are_exclusive_and_ordered() {
    const ITEMS: usize = 10_000;
    const POPPERS: usize = 8;
    let server = TestServer::start();
    let client = admin(&server).await;
    add_queue(&client, queue_named("wiq_busy", 3)).await;
    for batch in 0..ITEMS / 1000 {
        let items = (batch * 1000..(batch + 1) * 1000)
            .map(|i| Workitem {
                name: format!("item {i}"),
                payload: json!({"i": i}).to_string(),
                priority: if i % 3 == 0 { 1 } else { 2 },
                ..Default::default()
            })
            .collect();
        let pushed = client
            .push_workitems(
                PushWorkitemsRequest {
                    wiq: "wiq_busy".into(),
                    items,
                    ..Default::default()
                },
                EnvConfig::new(),
            )
            .await
            .expect("push batch");
        assert_eq!(pushed.workitems.len(), 1000);
    }
    let mut poppers = Vec::new();
    for _ in 0..POPPERS {
        let popper = Arc::new(admin(&server).await);
        poppers.push(tokio::spawn(async move {
            let mut got: Vec<(i32, usize)> = Vec::new();
            while let Some(item) = pop(&popper, "wiq_busy", false, false).await {
                let payload: Value = serde_json::from_str(&item.payload).unwrap();
                got.push((item.priority, payload["i"].as_u64().unwrap() as usize));
            }
            popper.disconnect();
            got
        }));
    }
    let mut seen = vec![0u32; ITEMS];
    for popper in poppers {
        let got = popper.await.expect("popper");
        for pair in got.windows(2) {
            assert!(pair[0].0 <= pair[1].0, "priority went back: {pair:?}");
            if pair[0].0 == pair[1].0 {
                assert!(
                    pair[0].1 < pair[1].1,
                    "not FIFO within a priority: {pair:?}"
                );
            }
        }
        for (_, i) in got {
            seen[i] += 1;
        }
    }
    let wrong: Vec<usize> = (0..ITEMS).filter(|i| seen[*i] != 1).collect();
    assert!(
        wrong.is_empty(),
        "items not popped exactly once: {:?}",
        &wrong[..wrong.len().min(20)]
    );
    client.disconnect();
}

/// An item too large for a gRPC reply (pushed over WebSocket) is handed back when a
/// gRPC client pops it, and a WebSocket client then gets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undeliverable_pop_hands_the_item_back() {
    use opencore::proto;
    let server = TestServer::start();
    let ws = admin(&server).await;
    add_queue(&ws, queue_named("wiq_big", 3)).await;
    let big = json!({"s": "y".repeat(5 * 1024 * 1024)});
    let pushed = push(&ws, "wiq_big", "big", big).await;
    let (mut grpc, signed) = grpc_admin(&server).await;
    let refused = grpc
        .pop_workitem(authorized(
            &signed.jwt,
            proto::PopWorkitemRequest {
                wiq: "wiq_big".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    let popped = pop(&ws, "wiq_big", false, false)
        .await
        .expect("handed back");
    assert_eq!(popped.id, pushed.id);
    assert_eq!(popped.state, "processing");
    ws.disconnect();
}
