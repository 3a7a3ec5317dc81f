//! One queue of the embedded bus: four priority lanes of ready messages, its
//! consumers with their credit, the settlement of what it delivered, and the expiry
//! index of its messages.
//!
//! Locking: one `std::sync::Mutex` per queue, held for a few list operations and
//! never across an await. Nothing that can run a [`Delivery`]'s `Drop` (which locks
//! a queue to requeue) may be dropped under the lock: consumers' senders are handed
//! back to the caller to drop once unlocked, and deliveries are only ever sent
//! through a reserved channel slot, which cannot hand them back.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::mpsc::{self, error::TrySendError};

use super::expiry::Timer;
use crate::bus::{Acknowledge, DeadLetter, Delivery, QueueKind, MAX_PRIORITY};

const LANES: usize = MAX_PRIORITY as usize + 1;

/// What every queue and message of one bus share.
pub(super) struct Shared {
    max_bytes: usize,
    /// Body bytes of the messages alive in the bus (queued or unacknowledged).
    bytes: AtomicUsize,
    dead_letters: mpsc::Sender<DeadLetter>,
    dead_letters_dropped: AtomicU64,
    pub(super) timer: Arc<Timer>,
}

impl Shared {
    pub(super) fn new(
        max_bytes: usize,
        dead_letters: mpsc::Sender<DeadLetter>,
        timer: Arc<Timer>,
    ) -> Shared {
        Shared {
            max_bytes,
            bytes: AtomicUsize::new(0),
            dead_letters,
            dead_letters_dropped: AtomicU64::new(0),
            timer,
        }
    }

    pub(super) fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    pub(super) fn dead_letters_dropped(&self) -> u64 {
        self.dead_letters_dropped.load(Ordering::Relaxed)
    }

    /// Takes a message into the bus if its body fits under the byte limit; the bytes
    /// are given back when the last copy of the message is dropped, whatever path it
    /// leaves by (acknowledged, expired, discarded with its queue, refused).
    pub(super) fn admit(self: &Arc<Self>, parts: MessageParts) -> Option<Arc<Message>> {
        let len = parts.body.len();
        let before = self.bytes.fetch_add(len, Ordering::Relaxed);
        if before.saturating_add(len) > self.max_bytes {
            self.bytes.fetch_sub(len, Ordering::Relaxed);
            return None;
        }
        Some(Arc::new(Message {
            parts,
            shared: self.clone(),
        }))
    }

    /// Reports an expired message to the server if it wants a reply. Never blocks: a
    /// full channel (nobody reading) drops the dead letter and counts it.
    fn dead_letter(&self, queue: &str, message: &Message) {
        let parts = &message.parts;
        if parts.reply_to.is_empty() {
            return;
        }
        let letter = DeadLetter {
            queue: queue.to_owned(),
            correlation_id: parts.correlation_id.clone(),
            reply_to: parts.reply_to.clone(),
            body: parts.body.clone(),
        };
        if self.dead_letters.try_send(letter).is_err() {
            let dropped = self.dead_letters_dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(
                    dropped,
                    "bus dead-letter channel full or closed; timeout replies lost"
                );
            }
        }
    }
}

/// A published message as the bus keeps it.
pub(super) struct MessageParts {
    pub exchange: String,
    pub routing_key: String,
    pub correlation_id: String,
    pub reply_to: String,
    /// Already capped at [`MAX_PRIORITY`].
    pub priority: u8,
    pub body: Bytes,
    pub headers: Vec<(String, String)>,
    /// Publish time + expiration (`None`: too far away to represent).
    pub deadline: Option<Instant>,
}

/// One message, shared by the copies an exchange routed to several queues.
pub(super) struct Message {
    parts: MessageParts,
    shared: Arc<Shared>,
}

impl Drop for Message {
    fn drop(&mut self) {
        self.shared
            .bytes
            .fetch_sub(self.parts.body.len(), Ordering::Relaxed);
    }
}

/// A message in a queue. `key` is its order of arrival in the queue; it keeps it when
/// requeued, so a requeued message goes back before everything that came after it.
struct Entry {
    key: u64,
    message: Arc<Message>,
    redelivered: bool,
}

/// The ready (not delivered) messages of a queue.
#[derive(Default)]
struct Ready {
    /// One FIFO per priority, each sorted by `key`.
    lanes: [VecDeque<Entry>; LANES],
    len: usize,
    next_key: u64,
    /// (deadline, key, lane) of every ready message that has a deadline.
    expiry: BTreeSet<(Instant, u64, u8)>,
}

