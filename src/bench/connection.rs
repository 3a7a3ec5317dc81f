//! The per-connection event loop, shared by every transport: one task that reads
//! whatever replies have arrived, tops the pipeline back up to K and writes all new
//! requests at once. Every wait is bounded, so a connection always ends by itself.

use std::future::Future;
use std::time::{Duration, Instant};

use super::pipeline::{Outbox, Pipeline};
use super::stats::ConnStats;
use super::wire::Head;
use crate::proto::Envelope;

/// How often outstanding requests are checked for timeouts.
const TICK: Duration = Duration::from_millis(250);
/// How long closing a connection may take at the end.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// A connected client transport. `push` only buffers; `flush` writes everything
/// buffered in as few writes as the transport allows.
pub trait Transport: Outbox + Send + Sized + 'static {
    /// Waits for inbound data and takes in everything already available.
    /// Must be cancel-safe: it runs inside `select!`.
    fn receive(&mut self) -> impl Future<Output = Result<(), String>> + Send;
    /// The next complete inbound envelope among what `receive` took in.
    fn next_envelope(&mut self) -> Result<Option<Head>, String>;
    /// Writes every envelope pushed since the last flush.
    fn flush(&mut self) -> impl Future<Output = Result<(), String>> + Send;
    /// Closes the connection politely.
    fn close(self) -> impl Future<Output = ()> + Send;
}

async fn flush_bounded<T: Transport>(transport: &mut T, limit: Duration) -> Result<(), String> {
    match tokio::time::timeout(limit, transport.flush()).await {
        Ok(result) => result,
        Err(_) => Err(format!("write blocked for {limit:?}")),
    }
}

/// Signs in with envelope number 0 and waits for its reply.
pub async fn signin<T: Transport>(
    transport: &mut T,
    envelope: Envelope,
    limit: Duration,
) -> Result<(), String> {
    roundtrip(transport, envelope, 0, "signinreply", limit)
        .await
        .map(|_| ())
        .map_err(|err| format!("signin {err}"))
}

/// Sends `envelope` as envelope number `counter` and waits for its reply, which must
/// be `expected` (an `error` reply or anything else fails with its text).
pub async fn roundtrip<T: Transport>(
    transport: &mut T,
    mut envelope: Envelope,
    counter: u64,
    expected: &str,
    limit: Duration,
) -> Result<Head, String> {
    super::workload::number(&mut envelope, counter);
    let rid = counter.to_string();
    transport.push(&envelope);
    flush_bounded(transport, limit).await?;
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        while let Some(head) = transport.next_envelope()? {
            if head.rid[..] != *rid.as_bytes() {
                continue;
            }
            return match &head.command[..] {
                command if command == expected.as_bytes() => Ok(head),
                b"error" => Err(format!("failed: {}", head.error_text())),
                _ => Err(format!(
                    "answered with unexpected command '{}'",
                    head.command_str()
                )),
            };
        }
        match tokio::time::timeout_at(deadline, transport.receive()).await {
            Ok(result) => result.map_err(|err| format!("lost the connection: {err}"))?,
            Err(_) => return Err(format!("got no reply within {limit:?}")),
        }
    }
}

/// Runs the closed loop until the end of the schedule (or the connection's request
/// share is done, or the connection fails), then closes the connection.
pub async fn drive<T: Transport>(mut transport: T, mut pipeline: Pipeline) -> ConnStats {
    let schedule = *pipeline.schedule();
    let end = tokio::time::Instant::from_std(schedule.end);
    let ended = tokio::time::sleep_until(end);
    tokio::pin!(ended);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let mut failure = None;
    pipeline.fill(Instant::now(), &mut transport);
    if let Err(err) = flush_bounded(&mut transport, schedule.request_timeout).await {
        failure = Some(err);
    }
    while failure.is_none() {
        let received = tokio::select! {
            biased;
            _ = &mut ended => break,
            _ = tick.tick() => Ok(false),
            result = transport.receive() => result.map(|()| true),
        };
        let now = Instant::now();
        match received {
            Err(err) => {
                failure = Some(err);
                break;
            }
            Ok(true) => loop {
                match transport.next_envelope() {
                    Ok(Some(head)) => pipeline.on_envelope(now, &head, &mut transport),
                    Ok(None) => break,
                    Err(err) => {
                        failure = Some(err);
                        break;
                    }
                }
            },
            Ok(false) => pipeline.expire(now),
        }
        if failure.is_some() {
            break;
        }
        pipeline.fill(now, &mut transport);
        // A write blocked by the server may delay the end by CLOSE_GRACE at most.
        let limit = schedule
            .request_timeout
            .min(schedule.end.saturating_duration_since(now) + CLOSE_GRACE);
        if let Err(err) = flush_bounded(&mut transport, limit).await {
            failure = Some(err);
            break;
        }
        if pipeline.finished(now) {
            break;
        }
    }
    let now = Instant::now();
    pipeline.expire(now);
    if let Some(reason) = failure {
        // A failure after the end is the server closing on us while we stop: not an error.
        if now < schedule.end {
            pipeline.disconnected(now, &reason);
        }
    }
    let _ = tokio::time::timeout(CLOSE_GRACE, transport.close()).await;
    pipeline.into_stats()
}
