//! `opencore bench --command queuemessage`: C connections in a ring. Each signs in and
//! registers a temporary queue (`registerqueue` with an empty name); connection i then
//! keeps K `queuemessage`s in flight to the queue of connection (i+1) % C, while
//! consuming the `queueevent`s connection i-1 sends it.
//!
//! Every message body is a small JSON object naming its sender, its sequence number
//! and the time it was sent (ns since the bench's clock started), optionally padded
//! to `--payload-bytes`. Measured:
//! - publish acks/s: `queuemessagereply`s received in the measured window;
//! - deliveries/s: `queueevent`s received in the measured window;
//! - send → delivery latency of messages sent in the measured window (from the
//!   embedded timestamp, whenever they arrived, drain included);
//! - send → ack latency of requests sent in the measured window;
//! - lost: acknowledged publishes (whole run, warmup included) never delivered,
//!   after a drain of up to `--drain`; duplicates: extra deliveries of a message.
//!
//! The pure parts (message bodies, the shared progress counters, the loss accounting
//! and the report) are also used by `amqp_baseline`, which runs the same ring on
//! RabbitMQ directly with lapin.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::connection::Transport;
use super::stats::{self, Errors, Latency};
use super::wire::{parse_id, Head};
use super::workload::number;
use crate::proto::{Envelope, QueueEvent, QueueMessageRequest, RegisterQueueRequest};
use crate::protocol::envelope::pack;

/// How often a connection wakes without traffic (timeouts, drain and backlog checks).
pub const POLL: Duration = Duration::from_millis(50);

// ---- message bodies -----------------------------------------------------------

/// What the bench embeds in every message body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Index of the sending connection (client).
    pub sender: u64,
    /// The sender's sequence number, from 0.
    pub seq: u64,
    /// When it was sent, in ns since the bench's clock started.
    pub sent_ns: u64,
}

const SENDER_KEY: &[u8] = b"\"bench_c\":";
const SEQ_KEY: &[u8] = b"\"bench_s\":";
const TIME_KEY: &[u8] = b"\"bench_t\":";

/// The JSON body of one message: `{"bench_c":1,"bench_s":2,"bench_t":3}`, padded with a
/// `"pad":"xxx…"` member to at least `pad_to` bytes.
pub fn body(stamp: Stamp, pad_to: usize) -> String {
    let mut text = format!(
        r#"{{"bench_c":{},"bench_s":{},"bench_t":{}"#,
        stamp.sender, stamp.seq, stamp.sent_ns
    );
    // `,"pad":""` and the closing brace.
    let fixed = text.len() + 10;
    if pad_to > fixed {
        text.push_str(r#","pad":""#);
        text.extend(std::iter::repeat_n('x', pad_to - fixed));
        text.push('"');
    }
    text.push('}');
    text
}

/// The stamp of a body, found without decoding (in a JSON body, or in an encoded
/// `queueevent` payload: the JSON travels verbatim inside it). Key order and
/// whitespace after the colon do not matter.
pub fn parse_stamp(bytes: &[u8]) -> Option<Stamp> {
    Some(Stamp {
        sender: number_after(bytes, SENDER_KEY)?,
        seq: number_after(bytes, SEQ_KEY)?,
        sent_ns: number_after(bytes, TIME_KEY)?,
    })
}

fn number_after(bytes: &[u8], key: &[u8]) -> Option<u64> {
    let at = find(bytes, key)? + key.len();
    let rest = &bytes[at..];
    let skip = rest.iter().take_while(|b| b.is_ascii_whitespace()).count();
    let digits = &rest[skip..];
    let len = digits.iter().take_while(|b| b.is_ascii_digit()).count();
    if len == 0 || len > 19 {
        return None;
    }
    std::str::from_utf8(&digits[..len]).ok()?.parse().ok()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

// ---- the ring -------------------------------------------------------------------

/// The connection whose queue connection `index` sends to.
pub fn next(index: usize, count: usize) -> usize {
    (index + 1) % count.max(1)
}

/// The connection that sends to connection `index`'s queue.
pub fn previous(index: usize, count: usize) -> usize {
    let count = count.max(1);
    (index + count - 1) % count
}

/// The phases of a run (one clock for every connection, so timestamps compare).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Zero of the embedded timestamps; load starts here.
    pub start: Instant,
    pub measure_start: Instant,
    /// Nothing is sent from here on.
    pub end: Instant,
    /// Receivers give up waiting for outstanding deliveries here.
    pub drain_until: Instant,
    /// A request unanswered for this long counts as a timeout.
    pub request_timeout: Duration,
}

impl Clock {
    pub fn new(
        start: Instant,
        warmup: Duration,
        duration: Duration,
        drain: Duration,
        request_timeout: Duration,
    ) -> Clock {
        let measure_start = start + warmup;
        let end = measure_start + duration;
        Clock {
            start,
            measure_start,
            end,
            drain_until: end + drain,
            request_timeout,
        }
    }

    pub fn ns(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.start)
            .as_nanos()
            .min(u64::MAX as u128) as u64
    }

    /// Whether `at` lies in the measured window.
    pub fn measuring(&self, at: Instant) -> bool {
        at >= self.measure_start && at < self.end
    }

    /// Whether a message stamped `sent_ns` was sent in the measured window.
    pub fn sent_measuring(&self, sent_ns: u64) -> bool {
        self.measuring(self.start + Duration::from_nanos(sent_ns))
    }
}

