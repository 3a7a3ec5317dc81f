//! The change-stream pump: one MongoDB change stream per collection in use per node,
//! each feeding the shared `ChangeFeed`.
//!
//! * A collection is followed while the `ChangeFeed` says it is in use (through its
//!   watch hook: a subscriber, a generation read, or `users`, pinned by the store).
//!   `Pumps::ensure` keeps one entry per collection name under a mutex, so a
//!   collection never gets a second stream, however many subscribers.
//! * When the last subscriber of an unpinned collection leaves, the unwatch hook calls
//!   `Pumps::release`: under the same mutex it re-checks that the collection is still
//!   unused (a subscriber may have arrived meanwhile) and closes the stream; its entry
//!   leaves `streams`, so the next subscriber opens a fresh one (from "now").
//! * Only the stream publishes events, so each change (from this node or another)
//!   becomes exactly one `ChangeEvent` here. The store's own acknowledged writes only
//!   bump the generation, so caches see them without waiting for the stream.
//! * Drop, rename (away) and dropDatabase end the collection: one `Drop` event. Update
//!   events list the top-level fields their `updateDescription` touched.
//! * Deletes: without pre-images the server sends no document. The documents layer
//!   writes the deleted version to `<collection>_hist` before deleting, so the pump
//!   takes the newest record's `item` (bounded by `HISTORY_LOOKUP_TIMEOUT`; on failure
//!   or without a record the event still goes out, without a document).
//! * A failed stream is reopened after a delay (doubling up to a cap) from the last
//!   resume token, so no change is lost or repeated. After an `invalidate` (collection
//!   dropped or renamed) it starts again after that event (`startAfter`). When the
//!   server no longer has the token's history it starts from now, bumps the
//!   generation (caches reload) and logs that events may have been missed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bson::{doc, Bson, Document};
use futures_util::StreamExt;
use mongodb::change_stream::event::{
    ChangeStreamEvent, OperationType, ResumeToken, UpdateDescription,
};
use mongodb::options::FullDocumentType;
use mongodb::{Collection, Database};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::convert::{codes, key_id, server_code};
use crate::store::names::{history_of, is_history};
use crate::store::{ChangeEvent, ChangeFeed, ChangeOperation};

/// First delay before reopening a failed stream; doubles up to `MAX_RESTART_DELAY`.
pub const RESTART_DELAY: Duration = Duration::from_millis(500);
const MAX_RESTART_DELAY: Duration = Duration::from_secs(10);
/// How long a delete event waits for its document from `<collection>_hist`: the pump
/// delivers nothing else meanwhile, so a slow server must not hold it up for long.
const HISTORY_LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

pub struct Pumps {
    db: Database,
    feed: Weak<ChangeFeed>,
    runtime: tokio::runtime::Handle,
    streams: Mutex<HashMap<String, Stream>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    stop: watch::Sender<bool>,
    restart_delay: Duration,
}

