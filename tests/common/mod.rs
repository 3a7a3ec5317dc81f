//! Shared test support: a real server on ephemeral ports and a raw-protocol client.
#![allow(dead_code)]

pub mod scripts;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use opencore::config::ServeConfig;
use opencore::proto::{Envelope, ErrorResponse, SigninRequest, SigninResponse};
use opencore::protocol::envelope::pack;
use opencore::protocol::frame::{encode_frame, FrameDecoder};
use opencore::server::BackgroundServer;
use prost::{Message, Name};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const ADMIN: &str = "admin";
pub const ADMIN_PASSWORD: &str = "admin-password";
pub const WAIT: Duration = Duration::from_secs(10);

pub struct TestServer {
    pub server: BackgroundServer,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    pub fn start() -> Self {
        Self::start_with(|_| {})
    }

    pub fn start_with(adjust: impl FnOnce(&mut ServeConfig)) -> Self {
        // The official client would export telemetry to a public host otherwise.
        std::env::set_var("enable_analytics", "false");
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = ServeConfig::for_tests(dir.path().join("data"));
        adjust(&mut config);
        let server = BackgroundServer::start(config).expect("server starts");
        TestServer { server, dir }
    }

    pub fn tcp(&self) -> SocketAddr {
        self.server.bound.tcp.expect("tcp listener")
    }
    pub fn http(&self) -> SocketAddr {
        self.server.bound.http.expect("http listener")
    }
    pub fn grpc(&self) -> SocketAddr {
        self.server.bound.grpc.expect("grpc listener")
    }
}

/// A loopback port free right now (for servers started as child processes).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A client speaking length-prefixed envelopes over TCP, numbering `seq` itself.
pub struct RawClient {
    pub stream: TcpStream,
    pub seq: i32,
    next_id: u64,
    decoder: FrameDecoder,
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).ok();
        RawClient {
            stream,
            seq: 0,
            next_id: 0,
            decoder: FrameDecoder::new(64 * 1024 * 1024),
        }
    }

    pub fn envelope<M: Message + Name>(&mut self, command: &str, message: &M) -> Envelope {
        self.next_id += 1;
        Envelope {
            command: command.into(),
            id: format!("req{}", self.next_id),
            data: Some(pack(message)),
            ..Default::default()
        }
    }

    /// Sends with the next seq.
    pub async fn send(&mut self, mut envelope: Envelope) -> String {
        envelope.seq = self.seq;
        self.seq += 1;
        let id = envelope.id.clone();
        self.send_exact(&envelope).await;
        id
    }

    /// Sends the envelope with whatever seq it carries.
    pub async fn send_exact(&mut self, envelope: &Envelope) {
        let mut out = BytesMut::new();
        encode_frame(&envelope.encode_to_vec(), &mut out);
        self.stream.write_all(&out).await.expect("write");
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
    }

    /// Next envelope from the server, `None` on close or timeout.
    pub async fn recv(&mut self) -> Option<Envelope> {
        loop {
            if let Ok(Some(frame)) = self.decoder.next_frame() {
                return Envelope::decode(frame).ok();
            }
            let mut buf = vec![0u8; 64 * 1024];
            match tokio::time::timeout(WAIT, self.stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
                Ok(Ok(n)) => self.decoder.extend(&buf[..n]),
            }
        }
    }

    /// Next reply (skips server pushes such as `ping` and `refreshtoken`).
    pub async fn reply(&mut self) -> Envelope {
        loop {
            let envelope = self
                .recv()
                .await
                .expect("a reply before the connection closed");
            if !envelope.rid.is_empty() {
                return envelope;
            }
        }
    }

    pub async fn request<M: Message + Name>(&mut self, command: &str, message: &M) -> Envelope {
        let envelope = self.envelope(command, message);
        let id = self.send(envelope).await;
        let reply = self.reply().await;
        assert_eq!(reply.rid, id);
        reply
    }

    /// The reply to a password sign-in, whatever it is.
    pub async fn signin_reply(&mut self, username: &str, password: &str) -> Envelope {
        self.request(
            "signin",
            &SigninRequest {
                username: username.into(),
                password: password.into(),
                ..Default::default()
            },
        )
        .await
    }

    pub async fn signin(&mut self, username: &str, password: &str) -> SigninResponse {
        let reply = self.signin_reply(username, password).await;
        assert_eq!(
            reply.command,
            "signinreply",
            "signin failed: {:?}",
            error_message(&reply)
        );
        decode(&reply)
    }

    /// True when the server closed the connection (possibly after an error envelope).
    pub async fn closed(&mut self) -> bool {
        let deadline = tokio::time::Instant::now() + WAIT;
        while tokio::time::Instant::now() < deadline {
            match self.recv().await {
                None => return true,
                Some(_) => continue,
            }
        }
        false
    }
}

