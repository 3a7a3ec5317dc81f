//! Tests of the pure parts: URL parsing, CLI, wire helpers, the pipeline's state
//! machine and report formatting.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use clap::Parser;
use prost::Message;

use super::pipeline::{Outbox, Pipeline, Schedule};
use super::stats::{format_micros, format_seconds, Errors, Latency, Report};
use super::target::{Target, Transport};
use super::wire::{encode_frame, parse_id, Head};
use super::workload::BenchCommand;
use super::{budget_share, BenchConfig};
use crate::proto::{Envelope, ErrorResponse, GetElementRequest};
use crate::protocol::envelope::{error_reply, pack};
use crate::protocol::frame::FrameDecoder;

// ---- URLs -------------------------------------------------------------------

#[test]
fn ws_url_gets_the_default_path() {
    let t = Target::parse("ws://127.0.0.1:3000").unwrap();
    assert_eq!(t.transport, Transport::WebSocket);
    assert_eq!(
        (t.host.as_str(), t.port, t.path.as_str()),
        ("127.0.0.1", 3000, "/ws/v2")
    );
    assert_eq!(t.ws_url(), "ws://127.0.0.1:3000/ws/v2");
    assert_eq!(
        Target::parse("ws://localhost:3000/").unwrap().path,
        "/ws/v2"
    );
}

#[test]
fn ws_url_keeps_its_path_and_query() {
    assert_eq!(Target::parse("ws://h:1/ws/v1").unwrap().path, "/ws/v1");
    assert_eq!(
        Target::parse("ws://h:1/custom?x=1").unwrap().ws_url(),
        "ws://h:1/custom?x=1"
    );
    assert_eq!(Target::parse("ws://h:1?x=1").unwrap().path, "/ws/v2?x=1");
}

#[test]
fn grpc_and_tcp_urls() {
    let t = Target::parse("grpc://127.0.0.1:50051").unwrap();
    assert_eq!(t.transport, Transport::Grpc);
    assert_eq!(t.grpc_endpoint(), "http://127.0.0.1:50051");
    assert_eq!(t.path, "");
    assert_eq!(
        Target::parse("http://h:5").unwrap().transport,
        Transport::Grpc
    );
    let t = Target::parse("tcp://10.0.0.1:8080/").unwrap();
    assert_eq!(
        (t.transport, t.port, t.authority()),
        (Transport::Tcp, 8080, "10.0.0.1:8080".to_string())
    );
    assert_eq!(
        Target::parse("TCP://h:1").unwrap().transport,
        Transport::Tcp
    );
}

#[test]
fn default_ports_follow_the_server() {
    assert_eq!(Target::parse("ws://h").unwrap().port, 3000);
    assert_eq!(Target::parse("grpc://h").unwrap().port, 50051);
    assert_eq!(Target::parse("tcp://h").unwrap().port, 8080);
}

#[test]
fn ipv6_hosts() {
    let t = Target::parse("tcp://[::1]:8080").unwrap();
    assert_eq!((t.host.as_str(), t.port), ("::1", 8080));
    assert_eq!(t.authority(), "[::1]:8080");
    assert_eq!(
        Target::parse("ws://[::1]").unwrap().ws_url(),
        "ws://[::1]:3000/ws/v2"
    );
    assert!(Target::parse("tcp://::1:8080").is_err());
    assert!(Target::parse("tcp://[::1:8080").is_err());
}

#[test]
fn bad_urls() {
    for url in [
        "127.0.0.1:3000",
        "ftp://h:1",
        "wss://h:1",
        "tcp://h:1/path",
        "grpc://h:1/x",
        "tcp://h:0",
        "tcp://h:99999",
        "tcp://h:port",
        "tcp://:80",
        "ws://user:pw@h:1",
    ] {
        assert!(Target::parse(url).is_err(), "{url} should be refused");
    }
}

#[test]
fn display_is_a_usable_url() {
    assert_eq!(
        Target::parse("ws://h:1").unwrap().to_string(),
        "ws://h:1/ws/v2"
    );
    assert_eq!(
        Target::parse("grpc://h:1").unwrap().to_string(),
        "grpc://h:1"
    );
}

// ---- CLI --------------------------------------------------------------------

