//! The official Python (`openiap` 0.0.37, pure Python) and Node (`@openiap/nodeapi`
//! 0.0.39) clients against the real server over WebSocket and gRPC: each signs in,
//! watches a collection, gets the insert / update / replace / delete events of its own
//! changes with the right documents, unwatches, and then gets no further event. And
//! each uses the queue commands from two or three connections, on the embedded bus and
//! on RabbitMQ: temporary and named queues, RPC through replyto, timeouts, exchanges.
//! The Python and Node clients also push, pop (files inlined zlib-deflated), retries, updates
//! and delete work items (`tests/clients/{python,node}/workitem_check.*`).
//!
//! The clients run as child processes: `tests/clients/python/watch_check.py`,
//! `tests/clients/node/watch_check.js`, `tests/clients/python/queue_check.py` and
//! `tests/clients/node/queue_check.js` (exit status 0 = every check passed). Where they
//! are installed comes from the environment (`.ci/run` installs both and sets these):
//! * `OPENCORE_PYTHON_CLIENT`: a Python interpreter that has the packages of
//!   `tests/clients/python/requirements.txt` (e.g. a venv's `bin/python`);
//! * `OPENCORE_NODE_CLIENT_DIR`: a directory whose `node_modules` holds
//!   `@openiap/nodeapi` (`tests/clients/node` after `npm ci`); `OPENCORE_NODE` names the
//!   `node` binary (default `node` on the PATH).
//!
//! Without the variable a test prints `SKIPPED: …` to stderr and returns; with it, a
//! client that cannot run is a failure. The RabbitMQ queue tests use `AMQP_URL` when it
//! is set (an unreachable broker is then a failure; `AMQP_URL=off` skips them), else
//! `amqp://guest:guest@127.0.0.1:5672/%2f` if something listens there, and otherwise
//! print `SKIPPED: …`.

mod common;

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use common::scripts::*;
use common::*;

fn python(test: &str, transport: Transport) {
    python_script(test, "python/watch_check.py", transport);
}

fn python_script(test: &str, script: &str, transport: Transport) {
    let Some(python) = env_var(PYTHON_VAR) else {
        return skipped(PYTHON_VAR, test);
    };
    let server = TestServer::start();
    let mut command = client_command(&python);
    command
        .arg(clients_dir().join(script))
        .arg(url(&server, transport));
    run_check(test, command);
}

// Work items: `tests/clients/python/workitem_check.py` (see its header).
#[test]
fn python_client_workitems_over_websocket() {
    python_script(
        "python_client_workitems_over_websocket",
        "python/workitem_check.py",
        Transport::WebSocket,
    );
}

#[test]
fn python_client_workitems_over_grpc() {
    python_script(
        "python_client_workitems_over_grpc",
        "python/workitem_check.py",
        Transport::Grpc,
    );
}

fn node(test: &str, transport: Transport) {
    node_script(test, "node/watch_check.js", transport);
}

fn node_script(test: &str, script: &str, transport: Transport) {
    let Some(mut command) = node_command(test) else {
        return;
    };
    let server = TestServer::start();
    command
        .arg(clients_dir().join(script))
        .arg(url(&server, transport));
    run_check(test, command);
}

// Work items: `tests/clients/node/workitem_check.js` (see its header).
#[test]
fn node_client_workitems_over_websocket() {
    node_script(
        "node_client_workitems_over_websocket",
        "node/workitem_check.js",
        Transport::WebSocket,
    );
}

#[test]
fn node_client_workitems_over_grpc() {
    node_script(
        "node_client_workitems_over_grpc",
        "node/workitem_check.js",
        Transport::Grpc,
    );
}

#[test]
fn python_client_watches_over_websocket() {
    python("python_client_watches_over_websocket", Transport::WebSocket);
}

#[test]
fn python_client_watches_over_grpc() {
    python("python_client_watches_over_grpc", Transport::Grpc);
}

#[test]
fn node_client_watches_over_websocket() {
    node("node_client_watches_over_websocket", Transport::WebSocket);
}

#[test]
fn node_client_watches_over_grpc() {
    node("node_client_watches_over_grpc", Transport::Grpc);
}

// ---------------------------------------------------------------------------------------
// Queues: `tests/clients/python/queue_check.py` and `tests/clients/node/queue_check.js`
// (see their headers for what they check) on the embedded bus and on RabbitMQ (broker
// choice and skips: `rabbitmq`). The named queues and exchanges a check created on the
// broker are deleted afterwards.

const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

#[derive(Clone, Copy, PartialEq)]
enum Bus {
    Embedded,
    RabbitMq,
}

