//! Envelopes on their way to one client. The connection actor numbers and queues them;
//! a writer task on the same thread drains the queue in batches into the transport.
//! The queue's byte size is what the slow-client limit watches.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use prost::Message;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, Notify};

use crate::proto::Envelope;
use crate::protocol::frame::encode_frame;

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

#[derive(Default)]
struct State {
    queue: VecDeque<Envelope>,
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
    pub fn enqueue(&self, mut envelope: Envelope, size: usize) -> usize {
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
        state.queue.push_back(envelope);
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

    /// No more envelopes; the writer flushes what is queued and closes the transport.
    pub fn close(&self) {
        self.state.borrow_mut().closed = true;
        self.notify.notify_one();
    }

    fn take_batch(&self) -> Option<Vec<Envelope>> {
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

    /// The writer loop. Ends when the queue is closed and empty, or the transport fails.
    pub async fn run_writer(self, mut sink: Sink) -> io::Result<()> {
        let mut buffer = BytesMut::with_capacity(16 * 1024);
        loop {
            match self.take_batch() {
                Some(batch) => write_batch(&mut sink, batch, &mut buffer).await?,
                None if self.is_closed() => break,
                None => self.notify.notified().await,
            }
        }
        close(sink).await
    }
}

async fn write_batch(
    sink: &mut Sink,
    batch: Vec<Envelope>,
    buffer: &mut BytesMut,
) -> io::Result<()> {
    match sink {
        Sink::Stream(writer) => {
            buffer.clear();
            for envelope in &batch {
                encode_frame(&envelope.encode_to_vec(), buffer);
            }
            writer.write_all(buffer).await?;
            writer.flush().await
        }
        Sink::WebSocket(session) => {
            for envelope in batch {
                let body = Bytes::from(envelope.encode_to_vec());
                let prefix = Bytes::copy_from_slice(&(body.len() as u32).to_le_bytes());
                session.binary(prefix).await.map_err(|_| closed())?;
                session.binary(body).await.map_err(|_| closed())?;
            }
            Ok(())
        }
        Sink::Grpc(sender) => {
            for envelope in batch {
                sender.send(Ok(envelope)).await.map_err(|_| closed())?;
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

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "connection closed")
}
