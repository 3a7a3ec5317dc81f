//! `opencore bench`: a load generator speaking the raw protocol over WebSocket, gRPC
//! or TCP. C connections each keep exactly K requests outstanding (a closed loop),
//! for a warmup and then a measured duration, and report throughput, latency
//! percentiles and errors.
//!
//! - `target`: `--url` → transport, host, port, path.
//! - `workload`: the commands the bench can send.
//! - `pipeline`: one connection's K-in-flight state machine (transport independent).
//! - `connection`: the per-connection event loop and sign-in, generic over transports.
//! - `ws`, `tcp`, `grpc`: the transports.
//! - `wire`: cheap decoding of inbound envelopes, framing of outbound ones.
//! - `stats`: histograms, counters and the report.
//! - `watch`: the watch workload (watchers plus one writer; delivery and latency).
//! - `queue`: the queue workload (a ring of temporary queues; acks, deliveries,
//!   latency and lost messages).
//! - `amqp_baseline`: the same ring straight on RabbitMQ with lapin.
//! - `pushpop`: work item cycles (push → pop → update) on a fresh work item queue.
//! - `jobs`: running `pushpop` (setup connection, spawn, merge).

/// Runs `$body` with `$t` bound to the transport inside a `Conn`, whatever its kind.
macro_rules! on_conn {
    ($conn:expr, $t:ident => $body:expr) => {
        match $conn {
            Conn::Ws($t) => $body,
            Conn::Tcp($t) => $body,
            Conn::Grpc($t) => $body,
        }
    };
}

pub mod amqp_baseline;
pub mod connection;
pub mod files;
pub mod grpc;
pub mod jobs;
pub mod pipeline;
pub mod pushpop;
pub mod queue;
pub mod stats;
pub mod target;
pub mod tcp;
pub mod watch;
pub mod wire;
pub mod workload;
pub mod ws;

#[cfg(test)]
mod queue_tests;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::duration::parse_duration;
use crate::proto::Envelope;
use crate::protocol::envelope::reply_command;
use connection::Transport;
use pipeline::{Pipeline, Schedule};
use stats::{ConnStats, Errors, Latency, Report};
use target::{Target, Targets, Transport as TransportKind};
use workload::BenchCommand;