fn amqp_url() -> String {
    env_var("AMQP_URL").unwrap_or_else(|| DEFAULT_AMQP_URL.into())
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
    use std::net::ToSocketAddrs;
    amqp_address(url)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .is_some_and(|addr| {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
        })
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

/// Lower-case, unique across runs and tests: the scripts' `QUEUE_CHECK_ID`.
fn unique_id() -> String {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{:x}{:x}{}",
        std::process::id(),
        nanos % 0xffff_ffff_ffff,
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// Best effort: deletes `<prefix>_<name>` queues and exchanges from the broker.
fn delete_from_broker(prefix: &str, queues: &[&str], exchanges: &[&str]) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    runtime.block_on(async {
        let Ok(connection) =
            lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default()).await
        else {
            return;
        };
        for queue in queues {
            if let Ok(channel) = connection.create_channel().await {
                let name = format!("{prefix}_{queue}");
                let _ = channel
                    .queue_delete(name.as_str().into(), Default::default())
                    .await;
            }
        }
        for exchange in exchanges {
            if let Ok(channel) = connection.create_channel().await {
                let name = format!("{prefix}_{exchange}");
                let _ = channel
                    .exchange_delete(name.as_str().into(), Default::default())
                    .await;
            }
        }
        let _ = connection.close(0, "done".into()).await;
    });
}

const QUEUE_CHECK_EXCHANGES: &[&str] = &["direct", "fanout", "topic", "headers"];

/// Runs a queue check script against a server on `bus`; `tag` is the script's name
/// prefix (`qcp` Python, `qcn` Node) and `queues` the named queues it creates.
fn queue_check(
    test: &str,
    bus: Bus,
    transport: Transport,
    mut command: Command,
    script: &str,
    tag: &str,
    queues: &[&str],
) {
    let server = match bus {
        Bus::Embedded => TestServer::start(),
        Bus::RabbitMq => {
            let Some(amqp) = rabbitmq(test) else {
                return;
            };
            TestServer::start_with(|config| config.bus.amqp_url = Some(amqp))
        }
    };
    let id = unique_id();
    command
        .env("QUEUE_CHECK_ID", &id)
        .env("QUEUE_CHECK_TIMEOUT", "45")
        .arg(clients_dir().join(script))
        .arg(url(&server, transport));
    let outcome =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_check(test, command)));
    drop(server);
    if bus == Bus::RabbitMq {
        delete_from_broker(&format!("{tag}{id}"), queues, QUEUE_CHECK_EXCHANGES);
    }
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

fn python_queues(test: &str, bus: Bus, transport: Transport) {
    let Some(python) = env_var(PYTHON_VAR) else {
        return skipped(PYTHON_VAR, test);
    };
    let command = client_command(&python);
    let queues = ["named", "rpc", "missing", "kept"];
    queue_check(
        test,
        bus,
        transport,
        command,
        "python/queue_check.py",
        "qcp",
        &queues,
    );
}

fn node_queues(test: &str, bus: Bus, transport: Transport) {
    let Some(command) = node_command(test) else {
        return;
    };
    let queues = ["named", "rpc", "missing", "expire"];
    queue_check(
        test,
        bus,
        transport,
        command,
        "node/queue_check.js",
        "qcn",
        &queues,
    );
}

#[test]
fn python_client_queues_embedded_over_websocket() {
    python_queues(
        "python_client_queues_embedded_over_websocket",
        Bus::Embedded,
        Transport::WebSocket,
    );
}

#[test]
fn python_client_queues_embedded_over_grpc() {
    python_queues(
        "python_client_queues_embedded_over_grpc",
        Bus::Embedded,
        Transport::Grpc,
    );
}

#[test]
fn python_client_queues_rabbitmq_over_websocket() {
    python_queues(
        "python_client_queues_rabbitmq_over_websocket",
        Bus::RabbitMq,
        Transport::WebSocket,
    );
}

#[test]
fn python_client_queues_rabbitmq_over_grpc() {
    python_queues(
        "python_client_queues_rabbitmq_over_grpc",
        Bus::RabbitMq,
        Transport::Grpc,
    );
}

#[test]
fn node_client_queues_embedded_over_websocket() {
    node_queues(
        "node_client_queues_embedded_over_websocket",
        Bus::Embedded,
        Transport::WebSocket,
    );
}

#[test]
fn node_client_queues_embedded_over_grpc() {
    node_queues(
        "node_client_queues_embedded_over_grpc",
        Bus::Embedded,
        Transport::Grpc,
    );
}

#[test]
fn node_client_queues_rabbitmq_over_websocket() {
    node_queues(
        "node_client_queues_rabbitmq_over_websocket",
        Bus::RabbitMq,
        Transport::WebSocket,
    );
}

#[test]
fn node_client_queues_rabbitmq_over_grpc() {
    node_queues(
        "node_client_queues_rabbitmq_over_grpc",
        Bus::RabbitMq,
        Transport::Grpc,
    );
}
