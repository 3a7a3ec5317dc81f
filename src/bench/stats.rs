//! Measurements: per-connection counters and latency histogram, merged into one
//! report printed as a line of text or one JSON object.

use std::time::Duration;

use hdrhistogram::Histogram;

/// Latencies are recorded in nanoseconds, from 1 ns to 60 s, 3 significant digits.
const HIGHEST_NS: u64 = 60_000_000_000;

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_NS, 3).expect("valid histogram bounds")
}

/// Failed requests and connections, by kind. Counted over the whole run (warmup included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Errors {
    /// `error` envelopes answering a request (or pushed with an empty rid).
    pub replies: u64,
    /// Requests without an answer after the request timeout.
    pub timeouts: u64,
    /// Connections the server closed or that failed during the run.
    pub disconnects: u64,
    /// Replies with an unexpected command.
    pub unexpected: u64,
}

impl Errors {
    pub fn total(&self) -> u64 {
        self.replies + self.timeouts + self.disconnects + self.unexpected
    }

    pub fn add(&mut self, other: &Errors) {
        self.replies += other.replies;
        self.timeouts += other.timeouts;
        self.disconnects += other.disconnects;
        self.unexpected += other.unexpected;
    }
}

/// What one connection measured.
#[derive(Debug, Clone)]
pub struct ConnStats {
    /// Latency of measured requests (sent after warmup, answered before the end).
    pub histogram: Histogram<u64>,
    /// Requests sent (warmup included).
    pub sent: u64,
    /// Successful replies (warmup included).
    pub completed: u64,
    pub errors: Errors,
    /// The first error seen, for the report.
    pub first_error: Option<String>,
    /// When the connection stopped before the end (its `--max-requests` share was
    /// done, or it was lost), measured from the end of warmup.
    pub stopped_after: Option<Duration>,
}

impl Default for ConnStats {
    fn default() -> Self {
        ConnStats {
            histogram: new_histogram(),
            sent: 0,
            completed: 0,
            errors: Errors::default(),
            first_error: None,
            stopped_after: None,
        }
    }
}

impl ConnStats {
    pub fn note_error(&mut self, message: impl FnOnce() -> String) {
        if self.first_error.is_none() {
            self.first_error = Some(message());
        }
    }
}

/// The time the load ran after warmup: `full`, unless every connection stopped early
/// (`--max-requests` done, or all lost); then until the last one stopped.
pub fn measured_time(
    full: Duration,
    stopped_after: impl IntoIterator<Item = Option<Duration>>,
) -> Duration {
    let mut latest = Duration::ZERO;
    let mut any = false;
    for stopped in stopped_after {
        match stopped {
            Some(after) => latest = latest.max(after),
            None => return full,
        }
        any = true;
    }
    if any {
        latest.min(full)
    } else {
        full
    }
}

/// Latency percentiles, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl Latency {
    pub fn from_histogram(histogram: &Histogram<u64>) -> Latency {
        if histogram.is_empty() {
            return Latency::default();
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Latency {
            p50: us(histogram.value_at_quantile(0.5)),
            p90: us(histogram.value_at_quantile(0.9)),
            p99: us(histogram.value_at_quantile(0.99)),
            p999: us(histogram.value_at_quantile(0.999)),
            max: us(histogram.max()),
            mean: histogram.mean() / 1000.0,
        }
    }
}

/// The result of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub transport: String,
    pub command: String,
    pub url: String,
    pub connections: usize,
    pub in_flight: usize,
    pub warmup: Duration,
    /// The measured time: the configured duration, or less when `--max-requests` ran out first.
    pub duration: Duration,
    /// Measured requests (sent after warmup and answered successfully before the end).
    pub requests: u64,
    /// Requests sent over the whole run, warmup included.
    pub sent: u64,
    pub latency: Latency,
    pub errors: Errors,
    pub first_error: Option<String>,
    /// With several `--url`s: the same figures for each node's share of the connections.
    pub nodes: Vec<Report>,
}

impl Report {
    pub fn requests_per_second(&self) -> f64 {
        let secs = self.duration.as_secs_f64();
        if secs > 0.0 {
            self.requests as f64 / secs
        } else {
            0.0
        }
    }

    /// `ws getelement C=50 K=4 10s: 1234560 requests, 123456 req/s, p50 310µs … , errors 0`
    pub fn to_text(&self) -> String {
        let l = &self.latency;
        let mut text = format!(
            "{} {} C={} K={} {}: {} requests, {:.0} req/s, p50 {} p90 {} p99 {} p99.9 {} max {}, errors {}",
            self.transport,
            self.command,
            self.connections,
            self.in_flight,
            format_seconds(self.duration),
            self.requests,
            self.requests_per_second(),
            format_micros(l.p50),
            format_micros(l.p90),
            format_micros(l.p99),
            format_micros(l.p999),
            format_micros(l.max),
            self.errors.total(),
        );
        if self.errors.total() > 0 {
            let e = &self.errors;
            text.push_str(&format!(
                " ({} error replies, {} timeouts, {} disconnects, {} unexpected replies)",
                e.replies, e.timeouts, e.disconnects, e.unexpected
            ));
            if let Some(first) = &self.first_error {
                text.push_str(&format!("\nfirst error: {first}"));
            }
        }
        for node in &self.nodes {
            text.push_str(&format!("\n  node {}: {}", node.url, node.to_text()));
        }
        text
    }

    pub fn to_json(&self) -> serde_json::Value {
        let round = |v: f64| (v * 10.0).round() / 10.0;
        let l = &self.latency;
        serde_json::json!({
            "transport": self.transport,
            "command": self.command,
            "url": self.url,
            "connections": self.connections,
            "in_flight": self.in_flight,
            "warmup_s": self.warmup.as_secs_f64(),
            "duration_s": self.duration.as_secs_f64(),
            "requests": self.requests,
            "sent": self.sent,
            "requests_per_sec": round(self.requests_per_second()),
            "latency_us": {
                "p50": round(l.p50),
                "p90": round(l.p90),
                "p99": round(l.p99),
                "p99_9": round(l.p999),
                "max": round(l.max),
                "mean": round(l.mean),
            },
            "errors": {
                "total": self.errors.total(),
                "error_replies": self.errors.replies,
                "timeouts": self.errors.timeouts,
                "disconnects": self.errors.disconnects,
                "unexpected": self.errors.unexpected,
            },
            "first_error": self.first_error,
            "nodes": self.nodes.iter().map(Report::to_json).collect::<Vec<_>>(),
        })
    }
}

/// `310µs`, `1.4ms`, `12.3ms`, `250ms`, `1.25s`.
pub fn format_micros(us: f64) -> String {
    if us < 1000.0 {
        format!("{:.0}µs", us)
    } else if us < 100_000.0 {
        format!("{:.1}ms", us / 1000.0)
    } else if us < 1_000_000.0 {
        format!("{:.0}ms", us / 1000.0)
    } else {
        format!("{:.2}s", us / 1_000_000.0)
    }
}

/// `10s`, `2.5s`.
pub fn format_seconds(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    if (secs - secs.round()).abs() < 0.005 {
        format!("{:.0}s", secs)
    } else {
        let text = format!("{:.2}", secs);
        format!("{}s", text.trim_end_matches('0'))
    }
}
