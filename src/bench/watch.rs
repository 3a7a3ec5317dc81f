//! `opencore bench --command watch`: C watch connections on one collection and one
//! writer connection inserting documents at `--rate` per second (0: as fast as its K
//! in-flight inserts allow). Each document carries the run's id and a sequence number;
//! each watcher records when each number arrived. The report gives events delivered
//! per second, insert-acknowledged → event latency (an event that beats the writer's
//! acknowledgement counts as 0), and lost events: every watcher must see every
//! document acknowledged in the measured window, which it gets `--drain` to do.

use std::time::{Duration, Instant};

use super::connection::Transport;
use super::stats::{self, Latency};
use super::wire::{parse_id, Head};
use super::workload::{number, WATCH_COLLECTION};
use crate::proto::{Envelope, InsertOneRequest};
use crate::protocol::envelope::pack;

/// How long watchers keep reading after the writer stopped.
pub const DRAIN: Duration = Duration::from_secs(3);

/// When one document's insert was acknowledged, by sequence number.
pub struct Acks {
    pub run: String,
    pub acked: Vec<Option<Instant>>,
    pub failed: u64,
    pub first_error: Option<String>,
}

/// What one watcher received: sequence numbers with their arrival times.
pub struct Received {
    pub events: Vec<(u64, Instant)>,
    pub error: Option<String>,
}