/// Counters every connection (or client) shares, so a receiver knows when it has
/// everything its sender got acknowledged, and a sender can bound its backlog.
pub struct Progress {
    sent: Vec<AtomicU64>,
    acked: Vec<AtomicU64>,
    /// Distinct messages of each sender delivered so far.
    delivered: Vec<AtomicU64>,
    /// The sender stopped sending and has no request outstanding any more.
    done: Vec<AtomicBool>,
}

impl Progress {
    pub fn new(count: usize) -> Progress {
        Progress {
            sent: (0..count).map(|_| AtomicU64::new(0)).collect(),
            acked: (0..count).map(|_| AtomicU64::new(0)).collect(),
            delivered: (0..count).map(|_| AtomicU64::new(0)).collect(),
            done: (0..count).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    pub fn count(&self) -> usize {
        self.sent.len()
    }

    pub fn note_sent(&self, sender: usize) {
        self.sent[sender].fetch_add(1, Ordering::Relaxed);
    }

    pub fn note_acked(&self, sender: usize) {
        self.acked[sender].fetch_add(1, Ordering::SeqCst);
    }

    pub fn note_delivered(&self, sender: usize) {
        if let Some(counter) = self.delivered.get(sender) {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    }

    pub fn sender_done(&self, sender: usize) {
        self.done[sender].store(true, Ordering::SeqCst);
    }

    /// Messages of `sender` sent and not (yet) delivered.
    pub fn backlog(&self, sender: usize) -> u64 {
        self.sent[sender]
            .load(Ordering::Relaxed)
            .saturating_sub(self.delivered[sender].load(Ordering::Relaxed))
    }

    /// Whether everything the sender of `receiver`'s queue got acknowledged has
    /// arrived (and that sender will send nothing more).
    pub fn drained_into(&self, receiver: usize) -> bool {
        let sender = previous(receiver, self.count());
        // `done` first: once set, the acked count is final.
        self.done[sender].load(Ordering::SeqCst)
            && self.delivered[sender].load(Ordering::SeqCst)
                >= self.acked[sender].load(Ordering::SeqCst)
    }
}

/// What became of one published message, by sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// Sent, no answer (yet, or ever: the connection failed or the run ended).
    Pending,
    /// Acknowledged (`queuemessagereply`, or a broker confirm).
    Acked,
    /// Refused (`error` reply, nack, returned as unroutable).
    Failed,
    /// No answer within `--timeout`.
    TimedOut,
}

/// The sending half of one connection.
#[derive(Debug, Clone)]
pub struct SenderLog {
    pub index: usize,
    pub acks: Vec<Ack>,
    /// Acknowledgements received in the measured window.
    pub acks_measured: u64,
    /// Send → acknowledgement, requests sent in the measured window.
    pub ack_latency: Histogram<u64>,
    pub errors: Errors,
    pub first_error: Option<String>,
    /// When this sender stopped early (its `--max-requests` share was done, or it
    /// failed), measured from the start of the measured window.
    pub stopped_after: Option<Duration>,
}

impl SenderLog {
    pub fn new(index: usize) -> SenderLog {
        SenderLog {
            index,
            acks: Vec::new(),
            acks_measured: 0,
            ack_latency: stats::new_histogram(),
            errors: Errors::default(),
            first_error: None,
            stopped_after: None,
        }
    }

    /// Registers message `seq` as sent; returns false if it was not the next number.
    pub fn sent(&mut self, seq: u64) -> bool {
        if seq as usize != self.acks.len() {
            return false;
        }
        self.acks.push(Ack::Pending);
        true
    }

    /// The answer to message `seq`, sent at `sent_at`, arrived at `now`. Only a
    /// pending message changes state; returns whether it did.
    pub fn answered(
        &mut self,
        seq: u64,
        outcome: Ack,
        sent_at: Instant,
        now: Instant,
        clock: &Clock,
    ) -> bool {
        let Some(slot) = self.acks.get_mut(seq as usize) else {
            return false;
        };
        if *slot != Ack::Pending {
            return false;
        }
        *slot = outcome;
        if outcome == Ack::Acked {
            if clock.measuring(now) {
                self.acks_measured += 1;
            }
            if clock.measuring(sent_at) && now < clock.end {
                let nanos = now.saturating_duration_since(sent_at).as_nanos() as u64;
                self.ack_latency.saturating_record(nanos.max(1));
            }
        }
        true
    }

    pub fn note_error(&mut self, message: impl FnOnce() -> String) {
        if self.first_error.is_none() {
            self.first_error = Some(message());
        }
    }
}

/// The receiving half of one connection: what arrived from the expected sender.
#[derive(Debug, Clone)]
pub struct ReceiverLog {
    pub index: usize,
    /// The sender whose messages this queue receives.
    pub sender: usize,
    /// Deliveries per sequence number of `sender`.
    pub counts: Vec<u32>,
    /// Deliveries received in the measured window (duplicates included).
    pub delivered_measured: u64,
    /// The last delivery received in the measured window, from its start.
    pub last_measured: Option<Duration>,
    /// Send → delivery, messages sent in the measured window.
    pub latency: Histogram<u64>,
    /// Deliveries from another sender, or without a readable stamp.
    pub foreign: u64,
    /// Why receiving stopped early, if it did.
    pub error: Option<String>,
}

impl ReceiverLog {
    pub fn new(index: usize, count: usize) -> ReceiverLog {
        ReceiverLog {
            index,
            sender: previous(index, count),
            counts: Vec::new(),
            delivered_measured: 0,
            last_measured: None,
            latency: stats::new_histogram(),
            foreign: 0,
            error: None,
        }
    }

    /// One delivery received at `now`; returns whether it was the first of its message.
    pub fn delivered(&mut self, stamp: Option<Stamp>, now: Instant, clock: &Clock) -> bool {
        let Some(stamp) = stamp.filter(|s| s.sender == self.sender as u64) else {
            self.foreign += 1;
            return false;
        };
        // Sequence numbers are dense from 0; a wild one must not allocate the world.
        const MAX_SEQ: u64 = 1 << 32;
        if stamp.seq >= MAX_SEQ {
            self.foreign += 1;
            return false;
        }
        let seq = stamp.seq as usize;
        if seq >= self.counts.len() {
            self.counts.resize(seq + 1, 0);
        }
        self.counts[seq] = self.counts[seq].saturating_add(1);
        if clock.measuring(now) {
            self.delivered_measured += 1;
            self.last_measured = Some(now.saturating_duration_since(clock.measure_start));
        }
        let first = self.counts[seq] == 1;
        if first && clock.sent_measuring(stamp.sent_ns) {
            let nanos = clock.ns(now).saturating_sub(stamp.sent_ns);
            self.latency.saturating_record(nanos.max(1));
        }
        first
    }
}

/// Loss accounting over the whole ring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Messages sent (warmup included).
    pub sent: u64,
    /// Acknowledged.
    pub acked: u64,
    /// Refused (error reply / nack / returned).
    pub failed: u64,
    /// Unanswered within the request timeout.
    pub timed_out: u64,
    /// Never answered at all (connection lost, or still outstanding at the end).
    pub unanswered: u64,
    /// Distinct messages delivered.
    pub delivered: u64,
    /// Acknowledged but never delivered.
    pub lost: u64,
    /// Deliveries beyond the first of a message.
    pub duplicates: u64,
    /// Delivered although never acknowledged (timed out, refused or unanswered).
    pub delivered_unacked: u64,
    /// Delivered with a sequence number never sent.
    pub phantom: u64,
    /// Deliveries from an unexpected sender or without a stamp.
    pub foreign: u64,
}

/// Matches every sender's acknowledgements with what its receiver got.
pub fn tally(senders: &[SenderLog], receivers: &[ReceiverLog]) -> Tally {
    let mut tally = Tally::default();
    let by_sender: HashMap<usize, &ReceiverLog> = receivers.iter().map(|r| (r.sender, r)).collect();
    for sender in senders {
        let counts: &[u32] = by_sender
            .get(&sender.index)
            .map(|r| r.counts.as_slice())
            .unwrap_or(&[]);
        for (seq, ack) in sender.acks.iter().enumerate() {
            tally.sent += 1;
            let count = counts.get(seq).copied().unwrap_or(0);
            match ack {
                Ack::Acked => tally.acked += 1,
                Ack::Failed => tally.failed += 1,
                Ack::TimedOut => tally.timed_out += 1,
                Ack::Pending => tally.unanswered += 1,
            }
            if count > 0 {
                tally.delivered += 1;
                tally.duplicates += u64::from(count - 1);
                if *ack != Ack::Acked {
                    tally.delivered_unacked += 1;
                }
            } else if *ack == Ack::Acked {
                tally.lost += 1;
            }
        }
        for &count in counts.iter().skip(sender.acks.len()) {
            if count > 0 {
                tally.phantom += u64::from(count);
            }
        }
    }
    for receiver in receivers {
        tally.foreign += receiver.foreign;
        if !senders.iter().any(|s| s.index == receiver.sender) {
            tally.phantom += receiver.counts.iter().map(|&c| u64::from(c)).sum::<u64>();
        }
    }
    tally
}

// ---- the report -------------------------------------------------------------------

/// The result of a queue run (opencore or the AMQP baseline).
#[derive(Debug, Clone)]
pub struct QueueReport {
    /// `ws`, `grpc`, `tcp` or `amqp`.
    pub transport: String,
    pub command: String,
    pub target: String,
    pub connections: usize,
    pub in_flight: usize,
    pub payload_bytes: usize,
    pub warmup: Duration,
    /// Measured time for acknowledgements.
    pub duration: Duration,
    /// Measured time for deliveries (shorter than `duration` only when every sender
    /// stopped early and the last delivery came before the end).
    pub delivery_duration: Duration,
    pub acks_measured: u64,
    pub deliveries_measured: u64,
    pub ack_latency: Latency,
    pub delivery_latency: Latency,
    pub tally: Tally,
    pub errors: Errors,
    pub first_error: Option<String>,
}

/// What `build_report` needs besides the logs.
pub struct RunInfo {
    pub transport: String,
    pub command: String,
    pub target: String,
    pub connections: usize,
    pub in_flight: usize,
    pub payload_bytes: usize,
    pub warmup: Duration,
    pub duration: Duration,
}

pub fn build_report(
    info: RunInfo,
    senders: &[SenderLog],
    receivers: &[ReceiverLog],
    extra_errors: &[String],
) -> QueueReport {
    let mut ack_histogram = stats::new_histogram();
    let mut delivery_histogram = stats::new_histogram();
    let mut errors = Errors::default();
    let mut first_error = None;
    let mut acks_measured = 0;
    for sender in senders {
        let _ = ack_histogram.add(&sender.ack_latency);
        errors.add(&sender.errors);
        acks_measured += sender.acks_measured;
        if first_error.is_none() {
            first_error = sender.first_error.clone();
        }
    }
    let mut deliveries_measured = 0;
    for receiver in receivers {
        let _ = delivery_histogram.add(&receiver.latency);
        deliveries_measured += receiver.delivered_measured;
        if let Some(error) = &receiver.error {
            errors.disconnects += 1;
            first_error.get_or_insert_with(|| error.clone());
        }
    }
    for error in extra_errors {
        first_error.get_or_insert_with(|| error.clone());
    }
    let duration = stats::measured_time(info.duration, senders.iter().map(|s| s.stopped_after));
    let delivery_duration = if duration < info.duration {
        // Every sender stopped early: deliveries ran until the last one came.
        receivers
            .iter()
            .filter_map(|r| r.last_measured)
            .max()
            .unwrap_or(duration)
            .max(duration)
            .min(info.duration)
    } else {
        info.duration
    };
    QueueReport {
        transport: info.transport,
        command: info.command,
        target: info.target,
        connections: info.connections,
        in_flight: info.in_flight,
        payload_bytes: info.payload_bytes,
        warmup: info.warmup,
        duration,
        delivery_duration,
        acks_measured,
        deliveries_measured,
        ack_latency: Latency::from_histogram(&ack_histogram),
        delivery_latency: Latency::from_histogram(&delivery_histogram),
        tally: tally(senders, receivers),
        errors,
        first_error,
    }
}

fn per_second(count: u64, duration: Duration) -> f64 {
    let secs = duration.as_secs_f64();
    if secs > 0.0 {
        count as f64 / secs
    } else {
        0.0
    }
}

impl QueueReport {
    pub fn acks_per_second(&self) -> f64 {
        per_second(self.acks_measured, self.duration)
    }

