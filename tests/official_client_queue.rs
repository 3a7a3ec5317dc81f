//! The official Rust client (`openiap-client` 0.0.41) using the queue commands
//! (`registerqueue`, `registerexchange`, `queuemessage`, `unregisterqueue`, `queueevent`)
//! over WebSocket and gRPC, on the embedded bus and on RabbitMQ.
//!
//! Every scenario runs four times: `embedded_websocket`, `embedded_grpc`,
//! `rabbitmq_websocket`, `rabbitmq_grpc` (e.g. `rpc::rabbitmq_grpc`). The RabbitMQ
//! variants use `AMQP_URL` when it is set (an unreachable broker is then a failure;
//! `AMQP_URL=off` skips them), else `amqp://guest:guest@127.0.0.1:5672/%2f` when something
//! listens there; when skipped they print `SKIPPED: …` to stderr. Queue and exchange names
//! are unique per run (`qct<id>_…`); on RabbitMQ the named queues and exchanges a test
//! created are deleted at its end.
//!
//! Scenarios (the wire contract is the reference's, see ARCHITECTURE.md / the queue
//! commands):
//! * `named_queue`: a named queue (registered in upper case, answered lower-cased) gets
//!   messages sent by another connection, with their correlationId, `__jwt`/`__user` of
//!   the sender unless `striptoken`, a generated correlationId when none is given, a
//!   non-JSON body as a JSON string literal; two consumers of one named queue share its
//!   messages.
//! * `rpc`: request/reply through `replyto` (the client's `rpc()` twice in a row, and a
//!   hand-made request with its own correlationId).
//! * `timeout`: an RPC to a queue that does not exist gets the `timeout` answer; a second
//!   send there is `bad queue: …` until someone registers it; a send without replyto to
//!   a missing queue is an error; an RPC to a named queue without consumer times out
//!   when its `expiration` passes; `unregisterqueue` stops deliveries and a new
//!   registration gets what waited in the durable queue.
//! * `unregister_timeout`: an RPC sent right after `unregisterqueue` of a temporary queue
//!   gets the `timeout` answer (the queue is gone), three times in a row.
//! * `exchange_direct`, `exchange_fanout`, `exchange_topic`, `exchange_headers`: exchanges
//!   with `addqueue`, routing by key, two fanout consumers, topic wildcards, an RPC through
//!   an exchange, `addqueue: false`.
//! * `temp_queue`: an empty name (or `amq.*`) gives a unique `rust.<random>` queue that
//!   works and goes away with its connection.

mod common;

use std::future::Future;
use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use openiap_client::{
    Client, EnvConfig, OpenIAPError, QueueEvent, QueueMessageRequest, QueueMessageResponse,
    RegisterExchangeRequest, RegisterQueueRequest,
};
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// How long to wait for events that must not come.
const QUIET: Duration = Duration::from_millis(700);
/// The `rpc()` wait; timeouts of the server (unroutable / expired) come well before.
const RPC_WAIT: Duration = Duration::from_secs(10);
const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Bus {
    Embedded,
    RabbitMq,
}

#[derive(Clone, Copy, Debug)]
enum Transport {
    WebSocket,
    Grpc,
}

fn amqp_url() -> String {
    std::env::var("AMQP_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| DEFAULT_AMQP_URL.into())
}

/// `host:port` of an amqp:// URL (port 5672 when absent).
fn amqp_address(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, rest)| rest).unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    if host_port.contains(':') {
        host_port.to_string()
    } else {
        format!("{host_port}:5672")
    }
}

fn rabbitmq_listens(url: &str) -> bool {
    amqp_address(url)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .is_some_and(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok())
}

/// The broker for a RabbitMQ test: `AMQP_URL` when set (never skipped then: an
/// unreachable broker is a failure), `off` to skip, else the local default when
/// something listens there; `None` after printing `SKIPPED: …`.
fn rabbitmq(test: &str) -> Option<String> {
    let skip = |why: String| {
        let _ = writeln!(std::io::stderr(), "SKIPPED: {test}: {why}");
        None
    };
    match std::env::var("AMQP_URL").ok().filter(|url| !url.is_empty()) {
        Some(url) if url == "off" => skip("AMQP_URL=off".into()),
        Some(url) => Some(url),
        None if rabbitmq_listens(DEFAULT_AMQP_URL) => Some(DEFAULT_AMQP_URL.into()),
        None => skip(format!(
            "no AMQP_URL and no RabbitMQ listening at {}",
            amqp_address(DEFAULT_AMQP_URL)
        )),
    }
}