#[derive(Parser)]
struct Wrapper {
    #[command(flatten)]
    bench: BenchConfig,
}

#[test]
fn cli_defaults() {
    let c = Wrapper::try_parse_from(["bench", "--url", "ws://h:1"])
        .unwrap()
        .bench;
    assert_eq!((c.connections, c.in_flight), (50, 4));
    assert_eq!(
        (c.duration, c.warmup, c.timeout),
        (
            Duration::from_secs(10),
            Duration::from_secs(2),
            Duration::from_secs(10)
        )
    );
    assert_eq!(c.command, BenchCommand::GetElement);
    assert_eq!(c.priority, 1);
    assert!(!c.json && c.max_requests.is_none() && c.username.is_none());
    assert!(c.validate().is_ok());
}

#[test]
fn cli_short_flags_and_options() {
    let c = Wrapper::try_parse_from([
        "bench",
        "--url",
        "tcp://h:1",
        "-c",
        "3",
        "-k",
        "7",
        "-d",
        "1.5",
        "--warmup",
        "0",
        "--command",
        "getelement",
        "--username",
        "admin",
        "--password",
        "pw",
        "--priority",
        "3",
        "--json",
        "--max-requests",
        "100",
    ])
    .unwrap()
    .bench;
    assert_eq!((c.connections, c.in_flight, c.priority), (3, 7, 3));
    assert_eq!(
        (c.duration, c.warmup),
        (Duration::from_millis(1500), Duration::ZERO)
    );
    assert_eq!(
        (c.username.as_deref(), c.password.as_deref()),
        (Some("admin"), Some("pw"))
    );
    assert!(c.json);
    assert_eq!(c.max_requests, Some(100));
}

#[test]
fn cli_refuses_nonsense() {
    assert!(Wrapper::try_parse_from(["bench", "--url", "ws://h", "--username", "a"]).is_err());
    assert!(Wrapper::try_parse_from(["bench", "--url", "ws://h", "--command", "nope"]).is_err());
    let c = Wrapper::try_parse_from(["bench", "--url", "ws://h", "-c", "0"])
        .unwrap()
        .bench;
    assert!(c.validate().is_err());
    let c = Wrapper::try_parse_from(["bench", "--url", "ws://h", "-d", "0"])
        .unwrap()
        .bench;
    assert!(c.validate().is_err());
}

#[test]
fn max_requests_is_spread_over_connections() {
    let shares: Vec<u64> = (0..4)
        .map(|i| budget_share(Some(10), 4, i).unwrap())
        .collect();
    assert_eq!(shares, vec![3, 3, 2, 2]);
    assert_eq!(
        (0..50)
            .map(|i| budget_share(Some(7), 50, i).unwrap())
            .sum::<u64>(),
        7
    );
    assert_eq!(budget_share(None, 4, 0), None);
}

// ---- wire -------------------------------------------------------------------

#[test]
fn ids_parse_as_counters() {
    assert_eq!(parse_id(b"0"), Some(0));
    assert_eq!(parse_id(b"123456789"), Some(123_456_789));
    assert_eq!(parse_id(b""), None);
    assert_eq!(parse_id(b"12a"), None);
    assert_eq!(parse_id(b"-1"), None);
    assert_eq!(parse_id(b"99999999999999999999"), None);
}

#[test]
fn head_reads_an_envelope_without_the_rest() {
    let envelope = Envelope {
        command: "getelement".into(),
        priority: 2,
        seq: 7,
        id: "42".into(),
        rid: "9".into(),
        data: Some(pack(&GetElementRequest { xpath: "x".into() })),
        jwt: "token".into(),
        traceid: "t".into(),
        spanid: "s".into(),
    };
    let head = Head::decode(Bytes::from(envelope.encode_to_vec())).unwrap();
    assert_eq!(&head.command[..], b"getelement");
    assert_eq!(&head.id[..], b"42");
    assert_eq!(&head.rid[..], b"9");
    assert_eq!(head.payload::<GetElementRequest>().unwrap().xpath, "x");
    assert_eq!(Head::from_envelope(envelope), head);
}