    pub fn deliveries_per_second(&self) -> f64 {
        per_second(self.deliveries_measured, self.delivery_duration)
    }

    /// Whether anything went wrong: errors, lost or duplicated or stray messages.
    pub fn has_problems(&self) -> bool {
        let t = &self.tally;
        self.errors.total() > 0
            || t.lost > 0
            || t.duplicates > 0
            || t.phantom > 0
            || t.foreign > 0
            || t.failed > 0
            || t.timed_out > 0
            || t.unanswered > 0
    }

    pub fn to_text(&self) -> String {
        let (a, d, t) = (&self.ack_latency, &self.delivery_latency, &self.tally);
        let ack_word = if self.transport == "amqp" {
            "confirms"
        } else {
            "acks"
        };
        let mut text = format!(
            "{} {} C={} K={} {}B {}: {} {ack_word} ({:.0}/s), {} deliveries ({:.0}/s); \
             send→delivery p50 {} p99 {} max {}; send→ack p50 {} p99 {} max {}; \
             sent {} acked {} delivered {} lost {} duplicates {}, errors {}",
            self.transport,
            self.command,
            self.connections,
            self.in_flight,
            self.payload_bytes,
            stats::format_seconds(self.duration),
            self.acks_measured,
            self.acks_per_second(),
            self.deliveries_measured,
            self.deliveries_per_second(),
            stats::format_micros(d.p50),
            stats::format_micros(d.p99),
            stats::format_micros(d.max),
            stats::format_micros(a.p50),
            stats::format_micros(a.p99),
            stats::format_micros(a.max),
            t.sent,
            t.acked,
            t.delivered,
            t.lost,
            t.duplicates,
            self.errors.total(),
        );
        if self.errors.total() > 0 {
            let e = &self.errors;
            text.push_str(&format!(
                " ({} error replies, {} timeouts, {} disconnects, {} unexpected replies)",
                e.replies, e.timeouts, e.disconnects, e.unexpected
            ));
        }
        let extra = [
            (t.failed, "refused"),
            (t.timed_out, "timed out"),
            (t.unanswered, "unanswered"),
            (t.delivered_unacked, "delivered without ack"),
            (t.phantom, "never sent but delivered"),
            (t.foreign, "stray deliveries"),
        ];
        let extra: Vec<String> = extra
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} {what}"))
            .collect();
        if !extra.is_empty() {
            text.push_str(&format!("\nmessages: {}", extra.join(", ")));
        }
        if let Some(first) = &self.first_error {
            text.push_str(&format!("\nfirst error: {first}"));
        }
        text
    }