/// How long one connection may take to connect (TCP + WebSocket/HTTP2 handshake).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, clap::Args)]
#[command(
    after_help = "Examples:\n  opencore bench --url ws://127.0.0.1:3000 -c 50 -k 4 -d 10\n  \
                       opencore bench --url grpc://127.0.0.1:50051 --command query --username admin --password PASSWORD\n  \
                       opencore bench --url ws://127.0.0.1:3000 --command queuemessage -c 50 -k 4 --username admin --password PASSWORD\n  \
                       opencore bench --url ws://127.0.0.1:3000 --command pushpop -c 50 -k 4 --username admin --password PASSWORD\n  \
                       opencore bench --command amqp-baseline --amqp-url amqp://guest:guest@127.0.0.1:5672/%2f -c 50 -k 4"
)]
pub struct BenchConfig {
    /// Server to drive: ws://host:port[/path] (default path /ws/v2), grpc://host:port or tcp://host:port.
    /// Several nodes of one cluster: a comma-separated list (connection i goes to node
    /// i mod n; figures are reported per node and in total). Not used by `--command amqp-baseline`.
    #[arg(long, env = "OPENCORE_BENCH_URL")]
    pub url: Option<String>,
    /// Concurrent connections (C).
    #[arg(short = 'c', long, default_value_t = 50)]
    pub connections: usize,
    /// Requests each connection keeps outstanding (K).
    #[arg(
        short = 'k',
        long = "in-flight",
        visible_alias = "inflight",
        default_value_t = 4
    )]
    pub in_flight: usize,
    /// Measured duration (seconds, or e.g. 500ms, 1m).
    #[arg(short = 'd', long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Load before measuring starts, not counted in the results.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// The command to send (`query` and `insertone` work in the collection `bench` and need --username).
    #[arg(long, value_enum, default_value_t = BenchCommand::GetElement)]
    pub command: BenchCommand,
    /// Sign in on every connection before the load starts.
    #[arg(long, env = "OPENCORE_BENCH_USERNAME", requires = "password")]
    pub username: Option<String>,
    /// Password for --username.
    #[arg(
        long,
        env = "OPENCORE_BENCH_PASSWORD",
        hide_env_values = true,
        requires = "username"
    )]
    pub password: Option<String>,
    /// Envelope priority of every request.
    #[arg(long, default_value_t = 1)]
    pub priority: i32,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Stop after this many measured requests (spread evenly over the connections).
    #[arg(long)]
    pub max_requests: Option<u64>,
    /// A request unanswered for this long counts as a timeout error.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// How long each connection's sign-in may take (the server checks passwords a few at a time).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub signin_timeout: Duration,
    /// Threads of the bench's runtime (default: one per core, at most one per connection).
    #[arg(long)]
    pub threads: Option<usize>,
    /// `--command watch`: inserts per second by the writer (0: as fast as its K in-flight inserts allow).
    #[arg(long, default_value_t = 100)]
    pub rate: u64,
    /// `--command watch`: watches each connection opens on the collection (each gets every event).
    #[arg(long, default_value_t = 1)]
    pub watches: usize,
    /// `--command queuemessage`/`amqp-baseline`: pad every message body (JSON) to at least this many bytes.
    #[arg(long, default_value_t = 0)]
    pub payload_bytes: usize,
    /// `--command queuemessage`/`amqp-baseline`: after the run, how long receivers may
    /// wait for messages still on their way before the rest count as lost.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub drain: Duration,
    /// `--command queuemessage`/`amqp-baseline`: message expiration (queuemessage
    /// `expiration`, AMQP `expiration` property).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub message_expiration: Duration,
    /// `--command queuemessage`/`amqp-baseline`: messages a connection may have sent
    /// and not yet seen delivered beyond its K in flight (0: no bound; the broker's
    /// queues may then grow when deliveries are slower than acknowledgements).
    #[arg(long, default_value_t = 0)]
    pub max_backlog: u64,
    /// `--command amqp-baseline`: the RabbitMQ to drive.
    #[arg(long, env = "AMQP_URL", hide_env_values = true)]
    pub amqp_url: Option<String>,
    /// `--command amqp-baseline`: AMQP connections the C clients share (round-robin).
    #[arg(long, default_value_t = 1)]
    pub amqp_connections: usize,
    /// `--command upload`/`download`: size of the file each connection uploads, MiB.
    #[arg(long, default_value_t = 100)]
    pub file_mb: usize,
    /// `--command upload`/`download`: the server's process id (same machine), to report
    /// its resident size and peak growth during the run.
    #[arg(long)]
    pub server_pid: Option<u32>,
}

impl BenchConfig {
    fn validate(&self) -> Result<Targets, String> {
        let url = self
            .url
            .as_deref()
            .ok_or("--url is required (ws://host:port, grpc://host:port or tcp://host:port)")?;
        let targets = Targets::parse(url)?;
        self.validate_common()?;
        Ok(targets)
    }

    /// `--command amqp-baseline`: the AMQP URL, and the settings it uses.
    fn validate_amqp(&self) -> Result<String, String> {
        let url = self
            .amqp_url
            .clone()
            .ok_or("--command amqp-baseline needs --amqp-url (or AMQP_URL)")?;
        if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
            return Err(format!(
                "--amqp-url must start with amqp:// or amqps:// (got {})",
                amqp_baseline::redact(&url)
            ));
        }
        if self.amqp_connections == 0 {
            return Err("--amqp-connections must be at least 1".into());
        }
        self.validate_common()?;
        Ok(url)
    }

    fn validate_common(&self) -> Result<(), String> {
        if self.connections == 0 {
            return Err("--connections must be at least 1".into());
        }
        if self.in_flight == 0 {
            return Err("--in-flight must be at least 1".into());
        }
        if self.duration.is_zero() {
            return Err("--duration must be more than 0".into());
        }
        if self.timeout.is_zero() {
            return Err("--timeout must be more than 0".into());
        }
        if self.signin_timeout.is_zero() {
            return Err("--signin-timeout must be more than 0".into());
        }
        if self.watches == 0 {
            return Err("--watches must be at least 1".into());
        }
        if self.max_requests == Some(0) {
            return Err("--max-requests must be at least 1".into());
        }
        if self.username.is_some() != self.password.is_some() {
            return Err("--username and --password go together".into());
        }
        if self.command.needs_signin() && self.username.is_none() {
            return Err(format!(
                "--command {} needs --username and --password",
                self.command.name()
            ));
        }
        if matches!(
            self.command,
            BenchCommand::QueueMessage | BenchCommand::AmqpBaseline
        ) {
            let ms = self.message_expiration.as_millis();
            if ms == 0 || ms > i32::MAX as u128 {
                return Err("--message-expiration must be between 1ms and 24 days".into());
            }
        }
        Ok(())
    }
}

