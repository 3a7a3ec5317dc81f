//! Files with the official Python (`openiap` 0.0.37) and Node (`@openiap/nodeapi`
//! 0.0.39) clients over WebSocket and gRPC: Node uploads and downloads 0-byte, 1-byte,
//! 300 KiB and 5 MiB files (`tests/clients/node/file_check.js`); Python, which has no
//! upload, downloads files the test uploaded over the raw protocol
//! (`tests/clients/python/file_check.py`). Where the clients are installed comes from
//! `OPENCORE_PYTHON_CLIENT` and `OPENCORE_NODE_CLIENT_DIR` as for
//! `official_clients_py_node.rs`; without them a test prints `SKIPPED: …` and returns.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use opencore::proto::{BeginStream, EndStream, Stream, UploadRequest, UploadResponse};

const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

fn skipped(var: &str, test: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: {var} not set; {test} needs the official client installed (see .ci/run)"
    );
}

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

#[derive(Clone, Copy)]
enum Transport {
    WebSocket,
    Grpc,
}

fn url(server: &TestServer, transport: Transport) -> String {
    match transport {
        Transport::WebSocket => format!("ws://{ADMIN}:{ADMIN_PASSWORD}@{}/ws/v2", server.http()),
        Transport::Grpc => format!("grpc://{ADMIN}:{ADMIN_PASSWORD}@{}", server.grpc()),
    }
}

fn client_command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new(program);
    command
        .env("enable_analytics", "false")
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("WATCH_CHECK_TIMEOUT", "45");
    for var in [
        "apiurl",
        "grpcapiurl",
        "wsapiurl",
        "jwt",
        "OPENIAP_USERNAME",
        "OPENIAP_PASSWORD",
        "OPENIAP_JWT",
    ] {
        command.env_remove(var);
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

fn run_check(label: &str, mut command: Command) {
    let started = Instant::now();
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("{label}: cannot start {command:?}: {e}"));
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let status = loop {
        match child.try_wait().expect("wait for the client") {
            Some(status) => break Some(status),
            None if started.elapsed() > CHILD_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let output = format!(
        "--- stdout ---\n{}--- stderr ---\n{}",
        stdout.join().unwrap_or_default(),
        stderr.join().unwrap_or_default()
    );
    match status {
        Some(status) if status.success() => eprintln!("{label}: passed\n{output}"),
        Some(status) => panic!("{label}: the client check failed ({status})\n{output}"),
        None => panic!("{label}: the client check did not end within {CHILD_TIMEOUT:?}\n{output}"),
    }
}

fn node(test: &str, transport: Transport) {
    let Some(dir) = env_var("OPENCORE_NODE_CLIENT_DIR") else {
        return skipped("OPENCORE_NODE_CLIENT_DIR", test);
    };
    let modules = Path::new(&dir).join("node_modules");
    let server = TestServer::start();
    let work = tempfile::tempdir().expect("temp dir");
    let mut command = client_command(env_var("OPENCORE_NODE").unwrap_or_else(|| "node".into()));
    command
        .env("NODE_PATH", &modules)
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
    let Some(python) = env_var("OPENCORE_PYTHON_CLIENT") else {
        return skipped("OPENCORE_PYTHON_CLIENT", test);
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
