//! Two `opencore` processes on loopback over one MongoDB-protocol server (`MONGODB_URL`,
//! SecantusDB in CI) and one RabbitMQ (`AMQP_URL`), driven by the official Rust client
//! (`openiap-client` 0.0.41) connected to each node:
//!
//! - a token from node A signs in on node B; each node reports its own id;
//! - a watch on node B sees an insert made through node A;
//! - a queue RPC from a client on A to a consumer on B and back;
//! - a role granted through A lets a user read on B within a second;
//! - a user disabled through A is disconnected from B;
//! - 8 poppers, 4 per node, pop 5,000 work items exactly once;
//! - SIGTERM to node A under load: a load balancer (a TCP proxy in this test that
//!   follows `/readyz`, as a Kubernetes Service does) stops sending new connections to
//!   A, the clients on A reconnect through it to B, and every insert they saw
//!   acknowledged is in the database.
//!
//! Without `MONGODB_URL`, or without a broker (`AMQP_URL` unset and nothing on
//! 127.0.0.1:5672, or `AMQP_URL=off`), the tests print `SKIPPED: …` and return.

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{free_port, http_get, try_http, ADMIN};
use futures_util::FutureExt;
use openiap_client::{
    AddWorkItemQueueRequest, Client, ClientEvent, CountRequest, DeleteWorkItemQueueRequest,
    EnvConfig, InsertOneRequest, PopWorkitemRequest, PushWorkitemsRequest, QueryRequest,
    QueueEvent, QueueMessageRequest, RegisterQueueRequest, SigninRequest, UpdateDocumentRequest,
    WatchEvent, WatchRequest, WorkItemQueue, Workitem,
};
use serde_json::{json, Value};

const PASSWORD: &str = "multinode-admin-password";
const SECRET: &str = "multinode-shared-signing-secret-0123456789";
const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The shared backends, or `None` after printing why the test is skipped.
fn backends(test: &str) -> Option<(String, String)> {
    let skip = |why: &str| {
        let _ = writeln!(std::io::stderr(), "SKIPPED: {test}: {why}");
        None
    };
    let Some(mongo) = std::env::var("MONGODB_URL").ok().filter(|u| !u.is_empty()) else {
        return skip("MONGODB_URL not set");
    };
    let amqp = match std::env::var("AMQP_URL").ok().filter(|u| !u.is_empty()) {
        Some(url) if url == "off" => return skip("AMQP_URL=off"),
        Some(url) => url,
        None if std::net::TcpStream::connect("127.0.0.1:5672").is_ok() => DEFAULT_AMQP_URL.into(),
        None => return skip("no AMQP_URL and no RabbitMQ on 127.0.0.1:5672"),
    };
    Some((mongo, amqp))
}

