//! `opencore bench --command amqp-baseline --amqp-url URL`: the queue ring of
//! `--command queuemessage` straight on RabbitMQ with lapin, no opencore in between,
//! to see what the broker alone gives on this machine.
//!
//! C clients; client i owns an exclusive, auto-delete queue declared like opencore
//! declares temporary queues (`x-max-priority: 3`, `x-dead-letter-exchange:
//! openflow-dlx`, the fanout exchange declared first) and consumes it on its own
//! channel with prefetch 25, acking every delivery. Client i publishes to client
//! (i+1) % C's queue on a channel in confirm mode, keeping K publishes awaiting their
//! confirms: mandatory, delivery mode 2 (persistent), priority `--priority`,
//! expiration `--message-expiration`. The bodies, metrics and loss accounting are
//! those of `queue.rs` (a "confirm" stands where opencore has a `queuemessagereply`).
//! The clients share `--amqp-connections` AMQP connections (default 1, as a server
//! would), round-robin.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer, ExchangeKind};

use super::queue::{
    self, body, Ack, Clock, Progress, QueueReport, ReceiverLog, RunInfo, SenderLog, Stamp,
};
use super::{budget_share, BenchConfig};

/// The dead-letter exchange opencore declares (fanout) and names on its queues.
pub const DLX: &str = "openflow-dlx";
/// Prefetch of every consumer, as opencore's `queue_prefetch` default.
pub const PREFETCH: u16 = 25;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The arguments opencore gives its queues.
pub fn queue_arguments() -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert("x-max-priority".into(), AMQPValue::LongInt(3));
    arguments.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(DLX.into()),
    );
    arguments
}

/// The URL without its password, for messages and the report.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

struct Client {
    index: usize,
    queue: String,
    consumer: Consumer,
    /// The channel the consumer runs on.
    consuming: Channel,
    publisher: Channel,
}

pub async fn execute(config: &BenchConfig, url: &str) -> Result<QueueReport, String> {
    let count = config.connections;
    let shown = redact(url);
    let connections = config.amqp_connections.clamp(1, count);
    let mut amqp = Vec::with_capacity(connections);
    for _ in 0..connections {
        let connecting = Connection::connect(url, ConnectionProperties::default());
        let connection = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| format!("could not connect to {shown} within {CONNECT_TIMEOUT:?}"))?
            .map_err(|err| format!("could not connect to {shown}: {err}"))?;
        amqp.push(connection);
    }
    let result = run_ring(config, &amqp, &shown).await;
    for connection in &amqp {
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            connection.close(200, "bench done".into()),
        )
        .await;
    }
    result
}

async fn declare_dlx(connection: &Connection) -> Result<(), String> {
    let channel = connection
        .create_channel()
        .await
        .map_err(|err| format!("could not open a channel: {err}"))?;
    let declared = channel
        .exchange_declare(
            DLX.into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await;
    if let Err(err) = declared {
        // It exists with other flags (e.g. declared durable by someone else): fine,
        // as long as it exists. The failed declare closed that channel.
        let channel = connection
            .create_channel()
            .await
            .map_err(|err| format!("could not open a channel: {err}"))?;
        channel
            .exchange_declare(
                DLX.into(),
                ExchangeKind::Fanout,
                ExchangeDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|passive| {
                format!("could not declare the exchange {DLX}: {err} (passive: {passive})")
            })?;
        let _ = channel.close(200, "ok".into()).await;
        return Ok(());
    }
    let _ = channel.close(200, "ok".into()).await;
    Ok(())
}

async fn open_client(index: usize, connection: &Connection, run: &str) -> Result<Client, String> {
    let what =
        |step: &str, err: lapin::Error| format!("client {}: {step} failed: {err}", index + 1);
    let consuming = connection
        .create_channel()
        .await
        .map_err(|err| what("create_channel", err))?;
    consuming
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await
        .map_err(|err| what("basic.qos", err))?;
    let name = format!("amqpbench.{run}.{index}");
    let declared = consuming
        .queue_declare(
            name.as_str().into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            queue_arguments(),
        )
        .await
        .map_err(|err| what("queue.declare", err))?;
    let queue = declared.name().as_str().to_string();
    let consumer = consuming
        .basic_consume(
            queue.as_str().into(),
            format!("amqpbench-{index}").into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|err| what("basic.consume", err))?;
    let publisher = connection
        .create_channel()
        .await
        .map_err(|err| what("create_channel", err))?;
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|err| what("confirm.select", err))?;
    Ok(Client {
        index,
        queue,
        consumer,
        consuming,
        publisher,
    })
}

