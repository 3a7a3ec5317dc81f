//! One connection's closed loop, independent of the transport: keep exactly K
//! requests outstanding, match replies to requests by `rid`, time them, count errors.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::stats::ConnStats;
use super::wire::{parse_id, Head};
use super::workload::number;
use crate::proto::Envelope;

/// Where the pipeline puts envelopes to send (a transport's write buffer).
pub trait Outbox {
    fn push(&mut self, envelope: &Envelope);
}

/// The phases of a run, shared by every connection.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Load starts; requests sent before `measure_start` are warmup.
    pub start: Instant,
    pub measure_start: Instant,
    /// No request is sent from here on; replies after it are not measured.
    pub end: Instant,
    /// A request unanswered for this long counts as a timeout.
    pub request_timeout: Duration,
}

impl Schedule {
    pub fn new(
        start: Instant,
        warmup: Duration,
        duration: Duration,
        request_timeout: Duration,
    ) -> Schedule {
        let measure_start = start + warmup;
        Schedule {
            start,
            measure_start,
            end: measure_start + duration,
            request_timeout,
        }
    }
}

pub struct Pipeline {
    /// The request, re-numbered (`seq`, `id`) for every send.
    template: Envelope,
    /// The reply command that means success.
    expected: Bytes,
    in_flight: usize,
    /// Next `seq` and `id`: every envelope the bench sends takes the next number.
    counter: u64,
    /// Request id → send time.
    outstanding: HashMap<u64, Instant>,
    schedule: Schedule,
    /// Requests this connection may still send after warmup (`--max-requests` share).
    budget: Option<u64>,
    stats: ConnStats,
}

impl Pipeline {
    /// `first_counter`: the next `seq` (envelopes already sent on this connection, e.g. a signin).
    pub fn new(
        template: Envelope,
        expected: &str,
        in_flight: usize,
        first_counter: u64,
        schedule: Schedule,
        budget: Option<u64>,
    ) -> Pipeline {
        Pipeline {
            template,
            expected: Bytes::copy_from_slice(expected.as_bytes()),
            in_flight: in_flight.max(1),
            counter: first_counter,
            outstanding: HashMap::with_capacity(in_flight.max(1) * 2),
            schedule,
            budget,
            stats: ConnStats::default(),
        }
    }

    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }

    /// Sends requests until K are outstanding (none once the run has ended or the
    /// `--max-requests` share is used up).
    pub fn fill(&mut self, now: Instant, out: &mut impl Outbox) {
        if now >= self.schedule.end {
            return;
        }
        let measuring = now >= self.schedule.measure_start;
        while self.outstanding.len() < self.in_flight {
            if measuring {
                match self.budget.as_mut() {
                    Some(0) => break,
                    Some(left) => *left -= 1,
                    None => {}
                }
            }
            let id = self.next_number();
            number(&mut self.template, id);
            out.push(&self.template);
            self.outstanding.insert(id, now);
            self.stats.sent += 1;
        }
    }

    fn next_number(&mut self) -> u64 {
        let n = self.counter;
        self.counter += 1;
        n
    }

    /// One inbound envelope, received at `now`.
    pub fn on_envelope(&mut self, now: Instant, head: &Head, out: &mut impl Outbox) {
        if head.rid.is_empty() {
            return self.on_push(head, out);
        }
        let Some(sent_at) = parse_id(&head.rid).and_then(|id| self.outstanding.remove(&id)) else {
            // Not ours or already timed out.
            return;
        };
        if head.command == self.expected {
            self.stats.completed += 1;
            if sent_at >= self.schedule.measure_start && now < self.schedule.end {
                let nanos = now
                    .saturating_duration_since(sent_at)
                    .as_nanos()
                    .min(u64::MAX as u128) as u64;
                self.stats.histogram.saturating_record(nanos.max(1));
            }
        } else if &head.command[..] == b"error" {
            self.stats.errors.replies += 1;
            let command = self.template.command.clone();
            self.stats
                .note_error(|| format!("error reply to {command}: {}", head.error_text()));
        } else {
            self.stats.errors.unexpected += 1;
            let expected = String::from_utf8_lossy(&self.expected).into_owned();
            self.stats.note_error(|| {
                format!(
                    "unexpected reply '{}' (expected '{expected}')",
                    head.command_str()
                )
            });
        }
    }

    /// Server-initiated envelopes: answer pings, count errors, ignore the rest
    /// (`refreshtoken`, events).
    fn on_push(&mut self, head: &Head, out: &mut impl Outbox) {
        match &head.command[..] {
            b"ping" => {
                let n = self.next_number();
                let pong = Envelope {
                    command: "pong".into(),
                    seq: n as i32,
                    id: n.to_string(),
                    rid: String::from_utf8_lossy(&head.id).into_owned(),
                    ..Default::default()
                };
                out.push(&pong);
            }
            b"error" => {
                self.stats.errors.replies += 1;
                self.stats
                    .note_error(|| format!("error pushed by the server: {}", head.error_text()));
            }
            _ => {}
        }
    }

    /// Drops requests outstanding for longer than the request timeout, counting each.
    pub fn expire(&mut self, now: Instant) {
        let timeout = self.schedule.request_timeout;
        let before = self.outstanding.len();
        self.outstanding
            .retain(|_, sent_at| now.saturating_duration_since(*sent_at) < timeout);
        let expired = (before - self.outstanding.len()) as u64;
        if expired > 0 {
            self.stats.errors.timeouts += expired;
            self.stats
                .note_error(|| format!("request unanswered after {:?}", timeout));
        }
    }

    /// The connection failed during the run, at `now`.
    pub fn disconnected(&mut self, now: Instant, reason: &str) {
        self.stats.errors.disconnects += 1;
        if self.stats.stopped_after.is_none() {
            self.stats.stopped_after =
                Some(now.saturating_duration_since(self.schedule.measure_start));
        }
        self.stats
            .note_error(|| format!("connection lost: {reason}"));
    }

    /// Whether this connection is done: the run has ended, or its `--max-requests`
    /// share has been sent and answered (then it remembers when).
    pub fn finished(&mut self, now: Instant) -> bool {
        if self.stats.stopped_after.is_some() || now >= self.schedule.end {
            return true;
        }
        if self.budget == Some(0)
            && self.outstanding.is_empty()
            && now >= self.schedule.measure_start
        {
            self.stats.stopped_after =
                Some(now.saturating_duration_since(self.schedule.measure_start));
            return true;
        }
        false
    }

    pub fn into_stats(self) -> ConnStats {
        self.stats
    }
}
