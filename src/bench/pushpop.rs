//! `opencore bench --command pushpop`: the work item cycle a robot fleet runs. A setup
//! connection creates a fresh work item queue; then each of the C connections keeps K
//! cycles in flight, a cycle being `pushworkitem` → `popworkitem` → `updateworkitem`
//! (state `successful`, the popped item sent back as clients do). Every pop follows its
//! own cycle's push, so the queue never runs dry and an empty pop is an error.
//!
//! Measured: cycles completed in the measured window per second, and the latency of a
//! whole cycle (push sent → update answered) for cycles started in that window. The
//! queue is deleted (with `purge`) at the end.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::connection::Transport;
use super::stats::{self, Errors};
use super::wire::{parse_id, Head};
use super::workload::number;
use crate::proto::{
    AddWorkItemQueueRequest, DeleteWorkItemQueueRequest, Envelope, PopWorkitemRequest,
    PopWorkitemResponse, PushWorkitemRequest, UpdateWorkitemRequest, WorkItemQueue,
};
use crate::protocol::envelope::pack;

const POLL: Duration = Duration::from_millis(50);

/// What every connection shares.
#[derive(Debug, Clone)]
pub struct Plan {
    pub wiq: String,
    pub in_flight: usize,
    pub priority: i32,
    pub measure_start: Instant,
    pub end: Instant,
    pub timeout: Duration,
    /// Bytes of payload per item (`{"pad":"xxx…"}`).
    pub payload_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Push,
    Pop,
    Update,
}

struct Cycle {
    stage: Stage,
    started: Instant,
    sent: Instant,
}

/// One connection's results.
pub struct Tally {
    pub cycles: u64,
    pub histogram: Histogram<u64>,
    pub errors: Errors,
    pub empty_pops: u64,
    pub first_error: Option<String>,
}

pub fn add_queue_envelope(name: &str, priority: i32) -> Envelope {
    request(
        "addworkitemqueue",
        priority,
        pack(&AddWorkItemQueueRequest {
            workitemqueue: Some(WorkItemQueue {
                name: name.into(),
                maxretries: 3,
                ..Default::default()
            }),
            skiprole: true,
        }),
    )
}

pub fn delete_queue_envelope(name: &str, priority: i32) -> Envelope {
    request(
        "deleteworkitemqueue",
        priority,
        pack(&DeleteWorkItemQueueRequest {
            wiq: name.into(),
            purge: true,
            ..Default::default()
        }),
    )
}

fn request(command: &str, priority: i32, data: prost_types::Any) -> Envelope {
    Envelope {
        command: command.into(),
        priority,
        data: Some(data),
        ..Default::default()
    }
}

fn push_envelope(plan: &Plan, payload: &str) -> Envelope {
    request(
        "pushworkitem",
        plan.priority,
        pack(&PushWorkitemRequest {
            wiq: plan.wiq.clone(),
            name: "bench".into(),
            payload: payload.to_string(),
            ..Default::default()
        }),
    )
}

fn pop_envelope(plan: &Plan) -> Envelope {
    request(
        "popworkitem",
        plan.priority,
        pack(&PopWorkitemRequest {
            wiq: plan.wiq.clone(),
            ..Default::default()
        }),
    )
}

