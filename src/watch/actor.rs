//! One actor per watch, a child of the connection that made it. It receives the
//! prepared events of its collection's relay, keeps those the watcher may read and
//! that match its paths, and pushes them to the connection as `watchevent`.
//!
//! Read rights are checked per event against the watcher's current roles: when the
//! `users` collection changed since the last check (its generation moved), the user is
//! looked up again before the next event is judged, so a grant or a revocation applies
//! to the events after it.
//!
//! The receive loop starts on `Begin`, which the connection sends after the `watch`
//! reply is queued: the client always learns the watch id before its first event.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use super::feeds::{Prepared, PreparedChange, Relay, WatchCounters};
use super::paths::PathFilter;
use crate::acl::{has_right, AclLocation, Principals, Right};
use crate::auth::builtin::USERS_COLLECTION;
use crate::auth::ResolvedUser;
use crate::connections::{Control, Push, StopChild};
use crate::documents::state::DocumentState;
use crate::proto::{Envelope, WatchEvent};
use crate::store::ChangeOperation;
use prost::{Message as _, Name};

/// What a watch needs besides its relay.
pub struct WatchSettings {
    pub id: String,
    pub user: Arc<ResolvedUser>,
    pub paths: PathFilter,
    pub location: AclLocation,
    pub documents: Arc<DocumentState>,
    /// The owning connection: its id (for logs), where events go, and how a watch
    /// that fell behind closes it. (Only these two: a watch costs memory per recipient.)
    pub connection_id: u64,
    pub push: Recipient<Push>,
    pub control: Recipient<Control>,
    pub counters: Arc<WatchCounters>,
}

pub struct WatchActor {
    settings: Arc<WatchSettings>,
    /// Held so the collection's relay (and store subscription) lives while we do.
    _relay: Arc<Relay>,
    receiver: Option<broadcast::Receiver<Arc<Prepared>>>,
}

/// Start delivering (sent once the `watch` reply is on its way).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Begin;

impl WatchActor {
    /// Subscribes at once, so no event committed after the `watch` reply is missed.
    pub fn new(settings: WatchSettings, relay: Arc<Relay>) -> WatchActor {
        let receiver = relay.subscribe();
        WatchActor {
            settings: Arc::new(settings),
            _relay: relay,
            receiver: Some(receiver),
        }
    }
}

impl Actor for WatchActor {
    type Context = Context<Self>;
}

impl Handler<StopChild> for WatchActor {
    type Result = ();

    fn handle(&mut self, _: StopChild, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<Begin> for WatchActor {
    type Result = ();

    fn handle(&mut self, _: Begin, ctx: &mut Context<Self>) {
        let Some(receiver) = self.receiver.take() else {
            return;
        };
        let settings = self.settings.clone();
        deliver(settings, receiver)
            .into_actor(self)
            .map(|ended, actor, ctx| {
                let settings = &actor.settings;
                match ended {
                    Ended::Lagged(missed) => {
                        tracing::warn!(connection = settings.connection_id, watch = %settings.id, missed,
                            "closing connection: its watch fell behind the change feed");
                        settings.counters.lag_disconnects.fetch_add(1, Ordering::Relaxed);
                        settings.control.do_send(Control::Close);
                    }
                    Ended::FeedClosed => {
                        tracing::debug!(watch = %settings.id, "change feed closed");
                    }
                }
                ctx.stop();
            })
            .spawn(ctx);
    }
}

enum Ended {
    Lagged(u64),
    FeedClosed,
}

/// The receive loop: until the feed closes or we fall behind.
async fn deliver(
    settings: Arc<WatchSettings>,
    mut receiver: broadcast::Receiver<Arc<Prepared>>,
) -> Ended {
    let documents = &settings.documents;
    let mut user = settings.user.clone();
    // Built on the first event: an idle watch holds no copy of its user's role ids.
    let mut principals: Option<Principals> = None;
    let mut users_generation = documents.store.changes().generation(USERS_COLLECTION);
    let mut allowed = true;
    let id_field = WatchEvent {
        id: settings.id.clone(),
        ..Default::default()
    }
    .encode_to_vec();
    loop {
        let prepared = match receiver.recv().await {
            Ok(prepared) => prepared,
            Err(RecvError::Lagged(missed)) => return Ended::Lagged(missed),
            Err(RecvError::Closed) => return Ended::FeedClosed,
        };
        let change = match prepared.as_ref() {
            Prepared::Change(change) => change,
            Prepared::Lost(missed) => return Ended::Lagged(*missed),
        };
        if change.heartbeat_only {
            continue;
        }
        let generation = documents.store.changes().generation(USERS_COLLECTION);
        if generation != users_generation {
            users_generation = generation;
            // Boxed: the lookup's state would otherwise sit in every idle watch.
            match Box::pin(documents.directory.current(&user)).await {
                Ok(Some(current)) => {
                    principals = None;
                    user = current;
                    allowed = true;
                }
                // Deleted or disabled: its connections are being closed; deliver nothing.
                Ok(None) => allowed = false,
                // The directory could not be read: keep the rights we knew.
                Err(err) => {
                    tracing::warn!(watch = %settings.id, %err, "could not refresh a watcher's roles")
                }
            }
        }
        let principals = principals.get_or_insert_with(|| Principals::of(&user));
        if !allowed || !visible(&settings, principals, change) {
            continue;
        }
        settings
            .push
            .do_send(Push(event_envelope(&id_field, change)));
        settings.counters.delivered.fetch_add(1, Ordering::Relaxed);
    }
}

/// The `watchevent` for one watch: its encoded `id` field, then the shared rest.
fn event_envelope(id_field: &[u8], change: &PreparedChange) -> Envelope {
    let mut value = Vec::with_capacity(id_field.len() + change.encoded.len());
    value.extend_from_slice(id_field);
    value.extend_from_slice(&change.encoded);
    Envelope {
        command: "watchevent".to_string(),
        data: Some(prost_types::Any {
            type_url: WatchEvent::type_url(),
            value,
        }),
        ..Default::default()
    }
}

/// Whether this watcher may see this change and its paths select it.
fn visible(settings: &WatchSettings, principals: &Principals, change: &PreparedChange) -> bool {
    if change.operation == ChangeOperation::Drop {
        // No document to judge: everyone watching the collection learns it is gone.
        return true;
    }
    let Some(document) = change.document.as_ref() else {
        // A delete whose last version is unknown: only admins see its bare `_id`.
        return principals.admin;
    };
    has_right(principals, document, Right::Read, settings.location)
        && (settings.paths.is_empty() || settings.paths.matches(change.wrapped()))
}

/// Stops a watch from outside its connection (e.g. after a failed attach).
pub fn stop(watch: &Addr<WatchActor>) {
    watch.do_send(StopChild);
}