pub fn run(config: BenchConfig) -> Result<(), String> {
    if config.command == BenchCommand::AmqpBaseline {
        return run_amqp_baseline(config);
    }
    let target = config.validate()?;
    if target.all().len() > 1
        && matches!(
            config.command,
            BenchCommand::Upload | BenchCommand::Download
        )
    {
        return Err(format!(
            "--command {} takes one --url",
            config.command.name()
        ));
    }
    let threads = config
        .threads
        .unwrap_or_else(|| default_threads(config.connections))
        .max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("opencore-bench")
        .enable_all()
        .build()
        .map_err(|err| format!("could not start the bench runtime: {err}"))?;
    if !config.json {
        eprintln!(
            "bench: {target} {} C={} K={} warmup {} duration {}{}",
            config.command.name(),
            config.connections,
            config.in_flight,
            stats::format_seconds(config.warmup),
            stats::format_seconds(config.duration),
            config
                .username
                .as_deref()
                .map(|u| format!(" as {u}"))
                .unwrap_or_default(),
        );
    }
    if config.command == BenchCommand::PushPop {
        let result = runtime.block_on(jobs::execute(&config, &target));
        runtime.shutdown_timeout(Duration::from_secs(1));
        return result;
    }
    if config.command == BenchCommand::QueueMessage {
        let result = runtime.block_on(execute_queue(&config, &target));
        runtime.shutdown_timeout(Duration::from_secs(1));
        return print_queue_report(&config, result?);
    }
    if matches!(
        config.command,
        BenchCommand::Upload | BenchCommand::Download
    ) {
        let result = runtime.block_on(files::execute(&config, target.first()));
        runtime.shutdown_timeout(Duration::from_secs(1));
        let report = result?;
        if config.json {
            println!("{}", report.to_json());
        } else {
            println!("{}", report.to_text());
        }
        return Ok(());
    }
    if config.command == BenchCommand::Watch {
        let result = runtime.block_on(execute_watch(&config, &target));
        runtime.shutdown_timeout(Duration::from_secs(1));
        let report = result?;
        if config.json {
            println!("{}", report.to_json());
        } else {
            println!("{}", report.to_text());
        }
        if report.delivered == 0 {
            return Err("no watch event was delivered during the measured time".into());
        }
        return Ok(());
    }
    let result = runtime.block_on(execute(&config, &target));
    // Whatever is left (tonic's background tasks, a connection that would not close)
    // must not keep the process alive.
    runtime.shutdown_timeout(Duration::from_secs(1));
    let report = result?;
    if config.json {
        println!("{}", report.to_json());
    } else {
        println!("{}", report.to_text());
    }
    if report.requests == 0 {
        return Err("no request was answered successfully during the measured time".into());
    }
    Ok(())
}

fn run_amqp_baseline(config: BenchConfig) -> Result<(), String> {
    let url = config.validate_amqp()?;
    let threads = config
        .threads
        .unwrap_or_else(|| default_threads(config.connections))
        .max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("opencore-bench")
        .enable_all()
        .build()
        .map_err(|err| format!("could not start the bench runtime: {err}"))?;
    if !config.json {
        eprintln!(
            "bench: {} amqp-baseline C={} K={} warmup {} duration {} ({} AMQP connection(s))",
            amqp_baseline::redact(&url),
            config.connections,
            config.in_flight,
            stats::format_seconds(config.warmup),
            stats::format_seconds(config.duration),
            config.amqp_connections.clamp(1, config.connections),
        );
    }
    let result = runtime.block_on(amqp_baseline::execute(&config, &url));
    runtime.shutdown_timeout(Duration::from_secs(1));
    print_queue_report(&config, result?)
}