/// Runs K cycles at a time until the end; `counter` is the next envelope number.
pub async fn run<T: Transport>(mut transport: T, mut counter: u64, plan: Arc<Plan>) -> Tally {
    let payload = if plan.payload_bytes > 0 {
        serde_json::json!({"pad": "x".repeat(plan.payload_bytes)}).to_string()
    } else {
        r#"{"n":1}"#.to_string()
    };
    let mut tally = Tally {
        cycles: 0,
        histogram: stats::new_histogram(),
        errors: Errors::default(),
        empty_pops: 0,
        first_error: None,
    };
    let mut cycles: HashMap<u64, Cycle> = HashMap::new();
    let mut send = |transport: &mut T,
                    cycles: &mut HashMap<u64, Cycle>,
                    mut envelope: Envelope,
                    stage,
                    started| {
        number(&mut envelope, counter);
        transport.push(&envelope);
        let now = Instant::now();
        cycles.insert(
            counter,
            Cycle {
                stage,
                started,
                sent: now,
            },
        );
        counter += 1;
    };
    let fail = |tally: &mut Tally, text: String| {
        tally.first_error.get_or_insert(text);
    };
    for _ in 0..plan.in_flight {
        send(
            &mut transport,
            &mut cycles,
            push_envelope(&plan, &payload),
            Stage::Push,
            Instant::now(),
        );
    }
    loop {
        if let Err(err) = transport.flush().await {
            tally.errors.disconnects += 1;
            fail(&mut tally, err);
            break;
        }
        if Instant::now() >= plan.end && cycles.is_empty() {
            break;
        }
        if Instant::now() >= plan.end + plan.timeout {
            tally.errors.timeouts += cycles.len() as u64;
            break;
        }
        match tokio::time::timeout(POLL, transport.receive()).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                tally.errors.disconnects += 1;
                fail(&mut tally, err);
                break;
            }
            Err(_) => {
                let now = Instant::now();
                let expired: Vec<u64> = cycles
                    .iter()
                    .filter(|(_, c)| now.duration_since(c.sent) > plan.timeout)
                    .map(|(id, _)| *id)
                    .collect();
                for id in expired {
                    cycles.remove(&id);
                    tally.errors.timeouts += 1;
                }
                continue;
            }
        }
        loop {
            let head: Head = match transport.next_envelope() {
                Ok(Some(head)) => head,
                Ok(None) => break,
                Err(err) => {
                    tally.errors.disconnects += 1;
                    fail(&mut tally, err);
                    return tally;
                }
            };
            let Some(cycle) = parse_id(&head.rid).and_then(|rid| cycles.remove(&rid)) else {
                continue;
            };
            let now = Instant::now();
            let next = match (&head.command[..], cycle.stage) {
                (b"error", _) => {
                    tally.errors.replies += 1;
                    fail(
                        &mut tally,
                        format!("{:?}: {}", cycle.stage, head.error_text()),
                    );
                    None
                }
                (b"pushworkitemreply", Stage::Push) => Some((pop_envelope(&plan), Stage::Pop)),
                (b"popworkitemreply", Stage::Pop) => {
                    match head
                        .payload::<PopWorkitemResponse>()
                        .ok()
                        .and_then(|r| r.workitem)
                    {
                        Some(mut item) => {
                            item.state = "successful".into();
                            let update = UpdateWorkitemRequest {
                                workitem: Some(item),
                                ..Default::default()
                            };
                            Some((
                                request("updateworkitem", plan.priority, pack(&update)),
                                Stage::Update,
                            ))
                        }
                        None => {
                            tally.empty_pops += 1;
                            fail(&mut tally, "popworkitem found the queue empty".into());
                            None
                        }
                    }
                }
                (b"updateworkitemreply", Stage::Update) => {
                    if cycle.started >= plan.measure_start && now <= plan.end {
                        tally.cycles += 1;
                        let ns = now.duration_since(cycle.started).as_nanos() as u64;
                        let _ = tally.histogram.record(ns.max(1));
                    }
                    None
                }
                _ => {
                    tally.errors.unexpected += 1;
                    fail(
                        &mut tally,
                        format!("unexpected reply '{}'", head.command_str()),
                    );
                    None
                }
            };
            match next {
                Some((envelope, stage)) => {
                    send(&mut transport, &mut cycles, envelope, stage, cycle.started)
                }
                None if now < plan.end => send(
                    &mut transport,
                    &mut cycles,
                    push_envelope(&plan, &payload),
                    Stage::Push,
                    now,
                ),
                None => {}
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), transport.close()).await;
    tally
}

/// The merged results of every connection.
pub struct Report {
    pub label: String,
    pub duration: Duration,
    pub cycles: u64,
    pub histogram: Histogram<u64>,
    pub errors: Errors,
    pub empty_pops: u64,
    pub first_error: Option<String>,
}

impl Report {
    pub fn merge(label: String, duration: Duration, tallies: Vec<Tally>) -> Report {
        let mut report = Report {
            label,
            duration,
            cycles: 0,
            histogram: stats::new_histogram(),
            errors: Errors::default(),
            empty_pops: 0,
            first_error: None,
        };
        for tally in tallies {
            report.cycles += tally.cycles;
            let _ = report.histogram.add(&tally.histogram);
            report.errors.add(&tally.errors);
            report.empty_pops += tally.empty_pops;
            if report.first_error.is_none() {
                report.first_error = tally.first_error;
            }
        }
        report
    }

    pub fn per_second(&self) -> f64 {
        self.cycles as f64 / self.duration.as_secs_f64().max(1e-9)
    }

    fn ms(&self, quantile: f64) -> f64 {
        self.histogram.value_at_quantile(quantile) as f64 / 1e6
    }

    pub fn to_text(&self) -> String {
        let mut text = format!(
            "{}\ncycles (push+pop+update): {} in {} = {:.0}/s\ncycle latency ms: p50 {:.2} p90 {:.2} p99 {:.2} max {:.2}\nerrors: {} replies, {} timeouts, {} disconnects, {} unexpected, {} empty pops",
            self.label,
            self.cycles,
            stats::format_seconds(self.duration),
            self.per_second(),
            self.ms(0.5),
            self.ms(0.9),
            self.ms(0.99),
            self.histogram.max() as f64 / 1e6,
            self.errors.replies,
            self.errors.timeouts,
            self.errors.disconnects,
            self.errors.unexpected,
            self.empty_pops,
        );
        if let Some(first) = &self.first_error {
            text.push_str(&format!("\nfirst error: {first}"));
        }
        text
    }

    pub fn to_json(&self) -> String {
        serde_json::json!({
            "command": "pushpop",
            "label": self.label,
            "duration_s": self.duration.as_secs_f64(),
            "cycles": self.cycles,
            "cycles_per_s": self.per_second(),
            "latency_ms": {"p50": self.ms(0.5), "p90": self.ms(0.9), "p99": self.ms(0.99)},
            "errors": {
                "replies": self.errors.replies,
                "timeouts": self.errors.timeouts,
                "disconnects": self.errors.disconnects,
                "unexpected": self.errors.unexpected,
                "empty_pops": self.empty_pops,
            },
            "first_error": self.first_error,
        })
        .to_string()
    }
}