impl Ready {
    fn push(&mut self, message: Arc<Message>) {
        let key = self.next_key;
        self.next_key += 1;
        let lane = message.parts.priority;
        if let Some(deadline) = message.parts.deadline {
            self.expiry.insert((deadline, key, lane));
        }
        self.lanes[usize::from(lane)].push_back(Entry {
            key,
            message,
            redelivered: false,
        });
        self.len += 1;
    }

    /// Back in its place: before every message that arrived after it.
    fn put_back(&mut self, entry: Entry) {
        let lane_index = entry.message.parts.priority;
        if let Some(deadline) = entry.message.parts.deadline {
            self.expiry.insert((deadline, entry.key, lane_index));
        }
        let lane = &mut self.lanes[usize::from(lane_index)];
        let at = lane.partition_point(|queued| queued.key < entry.key);
        lane.insert(at, entry);
        self.len += 1;
    }

    /// The next message to deliver: the oldest of the highest non-empty priority.
    /// Messages found expired on the way are passed to `expired`.
    fn pop(&mut self, now: Instant, mut expired: impl FnMut(Arc<Message>)) -> Option<Entry> {
        for lane in (0..LANES).rev() {
            while let Some(entry) = self.lanes[lane].pop_front() {
                self.len -= 1;
                if let Some(deadline) = entry.message.parts.deadline {
                    // `lane` < LANES = 4, so the cast is exact.
                    self.expiry.remove(&(deadline, entry.key, lane as u8));
                    // Strictly before: a zero-TTL message can still go to a consumer
                    // waiting at its publish, as on RabbitMQ.
                    if deadline < now {
                        expired(entry.message);
                        continue;
                    }
                }
                return Some(entry);
            }
        }
        None
    }

