//! Streaming one stored file to a connection in the order the official clients need
//! (official-clients.md §6.1): `beginstream` (empty `BeginStream`), one `stream` per
//! chunk, then the `downloadreply`, and ~200 ms after the reply was written,
//! `endstream`; all with `rid` = the download's id and `data` always present.
//!
//! Back-pressure: every chunk is a tracked push, and at most [`UNWRITTEN`] of them wait
//! in the connection's outbound queue; the next chunk is read from the store only when
//! the oldest was written. So a download holds at most `UNWRITTEN` chunks queued plus
//! the reader's batch, whatever the file's size, and a slow client slows the reads.

use std::collections::VecDeque;
use std::time::Duration;

use prost::Name;
use tokio::sync::oneshot;

use super::FileReader;
use crate::connections::{ConnectionHandle, PushTracked};
use crate::error::OpenCoreError;
use crate::proto::{BeginStream, DownloadResponse, EndStream, Envelope, Stream};
use crate::protocol::envelope::{pack, reply};

/// Chunks pushed to the connection and not yet written, at most.
pub const UNWRITTEN: usize = 4;
/// Largest `stream` payload: chunks of files written elsewhere with a larger
/// `chunkSize` are split, so every envelope stays under gRPC clients' 4 MiB limit.
pub const MAX_PIECE: usize = 1024 * 1024;
/// The pause between the written `downloadreply` and `endstream` (Rust client race).
pub const END_DELAY: Duration = Duration::from_millis(200);

fn stream_envelope<M: prost::Message + Name>(command: &str, rid: &str, message: &M) -> Envelope {
    Envelope {
        command: command.to_string(),
        rid: rid.to_string(),
        data: Some(pack(message)),
        ..Default::default()
    }
}

/// Pushes an envelope; the receiver learns when it was written (`Err` when the
/// connection closed first).
fn push_tracked(connection: &ConnectionHandle, envelope: Envelope) -> oneshot::Receiver<bool> {
    let (written, receipt) = oneshot::channel();
    connection
        .tracked_pusher()
        .do_send(PushTracked { envelope, written });
    receipt
}

/// Streams `reader`'s chunks and then the reply to `response`. Returns once the reply
/// was written; the caller sends `endstream` after [`END_DELAY`] (see [`end_stream`]).
/// `Err(ConnectionClosed)` when the client went away mid-way (nothing more to send).
pub async fn stream_file(
    connection: &ConnectionHandle,
    rid: &str,
    mut reader: FileReader,
    response: &DownloadResponse,
) -> Result<(), OpenCoreError> {
    // The first chunk is read before anything is sent: a file whose content is gone
    // is a plain error reply, without a stream the client would have to abandon.
    let mut next = reader.next_chunk().await?;
    let begin = stream_envelope("beginstream", rid, &BeginStream::default());
    let mut waiting = VecDeque::with_capacity(UNWRITTEN + 1);
    waiting.push_back(push_tracked(connection, begin));
    while let Some(mut chunk) = next.take() {
        loop {
            while waiting.len() >= UNWRITTEN {
                if let Some(receipt) = waiting.pop_front() {
                    receipt.await.map_err(|_| OpenCoreError::ConnectionClosed)?;
                }
            }
            let data = chunk.split_to(chunk.len().min(MAX_PIECE));
            let envelope = stream_envelope("stream", rid, &Stream { data });
            waiting.push_back(push_tracked(connection, envelope));
            if chunk.is_empty() {
                break;
            }
        }
        next = reader.next_chunk().await?;
    }
    let answer = reply("download", rid, response);
    waiting.push_back(push_tracked(connection, answer));
    // Everything before the reply is written once the reply is (one FIFO queue).
    if let Some(receipt) = waiting.pop_back() {
        receipt.await.map_err(|_| OpenCoreError::ConnectionClosed)?;
    }
    Ok(())
}

/// Sends `endstream` after [`END_DELAY`], in the background.
pub fn end_stream(connection: ConnectionHandle, rid: String) {
    actix::spawn(async move {
        tokio::time::sleep(END_DELAY).await;
        connection.push(stream_envelope("endstream", &rid, &EndStream::default()));
    });
}