#[test]
fn head_explains_errors() {
    let envelope = error_reply(
        "5",
        &crate::error::OpenCoreError::UnknownCommand("nope".into()),
    );
    let head = Head::decode(Bytes::from(envelope.encode_to_vec())).unwrap();
    assert_eq!(&head.command[..], b"error");
    assert_eq!(head.error_text(), "Unknown command nope (code 2001)");
    let plain = Envelope {
        command: "error".into(),
        data: Some(pack(&ErrorResponse {
            message: "boom".into(),
            code: 0,
            stack: String::new(),
        })),
        ..Default::default()
    };
    assert_eq!(Head::from_envelope(plain).error_text(), "boom");
}

#[test]
fn frames_round_trip_through_the_server_decoder() {
    let mut template = BenchCommand::GetElement.template(1);
    let mut wire = BytesMut::new();
    for n in 0..3 {
        super::workload::number(&mut template, n);
        encode_frame(&template, &mut wire);
    }
    let mut decoder = FrameDecoder::new(1024);
    decoder.extend(&wire);
    for n in 0..3 {
        let envelope = Envelope::decode(decoder.next_frame().unwrap().unwrap()).unwrap();
        assert_eq!(
            (envelope.seq, envelope.id.as_str(), envelope.priority),
            (n, n.to_string().as_str(), 1)
        );
        assert_eq!(envelope.command, "getelement");
        let request = GetElementRequest::decode(envelope.data.unwrap().value.as_slice()).unwrap();
        assert_eq!(request.xpath, "bench");
    }
    assert_eq!(decoder.next_frame(), Ok(None));
}

#[test]
fn signin_envelope_carries_credentials() {
    let envelope = super::workload::signin_envelope("admin", "pw", 1);
    assert_eq!(envelope.command, "signin");
    let request =
        crate::proto::SigninRequest::decode(envelope.data.unwrap().value.as_slice()).unwrap();
    assert_eq!(
        (request.username.as_str(), request.password.as_str()),
        ("admin", "pw")
    );
}

// ---- pipeline ---------------------------------------------------------------

#[derive(Default)]
struct Sent(Vec<Envelope>);

impl Outbox for Sent {
    fn push(&mut self, envelope: &Envelope) {
        self.0.push(envelope.clone());
    }
}

fn reply(command: &str, rid: &str) -> Head {
    Head {
        command: Bytes::copy_from_slice(command.as_bytes()),
        rid: Bytes::copy_from_slice(rid.as_bytes()),
        ..Default::default()
    }
}

/// No warm-up, 10 s measured, 10 s request timeout.
fn ten_seconds_from(t0: Instant) -> Schedule {
    Schedule::new(
        t0,
        Duration::ZERO,
        Duration::from_secs(10),
        Duration::from_secs(10),
    )
}

fn pipeline(k: usize, first: u64, schedule: Schedule, budget: Option<u64>) -> Pipeline {
    let cmd = BenchCommand::GetElement;
    Pipeline::new(
        cmd.template(1),
        &cmd.success_reply(),
        k,
        first,
        schedule,
        budget,
    )
}

#[test]
fn keeps_k_outstanding_with_consecutive_seq() {
    let t0 = Instant::now();
    let schedule = ten_seconds_from(t0);
    let mut p = pipeline(3, 1, schedule, None);
    let mut out = Sent::default();
    p.fill(t0, &mut out);
    assert_eq!(
        out.0
            .iter()
            .map(|e| (e.seq, e.id.clone()))
            .collect::<Vec<_>>(),
        vec![
            (1, "1".to_string()),
            (2, "2".to_string()),
            (3, "3".to_string())
        ]
    );
    p.fill(t0, &mut out);
    assert_eq!(out.0.len(), 3, "never more than K outstanding");
    p.on_envelope(
        t0 + Duration::from_micros(250),
        &reply("getelement", "2"),
        &mut out,
    );
    assert_eq!(p.outstanding(), 2);
    p.fill(t0, &mut out);
    assert_eq!(out.0.last().unwrap().seq, 4);
    let stats = p.into_stats();
    assert_eq!(
        (stats.sent, stats.completed, stats.histogram.len()),
        (4, 1, 1)
    );
    assert!((249_000..=251_000).contains(&stats.histogram.max()));
}

