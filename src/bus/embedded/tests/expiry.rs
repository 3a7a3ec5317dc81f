//! Message expiry: dead letters, deadlines kept across requeues, the timer's index.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc::error::TryRecvError;

use super::*;

/// Waits for the next dead letter (the timer thread sends it).
async fn dead_letter(receiver: &mut mpsc::Receiver<DeadLetter>) -> DeadLetter {
    tokio::time::timeout(Duration::from_secs(5), receiver.recv())
        .await
        .expect("a dead letter in time")
        .expect("channel open")
}

#[tokio::test]
async fn expired_messages_dead_letter_only_with_reply_to() {
    let bus = bus();
    let mut dead = bus.take_dead_letters().expect("first take");
    assert!(bus.take_dead_letters().is_none());
    drop(consume(&bus, "q", QueueKind::Named, 1).await);
    let mut silent = to_queue("q", "silent");
    silent.expiration = Duration::from_millis(50);
    send(&bus, silent).await;
    let mut answered = to_queue("q", "answered");
    answered.expiration = Duration::from_millis(100);
    answered.reply_to = "caller".into();
    let published = Instant::now();
    send(&bus, answered).await;
    let mut stays = to_queue("q", "stays");
    stays.reply_to = "caller".into();
    send(&bus, stays).await;
    let letter = dead_letter(&mut dead).await;
    let elapsed = published.elapsed();
    assert_eq!(
        letter,
        DeadLetter {
            queue: "q".into(),
            correlation_id: "answered".into(),
            reply_to: "caller".into(),
            body: Bytes::from_static(b"answered"),
        }
    );
    assert!(elapsed >= Duration::from_millis(100), "{elapsed:?}");
    assert!(
        elapsed < Duration::from_millis(600),
        "expired late: {elapsed:?}"
    );
    assert_eq!(queue(&bus, "q").ready_len(), 1);
    assert_eq!(bus.held_bytes(), "stays".len());
    assert_eq!(dead.try_recv().err(), Some(TryRecvError::Empty));
}

#[tokio::test]
async fn delivered_messages_do_not_expire_but_requeued_keep_their_deadline() {
    let bus = bus();
    let mut dead = bus.take_dead_letters().expect("take");
    let mut consumer = consume(&bus, "q", QueueKind::Named, 2).await;
    for id in ["acked", "requeued"] {
        let mut outgoing = to_queue("q", id);
        outgoing.expiration = Duration::from_millis(100);
        outgoing.reply_to = "caller".into();
        send(&bus, outgoing).await;
    }
    let acked = got(&mut consumer);
    let requeued = got(&mut consumer);
    tokio::time::sleep(Duration::from_millis(250)).await;
    acked.ack();
    requeued.requeue();
    // Past its deadline: expired, not redelivered.
    nothing(&mut consumer);
    let letter = dead_letter(&mut dead).await;
    assert_eq!(letter.correlation_id, "requeued");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(dead.try_recv().err(), Some(TryRecvError::Empty));
    assert_eq!(bus.held_bytes(), 0);
}

#[tokio::test]
async fn zero_ttl_reaches_a_waiting_consumer_or_expires() {
    let bus = bus();
    let mut dead = bus.take_dead_letters().expect("take");
    let mut consumer = consume(&bus, "q", QueueKind::Named, 1).await;
    let instant = |id: &str| {
        let mut outgoing = to_queue("q", id);
        outgoing.expiration = Duration::ZERO;
        outgoing.reply_to = "caller".into();
        outgoing
    };
    send(&bus, instant("taken")).await;
    // The consumer has no credit left for this one.
    send(&bus, instant("expires")).await;
    let taken = got(&mut consumer);
    assert_eq!(taken.correlation_id, "taken");
    assert_eq!(dead_letter(&mut dead).await.correlation_id, "expires");
}

#[tokio::test]
async fn one_timer_entry_per_queue() {
    let bus = bus();
    drop(consume(&bus, "a", QueueKind::Named, 1).await);
    drop(consume(&bus, "b", QueueKind::Named, 1).await);
    for n in 0..1000u64 {
        let mut outgoing = to_queue(if n % 2 == 0 { "a" } else { "b" }, &n.to_string());
        outgoing.expiration = Duration::from_secs(60 + n);
        send(&bus, outgoing).await;
    }
    assert_eq!(bus.shared.timer.len(), 2);
    // An earlier deadline moves the queue's entry rather than adding one.
    let mut sooner = to_queue("a", "sooner");
    sooner.expiration = Duration::from_secs(1);
    send(&bus, sooner).await;
    assert_eq!(bus.shared.timer.len(), 2);
}