/// The two tests run one after the other: each starts two nodes, and together they
/// would load SecantusDB (single-threaded) enough to slow the change streams that the
/// one-second checks depend on.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn unique(prefix: &str) -> String {
    format!("{prefix}{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}

/// One `opencore serve` process; killed when dropped.
struct Node {
    name: String,
    child: Child,
    http: SocketAddr,
    grpc: SocketAddr,
}

impl Node {
    async fn start(name: &str, data_dir: &Path, mongo: &str, database: &str, amqp: &str) -> Node {
        let (http, grpc, tcp) = (free_port(), free_port(), free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_opencore"))
            .args(["serve", "--bind", "127.0.0.1", "--no-pipe"])
            .args(["--http-port", &http.to_string()])
            .args(["--grpc-port", &grpc.to_string()])
            .args(["--tcp-port", &tcp.to_string()])
            .args(["--node-id", name])
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--mongodb-url", mongo, "--mongodb-db", database])
            .args(["--amqp-url", amqp])
            .args(["--jwt-secret", SECRET, "--admin-password", PASSWORD])
            .args(["--bcrypt-cost", "4", "--exempt-loopback"])
            // Long enough for the balancer to notice /readyz failing (it polls every 50 ms).
            .args(["--drain-delay", "1s", "--shutdown-grace", "5s"])
            .env_remove("OPENCORE_ADMIN_PASSWORD")
            .env_remove("OPENCORE_JWT_SECRET")
            .env_remove("aes_secret")
            .env("OPENCORE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start opencore");
        let node = Node {
            name: name.into(),
            child,
            http: format!("127.0.0.1:{http}").parse().unwrap(),
            grpc: format!("127.0.0.1:{grpc}").parse().unwrap(),
        };
        node.wait_ready().await;
        node
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !readyz(self.http).await {
            assert!(
                Instant::now() < deadline,
                "node {} never became ready",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn ws(&self, user: &str, password: &str) -> String {
        format!("ws://{user}:{password}@{}", self.http)
    }

    fn grpc(&self, user: &str, password: &str) -> String {
        format!("grpc://{user}:{password}@{}", self.grpc)
    }

    fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit; true when it exited cleanly.
    fn exited_cleanly(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            assert!(Instant::now() < deadline, "node {} did not exit", self.name);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Both nodes on a fresh database; the database is dropped at the end.
struct Cluster {
    a: Node,
    b: Node,
    mongo: String,
    database: String,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

impl Cluster {
    async fn start(mongo: &str, amqp: &str) -> Cluster {
        std::env::set_var("enable_analytics", "false");
        let database = unique("opencore_multinode_");
        let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        // One after the other: the first creates the admin, roles and indexes.
        let a = Node::start("node-a", dirs.0.path(), mongo, &database, amqp).await;
        let b = Node::start("node-b", dirs.1.path(), mongo, &database, amqp).await;
        Cluster {
            a,
            b,
            mongo: mongo.into(),
            database,
            _dirs: dirs,
        }
    }

    async fn drop_database(&self) {
        if let Ok(client) = mongodb::Client::with_uri_str(&self.mongo).await {
            let _ = client.database(&self.database).drop().await;
        }
    }
}

async fn connect(url: &str) -> Client {
    let client = Client::new_connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e:?}"));
    client.set_default_timeout(Duration::from_secs(10));
    client
}

async fn insert(client: &Client, collection: &str, item: Value) -> Value {
    let reply = client
        .insert_one(
            InsertOneRequest {
                collectionname: collection.into(),
                item: item.to_string(),
                ..Default::default()
            },
            EnvConfig::new(),
        )
        .await
        .unwrap_or_else(|e| panic!("insert into {collection}: {e:?}"));
    serde_json::from_str(&reply.result).unwrap()
}

async fn query(client: &Client, collection: &str, filter: Value) -> Vec<Value> {
    let reply = client
        .query(
            QueryRequest {
                collectionname: collection.into(),
                query: filter.to_string(),
                top: 100,
                ..Default::default()
            },
            EnvConfig::new(),
        )
        .await
        .unwrap_or_else(|e| panic!("query {collection}: {e:?}"));
    serde_json::from_str(&reply.results).unwrap()
}

/// `$set` on one document by `_id`.
async fn set(client: &Client, collection: &str, id: &str, fields: Value) {
    client
        .update_document(
            UpdateDocumentRequest {
                collectionname: collection.into(),
                query: json!({"_id": id}).to_string(),
                document: json!({ "$set": fields }).to_string(),
                ..Default::default()
            },
            EnvConfig::new(),
        )
        .await
        .unwrap_or_else(|e| panic!("update {collection} {id}: {e:?}"));
}

fn id_of(document: &Value) -> String {
    document["_id"].as_str().expect("an _id").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_serve_one_system() {
    let Some((mongo, amqp)) = backends("two_nodes_serve_one_system") else {
        return;
    };
    let _serial = ONE_AT_A_TIME.lock().await;
    let cluster = Cluster::start(&mongo, &amqp).await;
    let (a, b) = (&cluster.a, &cluster.b);
    let admin_a = connect(&a.ws(ADMIN, PASSWORD)).await;
    let admin_b = connect(&b.grpc(ADMIN, PASSWORD)).await;

    // Each node names itself; a token issued by A signs in on B.
    let signed = admin_a
        .signin(SigninRequest {
            username: ADMIN.into(),
            password: PASSWORD.into(),
            ..Default::default()
        })
        .await
        .expect("password sign-in on A");
    for node in [a, b] {
        let (status, body) = http_get(node.http, "/admin/stats", Some(&signed.jwt)).await;
        assert_eq!(status, 200, "{body}");
        let stats: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(stats["node"], json!(node.name));
    }
    let by_token = connect(&format!("ws://{}", b.http)).await;
    let reply = by_token
        .signin(SigninRequest {
            jwt: signed.jwt.clone(),
            ..Default::default()
        })
        .await
        .expect("A's token signs in on B");
    assert_eq!(reply.user.unwrap().username, ADMIN);

    watch_crosses_nodes(&admin_a, &admin_b).await;
    queue_rpc_crosses_nodes(a, b).await;
    grants_and_revocations_cross_nodes(b, &admin_a).await;
    poppers_on_both_nodes_pop_each_item_once(a, b, &admin_a).await;
    cluster.drop_database().await;
}

/// A watch on B sees an insert through A (the first inserts may beat B's change stream
/// to the database, so A inserts until the first event arrives).
async fn watch_crosses_nodes(admin_a: &Client, admin_b: &Client) {
    let (tx, events) = std::sync::mpsc::channel::<WatchEvent>();
    let tx = Mutex::new(tx);
    admin_b
        .watch(
            WatchRequest {
                collectionname: "multinode".into(),
                paths: vec![],
            },
            EnvConfig::new(),
            Box::new(move |event| {
                let _ = tx.lock().unwrap().send(event);
            }),
        )
        .await
        .expect("watch on B");
    for attempt in 0..20 {
        let inserted = insert(admin_a, "multinode", json!({"attempt": attempt})).await;
        if let Ok(event) = events.recv_timeout(Duration::from_millis(500)) {
            let document: Value = serde_json::from_str(&event.document).unwrap();
            assert_eq!(event.operation, "insert");
            // Any of the attempts; from then on every insert arrives.
            assert!(
                document["attempt"].as_i64().unwrap() <= attempt,
                "{document}"
            );
            let next = insert(admin_a, "multinode", json!({"after": true})).await;
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let event = events
                    .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                    .expect("the next insert through A reaches B's watch");
                let document: Value = serde_json::from_str(&event.document).unwrap();
                if document["_id"] == next["_id"] {
                    break;
                }
            }
            return;
        }
        let _ = inserted;
    }
    panic!("no insert through node A reached the watch on node B");
}

/// A named queue consumed on B answers RPCs sent from A (the reply travels back to A's
/// temporary queue).
async fn queue_rpc_crosses_nodes(a: &Node, b: &Node) {
    let worker = connect(&b.ws(ADMIN, PASSWORD)).await;
    let requester = connect(&a.grpc(ADMIN, PASSWORD)).await;
    let service = unique("mnrpc");
    let served = Arc::new(AtomicUsize::new(0));
    let counter = served.clone();
    worker
        .register_queue(
            RegisterQueueRequest {
                queuename: service.clone(),
            },
            EnvConfig::new(),
            Arc::new(move |_client, event: QueueEvent| {
                counter.fetch_add(1, Ordering::SeqCst);
                let body: Value = serde_json::from_str(&event.data).unwrap_or_default();
                let answer = json!({"answer": body["n"].as_i64().unwrap_or(-1) * 2}).to_string();
                async move { Some(answer) }.boxed()
            }),
        )
        .await
        .expect("register the service queue on B");
    for n in 1..=3 {
        let answer = requester
            .rpc(
                QueueMessageRequest {
                    queuename: service.clone(),
                    data: json!({"n": n}).to_string(),
                    striptoken: true,
                    ..Default::default()
                },
                EnvConfig::new(),
                Duration::from_secs(10),
            )
            .await
            .expect("RPC from A to B");
        let answer: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(answer["answer"], json!(n * 2));
    }
    assert_eq!(served.load(Ordering::SeqCst), 3);
    delete_broker_queue(&service).await;
}

/// The named queue is durable: remove it from the broker so runs leave nothing behind.
async fn delete_broker_queue(name: &str) {
    let url = std::env::var("AMQP_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| DEFAULT_AMQP_URL.into());
    if let Ok(connection) =
        lapin::Connection::connect(&url, lapin::ConnectionProperties::default()).await
    {
        if let Ok(channel) = connection.create_channel().await {
            let _ = channel.queue_delete(name.into(), Default::default()).await;
        }
        let _ = connection.close(0, "done".into()).await;
    }
}

/// A role granted through A takes effect on B within a second; a user disabled through
/// A is disconnected from B.
async fn grants_and_revocations_cross_nodes(b: &Node, admin_a: &Client) {
    let username = unique("mnuser");
    let user = insert(
        admin_a,
        "users",
        json!({"_type": "user", "name": username, "username": username, "newpassword": "pw-multinode"}),
    )
    .await;
    let role = insert(
        admin_a,
        "users",
        json!({"_type": "role", "name": unique("mnrole"), "members": []}),
    )
    .await;
    let secret = insert(
        admin_a,
        "multinode",
        json!({"name": "for the role", "_acl": [{"_id": id_of(&role), "name": role["name"], "rights": 2, "deny": false}]}),
    )
    .await;
    let filter = json!({"_id": id_of(&secret)});

    // gRPC: the client sees the server ending the stream as a disconnect at once.
    let reader = connect(&b.grpc(&username, "pw-multinode")).await;
    let disconnected = Arc::new(AtomicBool::new(false));
    let flag = disconnected.clone();
    reader
        .on_event(Box::new(move |event| {
            if matches!(event, ClientEvent::Disconnected(_)) {
                flag.store(true, Ordering::SeqCst);
            }
        }))
        .await;
    assert!(query(&reader, "multinode", filter.clone()).await.is_empty());

    set(
        admin_a,
        "users",
        &id_of(&role),
        json!({"members": [{"_id": id_of(&user), "name": username}]}),
    )
    .await;
    let since = Instant::now();
    while query(&reader, "multinode", filter.clone()).await.is_empty() {
        assert!(
            since.elapsed() < Duration::from_secs(1),
            "the role granted through A does not apply on B within a second"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    set(admin_a, "users", &id_of(&user), json!({"disabled": true})).await;
    let since = Instant::now();
    while !disabled_seen(&disconnected) {
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "the user disabled through A is still connected to B"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    reader.disconnect();
}

fn disabled_seen(flag: &AtomicBool) -> bool {
    flag.load(Ordering::SeqCst)
}

/// 5,000 items pushed through A; 8 poppers (4 per node, WebSocket and gRPC) pop them;
/// every item is popped exactly once.
///
/// The items come in 200 waves of 25, each in its own queue: all 8 poppers race on
/// every item of a wave, then the queue and its popped items are deleted. SecantusDB
/// (CI's MongoDB-protocol server, single-threaded Python) scans the whole collection
/// for every `findAndModify`, so 5,000 items at once would take it hours; real MongoDB
/// uses the pop index.
async fn poppers_on_both_nodes_pop_each_item_once(a: &Node, b: &Node, admin_a: &Client) {
    const WAVES: usize = 200;
    const PER_WAVE: usize = 25;
    let mut poppers = Vec::new();
    for i in 0..8 {
        let node = if i % 2 == 0 { a } else { b };
        let url = if i % 4 < 2 {
            node.ws(ADMIN, PASSWORD)
        } else {
            node.grpc(ADMIN, PASSWORD)
        };
        let client = connect(&url).await;
        client.set_default_timeout(Duration::from_secs(30));
        poppers.push((url, Arc::new(client)));
    }
    let prefix = unique("mnwiq");
    let started = Instant::now();
    let mut all = Vec::new();
    let mut per_popper = vec![0usize; poppers.len()];
    for wave in 0..WAVES {
        let wiq = format!("{prefix}_{wave}");
        admin_a
            .add_workitem_queue(
                AddWorkItemQueueRequest {
                    workitemqueue: Some(WorkItemQueue {
                        name: wiq.clone(),
                        maxretries: 3,
                        ..Default::default()
                    }),
                    skiprole: true,
                },
                EnvConfig::new(),
            )
            .await
            .expect("add a work item queue");
        let items = (0..PER_WAVE)
            .map(|i| Workitem {
                name: format!("item {wave}.{i}"),
                payload: json!({"wave": wave, "i": i}).to_string(),
                ..Default::default()
            })
            .collect();
        let pushed = admin_a
            .push_workitems(
                PushWorkitemsRequest {
                    wiq: wiq.clone(),
                    items,
                    ..Default::default()
                },
                EnvConfig::new(),
            )
            .await
            .expect("push through A");
        assert_eq!(pushed.workitems.len(), PER_WAVE);

        let tasks: Vec<_> = poppers
            .iter()
            .map(|(url, client)| {
                let (url, client, wiq) = (url.clone(), client.clone(), wiq.clone());
                tokio::spawn(async move {
                    let mut popped = Vec::new();
                    loop {
                        let reply = client
                            .pop_workitem(
                                PopWorkitemRequest {
                                    wiq: wiq.clone(),
                                    ..Default::default()
                                },
                                EnvConfig::new(),
                                None,
                            )
                            .await
                            .unwrap_or_else(|e| panic!("pop {wiq} through {url}: {e:?}"));
                        match reply.workitem {
                            Some(item) => popped.push(item.id),
                            None => return popped,
                        }
                    }
                })
            })
            .collect();
        for (i, task) in tasks.into_iter().enumerate() {
            let popped = task.await.unwrap();
            per_popper[i] += popped.len();
            all.extend(popped);
        }
        admin_a
            .delete_workitem_queue(
                DeleteWorkItemQueueRequest {
                    wiq,
                    purge: true,
                    ..Default::default()
                },
                EnvConfig::new(),
            )
            .await
            .expect("delete the emptied queue");
    }
    for (_, client) in &poppers {
        client.disconnect();
    }
    eprintln!(
        "multinode: {} items pushed and popped in {:?} (per popper {per_popper:?})",
        WAVES * PER_WAVE,
        started.elapsed()
    );
    let distinct: HashSet<&String> = all.iter().collect();
    assert_eq!(distinct.len(), all.len(), "an item was popped twice");
    assert_eq!(
        all.len(),
        WAVES * PER_WAVE,
        "popped per popper: {per_popper:?}"
    );
    // Both nodes did part of the work.
    let (on_a, on_b): (usize, usize) = (
        per_popper.iter().step_by(2).sum(),
        per_popper.iter().skip(1).step_by(2).sum(),
    );
    assert!(on_a > 0 && on_b > 0, "popped per popper: {per_popper:?}");
}

/// A TCP proxy standing in for a Kubernetes Service: each new connection goes to the
/// first backend whose `/readyz` passed at the last poll (every 50 ms).
struct Balancer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
    poller: tokio::task::JoinHandle<()>,
}

impl Balancer {
    async fn start(backends: Vec<(SocketAddr, SocketAddr)>) -> Balancer {
        let ready: Arc<Vec<AtomicBool>> =
            Arc::new(backends.iter().map(|_| AtomicBool::new(true)).collect());
        let poll_ready = ready.clone();
        let health: Vec<SocketAddr> = backends.iter().map(|(_, http)| *http).collect();
        let poller = tokio::spawn(async move {
            loop {
                for (i, http) in health.iter().enumerate() {
                    let ok = tokio::time::timeout(Duration::from_millis(500), readyz(*http))
                        .await
                        .unwrap_or(false);
                    poll_ready[i].store(ok, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let Some(target) = (0..backends.len())
                    .find(|i| ready[*i].load(Ordering::SeqCst))
                    .map(|i| backends[i].0)
                else {
                    continue;
                };
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = inbound.set_nodelay(true);
                        let _ = outbound.set_nodelay(true);
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Balancer { addr, task, poller }
    }
}

/// True when `GET /readyz` answers 200 (a stopped node refuses the connection).
async fn readyz(http: SocketAddr) -> bool {
    try_http(http, "GET", "/readyz", &[], None)
        .await
        .is_some_and(|answer| answer.status == 200)
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.task.abort();
        self.poller.abort();
    }
}

/// Clients connected through the balancer keep inserting while node A gets SIGTERM:
/// they end up on B, and every insert they saw acknowledged is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_moves_clients_to_the_other_node_without_losing_acknowledged_requests() {
    let Some((mongo, amqp)) = backends("sigterm_moves_clients_to_the_other_node") else {
        return;
    };
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(&mongo, &amqp).await;
    let ws_balancer = Balancer::start(vec![
        (cluster.a.http, cluster.a.http),
        (cluster.b.http, cluster.b.http),
    ])
    .await;
    let grpc_balancer = Balancer::start(vec![
        (cluster.a.grpc, cluster.a.http),
        (cluster.b.grpc, cluster.b.http),
    ])
    .await;
    let urls = [
        format!("ws://{ADMIN}:{PASSWORD}@{}", ws_balancer.addr),
        format!("ws://{ADMIN}:{PASSWORD}@{}", ws_balancer.addr),
        format!("grpc://{ADMIN}:{PASSWORD}@{}", grpc_balancer.addr),
        format!("grpc://{ADMIN}:{PASSWORD}@{}", grpc_balancer.addr),
    ];
    let a_gone = Arc::new(AtomicBool::new(false));
    let writing = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for (writer, url) in urls.iter().enumerate() {
        let (url, a_gone, writing) = (url.clone(), a_gone.clone(), writing.clone());
        writers.push(tokio::spawn(async move {
            let client = connect(&url).await;
            // A request that went to a node as it closed gets no answer: give up on it
            // soon and go on (its outcome is unknown, so it is not counted).
            client.set_default_timeout(Duration::from_secs(3));
            let mut acknowledged = Vec::new();
            let mut after_a = 0;
            let deadline = Instant::now() + Duration::from_secs(90);
            let mut n = 0;
            while after_a < 20 {
                assert!(
                    Instant::now() < deadline,
                    "writer {writer} made no progress after node A stopped ({after_a} acks)"
                );
                n += 1;
                let result = client
                    .insert_one(
                        InsertOneRequest {
                            collectionname: "multinodeload".into(),
                            item: json!({"writer": writer, "n": n}).to_string(),
                            ..Default::default()
                        },
                        EnvConfig::new(),
                    )
                    .await;
                match result {
                    Ok(_) => {
                        if acknowledged.is_empty() {
                            writing.fetch_add(1, Ordering::SeqCst);
                        }
                        acknowledged.push(n);
                        if a_gone.load(Ordering::SeqCst) {
                            after_a += 1;
                        }
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
            client.disconnect();
            acknowledged
        }));
    }
    // Every writer is connected (through the balancer, to A) and writing; a moment of
    // load, then SIGTERM.
    let since = Instant::now();
    while writing.load(Ordering::SeqCst) < urls.len() {
        assert!(
            since.elapsed() < Duration::from_secs(60),
            "the writers did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.a.sigterm();
    let clean = tokio::task::block_in_place(|| cluster.a.exited_cleanly(Duration::from_secs(30)));
    assert!(clean, "node A exits cleanly after draining");
    a_gone.store(true, Ordering::SeqCst);

    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.push(writer.await.unwrap());
    }
    // Every acknowledged insert is in the database (checked through B).
    let checker = connect(&cluster.b.ws(ADMIN, PASSWORD)).await;
    for (writer, numbers) in acknowledged.iter().enumerate() {
        assert!(numbers.len() >= 20, "writer {writer}: {numbers:?}");
        for chunk in numbers.chunks(500) {
            let found = checker
                .count(
                    CountRequest {
                        collectionname: "multinodeload".into(),
                        query: json!({"writer": writer, "n": {"$in": chunk}}).to_string(),
                        ..Default::default()
                    },
                    EnvConfig::new(),
                )
                .await
                .expect("count on B")
                .result;
            assert_eq!(
                found as usize,
                chunk.len(),
                "writer {writer}: an acknowledged insert is missing"
            );
        }
    }
    cluster.drop_database().await;
}