/// Settings the tasks share.
struct Shared {
    clock: Clock,
    progress: Progress,
    in_flight: usize,
    priority: u8,
    payload_bytes: usize,
    expiration: String,
    max_backlog: u64,
}

async fn run_ring(
    config: &BenchConfig,
    amqp: &[Connection],
    shown: &str,
) -> Result<QueueReport, String> {
    let count = config.connections;
    declare_dlx(&amqp[0]).await?;
    let run = format!("{:08x}", rand::random::<u32>());
    let mut opening = Vec::with_capacity(count);
    for index in 0..count {
        opening.push(open_client(index, &amqp[index % amqp.len()], &run));
    }
    let mut clients = Vec::with_capacity(count);
    for opened in futures_util::future::join_all(opening).await {
        clients.push(opened?);
    }
    let queues: Vec<String> = clients.iter().map(|c| c.queue.clone()).collect();
    // Closed before the connections, so nothing is left mid-flight when they go.
    let channels: Vec<Channel> = clients
        .iter()
        .flat_map(|c| [c.publisher.clone(), c.consuming.clone()])
        .collect();

    let clock = Clock::new(
        Instant::now(),
        config.warmup,
        config.duration,
        config.drain,
        config.timeout,
    );
    let shared = Arc::new(Shared {
        clock,
        progress: Progress::new(count),
        in_flight: config.in_flight,
        priority: config.priority.clamp(0, 255) as u8,
        payload_bytes: config.payload_bytes,
        expiration: config.message_expiration.as_millis().to_string(),
        max_backlog: config.max_backlog,
    });
    let mut publishing = Vec::with_capacity(count);
    let mut consuming = Vec::with_capacity(count);
    for client in clients {
        let target = queues[queue::next(client.index, count)].clone();
        let budget = budget_share(config.max_requests, count, client.index);
        let shared_p = shared.clone();
        let (index, publisher) = (client.index, client.publisher);
        publishing.push(tokio::spawn(async move {
            publish(index, publisher, target, budget, shared_p).await
        }));
        let shared_c = shared.clone();
        let consumer = client.consumer;
        consuming.push(tokio::spawn(async move {
            consume(index, consumer, shared_c).await
        }));
    }
    let mut senders = Vec::with_capacity(count);
    let mut receivers = Vec::with_capacity(count);
    let mut extra = Vec::new();
    // Every task ends by itself by the end of the drain; the bound is a safety net.
    let deadline = tokio::time::Instant::from_std(clock.drain_until + config.timeout);
    for (index, handle) in publishing.into_iter().enumerate() {
        let abort = handle.abort_handle();
        match tokio::time::timeout_at(deadline, handle).await {
            Ok(Ok(log)) => senders.push(log),
            Ok(Err(err)) => extra.push(format!("publisher {} failed: {err}", index + 1)),
            Err(_) => {
                abort.abort();
                extra.push(format!("publisher {} did not stop in time", index + 1));
            }
        }
    }
    for (index, handle) in consuming.into_iter().enumerate() {
        let abort = handle.abort_handle();
        match tokio::time::timeout_at(deadline, handle).await {
            Ok(Ok(log)) => receivers.push(log),
            Ok(Err(err)) => extra.push(format!("consumer {} failed: {err}", index + 1)),
            Err(_) => {
                abort.abort();
                extra.push(format!("consumer {} did not stop in time", index + 1));
            }
        }
    }
    let closing = channels
        .iter()
        .map(|channel| channel.close(200, "bench done".into()));
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        futures_util::future::join_all(closing),
    )
    .await;
    let info = RunInfo {
        transport: "amqp".into(),
        command: "amqp-baseline".into(),
        target: shown.to_string(),
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

type Confirmed = (u64, Instant, Result<lapin::Confirmation, lapin::Error>);

/// Keeps K publishes awaiting confirms until the end (or the budget), then waits for
/// the confirms still outstanding.
async fn publish(
    index: usize,
    channel: Channel,
    target: String,
    mut budget: Option<u64>,
    shared: Arc<Shared>,
) -> SenderLog {
    let clock = shared.clock;
    let mut log = SenderLog::new(index);
    let mut pending = FuturesUnordered::new();
    let mut seq = 0u64;
    let mut failed = false;
    let properties = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_priority(shared.priority)
        .with_expiration(shared.expiration.as_str().into());
    let options = BasicPublishOptions {
        mandatory: true,
        ..Default::default()
    };
    loop {
        let now = Instant::now();
        let sending = !failed && now < clock.end && budget != Some(0);
        if sending {
            while pending.len() < shared.in_flight
                && (shared.max_backlog == 0
                    || shared.progress.backlog(index)
                        < shared.max_backlog + shared.in_flight as u64)
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
                let payload = body(stamp, shared.payload_bytes);
                let published = channel
                    .basic_publish(
                        "".into(),
                        target.as_str().into(),
                        options,
                        payload.as_bytes(),
                        properties.clone(),
                    )
                    .await;
                log.sent(seq);
                shared.progress.note_sent(index);
                match published {
                    Ok(confirm) => {
                        let this = seq;
                        pending.push(async move { (this, now, confirm.await) });
                    }
                    Err(err) => {
                        log.errors.disconnects += 1;
                        log.note_error(|| format!("client {} publish failed: {err}", index + 1));
                        failed = true;
                    }
                }
                seq += 1;
                if failed {
                    break;
                }
            }
        }
        if !sending && pending.is_empty() {
            if now < clock.end && now >= clock.measure_start && log.stopped_after.is_none() {
                log.stopped_after = Some(now.saturating_duration_since(clock.measure_start));
            }
            break;
        }
        if now >= clock.drain_until {
            break;
        }
        let wake = tokio::time::Instant::from_std((now + queue::POLL).min(clock.drain_until));
        let next: Option<Confirmed> = tokio::time::timeout_at(wake, pending.next())
            .await
            .unwrap_or_default();
        let now = Instant::now();
        if let Some(first) = next {
            confirmed(&mut log, first, now, &clock, &shared.progress, index);
            // Whatever else is already confirmed.
            while let Some(Some(more)) = futures_util::FutureExt::now_or_never(pending.next()) {
                confirmed(&mut log, more, now, &clock, &shared.progress, index);
            }
        }
        // Confirms never come for a channel that died; those stay "unanswered".
        // Late ones (past the request timeout) count as timeouts.
    }
    shared.progress.sender_done(index);
    log
}

