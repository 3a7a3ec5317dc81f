//! Priority lanes: requests waiting for a free handler slot, served highest
//! priority first and FIFO within a priority.
//!
//! Clients choose the priority, so strict priority would let one client that keeps
//! lane 3 full starve every lower-priority request of everybody else. Waiting
//! therefore ages a request: every `aging` interval it has waited counts as one more
//! priority level, and equal effective priorities go to the request that waited
//! longest. A priority-0 request overtakes fresh priority-3 work after about
//! 3 × `aging`, however hard another connection floods the high lanes; priority still
//! decides whenever nobody has waited long.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

pub const LANES: usize = 4;

#[derive(Debug)]
pub struct PriorityLanes<T> {
    lanes: [VecDeque<(Instant, T)>; LANES],
    /// Zero: strict priority (no aging).
    aging: Duration,
}

impl<T> Default for PriorityLanes<T> {
    fn default() -> Self {
        PriorityLanes::new(Duration::ZERO)
    }
}

impl<T> PriorityLanes<T> {
    pub fn new(aging: Duration) -> Self {
        PriorityLanes {
            lanes: Default::default(),
            aging,
        }
    }

    /// Priorities outside 0..=3 are clamped (clients send 0 batch, 1 normal, 2 UI).
    pub fn push(&mut self, priority: i32, item: T) {
        self.push_at(priority, item, Instant::now());
    }

    pub fn push_at(&mut self, priority: i32, item: T, now: Instant) {
        let lane = priority.clamp(0, LANES as i32 - 1) as usize;
        self.lanes[lane].push_back((now, item));
    }

    pub fn pop(&mut self) -> Option<T> {
        self.pop_at(Instant::now())
    }

    /// The front of the lane with the highest effective priority (lane + levels gained
    /// by waiting); ties go to the one that has waited longest.
    pub fn pop_at(&mut self, now: Instant) -> Option<T> {
        let mut best: Option<(u128, Instant, usize)> = None;
        for (lane, queue) in self.lanes.iter().enumerate() {
            let Some((since, _)) = queue.front() else {
                continue;
            };
            let effective = lane as u128 + self.levels_gained(*since, now);
            let better = match best {
                None => true,
                Some((top, top_since, _)) => {
                    effective > top || (effective == top && *since < top_since)
                }
            };
            if better {
                best = Some((effective, *since, lane));
            }
        }
        let (_, _, lane) = best?;
        self.lanes[lane].pop_front().map(|(_, item)| item)
    }

    fn levels_gained(&self, since: Instant, now: Instant) -> u128 {
        if self.aging.is_zero() {
            return 0;
        }
        now.saturating_duration_since(since).as_nanos() / self.aging.as_nanos()
    }

    pub fn len(&self) -> usize {
        self.lanes.iter().map(VecDeque::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn drain(&mut self) -> impl Iterator<Item = T> + '_ {
        self.lanes
            .iter_mut()
            .rev()
            .flat_map(|lane| lane.drain(..).map(|(_, item)| item))
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

    #[test]
    fn fresh_requests_keep_strict_priority_under_aging() {
        let mut lanes = PriorityLanes::new(Duration::from_secs(1));
        let now = Instant::now();
        lanes.push_at(0, "low", now);
        lanes.push_at(3, "high", now + Duration::from_millis(100));
        assert_eq!(lanes.pop_at(now + Duration::from_millis(200)), Some("high"));
    }

    #[test]
    fn a_flood_of_high_priority_cannot_starve_a_waiting_low_one() {
        let aging = Duration::from_millis(100);
        let mut lanes = PriorityLanes::new(aging);
        let start = Instant::now();
        lanes.push_at(0, "victim", start);
        // Another client keeps lane 3 full: one new request per tick, one served per tick.
        let mut served_victim_at = None;
        for tick in 0..100u32 {
            let now = start + Duration::from_millis(10) * tick;
            lanes.push_at(3, "flood", now);
            if lanes.pop_at(now) == Some("victim") {
                served_victim_at = Some(tick);
                break;
            }
        }
        let tick = served_victim_at.expect("the priority-0 request was starved");
        // 3 levels to catch up, then it is older than any fresh priority-3 request.
        assert!(tick <= 40, "served only at tick {tick}");
    }

    #[test]
    fn zero_aging_is_strict_priority() {
        let mut lanes = PriorityLanes::new(Duration::ZERO);
        let start = Instant::now();
        lanes.push_at(0, "low", start);
        lanes.push_at(3, "high", start + Duration::from_secs(3600));
        assert_eq!(lanes.pop_at(start + Duration::from_secs(7200)), Some("high"));
    }
}
