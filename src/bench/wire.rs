//! Reading inbound envelopes cheaply: only the fields the bench looks at, as
//! zero-copy slices of the received frame.

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;

use crate::proto::{Envelope, ErrorResponse};
use crate::protocol::frame::{FrameDecoder, LENGTH_PREFIX};

/// The head of an `openiap.Envelope`: same field numbers, every field kept as raw
/// bytes (strings are not validated, `data` stays the encoded `Any`). Decoding from a
/// `Bytes` frame copies nothing.
#[derive(Clone, PartialEq, Message)]
pub struct Head {
    #[prost(bytes = "bytes", tag = "1")]
    pub command: Bytes,
    #[prost(bytes = "bytes", tag = "4")]
    pub id: Bytes,
    #[prost(bytes = "bytes", tag = "5")]
    pub rid: Bytes,
    /// The encoded `google.protobuf.Any`.
    #[prost(bytes = "bytes", tag = "6")]
    pub data: Bytes,
}

impl Head {
    /// From an envelope tonic already decoded (gRPC).
    pub fn from_envelope(envelope: Envelope) -> Head {
        Head {
            command: Bytes::from(envelope.command.into_bytes()),
            id: Bytes::from(envelope.id.into_bytes()),
            rid: Bytes::from(envelope.rid.into_bytes()),
            data: envelope
                .data
                .map(|any| Bytes::from(any.encode_to_vec()))
                .unwrap_or_default(),
        }
    }

    pub fn command_str(&self) -> &str {
        std::str::from_utf8(&self.command).unwrap_or("<invalid utf-8>")
    }

    /// The payload, decoded as `M` (rare paths only: errors, sign-in replies).
    pub fn payload<M: Message + Default>(&self) -> Result<M, prost::DecodeError> {
        let any = prost_types::Any::decode(self.data.clone())?;
        M::decode(any.value.as_slice())
    }

    /// `ErrorResponse.message` (and code) of an `error` envelope, for messages to the user.
    pub fn error_text(&self) -> String {
        match self.payload::<ErrorResponse>() {
            Ok(error) if error.code != 0 => format!("{} (code {})", error.message, error.code),
            Ok(error) => error.message,
            Err(err) => format!("undecodable ErrorResponse: {err}"),
        }
    }
}

/// The next complete envelope head buffered in `decoder` (stream transports).
pub fn next_head(decoder: &mut FrameDecoder) -> Result<Option<Head>, String> {
    match decoder.next_frame() {
        Ok(Some(frame)) => Head::decode(frame)
            .map(Some)
            .map_err(|err| format!("undecodable envelope: {err}")),
        Ok(None) => Ok(None),
        Err(err) => Err(format!("bad frame from the server: {err}")),
    }
}

/// Parses a decimal request id (the bench's ids are plain counters).
pub fn parse_id(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > 19 {
        return None;
    }
    let mut value: u64 = 0;
    for &b in bytes {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value * 10 + u64::from(b - b'0');
    }
    Some(value)
}

/// Appends one length-prefixed frame holding `envelope` to `out`, encoding straight
/// into the buffer (no intermediate allocation).
pub fn encode_frame(envelope: &Envelope, out: &mut BytesMut) {
    let len = envelope.encoded_len();
    out.reserve(LENGTH_PREFIX + len);
    out.put_u32_le(len as u32);
    // Cannot fail: a BytesMut grows as needed.
    let _ = envelope.encode(out);
}
