//! Restores client send order on stream transports. Clients number envelopes 0,1,2,…;
//! a bounded window holds early arrivals until the gap is filled.

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
}

#[derive(Debug)]
pub struct SeqWindow {
    next: i32,
    waiting: BTreeMap<i32, Envelope>,
    capacity: usize,
}

impl SeqWindow {
    pub fn new(capacity: usize) -> Self {
        SeqWindow {
            next: 0,
            waiting: BTreeMap::new(),
            capacity,
        }
    }

    /// Accepts one envelope; in-order ones become available from `pop_ready`.
    pub fn accept(&mut self, envelope: Envelope) -> Result<(), SeqError> {
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
        if seq != self.next && self.waiting.len() >= self.capacity {
            return Err(SeqError::WindowFull(self.capacity));
        }
        self.waiting.insert(seq, envelope);
        Ok(())
    }

    pub fn pop_ready(&mut self) -> Option<Envelope> {
        let envelope = self.waiting.remove(&self.next)?;
        self.next = self.next.wrapping_add(1);
        Some(envelope)
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
            .map(|e| e.seq)
            .collect()
    }

    #[test]
    fn out_of_order_is_delivered_in_order() {
        let mut window = SeqWindow::new(10);
        window.accept(env(2)).unwrap();
        window.accept(env(1)).unwrap();
        assert!(drain(&mut window).is_empty());
        window.accept(env(0)).unwrap();
        assert_eq!(drain(&mut window), vec![0, 1, 2]);
        window.accept(env(3)).unwrap();
        assert_eq!(drain(&mut window), vec![3]);
    }

    #[test]
    fn repeated_and_lower_seq_are_errors() {
        let mut window = SeqWindow::new(10);
        window.accept(env(0)).unwrap();
        drain(&mut window);
        assert_eq!(
            window.accept(env(0)),
            Err(SeqError::Stale {
                seq: 0,
                expected: 1
            })
        );
        window.accept(env(5)).unwrap();
        assert_eq!(window.accept(env(5)), Err(SeqError::Duplicate(5)));
    }

    #[test]
    fn full_window_is_an_error() {
        let mut window = SeqWindow::new(3);
        for seq in 1..=3 {
            window.accept(env(seq)).unwrap();
        }
        assert_eq!(window.accept(env(4)), Err(SeqError::WindowFull(3)));
        // The missing one still fits: it drains the window.
        window.accept(env(0)).unwrap();
        assert_eq!(drain(&mut window), vec![0, 1, 2, 3]);
    }
}
