//! Checks WebSocket frame lengths as their headers arrive. actix-ws buffers a whole
//! frame before it compares its length with the frame limit, so a client announcing a
//! huge frame could make the server buffer everything it sends. This guard sits between
//! the HTTP payload and actix-ws, reads each frame header (RFC 6455 §5.2) and fails the
//! stream as soon as a frame announces more than the connection's current limit. The
//! limit is shared with the connection actor, which raises it when the client signs in.

use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use actix_web::error::PayloadError;
use bytes::Bytes;
use futures_util::Stream;

/// The largest frame payload the connection accepts right now, and the frame that
/// broke it (announced size, limit) once one did.
#[derive(Debug, Clone, Default)]
pub struct FrameLimit {
    limit: Rc<Cell<usize>>,
    violation: Rc<Cell<Option<(usize, usize)>>>,
}

impl FrameLimit {
    pub fn new(limit: usize) -> Self {
        FrameLimit {
            limit: Rc::new(Cell::new(limit)),
            violation: Rc::new(Cell::new(None)),
        }
    }

    pub fn set(&self, limit: usize) {
        self.limit.set(limit);
    }

    pub fn get(&self) -> usize {
        self.limit.get()
    }

    pub fn violation(&self) -> Option<(usize, usize)> {
        self.violation.get()
    }
}

/// Where the guard is within the frame stream.
#[derive(Debug)]
enum State {
    /// Collecting a header: the bytes seen so far.
    Header { bytes: [u8; 14], have: usize },
    /// Passing through the rest of a payload.
    Payload { remaining: u64 },
}

pub struct FrameGuard<S> {
    inner: S,
    limit: FrameLimit,
    state: State,
    failed: bool,
}

impl<S> FrameGuard<S> {
    pub fn new(inner: S, limit: FrameLimit) -> Self {
        FrameGuard {
            inner,
            limit,
            state: State::Header {
                bytes: [0; 14],
                have: 0,
            },
            failed: false,
        }
    }

    /// Follows frame boundaries through one chunk; `Err` with the announced size when a
    /// frame is over the limit.
    fn inspect(&mut self, mut chunk: &[u8]) -> Result<(), usize> {
        while !chunk.is_empty() {
            match &mut self.state {
                State::Payload { remaining } => {
                    let take = (*remaining).min(chunk.len() as u64);
                    *remaining -= take;
                    chunk = &chunk[take as usize..];
                    if *remaining == 0 {
                        self.state = State::Header {
                            bytes: [0; 14],
                            have: 0,
                        };
                    }
                }
                State::Header { bytes, have } => {
                    bytes[*have] = chunk[0];
                    *have += 1;
                    chunk = &chunk[1..];
                    let Some((header_len, payload)) = header_size(&bytes[..*have]) else {
                        continue;
                    };
                    if *have < header_len {
                        continue;
                    }
                    let limit = self.limit.get() as u64;
                    if payload > limit {
                        return Err(usize::try_from(payload).unwrap_or(usize::MAX));
                    }
                    self.state = if payload == 0 {
                        State::Header {
                            bytes: [0; 14],
                            have: 0,
                        }
                    } else {
                        State::Payload { remaining: payload }
                    };
                }
            }
        }
        Ok(())
    }
}

/// (header length, payload length) once enough of the header is known.
fn header_size(header: &[u8]) -> Option<(usize, u64)> {
    if header.len() < 2 {
        return None;
    }
    let masked = header[1] & 0x80 != 0;
    let mask_len = if masked { 4 } else { 0 };
    match header[1] & 0x7f {
        126 => {
            if header.len() < 4 {
                return None;
            }
            let len = u16::from_be_bytes([header[2], header[3]]) as u64;
            Some((4 + mask_len, len))
        }
        127 => {
            if header.len() < 10 {
                return None;
            }
            let mut len = [0u8; 8];
            len.copy_from_slice(&header[2..10]);
            Some((10 + mask_len, u64::from_be_bytes(len)))
        }
        len => Some((2 + mask_len, len as u64)),
    }
}

impl<S> Stream for FrameGuard<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.failed {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => match self.inspect(&chunk) {
                Ok(()) => Poll::Ready(Some(Ok(chunk))),
                Err(size) => {
                    self.failed = true;
                    let limit = self.limit.get();
                    self.limit.violation.set(Some((size, limit)));
                    Poll::Ready(Some(Err(PayloadError::Overflow)))
                }
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    fn frame_header(len: u64) -> Vec<u8> {
        let mut out = vec![0x82];
        if len < 126 {
            out.push(0x80 | len as u8);
        } else if len <= u16::MAX as u64 {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&len.to_be_bytes());
        }
        out.extend_from_slice(&[1, 2, 3, 4]);
        out
    }

    fn run(chunks: Vec<Vec<u8>>, limit: usize) -> (usize, bool, FrameLimit) {
        let limit = FrameLimit::new(limit);
        let stream = futures_util::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, PayloadError>(Bytes::from(c))),
        );
        let mut guard = FrameGuard::new(stream, limit.clone());
        let mut passed = 0;
        let mut failed = false;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            while let Some(item) = guard.next().await {
                match item {
                    Ok(bytes) => passed += bytes.len(),
                    Err(_) => failed = true,
                }
            }
        });
        (passed, failed, limit)
    }

    #[test]
    fn frames_within_the_limit_pass_whatever_the_chunking() {
        let mut wire = Vec::new();
        for len in [0u64, 5, 125, 126, 300, 70_000] {
            wire.extend(frame_header(len));
            wire.extend(std::iter::repeat_n(7u8, len as usize));
        }
        for cut in [1, 2, 3, 7, 100, 65_536] {
            let chunks: Vec<Vec<u8>> = wire.chunks(cut).map(<[u8]>::to_vec).collect();
            let (passed, failed, _) = run(chunks, 70_000);
            assert!(!failed, "cut {cut}");
            assert_eq!(passed, wire.len());
        }
    }

    #[test]
    fn an_announced_oversized_frame_fails_before_its_payload() {
        let (passed, failed, limit) = run(vec![frame_header(1 << 40)], 1024);
        assert!(failed);
        assert_eq!(passed, 0);
        assert_eq!(limit.violation(), Some((1 << 40, 1024)));
    }
}