#[test]
fn errors_unknown_rids_and_unexpected_replies() {
    let t0 = Instant::now();
    let schedule = ten_seconds_from(t0);
    let mut p = pipeline(3, 0, schedule, None);
    let mut out = Sent::default();
    p.fill(t0, &mut out);
    let mut error = reply("error", "0");
    error.data = Bytes::from(
        pack(&ErrorResponse {
            message: "nope".into(),
            code: 3001,
            stack: String::new(),
        })
        .encode_to_vec(),
    );
    p.on_envelope(t0, &error, &mut out);
    p.on_envelope(t0, &reply("getelement", "77"), &mut out); // not ours: ignored
    p.on_envelope(t0, &reply("getelement", "0"), &mut out); // already answered: ignored
    p.on_envelope(t0, &reply("queryreply", "1"), &mut out);
    p.on_envelope(t0, &reply("refreshtoken", ""), &mut out); // push: ignored
    let stats = p.into_stats();
    assert_eq!(
        stats.errors,
        Errors {
            replies: 1,
            timeouts: 0,
            disconnects: 0,
            unexpected: 1
        }
    );
    assert_eq!(stats.completed, 0);
    assert_eq!(
        stats.first_error.as_deref(),
        Some("error reply to getelement: nope (code 3001)")
    );
}

#[test]
fn pings_get_a_pong_with_the_next_seq() {
    let t0 = Instant::now();
    let schedule = ten_seconds_from(t0);
    let mut p = pipeline(1, 0, schedule, None);
    let mut out = Sent::default();
    p.fill(t0, &mut out);
    let mut ping = reply("ping", "");
    ping.id = Bytes::from_static(b"17");
    p.on_envelope(t0, &ping, &mut out);
    let pong = out.0.last().unwrap();
    assert_eq!(
        (
            pong.command.as_str(),
            pong.rid.as_str(),
            pong.seq,
            pong.id.as_str()
        ),
        ("pong", "17", 1, "1")
    );
    assert_eq!(p.outstanding(), 1);
    p.on_envelope(t0, &reply("getelement", "0"), &mut out);
    p.fill(t0, &mut out);
    assert_eq!(out.0.last().unwrap().seq, 2);
}

#[test]
fn timeouts_are_counted_and_replaced() {
    let t0 = Instant::now();
    let schedule = Schedule::new(
        t0,
        Duration::ZERO,
        Duration::from_secs(60),
        Duration::from_secs(10),
    );
    let mut p = pipeline(2, 0, schedule, None);
    let mut out = Sent::default();
    p.fill(t0, &mut out);
    p.expire(t0 + Duration::from_secs(9));
    assert_eq!(p.outstanding(), 2);
    p.expire(t0 + Duration::from_secs(10));
    assert_eq!(p.outstanding(), 0);
    p.fill(t0 + Duration::from_secs(10), &mut out);
    assert_eq!(out.0.len(), 4);
    // A late reply to an expired request is ignored.
    p.on_envelope(
        t0 + Duration::from_secs(11),
        &reply("getelement", "0"),
        &mut out,
    );
    let stats = p.into_stats();
    assert_eq!((stats.errors.timeouts, stats.completed), (2, 0));
}

#[test]
fn warmup_is_not_measured_and_nothing_is_sent_after_the_end() {
    let t0 = Instant::now();
    let schedule = Schedule::new(
        t0,
        Duration::from_secs(1),
        Duration::from_secs(1),
        Duration::from_secs(10),
    );
    let mut p = pipeline(1, 0, schedule, None);
    let mut out = Sent::default();
    p.fill(t0, &mut out); // warmup request
    p.on_envelope(
        t0 + Duration::from_millis(1100),
        &reply("getelement", "0"),
        &mut out,
    );
    p.fill(t0 + Duration::from_millis(1100), &mut out); // measured
    p.on_envelope(
        t0 + Duration::from_millis(1200),
        &reply("getelement", "1"),
        &mut out,
    );
    p.fill(t0 + Duration::from_millis(1990), &mut out); // measured, answered too late
    p.on_envelope(
        t0 + Duration::from_millis(2001),
        &reply("getelement", "2"),
        &mut out,
    );
    p.fill(t0 + Duration::from_millis(2001), &mut out);
    assert_eq!(out.0.len(), 3);
    assert!(p.finished(t0 + Duration::from_millis(2001)));
    let stats = p.into_stats();
    assert_eq!((stats.completed, stats.histogram.len()), (3, 1));
}