/// A collection's pump as `Pumps` holds it.
struct Stream {
    /// True while the stream is open right now.
    open: watch::Receiver<bool>,
    /// Set to close this one pump (`release`).
    close: watch::Sender<bool>,
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
        if let Some(stream) = streams.get(collection) {
            return stream.open.clone();
        }
        let (open_tx, open_rx) = watch::channel(false);
        if *self.stop.borrow() {
            return open_rx;
        }
        let (close_tx, close_rx) = watch::channel(false);
        streams.insert(
            collection.to_string(),
            Stream {
                open: open_rx.clone(),
                close: close_tx,
            },
        );
        let history = (!is_history(collection))
            .then(|| self.db.collection::<Document>(&history_of(collection)));
        let pump = Pump {
            collection: self.db.collection::<Document>(collection),
            history,
            name: collection.to_string(),
            feed: self.feed.clone(),
            open: open_tx,
            signals: Signals {
                all: self.stop.subscribe(),
                this: close_rx,
            },
            restart_delay: self.restart_delay,
        };
        tracing::debug!(collection, "watching collection through a change stream");
        let task = self.runtime.spawn(pump.run());
        let mut tasks = self
            .tasks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Streams come and go with their subscribers: forget the finished ones.
        tasks.retain(|task| !task.is_finished());
        tasks.push(task);
        open_rx
    }

    /// Closes the stream of `collection` unless the feed says it is in use again. The
    /// check runs under the lock `ensure` takes, so a subscriber arriving meanwhile
    /// either finds this stream kept or starts a new one after it.
    pub fn release(&self, collection: &str) {
        let mut streams = self
            .streams
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if self
            .feed
            .upgrade()
            .is_some_and(|feed| feed.in_use(collection))
        {
            return;
        }
        if let Some(stream) = streams.remove(collection) {
            tracing::debug!(collection, "closing the change stream: no subscribers left");
            stream.close.send_replace(true);
        }
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

    /// Pump tasks not finished yet (closed streams end theirs).
    #[cfg(test)]
    pub fn running_tasks(&self) -> usize {
        self.tasks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .filter(|task| !task.is_finished())
            .count()
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

/// What ends a pump: every pump stopping (store closed) or this one closing.
struct Signals {
    all: watch::Receiver<bool>,
    this: watch::Receiver<bool>,
}

impl Signals {
    fn is_set(&self) -> bool {
        *self.all.borrow() || *self.this.borrow()
    }

    /// Resolves once either is set (or its sender is gone: nobody can run this pump).
    async fn wait(&mut self) {
        tokio::select! {
            _ = self.all.wait_for(|stop| *stop) => {}
            _ = self.this.wait_for(|close| *close) => {}
        }
    }
}

struct Pump {
    collection: Collection<Document>,
    /// `<collection>_hist`, where deleted documents' last versions are (None for a
    /// history collection itself).
    history: Option<Collection<Document>>,
    name: String,
    feed: Weak<ChangeFeed>,
    open: watch::Sender<bool>,
    signals: Signals,
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
            if self.signals.is_set() {
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
                            _ = self.signals.wait() => return,
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
            biased;
            _ = self.signals.wait() => return Ended::Stopped,
            opened = watch => opened,
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
            // Biased: once closed, no further event is taken (a fresh stream for the
            // next subscriber starts from "now", so nothing is delivered twice).
            let next = tokio::select! {
                biased;
                _ = self.signals.wait() => return Ended::Stopped,
                next = stream.next() => next,
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
                    self.deliver(event).await;
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

    async fn deliver(&self, event: ChangeStreamEvent<Document>) {
        let operation = match event.operation_type {
            OperationType::Insert => ChangeOperation::Insert,
            OperationType::Update => ChangeOperation::Update,
            OperationType::Replace => ChangeOperation::Replace,
            OperationType::Delete => ChangeOperation::Delete,
            // The collection (or its database) went away; publishing bumps the
            // generation too, so caches reload.
            OperationType::Drop | OperationType::Rename | OperationType::DropDatabase => {
                ChangeOperation::Drop
            }
            _ => return,
        };
        let document_key = match operation {
            ChangeOperation::Drop => Bson::Null,
            _ => key_id(event.document_key),
        };
        let updated_fields = match operation {
            ChangeOperation::Update => event.update_description.map(top_level_fields),
            _ => None,
        };
        let full_document = match (operation, event.full_document) {
            (ChangeOperation::Drop, _) => None,
            (ChangeOperation::Delete, None) => self.last_version(&document_key).await,
            (_, document) => document,
        };
        let Some(feed) = self.feed.upgrade() else {
            return;
        };
        feed.publish(ChangeEvent {
            collection: self.name.clone(),
            operation,
            document_key,
            full_document,
            updated_fields,
        });
    }

    /// The deleted document's last version from `<collection>_hist` (see the module
    /// docs); None when there is no record or it cannot be read in time.
    async fn last_version(&self, id: &Bson) -> Option<Document> {
        let history = self.history.as_ref()?;
        let lookup = history
            .find_one(doc! {"id": id.clone()})
            .sort(doc! {"_version": -1});
        match tokio::time::timeout(HISTORY_LOOKUP_TIMEOUT, lookup).await {
            Ok(Ok(record)) => record.and_then(|mut record| match record.remove("item") {
                Some(Bson::Document(item)) => Some(item),
                _ => None,
            }),
            Ok(Err(err)) => {
                tracing::warn!(collection = %self.name, %err, "delete event goes out without its document: the history lookup failed");
                None
            }
            Err(_) => {
                tracing::warn!(collection = %self.name, "delete event goes out without its document: the history lookup timed out");
                None
            }
        }
    }
}

/// The top-level fields an update set, removed or truncated (`a` of `a.b.0`), each once.
pub(super) fn top_level_fields(description: UpdateDescription) -> Vec<String> {
    let truncated = description
        .truncated_arrays
        .into_iter()
        .flatten()
        .map(|array| array.field);
    let paths = description
        .updated_fields
        .into_iter()
        .map(|(path, _)| path)
        .chain(description.removed_fields)
        .chain(truncated);
    let mut fields: Vec<String> = Vec::new();
    for path in paths {
        let top = path.split('.').next().unwrap_or(&path);
        if !fields.iter().any(|field| field == top) {
            fields.push(top.to_string());
        }
    }
    fields
}
