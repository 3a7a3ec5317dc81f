//! Tests of the queue workload and the AMQP baseline: message stamps, the ring, the
//! loss accounting, the report, the CLI, and the connection loop against an
//! in-memory fake broker that can drop or duplicate messages.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use prost::Message;
use tokio::sync::mpsc;

use super::connection::Transport;
use super::pipeline::Outbox;
use super::queue::{
    self, body, parse_stamp, tally, Ack, Clock, Member, Plan, Progress, ReceiverLog, RunInfo,
    SenderLog, Stamp, Tally,
};
use super::wire::Head;
use super::workload::BenchCommand;
use super::BenchConfig;
use crate::proto::{Envelope, QueueEvent, QueueMessageRequest, QueueMessageResponse};
use crate::protocol::envelope::{pack, reply};

#[derive(Parser)]
struct Wrapper {
    #[command(flatten)]
    bench: BenchConfig,
}

fn clock(t0: Instant) -> Clock {
    Clock::new(
        t0,
        Duration::from_secs(1),
        Duration::from_secs(10),
        Duration::from_secs(2),
        Duration::from_secs(5),
    )
}

// ---- bodies ---------------------------------------------------------------------

#[test]
fn bodies_carry_their_stamp_and_pad() {
    let stamp = Stamp {
        sender: 7,
        seq: 123_456,
        sent_ns: 9_876_543_210,
    };
    let small = body(stamp, 0);
    assert_eq!(
        small,
        r#"{"bench_c":7,"bench_s":123456,"bench_t":9876543210}"#
    );
    assert_eq!(parse_stamp(small.as_bytes()), Some(stamp));
    let padded = body(stamp, 512);
    assert_eq!(padded.len(), 512, "{padded}");
    let value: serde_json::Value = serde_json::from_str(&padded).unwrap();
    assert_eq!(value["bench_s"], 123_456);
    assert_eq!(parse_stamp(padded.as_bytes()), Some(stamp));
    // Padding smaller than the body changes nothing.
    assert_eq!(body(stamp, 10), small);
}

