//! The connection actor: one per client connection, identical for every transport.
//!
//! It turns inbound bytes into envelopes (stream transports), restores the client's
//! `seq` order, applies per-connection limits (size, in-flight, rate), attaches the
//! claimed identity, and hands each request to its worker's supervisor. Replies and
//! server pushes come back here to be numbered and queued for the writer.

pub mod outbound;
pub mod reorder;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use futures_util::Stream;
use prost::Message as _;

use crate::actors::messages::{
    Completed, Control, Dispatch, Identity, Push, ReplyTo, Request, SessionUpdate,
};
use crate::actors::supervisor::Supervisor;
use crate::auth::token::unix_now;
use crate::commands::is_silent;
use crate::error::OpenCoreError;
use crate::policy::rate_limit::RateLimiter;
use crate::proto::{Envelope, PingRequest, RefreshToken};
use crate::protocol::envelope::{error_reply, push};
use crate::protocol::frame::FrameDecoder;
use crate::services::{ConnectionEntry, Counters, Services, TransportKind};
use outbound::{Outbound, Sink};
use reorder::SeqWindow;

/// What transports feed into a connection.
pub enum Inbound {
    /// Raw bytes of a length-prefixed stream (WebSocket, TCP, unix socket).
    Bytes(Bytes),
    /// A whole envelope (gRPC).
    Envelope(Envelope),
    /// The transport failed; the connection ends.
    Failed(String),
}

impl Message for Inbound {
    type Result = ();
}

pub struct ConnectionActor {
    id: u64,
    transport: TransportKind,
    peer: Arc<str>,
    services: Arc<Services>,
    supervisor: Addr<Supervisor>,
    decoder: FrameDecoder,
    window: Option<SeqWindow>,
    session: Option<SessionUpdate>,
    in_flight: usize,
    rate: RateLimiter,
    outbound: Outbound,
    replies: Option<Recipient<Completed>>,
    inbound: Option<SpawnHandle>,
    opened: Instant,
    last_inbound: Instant,
    over_limit_since: Option<Instant>,
    draining: bool,
    refreshing: bool,
}

impl ConnectionActor {
    /// Starts a connection actor on the current worker thread.
    pub fn start<S>(
        services: Arc<Services>,
        transport: TransportKind,
        peer: String,
        inbound: S,
        sink: Sink,
    ) -> Addr<Self>
    where
        S: Stream<Item = Inbound> + 'static,
    {
        let limits = &services.config.limits;
        let actor = ConnectionActor {
            id: services.next_connection_id(),
            transport,
            peer: peer.into(),
            supervisor: Supervisor::local(&services),
            decoder: FrameDecoder::new(limits.max_message_size),
            window: transport
                .is_sequenced()
                .then(|| SeqWindow::new(limits.seq_window)),
            session: None,
            in_flight: 0,
            rate: RateLimiter::new(limits.rate_limit),
            outbound: Outbound::default(),
            replies: None,
            inbound: None,
            opened: Instant::now(),
            last_inbound: Instant::now(),
            over_limit_since: None,
            draining: false,
            refreshing: false,
            services,
        };
        ConnectionActor::create(move |ctx| {
            let mut actor = actor;
            actor.inbound = Some(ctx.add_stream(inbound));
            let writer = actor.outbound.clone();
            let addr = ctx.address();
            actix::spawn(async move {
                if let Err(err) = writer.run_writer(sink).await {
                    tracing::debug!(%err, "connection writer ended");
                    addr.do_send(Control::Close);
                }
            });
            actor
        })
    }

    fn send(&mut self, mut envelope: Envelope) {
        // Never send more than the client can receive: an oversized reply becomes an
        // error for its request; an oversized push is dropped.
        let mut size = envelope.encoded_len();
        let limit = self
            .transport
            .max_outbound_envelope(self.services.config.limits.max_message_size);
        if size > limit {
            if envelope.rid.is_empty() {
                tracing::warn!(connection = self.id, command = %envelope.command, size, "dropping push larger than the client accepts");
                return;
            }
            let err = OpenCoreError::ReplyTooLarge { size, limit };
            envelope = error_reply(&envelope.rid, &err);
            size = envelope.encoded_len();
        }
        let queued = self.outbound.enqueue(envelope, size);
        if queued > self.services.config.limits.max_outbound_bytes
            && self.over_limit_since.is_none()
        {
            self.over_limit_since = Some(Instant::now());
        }
    }

    /// A protocol violation: tell the client why (when possible), then close at once.
    fn violation(&mut self, reason: String, ctx: &mut Context<Self>) {
        tracing::warn!(connection = self.id, transport = self.transport.as_str(), peer = %self.peer, %reason, "closing connection");
        Counters::bump(&self.services.counters.protocol_violations);
        self.send(error_reply("", &OpenCoreError::BadRequest(reason)));
        ctx.stop();
    }

    fn on_bytes(&mut self, bytes: Bytes, ctx: &mut Context<Self>) {
        self.decoder.extend(&bytes);
        loop {
            match self.decoder.next_frame() {
                Ok(Some(frame)) => match Envelope::decode(frame) {
                    Ok(envelope) => self.on_envelope(envelope, ctx),
                    Err(err) => return self.violation(format!("undecodable envelope: {err}"), ctx),
                },
                Ok(None) => return,
                Err(crate::protocol::frame::FrameError::TooLarge { size, limit }) => {
                    let err = OpenCoreError::MessageTooLarge { size, limit };
                    return self.violation(err.to_string(), ctx);
                }
                Err(err) => return self.violation(err.to_string(), ctx),
            }
            if !ctx.state().alive() {
                return;
            }
        }
    }

