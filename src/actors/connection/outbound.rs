//! Envelopes on their way to one client. The connection actor numbers and queues them;
//! a writer task on the same thread drains the queue in batches into the transport.
//! The queue's byte size is what the slow-client limit watches. Every write must make
//! progress within the write timeout, so a peer that stops reading releases its socket
//! and buffers instead of pinning them forever.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use prost::Message;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, Notify};

use crate::proto::Envelope;
use crate::protocol::frame::{encode_frame, RETAINED_CAPACITY};

/// Where a connection's envelopes go.
pub enum Sink {
    /// TCP and unix sockets: length-prefixed frames, many per write.
    Stream(Box<dyn AsyncWrite + Unpin>),
    /// WebSocket: each envelope as two binary messages, the 4-byte length and the body
    /// (the Python client reads the whole first message as the length).
    WebSocket(actix_ws::Session),
    /// gRPC: tonic encodes; `seq` is informational only.
    Grpc(mpsc::Sender<Result<Envelope, tonic::Status>>),
}

/// Told when its envelope reached the transport (queue deliveries wait for it).
pub type Written = tokio::sync::oneshot::Sender<bool>;

/// One queued envelope and, for tracked pushes, who waits for it to be written.
struct Queued {
    envelope: Envelope,
    written: Option<Written>,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Queued>,
    bytes: usize,
    next_seq: i32,
    closed: bool,
}

#[derive(Clone, Default)]
pub struct Outbound {
    state: Rc<RefCell<State>>,
    notify: Rc<Notify>,
}

impl Outbound {
    /// Numbers the envelope (the server's own 0,1,2,… per connection) and queues it.
    /// Returns the bytes now queued.
    /// `size` is the envelope's encoded length as measured by the caller (numbering adds
    /// at most a few bytes, which the queue accounts for).
    pub fn enqueue(&self, mut envelope: Envelope, size: usize, written: Option<Written>) -> usize {
        let mut state = self.state.borrow_mut();
        if state.closed {
            return state.bytes;
        }
        envelope.seq = state.next_seq;
        state.next_seq = state.next_seq.wrapping_add(1);
        if envelope.id.is_empty() {
            envelope.id = envelope.seq.to_string();
        }
        // 4-byte prefix, plus up to 16 bytes of seq and id added here.
        state.bytes += size + 20;
        state.queue.push_back(Queued { envelope, written });
        drop(state);
        self.notify.notify_one();
        self.queued_bytes()
    }

    pub fn queued_bytes(&self) -> usize {
        self.state.borrow().bytes
    }

    pub fn is_empty(&self) -> bool {
        self.state.borrow().queue.is_empty()
    }

    /// Drops everything queued (the connection is being closed for it).
    pub fn discard(&self) {
        let mut state = self.state.borrow_mut();
        state.queue.clear();
        state.bytes = 0;
        state.closed = true;
        drop(state);
        self.notify.notify_one();
    }

    /// No more envelopes; the writer flushes what is queued and closes the transport.
    pub fn close(&self) {
        self.state.borrow_mut().closed = true;
        self.notify.notify_one();
    }

    fn take_batch(&self) -> Option<Vec<Queued>> {
        let mut state = self.state.borrow_mut();
        if state.queue.is_empty() {
            return None;
        }
        state.bytes = 0;
        Some(state.queue.drain(..).collect())
    }

    fn is_closed(&self) -> bool {
        self.state.borrow().closed
    }

    /// The writer loop. Ends when the queue is closed and empty, or the transport fails,
    /// or one write makes no progress for `write_timeout` (zero: no timeout).
    pub async fn run_writer(self, mut sink: Sink, write_timeout: Duration) -> io::Result<()> {
        // Only stream sinks use it; grown by the first batch (idle connections hold none).
        let mut buffer = BytesMut::new();
        let deadline = Deadline(write_timeout);
        loop {
            match self.take_batch() {
                Some(batch) => write_batch(&mut sink, batch, &mut buffer, deadline).await?,
                None if self.is_closed() => break,
                None => self.notify.notified().await,
            }
        }
        deadline.run(close(sink)).await
    }
}

/// The longest one write may wait for the peer.
#[derive(Clone, Copy)]
struct Deadline(Duration);

impl Deadline {
    async fn run<T, E>(
        self,
        write: impl std::future::Future<Output = Result<T, E>>,
    ) -> io::Result<T> {
        let result = if self.0.is_zero() {
            write.await
        } else {
            tokio::time::timeout(self.0, write)
                .await
                .map_err(|_| timed_out(self.0))?
        };
        result.map_err(|_| closed())
    }
}

/// Writes a batch, then tells the tracked pushes in it that they were written (a
/// failed write drops their receipts: the connection is closing).
async fn write_batch(
    sink: &mut Sink,
    batch: Vec<Queued>,
    buffer: &mut BytesMut,
    deadline: Deadline,
) -> io::Result<()> {
    let mut receipts = Vec::new();
    let batch: Vec<Envelope> = batch
        .into_iter()
        .map(|queued| {
            receipts.extend(queued.written);
            queued.envelope
        })
        .collect();
    write_envelopes(sink, batch, buffer, deadline).await?;
    for written in receipts {
        let _ = written.send(true);
    }
    Ok(())
}

async fn write_envelopes(
    sink: &mut Sink,
    batch: Vec<Envelope>,
    buffer: &mut BytesMut,
    deadline: Deadline,
) -> io::Result<()> {
    match sink {
        Sink::Stream(writer) => {
            buffer.clear();
            for envelope in &batch {
                encode_frame(&envelope.encode_to_vec(), buffer);
            }
            drop(batch);
            // Each write must make progress in time; a large batch to a slow but
            // reading peer is fine.
            let mut written = 0;
            while written < buffer.len() {
                let n = deadline.run(writer.write(&buffer[written..])).await?;
                if n == 0 {
                    return Err(closed());
                }
                written += n;
            }
            if buffer.capacity() > RETAINED_CAPACITY {
                *buffer = BytesMut::new();
            }
            deadline.run(writer.flush()).await
        }
        Sink::WebSocket(session) => {
            for envelope in batch {
                let body = Bytes::from(envelope.encode_to_vec());
                let prefix = Bytes::copy_from_slice(&(body.len() as u32).to_le_bytes());
                deadline.run(session.binary(prefix)).await?;
                deadline.run(session.binary(body)).await?;
            }
            Ok(())
        }
        Sink::Grpc(sender) => {
            // The channel is small and tonic drains it only as HTTP/2 flow control allows.
            for envelope in batch {
                deadline.run(sender.send(Ok(envelope))).await?;
            }
            Ok(())
        }
    }
}

async fn close(sink: Sink) -> io::Result<()> {
    match sink {
        Sink::Stream(mut writer) => writer.shutdown().await,
        Sink::WebSocket(session) => session.close(None).await.map_err(|_| closed()),
        Sink::Grpc(sender) => {
            drop(sender);
            Ok(())
        }
    }
}

fn timed_out(after: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("peer accepted no data for {after:?} (write timeout)"),
    )
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "connection closed")
}
