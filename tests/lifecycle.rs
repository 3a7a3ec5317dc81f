//! The `opencore` binary as an operator runs it: first start on a fresh data dir,
//! SIGTERM with a request in flight, restart on the same data dir; SIGTERM with a drain
//! delay (not ready, still serving); a second process on the same data dir.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use opencore::proto::SigninRequest;

fn spawn(data_dir: &std::path::Path, tcp_port: u16, http_port: u16) -> Child {
    spawn_with(data_dir, tcp_port, http_port, &[], Stdio::null())
}

fn spawn_with(
    data_dir: &std::path::Path,
    tcp_port: u16,
    http_port: u16,
    extra: &[&str],
    stderr: Stdio,
) -> Child {
    Command::new(env!("CARGO_BIN_EXE_opencore"))
        .args([
            "serve",
            "--bind",
            "127.0.0.1",
            "--grpc-port",
            "0",
            "--no-pipe",
            "--bcrypt-cost",
            "10",
        ])
        .args([
            "--tcp-port",
            &tcp_port.to_string(),
            "--http-port",
            &http_port.to_string(),
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra)
        .env_remove("OPENCORE_ADMIN_PASSWORD")
        .env_remove("OPENCORE_JWT_SECRET")
        .env_remove("aes_secret")
        // CI exports MONGODB_URL for the MongoDB tests; this one is about the embedded store.
        .env_remove("MONGODB_URL")
        .env_remove("mongodb_url")
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("start opencore")
}

fn wait_for_port(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "server did not start listening on {addr}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "server did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_sigterm_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let (tcp_port, http_port) = (free_port(), free_port());
    let tcp: SocketAddr = format!("127.0.0.1:{tcp_port}").parse().unwrap();

    let mut server = spawn(&data_dir, tcp_port, http_port);
    // The generated password is printed once on stdout...
    let mut stdout = BufReader::new(server.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let password = line
        .trim()
        .rsplit("password: ")
        .next()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert!(password.len() >= 16, "{line}");
    // ...and kept, readable by the owner only, like the generated signing secret.
    for file in ["admin-password", "jwt-secret"] {
        let mode = std::fs::metadata(data_dir.join(file))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{file}");
    }
    assert_eq!(
        std::fs::read_to_string(data_dir.join("admin-password")).unwrap(),
        password
    );
    wait_for_port(tcp);

    let mut client = RawClient::connect(tcp).await;
    client.signin(ADMIN, &password).await;
    // A sign-in is in flight when SIGTERM arrives: it is still answered.
    let pending = client.envelope(
        "signin",
        &SigninRequest {
            username: ADMIN.into(),
            password: password.clone(),
            ..Default::default()
        },
    );
    let id = client.send(pending).await;
    // Let the server read it first (bcrypt keeps it in flight for far longer): bytes
    // still unread in the socket when draining starts are never read, by design.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    sigterm(&server);
    let reply = client.reply().await;
    assert_eq!(
        (reply.rid.as_str(), reply.command.as_str()),
        (id.as_str(), "signinreply")
    );
    assert!(client.closed().await, "connections close during shutdown");
    let status = tokio::task::spawn_blocking(move || wait_exit(&mut server))
        .await
        .unwrap();
    assert!(status.success(), "exit status {status:?}");

    // Restart on the same data dir: nothing regenerated, the same credentials work.
    let mut server = spawn(&data_dir, tcp_port, http_port);
    wait_for_port(tcp);
    let mut client = RawClient::connect(tcp).await;
    client.signin(ADMIN, &password).await;
    sigterm(&server);
    let mut out = String::new();
    std::io::Read::read_to_string(server.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(
        !out.contains("password"),
        "no new password on restart: {out}"
    );
    let status = tokio::task::spawn_blocking(move || wait_exit(&mut server))
        .await
        .unwrap();
    assert!(status.success());
}

/// With `--drain-delay`, SIGTERM first makes `/readyz` fail while everything keeps
/// working (new connections included), so a load balancer can stop routing to the node
/// before its connections are closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_drain_delay_fails_readiness_but_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (tcp_port, http_port) = (free_port(), free_port());
    let tcp: SocketAddr = format!("127.0.0.1:{tcp_port}").parse().unwrap();
    let http: SocketAddr = format!("127.0.0.1:{http_port}").parse().unwrap();
    let extra = ["--admin-password", "drain-test", "--drain-delay", "3s"];
    let mut server = spawn_with(
        &dir.path().join("data"),
        tcp_port,
        http_port,
        &extra,
        Stdio::null(),
    );
    wait_for_port(tcp);
    assert_eq!(http_get(http, "/readyz", None).await.0, 200);
    let mut before = RawClient::connect(tcp).await;
    before.signin(ADMIN, "drain-test").await;
    let terminated = Instant::now();
    sigterm(&server);
    let deadline = Instant::now() + Duration::from_secs(2);
    while http_get(http, "/readyz", None).await.0 != 503 {
        assert!(
            Instant::now() < deadline,
            "/readyz still passes after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Still serving: the old connection and a new one.
    before.signin(ADMIN, "drain-test").await;
    let mut after = RawClient::connect(tcp).await;
    after.signin(ADMIN, "drain-test").await;
    assert!(
        terminated.elapsed() < Duration::from_secs(3),
        "the checks above ran inside the drain delay"
    );
    assert!(
        before.closed().await,
        "connections close once the delay ends"
    );
    let status = tokio::task::spawn_blocking(move || wait_exit(&mut server))
        .await
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert!(
        terminated.elapsed() >= Duration::from_secs(3),
        "exited before the drain delay ended"
    );
}

/// The embedded store serves one node: a second process on the same data dir stops at
/// once with a message that says so (the first keeps running).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_process_on_the_same_data_dir_fails_fast() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let (tcp_port, http_port) = (free_port(), free_port());
    let tcp: SocketAddr = format!("127.0.0.1:{tcp_port}").parse().unwrap();
    let extra = ["--admin-password", "lock-test"];
    let mut first = spawn_with(&data_dir, tcp_port, http_port, &extra, Stdio::null());
    wait_for_port(tcp);
    let mut second = spawn_with(&data_dir, free_port(), free_port(), &extra, Stdio::piped());
    let status = tokio::task::spawn_blocking(move || {
        let status = wait_exit(&mut second);
        let mut err = String::new();
        std::io::Read::read_to_string(second.stderr.as_mut().unwrap(), &mut err).unwrap();
        (status, err)
    })
    .await
    .unwrap();
    assert!(!status.0.success(), "the second process must not start");
    assert!(
        status.1.contains("in use by another opencore process"),
        "{}",
        status.1
    );
    let mut client = RawClient::connect(tcp).await;
    client.signin(ADMIN, "lock-test").await;
    sigterm(&first);
    let status = tokio::task::spawn_blocking(move || wait_exit(&mut first))
        .await
        .unwrap();
    assert!(status.success());
}
