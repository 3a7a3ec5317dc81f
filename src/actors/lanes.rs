//! Priority lanes: requests waiting for a free handler slot, served highest
//! priority first and FIFO within a priority.

use std::collections::VecDeque;

pub const LANES: usize = 4;

#[derive(Debug)]
pub struct PriorityLanes<T> {
    lanes: [VecDeque<T>; LANES],
}

impl<T> Default for PriorityLanes<T> {
    fn default() -> Self {
        PriorityLanes {
            lanes: Default::default(),
        }
    }
}

impl<T> PriorityLanes<T> {
    /// Priorities outside 0..=3 are clamped (clients send 0 batch, 1 normal, 2 UI).
    pub fn push(&mut self, priority: i32, item: T) {
        let lane = priority.clamp(0, LANES as i32 - 1) as usize;
        self.lanes[lane].push_back(item);
    }

    pub fn pop(&mut self) -> Option<T> {
        self.lanes
            .iter_mut()
            .rev()
            .find_map(|lane| lane.pop_front())
    }

    pub fn len(&self) -> usize {
        self.lanes.iter().map(VecDeque::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn drain(&mut self) -> impl Iterator<Item = T> + '_ {
        self.lanes.iter_mut().rev().flat_map(|lane| lane.drain(..))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highest_priority_first_fifo_within() {
        let mut lanes = PriorityLanes::default();
        lanes.push(0, "a0");
        lanes.push(0, "b0");
        lanes.push(3, "a3");
        lanes.push(9, "b3");
        lanes.push(1, "a1");
        lanes.push(-4, "c0");
        let order: Vec<_> = std::iter::from_fn(|| lanes.pop()).collect();
        assert_eq!(order, vec!["a3", "b3", "a1", "a0", "b0", "c0"]);
    }
}