/// A per-run id for queue and exchange names (lower-case, unique across runs and tests).
fn unique_id() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{:x}{:x}{}",
        std::process::id(),
        nanos % 0xffff_ffff_ffff,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

struct Ctx {
    server: TestServer,
    url: String,
    id: String,
    bus: Bus,
    /// Named queues and exchanges created on the broker, deleted at the end (RabbitMQ).
    queues: Mutex<Vec<String>>,
    exchanges: Mutex<Vec<String>>,
}

impl Ctx {
    fn new(test: &str, bus: Bus, transport: Transport) -> Option<Ctx> {
        let server = match bus {
            Bus::Embedded => TestServer::start(),
            Bus::RabbitMq => {
                let url = rabbitmq(test)?;
                TestServer::start_with(|config| config.bus.amqp_url = Some(url))
            }
        };
        let url = match transport {
            Transport::WebSocket => format!("ws://{ADMIN}:{ADMIN_PASSWORD}@{}", server.http()),
            Transport::Grpc => format!("grpc://{ADMIN}:{ADMIN_PASSWORD}@{}", server.grpc()),
        };
        Some(Ctx {
            server,
            url,
            id: unique_id(),
            bus,
            queues: Mutex::new(Vec::new()),
            exchanges: Mutex::new(Vec::new()),
        })
    }

    async fn client(&self) -> Client {
        Client::new_connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("connect {}: {e:?}", self.url))
    }

    fn queue(&self, what: &str) -> String {
        let name = format!("qct{}_{what}", self.id);
        self.queues.lock().unwrap().push(name.clone());
        name
    }

    fn exchange(&self, what: &str) -> String {
        let name = format!("qct{}_{what}", self.id);
        self.exchanges.lock().unwrap().push(name.clone());
        name
    }

    /// Deletes what the test left on the broker (best effort).
    async fn cleanup(self) {
        let Ctx {
            server,
            bus,
            queues,
            exchanges,
            ..
        } = self;
        drop(server);
        if bus != Bus::RabbitMq {
            return;
        }
        let queues = queues.into_inner().unwrap();
        let exchanges = exchanges.into_inner().unwrap();
        let Ok(connection) =
            lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default()).await
        else {
            return;
        };
        for queue in queues {
            if let Ok(channel) = connection.create_channel().await {
                let _ = channel
                    .queue_delete(queue.as_str().into(), Default::default())
                    .await;
            }
        }
        for exchange in exchanges {
            if let Ok(channel) = connection.create_channel().await {
                let _ = channel
                    .exchange_delete(exchange.as_str().into(), Default::default())
                    .await;
            }
        }
        let _ = connection.close(0, "done".into()).await;
    }
}

type QueueCallback = Arc<
    dyn Fn(Arc<Client>, QueueEvent) -> Pin<Box<dyn Future<Output = Option<String>> + Send>>
        + Send
        + Sync,
>;

/// The queue events one callback got.
struct Events {
    label: &'static str,
    rx: mpsc::UnboundedReceiver<QueueEvent>,
}

impl Events {
    async fn next(&mut self, what: &str) -> QueueEvent {
        match tokio::time::timeout(WAIT, self.rx.recv()).await {
            Ok(Some(event)) => event,
            _ => panic!("{}: {what}: no queue event within {WAIT:?}", self.label),
        }
    }

    async fn none(&mut self, what: &str) {
        if let Ok(Some(event)) = tokio::time::timeout(QUIET, self.rx.recv()).await {
            panic!("{}: {what}: unexpected queue event {event:?}", self.label);
        }
    }
}