fn print_queue_report(config: &BenchConfig, report: queue::QueueReport) -> Result<(), String> {
    if config.json {
        println!("{}", report.to_json());
    } else {
        println!("{}", report.to_text());
    }
    if report.deliveries_measured == 0 {
        return Err("no message was delivered during the measured time".into());
    }
    if report.tally.lost > 0 {
        return Err(format!(
            "{} acknowledged message(s) were never delivered",
            report.tally.lost
        ));
    }
    Ok(())
}

/// One thread per core, never more than the connections.
pub fn default_threads(connections: usize) -> usize {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    cores.clamp(1, connections.max(1))
}

/// A connected (and signed-in) connection of any transport.
enum Conn {
    Ws(ws::WsTransport),
    Tcp(tcp::TcpTransport),
    Grpc(grpc::GrpcTransport),
}

/// A connection ready for the load: envelopes it already sent, and its request.
type Opened = (Conn, u64, Envelope);

impl Conn {
    async fn open(target: &Target, config: &BenchConfig) -> Result<Opened, String> {
        let connecting = async {
            Ok::<_, String>(match target.transport {
                TransportKind::WebSocket => Conn::Ws(ws::connect(target).await?),
                TransportKind::Tcp => Conn::Tcp(tcp::connect(target).await?),
                TransportKind::Grpc => Conn::Grpc(grpc::connect(target).await?),
            })
        };
        let mut conn = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| format!("could not connect to {target} within {CONNECT_TIMEOUT:?}"))??;
        let command = config.command;
        let (Some(username), Some(password)) = (&config.username, &config.password) else {
            return Ok((conn, 0, command.template(config.priority)));
        };
        let envelope = workload::signin_envelope(username, password, config.priority);
        let signed_in = match &mut conn {
            Conn::Ws(t) => connection::signin(t, envelope, config.signin_timeout).await,
            Conn::Tcp(t) => connection::signin(t, envelope, config.signin_timeout).await,
            Conn::Grpc(t) => connection::signin(t, envelope, config.signin_timeout).await,
        };
        signed_in.map_err(|err| format!("{err} (as '{username}')"))?;
        let Some(setup) = command.setup(config.priority) else {
            return Ok((conn, 1, command.template(config.priority)));
        };
        let expected = reply_command(&setup.command);
        let (limit, what) = (config.timeout, setup.command.clone());
        let reply = match &mut conn {
            Conn::Ws(t) => connection::roundtrip(t, setup, 1, &expected, limit).await,
            Conn::Tcp(t) => connection::roundtrip(t, setup, 1, &expected, limit).await,
            Conn::Grpc(t) => connection::roundtrip(t, setup, 1, &expected, limit).await,
        };
        let reply = reply.map_err(|err| format!("setup {what} {err}"))?;
        let mut sent = 2;
        // The watch workload may hold several watches per connection.
        for _ in 1..config.watches.max(1) {
            let Some(setup) = command.setup(config.priority) else {
                break;
            };
            if command != BenchCommand::Watch {
                break;
            }
            let result = match &mut conn {
                Conn::Ws(t) => connection::roundtrip(t, setup, sent, &expected, limit).await,
                Conn::Tcp(t) => connection::roundtrip(t, setup, sent, &expected, limit).await,
                Conn::Grpc(t) => connection::roundtrip(t, setup, sent, &expected, limit).await,
            };
            result.map_err(|err| format!("setup {what} {err}"))?;
            sent += 1;
        }
        Ok((
            conn,
            sent,
            command.template_after_setup(config.priority, &reply)?,
        ))
    }

    async fn drive(self, pipeline: Pipeline) -> ConnStats {
        match self {
            Conn::Ws(t) => connection::drive(t, pipeline).await,
            Conn::Tcp(t) => connection::drive(t, pipeline).await,
            Conn::Grpc(t) => connection::drive(t, pipeline).await,
        }
    }

    async fn watch_events(self, run: String, until: Instant) -> watch::Received {
        match self {
            Conn::Ws(t) => watch::watch(t, run, until).await,
            Conn::Tcp(t) => watch::watch(t, run, until).await,
            Conn::Grpc(t) => watch::watch(t, run, until).await,
        }
    }

    async fn write_inserts(
        self,
        run: String,
        first: u64,
        config: &BenchConfig,
        end: Instant,
    ) -> watch::Acks {
        let (rate, k, priority) = (config.rate, config.in_flight, config.priority);
        match self {
            Conn::Ws(t) => watch::write(t, run, first, rate, k, priority, end).await,
            Conn::Tcp(t) => watch::write(t, run, first, rate, k, priority, end).await,
            Conn::Grpc(t) => watch::write(t, run, first, rate, k, priority, end).await,
        }
    }

    /// Registers a temporary queue (`registerqueue` with an empty name) as envelope
    /// number `counter`; returns its name.
    async fn register_queue(
        &mut self,
        counter: u64,
        limit: Duration,
        priority: i32,
    ) -> Result<String, String> {
        let envelope = queue::register_envelope(priority);
        let expected = "registerqueuereply";
        let reply = match self {
            Conn::Ws(t) => connection::roundtrip(t, envelope, counter, expected, limit).await,
            Conn::Tcp(t) => connection::roundtrip(t, envelope, counter, expected, limit).await,
            Conn::Grpc(t) => connection::roundtrip(t, envelope, counter, expected, limit).await,
        };
        let reply = reply.map_err(|err| format!("registerqueue {err}"))?;
        let registered: crate::proto::RegisterQueueResponse = reply
            .payload()
            .map_err(|err| format!("undecodable registerqueuereply: {err}"))?;
        if registered.queuename.is_empty() {
            return Err("registerqueue answered with an empty queue name".into());
        }
        Ok(registered.queuename)
    }

    async fn run_queue(
        self,
        member: queue::Member,
        plan: Arc<queue::Plan>,
    ) -> (queue::SenderLog, queue::ReceiverLog) {
        match self {
            Conn::Ws(t) => queue::run(t, member, plan).await,
            Conn::Tcp(t) => queue::run(t, member, plan).await,
            Conn::Grpc(t) => queue::run(t, member, plan).await,
        }
    }

    async fn close(self) {
        match self {
            Conn::Ws(t) => t.close().await,
            Conn::Tcp(t) => t.close().await,
            Conn::Grpc(t) => t.close().await,
        }
    }
}

