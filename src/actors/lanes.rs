//! Priority lanes: requests waiting for a free handler slot, highest priority first.
//!
//! Clients choose the priority, so plain strict priority lets one connection starve
//! everybody else: a backlog of its priority-3 requests, or a steady stream of them,
//! keeps lower lanes waiting for as long as it likes. Three rules bound each
//! connection's share instead:
//! - **A cap on prioritised waiting**: one connection (its `origin`) may have at most
//!   `share` requests waiting above priority 0; more of its requests wait at priority 0.
//! - **Connections take turns within a lane**: each lane keeps one FIFO per connection
//!   and serves them round-robin, so a backlog of one connection is not ahead of another
//!   connection's request.
//! - **Aging**: every `aging` interval a request has waited counts as one more priority
//!   level (ties go to the longer wait), so a steady stream of fresh high-priority work
//!   cannot keep a lower lane waiting for more than about 3 × `aging`.
//!
//! Priority still decides whenever nobody has waited long and nobody is over its share.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

pub const LANES: usize = crate::services::load::PRIORITY_LANES;

/// One lane: a FIFO per connection, served round-robin.
#[derive(Debug)]
struct Lane<T> {
    turns: VecDeque<u64>,
    queues: HashMap<u64, VecDeque<(Instant, T)>>,
    len: usize,
}

impl<T> Default for Lane<T> {
    fn default() -> Self {
        Lane {
            turns: VecDeque::new(),
            queues: HashMap::new(),
            len: 0,
        }
    }
}

impl<T> Lane<T> {
    fn push(&mut self, origin: u64, since: Instant, item: T) {
        let queue = self.queues.entry(origin).or_default();
        if queue.is_empty() {
            self.turns.push_back(origin);
        }
        queue.push_back((since, item));
        self.len += 1;
    }

    /// When the request whose turn it is started waiting.
    fn next_since(&self) -> Option<Instant> {
        let origin = self.turns.front()?;
        self.queues.get(origin)?.front().map(|(since, _)| *since)
    }

    /// The request whose turn it is, and its connection.
    fn pop(&mut self) -> Option<(u64, T)> {
        let origin = self.turns.pop_front()?;
        let queue = self.queues.get_mut(&origin)?;
        let (_, item) = queue.pop_front()?;
        self.len -= 1;
        if queue.is_empty() {
            self.queues.remove(&origin);
        } else {
            self.turns.push_back(origin);
        }
        Some((origin, item))
    }

    fn drain(&mut self) -> Vec<T> {
        let mut items = Vec::with_capacity(self.len);
        while let Some((_, item)) = self.pop() {
            items.push(item);
        }
        items
    }
}

#[derive(Debug)]
pub struct PriorityLanes<T> {
    lanes: [Lane<T>; LANES],
    /// Zero: no aging.
    aging: Duration,
    /// Most requests one connection may have waiting above priority 0.
    share: usize,
    /// Per connection: its requests waiting above priority 0.
    prioritized: HashMap<u64, usize>,
}

impl<T> Default for PriorityLanes<T> {
    fn default() -> Self {
        PriorityLanes::new(Duration::ZERO, usize::MAX)
    }
}

impl<T> PriorityLanes<T> {
    pub fn new(aging: Duration, share: usize) -> Self {
        PriorityLanes {
            lanes: Default::default(),
            aging,
            share,
            prioritized: HashMap::new(),
        }
    }

    /// Priorities outside 0..=3 are clamped (clients send 0 batch, 1 normal, 2 UI).
    pub fn push(&mut self, priority: i32, origin: u64, item: T) {
        self.push_at(priority, origin, item, Instant::now());
    }

    pub fn push_at(&mut self, priority: i32, origin: u64, item: T, now: Instant) {
        let mut lane = priority.clamp(0, LANES as i32 - 1) as usize;
        if lane > 0 {
            let count = self.prioritized.entry(origin).or_insert(0);
            if *count >= self.share {
                lane = 0;
            } else {
                *count += 1;
            }
        }
        self.lanes[lane].push(origin, now, item);
    }

    pub fn pop(&mut self) -> Option<T> {
        self.pop_at(Instant::now())
    }