/// A callback recording every event; with `answer`, events carrying a `replyto` are
/// answered with `answer(body)` (the client sends it to `replyto` with the correlationId).
fn consumer(label: &'static str, answer: Option<fn(&Value) -> Value>) -> (QueueCallback, Events) {
    let (tx, rx) = mpsc::unbounded_channel();
    let callback: QueueCallback = Arc::new(move |_client, event: QueueEvent| {
        let reply = match answer {
            Some(answer) if !event.replyto.is_empty() => serde_json::from_str::<Value>(&event.data)
                .ok()
                .map(|body| answer(&body).to_string()),
            _ => None,
        };
        let _ = tx.send(event);
        Box::pin(async move { reply })
    });
    (callback, Events { label, rx })
}

/// The answer of the `rpc` consumers.
fn echo(body: &Value) -> Value {
    json!({"answer": format!("re: {}", body["text"].as_str().unwrap_or("?")), "n": body["n"]})
}

fn body(event: &QueueEvent) -> Value {
    serde_json::from_str(&event.data)
        .unwrap_or_else(|e| panic!("queue event data is not JSON ({e}): {event:?}"))
}

fn parse(what: &str, text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text:?}"))
}

fn message(queuename: &str, data: Value) -> QueueMessageRequest {
    QueueMessageRequest {
        queuename: queuename.into(),
        data: data.to_string(),
        ..Default::default()
    }
}

fn to_exchange(exchangename: &str, routingkey: &str, data: Value) -> QueueMessageRequest {
    QueueMessageRequest {
        exchangename: exchangename.into(),
        routingkey: routingkey.into(),
        data: data.to_string(),
        ..Default::default()
    }
}

async fn send(client: &Client, request: QueueMessageRequest) -> QueueMessageResponse {
    let what = format!("queue_message {request:?}");
    client
        .queue_message(request, EnvConfig::new())
        .await
        .unwrap_or_else(|e| panic!("{what}: {e:?}"))
}

async fn register(client: &Client, queuename: &str, callback: QueueCallback) -> String {
    client
        .register_queue(
            RegisterQueueRequest {
                queuename: queuename.into(),
            },
            EnvConfig::new(),
            callback,
        )
        .await
        .unwrap_or_else(|e| panic!("register_queue {queuename:?}: {e:?}"))
}

async fn register_exchange(
    client: &Client,
    exchangename: &str,
    algorithm: &str,
    routingkey: &str,
    callback: QueueCallback,
) -> String {
    let queue = client
        .register_exchange(
            RegisterExchangeRequest {
                exchangename: exchangename.into(),
                algorithm: algorithm.into(),
                routingkey: routingkey.into(),
                addqueue: true,
            },
            EnvConfig::new(),
            callback,
        )
        .await
        .unwrap_or_else(|e| {
            panic!("register_exchange {exchangename:?} {algorithm} {routingkey:?}: {e:?}")
        });
    assert!(
        !queue.is_empty(),
        "register_exchange {exchangename} with addqueue returned no queue name"
    );
    queue
}

async fn rpc(client: &Client, request: QueueMessageRequest) -> Result<String, OpenIAPError> {
    client.rpc(request, EnvConfig::new(), RPC_WAIT).await
}

fn assert_timeout_answer(what: &str, answer: &str, text: &str, n: i64) {
    let answer = parse(what, answer);
    assert_eq!(
        answer["command"], "timeout",
        "{what}: expected the timeout answer, got {answer}"
    );
    assert_eq!(answer["text"], text, "{what}: the original body: {answer}");
    assert_eq!(answer["n"], n, "{what}: the original body: {answer}");
    assert!(
        answer.get("__jwt").is_none() && answer.get("__user").is_none(),
        "{what}: the timeout answer must not carry the sender's token: {answer}"
    );
}

// --------------------------------------------------------------------------------------