/// The insert of document `n` of this run.
fn insert(run: &str, n: u64, priority: i32) -> Envelope {
    let item = format!(r#"{{"n":{n},"run":"{run}","kind":"bench","value":42}}"#);
    Envelope {
        command: "insertone".into(),
        priority,
        data: Some(pack(&InsertOneRequest {
            collectionname: WATCH_COLLECTION.into(),
            item,
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// Inserts until `end`: at `rate` per second (0: K at a time, as fast as acknowledged).
/// `first` is the envelope number to start at (sign-in used the ones before).
pub async fn write<T: Transport>(
    mut transport: T,
    run: String,
    first: u64,
    rate: u64,
    in_flight: usize,
    priority: i32,
    end: Instant,
) -> Acks {
    let mut acks = Acks {
        run,
        acked: Vec::new(),
        failed: 0,
        first_error: None,
    };
    let mut sent_at: Vec<Instant> = Vec::new();
    let mut outstanding = 0usize;
    let start = Instant::now();
    let mut counter = first;
    let deadline = tokio::time::Instant::from_std(end);
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        // Top up: by the clock at a fixed rate, or up to K in flight.
        let due = if rate == 0 {
            u64::MAX
        } else {
            (now.duration_since(start).as_secs_f64() * rate as f64) as u64 + 1
        };
        let mut pushed = false;
        while outstanding < in_flight.max(1) && (sent_at.len() as u64) < due {
            let n = sent_at.len() as u64;
            let mut envelope = insert(&acks.run, n, priority);
            number(&mut envelope, counter);
            counter += 1;
            transport.push(&envelope);
            sent_at.push(now);
            acks.acked.push(None);
            outstanding += 1;
            pushed = true;
        }
        if pushed {
            if let Err(err) = transport.flush().await {
                acks.first_error.get_or_insert(err);
                break;
            }
        }
        let wake = if rate == 0 || outstanding >= in_flight.max(1) {
            deadline
        } else {
            let next = start + Duration::from_secs_f64(sent_at.len() as f64 / rate as f64);
            tokio::time::Instant::from_std(next.min(end))
        };
        match tokio::time::timeout_at(wake, transport.receive()).await {
            Err(_) => continue,
            Ok(Err(err)) => {
                acks.first_error.get_or_insert(err);
                break;
            }
            Ok(Ok(())) => {}
        }
        let now = Instant::now();
        loop {
            let head = match transport.next_envelope() {
                Ok(Some(head)) => head,
                Ok(None) => break,
                Err(err) => {
                    acks.first_error.get_or_insert(err);
                    return acks;
                }
            };
            let Some(rid) = parse_id(&head.rid) else {
                continue;
            };
            let Some(n) = rid.checked_sub(first) else {
                continue;
            };
            let Some(slot) = acks.acked.get_mut(n as usize) else {
                continue;
            };
            outstanding = outstanding.saturating_sub(1);
            if &head.command[..] == b"insertonereply" {
                *slot = Some(now);
            } else {
                acks.failed += 1;
                acks.first_error
                    .get_or_insert_with(|| format!("insert failed: {}", head.error_text()));
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), transport.close()).await;
    acks
}

/// Reads `watchevent`s until `until`, keeping the sequence numbers of this run's documents.
pub async fn watch<T: Transport>(mut transport: T, run: String, until: Instant) -> Received {
    let mut received = Received {
        events: Vec::new(),
        error: None,
    };
    let marker = format!(r#""run":"{run}""#);
    let deadline = tokio::time::Instant::from_std(until);
    loop {
        match tokio::time::timeout_at(deadline, transport.receive()).await {
            Err(_) => break,
            Ok(Err(err)) => {
                received.error = Some(err);
                break;
            }
            Ok(Ok(())) => {}
        }
        let now = Instant::now();
        loop {
            match transport.next_envelope() {
                Ok(Some(head)) => {
                    if let Some(n) = sequence_of(&head, &marker) {
                        received.events.push((n, now));
                    }
                }
                Ok(None) => break,
                Err(err) => {
                    received.error = Some(err);
                    return received;
                }
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), transport.close()).await;
    received
}

/// The `n` of a `watchevent` for a document of this run. The document's JSON travels
/// verbatim inside the encoded payload, so it is found there without decoding (the
/// load generator must stay cheaper than the server it measures).
fn sequence_of(head: &Head, marker: &str) -> Option<u64> {
    if &head.command[..] != b"watchevent" {
        return None;
    }
    let data = &head.data[..];
    find(data, marker.as_bytes())?;
    let at = find(data, br#""n":"#)? + 4;
    let digits = &data[at..];
    let end = digits
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// The result of a watch run.
#[derive(Debug, Clone)]
pub struct WatchReport {
    pub transport: String,
    pub watchers: usize,
    pub duration: Duration,
    /// Inserts acknowledged in the measured window.
    pub inserts: u64,
    /// Events of those inserts delivered to watchers.
    pub delivered: u64,
    /// Events of those inserts some watcher never got.
    pub lost: u64,
    pub failed_inserts: u64,
    pub latency: Latency,
    pub first_error: Option<String>,
}

impl WatchReport {
    pub fn build(
        transport: &str,
        duration: Duration,
        window: (Instant, Instant),
        acks: &Acks,
        watchers: &[Received],
    ) -> WatchReport {
        let in_window = |at: &Instant| *at >= window.0 && *at < window.1;
        let measured: Vec<(usize, Instant)> = acks
            .acked
            .iter()
            .enumerate()
            .filter_map(|(n, at)| at.filter(in_window).map(|at| (n, at)))
            .collect();
        let mut histogram = stats::new_histogram();
        let mut delivered = 0u64;
        let mut lost = 0u64;
        let mut first_error = acks.first_error.clone();
        for watcher in watchers {
            let mut seen: Vec<Option<Instant>> = vec![None; acks.acked.len()];
            for (n, at) in &watcher.events {
                if let Some(slot) = seen.get_mut(*n as usize) {
                    slot.get_or_insert(*at);
                }
            }
            for (n, acked) in &measured {
                match seen[*n] {
                    Some(arrived) => {
                        delivered += 1;
                        let latency = arrived.saturating_duration_since(*acked);
                        let _ = histogram.record(latency.as_nanos().max(1) as u64);
                    }
                    None => lost += 1,
                }
            }
            if first_error.is_none() {
                first_error = watcher.error.clone();
            }
        }
        WatchReport {
            transport: transport.to_string(),
            watchers: watchers.len(),
            duration,
            inserts: measured.len() as u64,
            delivered,
            lost,
            failed_inserts: acks.failed,
            latency: Latency::from_histogram(&histogram),
            first_error,
        }
    }

    pub fn events_per_second(&self) -> f64 {
        self.delivered as f64 / self.duration.as_secs_f64().max(f64::EPSILON)
    }

    pub fn to_text(&self) -> String {
        let l = &self.latency;
        let mut text = format!(
            "{} watch W={} {}: {} inserts ({:.0}/s), {} events delivered ({:.0}/s), ack→event p50 {} p99 {} max {}, lost {}, failed inserts {}",
            self.transport,
            self.watchers,
            stats::format_seconds(self.duration),
            self.inserts,
            self.inserts as f64 / self.duration.as_secs_f64().max(f64::EPSILON),
            self.delivered,
            self.events_per_second(),
            stats::format_micros(l.p50),
            stats::format_micros(l.p99),
            stats::format_micros(l.max),
            self.lost,
            self.failed_inserts,
        );
        if let Some(first) = &self.first_error {
            text.push_str(&format!("\nfirst error: {first}"));
        }
        text
    }

    pub fn to_json(&self) -> serde_json::Value {
        let round = |v: f64| (v * 10.0).round() / 10.0;
        let l = &self.latency;
        serde_json::json!({
            "transport": self.transport,
            "command": "watch",
            "watchers": self.watchers,
            "duration_s": self.duration.as_secs_f64(),
            "inserts": self.inserts,
            "delivered": self.delivered,
            "events_per_sec": round(self.events_per_second()),
            "lost": self.lost,
            "failed_inserts": self.failed_inserts,
            "latency_us": {"p50": round(l.p50), "p99": round(l.p99), "max": round(l.max), "mean": round(l.mean)},
            "first_error": self.first_error,
        })
    }
}

/// A fresh id per run, so documents of earlier runs in the collection are ignored.
pub fn run_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}