/// A gRPC client of `server`, signed in as the admin through the unary `Signin` RPC.
pub async fn grpc_admin(
    server: &TestServer,
) -> (
    opencore::proto::flow_service_client::FlowServiceClient<tonic::transport::Channel>,
    SigninResponse,
) {
    let mut client = opencore::proto::flow_service_client::FlowServiceClient::connect(format!(
        "http://{}",
        server.grpc()
    ))
    .await
    .unwrap();
    let signed = client
        .signin(SigninRequest {
            username: ADMIN.into(),
            password: ADMIN_PASSWORD.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    (client, signed)
}

pub fn decode<M: Message + Default>(envelope: &Envelope) -> M {
    M::decode(
        envelope
            .data
            .as_ref()
            .expect("reply carries data")
            .value
            .as_slice(),
    )
    .expect("decodable payload")
}

pub fn error_message(envelope: &Envelope) -> Option<String> {
    (envelope.command == "error").then(|| decode::<ErrorResponse>(envelope).message)
}

/// An HTTP/1.1 response as the tests read it (the body as sent, chunked or not).
pub struct HttpAnswer {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl HttpAnswer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request on a fresh connection (`Connection: close`), plain HTTP/1.1 with no
/// client library. `headers` are whole header lines; a body is sent as JSON. `None`
/// when nothing listens or no answer comes within [`WAIT`].
pub async fn try_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[String],
    body: Option<&[u8]>,
) -> Option<HttpAnswer> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for header in headers {
        head.push_str(header);
        head.push_str("\r\n");
    }
    if let Some(body) = body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.ok()?;
    if let Some(body) = body {
        // A refused body may close the socket before it is all written.
        let _ = stream.write_all(body).await;
    }
    let mut response = Vec::new();
    // A reset after the answer (a refused body) still leaves the answer read.
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut response))
        .await
        .ok()?;
    let split = response.windows(4).position(|w| w == b"\r\n\r\n");
    let (head, body) = match split {
        Some(at) => (&response[..at], response[at + 4..].to_vec()),
        None => (&response[..], Vec::new()),
    };
    let head = String::from_utf8_lossy(head).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Some(HttpAnswer { status, head, body })
}

/// [`try_http`] that must be answered.
pub async fn send_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[String],
    body: Option<&[u8]>,
) -> HttpAnswer {
    try_http(addr, method, path, headers, body)
        .await
        .unwrap_or_else(|| panic!("no HTTP answer to {method} {path} from {addr}"))
}

pub fn bearer_header(token: Option<&str>) -> Vec<String> {
    token
        .map(|t| vec![format!("Authorization: Bearer {t}")])
        .unwrap_or_default()
}

/// Plain HTTP/1.1 GET; returns (status, body).
pub async fn http_get(addr: SocketAddr, path: &str, bearer: Option<&str>) -> (u16, String) {
    let answer = send_http(addr, "GET", path, &bearer_header(bearer), None).await;
    (answer.status, answer.text())
}

/// Resident set size of process `pid` in KiB (`VmRSS` in /proc/<pid>/status); 0 if unknown.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}