    fn on_envelope(&mut self, envelope: Envelope, ctx: &mut Context<Self>) {
        let Some(window) = self.window.as_mut() else {
            return self.process(envelope, ctx);
        };
        if let Err(err) = window.accept(envelope) {
            return self.violation(err.to_string(), ctx);
        }
        while let Some(ready) = self.window.as_mut().and_then(SeqWindow::pop_ready) {
            self.process(ready, ctx);
        }
    }

    /// One envelope in client order: limits, identity, dispatch.
    fn process(&mut self, mut envelope: Envelope, _ctx: &mut Context<Self>) {
        self.last_inbound = Instant::now();
        if envelope.command.bytes().any(|b| b.is_ascii_uppercase()) {
            envelope.command = envelope.command.to_ascii_lowercase();
        }
        if is_silent(&envelope.command) {
            return;
        }
        // Envelopes with a `rid` answer something the server sent (stream chunks of an
        // upload, replies to server requests); none expects a reply.
        if !envelope.rid.is_empty() {
            return;
        }
        let limits = &self.services.config.limits;
        let rejection = if self.draining {
            Some(OpenCoreError::ShuttingDown)
        } else if !self.rate.try_acquire() {
            Some(OpenCoreError::RateLimited(limits.rate_limit))
        } else if self.in_flight >= limits.max_in_flight {
            Some(OpenCoreError::TooManyInFlight(limits.max_in_flight))
        } else {
            None
        };
        if let Some(err) = rejection {
            Counters::bump(&self.services.counters.errors);
            return self.send(error_reply(&envelope.id, &err));
        }
        let identity = if !envelope.jwt.is_empty() {
            Identity::Token(std::mem::take(&mut envelope.jwt))
        } else {
            match &self.session {
                Some(session) => Identity::Session(session.user.clone()),
                None => Identity::Anonymous,
            }
        };
        let Some(replies) = self.replies.clone() else {
            return;
        };
        self.in_flight += 1;
        self.supervisor.do_send(Dispatch(Request {
            envelope,
            identity,
            peer: self.peer.clone(),
            reply_to: ReplyTo::Connection(replies),
            received: Instant::now(),
        }));
    }

    fn stop_reading(&mut self, ctx: &mut Context<Self>) {
        if let Some(handle) = self.inbound.take() {
            ctx.cancel_future(handle);
        }
    }

    /// Once a second: slow clients, idle and unauthenticated connections.
    fn housekeeping(&mut self, ctx: &mut Context<Self>) {
        let limits = &self.services.config.limits;
        if self.outbound.queued_bytes() <= limits.max_outbound_bytes {
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
            && self.session.is_none()
            && self.opened.elapsed() >= limits.signin_timeout
        {
            tracing::info!(connection = self.id, peer = %self.peer, "closing connection that never signed in");
            ctx.stop();
        }
    }

    /// Every ping interval: ping clients that asked for it, refresh tokens about to expire
    /// or retired by a password change (so a client that changed its own password holds
    /// a working token again), close sessions whose user is gone.
    fn keepalive(&mut self, ctx: &mut Context<Self>) {
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
                .directory
                .current(&session_user)
                .await
                .ok()
                .flatten()?;
            if !near_expiry && user.token_generation == session_user.token_generation {
                return Some(None);
            }
            let (jwt, expires) = services.directory.issue_token(&user, false).ok()?;
            Some(Some(SessionUpdate {
                user,
                jwt,
                expires,
                ping,
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
                    actor.session = Some(update);
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

impl Actor for ConnectionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.replies = Some(ctx.address().recipient());
        Counters::bump(&self.services.counters.connections_opened);
        self.services.connections.insert(
            self.id,
            ConnectionEntry {
                transport: self.transport,
                peer: self.peer.to_string(),
                control: ctx.address().recipient(),
            },
        );
        ctx.run_interval(Duration::from_secs(1), Self::housekeeping);
        let ping_interval = self
            .services
            .config
            .limits
            .ping_interval
            .max(Duration::from_millis(100));
        ctx.run_interval(ping_interval, Self::keepalive);
        tracing::debug!(connection = self.id, transport = self.transport.as_str(), peer = %self.peer, "connected");
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.outbound.close();
        self.services.connections.remove(&self.id);
        Counters::bump(&self.services.counters.connections_closed);
        tracing::debug!(connection = self.id, "disconnected");
    }
}

impl StreamHandler<Inbound> for ConnectionActor {
    fn handle(&mut self, item: Inbound, ctx: &mut Context<Self>) {
        match item {
            Inbound::Bytes(bytes) => self.on_bytes(bytes, ctx),
            Inbound::Envelope(envelope) => self.on_envelope(envelope, ctx),
            Inbound::Failed(reason) => {
                tracing::debug!(connection = self.id, %reason, "transport failed");
                ctx.stop();
            }
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        // The client closed its side. Replies still in flight have nowhere to go.
        self.inbound = None;
        ctx.stop();
    }
}

impl Handler<Completed> for ConnectionActor {
    type Result = ();

    fn handle(&mut self, completed: Completed, ctx: &mut Context<Self>) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if let Some(session) = completed.session {
            self.session = Some(session);
        }
        if let Some(reply) = completed.reply {
            self.send(reply);
        }
        if self.draining && self.in_flight == 0 {
            ctx.stop();
        }
    }
}

impl Handler<Push> for ConnectionActor {
    type Result = ();

    fn handle(&mut self, Push(envelope): Push, _ctx: &mut Context<Self>) {
        self.send(envelope);
    }
}

impl Handler<Control> for ConnectionActor {
    type Result = ();

    fn handle(&mut self, control: Control, ctx: &mut Context<Self>) {
        match control {
            Control::Drain => {
                self.draining = true;
                self.stop_reading(ctx);
                if self.in_flight == 0 {
                    ctx.stop();
                }
            }
            Control::Close => ctx.stop(),
        }
    }
}