    /// From the lane with the highest effective priority (lane + levels gained by
    /// waiting; ties to the longer wait), the request of the connection whose turn it is.
    pub fn pop_at(&mut self, now: Instant) -> Option<T> {
        let mut best: Option<(u128, Instant, usize)> = None;
        for (lane, queue) in self.lanes.iter().enumerate() {
            let Some(since) = queue.next_since() else {
                continue;
            };
            let effective = lane as u128 + self.levels_gained(since, now);
            let better = match best {
                None => true,
                Some((top, top_since, _)) => {
                    effective > top || (effective == top && since < top_since)
                }
            };
            if better {
                best = Some((effective, since, lane));
            }
        }
        let (_, _, lane) = best?;
        let (origin, item) = self.lanes[lane].pop()?;
        if lane > 0 {
            self.release(origin);
        }
        Some(item)
    }

    fn release(&mut self, origin: u64) {
        if let Some(count) = self.prioritized.get_mut(&origin) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.prioritized.remove(&origin);
            }
        }
    }

    fn levels_gained(&self, since: Instant, now: Instant) -> u128 {
        if self.aging.is_zero() {
            return 0;
        }
        now.saturating_duration_since(since).as_nanos() / self.aging.as_nanos()
    }

    pub fn len(&self) -> usize {
        self.lanes.iter().map(|lane| lane.len).sum()
    }

    /// Requests waiting in each lane (priority 0..=3).
    pub fn lane_lengths(&self) -> [usize; LANES] {
        std::array::from_fn(|lane| self.lanes[lane].len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Everything waiting, highest lane first.
    pub fn drain(&mut self) -> impl Iterator<Item = T> + '_ {
        self.prioritized.clear();
        let mut items = Vec::with_capacity(self.len());
        for lane in self.lanes.iter_mut().rev() {
            items.extend(lane.drain());
        }
        items.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highest_priority_first_fifo_within() {
        let mut lanes = PriorityLanes::default();
        lanes.push(0, 1, "a0");
        lanes.push(0, 1, "b0");
        lanes.push(3, 1, "a3");
        lanes.push(9, 1, "b3");
        lanes.push(1, 1, "a1");
        lanes.push(-4, 1, "c0");
        let order: Vec<_> = std::iter::from_fn(|| lanes.pop()).collect();
        assert_eq!(order, vec!["a3", "b3", "a1", "a0", "b0", "c0"]);
    }

    #[test]
    fn fresh_requests_keep_strict_priority_under_aging() {
        let mut lanes = PriorityLanes::new(Duration::from_secs(1), 16);
        let now = Instant::now();
        lanes.push_at(0, 1, "low", now);
        lanes.push_at(3, 2, "high", now + Duration::from_millis(100));
        assert_eq!(lanes.pop_at(now + Duration::from_millis(200)), Some("high"));
    }

    #[test]
    fn a_steady_high_priority_stream_cannot_starve_a_waiting_low_one() {
        let aging = Duration::from_millis(100);
        let mut lanes = PriorityLanes::new(aging, 16);
        let start = Instant::now();
        lanes.push_at(0, 1, "victim", start);
        // Another connection keeps lane 3 busy: one new request per tick, one served per tick.
        let mut served_victim_at = None;
        for tick in 0..100u32 {
            let now = start + Duration::from_millis(10) * tick;
            lanes.push_at(3, 2, "flood", now);
            if lanes.pop_at(now) == Some("victim") {
                served_victim_at = Some(tick);
                break;
            }
        }
        let tick = served_victim_at.expect("the priority-0 request was starved");
        assert!(tick <= 40, "served only at tick {tick}");
    }

    #[test]
    fn a_high_priority_backlog_of_one_connection_is_capped_and_takes_turns() {
        let mut lanes = PriorityLanes::new(Duration::from_secs(3600), 4);
        let start = Instant::now();
        for n in 0..1000 {
            lanes.push_at(3, 1, n.to_string(), start);
        }
        lanes.push_at(0, 2, "victim".to_string(), start + Duration::from_millis(1));
        let position = std::iter::from_fn(|| lanes.pop_at(start + Duration::from_millis(2)))
            .position(|item| item == "victim")
            .unwrap();
        // 4 prioritised, then turns at priority 0: the flood's oldest, then the victim.
        assert_eq!(position, 5);
    }

    #[test]
    fn zero_aging_is_strict_priority() {
        let mut lanes = PriorityLanes::new(Duration::ZERO, usize::MAX);
        let start = Instant::now();
        lanes.push_at(0, 1, "low", start);
        lanes.push_at(3, 2, "high", start + Duration::from_secs(3600));
        assert_eq!(
            lanes.pop_at(start + Duration::from_secs(7200)),
            Some("high")
        );
    }
}
