//! `timeout` replies: a message with a `reply_to` that expired unconsumed (a dead
//! letter from the bus) or that no queue took gets an answer on `reply_to` with its
//! `correlationId` and an empty `replyto`, which is how every official client
//! recognises the end of an RPC.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::body;
use super::QueueCounters;
use crate::bus::{DeadLetter, OutgoingMessage, SharedBus, Target};

/// How long a timeout reply waits in the requester's queue.
const REPLY_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// Sends the timeout reply for one message (fire and forget: nobody waits for it).
pub fn reply(
    bus: &SharedBus,
    counters: &Arc<QueueCounters>,
    reply_to: String,
    correlation_id: String,
    original: &[u8],
) {
    let to = reply_to.clone();
    let message = OutgoingMessage {
        target: Target::Queue(reply_to),
        body: body::timeout(original),
        correlation_id,
        reply_to: String::new(),
        priority: 1,
        expiration: REPLY_TTL,
        headers: Vec::new(),
    };
    let bus = bus.clone();
    counters.timeouts.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(async move {
        if let Err(err) = bus.publish(message).await {
            tracing::debug!(%to, %err, "could not send a timeout reply");
        }
    });
}

/// Answers the bus's dead letters until the bus stops reporting them.
pub fn spawn_dead_letter_replies(
    bus: SharedBus,
    counters: Arc<QueueCounters>,
    mut dead_letters: mpsc::Receiver<DeadLetter>,
) {
    tokio::spawn(async move {
        while let Some(dead) = dead_letters.recv().await {
            if dead.reply_to.is_empty() {
                continue;
            }
            tracing::debug!(queue = %dead.queue, reply_to = %dead.reply_to, "message expired: timeout reply");
            reply(
                &bus,
                &counters,
                dead.reply_to,
                dead.correlation_id,
                &dead.body,
            );
        }
    });
}
