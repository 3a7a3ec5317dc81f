//! Target 1: the byte stream of a WebSocket/TCP/unix connection. Frames are cut out of
//! the stream (fed in fuzzer-chosen chunks), each frame is decoded as an `Envelope`,
//! and its payload is unpacked as the request type its command names, exactly as the
//! connection actor and the command dispatcher do.
//!
//! Properties: cutting frames does not depend on how the stream is chunked; every
//! frame is re-encoded to the bytes it came from; a decoded envelope survives an
//! encode/decode round trip; nothing panics.

use bytes::{Bytes, BytesMut};
use opencore::proto::{self, Envelope};
use opencore::protocol::envelope::{error_reply, reply_command, unpack};
use opencore::protocol::frame::{encode_frame, FrameDecoder, FrameError};
use prost::Message;

/// Input layout: byte 0 picks the frame limit, byte 1 the chunk size pattern, the rest
/// is the stream.
pub fn run(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let max_frame = 1usize << (data[0] % 21); // 1 B .. 1 MiB
    let chunk_seed = usize::from(data[1]);
    let stream = &data[2..];

    let whole = cut_frames(max_frame, &[stream]);
    let chunks = chunked(stream, chunk_seed);
    let piecewise = cut_frames(max_frame, &chunks);
    assert_eq!(
        whole, piecewise,
        "frames depend on how the stream was chunked"
    );

    let mut reencoded = BytesMut::new();
    for frame in &whole.0 {
        encode_frame(frame, &mut reencoded);
        decode_envelope(frame.clone());
    }
    assert_eq!(
        &reencoded[..],
        &stream[..reencoded.len()],
        "a frame did not re-encode to its own bytes"
    );
}

/// Frames in order, then how cutting stopped (`None`: needs more bytes).
type Cut = (Vec<Bytes>, Option<FrameError>);

fn cut_frames(max_frame: usize, chunks: &[&[u8]]) -> Cut {
    let mut decoder = FrameDecoder::new(max_frame);
    let mut frames = Vec::new();
    for chunk in chunks {
        decoder.extend(chunk);
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => {
                    assert!(frame.len() <= max_frame, "frame above the limit");
                    frames.push(frame);
                }
                Ok(None) => break,
                // The connection closes on the first error.
                Err(err) => return (frames, Some(err)),
            }
        }
    }
    (frames, None)
}

/// Splits the stream into chunks of 1..=64 bytes in a pattern derived from `seed`.
fn chunked(stream: &[u8], seed: usize) -> Vec<&[u8]> {
    let mut chunks = Vec::new();
    let mut rest = stream;
    let mut state = seed.wrapping_mul(2654435761) | 1;
    while !rest.is_empty() {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let size = (state >> 33) % 64 + 1;
        let (head, tail) = rest.split_at(size.min(rest.len()));
        chunks.push(head);
        rest = tail;
    }
    chunks
}

fn decode_envelope(frame: Bytes) {
    let Ok(mut envelope) = Envelope::decode(frame) else {
        return;
    };
    let again =
        Envelope::decode(envelope.encode_to_vec().as_slice()).expect("an encoded envelope decodes");
    assert_eq!(again, envelope, "envelope round trip changed it");

    // What the connection actor does before dispatch.
    envelope.command = envelope.command.to_ascii_lowercase();
    let _ = reply_command(&envelope.command);
    unpack_request(&envelope);
    let error = error_reply(
        &envelope.id,
        &opencore::error::OpenCoreError::UnknownCommand(envelope.command.clone()),
    );
    assert_eq!(error.rid, envelope.id);
}

/// Unpacks the payload as the request type of the command (what each command's
/// `ctx.request()` does); unknown commands try the most common request.
fn unpack_request(envelope: &Envelope) {
    macro_rules! as_request {
        ($($command:literal => $type:ty),* $(,)?) => {
            match envelope.command.as_str() {
                $($command => { let _ = unpack::<$type>(envelope, true); })*
                _ => { let _ = unpack::<proto::QueryRequest>(envelope, false); }
            }
        };
    }
    as_request! {
        "signin" => proto::SigninRequest,
        "getelement" => proto::GetElementRequest,
        "ping" => proto::PingRequest,
        "query" => proto::QueryRequest,
        "count" => proto::CountRequest,
        "distinct" => proto::DistinctRequest,
        "aggregate" => proto::AggregateRequest,
        "insertone" => proto::InsertOneRequest,
        "insertmany" => proto::InsertManyRequest,
        "updateone" => proto::UpdateOneRequest,
        "updatedocument" => proto::UpdateDocumentRequest,
        "insertorupdateone" => proto::InsertOrUpdateOneRequest,
        "insertorupdatemany" => proto::InsertOrUpdateManyRequest,
        "deleteone" => proto::DeleteOneRequest,
        "deletemany" => proto::DeleteManyRequest,
        "getdocumentversion" => proto::GetDocumentVersionRequest,
        "listcollections" => proto::ListCollectionsRequest,
        "createcollection" => proto::CreateCollectionRequest,
        "dropcollection" => proto::DropCollectionRequest,
        "createindex" => proto::CreateIndexRequest,
        "getindexes" => proto::GetIndexesRequest,
        "dropindex" => proto::DropIndexRequest,
    }
}