    /// Removes every message whose deadline is `now` or earlier.
    fn expire_due(&mut self, now: Instant, mut expired: impl FnMut(Arc<Message>)) {
        while let Some(&(deadline, key, lane_index)) = self.expiry.first() {
            if deadline > now {
                break;
            }
            self.expiry.pop_first();
            let lane = &mut self.lanes[usize::from(lane_index)];
            let at = lane.partition_point(|queued| queued.key < key);
            if lane.get(at).is_some_and(|queued| queued.key == key) {
                if let Some(entry) = lane.remove(at) {
                    self.len -= 1;
                    expired(entry.message);
                }
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.expiry.first().map(|&(deadline, _, _)| deadline)
    }

    fn clear(&mut self) -> [VecDeque<Entry>; LANES] {
        self.expiry.clear();
        self.len = 0;
        std::mem::take(&mut self.lanes)
    }
}

/// A consumer as its queue sees it.
struct Slot {
    id: u64,
    deliveries: mpsc::Sender<Delivery>,
    /// Deliveries it may still receive before acknowledging some.
    credit: u16,
}

#[derive(Default)]
pub(super) struct State {
    ready: Ready,
    consumers: Vec<Slot>,
    /// Round-robin position in `consumers`.
    cursor: usize,
    /// When this queue is due in the expiry timer (at most one entry there).
    scheduled: Option<Instant>,
    /// Exchanges this queue is bound to, to unbind it when it is deleted.
    pub(super) bound_to: Vec<String>,
}

enum Reserve {
    Sent,
    Closed,
    Full,
}

/// Senders of consumers that went away, dropped once the queue is unlocked.
pub(super) type Gone = Vec<mpsc::Sender<Delivery>>;

pub(super) struct Queue {
    pub(super) id: u64,
    pub(super) name: String,
    pub(super) kind: QueueKind,
    max_length: usize,
    /// Set (under the lock) when a temporary queue is deleted; readable without it.
    deleted: AtomicBool,
    shared: Arc<Shared>,
    state: Mutex<State>,
}

/// Why a queue did not take a message.
pub(super) enum Refusal {
    /// Deleted meanwhile: as if it had not existed.
    Deleted,
    Full,
}

impl Queue {
    pub(super) fn new(
        id: u64,
        name: String,
        kind: QueueKind,
        max_length: usize,
        shared: Arc<Shared>,
    ) -> Queue {
        Queue {
            id,
            name,
            kind,
            max_length,
            deleted: AtomicBool::new(false),
            shared,
            state: Mutex::default(),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // No code path panics under the lock; if one ever did, the state is still
        // consistent list-wise, so carry on rather than poison the whole bus.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    pub(super) fn full_error(&self) -> String {
        format!(
            "queue {} is full: it holds its limit of {} messages",
            self.name, self.max_length
        )
    }

    /// Whether `offer` would refuse a message now (for all-or-nothing fanout).
    pub(super) fn check_room(&self, state: &State) -> Result<(), Refusal> {
        if self.is_deleted() {
            Err(Refusal::Deleted)
        } else if state.ready.len >= self.max_length {
            Err(Refusal::Full)
        } else {
            Ok(())
        }
    }

    /// Enqueues a published message and delivers what it can.
    pub(super) fn offer(
        self: &Arc<Self>,
        state: &mut State,
        message: Arc<Message>,
        now: Instant,
        gone: &mut Gone,
    ) -> Result<(), Refusal> {
        self.check_room(state)?;
        let deadline = message.parts.deadline;
        state.ready.push(message);
        if let Some(deadline) = deadline {
            self.note_deadline(state, deadline);
        }
        self.dispatch(state, now, gone);
        Ok(())
    }

    /// Adds a consumer with `credit` deliveries and delivers what waits.
    pub(super) fn add_consumer(
        self: &Arc<Self>,
        id: u64,
        deliveries: mpsc::Sender<Delivery>,
        credit: u16,
    ) -> bool {
        let mut gone = Gone::new();
        {
            let mut state = self.lock();
            if self.is_deleted() {
                return false;
            }
            state.consumers.push(Slot {
                id,
                deliveries,
                credit,
            });
            self.dispatch(&mut state, Instant::now(), &mut gone);
        }
        drop(gone);
        true
    }

    /// Cancels a consumer; a temporary queue goes with it (its messages discarded).
    /// Returns the exchanges a deleted queue was bound to.
    pub(super) fn remove_consumer(&self, id: u64) -> Option<Vec<String>> {
        self.release(Some(id))
    }

    /// Deletes a temporary queue now, before its consumer is gone (`unregisterqueue`
    /// answers only once the name no longer routes). Returns what it was bound to.
    pub(super) fn delete_temporary(&self) -> Option<Vec<String>> {
        self.release(None)
    }

    fn release(&self, consumer: Option<u64>) -> Option<Vec<String>> {
        let mut removed = None;
        let mut discarded = None;
        let mut unbind = None;
        {
            let mut state = self.lock();
            if let Some(index) =
                consumer.and_then(|id| state.consumers.iter().position(|slot| slot.id == id))
            {
                if state.cursor > index {
                    state.cursor -= 1;
                }
                removed = Some(state.consumers.remove(index));
            }
            if self.kind == QueueKind::Temporary && !self.is_deleted() {
                self.deleted.store(true, Ordering::Release);
                discarded = Some(state.ready.clear());
                if let Some(at) = state.scheduled.take() {
                    self.shared.timer.cancel(at, self.id);
                }
                unbind = Some(std::mem::take(&mut state.bound_to));
            }
        }
        // Dropped unlocked: the channel may still hold deliveries that requeue here.
        drop(removed);
        drop(discarded);
        unbind
    }

    /// Registers this queue in the expiry timer if `deadline` is earlier than what it
    /// is registered for. With one TTL per queue (the usual case) that is once per
    /// expiry period, so publishing rarely touches the timer's lock.
    fn note_deadline(self: &Arc<Self>, state: &mut State, deadline: Instant) {
        if state.scheduled.is_some_and(|at| at <= deadline) {
            return;
        }
        let previous = state.scheduled.replace(deadline);
        self.shared
            .timer
            .schedule(previous, deadline, self.id, Arc::downgrade(self));
    }

    /// The timer's call: `fired` was this queue's registration.
    pub(super) fn expire(self: &Arc<Self>, fired: Instant, now: Instant) {
        let mut state = self.lock();
        if self.is_deleted() {
            return;
        }
        let shared = &self.shared;
        state
            .ready
            .expire_due(now, |message| shared.dead_letter(&self.name, &message));
        // A publish may have registered an earlier deadline meanwhile; that one stands.
        if state.scheduled == Some(fired) {
            state.scheduled = None;
            if let Some(next) = state.ready.next_deadline() {
                self.note_deadline(&mut state, next);
            }
        }
    }

    /// Hands ready messages to consumers with credit, round-robin, until either runs
    /// out. Consumers whose receiver is gone are removed (their senders into `gone`).
    fn dispatch(self: &Arc<Self>, state: &mut State, now: Instant, gone: &mut Gone) {
        let shared = &self.shared;
        while state.ready.len > 0 {
            let count = state.consumers.len();
            let Some(index) = (0..count)
                .map(|step| (state.cursor + step) % count)
                .find(|&index| state.consumers[index].credit > 0)
            else {
                return;
            };
            let slot = &state.consumers[index];
            let consumer = slot.id;
            // Reserve first: a reserved slot always takes the delivery, so no delivery
            // comes back to be dropped (and requeued) under this lock.
            let outcome = match slot.deliveries.try_reserve() {
                Ok(permit) => {
                    let Some(entry) = state
                        .ready
                        .pop(now, |message| shared.dead_letter(&self.name, &message))
                    else {
                        return;
                    };
                    permit.send(self.delivery(entry, consumer));
                    Reserve::Sent
                }
                Err(TrySendError::Closed(())) => Reserve::Closed,
                Err(TrySendError::Full(())) => Reserve::Full,
            };
            match outcome {
                Reserve::Sent => {
                    state.consumers[index].credit -= 1;
                    state.cursor = index + 1;
                }
                Reserve::Closed => {
                    gone.push(state.consumers.remove(index).deliveries);
                    if state.cursor > index {
                        state.cursor -= 1;
                    }
                }
                // Cannot happen (the channel holds `prefetch` and so does the credit);
                // if it did, wait for an acknowledgement.
                Reserve::Full => state.consumers[index].credit = 0,
            }
        }
    }

    fn delivery(self: &Arc<Self>, entry: Entry, consumer: u64) -> Delivery {
        let parts = &entry.message.parts;
        Delivery::new(
            self.name.clone(),
            parts.exchange.clone(),
            parts.routing_key.clone(),
            parts.correlation_id.clone(),
            parts.reply_to.clone(),
            parts.priority,
            parts.body.clone(),
            entry.redelivered,
            parts.headers.clone(),
            Box::new(Acker {
                queue: self.clone(),
                consumer,
                entry: Some(entry),
            }),
        )
    }

    /// A delivery settled: its consumer gets its credit back, a requeued message goes
    /// back in its place (a deleted queue discards it), and the queue dispatches.
    fn settle(self: &Arc<Self>, consumer: u64, requeue: Option<Entry>) {
        let mut gone = Gone::new();
        let mut discarded = None;
        {
            let mut state = self.lock();
            if let Some(slot) = state.consumers.iter_mut().find(|slot| slot.id == consumer) {
                slot.credit = slot.credit.saturating_add(1);
            }
            if let Some(mut entry) = requeue {
                if self.is_deleted() {
                    discarded = Some(entry);
                } else {
                    entry.redelivered = true;
                    let deadline = entry.message.parts.deadline;
                    state.ready.put_back(entry);
                    if let Some(deadline) = deadline {
                        self.note_deadline(&mut state, deadline);
                    }
                }
            }
            self.dispatch(&mut state, Instant::now(), &mut gone);
        }
        drop(gone);
        drop(discarded);
    }

    pub(super) fn ready_len(&self) -> usize {
        self.lock().ready.len
    }

    pub(super) fn consumer_count(&self) -> usize {
        self.lock().consumers.len()
    }
}

/// Settles one delivery with its queue (see [`Queue::settle`]). Holding the entry
/// keeps its message (and its bytes) alive until then.
struct Acker {
    queue: Arc<Queue>,
    consumer: u64,
    entry: Option<Entry>,
}

impl Acknowledge for Acker {
    fn ack(mut self: Box<Self>) {
        let entry = self.entry.take();
        self.queue.settle(self.consumer, None);
        drop(entry);
    }

    fn requeue(mut self: Box<Self>) {
        let entry = self.entry.take();
        self.queue.settle(self.consumer, entry);
    }
}

impl Drop for Acker {
    /// Unsettled (it should not happen: `Delivery` and `Settlement` settle on drop)
    /// means requeued.
    fn drop(&mut self) {
        if let Some(entry) = self.entry.take() {
            self.queue.settle(self.consumer, Some(entry));
        }
    }
}