    pub fn to_json(&self) -> serde_json::Value {
        let round = |v: f64| (v * 10.0).round() / 10.0;
        let latency = |l: &Latency| {
            serde_json::json!({
                "p50": round(l.p50), "p90": round(l.p90), "p99": round(l.p99),
                "p99_9": round(l.p999), "max": round(l.max), "mean": round(l.mean),
            })
        };
        let t = &self.tally;
        serde_json::json!({
            "transport": self.transport,
            "command": self.command,
            "url": self.target,
            "connections": self.connections,
            "in_flight": self.in_flight,
            "payload_bytes": self.payload_bytes,
            "warmup_s": self.warmup.as_secs_f64(),
            "duration_s": self.duration.as_secs_f64(),
            "acks": self.acks_measured,
            "acks_per_sec": round(self.acks_per_second()),
            "deliveries": self.deliveries_measured,
            "deliveries_per_sec": round(self.deliveries_per_second()),
            "delivery_latency_us": latency(&self.delivery_latency),
            "ack_latency_us": latency(&self.ack_latency),
            "messages": {
                "sent": t.sent,
                "acked": t.acked,
                "refused": t.failed,
                "timed_out": t.timed_out,
                "unanswered": t.unanswered,
                "delivered": t.delivered,
                "lost": t.lost,
                "duplicates": t.duplicates,
                "delivered_unacked": t.delivered_unacked,
                "phantom": t.phantom,
                "stray": t.foreign,
            },
            "errors": {
                "total": self.errors.total(),
                "error_replies": self.errors.replies,
                "timeouts": self.errors.timeouts,
                "disconnects": self.errors.disconnects,
                "unexpected": self.errors.unexpected,
            },
            "first_error": self.first_error,
        })
    }
}