#[test]
fn max_requests_share_ends_the_connection_early() {
    let t0 = Instant::now();
    let schedule = ten_seconds_from(t0);
    let mut p = pipeline(4, 0, schedule, Some(2));
    let mut out = Sent::default();
    p.fill(t0, &mut out);
    assert_eq!(out.0.len(), 2);
    assert!(!p.finished(t0));
    p.on_envelope(t0, &reply("getelement", "0"), &mut out);
    p.on_envelope(t0, &reply("getelement", "1"), &mut out);
    p.fill(t0, &mut out);
    assert_eq!(out.0.len(), 2);
    assert!(p.finished(t0 + Duration::from_millis(3)));
    let stats = p.into_stats();
    assert_eq!(stats.stopped_after, Some(Duration::from_millis(3)));
    assert_eq!(stats.histogram.len(), 2);
}

// ---- report -----------------------------------------------------------------

#[test]
fn latency_formatting() {
    assert_eq!(format_micros(0.0), "0µs");
    assert_eq!(format_micros(310.4), "310µs");
    assert_eq!(format_micros(999.4), "999µs");
    assert_eq!(format_micros(1400.0), "1.4ms");
    assert_eq!(format_micros(12_345.0), "12.3ms");
    assert_eq!(format_micros(250_000.0), "250ms");
    assert_eq!(format_micros(1_250_000.0), "1.25s");
}

#[test]
fn duration_formatting() {
    assert_eq!(format_seconds(Duration::from_secs(10)), "10s");
    assert_eq!(format_seconds(Duration::from_millis(2500)), "2.5s");
    assert_eq!(format_seconds(Duration::from_millis(1234)), "1.23s");
}

fn sample_report() -> Report {
    Report {
        transport: "ws".into(),
        command: "getelement".into(),
        url: "ws://127.0.0.1:3000/ws/v2".into(),
        connections: 50,
        in_flight: 4,
        warmup: Duration::from_secs(2),
        duration: Duration::from_secs(10),
        requests: 1_234_560,
        sent: 1_500_000,
        latency: Latency {
            p50: 310.0,
            p90: 520.0,
            p99: 900.0,
            p999: 1400.0,
            max: 5100.0,
            mean: 330.0,
        },
        errors: Errors::default(),
        first_error: None,
        nodes: Vec::new(),
    }
}

#[test]
fn text_report() {
    let report = sample_report();
    assert_eq!(
        report.to_text(),
        "ws getelement C=50 K=4 10s: 1234560 requests, 123456 req/s, \
         p50 310µs p90 520µs p99 900µs p99.9 1.4ms max 5.1ms, errors 0"
    );
    let mut failing = report;
    failing.errors = Errors {
        replies: 1,
        timeouts: 2,
        disconnects: 3,
        unexpected: 0,
    };
    failing.first_error = Some("connection lost: x".into());
    let text = failing.to_text();
    assert!(
        text.contains(
            "errors 6 (1 error replies, 2 timeouts, 3 disconnects, 0 unexpected replies)"
        ),
        "{text}"
    );
    assert!(
        text.ends_with("\nfirst error: connection lost: x"),
        "{text}"
    );
}

#[test]
fn json_report() {
    let json = sample_report().to_json();
    assert_eq!(json["transport"], "ws");
    assert_eq!(json["connections"], 50);
    assert_eq!(json["in_flight"], 4);
    assert_eq!(json["duration_s"], 10.0);
    assert_eq!(json["requests"], 1_234_560);
    assert_eq!(json["requests_per_sec"], 123_456.0);
    assert_eq!(json["latency_us"]["p99_9"], 1400.0);
    assert_eq!(json["errors"]["total"], 0);
    assert!(json["first_error"].is_null());
    // One line.
    assert!(!json.to_string().contains('\n'));
}

#[test]
fn empty_histogram_reports_zeros() {
    let latency = Latency::from_histogram(&super::stats::new_histogram());
    assert_eq!(latency, Latency::default());
}

