//! Restores client send order on stream transports. Clients number envelopes 0,1,2,…;
//! a bounded window holds early arrivals until the gap is filled. The window is bounded
//! both in envelopes and in bytes (the connection's tier sets both).

use std::collections::BTreeMap;

use crate::proto::Envelope;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeqError {
    #[error("seq {seq} is lower than the expected {expected}")]
    Stale { seq: i32, expected: i32 },
    #[error("seq {0} was received twice")]
    Duplicate(i32),
    #[error("more than {0} envelopes waiting for a missing seq")]
    WindowFull(usize),
    #[error("more than {0} bytes of envelopes waiting for a missing seq")]
    WindowBytesFull(usize),
}

#[derive(Debug)]
pub struct SeqWindow {
    next: i32,
    /// Each envelope with its encoded size.
    waiting: BTreeMap<i32, (Envelope, usize)>,
    capacity: usize,
    max_bytes: usize,
    /// Bytes of the envelopes waiting for an earlier seq (not counting the next one).
    early_bytes: usize,
}

impl SeqWindow {
    pub fn new(capacity: usize, max_bytes: usize) -> Self {
        SeqWindow {
            next: 0,
            waiting: BTreeMap::new(),
            capacity,
            max_bytes,
            early_bytes: 0,
        }
    }

    /// New limits (after sign-in); what is already waiting stays.
    pub fn set_limits(&mut self, capacity: usize, max_bytes: usize) {
        self.capacity = capacity;
        self.max_bytes = max_bytes;
    }

    /// Accepts one envelope of `size` encoded bytes; in-order ones become available
    /// from `pop_ready`.
    pub fn accept(&mut self, envelope: Envelope, size: usize) -> Result<(), SeqError> {
        let seq = envelope.seq;
        if seq < self.next {
            return Err(SeqError::Stale {
                seq,
                expected: self.next,
            });
        }
        if self.waiting.contains_key(&seq) {
            return Err(SeqError::Duplicate(seq));
        }
        if seq != self.next {
            if self.waiting.len() >= self.capacity {
                return Err(SeqError::WindowFull(self.capacity));
            }
            if self.early_bytes.saturating_add(size) > self.max_bytes {
                return Err(SeqError::WindowBytesFull(self.max_bytes));
            }
            self.early_bytes += size;
        }
        self.waiting.insert(seq, (envelope, size));
        Ok(())
    }

    /// The next envelope in client order, with its encoded size.
    pub fn pop_ready(&mut self) -> Option<(Envelope, usize)> {
        let (envelope, size) = self.waiting.remove(&self.next)?;
        self.next = self.next.wrapping_add(1);
        // Everything after it that is now next in line was counted as early.
        if let Some((_, following)) = self.waiting.get(&self.next) {
            self.early_bytes = self.early_bytes.saturating_sub(*following);
        }
        Some((envelope, size))
    }

    pub fn waiting_bytes(&self) -> usize {
        self.early_bytes
    }

    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(seq: i32) -> Envelope {
        Envelope {
            seq,
            id: seq.to_string(),
            ..Default::default()
        }
    }

    fn drain(window: &mut SeqWindow) -> Vec<i32> {
        std::iter::from_fn(|| window.pop_ready())
            .map(|(e, _)| e.seq)
            .collect()
    }

    #[test]
    fn out_of_order_is_delivered_in_order() {
        let mut window = SeqWindow::new(10, usize::MAX);
        window.accept(env(2), 1).unwrap();
        window.accept(env(1), 1).unwrap();
        assert!(drain(&mut window).is_empty());
        window.accept(env(0), 1).unwrap();
        assert_eq!(drain(&mut window), vec![0, 1, 2]);
        window.accept(env(3), 1).unwrap();
        assert_eq!(drain(&mut window), vec![3]);
    }

    #[test]
    fn repeated_and_lower_seq_are_errors() {
        let mut window = SeqWindow::new(10, usize::MAX);
        window.accept(env(0), 1).unwrap();
        drain(&mut window);
        assert_eq!(
            window.accept(env(0), 1),
            Err(SeqError::Stale {
                seq: 0,
                expected: 1
            })
        );
        window.accept(env(5), 1).unwrap();
        assert_eq!(window.accept(env(5), 1), Err(SeqError::Duplicate(5)));
    }

    #[test]
    fn full_window_is_an_error() {
        let mut window = SeqWindow::new(3, usize::MAX);
        for seq in 1..=3 {
            window.accept(env(seq), 1).unwrap();
        }
        assert_eq!(window.accept(env(4), 1), Err(SeqError::WindowFull(3)));
        // The missing one still fits: it drains the window.
        window.accept(env(0), 1).unwrap();
        assert_eq!(drain(&mut window), vec![0, 1, 2, 3]);
    }

    #[test]
    fn early_bytes_are_bounded_and_released_in_order() {
        let mut window = SeqWindow::new(100, 1000);
        window.accept(env(1), 400).unwrap();
        window.accept(env(2), 500).unwrap();
        assert_eq!(window.waiting_bytes(), 900);
        assert_eq!(
            window.accept(env(3), 200),
            Err(SeqError::WindowBytesFull(1000))
        );
        // The missing one is never refused for bytes: it is delivered at once.
        window.accept(env(0), 5000).unwrap();
        assert_eq!(drain(&mut window), vec![0, 1, 2]);
        assert_eq!(window.waiting_bytes(), 0);
        window.accept(env(4), 1000).unwrap();
        assert_eq!(window.waiting_bytes(), 1000);
    }
}
