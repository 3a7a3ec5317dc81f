//! Length-prefixed framing used by the WebSocket, TCP and unix-socket transports:
//! a 4-byte little-endian length followed by that many bytes of an encoded `Envelope`.
//! Input is a byte stream: frame boundaries of the carrier (WebSocket messages,
//! TCP segments) mean nothing.

use bytes::{Buf, BufMut, Bytes, BytesMut};

pub const LENGTH_PREFIX: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("zero-length frame")]
    Empty,
}

/// Buffer capacity an idle decoder or writer may keep after a large frame.
pub const RETAINED_CAPACITY: usize = 64 * 1024;

/// Accumulates bytes and cuts complete frames out of them.
#[derive(Debug)]
pub struct FrameDecoder {
    buffer: BytesMut,
    max_frame: usize,
}

impl FrameDecoder {
    pub fn new(max_frame: usize) -> Self {
        FrameDecoder {
            // Allocated by the first bytes: most connections are idle most of the time.
            buffer: BytesMut::new(),
            max_frame,
        }
    }

    /// A new limit for the frames that follow (a connection's limit grows once it signs
    /// in). A frame whose prefix was already accepted keeps the limit it was checked against.
    pub fn set_max_frame(&mut self, max_frame: usize) {
        self.max_frame = max_frame;
    }

    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    pub fn extend(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// Bytes received but not yet part of a complete frame.
    pub fn pending(&self) -> usize {
        self.buffer.len()
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed. An oversized or
    /// empty length is reported as soon as the prefix arrives, before the body is buffered.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        if self.buffer.len() < LENGTH_PREFIX {
            return Ok(None);
        }
        let mut prefix = [0u8; LENGTH_PREFIX];
        prefix.copy_from_slice(&self.buffer[..LENGTH_PREFIX]);
        let size = u32::from_le_bytes(prefix) as usize;
        if size == 0 {
            return Err(FrameError::Empty);
        }
        if size > self.max_frame {
            return Err(FrameError::TooLarge {
                size,
                limit: self.max_frame,
            });
        }
        if self.buffer.len() < LENGTH_PREFIX + size {
            // Only now, with the length checked against the limit, room for the body.
            self.buffer
                .reserve(LENGTH_PREFIX + size - self.buffer.len());
            return Ok(None);
        }
        self.buffer.advance(LENGTH_PREFIX);
        let frame = self.buffer.split_to(size).freeze();
        if self.buffer.is_empty() && self.buffer.capacity() > RETAINED_CAPACITY {
            // Do not keep a large frame's allocation alive for an idle connection.
            self.buffer = BytesMut::new();
        }
        Ok(Some(frame))
    }
}

/// Appends one frame (prefix + body) to `out`.
pub fn encode_frame(body: &[u8], out: &mut BytesMut) {
    out.reserve(LENGTH_PREFIX + body.len());
    out.put_u32_le(body.len() as u32);
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_anywhere() {
        let mut wire = BytesMut::new();
        encode_frame(b"hello", &mut wire);
        encode_frame(b"world!", &mut wire);
        for cut in 0..wire.len() {
            let mut decoder = FrameDecoder::new(1024);
            decoder.extend(&wire[..cut]);
            let mut frames = Vec::new();
            while let Some(f) = decoder.next_frame().unwrap() {
                frames.push(f);
            }
            decoder.extend(&wire[cut..]);
            while let Some(f) = decoder.next_frame().unwrap() {
                frames.push(f);
            }
            assert_eq!(
                frames,
                vec![Bytes::from_static(b"hello"), Bytes::from_static(b"world!")]
            );
            assert_eq!(decoder.pending(), 0);
        }
    }

    #[test]
    fn an_idle_decoder_keeps_no_large_buffer() {
        let mut decoder = FrameDecoder::new(4 * 1024 * 1024);
        assert_eq!(
            decoder.buffer.capacity(),
            0,
            "nothing before the first bytes"
        );
        let mut wire = BytesMut::new();
        encode_frame(&vec![7u8; 1024 * 1024], &mut wire);
        decoder.extend(&wire);
        let frame = decoder.next_frame().unwrap().unwrap();
        assert_eq!(frame.len(), 1024 * 1024);
        assert!(decoder.buffer.capacity() <= RETAINED_CAPACITY);
        // Small frames keep their buffer (no allocation per frame).
        decoder.extend(&[2, 0, 0, 0, 1, 2, 2, 0, 0]);
        assert_eq!(&decoder.next_frame().unwrap().unwrap()[..], &[1, 2]);
        assert!(decoder.buffer.capacity() > 0);
    }

    #[test]
    fn oversized_prefix_is_refused_before_the_body() {
        let mut decoder = FrameDecoder::new(10);
        decoder.extend(&11u32.to_le_bytes());
        assert_eq!(
            decoder.next_frame(),
            Err(FrameError::TooLarge {
                size: 11,
                limit: 10
            })
        );
        let mut decoder = FrameDecoder::new(10);
        decoder.extend(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decoder.next_frame(),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn zero_length_is_an_error() {
        let mut decoder = FrameDecoder::new(10);
        decoder.extend(&0u32.to_le_bytes());
        assert_eq!(decoder.next_frame(), Err(FrameError::Empty));
    }

    #[test]
    fn a_refused_prefix_allocates_nothing_for_its_body() {
        let mut decoder = FrameDecoder::new(1024);
        decoder.extend(&(512 * 1024 * 1024u32).to_le_bytes());
        // Only the prefix itself was buffered.
        let before = decoder.buffer.capacity();
        assert!(before < 1024, "{before}");
        assert!(decoder.next_frame().is_err());
        assert_eq!(decoder.buffer.capacity(), before);
    }

    #[test]
    fn the_limit_can_grow() {
        let mut decoder = FrameDecoder::new(4);
        decoder.extend(&8u32.to_le_bytes());
        assert!(decoder.next_frame().is_err());
        let mut decoder = FrameDecoder::new(4);
        decoder.set_max_frame(8);
        let mut wire = BytesMut::new();
        encode_frame(b"12345678", &mut wire);
        decoder.extend(&wire);
        assert_eq!(decoder.next_frame().unwrap().unwrap().len(), 8);
    }
}