async fn named_queue(ctx: &Ctx) {
    let consumer_client = ctx.client().await;
    let sender = ctx.client().await;
    let name = ctx.queue("named");

    let (callback, mut events) = consumer("consumer", None);
    let registered = register(&consumer_client, &name.to_uppercase(), callback).await;
    assert_eq!(registered, name, "queue names are lower-cased");

    // A JSON object with a correlationId, token not stripped.
    let reply = send(
        &sender,
        QueueMessageRequest {
            correlation_id: "corr-1".into(),
            ..message(&name, json!({"text": "hello", "n": 1}))
        },
    )
    .await;
    assert_eq!(
        (reply.queuename.as_str(), reply.correlation_id.as_str()),
        (name.as_str(), "corr-1"),
        "queuemessagereply echoes the request: {reply:?}"
    );
    let event = events.next("first message").await;
    assert_eq!(event.queuename, name, "{event:?}");
    assert_eq!(event.correlation_id, "corr-1", "{event:?}");
    assert_eq!(event.replyto, "", "{event:?}");
    let data = body(&event);
    assert_eq!(
        (&data["text"], &data["n"]),
        (&json!("hello"), &json!(1)),
        "{data}"
    );
    assert_eq!(
        data["__user"]["username"], ADMIN,
        "__user of the sender (striptoken false): {data}"
    );
    assert!(
        data["__jwt"].as_str().is_some_and(|jwt| !jwt.is_empty()),
        "__jwt of the sender (striptoken false): {data}"
    );

    // striptoken, no correlationId: the server generates one and returns it.
    let reply = send(
        &sender,
        QueueMessageRequest {
            striptoken: true,
            ..message(&name, json!({"text": "second", "n": 2}))
        },
    )
    .await;
    assert!(
        !reply.correlation_id.is_empty(),
        "a generated correlationId is returned: {reply:?}"
    );
    let event = events.next("second message").await;
    assert_eq!(event.correlation_id, reply.correlation_id, "{event:?}");
    let data = body(&event);
    assert_eq!(data["text"], "second", "{data}");
    assert!(
        data.get("__jwt").is_none() && data.get("__user").is_none(),
        "striptoken removes __jwt/__user: {data}"
    );

    // A body that is not JSON arrives as a JSON string; the name is case-insensitive.
    send(
        &sender,
        QueueMessageRequest {
            queuename: name.to_uppercase(),
            data: "plain text, not json".into(),
            ..Default::default()
        },
    )
    .await;
    let event = events.next("non-JSON body").await;
    assert_eq!(event.queuename, name, "{event:?}");
    assert_eq!(body(&event), json!("plain text, not json"), "{event:?}");
    events.none("after three messages").await;

    // A second consumer (another connection, same user) shares the named queue.
    let second_client = ctx.client().await;
    let (callback, mut second_events) = consumer("second consumer", None);
    assert_eq!(register(&second_client, &name, callback).await, name);
    for n in 0..6 {
        send(&sender, message(&name, json!({"text": "shared", "n": n}))).await;
    }
    let mut got = Vec::new();
    let deadline = Instant::now() + WAIT;
    let (mut first, mut second) = (0, 0);
    while got.len() < 6 && Instant::now() < deadline {
        tokio::select! {
            Some(event) = events.rx.recv() => { first += 1; got.push(body(&event)["n"].as_i64().unwrap()) }
            Some(event) = second_events.rx.recv() => { second += 1; got.push(body(&event)["n"].as_i64().unwrap()) }
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    got.sort();
    assert_eq!(got, vec![0, 1, 2, 3, 4, 5], "each message delivered once");
    assert!(
        first > 0 && second > 0,
        "two consumers of a named queue share its messages (got {first} and {second})"
    );
    events.none("after the shared messages").await;
    second_events.none("after the shared messages").await;

    consumer_client.disconnect();
    second_client.disconnect();
    sender.disconnect();
}

async fn rpc_scenario(ctx: &Ctx) {
    let responder = ctx.client().await;
    let requester = ctx.client().await;
    let name = ctx.queue("rpc");
    let (callback, mut events) = consumer("responder", Some(echo));
    register(&responder, &name, callback).await;

    for (n, text) in ["hi mom, i miss you", "and a second call"]
        .iter()
        .enumerate()
    {
        let answer = rpc(&requester, message(&name, json!({"text": text, "n": n})))
            .await
            .unwrap_or_else(|e| panic!("rpc {n}: {e:?}"));
        let answer = parse("rpc answer", &answer);
        assert_eq!(
            answer,
            json!({"answer": format!("re: {text}"), "n": n}),
            "rpc {n}: the responder's answer (striptoken: no __jwt/__user)"
        );
        let request = events.next("rpc request").await;
        assert_eq!(request.queuename, name, "{request:?}");
        assert!(
            request.replyto.starts_with("rust."),
            "replyto is the requester's temporary queue: {request:?}"
        );
        assert!(!request.correlation_id.is_empty(), "{request:?}");
    }

    // By hand: own reply queue and correlationId.
    let (callback, mut replies) = consumer("reply queue", None);
    let reply_queue = register(&requester, "", callback).await;
    send(
        &requester,
        QueueMessageRequest {
            correlation_id: "rpc-corr-7".into(),
            replyto: reply_queue.clone(),
            ..message(&name, json!({"text": "by hand", "n": 7}))
        },
    )
    .await;
    let request = events.next("hand-made request").await;
    assert_eq!(
        (request.correlation_id.as_str(), request.replyto.as_str()),
        ("rpc-corr-7", reply_queue.as_str()),
        "{request:?}"
    );
    let answer = replies.next("the answer").await;
    assert_eq!(answer.queuename, reply_queue, "{answer:?}");
    assert_eq!(answer.correlation_id, "rpc-corr-7", "{answer:?}");
    assert_eq!(answer.replyto, "", "an answer has no replyto: {answer:?}");
    assert_eq!(body(&answer), json!({"answer": "re: by hand", "n": 7}));
    replies.none("after the answer").await;
    events.none("after the requests").await;

    responder.disconnect();
    requester.disconnect();
}

async fn timeout_scenario(ctx: &Ctx) {
    let owner = ctx.client().await;
    let requester = ctx.client().await;

    // 1. A queue nobody registered: the first RPC is accepted and answered with `timeout`.
    let missing = ctx.queue("missing");
    let answer = rpc(
        &requester,
        message(&missing, json!({"text": "anyone there?", "n": 1})),
    )
    .await
    .unwrap_or_else(|e| panic!("first rpc to the missing queue {missing}: {e:?}"));
    assert_timeout_answer("rpc to a missing queue", &answer, "anyone there?", 1);

    // 2. Later sends to that name: `bad queue`.
    match rpc(&requester, message(&missing, json!({"text": "again", "n": 2}))).await {
        Err(OpenIAPError::ServerError(error)) => assert!(
            error.contains(&format!("bad queue: {missing}")),
            "second rpc to {missing}: expected `bad queue: {missing} …`, got {error}"
        ),
        other => panic!("second rpc to the missing queue {missing}: expected the error `bad queue: {missing} correlationId: …`, got {other:?}"),
    }
    // A send without replyto to a missing queue is an error right away.
    let never = ctx.queue("never");
    let result = requester
        .queue_message(message(&never, json!({"text": "lost"})), EnvConfig::new())
        .await;
    assert!(
        matches!(result, Err(OpenIAPError::ServerError(_))),
        "a send without replyto to the missing queue {never}: expected an error, got {result:?}"
    );

    // 3. Once someone registers it, it works again.
    let (callback, mut revived) = consumer("registered missing", None);
    register(&owner, &missing, callback).await;
    send(
        &requester,
        message(&missing, json!({"text": "now you exist"})),
    )
    .await;
    assert_eq!(
        body(&revived.next("after registration").await)["text"],
        "now you exist"
    );

    // 4. A named queue without consumer: the message expires and the RPC times out.
    let named = ctx.queue("expire");
    let (named_callback, mut named_events) = consumer("named, unregistered", None);
    register(&owner, &named, named_callback.clone()).await;
    owner
        .unregister_queue(EnvConfig::new(), &named)
        .await
        .expect("unregister_queue of the named queue");
    let started = Instant::now();
    let answer = rpc(
        &requester,
        QueueMessageRequest {
            expiration: 1000,
            ..message(&named, json!({"text": "expire me", "n": 5}))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("rpc with expiration 1000 to {named} (no consumer): {e:?}"));
    assert_timeout_answer("rpc that expired", &answer, "expire me", 5);
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "the timeout came after {:?}, before the expiration of 1 s",
        started.elapsed()
    );
    named_events
        .none("nothing delivered after unregisterqueue")
        .await;

    // 5. Unregistered: not delivered, but kept in the durable queue for the next consumer.
    send(&requester, message(&named, json!({"text": "kept"}))).await;
    named_events.none("after unregisterqueue").await;
    // The same callback again: the client stores a callback only once the reply is in,
    // and the server delivers what waited right after the reply, so the event may meet
    // the callback of the first registration (which the client never forgets).
    register(&owner, &named, named_callback).await;
    let event = named_events.next("what waited").await;
    assert_eq!(
        (event.queuename.as_str(), body(&event)["text"].as_str()),
        (named.as_str(), Some("kept")),
        "{event:?}"
    );
    named_events.none("only what waited").await;

    owner.disconnect();
    requester.disconnect();
}

/// `unregisterqueue` of a temporary queue deletes it: an RPC sent once the reply is in
/// is unroutable and gets the `timeout` answer (three rounds).
async fn unregister_timeout(ctx: &Ctx) {
    let owner = ctx.client().await;
    let requester = ctx.client().await;
    for round in 0..3 {
        let (callback, mut temp_events) = consumer("temporary", None);
        let temp = register(&owner, "", callback).await;
        owner
            .unregister_queue(EnvConfig::new(), &temp)
            .await
            .expect("unregister_queue of the temporary queue");
        let answer = rpc(
            &requester,
            message(&temp, json!({"text": "gone?", "n": round})),
        )
        .await
        .unwrap_or_else(|e| {
            panic!(
                "round {round}: rpc right after unregisterqueue of the temporary queue {temp}: \
                     expected the timeout answer, got {e:?}"
            )
        });
        assert_timeout_answer(
            "rpc to an unregistered temporary queue",
            &answer,
            "gone?",
            round,
        );
        temp_events.none("after unregistering").await;
    }
    owner.disconnect();
    requester.disconnect();
}

async fn exchange_direct(ctx: &Ctx) {
    let consumer_client = ctx.client().await;
    let sender = ctx.client().await;
    let exchange = ctx.exchange("direct");
    let (callback, mut events) = consumer("direct rk1", Some(echo));
    let queue = register_exchange(&consumer_client, &exchange, "direct", "rk1", callback).await;

    let miss = sender
        .queue_message(
            to_exchange(&exchange, "rk2", json!({"text": "not for rk1"})),
            EnvConfig::new(),
        )
        .await;
    assert!(
        miss.is_ok(),
        "a send to {exchange} with a key nobody bound is not an error (as in AMQP): {miss:?}"
    );
    let reply = send(
        &sender,
        QueueMessageRequest {
            correlation_id: "ex-1".into(),
            ..to_exchange(&exchange, "rk1", json!({"text": "for rk1", "n": 1}))
        },
    )
    .await;
    assert_eq!(reply.exchangename, exchange, "{reply:?}");
    let event = events.next("message for rk1").await;
    assert_eq!(event.queuename, queue, "the bound queue's name: {event:?}");
    assert_eq!(event.exchangename, exchange, "{event:?}");
    assert_eq!(event.routingkey, "rk1", "{event:?}");
    assert_eq!(event.correlation_id, "ex-1", "{event:?}");
    assert_eq!(body(&event)["text"], "for rk1");
    events.none("only the rk1 message").await;

    // RPC through the exchange.
    let answer = rpc(
        &sender,
        to_exchange(&exchange, "rk1", json!({"text": "via exchange", "n": 2})),
    )
    .await
    .unwrap_or_else(|e| panic!("rpc through {exchange}: {e:?}"));
    assert_eq!(
        parse("rpc answer", &answer),
        json!({"answer": "re: via exchange", "n": 2})
    );
    assert!(!events.next("rpc request").await.replyto.is_empty());

    // Without addqueue: no queue.
    let plain = ctx.exchange("noqueue");
    let (callback, _unused) = consumer("no queue", None);
    let queue = consumer_client
        .register_exchange(
            RegisterExchangeRequest {
                exchangename: plain.clone(),
                algorithm: "direct".into(),
                routingkey: "".into(),
                addqueue: false,
            },
            EnvConfig::new(),
            callback,
        )
        .await
        .unwrap_or_else(|e| panic!("register_exchange {plain} without addqueue: {e:?}"));
    assert_eq!(queue, "", "no queue without addqueue");

    consumer_client.disconnect();
    sender.disconnect();
}

async fn exchange_fanout(ctx: &Ctx) {
    let first_client = ctx.client().await;
    let second_client = ctx.client().await;
    let sender = ctx.client().await;
    let exchange = ctx.exchange("fanout");
    let (callback, mut first) = consumer("fanout 1", None);
    let first_queue = register_exchange(&first_client, &exchange, "fanout", "", callback).await;
    let (callback, mut second) = consumer("fanout 2", None);
    let second_queue = register_exchange(&second_client, &exchange, "fanout", "", callback).await;
    assert_ne!(
        first_queue, second_queue,
        "each consumer gets its own queue"
    );

    send(
        &sender,
        to_exchange(&exchange, "any.key", json!({"text": "to all", "n": 1})),
    )
    .await;
    for (events, queue) in [(&mut first, &first_queue), (&mut second, &second_queue)] {
        let event = events.next("fanout message").await;
        assert_eq!(&event.queuename, queue, "{event:?}");
        assert_eq!(event.exchangename, exchange, "{event:?}");
        assert_eq!(body(&event)["text"], "to all");
    }
    first.none("one copy each").await;
    second.none("one copy each").await;

    // After unregisterqueue, only the other consumer gets messages.
    first_client
        .unregister_queue(EnvConfig::new(), &first_queue)
        .await
        .expect("unregister_queue of the exchange queue");
    send(
        &sender,
        to_exchange(&exchange, "", json!({"text": "to one"})),
    )
    .await;
    assert_eq!(
        body(&second.next("after unregister").await)["text"],
        "to one"
    );
    first.none("unregistered").await;

    first_client.disconnect();
    second_client.disconnect();
    sender.disconnect();
}

async fn exchange_topic(ctx: &Ctx) {
    let client = ctx.client().await;
    let sender = ctx.client().await;
    let exchange = ctx.exchange("topic");
    let (callback, mut created) = consumer("orders.*.created", None);
    let created_queue =
        register_exchange(&client, &exchange, "topic", "orders.*.created", callback).await;
    let (callback, mut all) = consumer("orders.#", None);
    let all_queue = register_exchange(&client, &exchange, "topic", "orders.#", callback).await;

    send(
        &sender,
        to_exchange(&exchange, "orders.eu.created", json!({"text": "created"})),
    )
    .await;
    let event = created.next("orders.eu.created").await;
    assert_eq!(
        (event.queuename.as_str(), event.routingkey.as_str()),
        (created_queue.as_str(), "orders.eu.created"),
        "{event:?}"
    );
    let event = all.next("orders.eu.created").await;
    assert_eq!(event.queuename, all_queue, "{event:?}");
    assert_eq!(body(&event)["text"], "created");

    let miss = sender
        .queue_message(
            to_exchange(&exchange, "orders.eu.deleted", json!({"text": "deleted"})),
            EnvConfig::new(),
        )
        .await;
    assert!(
        miss.is_ok(),
        "orders.eu.deleted is bound (orders.#): {miss:?}"
    );
    let event = all.next("orders.eu.deleted").await;
    assert_eq!(body(&event)["text"], "deleted");
    assert_eq!(event.routingkey, "orders.eu.deleted");
    let miss = sender
        .queue_message(
            to_exchange(&exchange, "invoices.eu.created", json!({"text": "invoice"})),
            EnvConfig::new(),
        )
        .await;
    assert!(
        miss.is_ok(),
        "a send to {exchange} with a key nobody bound is not an error (as in AMQP): {miss:?}"
    );
    created.none("orders.*.created matches neither").await;
    all.none("orders.# does not match invoices").await;

    client.disconnect();
    sender.disconnect();
}

async fn exchange_headers(ctx: &Ctx) {
    let client = ctx.client().await;
    let sender = ctx.client().await;
    let exchange = ctx.exchange("headers");
    let (callback, mut events) = consumer("headers", None);
    // Bound without header arguments: every message matches (x-match all of nothing).
    let queue = register_exchange(&client, &exchange, "headers", "", callback).await;
    send(
        &sender,
        to_exchange(&exchange, "some.key", json!({"text": "by headers", "n": 1})),
    )
    .await;
    let event = events.next("headers exchange message").await;
    assert_eq!(event.queuename, queue, "{event:?}");
    assert_eq!(event.exchangename, exchange, "{event:?}");
    assert_eq!(body(&event)["text"], "by headers");
    events.none("one message").await;
    client.disconnect();
    sender.disconnect();
}

async fn temp_queue(ctx: &Ctx) {
    let owner = ctx.client().await;
    let other = ctx.client().await;
    let (callback, mut events) = consumer("temporary", None);
    let first = register(&owner, "", callback.clone()).await;
    let second = register(&owner, "", callback.clone()).await;
    let amq = register(&owner, "amq.whatever", callback).await;
    let (callback, _other_events) = consumer("other temporary", None);
    let third = register(&other, "", callback).await;
    for name in [&first, &second, &amq, &third] {
        assert!(
            name.starts_with("rust.") && name.len() > "rust.".len(),
            "temporary queue names are <agent>.<random> (agent rust): {name:?}"
        );
        assert_eq!(name, &name.to_lowercase());
    }
    let mut names = vec![&first, &second, &amq, &third];
    names.sort();
    names.dedup();
    assert_eq!(
        names.len(),
        4,
        "temporary queue names are unique: {names:?}"
    );

    for (queue, n) in [(&first, 1), (&second, 2), (&amq, 3)] {
        let reply = send(&other, message(queue, json!({"text": "to temp", "n": n}))).await;
        assert_eq!(&reply.queuename, queue);
        let event = events.next("message to a temporary queue").await;
        assert_eq!(&event.queuename, queue, "{event:?}");
        assert_eq!(body(&event)["n"], n);
    }
    events.none("one message each").await;

    // The temporary queues go with their connection.
    owner.disconnect();
    let deadline = Instant::now() + WAIT;
    loop {
        let result = other
            .queue_message(message(&first, json!({"text": "late"})), EnvConfig::new())
            .await;
        match result {
            Err(OpenIAPError::ServerError(_)) => break,
            _ if Instant::now() > deadline => panic!(
                "{first} still takes messages {WAIT:?} after its connection closed: {result:?}"
            ),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    other.disconnect();
}

/// One test per bus and transport for each scenario.
macro_rules! scenarios {
    ($($module:ident => $scenario:ident,)*) => {$(
        mod $module {
            use super::*;

            async fn run(test: &str, bus: Bus, transport: Transport) {
                let Some(ctx) = Ctx::new(test, bus, transport) else { return };
                // In a task, so that the broker is cleaned up after a failure too.
                let ctx = Arc::new(ctx);
                let scenario = tokio::spawn({
                    let ctx = ctx.clone();
                    async move { $scenario(&ctx).await }
                });
                let outcome = scenario.await;
                if let Ok(ctx) = Arc::try_unwrap(ctx) {
                    ctx.cleanup().await;
                }
                if let Err(error) = outcome {
                    std::panic::resume_unwind(error.into_panic());
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded_websocket() {
                run(concat!(stringify!($module), "::embedded_websocket"), Bus::Embedded, Transport::WebSocket).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded_grpc() {
                run(concat!(stringify!($module), "::embedded_grpc"), Bus::Embedded, Transport::Grpc).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn rabbitmq_websocket() {
                run(concat!(stringify!($module), "::rabbitmq_websocket"), Bus::RabbitMq, Transport::WebSocket).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn rabbitmq_grpc() {
                run(concat!(stringify!($module), "::rabbitmq_grpc"), Bus::RabbitMq, Transport::Grpc).await;
            }
        }
    )*};
}

scenarios! {
    named_queue => named_queue,
    rpc => rpc_scenario,
    timeout => timeout_scenario,
    unregister_timeout => unregister_timeout,
    exchange_direct => exchange_direct,
    exchange_fanout => exchange_fanout,
    exchange_topic => exchange_topic,
    exchange_headers => exchange_headers,
    temp_queue => temp_queue,
}
