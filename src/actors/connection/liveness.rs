//! The connection's timers: once a second the slow-client, idle and sign-in checks;
//! every ping interval the server ping, token refresh and the session's user check.

use std::time::Duration;

use actix::prelude::*;

use super::ConnectionActor;
use crate::actors::messages::SessionUpdate;
use crate::auth::token::unix_now;
use crate::error::OpenCoreError;
use crate::proto::{PingRequest, RefreshToken};
use crate::protocol::envelope::{error_reply, push};
use crate::services::Counters;

impl ConnectionActor {
    /// Once a second: slow clients, idle and unauthenticated connections.
    pub(super) fn housekeeping(&mut self, ctx: &mut Context<Self>) {
        // The writer drains without telling the actor: refresh the admin view's figure.
        self.stats.outbound_bytes.store(
            self.outbound.queued_bytes() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        let limits = &self.services.config.limits;
        if self.outbound.queued_bytes() <= self.tier.max_outbound_bytes {
            self.over_limit_since = None;
        } else if let Some(since) = self.over_limit_since {
            if since.elapsed() >= limits.slow_client_grace {
                tracing::warn!(connection = self.id, peer = %self.peer, queued = self.outbound.queued_bytes(),
                    "closing slow client: outbound queue over its limit for too long");
                Counters::bump(&self.services.counters.slow_client_disconnects);
                return ctx.stop();
            }
        }
        if !limits.idle_timeout.is_zero() && self.last_inbound.elapsed() >= limits.idle_timeout {
            tracing::info!(connection = self.id, peer = %self.peer, "closing idle connection");
            return ctx.stop();
        }
        if !limits.signin_timeout.is_zero()
            && !self.tier.signed_in
            && self.opened.elapsed() >= limits.signin_timeout
        {
            tracing::info!(connection = self.id, peer = %self.peer, "closing connection that never signed in");
            let err = OpenCoreError::SigninTimeout(limits.signin_timeout.as_secs());
            self.send(error_reply("", &err));
            ctx.stop();
        }
    }

    /// Every ping interval: ping clients that asked for it, refresh tokens about to expire
    /// or retired by a password change (so a client that changed its own password holds
    /// a working token again), close sessions whose user is gone.
    pub(super) fn keepalive(&mut self, ctx: &mut Context<Self>) {
        let Some((ping, expires, session_user)) = self
            .session
            .as_ref()
            .map(|s| (s.ping, s.expires, s.user.clone()))
        else {
            return;
        };
        if ping {
            self.send(push("ping", &PingRequest {}));
        }
        let short_ttl = self.services.config.short_token_ttl;
        let refresh_before = Duration::from_secs(60).min(short_ttl / 2).as_secs();
        let near_expiry = expires.saturating_sub(unix_now()) <= refresh_before;
        if self.refreshing {
            return;
        }
        self.refreshing = true;
        let services = self.services.clone();
        async move {
            // `None`: close; `Some(None)`: nothing to do (a cached lookup).
            let user = services
                .directory()
                .current(&session_user)
                .await
                .ok()
                .flatten()?;
            if !near_expiry && user.token_generation == session_user.token_generation {
                return Some(None);
            }
            let (jwt, expires) = services.directory().issue_token(&user, false).ok()?;
            Some(Some(SessionUpdate {
                user,
                jwt,
                expires,
                ping,
                agent: String::new(),
                version: String::new(),
            }))
        }
        .into_actor(self)
        .map(|update, actor, ctx| {
            actor.refreshing = false;
            match update {
                Some(None) => {}
                Some(Some(update)) => {
                    let message = RefreshToken {
                        username: update.user.username.clone(),
                        jwt: update.jwt.clone(),
                        user: Some(update.user.to_proto()),
                    };
                    actor.send(push("refreshtoken", &message));
                    actor.set_session(update);
                }
                None => {
                    tracing::info!(
                        connection = actor.id,
                        "closing connection: its user can no longer sign in"
                    );
                    ctx.stop();
                }
            }
        })
        .spawn(ctx);
    }
}
