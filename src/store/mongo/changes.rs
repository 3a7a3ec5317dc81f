//! The change-stream pump: one MongoDB change stream per watched collection per node,
//! each feeding the shared `ChangeFeed`.
//!
//! * A collection is watched when the `ChangeFeed` reports it (first subscription or
//!   first generation read, through the feed's watch hook) or when the store asks
//!   (`users` always). `Pumps::ensure` keeps one entry per collection name under a
//!   mutex, so a collection never gets a second stream, however many subscribers.
//! * Only the stream publishes events, so each change (from this node or another)
//!   becomes exactly one `ChangeEvent` here. The store's own acknowledged writes only
//!   bump the generation, so caches see them without waiting for the stream.
//! * A failed stream is reopened after a delay (doubling up to a cap) from the last
//!   resume token, so no change is lost or repeated. After an `invalidate` (collection
//!   dropped or renamed) it starts again after that event (`startAfter`). When the
//!   server no longer has the token's history it starts from now, bumps the
//!   generation (caches reload) and logs that events may have been missed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bson::Document;
use futures_util::StreamExt;
use mongodb::change_stream::event::{ChangeStreamEvent, OperationType, ResumeToken};
use mongodb::options::FullDocumentType;
use mongodb::{Collection, Database};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::convert::{codes, key_id, server_code};
use crate::store::{ChangeEvent, ChangeFeed, ChangeOperation};

/// First delay before reopening a failed stream; doubles up to `MAX_RESTART_DELAY`.
pub const RESTART_DELAY: Duration = Duration::from_millis(500);
const MAX_RESTART_DELAY: Duration = Duration::from_secs(10);

pub struct Pumps {
    db: Database,
    feed: Weak<ChangeFeed>,
    runtime: tokio::runtime::Handle,
    /// Per collection: whether its stream is open right now.
    streams: Mutex<HashMap<String, watch::Receiver<bool>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    stop: watch::Sender<bool>,
    restart_delay: Duration,
}

#[derive(Clone)]
enum Origin {
    Now,
    ResumeAfter(ResumeToken),
    /// After an invalidate event: `resumeAfter` is refused there.
    StartAfter(ResumeToken),
}

impl Pumps {
    pub fn new(
        db: Database,
        feed: Weak<ChangeFeed>,
        runtime: tokio::runtime::Handle,
        restart_delay: Duration,
    ) -> Arc<Self> {
        Arc::new(Pumps {
            db,
            feed,
            runtime,
            streams: Mutex::new(HashMap::new()),
            tasks: Mutex::new(Vec::new()),
            stop: watch::channel(false).0,
            restart_delay,
        })
    }

    /// Starts the stream of `collection` unless it runs already. The receiver turns
    /// true while the stream is open (changes from then on are delivered).
    pub fn ensure(&self, collection: &str) -> watch::Receiver<bool> {
        let mut streams = self
            .streams
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(open) = streams.get(collection) {
            return open.clone();
        }
        let (open_tx, open_rx) = watch::channel(false);
        if *self.stop.borrow() {
            return open_rx;
        }
        streams.insert(collection.to_string(), open_rx.clone());
        let pump = Pump {
            collection: self.db.collection::<Document>(collection),
            name: collection.to_string(),
            feed: self.feed.clone(),
            open: open_tx,
            stop: self.stop.subscribe(),
            restart_delay: self.restart_delay,
        };
        tracing::debug!(collection, "watching collection through a change stream");
        let task = self.runtime.spawn(pump.run());
        self.tasks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(task);
        open_rx
    }

    /// Collections with a stream (open or reopening).
    pub fn collections(&self) -> Vec<String> {
        let streams = self
            .streams
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut names: Vec<String> = streams.keys().cloned().collect();
        names.sort();
        names
    }

    /// Signals every pump to stop (without waiting).
    pub fn signal_stop(&self) {
        self.stop.send_replace(true);
    }