#[test]
fn stamps_survive_reordering_and_whitespace() {
    let reordered = br#"{"pad":"x", "bench_t": 5,"bench_s":  2, "bench_c":1}"#;
    assert_eq!(
        parse_stamp(reordered),
        Some(Stamp {
            sender: 1,
            seq: 2,
            sent_ns: 5
        })
    );
    assert_eq!(parse_stamp(br#"{"bench_c":1,"bench_s":2}"#), None);
    assert_eq!(
        parse_stamp(br#"{"bench_c":1,"bench_s":"2","bench_t":3}"#),
        None
    );
    assert_eq!(parse_stamp(b""), None);
}

#[test]
fn stamps_are_found_in_an_encoded_queueevent() {
    let stamp = Stamp {
        sender: 3,
        seq: 4,
        sent_ns: 5,
    };
    let event = Envelope {
        command: "queueevent".into(),
        data: Some(pack(&QueueEvent {
            queuename: "opencore-bench.abc".into(),
            correlation_id: "c".into(),
            data: body(stamp, 100),
            ..Default::default()
        })),
        ..Default::default()
    };
    let head = Head::decode(event.encode_to_vec().as_slice()).unwrap();
    assert_eq!(queue::event_stamp(&head), Some(stamp));
}

#[test]
fn queuemessage_requests_strip_the_token_and_expire() {
    let plan = plan_for(1, 4, Instant::now(), 0);
    let stamp = Stamp {
        sender: 0,
        seq: 1,
        sent_ns: 2,
    };
    let envelope = queue::message_envelope("q1", stamp, &plan);
    assert_eq!(
        (envelope.command.as_str(), envelope.priority),
        ("queuemessage", 1)
    );
    let request = QueueMessageRequest::decode(envelope.data.unwrap().value.as_slice()).unwrap();
    assert_eq!(request.queuename, "q1");
    assert!(request.striptoken);
    assert_eq!(request.expiration, 300_000);
    assert_eq!(parse_stamp(request.data.as_bytes()), Some(stamp));
    assert!(request.replyto.is_empty());
}

// ---- ring and accounting ------------------------------------------------------------

#[test]
fn the_ring_wraps() {
    assert_eq!((queue::next(0, 3), queue::next(2, 3)), (1, 0));
    assert_eq!((queue::previous(0, 3), queue::previous(1, 3)), (2, 0));
    // One connection sends to itself.
    assert_eq!((queue::next(0, 1), queue::previous(0, 1)), (0, 0));
}

#[test]
fn progress_knows_when_a_receiver_has_everything() {
    let p = Progress::new(3);
    // Receiver 1 gets sender 0's messages.
    assert!(!p.drained_into(1));
    p.note_sent(0);
    p.note_sent(0);
    p.note_acked(0);
    p.note_acked(0);
    p.note_delivered(0);
    p.sender_done(0);
    assert!(
        !p.drained_into(1),
        "one of two acknowledged messages still missing"
    );
    assert_eq!(p.backlog(0), 1);
    p.note_delivered(0);
    assert!(p.drained_into(1));
    assert_eq!(p.backlog(0), 0);
    // Sender 2 (into receiver 0) is not done yet.
    assert!(!p.drained_into(0));
}

#[test]
fn sender_answers_count_once_and_only_in_the_window() {
    let t0 = Instant::now();
    let c = clock(t0);
    let s = Duration::from_secs;
    let mut log = SenderLog::new(0);
    assert!(log.sent(0));
    assert!(log.sent(1));
    assert!(log.sent(2));
    assert!(!log.sent(7), "sequence numbers are dense");
    // Sent in warmup, acked in the window: counted as an ack, no latency.
    assert!(log.answered(0, Ack::Acked, t0, t0 + s(2), &c));
    // Sent and acked in the window: both.
    assert!(log.answered(1, Ack::Acked, t0 + s(2), t0 + s(3), &c));
    assert!(!log.answered(1, Ack::Failed, t0 + s(2), t0 + s(4), &c));
    assert!(log.answered(2, Ack::Failed, t0 + s(2), t0 + s(4), &c));
    assert!(!log.answered(9, Ack::Acked, t0, t0, &c));
    assert_eq!(log.acks, vec![Ack::Acked, Ack::Acked, Ack::Failed]);
    assert_eq!(log.acks_measured, 2);
    assert_eq!(log.ack_latency.len(), 1);
    assert_eq!(
        log.ack_latency.max(),
        log.ack_latency.highest_equivalent(1_000_000_000)
    );
}

#[test]
fn receivers_count_duplicates_and_strays() {
    let t0 = Instant::now();
    let c = clock(t0);
    let mut log = ReceiverLog::new(1, 3);
    assert_eq!(log.sender, 0);
    let from = |sender, seq, sent_ns| {
        Some(Stamp {
            sender,
            seq,
            sent_ns,
        })
    };
    let in_window = Duration::from_secs(2).as_nanos() as u64;
    let at = t0 + Duration::from_millis(2_005);
    assert!(log.delivered(from(0, 0, in_window), at, &c));
    assert!(!log.delivered(from(0, 0, in_window), at, &c), "a duplicate");
    assert!(log.delivered(from(0, 3, 10), at, &c), "sent in warmup");
    assert!(
        !log.delivered(from(2, 1, in_window), at, &c),
        "wrong sender"
    );
    assert!(!log.delivered(None, at, &c), "no stamp");
    assert!(
        !log.delivered(from(0, u64::MAX, 1), at, &c),
        "absurd sequence number"
    );
    assert_eq!(log.counts, vec![2, 0, 0, 1]);
    assert_eq!(log.foreign, 3);
    assert_eq!(log.delivered_measured, 3);
    // Latency only for the first delivery of a message sent in the window: 5 ms.
    assert_eq!(log.latency.len(), 1);
    let ms = log.latency.max() as f64 / 1e6;
    assert!((4.9..5.1).contains(&ms), "{ms}");
}

#[test]
fn tally_finds_lost_duplicated_and_unacknowledged_messages() {
    let mut s0 = SenderLog::new(0);
    s0.acks = vec![
        Ack::Acked,    // 0: delivered once
        Ack::Acked,    // 1: lost
        Ack::Failed,   // 2: refused but delivered anyway
        Ack::Pending,  // 3: never answered, not delivered
        Ack::Acked,    // 4: delivered twice
        Ack::TimedOut, // 5: timed out, not delivered
    ];
    let mut s1 = SenderLog::new(1);
    s1.acks = vec![Ack::Acked, Ack::Acked];
    let mut r1 = ReceiverLog::new(1, 2);
    r1.counts = vec![1, 0, 1, 0, 2, 0, 0, 1]; // 7: never sent
    r1.foreign = 2;
    let mut r0 = ReceiverLog::new(0, 2);
    r0.counts = vec![1, 1];
    let t = tally(&[s0, s1], &[r0, r1]);
    assert_eq!(
        t,
        Tally {
            sent: 8,
            acked: 5,
            failed: 1,
            timed_out: 1,
            unanswered: 1,
            delivered: 5,
            lost: 1,
            duplicates: 1,
            delivered_unacked: 1,
            phantom: 1,
            foreign: 2,
        }
    );
}

#[test]
fn a_missing_receiver_loses_everything_acknowledged() {
    let mut s0 = SenderLog::new(0);
    s0.acks = vec![Ack::Acked, Ack::Acked, Ack::Pending];
    let t = tally(&[s0], &[]);
    assert_eq!((t.acked, t.lost, t.unanswered, t.delivered), (2, 2, 1, 0));
}

fn run_info() -> RunInfo {
    RunInfo {
        transport: "ws".into(),
        command: "queuemessage".into(),
        target: "ws://127.0.0.1:3000/ws/v2".into(),
        connections: 2,
        in_flight: 4,
        payload_bytes: 0,
        warmup: Duration::from_secs(1),
        duration: Duration::from_secs(10),
    }
}

#[test]
fn the_report_names_lost_and_duplicated_messages() {
    let t0 = Instant::now();
    let c = clock(t0);
    let mut s0 = SenderLog::new(0);
    for seq in 0..3 {
        s0.sent(seq);
        s0.answered(
            seq,
            Ack::Acked,
            t0 + Duration::from_secs(2),
            t0 + Duration::from_secs(3),
            &c,
        );
    }
    let mut r1 = ReceiverLog::new(1, 2);
    let at = t0 + Duration::from_secs(4);
    for seq in [0, 0, 2] {
        r1.delivered(
            Some(Stamp {
                sender: 0,
                seq,
                sent_ns: 2_000_000_000,
            }),
            at,
            &c,
        );
    }
    let report = queue::build_report(run_info(), &[s0], &[r1], &[]);
    assert_eq!(report.acks_measured, 3);
    assert_eq!(report.deliveries_measured, 3);
    assert_eq!((report.tally.lost, report.tally.duplicates), (1, 1));
    assert!(report.has_problems());
    let text = report.to_text();
    assert!(
        text.starts_with("ws queuemessage C=2 K=4 0B 10s: 3 acks (0/s), 3 deliveries (0/s)"),
        "{text}"
    );
    assert!(text.contains("lost 1 duplicates 1"), "{text}");
    assert!(text.contains("send→delivery p50 2.00s"), "{text}");
    let json = report.to_json();
    assert_eq!(json["messages"]["lost"], 1);
    assert_eq!(json["messages"]["duplicates"], 1);
    assert_eq!(json["acks"], 3);
    assert!(!json.to_string().contains('\n'));
}

#[test]
fn a_clean_report_has_no_problems() {
    let report = queue::build_report(run_info(), &[], &[], &[]);
    assert!(!report.has_problems());
    let failed = queue::build_report(run_info(), &[], &[], &["connection 1 did not stop".into()]);
    assert_eq!(
        failed.first_error.as_deref(),
        Some("connection 1 did not stop")
    );
}

#[test]
fn the_amqp_report_speaks_of_confirms() {
    let mut info = run_info();
    info.transport = "amqp".into();
    info.command = "amqp-baseline".into();
    let text = queue::build_report(info, &[], &[], &[]).to_text();
    assert!(
        text.starts_with("amqp amqp-baseline C=2 K=4 0B 10s: 0 confirms (0/s)"),
        "{text}"
    );
}

// ---- CLI ---------------------------------------------------------------------------

#[test]
fn queuemessage_flags() {
    let c = Wrapper::try_parse_from([
        "bench",
        "--url",
        "ws://h:1",
        "--command",
        "queuemessage",
        "-c",
        "50",
        "--inflight",
        "4",
        "--payload-bytes",
        "256",
        "--drain",
        "3s",
        "--max-backlog",
        "100",
    ])
    .unwrap()
    .bench;
    assert_eq!(c.command, BenchCommand::QueueMessage);
    assert_eq!((c.connections, c.in_flight, c.payload_bytes), (50, 4, 256));
    assert_eq!((c.drain, c.max_backlog), (Duration::from_secs(3), 100));
    assert_eq!(c.message_expiration, Duration::from_secs(300));
    assert!(c.validate().unwrap_err().contains("needs --username"));
    let c = Wrapper::try_parse_from([
        "bench",
        "--url",
        "ws://h:1",
        "--command",
        "queuemessage",
        "--username",
        "admin",
        "--password",
        "admin",
        "--message-expiration",
        "0s",
    ])
    .unwrap()
    .bench;
    assert!(c.validate().unwrap_err().contains("--message-expiration"));
}

#[test]
fn amqp_baseline_needs_an_amqp_url_and_no_server_url() {
    let c = Wrapper::try_parse_from([
        "bench",
        "--command",
        "amqp-baseline",
        "--amqp-url",
        "amqp://guest:secret@127.0.0.1:5672/%2f",
        "-c",
        "50",
        "-k",
        "4",
    ])
    .unwrap()
    .bench;
    assert_eq!(
        c.validate_amqp().unwrap(),
        "amqp://guest:secret@127.0.0.1:5672/%2f"
    );
    assert!(c.validate().unwrap_err().contains("--url is required"));
    let mut missing = c.clone();
    missing.amqp_url = None;
    assert!(missing.validate_amqp().unwrap_err().contains("--amqp-url"));
    let mut wrong = c.clone();
    wrong.amqp_url = Some("http://guest:secret@h".into());
    let err = wrong.validate_amqp().unwrap_err();
    assert!(err.contains("amqp://") && !err.contains("secret"), "{err}");
    let mut none = c;
    none.amqp_connections = 0;
    assert!(none.validate_amqp().is_err());
}

#[test]
fn amqp_urls_are_shown_without_password() {
    use super::amqp_baseline::redact;
    assert_eq!(
        redact("amqp://guest:guest@127.0.0.1:5672/%2f"),
        "amqp://guest:***@127.0.0.1:5672/%2f"
    );
    assert_eq!(redact("amqp://127.0.0.1"), "amqp://127.0.0.1");
    assert_eq!(redact("amqp://u@h"), "amqp://u@h");
}

#[test]
fn amqp_queue_arguments_match_opencore() {
    use lapin::types::AMQPValue;
    let args = super::amqp_baseline::queue_arguments();
    let inner = args.inner();
    assert_eq!(
        inner.get(&lapin::types::ShortString::from("x-max-priority")),
        Some(&AMQPValue::LongInt(3))
    );
    assert_eq!(
        inner.get(&lapin::types::ShortString::from("x-dead-letter-exchange")),
        Some(&AMQPValue::LongString("openflow-dlx".into()))
    );
}

// ---- the connection loop against a fake broker ------------------------------------------

/// An in-memory broker: acknowledges every `queuemessage` and delivers it to the
/// target queue's inbox, except every `drop_every`-th (lost) or duplicating every
/// `dup_every`-th.
#[derive(Default)]
struct Broker {
    inboxes: HashMap<String, mpsc::UnboundedSender<Envelope>>,
    messages: u64,
    dropped: u64,
    duplicated: u64,
    drop_every: Option<u64>,
    dup_every: Option<u64>,
}

struct Fake {
    queue: String,
    broker: Arc<Mutex<Broker>>,
    inbox: mpsc::UnboundedReceiver<Envelope>,
    ready: VecDeque<Head>,
    /// Expected `seq` of the next envelope (ws/tcp need 0,1,2,…).
    next_seq: i32,
    misnumbered: Arc<Mutex<u64>>,
}

impl Outbox for Fake {
    fn push(&mut self, envelope: &Envelope) {
        if envelope.seq != self.next_seq {
            *self.misnumbered.lock().unwrap() += 1;
        }
        self.next_seq = envelope.seq + 1;
        if envelope.command != "queuemessage" {
            return;
        }
        let any = envelope.data.clone().unwrap();
        let request = QueueMessageRequest::decode(any.value.as_slice()).unwrap();
        let mut broker = self.broker.lock().unwrap();
        broker.messages += 1;
        let n = broker.messages;
        let own = broker.inboxes[&self.queue].clone();
        let ack = reply(
            "queuemessage",
            &envelope.id,
            &QueueMessageResponse {
                queuename: request.queuename.clone(),
                correlation_id: format!("c{n}"),
                data: request.data.clone(),
                ..Default::default()
            },
        );
        let _ = own.send(ack);
        if broker.drop_every.is_some_and(|every| n % every == 0) {
            broker.dropped += 1;
            return;
        }
        let copies = if broker.dup_every.is_some_and(|every| n % every == 0) {
            broker.duplicated += 1;
            2
        } else {
            1
        };
        let target = broker.inboxes[&request.queuename].clone();
        for _ in 0..copies {
            let _ = target.send(Envelope {
                command: "queueevent".into(),
                data: Some(pack(&QueueEvent {
                    queuename: request.queuename.clone(),
                    correlation_id: format!("c{n}"),
                    data: request.data.clone(),
                    ..Default::default()
                })),
                ..Default::default()
            });
        }
    }
}

impl Transport for Fake {
    async fn receive(&mut self) -> Result<(), String> {
        let first = self.inbox.recv().await.ok_or("inbox closed")?;
        self.ready.push_back(Head::from_envelope(first));
        while let Ok(more) = self.inbox.try_recv() {
            self.ready.push_back(Head::from_envelope(more));
        }
        Ok(())
    }

    fn next_envelope(&mut self) -> Result<Option<Head>, String> {
        Ok(self.ready.pop_front())
    }

    async fn flush(&mut self) -> Result<(), String> {
        Ok(())
    }

    async fn close(self) {}
}

fn plan_for(count: usize, in_flight: usize, t0: Instant, max_backlog: u64) -> Plan {
    Plan {
        clock: Clock::new(
            t0,
            Duration::from_millis(50),
            Duration::from_millis(300),
            Duration::from_millis(700),
            Duration::from_secs(5),
        ),
        progress: Progress::new(count),
        in_flight,
        priority: 1,
        payload_bytes: 0,
        expiration: 300_000,
        max_backlog,
    }
}

struct RingResult {
    report: queue::QueueReport,
    dropped: u64,
    duplicated: u64,
    messages: u64,
    misnumbered: u64,
    elapsed: Duration,
}

fn run_fake_ring(
    count: usize,
    drop_every: Option<u64>,
    dup_every: Option<u64>,
    budget: Option<u64>,
) -> RingResult {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let misnumbered = Arc::new(Mutex::new(0));
    let broker = Arc::new(Mutex::new(Broker {
        drop_every,
        dup_every,
        ..Default::default()
    }));
    let started = Instant::now();
    let report = runtime.block_on(async {
        let mut fakes = Vec::new();
        for index in 0..count {
            let (tx, rx) = mpsc::unbounded_channel();
            let queue = format!("q{index}");
            broker.lock().unwrap().inboxes.insert(queue.clone(), tx);
            fakes.push(Fake {
                queue,
                broker: broker.clone(),
                inbox: rx,
                ready: VecDeque::new(),
                next_seq: 2,
                misnumbered: misnumbered.clone(),
            });
        }
        let plan = Arc::new(plan_for(count, 3, Instant::now(), 0));
        let mut running = Vec::new();
        for (index, fake) in fakes.into_iter().enumerate() {
            let member = Member {
                index,
                counter: 2,
                target_queue: format!("q{}", queue::next(index, count)),
                budget,
            };
            running.push(tokio::spawn(queue::run(fake, member, plan.clone())));
        }
        let (mut senders, mut receivers) = (Vec::new(), Vec::new());
        for handle in running {
            let (s, r) = handle.await.unwrap();
            senders.push(s);
            receivers.push(r);
        }
        let mut info = run_info();
        info.connections = count;
        info.duration = Duration::from_millis(300);
        queue::build_report(info, &senders, &receivers, &[])
    });
    let elapsed = started.elapsed();
    runtime.shutdown_timeout(Duration::from_secs(1));
    let broker = broker.lock().unwrap();
    let misnumbered = *misnumbered.lock().unwrap();
    RingResult {
        report,
        dropped: broker.dropped,
        duplicated: broker.duplicated,
        messages: broker.messages,
        misnumbered,
        elapsed,
    }
}

#[test]
fn a_clean_ring_loses_nothing_and_drains_early() {
    let r = run_fake_ring(3, None, None, None);
    let t = r.report.tally;
    assert!(t.sent > 30, "{:?}", r.report);
    assert_eq!(t.sent, r.messages);
    assert_eq!((t.acked, t.delivered), (t.sent, t.sent), "{t:?}");
    assert_eq!((t.lost, t.duplicates, t.foreign, t.phantom), (0, 0, 0, 0));
    assert!(!r.report.has_problems(), "{}", r.report.to_text());
    assert!(r.report.acks_measured > 0 && r.report.deliveries_measured > 0);
    assert!(r.report.delivery_latency.p50 > 0.0);
    assert_eq!(r.misnumbered, 0, "envelopes must be numbered 2, 3, …");
    // Everything arrived, so nobody waited for the 700 ms drain.
    assert!(r.elapsed < Duration::from_millis(650), "{:?}", r.elapsed);
}

#[test]
fn dropped_messages_are_lost_and_duplicates_counted() {
    let r = run_fake_ring(3, Some(7), Some(5), None);
    let t = r.report.tally;
    assert!(r.dropped > 0 && r.duplicated > 0);
    assert_eq!(t.lost, r.dropped, "{t:?}");
    // A dropped message is never duplicated (the broker returns before).
    assert_eq!(t.duplicates, r.duplicated, "{t:?}");
    assert_eq!(t.delivered + t.lost, t.acked);
    assert!(r.report.has_problems());
    // The receivers waited for the missing messages until the drain ran out.
    assert!(r.elapsed >= Duration::from_millis(1000), "{:?}", r.elapsed);
}

#[test]
fn a_budget_stops_every_sender() {
    let r = run_fake_ring(2, None, None, Some(5));
    let t = r.report.tally;
    // Warmup sends are not part of the budget; measured ones are 5 per connection.
    assert!(r.report.acks_measured >= 10, "{:?}", r.report);
    assert_eq!((t.lost, t.unanswered), (0, 0));
    assert!(
        r.report.duration < Duration::from_millis(300),
        "{:?}",
        r.report.duration
    );
}

// ---- against a real server ----------------------------------------------------------

#[test]
fn queue_workload_runs_against_a_server_and_loses_nothing() {
    // The embedded bus on every transport, and RabbitMQ (when there is one) over ws.
    let mut runs = vec![(None, vec!["ws", "tcp", "grpc"])];
    if let Some(url) = amqp_url() {
        runs.push((Some(url), vec!["ws"]));
    }
    for (bus, transports) in runs {
        let dir = tempfile::tempdir().unwrap();
        let mut config = crate::config::ServeConfig::for_tests(dir.path().join("data"));
        config.bus.amqp_url = bus.clone();
        let server = crate::server::BackgroundServer::start(config).unwrap();
        for transport in transports {
            let url = match transport {
                "ws" => format!("ws://{}", server.bound.http.unwrap()),
                "tcp" => format!("tcp://{}", server.bound.tcp.unwrap()),
                _ => format!("grpc://{}", server.bound.grpc.unwrap()),
            };
            let what = format!("{url} on {}", bus.as_deref().unwrap_or("the embedded bus"));
            let args = [
                "bench",
                "--url",
                url.as_str(),
                "--command",
                "queuemessage",
                "-c",
                "3",
                "-k",
                "2",
                "-d",
                "1s",
                "--warmup",
                "200ms",
                "--payload-bytes",
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
                .block_on(super::execute_queue(&config, &target))
                .unwrap();
            runtime.shutdown_timeout(Duration::from_secs(1));
            let t = report.tally;
            assert!(t.acked > 20, "{what}: {}", report.to_text());
            assert_eq!(t.delivered, t.acked, "{what}: {}", report.to_text());
            assert!(!report.has_problems(), "{what}: {}", report.to_text());
            assert!(
                report.deliveries_measured > 0,
                "{what}: {}",
                report.to_text()
            );
        }
        server.stop();
    }
}

/// RabbitMQ for the AMQP tests, as the queue test suite finds it: `AMQP_URL` (`off`
/// skips), else a broker on 127.0.0.1:5672 with the default guest account.
fn amqp_url() -> Option<String> {
    match std::env::var("AMQP_URL") {
        Ok(url) if url == "off" => return None,
        Ok(url) if !url.is_empty() => return Some(url),
        _ => {}
    }
    let local = "127.0.0.1:5672".parse().unwrap();
    if std::net::TcpStream::connect_timeout(&local, Duration::from_millis(300)).is_ok() {
        return Some("amqp://guest:guest@127.0.0.1:5672/%2f".into());
    }
    eprintln!("SKIPPED: no AMQP_URL and nothing on 127.0.0.1:5672");
    None
}

#[test]
fn amqp_baseline_runs_against_rabbitmq_and_loses_nothing() {
    let Some(url) = amqp_url() else {
        return;
    };
    let config = Wrapper::try_parse_from([
        "bench",
        "--command",
        "amqp-baseline",
        "--amqp-url",
        url.as_str(),
        "-c",
        "3",
        "-k",
        "2",
        "-d",
        "1s",
        "--warmup",
        "200ms",
        "--amqp-connections",
        "2",
    ])
    .unwrap()
    .bench;
    let url = config.validate_amqp().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let report = runtime
        .block_on(super::amqp_baseline::execute(&config, &url))
        .unwrap();
    runtime.shutdown_timeout(Duration::from_secs(1));
    let t = report.tally;
    assert!(t.acked > 20, "{}", report.to_text());
    assert_eq!(t.delivered, t.acked, "{}", report.to_text());
    assert!(!report.has_problems(), "{}", report.to_text());
    assert_eq!(report.transport, "amqp");
}