/// The share of `--max-requests` connection `index` sends.
pub fn budget_share(max_requests: Option<u64>, connections: usize, index: usize) -> Option<u64> {
    max_requests.map(|max| {
        let connections = connections as u64;
        max / connections + u64::from((index as u64) < max % connections)
    })
}

async fn execute(config: &BenchConfig, target: &Targets) -> Result<Report, String> {
    // 1. Connect (and sign in) every connection before any load.
    let conns = open_all(target, config, config.connections).await?;

    // 2. Run the load on all of them at once.
    let schedule = Schedule::new(
        Instant::now(),
        config.warmup,
        config.duration,
        config.timeout,
    );
    let expected = config.command.success_reply();
    let mut running = Vec::with_capacity(config.connections);
    for (index, (conn, sent, template)) in conns.into_iter().enumerate() {
        let budget = budget_share(config.max_requests, config.connections, index);
        let pipeline = Pipeline::new(
            template,
            &expected,
            config.in_flight,
            sent,
            schedule,
            budget,
        );
        running.push(tokio::spawn(conn.drive(pipeline)));
    }

    // 3. Collect. Every connection ends by itself shortly after the end; the bound is a safety net.
    let deadline = tokio::time::Instant::from_std(schedule.end) + Duration::from_secs(5);
    let mut all = Vec::with_capacity(running.len());
    let mut stuck = 0u64;
    for (index, handle) in running.into_iter().enumerate() {
        let abort = handle.abort_handle();
        match tokio::time::timeout_at(deadline, handle).await {
            Ok(Ok(stats)) => all.push((index, stats)),
            Ok(Err(err)) => return Err(format!("a connection task failed: {err}")),
            Err(_) => {
                abort.abort();
                stuck += 1;
            }
        }
    }
    let nodes = target.all();
    let per_node = if nodes.len() > 1 {
        let mut shares: Vec<Vec<ConnStats>> = nodes.iter().map(|_| Vec::new()).collect();
        for (index, stats) in &all {
            shares[index % nodes.len()].push(stats.clone());
        }
        nodes
            .iter()
            .zip(shares)
            .enumerate()
            .map(|(n, (node, share))| {
                let connections = (n..config.connections).step_by(nodes.len()).count();
                let mut report = merge(config, &node.to_string(), &schedule, share);
                report.connections = connections;
                report
            })
            .collect()
    } else {
        Vec::new()
    };
    let all = all.into_iter().map(|(_, stats)| stats).collect();
    let mut report = merge(config, &target.to_string(), &schedule, all);
    report.transport = target.transport().as_str().to_string();
    report.nodes = per_node;
    if stuck > 0 {
        report.errors.disconnects += stuck;
        report
            .first_error
            .get_or_insert_with(|| format!("{stuck} connection(s) did not stop in time"));
    }
    Ok(report)
}

