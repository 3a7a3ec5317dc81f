//! Work items and files with the official Python (`openiap` 0.0.37) and Node
//! (`@openiap/nodeapi` 0.0.39) clients over WebSocket and gRPC:
//! `tests/clients/python/work_check.py` and `tests/clients/node/work_check.js` (see their
//! headers). Installation and skips as in `official_clients_py_node.rs`: without
//! `OPENCORE_PYTHON_CLIENT` / `OPENCORE_NODE_CLIENT_DIR` a test prints `SKIPPED: …`.

mod common;

use common::scripts::*;
use common::*;

fn unique_id() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    )
}

fn python(test: &str, transport: Transport) {
    let Some(python) = env_var(PYTHON_VAR) else {
        return skipped(PYTHON_VAR, test);
    };
    let server = TestServer::start();
    let mut command = client_command(&python);
    command
        .env("WORK_CHECK_ID", unique_id())
        .arg(clients_dir().join("python/work_check.py"))
        .arg(url(&server, transport));
    run_check(test, command);
}

fn node(test: &str, transport: Transport) {
    let Some(mut command) = node_command(test) else {
        return;
    };
    let server = TestServer::start();
    command
        .env("WORK_CHECK_ID", unique_id())
        .arg(clients_dir().join("node/work_check.js"))
        .arg(url(&server, transport));
    run_check(test, command);
}

#[test]
fn python_client_work_items_and_files_over_websocket() {
    python(
        "python_client_work_items_and_files_over_websocket",
        Transport::WebSocket,
    );
}

#[test]
fn python_client_work_items_and_files_over_grpc() {
    python(
        "python_client_work_items_and_files_over_grpc",
        Transport::Grpc,
    );
}

#[test]
fn node_client_work_items_and_files_over_websocket() {
    node(
        "node_client_work_items_and_files_over_websocket",
        Transport::WebSocket,
    );
}

#[test]
fn node_client_work_items_and_files_over_grpc() {
    node(
        "node_client_work_items_and_files_over_grpc",
        Transport::Grpc,
    );
}