    /// Stops every pump and waits (bounded) for them to finish.
    pub async fn stop(&self) {
        self.signal_stop();
        let tasks: Vec<JoinHandle<()>> = std::mem::take(
            &mut *self
                .tasks
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        for task in tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(2), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

struct Pump {
    collection: Collection<Document>,
    name: String,
    feed: Weak<ChangeFeed>,
    open: watch::Sender<bool>,
    stop: watch::Receiver<bool>,
    restart_delay: Duration,
}

enum Ended {
    Stopped,
    /// Reopen from `from`: at once (`now`) or after the back-off delay. `was_open`
    /// resets the back-off (the stream had worked).
    Reopen {
        from: Origin,
        now: bool,
        was_open: bool,
    },
}

impl Pump {
    async fn run(mut self) {
        let mut start = Origin::Now;
        let mut delay = self.restart_delay;
        loop {
            if *self.stop.borrow() {
                return;
            }
            match self.open_and_follow(start).await {
                Ended::Stopped => return,
                Ended::Reopen {
                    from,
                    now,
                    was_open,
                } => {
                    self.open.send_replace(false);
                    start = from;
                    if was_open {
                        delay = self.restart_delay;
                    }
                    if !now {
                        tracing::warn!(collection = %self.name, "change stream reopens in {delay:?}");
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => {}
                            _ = self.stop.changed() => return,
                        }
                        delay = (delay * 2).min(MAX_RESTART_DELAY);
                    }
                }
            }
        }
    }

    /// Opens the stream from `start` and publishes until it fails, ends or is stopped.
    async fn open_and_follow(&mut self, start: Origin) -> Ended {
        let watch = self
            .collection
            .watch()
            .full_document(FullDocumentType::UpdateLookup);
        let watch = match &start {
            Origin::Now => watch,
            Origin::ResumeAfter(token) => watch.resume_after(token.clone()),
            Origin::StartAfter(token) => watch.start_after(token.clone()),
        };
        let opened = tokio::select! {
            opened = watch => opened,
            _ = self.stop.changed() => return Ended::Stopped,
        };
        let mut stream = match opened {
            Ok(stream) => stream,
            Err(err) => {
                let code = server_code(&err);
                let history_lost = matches!(
                    code,
                    Some(
                        codes::INVALID_RESUME_TOKEN
                            | codes::CHANGE_STREAM_HISTORY_LOST
                            | codes::CHANGE_STREAM_FATAL_ERROR
                    )
                );
                if history_lost && !matches!(start, Origin::Now) {
                    tracing::warn!(
                        collection = %self.name, %err,
                        "change stream cannot resume from its token; starting from now (changes in between produce no events)"
                    );
                    self.bump();
                    return Ended::Reopen {
                        from: Origin::Now,
                        now: true,
                        was_open: false,
                    };
                }
                tracing::warn!(collection = %self.name, %err, "change stream could not be opened");
                return Ended::Reopen {
                    from: start,
                    now: false,
                    was_open: false,
                };
            }
        };
        if !matches!(start, Origin::Now) {
            tracing::info!(collection = %self.name, "change stream reopened from its resume token");
        }
        self.open.send_replace(true);
        let mut last = start;
        loop {
            let next = tokio::select! {
                next = stream.next() => next,
                _ = self.stop.changed() => return Ended::Stopped,
            };
            match next {
                Some(Ok(event)) => {
                    let token = event.id.clone();
                    if matches!(event.operation_type, OperationType::Invalidate) {
                        // The collection was dropped or renamed; the server closes
                        // this stream. Follow the collection's next life at once.
                        self.bump();
                        return Ended::Reopen {
                            from: Origin::StartAfter(token),
                            now: true,
                            was_open: true,
                        };
                    }
                    self.deliver(event);
                    last = Origin::ResumeAfter(stream.resume_token().unwrap_or(token));
                }
                Some(Err(err)) => {
                    // The driver already retried once for resumable errors.
                    tracing::warn!(collection = %self.name, %err, "change stream failed");
                    let from = stream
                        .resume_token()
                        .map(Origin::ResumeAfter)
                        .unwrap_or(last);
                    return Ended::Reopen {
                        from,
                        now: false,
                        was_open: true,
                    };
                }
                None => {
                    tracing::warn!(collection = %self.name, "change stream ended");
                    let from = stream
                        .resume_token()
                        .map(Origin::ResumeAfter)
                        .unwrap_or(last);
                    return Ended::Reopen {
                        from,
                        now: false,
                        was_open: true,
                    };
                }
            }
        }
    }

    fn bump(&self) {
        if let Some(feed) = self.feed.upgrade() {
            feed.bump(&self.name);
        }
    }

    fn deliver(&self, event: ChangeStreamEvent<Document>) {
        let Some(feed) = self.feed.upgrade() else {
            return;
        };
        let operation = match event.operation_type {
            OperationType::Insert => ChangeOperation::Insert,
            OperationType::Update => ChangeOperation::Update,
            OperationType::Replace => ChangeOperation::Replace,
            OperationType::Delete => ChangeOperation::Delete,
            // The collection (or database) went away: no document event, but caches
            // must reload.
            OperationType::Drop | OperationType::Rename | OperationType::DropDatabase => {
                feed.bump(&self.name);
                return;
            }
            _ => return,
        };
        feed.publish(ChangeEvent {
            collection: self.name.clone(),
            operation,
            document_key: key_id(event.document_key),
            // Deletes carry no document (pre-images are not enabled).
            full_document: event.full_document,
        });
    }
}