#[test]
fn error_chains_include_sources() {
    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("transport error")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
    let err = Outer(std::io::Error::new(
        std::io::ErrorKind::ConnectionRefused,
        "Connection refused",
    ));
    assert_eq!(
        super::grpc::error_chain(&err),
        "transport error: Connection refused"
    );
}

#[test]
fn measured_time_ends_with_the_last_connection() {
    use super::stats::measured_time;
    let full = Duration::from_secs(10);
    let s = Duration::from_secs;
    assert_eq!(measured_time(full, [None, Some(s(3))]), full);
    assert_eq!(measured_time(full, [Some(s(2)), Some(s(3))]), s(3));
    assert_eq!(measured_time(full, [Some(s(20))]), full);
    assert_eq!(measured_time(full, []), full);
}

#[test]
fn a_lost_connection_stops_the_clock_for_it() {
    let t0 = Instant::now();
    let schedule = Schedule::new(
        t0,
        Duration::from_secs(1),
        Duration::from_secs(10),
        Duration::from_secs(10),
    );
    let mut p = pipeline(2, 0, schedule, None);
    p.disconnected(t0 + Duration::from_secs(4), "server closed the connection");
    let stats = p.into_stats();
    assert_eq!(stats.errors.disconnects, 1);
    assert_eq!(stats.stopped_after, Some(Duration::from_secs(3)));
    assert_eq!(
        stats.first_error.as_deref(),
        Some("connection lost: server closed the connection")
    );
}

// ---- document workloads -------------------------------------------------------

#[test]
fn document_workloads_need_a_user() {
    for command in ["query", "insertone"] {
        let c = Wrapper::try_parse_from(["bench", "--url", "tcp://h:1", "--command", command])
            .unwrap()
            .bench;
        assert!(
            c.validate().unwrap_err().contains("needs --username"),
            "{command}"
        );
        let c = Wrapper::try_parse_from([
            "bench",
            "--url",
            "tcp://h:1",
            "--command",
            command,
            "--username",
            "u",
            "--password",
            "p",
        ])
        .unwrap()
        .bench;
        assert!(c.validate().is_ok());
    }
}

#[test]
fn query_template_comes_from_the_setup_reply() {
    use crate::proto::{InsertOneResponse, QueryRequest};
    let setup = BenchCommand::Query
        .setup(2)
        .expect("query has a setup request");
    assert_eq!(setup.command, "insertone");
    assert!(BenchCommand::InsertOne.setup(2).is_none());
    let reply = crate::protocol::envelope::reply(
        "insertone",
        "1",
        &InsertOneResponse {
            result: r#"{"_id":"5a1702fa245d9013697656fb","name":"x"}"#.into(),
        },
    );
    let head = Head::decode(reply.encode_to_vec().as_slice()).unwrap();
    let template = BenchCommand::Query.template_after_setup(2, &head).unwrap();
    assert_eq!((template.command.as_str(), template.priority), ("query", 2));
    let request = QueryRequest::decode(template.data.unwrap().value.as_slice()).unwrap();
    assert_eq!(request.collectionname, "bench");
    assert_eq!(request.query, r#"{"_id":"5a1702fa245d9013697656fb"}"#);
    let bad = crate::protocol::envelope::reply(
        "insertone",
        "1",
        &InsertOneResponse {
            result: "{}".into(),
        },
    );
    let head = Head::decode(bad.encode_to_vec().as_slice()).unwrap();
    assert!(BenchCommand::Query.template_after_setup(2, &head).is_err());
}

#[test]
fn document_workloads_run_against_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = crate::server::BackgroundServer::start(crate::config::ServeConfig::for_tests(
        dir.path().join("data"),
    ))
    .unwrap();
    let tcp = format!("tcp://{}", server.bound.tcp.unwrap());
    let ws = format!("ws://{}", server.bound.http.unwrap());
    let grpc = format!("grpc://{}", server.bound.grpc.unwrap());
    for (command, url) in [("query", &tcp), ("insertone", &ws), ("query", &grpc)] {
        let args = [
            "bench",
            "--url",
            url,
            "--command",
            command,
            "-c",
            "2",
            "-k",
            "2",
            "-d",
            "5s",
            "--warmup",
            "0s",
            "--username",
            "admin",
            "--password",
            "admin-password",
            "--max-requests",
            "40",
        ];
        let config = Wrapper::try_parse_from(args).unwrap().bench;
        let target = config.validate().unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let report = runtime.block_on(super::execute(&config, &target)).unwrap();
        runtime.shutdown_timeout(Duration::from_secs(1));
        assert_eq!(
            report.errors.total(),
            0,
            "{command} over {url}: {:?}",
            report.first_error
        );
        assert_eq!(report.requests, 40, "{command} over {url}");
    }
    server.stop();
}

