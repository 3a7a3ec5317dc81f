//! Prometheus metrics through the `metrics` facade, rendered by
//! `metrics-exporter-prometheus` at `GET /metrics`.
//!
//! Two kinds of series:
//! - **recorded as they happen** (this module's `record_*` functions): requests by
//!   command and result code, request latency by command family, store group commits,
//!   sign-ins. The hot path holds cached handles, so recording is an atomic add (and a
//!   lock-free bucket push for histograms), not a registry lookup.
//! - **read at scrape time** from the atomics the server keeps anyway (connections by
//!   transport, in-flight, lane depths, queue and watch counters): the scrape handler
//!   sets them with [`gauge`] / [`counter_total`] before rendering, so they cost nothing
//!   between scrapes.
//!
//! Label values are bounded: command names come from the server's own command table
//! (anything else is `unknown`), codes from its error table; never user ids or
//! collection names.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Requests answered, by `command` and `code` (0: success, else the error's stable code).
pub const REQUESTS: &str = "opencore_requests_total";
/// Seconds from dispatch to reply, by command `family` (session, diagnostics, data, admin).
pub const REQUEST_SECONDS: &str = "opencore_request_duration_seconds";
/// Sign-ins by `result` (ok, failed).
pub const SIGNINS: &str = "opencore_signins_total";
/// Writes per embedded-store group commit.
pub const GROUP_COMMIT_SIZE: &str = "opencore_store_group_commit_size";
/// Seconds per embedded-store group commit (apply + durable commit).
pub const GROUP_COMMIT_SECONDS: &str = "opencore_store_group_commit_seconds";

const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];
const COMMIT_SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder (once; later calls, e.g. a second server in one
/// test process, reuse it). `None` if another recorder was installed first.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(GROUP_COMMIT_SIZE.into()),
                        COMMIT_SIZE_BUCKETS,
                    )
                });
            let builder = match builder {
                Ok(builder) => builder,
                Err(err) => {
                    tracing::warn!(%err, "metrics: bucket configuration refused; metrics are off");
                    return None;
                }
            };
            match builder.install_recorder() {
                Ok(handle) => {
                    describe();
                    start_upkeep(handle.clone());
                    Some(handle)
                }
                Err(err) => {
                    tracing::warn!(%err, "metrics: a recorder is already installed; /metrics is empty");
                    None
                }
            }
        })
        .as_ref()
}

/// Histogram samples collect in lock-free buckets until upkeep folds them into counts:
/// without it they would grow by one entry per request between scrapes. Every 5 s,
/// on a thread of its own (it must run whether or not anyone scrapes).
fn start_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("opencore-metrics".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_secs(5));
            handle.run_upkeep();
        });
    if let Err(err) = spawned {
        tracing::warn!(%err, "metrics: no upkeep thread; histograms are folded at scrapes only");
    }
}

/// The Prometheus text of every series (empty when no recorder is installed).
pub fn render() -> String {
    install().map(PrometheusHandle::render).unwrap_or_default()
}

fn describe() {
    metrics::describe_counter!(
        REQUESTS,
        "Requests answered, by command and result code (0 = success)"
    );
    metrics::describe_histogram!(
        REQUEST_SECONDS,
        metrics::Unit::Seconds,
        "Request latency from dispatch to reply, by command family"
    );
    metrics::describe_counter!(SIGNINS, "Sign-ins by result");
    metrics::describe_histogram!(GROUP_COMMIT_SIZE, "Writes per embedded-store group commit");
    metrics::describe_histogram!(
        GROUP_COMMIT_SECONDS,
        metrics::Unit::Seconds,
        "Embedded-store group commit duration"
    );
}

/// Cached handles of the per-request series, built on first use (after [`install`]).
struct RequestHandles {
    /// Successful requests per command, indexed like `commands`.
    ok: Vec<Counter>,
    commands: &'static [&'static str],
    /// Latency per family, indexed like `families`.
    latency: Vec<Histogram>,
}

static REQUEST_HANDLES: OnceLock<RequestHandles> = OnceLock::new();

/// Sets the label tables the per-request handles are built from: the server's command
/// names and command families (called once at start, before the first request).
pub fn register_labels(commands: &'static [&'static str], families: &'static [&'static str]) {
    install();
    REQUEST_HANDLES.get_or_init(|| RequestHandles {
        ok: commands
            .iter()
            .map(|command| metrics::counter!(REQUESTS, "command" => *command, "code" => "0"))
            .collect(),
        commands,
        latency: families
            .iter()
            .map(|family| metrics::histogram!(REQUEST_SECONDS, "family" => *family))
            .collect(),
    });
}

/// One answered request: `command` and `family` are indexes into the tables given to
/// [`register_labels`]; `code` is 0 on success.
pub fn record_request(command: Option<usize>, family: Option<usize>, code: i32, elapsed: Duration) {
    let Some(handles) = REQUEST_HANDLES.get() else {
        return;
    };
    if let Some(histogram) = family.and_then(|f| handles.latency.get(f)) {
        histogram.record(elapsed.as_secs_f64());
    }
    let name = command
        .and_then(|c| handles.commands.get(c))
        .copied()
        .unwrap_or("unknown");
    if code == 0 {
        if let Some(counter) = command.and_then(|c| handles.ok.get(c)) {
            counter.increment(1);
            return;
        }
    }
    // Errors are rarer: a registry lookup is fine here.
    metrics::counter!(REQUESTS, "command" => name, "code" => code.to_string()).increment(1);
}

pub fn record_signin(ok: bool) {
    metrics::counter!(SIGNINS, "result" => if ok { "ok" } else { "failed" }).increment(1);
}

/// One embedded-store group commit of `writes` writes that took `elapsed`.
pub fn record_group_commit(writes: usize, elapsed: Duration) {
    static HANDLES: OnceLock<(Histogram, Histogram)> = OnceLock::new();
    let (size, seconds) = HANDLES.get_or_init(|| {
        (
            metrics::histogram!(GROUP_COMMIT_SIZE),
            metrics::histogram!(GROUP_COMMIT_SECONDS),
        )
    });
    size.record(writes as f64);
    seconds.record(elapsed.as_secs_f64());
}

/// Scrape time: a gauge's current value.
pub fn gauge(name: &'static str, labels: &[(&'static str, String)], value: f64) {
    let labels: Vec<metrics::Label> = labels
        .iter()
        .map(|(key, value)| metrics::Label::new(*key, value.clone()))
        .collect();
    metrics::gauge!(name, labels).set(value);
}

/// Scrape time: a counter the server already counts in an atomic.
pub fn counter_total(name: &'static str, labels: &[(&'static str, String)], value: u64) {
    let labels: Vec<metrics::Label> = labels
        .iter()
        .map(|(key, value)| metrics::Label::new(*key, value.clone()))
        .collect();
    metrics::counter!(name, labels).absolute(value);
}
