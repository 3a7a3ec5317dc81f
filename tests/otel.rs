//! Traces: an opencore process exporting over OTLP/gRPC to an in-process receiver
//! (`opentelemetry-proto`'s TraceService). A request whose envelope carries W3C ids gets
//! a server span that is their child, and its reply names that span; a queue message
//! carries the trace to its consumer's `queueevent` (`traceparent` header), with traces
//! on and, forwarding the client's own ids, with traces off.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use opencore::proto::{
    Envelope, GetElementRequest, QueueMessageRequest, RegisterQueueRequest, RegisterQueueResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN_ID: &str = "00f067aa0ba902b7";

#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<Span>>>,
}

#[tonic::codegen::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Receiver {
    async fn start() -> (Receiver, SocketAddr) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let receiver = Receiver::default();
        let service = TraceServiceServer::new(receiver.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        (receiver, addr)
    }

    /// Waits for a span matching `predicate` (exports are batched).
    async fn find(&self, what: &str, predicate: impl Fn(&Span) -> bool) -> Span {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(span) = self.spans.lock().unwrap().iter().find(|s| predicate(s)) {
                return span.clone();
            }
            if Instant::now() >= deadline {
                let seen: Vec<(String, String)> = self
                    .spans
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|s| (s.name.clone(), hex(&s.trace_id)))
                    .collect();
                panic!("no exported span: {what}; exported: {seen:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
        .map(|value| match value {
            AnyValue::StringValue(s) => s.clone(),
            AnyValue::IntValue(i) => i.to_string(),
            other => format!("{other:?}"),
        })
}

struct Server {
    child: Child,
    tcp: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_with_traces(collector: SocketAddr) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let tcp_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_opencore"))
        .args([
            "serve",
            "--bind",
            "127.0.0.1",
            "--http-port",
            "0",
            "--grpc-port",
            "0",
        ])
        .args([
            "--no-pipe",
            "--bcrypt-cost",
            "4",
            "--admin-password",
            ADMIN_PASSWORD,
        ])
        .args([
            "--tcp-port",
            &tcp_port.to_string(),
            "--node-id",
            "trace-node",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{collector}"))
        .env("OTEL_SERVICE_NAME", "opencore-test")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env_remove("OTEL_TRACES_SAMPLER")
        .env_remove("MONGODB_URL")
        .env_remove("AMQP_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start opencore");
    let tcp: SocketAddr = format!("127.0.0.1:{tcp_port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(tcp).is_err() {
        assert!(Instant::now() < deadline, "opencore did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Server {
        child,
        tcp,
        _dir: dir,
    }
}

fn with_ids(mut envelope: Envelope) -> Envelope {
    envelope.traceid = TRACE_ID.into();
    envelope.spanid = SPAN_ID.into();
    envelope
}

/// A temporary queue on `consumer`; then `sender` sends one message to it carrying the
/// test's ids. Returns the `queueevent` the consumer got.
async fn queue_round_trip(consumer: &mut RawClient, sender: &mut RawClient) -> Envelope {
    let registered = consumer
        .request("registerqueue", &RegisterQueueRequest::default())
        .await;
    let queue = decode::<RegisterQueueResponse>(&registered).queuename;
    assert!(!queue.is_empty());
    let message = sender.envelope(
        "queuemessage",
        &QueueMessageRequest {
            queuename: queue,
            data: r#"{"hello":"trace"}"#.into(),
            striptoken: true,
            ..Default::default()
        },
    );
    sender.send(with_ids(message)).await;
    loop {
        let envelope = consumer.recv().await.expect("a queueevent");
        if envelope.command == "queueevent" {
            return envelope;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_span_is_the_child_of_the_clients_span() {
    let (receiver, collector) = Receiver::start().await;
    let server = spawn_with_traces(collector);
    let mut client = RawClient::connect(server.tcp).await;
    client.signin(ADMIN, ADMIN_PASSWORD).await;
    let request = client.envelope("getelement", &GetElementRequest { xpath: "t".into() });
    let id = client.send(with_ids(request)).await;
    let reply = client.reply().await;
    assert_eq!(reply.rid, id);
    assert_eq!(
        reply.traceid, TRACE_ID,
        "the reply stays in the client's trace"
    );
    assert_eq!(reply.spanid.len(), 16);
    assert_ne!(reply.spanid, SPAN_ID, "the reply names the server's span");

    let span = receiver
        .find("getelement", |s| {
            attribute(s, "command").as_deref() == Some("getelement")
        })
        .await;
    assert_eq!(hex(&span.trace_id), TRACE_ID);
    assert_eq!(hex(&span.parent_span_id), SPAN_ID);
    assert_eq!(hex(&span.span_id), reply.spanid);
    assert_eq!(span.name, "getelement");
    assert_eq!(attribute(&span, "result.code").as_deref(), Some("0"));
    assert!(attribute(&span, "user.id").is_some_and(|id| !id.is_empty()));

    // A queue message continues the trace: publish span under the request span, and the
    // consumer's `queueevent` carries the trace id.
    let mut consumer = RawClient::connect(server.tcp).await;
    consumer.signin(ADMIN, ADMIN_PASSWORD).await;
    let event = queue_round_trip(&mut consumer, &mut client).await;
    assert_eq!(event.traceid, TRACE_ID);
    let publish = receiver
        .find("bus.publish", |s| {
            s.name == "bus.publish" && hex(&s.trace_id) == TRACE_ID
        })
        .await;
    assert_eq!(hex(&publish.span_id), event.spanid);
    // An insert writes to the store: a store span in the same trace.
    let query = client.envelope(
        "insertone",
        &opencore::proto::InsertOneRequest {
            collectionname: "entities".into(),
            item: r#"{"name":"traced"}"#.into(),
            ..Default::default()
        },
    );
    client.send(with_ids(query)).await;
    client.reply().await;
    receiver
        .find("a store span", |s| {
            s.name.starts_with("store.") && hex(&s.trace_id) == TRACE_ID
        })
        .await;
}

/// Without an exporter the server adds no ids of its own, but a queue message still
/// carries the sender's ids to the consumer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_traces_a_queue_message_forwards_the_clients_ids() {
    let server = TestServer::start();
    let mut client = RawClient::connect(server.tcp()).await;
    client.signin(ADMIN, ADMIN_PASSWORD).await;
    let reply = client
        .request("getelement", &GetElementRequest { xpath: "t".into() })
        .await;
    assert!(reply.traceid.is_empty() && reply.spanid.is_empty());
    let mut consumer = RawClient::connect(server.tcp()).await;
    consumer.signin(ADMIN, ADMIN_PASSWORD).await;
    let event = queue_round_trip(&mut consumer, &mut client).await;
    assert_eq!(
        (event.traceid.as_str(), event.spanid.as_str()),
        (TRACE_ID, SPAN_ID)
    );
}