#[test]
fn watch_workload_runs_against_a_server_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = crate::server::BackgroundServer::start(crate::config::ServeConfig::for_tests(
        dir.path().join("data"),
    ))
    .unwrap();
    let ws = format!("ws://{}", server.bound.http.unwrap());
    let tcp = format!("tcp://{}", server.bound.tcp.unwrap());
    for url in [&ws, &tcp] {
        let args = [
            "bench",
            "--url",
            url,
            "--command",
            "watch",
            "-c",
            "3",
            "--watches",
            "2",
            "-k",
            "2",
            "-d",
            "1s",
            "--warmup",
            "200ms",
            "--rate",
            "200",
            "--username",
            "admin",
            "--password",
            "admin-password",
        ];
        let config = Wrapper::try_parse_from(args).unwrap().bench;
        let target = config.validate().unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let report = runtime
            .block_on(super::execute_watch(&config, &target))
            .unwrap();
        runtime.shutdown_timeout(Duration::from_secs(1));
        assert!(report.inserts > 50, "{url}: {report:?}");
        assert_eq!(report.delivered, report.inserts * 3, "{url}: {report:?}");
        assert_eq!(
            (report.lost, report.failed_inserts),
            (0, 0),
            "{url}: {report:?}"
        );
        assert!(report.first_error.is_none(), "{url}: {report:?}");
    }
    server.stop();
}

#[test]
fn a_url_list_spreads_connections_over_nodes_of_one_transport() {
    let targets =
        super::target::Targets::parse("ws://a:3001, ws://b:3002/ws/v2").expect("two nodes");
    assert_eq!(targets.all().len(), 2);
    assert_eq!(targets.for_connection(0).port, 3001);
    assert_eq!(targets.for_connection(1).port, 3002);
    assert_eq!(targets.for_connection(4).port, 3001);
    assert_eq!(targets.to_string(), "ws://a:3001/ws/v2,ws://b:3002/ws/v2");
    assert!(super::target::Targets::parse("ws://a:1,tcp://b:2").is_err());
    assert!(super::target::Targets::parse(",").is_err());
    assert_eq!(
        super::target::Targets::parse("tcp://a:1")
            .unwrap()
            .all()
            .len(),
        1
    );
}

#[test]
fn a_url_list_reports_each_node_and_the_total() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let servers: Vec<_> = dirs
        .iter()
        .map(|dir| {
            crate::server::BackgroundServer::start(crate::config::ServeConfig::for_tests(
                dir.path().join("data"),
            ))
            .unwrap()
        })
        .collect();
    let urls = servers
        .iter()
        .map(|server| format!("tcp://{}", server.bound.tcp.unwrap()))
        .collect::<Vec<_>>()
        .join(",");
    let args = [
        "bench",
        "--url",
        &urls,
        "-c",
        "3",
        "-k",
        "2",
        "-d",
        "5s",
        "--warmup",
        "0s",
        "--max-requests",
        "60",
    ];
    let config = Wrapper::try_parse_from(args).unwrap().bench;
    let target = config.validate().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let report = runtime.block_on(super::execute(&config, &target)).unwrap();
    runtime.shutdown_timeout(Duration::from_secs(1));
    assert_eq!(report.errors.total(), 0, "{:?}", report.first_error);
    assert_eq!(report.requests, 60);
    assert_eq!(report.nodes.len(), 2);
    // Connections 0 and 2 on the first node, 1 on the second; budgets 20 each.
    assert_eq!(
        (report.nodes[0].connections, report.nodes[1].connections),
        (2, 1)
    );
    assert_eq!(
        (report.nodes[0].requests, report.nodes[1].requests),
        (40, 20)
    );
    assert!(
        report.to_text().contains("node tcp://"),
        "{}",
        report.to_text()
    );
    for server in servers {
        server.stop();
    }
}