// ---- the opencore connection loop -------------------------------------------------------

/// Settings every connection of a run shares.
pub struct Plan {
    pub clock: Clock,
    pub progress: Progress,
    pub in_flight: usize,
    pub priority: i32,
    pub payload_bytes: usize,
    /// Milliseconds.
    pub expiration: i32,
    /// Messages a sender may have sent but not yet delivered (0: no bound beyond K).
    pub max_backlog: u64,
}

/// One connection's place in the ring.
pub struct Member {
    pub index: usize,
    /// Next envelope number (sign-in and registration used the ones before).
    pub counter: u64,
    /// The queue this connection sends to.
    pub target_queue: String,
    /// `--max-requests` share (messages this connection may send after warmup).
    pub budget: Option<u64>,
}

/// `registerqueue` with an empty name: a temporary queue for this connection.
pub fn register_envelope(priority: i32) -> Envelope {
    Envelope {
        command: "registerqueue".into(),
        priority,
        data: Some(pack(&RegisterQueueRequest {
            queuename: String::new(),
        })),
        ..Default::default()
    }
}

/// The `queuemessage` carrying `stamp` to `queue`.
pub fn message_envelope(queue: &str, stamp: Stamp, plan: &Plan) -> Envelope {
    Envelope {
        command: "queuemessage".into(),
        priority: plan.priority,
        data: Some(pack(&QueueMessageRequest {
            queuename: queue.to_string(),
            data: body(stamp, plan.payload_bytes),
            striptoken: true,
            expiration: plan.expiration,
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// The stamp of a `queueevent`: searched in the raw payload first (cheap); decoded
/// properly when that fails (e.g. the JSON was re-escaped).
pub fn event_stamp(head: &Head) -> Option<Stamp> {
    parse_stamp(&head.data).or_else(|| {
        let event: QueueEvent = head.payload().ok()?;
        parse_stamp(event.data.as_bytes())
    })
}

/// Runs one ring member until it sent its share and everything its predecessor got
/// acknowledged has arrived (or `--drain` ran out), then closes the connection.
pub async fn run<T: Transport>(
    mut transport: T,
    member: Member,
    plan: Arc<Plan>,
) -> (SenderLog, ReceiverLog) {
    let clock = plan.clock;
    let count = plan.progress.count();
    let index = member.index;
    let mut counter = member.counter;
    let mut budget = member.budget;
    let mut sender = SenderLog::new(index);
    let mut receiver = ReceiverLog::new(index, count);
    // Request id → (sequence number, sent at).
    let mut outstanding: HashMap<u64, (u64, Instant)> = HashMap::with_capacity(plan.in_flight * 2);
    let mut seq = 0u64;
    let mut failure: Option<String> = None;
    let mut done = false;
    let mut last_expiry = Instant::now();
    loop {
        let now = Instant::now();
        if now.duration_since(last_expiry) >= POLL {
            last_expiry = now;
            expire(&mut outstanding, &mut sender, now, &clock);
        }
        // 1. Send: top up to K (and within the backlog bound) while the run lasts.
        let sending = failure.is_none() && now < clock.end && budget != Some(0);
        if sending {
            let mut pushed = false;
            while outstanding.len() < plan.in_flight
                && (plan.max_backlog == 0
                    || plan.progress.backlog(index) < plan.max_backlog + plan.in_flight as u64)
            {
                if now >= clock.measure_start {
                    match budget.as_mut() {
                        Some(0) => break,
                        Some(left) => *left -= 1,
                        None => {}
                    }
                }
                let stamp = Stamp {
                    sender: index as u64,
                    seq,
                    sent_ns: clock.ns(now),
                };
                let mut envelope = message_envelope(&member.target_queue, stamp, &plan);
                number(&mut envelope, counter);
                transport.push(&envelope);
                sender.sent(seq);
                plan.progress.note_sent(index);
                outstanding.insert(counter, (seq, now));
                counter += 1;
                seq += 1;
                pushed = true;
            }
            if pushed {
                if let Err(err) = flush(&mut transport, &clock).await {
                    failure = Some(err);
                }
            }
        }
        // 2. Done sending once the run ended (or the share is used up) and every
        //    request was answered or timed out.
        if !done && !sending && (outstanding.is_empty() || failure.is_some()) {
            done = true;
            plan.progress.sender_done(index);
            if now < clock.end && sender.stopped_after.is_none() && now >= clock.measure_start {
                sender.stopped_after = Some(now.saturating_duration_since(clock.measure_start));
            }
        }
        if (done && plan.progress.drained_into(index)) || now >= clock.drain_until {
            break;
        }
        if failure.is_some() {
            // Nothing more can arrive; the receiver side stays as it is.
            break;
        }
        // 3. Read whatever arrived (bounded wait, so timeouts and the drain are checked).
        let wake = tokio::time::Instant::from_std((now + POLL).min(clock.drain_until));
        match tokio::time::timeout_at(wake, transport.receive()).await {
            Err(_) => continue,
            Ok(Err(err)) => {
                failure = Some(err);
                continue;
            }
            Ok(Ok(())) => {}
        }
        let now = Instant::now();
        let mut pongs = false;
        loop {
            let head = match transport.next_envelope() {
                Ok(Some(head)) => head,
                Ok(None) => break,
                Err(err) => {
                    failure = Some(err);
                    break;
                }
            };
            if head.rid.is_empty() {
                match &head.command[..] {
                    b"queueevent" => {
                        let stamp = event_stamp(&head);
                        if receiver.delivered(stamp, now, &clock) {
                            plan.progress.note_delivered(receiver.sender);
                        }
                    }
                    b"ping" => {
                        let pong = Envelope {
                            command: "pong".into(),
                            seq: counter as i32,
                            id: counter.to_string(),
                            rid: String::from_utf8_lossy(&head.id).into_owned(),
                            ..Default::default()
                        };
                        counter += 1;
                        transport.push(&pong);
                        pongs = true;
                    }
                    b"error" => {
                        sender.errors.replies += 1;
                        sender.note_error(|| {
                            format!("error pushed by the server: {}", head.error_text())
                        });
                    }
                    _ => {}
                }
                continue;
            }
            let Some((seq, sent_at)) = parse_id(&head.rid).and_then(|id| outstanding.remove(&id))
            else {
                continue;
            };
            match &head.command[..] {
                b"queuemessagereply" => {
                    if sender.answered(seq, Ack::Acked, sent_at, now, &clock) {
                        plan.progress.note_acked(index);
                    }
                }
                b"error" => {
                    sender.answered(seq, Ack::Failed, sent_at, now, &clock);
                    sender.errors.replies += 1;
                    sender.note_error(|| {
                        format!("error reply to queuemessage: {}", head.error_text())
                    });
                }
                _ => {
                    sender.answered(seq, Ack::Failed, sent_at, now, &clock);
                    sender.errors.unexpected += 1;
                    sender.note_error(|| {
                        format!("unexpected reply '{}' to queuemessage", head.command_str())
                    });
                }
            }
        }
        if pongs && failure.is_none() {
            if let Err(err) = flush(&mut transport, &clock).await {
                failure = Some(err);
            }
        }
    }
    if let Some(reason) = failure {
        let now = Instant::now();
        // The server closing on us after the end (while draining) is still a failure
        // when something was outstanding; right after the drain it is not.
        if now < clock.drain_until {
            sender.errors.disconnects += 1;
            sender.note_error(|| format!("connection {} lost: {reason}", index + 1));
            if sender.stopped_after.is_none() && now < clock.end && now >= clock.measure_start {
                sender.stopped_after = Some(now.saturating_duration_since(clock.measure_start));
            }
        }
        if !done {
            plan.progress.sender_done(index);
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), transport.close()).await;
    (sender, receiver)
}

/// Requests outstanding longer than the request timeout become timeouts.
fn expire(
    outstanding: &mut HashMap<u64, (u64, Instant)>,
    sender: &mut SenderLog,
    now: Instant,
    clock: &Clock,
) {
    let timeout = clock.request_timeout;
    let before = outstanding.len();
    let mut expired = Vec::new();
    outstanding.retain(|_, (seq, sent_at)| {
        let keep = now.saturating_duration_since(*sent_at) < timeout;
        if !keep {
            expired.push((*seq, *sent_at));
        }
        keep
    });
    if outstanding.len() < before {
        for (seq, sent_at) in expired {
            sender.answered(seq, Ack::TimedOut, sent_at, now, clock);
            sender.errors.timeouts += 1;
        }
        sender.note_error(|| format!("queuemessage unanswered after {timeout:?}"));
    }
}

async fn flush<T: Transport>(transport: &mut T, clock: &Clock) -> Result<(), String> {
    let limit = clock.request_timeout;
    match tokio::time::timeout(limit, transport.flush()).await {
        Ok(result) => result,
        Err(_) => Err(format!("write blocked for {limit:?}")),
    }
}
