//! `kill -9` of the server (embedded store) in the middle of a push/pop burst: after a
//! restart on the same data dir every acknowledged push is there, every acknowledged
//! pop is still `processing` in its popper's name, and no item is handed out twice
//! (neither before the crash nor by the pops that empty the queue after it).

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use opencore::proto::{
    AddWorkItemQueueRequest, PopWorkitemRequest, PopWorkitemResponse, PushWorkitemRequest,
    PushWorkitemResponse, QueryRequest, QueryResponse, WorkItemQueue,
};

const PASSWORD: &str = "crash-test-password";
const QUEUE: &str = "crashqueue";
const PUSHERS: usize = 4;
const POPPERS: usize = 4;

fn spawn(data_dir: &std::path::Path, tcp_port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_opencore"))
        .args([
            "serve",
            "--bind",
            "127.0.0.1",
            "--grpc-port",
            "0",
            "--http-port",
            "0",
        ])
        .args([
            "--no-pipe",
            "--bcrypt-cost",
            "4",
            "--tcp-port",
            &tcp_port.to_string(),
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .env("OPENCORE_ADMIN_PASSWORD", PASSWORD)
        .env_remove("OPENCORE_JWT_SECRET")
        .env_remove("MONGODB_URL")
        .env_remove("mongodb_url")
        .env_remove("AMQP_URL")
        .env_remove("amqp_url")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start opencore")
}

fn wait_for_port(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "server did not listen on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn admin(addr: SocketAddr) -> RawClient {
    let mut client = RawClient::connect(addr).await;
    client.signin("admin", PASSWORD).await;
    client
}

fn push_request(n: usize) -> PushWorkitemRequest {
    PushWorkitemRequest {
        wiq: QUEUE.into(),
        name: format!("item {n}"),
        payload: format!(r#"{{"n":{n}}}"#),
        ..Default::default()
    }
}

fn pop_request() -> PopWorkitemRequest {
    PopWorkitemRequest {
        wiq: QUEUE.into(),
        ..Default::default()
    }
}

/// The reply to request `id`; `None` once the connection is gone.
async fn reply_to(client: &mut RawClient, id: &str) -> Option<opencore::proto::Envelope> {
    loop {
        let envelope = client.recv().await?;
        if envelope.rid == id {
            return Some(envelope);
        }
    }
}

#[derive(Default)]
struct Acks {
    pushed: Vec<String>,
    /// item id → the popper it was handed to.
    popped: HashMap<String, usize>,
    duplicates: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_a_push_pop_burst_loses_no_push_and_hands_no_item_out_twice() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut server = spawn(dir.path(), port);
    wait_for_port(addr);
    let mut setup = admin(addr).await;
    let reply = setup
        .request(
            "addworkitemqueue",
            &AddWorkItemQueueRequest {
                workitemqueue: Some(WorkItemQueue {
                    name: QUEUE.into(),
                    maxretries: 3,
                    ..Default::default()
                }),
                skiprole: true,
            },
        )
        .await;
    assert_eq!(
        reply.command,
        "addworkitemqueuereply",
        "{:?}",
        error_message(&reply)
    );

    let acks = Arc::new(Mutex::new(Acks::default()));
    let mut tasks = Vec::new();
    for pusher in 0..PUSHERS {
        let acks = acks.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = admin(addr).await;
            for n in 0.. {
                let envelope =
                    client.envelope("pushworkitem", &push_request(pusher * 1_000_000 + n));
                let id = client.send(envelope).await;
                let Some(reply) = reply_to(&mut client, &id).await else {
                    return;
                };
                if reply.command != "pushworkitemreply" {
                    continue;
                }
                let pushed: PushWorkitemResponse = decode(&reply);
                let item = pushed.workitem.expect("a pushed item");
                acks.lock().unwrap().pushed.push(item.id);
            }
        }));
    }
    for popper in 0..POPPERS {
        let acks = acks.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = admin(addr).await;
            loop {
                let envelope = client.envelope("popworkitem", &pop_request());
                let id = client.send(envelope).await;
                let Some(reply) = reply_to(&mut client, &id).await else {
                    return;
                };
                if reply.command != "popworkitemreply" {
                    continue;
                }
                let popped: PopWorkitemResponse = decode(&reply);
                if let Some(item) = popped.workitem {
                    let mut acks = acks.lock().unwrap();
                    if acks.popped.insert(item.id.clone(), popper).is_some() {
                        acks.duplicates.push(item.id);
                    }
                }
            }
        }));
    }
    // Let the burst run until plenty was acknowledged both ways, then crash.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let acks = acks.lock().unwrap();
        if acks.pushed.len() >= 3000 && acks.popped.len() >= 1500 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the burst acknowledged too little: {} pushes, {} pops",
            acks.pushed.len(),
            acks.popped.len()
        );
    }
    server.kill().unwrap();
    server.wait().unwrap();
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
    }
    let acks = Arc::try_unwrap(acks).ok().unwrap().into_inner().unwrap();
    assert!(
        acks.duplicates.is_empty(),
        "items popped twice before the crash: {:?}",
        acks.duplicates
    );

    let mut server = spawn(dir.path(), port);
    wait_for_port(addr);
    let mut client = admin(addr).await;
    // Every acknowledged push is stored; acknowledged pops are still processing.
    let mut stored: HashMap<String, String> = HashMap::new();
    for page in acks.pushed.chunks(500) {
        let query = serde_json::json!({"_id": {"$in": page}}).to_string();
        let reply = client
            .request(
                "query",
                &QueryRequest {
                    collectionname: "workitems".into(),
                    query,
                    projection: r#"{"state":1}"#.into(),
                    top: 1000,
                    ..Default::default()
                },
            )
            .await;
        let found: QueryResponse = decode(&reply);
        let items: Vec<serde_json::Value> = serde_json::from_str(&found.results).unwrap();
        for item in items {
            stored.insert(
                item["_id"].as_str().unwrap().to_string(),
                item["state"].as_str().unwrap_or_default().to_string(),
            );
        }
    }
    let lost: Vec<&String> = acks
        .pushed
        .iter()
        .filter(|id| !stored.contains_key(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged pushes are gone after kill -9: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    for id in acks.popped.keys() {
        if let Some(state) = stored.get(id) {
            assert_eq!(
                state, "processing",
                "popped item {id} is {state} after the restart"
            );
        }
    }
    // Emptying the queue never hands out an item that was already popped.
    let mut after = 0;
    loop {
        let reply = client.request("popworkitem", &pop_request()).await;
        assert_eq!(
            reply.command,
            "popworkitemreply",
            "{:?}",
            error_message(&reply)
        );
        let popped: PopWorkitemResponse = decode(&reply);
        let Some(item) = popped.workitem else { break };
        assert!(
            !acks.popped.contains_key(&item.id),
            "item {} was popped again after the restart",
            item.id
        );
        after += 1;
    }
    eprintln!(
        "kill -9 after {} acknowledged pushes and {} pops; {} items left to pop after the restart",
        acks.pushed.len(),
        acks.popped.len(),
        after
    );
    server.kill().unwrap();
    server.wait().unwrap();
}
