//! Files with the official Python (`openiap` 0.0.37) and Node (`@openiap/nodeapi`
//! 0.0.39) clients over WebSocket and gRPC: Node uploads and downloads 0-byte, 1-byte,
//! 300 KiB and 5 MiB files (`tests/clients/node/file_check.js`); Python, which has no
//! upload, downloads files the test uploaded over the raw protocol
//! (`tests/clients/python/file_check.py`). Where the clients are installed comes from
//! `OPENCORE_PYTHON_CLIENT` and `OPENCORE_NODE_CLIENT_DIR` as for
//! `official_clients_py_node.rs`; without them a test prints `SKIPPED: …` and returns.

mod common;

use common::scripts::*;
use common::*;
use opencore::proto::{BeginStream, EndStream, Stream, UploadRequest, UploadResponse};

fn node(test: &str, transport: Transport) {
    let Some(mut command) = node_command(test) else {
        return;
    };
    let server = TestServer::start();
    let work = tempfile::tempdir().expect("temp dir");
    command
        .arg(clients_dir().join("node/file_check.js"))
        .arg(url(&server, transport))
        .arg(work.path());
    run_check(test, command);
}

/// Uploads `bytes` over the raw protocol as the admin; returns the file id.
fn raw_upload(server: &TestServer, name: &str, bytes: &[u8]) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut client = RawClient::connect(server.tcp()).await;
        client.signin(ADMIN, ADMIN_PASSWORD).await;
        let request = UploadRequest {
            filename: name.into(),
            ..Default::default()
        };
        let envelope = client.envelope("upload", &request);
        let id = client.send(envelope).await;
        let mut begin = client.envelope("beginstream", &BeginStream::default());
        begin.rid = id.clone();
        client.send(begin).await;
        for part in bytes.chunks(1024 * 1024) {
            let mut chunk = client.envelope(
                "stream",
                &Stream {
                    data: part.to_vec().into(),
                },
            );
            chunk.rid = id.clone();
            client.send(chunk).await;
        }
        let mut end = client.envelope("endstream", &EndStream::default());
        end.rid = id.clone();
        client.send(end).await;
        let reply = client.reply().await;
        assert_eq!(reply.command, "uploadreply", "{:?}", error_message(&reply));
        decode::<UploadResponse>(&reply).id
    })
}

fn python(test: &str, transport: Transport) {
    let Some(python) = env_var(PYTHON_VAR) else {
        return skipped(PYTHON_VAR, test);
    };
    let server = TestServer::start();
    let work = tempfile::tempdir().expect("temp dir");
    let out = work.path().join("out");
    std::fs::create_dir_all(&out).expect("out dir");
    let mut command = client_command(&python);
    command
        .arg(clients_dir().join("python/file_check.py"))
        .arg(url(&server, transport))
        .arg(&out);
    for (n, size) in [0usize, 1, 300 * 1024 + 7, 5 * 1024 * 1024]
        .into_iter()
        .enumerate()
    {
        let bytes: Vec<u8> = (0..size)
            .map(|i| (i * 31 + n * 7 + i / 251) as u8)
            .collect();
        let name = format!("py-{size}.bin");
        let expected = work.path().join(&name);
        std::fs::write(&expected, &bytes).expect("expected content");
        let id = raw_upload(&server, &name, &bytes);
        command.arg(format!("{id}={}", expected.display()));
    }
    run_check(test, command);
}

#[test]
fn node_client_files_over_websocket() {
    node("node_client_files_over_websocket", Transport::WebSocket);
}

#[test]
fn node_client_files_over_grpc() {
    node("node_client_files_over_grpc", Transport::Grpc);
}

#[test]
fn python_client_downloads_over_websocket() {
    python(
        "python_client_downloads_over_websocket",
        Transport::WebSocket,
    );
}

#[test]
fn python_client_downloads_over_grpc() {
    python("python_client_downloads_over_grpc", Transport::Grpc);
}