fn merge(config: &BenchConfig, url: &str, schedule: &Schedule, all: Vec<ConnStats>) -> Report {
    let mut histogram = stats::new_histogram();
    let mut errors = Errors::default();
    let mut sent = 0;
    let mut first_error = None;
    let measured = schedule
        .end
        .saturating_duration_since(schedule.measure_start);
    let duration = stats::measured_time(measured, all.iter().map(|s| s.stopped_after));
    for stats in all {
        let _ = histogram.add(&stats.histogram);
        errors.add(&stats.errors);
        sent += stats.sent;
        if first_error.is_none() {
            first_error = stats.first_error;
        }
    }
    Report {
        transport: url.split("://").next().unwrap_or_default().to_string(),
        command: config.command.name().to_string(),
        url: url.to_string(),
        connections: config.connections,
        in_flight: config.in_flight,
        warmup: config.warmup,
        duration,
        requests: histogram.len(),
        sent,
        latency: Latency::from_histogram(&histogram),
        errors,
        first_error,
        nodes: Vec::new(),
    }
}

/// Opens every connection or none (closing those that did open).
async fn open_all(
    target: &Targets,
    config: &BenchConfig,
    count: usize,
) -> Result<Vec<Opened>, String> {
    let mut opening = JoinSet::new();
    for index in 0..count {
        let target = target.for_connection(index).clone();
        let config = config.clone();
        opening.spawn(async move { (index, Conn::open(&target, &config).await) });
    }
    let mut conns: Vec<Option<Opened>> = (0..count).map(|_| None).collect();
    let mut failure = None;
    while let Some(joined) = opening.join_next().await {
        match joined {
            Ok((index, Ok(conn))) => conns[index] = Some(conn),
            Ok((index, Err(err))) => {
                failure = Some(format!("connection {}: {err}", index + 1));
                break;
            }
            Err(err) => {
                failure = Some(format!("connection task failed: {err}"));
                break;
            }
        }
    }
    if let Some(failure) = failure {
        opening.abort_all();
        let closing = conns.into_iter().flatten().map(|(conn, _, _)| conn.close());
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            futures_util::future::join_all(closing),
        )
        .await;
        return Err(failure);
    }
    Ok(conns.into_iter().flatten().collect())
}

/// The watch workload: C watchers, one writer (see `watch.rs`).
async fn execute_watch(
    config: &BenchConfig,
    target: &Targets,
) -> Result<watch::WatchReport, String> {
    let watchers = open_all(target, config, config.connections).await?;
    let mut writer_config = config.clone();
    writer_config.command = BenchCommand::InsertOne;
    let (writer, first, _) = open_all(target, &writer_config, 1)
        .await?
        .pop()
        .ok_or("the writer did not connect")?;
    let run = watch::run_id();
    let start = Instant::now();
    let window = (
        start + config.warmup,
        start + config.warmup + config.duration,
    );
    let watching: Vec<_> = watchers
        .into_iter()
        .map(|(conn, _, _)| tokio::spawn(conn.watch_events(run.clone(), window.1 + watch::DRAIN)))
        .collect();
    let writing = {
        let config = config.clone();
        let run = run.clone();
        tokio::spawn(async move { writer.write_inserts(run, first, &config, window.1).await })
    };
    let acks = writing
        .await
        .map_err(|err| format!("the writer task failed: {err}"))?;
    let mut received = Vec::with_capacity(watching.len());
    for handle in watching {
        received.push(
            handle
                .await
                .map_err(|err| format!("a watcher task failed: {err}"))?,
        );
    }
    Ok(watch::WatchReport::build(
        target.transport().as_str(),
        config.duration,
        window,
        &acks,
        &received,
    ))
}

