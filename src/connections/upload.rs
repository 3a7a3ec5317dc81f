//! The path of one upload's stream envelopes from its connection to its stream actor.
//!
//! When a connection reads an `upload` request it opens an [`upload_channel`] at once,
//! before it reads the next envelope (the clients send `beginstream`, `stream`… and
//! `endstream` with `rid` = the upload's id right behind the request). It keeps the
//! [`UploadRoute`] under the upload's id and routes every such envelope into it; the
//! [`UploadInbox`] travels with the dispatched request to the `upload` command, which
//! hands it to the upload's stream actor.
//!
//! Back-pressure: the channel itself is unbounded, but the route counts the bytes it
//! holds. Past [`PAUSE_ABOVE`] the connection stops reading its transport until the
//! stream actor has written enough of them to the store ([`UploadRoute::drained`]), so
//! a client that sends faster than the store writes is slowed down by TCP/HTTP2 flow
//! control instead of filling memory. At most `PAUSE_ABOVE` plus what one transport
//! read (or one reorder-window release) carries waits per upload.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, Notify};

/// Uploads one connection may stream at once.
pub const MAX_UPLOADS_PER_CONNECTION: usize = 16;

/// Bytes waiting for the store above which the connection stops reading.
pub const PAUSE_ABOVE: usize = 8 * 1024 * 1024;
/// Reading resumes once no more than this waits.
pub const RESUME_BELOW: usize = 2 * 1024 * 1024;

/// One stream envelope of an upload, as the connection routed it.
#[derive(Debug)]
pub enum UploadPiece {
    /// `beginstream` (its `BeginStream` carries nothing the server uses).
    Begin,
    /// `stream`: the next bytes of the file.
    Data(Bytes),
    /// `endstream`: the file is complete.
    End,
}

struct Shared {
    /// Bytes of `Data` pieces sent and not yet taken by the stream actor.
    queued: AtomicUsize,
    /// Signalled whenever the actor took bytes or let go of its inbox.
    drained: Notify,
}

/// The connection's end.
pub struct UploadRoute {
    sender: mpsc::UnboundedSender<UploadPiece>,
    shared: Arc<Shared>,
}

/// The stream actor's end. Dropping it tells the connection to stop routing (its next
/// piece for this upload is dropped) and wakes a paused connection.
pub struct UploadInbox {
    receiver: mpsc::UnboundedReceiver<UploadPiece>,
    shared: Arc<Shared>,
}

pub fn upload_channel() -> (UploadRoute, UploadInbox) {
    let (sender, receiver) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        queued: AtomicUsize::new(0),
        drained: Notify::new(),
    });
    (
        UploadRoute {
            sender,
            shared: shared.clone(),
        },
        UploadInbox { receiver, shared },
    )
}

impl UploadRoute {
    /// Routes one piece; `false` when the inbox is gone (upload ended or refused).
    pub fn send(&self, piece: UploadPiece) -> bool {
        let size = match &piece {
            UploadPiece::Data(bytes) => bytes.len(),
            _ => 0,
        };
        self.shared.queued.fetch_add(size, Ordering::AcqRel);
        if self.sender.send(piece).is_err() {
            self.shared.queued.fetch_sub(size, Ordering::AcqRel);
            return false;
        }
        true
    }

    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// Bytes waiting for the stream actor.
    pub fn queued(&self) -> usize {
        self.shared.queued.load(Ordering::Acquire)
    }

    /// Whether the connection should stop reading until [`drained`](Self::drained).
    pub fn should_pause(&self) -> bool {
        self.queued() > PAUSE_ABOVE
    }

    /// Resolves once at most [`RESUME_BELOW`] bytes wait, or the inbox is gone.
    pub fn drained(&self) -> impl std::future::Future<Output = ()> + 'static {
        let shared = self.shared.clone();
        let sender = self.sender.clone();
        async move {
            loop {
                let notified = shared.drained.notified();
                if shared.queued.load(Ordering::Acquire) <= RESUME_BELOW || sender.is_closed() {
                    return;
                }
                notified.await;
            }
        }
    }
}

impl UploadInbox {
    /// The next piece; `None` when the connection dropped the route (closed).
    pub async fn recv(&mut self) -> Option<UploadPiece> {
        self.receiver.recv().await
    }

    /// The actor wrote (or dropped) `bytes` of a piece it received: they no longer
    /// count against the connection's pause threshold.
    pub fn release(&self, bytes: usize) {
        self.shared.queued.fetch_sub(bytes, Ordering::AcqRel);
        self.shared.drained.notify_one();
    }
}

impl Drop for UploadInbox {
    fn drop(&mut self) {
        self.receiver.close();
        self.shared.drained.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pauses_past_the_threshold_and_resumes_when_drained() {
        let (route, mut inbox) = upload_channel();
        let big = Bytes::from(vec![0u8; PAUSE_ABOVE / 2 + 1]);
        assert!(route.send(UploadPiece::Begin));
        assert!(route.send(UploadPiece::Data(big.clone())));
        assert!(!route.should_pause());
        assert!(route.send(UploadPiece::Data(big.clone())));
        assert!(route.should_pause());
        let drained = tokio::spawn(route.drained());
        assert!(matches!(inbox.recv().await, Some(UploadPiece::Begin)));
        for _ in 0..2 {
            match inbox.recv().await {
                Some(UploadPiece::Data(bytes)) => inbox.release(bytes.len()),
                other => panic!("expected data, got {other:?}"),
            }
        }
        tokio::time::timeout(std::time::Duration::from_secs(5), drained)
            .await
            .expect("drained resolves")
            .expect("task");
        assert_eq!(route.queued(), 0);
    }

    #[tokio::test]
    async fn a_dropped_inbox_closes_the_route_and_wakes_the_connection() {
        let (route, inbox) = upload_channel();
        assert!(route.send(UploadPiece::Data(Bytes::from(vec![0u8; PAUSE_ABOVE + 1]))));
        let drained = tokio::spawn(route.drained());
        drop(inbox);
        tokio::time::timeout(std::time::Duration::from_secs(5), drained)
            .await
            .expect("drained resolves")
            .expect("task");
        assert!(route.is_closed());
        assert!(!route.send(UploadPiece::End));
    }
}
