//! Closes the connections of a user the moment that user is disabled or deleted, on
//! every node that sees the change (the `users` change feed; on MongoDB its change
//! stream carries other nodes' writes). The per-request identity check already refuses
//! such a user; this makes open sessions and their watches end at once instead of at
//! the next keepalive.

use std::sync::Arc;

use bson::Bson;
use tokio::sync::broadcast::error::RecvError;

use crate::auth::builtin::USERS_COLLECTION;
use crate::documents::metadata::id_text;
use crate::services::Services;
use crate::store::{ChangeEvent, ChangeOperation};

/// Starts following `users`; runs until the store's feed closes.
pub fn start(services: Arc<Services>) -> tokio::task::JoinHandle<()> {
    let mut subscription = services.store.changes().subscribe(USERS_COLLECTION);
    tokio::spawn(async move {
        loop {
            match subscription.recv().await {
                Ok(event) => revoke(&services, &event),
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "users change feed lagged; checking every session");
                    sweep(&services).await;
                }
                Err(RecvError::Closed) => return,
            }
        }
    })
}

fn revoke(services: &Services, event: &ChangeEvent) {
    let gone = match event.operation {
        ChangeOperation::Delete => true,
        ChangeOperation::Update | ChangeOperation::Replace => event
            .full_document
            .as_ref()
            .is_some_and(|user| matches!(user.get("disabled"), Some(Bson::Boolean(true)))),
        _ => false,
    };
    if !gone {
        return;
    }
    let id = id_text(&event.document_key);
    let closed = services.connections.close_user(&id);
    if closed > 0 {
        tracing::info!(user = %id, closed, "closed the connections of a disabled or deleted user");
    }
}

/// After missed events: close every session whose user can no longer sign in.
async fn sweep(services: &Services) {
    let mut users: Vec<String> = services
        .connections
        .list()
        .into_iter()
        .filter_map(|info| info.user.map(|u| u.id))
        .collect();
    users.sort();
    users.dedup();
    for id in users {
        match services.directory().user_by_id(&id).await {
            Ok(Some(user)) if !user.disabled => {}
            Ok(_) => {
                services.connections.close_user(&id);
            }
            Err(err) => tracing::warn!(user = %id, %err, "could not check a session's user"),
        }
    }
}