/// The queue workload: a ring of C connections with temporary queues (see `queue.rs`).
async fn execute_queue(
    config: &BenchConfig,
    target: &Targets,
) -> Result<queue::QueueReport, String> {
    let count = config.connections;
    // 1. Connect and sign in, then register every connection's temporary queue.
    let conns = open_all(target, config, count).await?;
    let mut registering = JoinSet::new();
    for (index, (mut conn, sent, _)) in conns.into_iter().enumerate() {
        let (limit, priority) = (config.timeout, config.priority);
        registering.spawn(async move {
            let result = conn.register_queue(sent, limit, priority).await;
            (index, conn, sent + 1, result)
        });
    }
    let mut registered: Vec<Option<(Conn, u64, String)>> = (0..count).map(|_| None).collect();
    let mut failure = None;
    while let Some(joined) = registering.join_next().await {
        match joined {
            Ok((index, conn, next, Ok(name))) => registered[index] = Some((conn, next, name)),
            Ok((index, conn, _, Err(err))) => {
                failure.get_or_insert(format!("connection {}: {err}", index + 1));
                conn.close().await;
            }
            Err(err) => {
                failure.get_or_insert(format!("connection task failed: {err}"));
            }
        }
    }
    let mut members = Vec::with_capacity(count);
    for slot in registered {
        match slot {
            Some(member) => members.push(member),
            None => {
                failure.get_or_insert_with(|| "a connection did not register its queue".into());
            }
        }
    }
    if let Some(failure) = failure {
        let closing = members.into_iter().map(|(conn, _, _)| conn.close());
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            futures_util::future::join_all(closing),
        )
        .await;
        return Err(failure);
    }
    let names: Vec<String> = members.iter().map(|(_, _, name)| name.clone()).collect();

    // 2. Run the ring: connection i sends to connection i+1's queue.
    let clock = queue::Clock::new(
        Instant::now(),
        config.warmup,
        config.duration,
        config.drain,
        config.timeout,
    );
    let plan = Arc::new(queue::Plan {
        clock,
        progress: queue::Progress::new(count),
        in_flight: config.in_flight,
        priority: config.priority,
        payload_bytes: config.payload_bytes,
        expiration: config.message_expiration.as_millis().min(i32::MAX as u128) as i32,
        max_backlog: config.max_backlog,
    });
    let mut running = Vec::with_capacity(count);
    for (index, (conn, counter, _)) in members.into_iter().enumerate() {
        let member = queue::Member {
            index,
            counter,
            target_queue: names[queue::next(index, count)].clone(),
            budget: budget_share(config.max_requests, count, index),
        };
        running.push(tokio::spawn(conn.run_queue(member, plan.clone())));
    }

    // 3. Collect. Every connection ends by itself by the end of the drain.
    let deadline = tokio::time::Instant::from_std(clock.drain_until) + Duration::from_secs(5);
    let mut senders = Vec::with_capacity(count);
    let mut receivers = Vec::with_capacity(count);
    let mut extra = Vec::new();
    for (index, handle) in running.into_iter().enumerate() {
        let abort = handle.abort_handle();
        match tokio::time::timeout_at(deadline, handle).await {
            Ok(Ok((sender, receiver))) => {
                senders.push(sender);
                receivers.push(receiver);
            }
            Ok(Err(err)) => extra.push(format!("connection {} task failed: {err}", index + 1)),
            Err(_) => {
                abort.abort();
                extra.push(format!("connection {} did not stop in time", index + 1));
            }
        }
    }
    let info = queue::RunInfo {
        transport: target.transport().as_str().to_string(),
        command: config.command.name().to_string(),
        target: target.to_string(),
        connections: count,
        in_flight: config.in_flight,
        payload_bytes: config.payload_bytes,
        warmup: config.warmup,
        duration: config.duration,
    };
    let mut report = queue::build_report(info, &senders, &receivers, &extra);
    report.errors.disconnects += extra.len() as u64;
    Ok(report)
}
