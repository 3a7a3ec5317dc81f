//! `watch`: change notifications for one collection, filtered by the caller's read
//! right and optional JSONPath `paths`. Starts a watch actor owned by the connection;
//! its events begin after this reply. Needs a streaming connection.

use std::time::Duration;

use actix::Actor;
use rand::distr::{Alphanumeric, SampleString};

use super::{CommandContext, Outcome};
use crate::connections::ChildKind;
use crate::error::OpenCoreError;
use crate::proto::{WatchRequest, WatchResponse};
use crate::watch::{actor, Begin, PathFilter, WatchActor, WatchSettings};

/// How long `watch` waits for the store's change feed of the collection to open.
const FEED_READY_WAIT: Duration = Duration::from_secs(10);

/// Watch ids are random, so one connection cannot guess (or collide with) another's.
const WATCH_ID_LEN: usize = 16;

pub async fn run(ctx: CommandContext) -> Result<Outcome, OpenCoreError> {
    let request: WatchRequest = ctx.request(true)?;
    let connection = ctx.connection()?.clone();
    let paths = PathFilter::compile(&request.paths)?;
    let scope = ctx.scope(&request.collectionname).await?;
    let services = &ctx.services;
    let relay = services.feeds.join(
        &services.store,
        &scope.collection,
        services.config.limits.max_watched_collections,
    )?;
    // Every change committed after the reply must produce an event: on MongoDB that
    // needs the collection's change stream open.
    if !services
        .store
        .feed_ready(&scope.collection, FEED_READY_WAIT)
        .await
    {
        return Err(OpenCoreError::FeedUnavailable(scope.collection.clone()));
    }
    let id = Alphanumeric.sample_string(&mut rand::rng(), WATCH_ID_LEN);
    let watch = WatchActor::new(
        WatchSettings {
            id: id.clone(),
            user: scope.user.clone(),
            paths,
            location: scope.location(),
            documents: services.documents.clone(),
            connection_id: connection.id,
            push: connection.pusher(),
            control: connection.control(),
            counters: services.feeds.counters.clone(),
        },
        relay,
    )
    .start();
    if let Err(err) = connection
        .attach(ChildKind::Watch, id.clone(), watch.clone().recipient())
        .await
    {
        actor::stop(&watch);
        return Err(err);
    }
    tracing::debug!(connection = connection.id, watch = %id, collection = %scope.collection, "watch started");
    let mut outcome = ctx.reply(&WatchResponse { id });
    outcome.after_reply = Some(Box::new(move || watch.do_send(Begin)));
    Ok(outcome)
}
