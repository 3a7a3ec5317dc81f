//! Bounded memory per connection and per server (issue 7, item 6): what a client can
//! make the server hold before and after it signs in, connection caps, gRPC unary
//! limits, the write timeout and priority fairness. Each test names the limit it
//! exercises and fails without it.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use opencore::proto::flow_service_client::FlowServiceClient;
use opencore::proto::{Envelope, ErrorResponse, GetElementRequest, QueryRequest, SigninRequest};
use opencore::protocol::envelope::pack;
use opencore::protocol::frame::encode_frame;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::common::*;

const MIB: usize = 1024 * 1024;

fn getelement(seq: i32, id: &str, xpath_len: usize) -> Envelope {
    Envelope {
        command: "getelement".into(),
        id: id.into(),
        seq,
        data: Some(pack(&GetElementRequest {
            xpath: "x".repeat(xpath_len),
        })),
        ..Default::default()
    }
}

fn signin_envelope(seq: i32, id: &str, priority: i32) -> Envelope {
    Envelope {
        command: "signin".into(),
        id: id.into(),
        seq,
        priority,
        data: Some(pack(&SigninRequest {
            username: ADMIN.into(),
            password: ADMIN_PASSWORD.into(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn framed(envelopes: &[Envelope]) -> BytesMut {
    let mut out = BytesMut::new();
    for envelope in envelopes {
        encode_frame(&envelope.encode_to_vec(), &mut out);
    }
    out
}

fn error_of(envelope: &Envelope) -> Option<ErrorResponse> {
    (envelope.command == "error").then(|| decode::<ErrorResponse>(envelope))
}

fn code_of(envelope: &Envelope) -> Option<i32> {
    error_of(envelope).map(|e| e.code)
}

/// Reads (and discards) until the server closes the socket (EOF or reset): true, or
/// until `within` passes with the socket still open: false.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

// ---------------------------------------------------------------------------------
// Before sign-in: envelope size, seq window bytes, in-flight cap, sign-in timeout.
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_envelopes_are_limited_to_1_mib() {
    let server = TestServer::start();
    // 1.5 MiB announced before sign-in: refused at the prefix, the body is never buffered.
    let mut anonymous = RawClient::connect(server.tcp()).await;
    let big = getelement(0, "big", 3 * MIB / 2);
    let wire = framed(std::slice::from_ref(&big));
    anonymous.send_raw(&wire[..64 * 1024]).await;
    let reply = anonymous.recv().await.expect("an error envelope");
    let error = error_of(&reply).expect("an error");
    assert_eq!(error.code, 2063, "{}", error.message);
    assert!(
        error.message.contains("limit of 1048576 bytes") && error.message.contains("not signed in"),
        "{}",
        error.message
    );
    assert!(anonymous.closed().await);

    // Signed in, the same envelope is served.
    let mut client = RawClient::connect(server.tcp()).await;
    client.signin(ADMIN, ADMIN_PASSWORD).await;
    let mut envelope = big.clone();
    envelope.id = "signed".into();
    let id = client.send(envelope).await;
    let reply = client.reply().await;
    assert_eq!(reply.rid, id);
    assert_eq!(reply.command, "getelement");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_frames_over_the_unauthenticated_limit_are_refused() {
    let server = TestServer::start();
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws/v2", server.http()))
        .await
        .unwrap();
    // One WebSocket frame carrying a 2 MiB envelope, before sign-in.
    let body = getelement(0, "big", 2 * MIB).encode_to_vec();
    let mut frame = (body.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(&body);
    let _ = ws.send(WsMessage::binary(frame)).await;
    let mut served = false;
    let mut refused = false;
    let ended = loop {
        match tokio::time::timeout(WAIT, ws.next()).await {
            Ok(Some(Ok(WsMessage::Binary(bytes)))) if bytes.len() > 4 => {
                let envelope = Envelope::decode(bytes.as_ref()).unwrap();
                served |= envelope.command == "getelement";
                refused |= code_of(&envelope) == Some(2063);
            }
            Ok(Some(Ok(WsMessage::Close(_)))) | Ok(Some(Err(_))) | Ok(None) => break true,
            Ok(Some(Ok(_))) => continue,
            Err(_) => break false,
        }
    };
    assert!(!served, "a 2 MiB frame was served before sign-in");
    // The error envelope arrives unless the reset of the unread upload overtakes it.
    assert!(ended, "the connection stayed open (refused: {refused})");
    // The server still serves others.
    let mut client = RawClient::connect(server.tcp()).await;
    client.signin(ADMIN, ADMIN_PASSWORD).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seq_window_is_bounded_in_bytes_before_sign_in() {
    let server = TestServer::start();
    let mut client = RawClient::connect(server.tcp()).await;
    // Three early envelopes of 100 KiB (seq 0 never comes): over the 256 KiB window.
    let early: Vec<Envelope> = (1..=3)
        .map(|seq| getelement(seq, &format!("e{seq}"), 100 * 1024))
        .collect();
    client.send_raw(&framed(&early)).await;
    let reply = client.recv().await.expect("an error envelope");
    let error = error_of(&reply).expect("an error");
    assert!(
        error
            .message
            .contains("bytes of envelopes waiting for a missing seq"),
        "{}",
        error.message
    );
    assert!(client.closed().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_in_connections_get_a_byte_bounded_seq_window_too() {
    let server = TestServer::start_with(|c| c.limits.seq_window_bytes = 300 * 1024);
    let mut client = RawClient::connect(server.tcp()).await;
    client.signin(ADMIN, ADMIN_PASSWORD).await;
    let base = client.seq;
    let early: Vec<Envelope> = (1..=4)
        .map(|n| getelement(base + n, &format!("e{n}"), 100 * 1024))
        .collect();
    client.send_raw(&framed(&early)).await;
    let reply = client.recv().await.expect("an error envelope");
    assert!(error_of(&reply)
        .expect("an error")
        .message
        .contains("more than 307200 bytes"));
    assert!(client.closed().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_is_capped_before_sign_in_and_bounded_in_bytes_after() {
    let server = TestServer::start_with(|c| c.limits.max_in_flight_bytes = 100 * 1024);
    // 12 sign-ins in one write before sign-in: 8 run, 4 are refused.
    let mut anonymous = RawClient::connect(server.tcp()).await;
    let batch: Vec<Envelope> = (0..12)
        .map(|n| signin_envelope(n, &format!("s{n}"), 0))
        .collect();
    anonymous.seq = 12;
    anonymous.send_raw(&framed(&batch)).await;
    let mut refused = 0;
    for _ in 0..12 {
        let reply = anonymous.reply().await;
        match code_of(&reply) {
            Some(2065) => refused += 1,
            Some(other) => panic!("unexpected error {other}: {:?}", error_of(&reply)),
            None => assert_eq!(reply.command, "signinreply"),
        }
    }
    assert_eq!(refused, 4, "8 requests in flight before sign-in");

    // Signed in (this very connection now): 12 at once are fine...
    let base = anonymous.seq;
    let batch: Vec<Envelope> = (0..12)
        .map(|n| getelement(base + n, &format!("g{n}"), 10))
        .collect();
    anonymous.seq += 12;
    anonymous.send_raw(&framed(&batch)).await;
    for _ in 0..12 {
        assert_eq!(anonymous.reply().await.command, "getelement");
    }
    // ...but bytes in flight are bounded: 3 × 40 KiB against 100 KiB.
    let base = anonymous.seq;
    let batch: Vec<Envelope> = (0..3)
        .map(|n| getelement(base + n, &format!("b{n}"), 40 * 1024))
        .collect();
    anonymous.seq += 3;
    anonymous.send_raw(&framed(&batch)).await;
    let mut codes = Vec::new();
    for _ in 0..3 {
        codes.push(code_of(&anonymous.reply().await));
    }
    assert_eq!(
        codes.iter().filter(|c| **c == Some(2060)).count(),
        1,
        "{codes:?}"
    );
}

#[test]
fn the_signin_timeout_is_on_by_default() {
    use clap::Parser;
    assert_eq!(
        opencore::config::Limits::default().signin_timeout,
        Duration::from_secs(60)
    );
    let cli = opencore::config::Cli::try_parse_from(["opencore"]).unwrap();
    assert_eq!(cli.serve.limits.signin_timeout, Duration::from_secs(60));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signin_timeout_spares_password_token_and_guest_sessions() {
    let timeout = Duration::from_secs(1);
    let server = TestServer::start_with(|c| c.limits.signin_timeout = timeout);
    let mut anonymous = RawClient::connect(server.tcp()).await;
    let reply = anonymous
        .request("getelement", &GetElementRequest::default())
        .await;
    assert_eq!(reply.command, "getelement");
    let mut signed = RawClient::connect(server.tcp()).await;
    let token = signed.signin(ADMIN, ADMIN_PASSWORD).await.jwt;
    // A client that never signs in but sends a token with each request (Envelope.jwt).
    let mut token_user = RawClient::connect(server.tcp()).await;
    let mut envelope = token_user.envelope("getelement", &GetElementRequest::default());
    envelope.jwt = token.clone();
    token_user.send(envelope).await;
    assert_eq!(token_user.reply().await.command, "getelement");

    tokio::time::sleep(timeout * 3).await;
    let closing = anonymous.recv().await.expect("an error before the close");
    assert_eq!(code_of(&closing), Some(2064));
    assert!(anonymous.closed().await);
    for client in [&mut signed, &mut token_user] {
        let reply = client
            .request("getelement", &GetElementRequest::default())
            .await;
        assert_eq!(reply.command, "getelement");
    }

    // With --enable-guest, a connection acting as guest counts as signed in.
    let guest_server = TestServer::start_with(|c| {
        c.limits.signin_timeout = timeout;
        c.enable_guest = true;
    });
    let mut guest = RawClient::connect(guest_server.tcp()).await;
    guest
        .request("getelement", &GetElementRequest::default())
        .await;
    tokio::time::sleep(timeout * 3).await;
    let reply = guest
        .request("getelement", &GetElementRequest::default())
        .await;
    assert_eq!(reply.command, "getelement");
}

// ---------------------------------------------------------------------------------
// Connection caps.
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_address_are_capped_on_every_transport() {
    let server = TestServer::start_with(|c| c.limits.max_connections_per_ip = 3);
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut client = RawClient::connect(server.tcp()).await;
        let reply = client
            .request("getelement", &GetElementRequest::default())
            .await;
        assert_eq!(reply.command, "getelement");
        held.push(client);
    }
    // TCP: an error envelope naming the cap, then close.
    let mut refused = RawClient::connect(server.tcp()).await;
    let reply = refused.recv().await.expect("an error envelope");
    let error = error_of(&reply).expect("an error");
    assert_eq!(error.code, 2062);
    assert!(
        error.message.contains("at most 3 per address"),
        "{}",
        error.message
    );
    assert!(refused.closed().await);
    // WebSocket: 429 with the message.
    match tokio_tungstenite::connect_async(format!("ws://{}/ws/v2", server.http())).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 429);
        }
        other => panic!("websocket upgrade not refused: {:?}", other.map(|_| ())),
    }
    // gRPC: RESOURCE_EXHAUSTED on SetupStream.
    let mut grpc = FlowServiceClient::connect(format!("http://{}", server.grpc()))
        .await
        .unwrap();
    let (_sender, receiver) = tokio::sync::mpsc::channel::<Envelope>(1);
    let status = grpc
        .setup_stream(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert!(
        status.message().contains("per address"),
        "{}",
        status.message()
    );

    // A closed connection gives its slot back.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut again = RawClient::connect(server.tcp()).await;
    let reply = again
        .request("getelement", &GetElementRequest::default())
        .await;
    assert_eq!(reply.command, "getelement");
}

/// Whether a fresh gRPC socket can sign in.
async fn grpc_socket_works(server: &TestServer) -> bool {
    let attempt = async {
        let mut client = FlowServiceClient::connect(format!("http://{}", server.grpc()))
            .await
            .ok()?;
        client
            .signin(SigninRequest {
                username: ADMIN.into(),
                password: ADMIN_PASSWORD.into(),
                ..Default::default()
            })
            .await
            .ok()
    };
    matches!(tokio::time::timeout(WAIT, attempt).await, Ok(Some(_)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_grpc_sockets_per_address_are_capped() {
    let server = TestServer::start_with(|c| c.limits.max_connections_per_ip = 2);
    let (mut first, _) = grpc_admin(&server).await;
    let (second, _) = grpc_admin(&server).await;
    assert!(
        !grpc_socket_works(&server).await,
        "a third HTTP/2 socket from one address was served"
    );
    let signin = SigninRequest {
        username: ADMIN.into(),
        password: ADMIN_PASSWORD.into(),
        ..Default::default()
    };
    first.signin(signin).await.unwrap();
    drop(second);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        grpc_socket_works(&server).await,
        "a closed socket kept its slot"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_wide_connection_cap_refuses_clearly() {
    let server = TestServer::start_with(|c| c.limits.max_connections = 2);
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut client = RawClient::connect(server.tcp()).await;
        client
            .request("getelement", &GetElementRequest::default())
            .await;
        held.push(client);
    }
    let mut refused = RawClient::connect(server.tcp()).await;
    let reply = refused.recv().await.expect("an error envelope");
    assert_eq!(code_of(&reply), Some(2061));
    assert!(refused.closed().await);
    match tokio_tungstenite::connect_async(format!("ws://{}/ws/v2", server.http())).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 503);
        }
        other => panic!("websocket upgrade not refused: {:?}", other.map(|_| ())),
    }
}

// ---------------------------------------------------------------------------------
// gRPC unary calls obey the stream limits.
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_unary_calls_share_the_rate_limit_of_their_address() {
    let server = TestServer::start_with(|c| c.limits.rate_limit = 5);
    let (mut client, signed) = grpc_admin(&server).await;
    let mut ok = 0;
    let mut limited = 0;
    for _ in 0..12 {
        let mut request = tonic::Request::new(QueryRequest {
            collectionname: "entities".into(),
            query: "{}".into(),
            ..Default::default()
        });
        request
            .metadata_mut()
            .insert("jwt", signed.jwt.parse().unwrap());
        match client.query(request).await {
            Ok(_) => ok += 1,
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::ResourceExhausted);
                assert!(status.message().starts_with("Rate limit exceeded"));
                limited += 1;
            }
        }
    }
    assert!(limited >= 4, "ok {ok}, limited {limited}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_unary_calls_share_the_in_flight_limit_of_their_address() {
    let server = TestServer::start_with(|c| {
        c.limits.auth_concurrency = 1;
        c.bcrypt_cost = 10;
    });
    let client = FlowServiceClient::connect(format!("http://{}", server.grpc()))
        .await
        .unwrap();
    // 16 anonymous sign-ins at once (bcrypt, one at a time per worker): at most 8 in flight.
    let calls = (0..16).map(|_| {
        let mut client = client.clone();
        async move {
            client
                .signin(SigninRequest {
                    username: ADMIN.into(),
                    password: ADMIN_PASSWORD.into(),
                    ..Default::default()
                })
                .await
        }
    });
    let results = futures_util::future::join_all(calls).await;
    let refused: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(!refused.is_empty(), "all 16 ran at once");
    for status in &refused {
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(
            status.message().contains("before sign-in (limit 8)"),
            "{}",
            status.message()
        );
    }
    assert!(results.iter().filter(|r| r.is_ok()).count() >= 8);
}

/// A token that does not verify does not buy the signed-in budget: a 2 MiB unary call
/// carrying `jwt: x` is refused by the before-sign-in byte limit (1 MiB) up front, not
/// admitted and decoded as if the caller had signed in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_unary_calls_with_a_forged_token_get_the_before_signin_budget() {
    let server = TestServer::start();
    let mut client = FlowServiceClient::connect(format!("http://{}", server.grpc()))
        .await
        .unwrap();
    let mut request = tonic::Request::new(QueryRequest {
        collectionname: "entities".into(),
        query: format!("{{\"pad\": \"{}\"}}", "x".repeat(2 * MIB as usize)),
        ..Default::default()
    });
    request.metadata_mut().insert("jwt", "x".parse().unwrap());
    let status = client.query(request).await.expect_err("refused");
    assert_eq!(
        status.code(),
        tonic::Code::ResourceExhausted,
        "{}",
        status.message()
    );
}

// ---------------------------------------------------------------------------------
// Write timeout and priority fairness.
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_reads_is_closed_after_the_write_timeout() {
    let server = TestServer::start_with(|c| {
        c.limits.write_timeout = Duration::from_secs(1);
        // Make sure the slow-client rule is not what closes it.
        c.limits.max_outbound_bytes = 1024 * MIB;
        c.limits.slow_client_grace = Duration::from_secs(600);
    });
    let mut client = RawClient::connect(server.tcp()).await;
    client.signin(ADMIN, ADMIN_PASSWORD).await;
    // ~40 MiB of replies requested, none read.
    let base = client.seq;
    let requests: Vec<Envelope> = (0..160)
        .map(|n| getelement(base + n, &format!("w{n}"), 256 * 1024))
        .collect();
    let wire = framed(&requests);
    let _ = tokio::time::timeout(Duration::from_secs(10), client.stream.write_all(&wire)).await;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    // Only now read: a closed connection ends after what the kernels buffered.
    assert!(
        closed_within(&mut client.stream, Duration::from_secs(5)).await,
        "still open {:?} after the client stopped reading",
        started.elapsed()
    );
    let mut other = RawClient::connect(server.tcp()).await;
    other.signin(ADMIN, ADMIN_PASSWORD).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_priority_3_flood_cannot_starve_another_connections_priority_0_request() {
    let server = TestServer::start_with(|c| {
        c.workers = Some(1);
        c.limits.auth_concurrency = 1;
        c.bcrypt_cost = 8;
    });
    let mut victim = RawClient::connect(server.tcp()).await;
    victim.signin(ADMIN, ADMIN_PASSWORD).await;
    let mut flooder = RawClient::connect(server.tcp()).await;
    flooder.signin(ADMIN, ADMIN_PASSWORD).await;
    // 1000 priority-3 sign-ins (bcrypt, one at a time): far more work than the deadline.
    let base = flooder.seq;
    let flood: Vec<Envelope> = (0..1000)
        .map(|n| signin_envelope(base + n, &format!("f{n}"), 3))
        .collect();
    flooder.seq += 1000;
    flooder.send_raw(&framed(&flood)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let envelope = signin_envelope(victim.seq, "victim", 0);
    victim.seq += 1;
    victim.send_exact(&envelope).await;
    let reply = tokio::time::timeout(Duration::from_secs(15), victim.reply())
        .await
        .expect("the priority-0 request was starved by another connection's priority-3 flood");
    assert_eq!(reply.rid, "victim");
    assert_eq!(reply.command, "signinreply");
    assert!(started.elapsed() < Duration::from_secs(15));
}

// ---------------------------------------------------------------------------------
// Memory: 200 unauthenticated connections against the real binary.
// ---------------------------------------------------------------------------------

/// The documented bound: RSS of a server holding 200 hostile unauthenticated
/// attackers stays under this. Each parks about 1.3 MiB (a frame just under the 1 MiB
/// envelope limit plus a 256 KiB seq window); the server itself needs about 35 MiB.
const RSS_BOUND_MIB: u64 = 400;

struct ServerProcess {
    child: Child,
    tcp: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

impl ServerProcess {
    /// The binary under test: `OPENCORE_LIMITS_TEST_BIN` (to measure another build,
    /// e.g. the code before these limits) or this build's `opencore`.
    fn spawn() -> Self {
        let binary = std::env::var("OPENCORE_LIMITS_TEST_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_opencore").to_string());
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(binary)
            .args([
                "serve",
                "--bind",
                "127.0.0.1",
                "--grpc-port",
                "0",
                "--http-port",
                "0",
            ])
            .args(["--no-pipe", "--bcrypt-cost", "4", "--workers", "2"])
            .args(["--tcp-port", &port.to_string()])
            .arg("--data-dir")
            .arg(dir.path())
            .env("OPENCORE_ADMIN_PASSWORD", ADMIN_PASSWORD)
            // Every attacker comes from 127.0.0.1: lift the per-address cap for this test.
            .env("OPENCORE_MAX_CONNECTIONS_PER_IP", "100000")
            .env_remove("MONGODB_URL")
            .env_remove("mongodb_url")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start opencore");
        let tcp: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(tcp).is_err() {
            assert!(Instant::now() < deadline, "server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        ServerProcess {
            child,
            tcp,
            _dir: dir,
        }
    }

    fn rss_mib(&self) -> u64 {
        rss_kib(self.child.id()) / 1024
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes unless the server closed the connection or stopped reading; false then.
async fn write_some(stream: &mut TcpStream, bytes: &[u8]) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(3), stream.write_all(bytes)).await,
        Ok(Ok(()))
    )
}

/// One attacker: three connections that try to park as much memory as they can.
async fn attack(tcp: std::net::SocketAddr) -> Vec<TcpStream> {
    // 1. Out-of-order envelopes that fit the before-sign-in window, then a frame just
    //    under the envelope limit whose body never completes.
    let mut parked = TcpStream::connect(tcp).await.unwrap();
    let early: Vec<Envelope> = (1..=7)
        .map(|seq| getelement(seq, "early", 30 * 1024))
        .collect();
    write_some(&mut parked, &framed(&early)).await;
    let announced = MIB - 256;
    let mut partial = (announced as u32).to_le_bytes().to_vec();
    partial.extend(std::iter::repeat_n(b'x', announced - 1024));
    write_some(&mut parked, &partial).await;
    // 2. Out-of-order envelopes just under the envelope limit, as many as the window
    //    takes (the old window took 100 of any size).
    let mut flood = TcpStream::connect(tcp).await.unwrap();
    for seq in 1..100 {
        let envelope = framed(&[getelement(seq, "ooo", MIB - 1024)]);
        if !write_some(&mut flood, &envelope).await {
            break;
        }
    }
    // 3. An oversized envelope (2 MiB announced, 256 KiB sent).
    let mut oversized = TcpStream::connect(tcp).await.unwrap();
    let mut wire = ((2 * MIB) as u32).to_le_bytes().to_vec();
    wire.extend(std::iter::repeat_n(b'y', 256 * 1024));
    write_some(&mut oversized, &wire).await;
    vec![parked, flood, oversized]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_unauthenticated_connections_stay_under_the_memory_bound() {
    let attackers: usize = std::env::var("OPENCORE_LIMITS_TEST_CONNECTIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    let server = ServerProcess::spawn();
    let baseline = server.rss_mib();
    let mut held = Vec::new();
    let mut peak = baseline;
    for wave in (0..attackers).collect::<Vec<_>>().chunks(20) {
        let tasks: Vec<_> = wave
            .iter()
            .map(|_| tokio::spawn(attack(server.tcp)))
            .collect();
        for task in tasks {
            held.extend(task.await.unwrap());
        }
        peak = peak.max(server.rss_mib());
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = server.rss_mib();
    peak = peak.max(rss);
    eprintln!(
        "memory test: {attackers} attackers, baseline {baseline} MiB, peak {peak} MiB, after {rss} MiB"
    );

    // A signed-in client is still served while all of that is held.
    let mut client = RawClient::connect(server.tcp).await;
    client.signin(ADMIN, ADMIN_PASSWORD).await;
    let reply = client
        .request(
            "query",
            &QueryRequest {
                collectionname: "users".into(),
                query: "{}".into(),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(reply.command, "queryreply", "{:?}", error_message(&reply));
    assert!(
        peak < RSS_BOUND_MIB,
        "server RSS reached {peak} MiB with {attackers} unauthenticated attackers (bound {RSS_BOUND_MIB} MiB)"
    );
    drop(held);
}