fn confirmed(
    log: &mut SenderLog,
    (seq, sent_at, result): Confirmed,
    now: Instant,
    clock: &Clock,
    progress: &Progress,
    index: usize,
) {
    match result {
        Ok(confirmation) if confirmation.is_ack() => match confirmation.take_message() {
            None => {
                let late = now.saturating_duration_since(sent_at) >= clock.request_timeout;
                let outcome = if late { Ack::TimedOut } else { Ack::Acked };
                if log.answered(seq, outcome, sent_at, now, clock) && !late {
                    progress.note_acked(index);
                }
                if late {
                    log.errors.timeouts += 1;
                    log.note_error(|| {
                        format!("confirm after more than {:?}", clock.request_timeout)
                    });
                }
            }
            Some(returned) => {
                log.answered(seq, Ack::Failed, sent_at, now, clock);
                log.errors.replies += 1;
                log.note_error(|| {
                    format!(
                        "client {} message returned: {} {}",
                        index + 1,
                        returned.reply_code,
                        returned.reply_text
                    )
                });
            }
        },
        Ok(confirmation) => {
            log.answered(seq, Ack::Failed, sent_at, now, clock);
            log.errors.replies += 1;
            log.note_error(|| {
                format!(
                    "client {} publish not confirmed: {confirmation:?}",
                    index + 1
                )
            });
        }
        Err(err) => {
            log.answered(seq, Ack::Failed, sent_at, now, clock);
            log.errors.replies += 1;
            log.note_error(|| format!("client {} confirm failed: {err}", index + 1));
        }
    }
}

/// Receives and acks deliveries until everything the predecessor got confirmed has
/// arrived, or the drain runs out.
async fn consume(index: usize, mut consumer: Consumer, shared: Arc<Shared>) -> ReceiverLog {
    let clock = shared.clock;
    let mut log = ReceiverLog::new(index, shared.progress.count());
    loop {
        let now = Instant::now();
        if now >= clock.drain_until || (now >= clock.end && shared.progress.drained_into(index)) {
            break;
        }
        let wake = tokio::time::Instant::from_std((now + queue::POLL).min(clock.drain_until));
        let delivery = match tokio::time::timeout_at(wake, consumer.next()).await {
            Err(_) => continue,
            Ok(None) => {
                log.error = Some(format!("client {} consumer was cancelled", index + 1));
                break;
            }
            Ok(Some(Err(err))) => {
                log.error = Some(format!("client {} consumer failed: {err}", index + 1));
                break;
            }
            Ok(Some(Ok(delivery))) => delivery,
        };
        let now = Instant::now();
        let stamp = queue::parse_stamp(&delivery.data);
        if log.delivered(stamp, now, &clock) {
            shared.progress.note_delivered(log.sender);
        }
        if let Err(err) = delivery.ack(BasicAckOptions::default()).await {
            log.error = Some(format!("client {} basic.ack failed: {err}", index + 1));
            break;
        }
    }
    log
}
