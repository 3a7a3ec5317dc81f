//! The connection actor: one per client connection, identical for every transport.
//!
//! It turns inbound bytes into envelopes (stream transports), restores the client's
//! `seq` order, applies per-connection limits (size, in-flight, rate), attaches the
//! claimed identity, and hands each request to its worker's supervisor. Replies and
//! server pushes come back here to be numbered and queued for the writer. Its limits
//! are those of its tier (`policy::tier`): small until it signs in.
//!
//! It owns its children (watches, queue consumers, upload streams): commands attach
//! them through the connection's handle, and the connection stops every child when it
//! closes. Children are not requests and never count as in flight. Stream envelopes
//! of an upload (`rid` = the upload's id) are routed to its stream actor before any
//! dispatch, and a fast uploader pauses the reading (`uploads.rs`).

pub mod children;
mod liveness;
pub mod outbound;
pub mod reorder;
mod uploads;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use futures_util::Stream;
use prost::Message as _;

use crate::actors::messages::{Completed, Dispatch, Identity, ReplyTo, Request, SessionUpdate};
use crate::actors::supervisor::Supervisor;
use crate::commands::is_silent;
use crate::connections::{
    ActorGuard, Attach, ChildKind, ConnectionHandle, ConnectionInfo, ConnectionStats, Control,
    Detach, Push, PushTracked, RegistryEntry, TransportKind, UserRef,
};
use crate::error::OpenCoreError;
use crate::policy::admission::ConnectionPermit;
use crate::policy::rate_limit::RateLimiter;
use crate::policy::tier::Tier;
use crate::proto::Envelope;
use crate::protocol::envelope::error_reply;
use crate::protocol::frame::FrameDecoder;
use crate::services::{Counters, Services};
use crate::transports::ws_guard::FrameLimit;
use children::Children;
use outbound::{Outbound, Sink, Written};
use reorder::SeqWindow;

/// What transports feed into a connection.
pub enum Inbound {
    /// Raw bytes of a length-prefixed stream (WebSocket, TCP, unix socket).
    Bytes(Bytes),
    /// A whole envelope (gRPC).
    Envelope(Envelope),
    /// The transport refused a frame announcing `size` bytes, over the connection's limit.
    TooLarge(usize),
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
    /// The limits in force: before sign-in until a request ran as a known principal.
    tier: Tier,
    in_flight: usize,
    in_flight_bytes: usize,
    rate: RateLimiter,
    outbound: Outbound,
    replies: Option<Recipient<Completed>>,
    me: Option<Addr<ConnectionActor>>,
    /// Handed to every request, so commands can push and attach children.
    handle: Option<ConnectionHandle>,
    children: Children,
    /// Routes from `rid` to the stream actors of this connection's uploads.
    uploads: uploads::Uploads,
    inbound: Option<SpawnHandle>,
    opened: Instant,
    last_inbound: Instant,
    over_limit_since: Option<Instant>,
    draining: bool,
    refreshing: bool,
    /// Set once the connection is being closed for exceeding a limit.
    closing: bool,
    /// WebSocket only: the frame limit its transport enforces, raised with the tier.
    frame_limit: Option<FrameLimit>,
    /// This connection's slot under the connection caps; released when the actor is dropped.
    _permit: ConnectionPermit,
    /// Its actor-tree entry (set when started; removed with the actor).
    tree: Option<ActorGuard>,
    /// Numbers the admin view reads from the registry.
    stats: Arc<ConnectionStats>,
}

/// How a transport starts a connection actor.
pub struct Start<S> {
    pub transport: TransportKind,
    pub peer: String,
    pub inbound: S,
    pub sink: Sink,
    pub permit: ConnectionPermit,
    pub frame_limit: Option<FrameLimit>,
}

impl ConnectionActor {
    /// Starts a connection actor on the current worker thread.
    pub fn start<S>(services: Arc<Services>, start: Start<S>) -> Addr<Self>
    where
        S: Stream<Item = Inbound> + 'static,
    {
        let Start {
            transport,
            peer,
            inbound,
            sink,
            permit,
            frame_limit,
        } = start;
        let limits = &services.config.limits;
        let tier = Tier::before_signin(limits);
        if let Some(frame_limit) = &frame_limit {
            frame_limit.set(ws_frame_limit(&tier));
        }
        let write_timeout = limits.write_timeout;
        let actor = ConnectionActor {
            id: services.next_connection_id(),
            transport,
            peer: peer.into(),
            supervisor: Supervisor::local(&services),
            decoder: FrameDecoder::new(tier.max_message_size),
            window: transport
                .is_sequenced()
                .then(|| SeqWindow::new(tier.seq_window, tier.seq_window_bytes)),
            session: None,
            tier,
            in_flight: 0,
            in_flight_bytes: 0,
            rate: RateLimiter::new(limits.rate_limit),
            outbound: Outbound::default(),
            replies: None,
            me: None,
            handle: None,
            children: Children::default(),
            uploads: uploads::Uploads::default(),
            inbound: None,
            opened: Instant::now(),
            last_inbound: Instant::now(),
            over_limit_since: None,
            draining: false,
            refreshing: false,
            closing: false,
            frame_limit,
            _permit: permit,
            tree: None,
            stats: Arc::default(),
            services,
        };
        ConnectionActor::create(move |ctx| {
            let mut actor = actor;
            actor.inbound = Some(ctx.add_stream(inbound));
            let writer = actor.outbound.clone();
            let addr = ctx.address();
            actix::spawn(async move {
                if let Err(err) = writer.run_writer(sink, write_timeout).await {
                    tracing::debug!(%err, "connection writer ended");
                    addr.do_send(Control::Close);
                }
            });
            actor
        })
    }

    fn send(&mut self, envelope: Envelope) {
        self.send_tracked(envelope, None);
    }

    /// Queues an envelope; `written` (if any) learns when the writer handed it to the
    /// transport, or `false` at once when it is too large for the client.
    fn send_tracked(&mut self, mut envelope: Envelope, written: Option<Written>) {
        if self.closing {
            return;
        }
        // Never send more than the client can receive: an oversized reply becomes an
        // error for its request; an oversized push is dropped.
        let mut size = envelope.encoded_len();
        let limit = self
            .transport
            .max_outbound_envelope(self.services.config.limits.max_message_size);
        if size > limit {
            if envelope.rid.is_empty() {
                tracing::warn!(connection = self.id, command = %envelope.command, size, "dropping push larger than the client accepts");
                if let Some(written) = written {
                    let _ = written.send(false);
                }
                return;
            }
            let err = OpenCoreError::ReplyTooLarge { size, limit };
            envelope = error_reply(&envelope.rid, &err);
            size = envelope.encoded_len();
        }
        let queued = self.outbound.enqueue(envelope, size, written);
        self.stats
            .outbound_bytes
            .store(queued as u64, std::sync::atomic::Ordering::Relaxed);
        let limit = self.tier.max_outbound_bytes;
        if queued <= limit {
            return;
        }
        // Before sign-in there is no grace; after it, the grace never lets the queue
        // grow past twice its limit.
        if !self.tier.signed_in || queued > limit.saturating_mul(2) {
            return self.close_overflowing(queued);
        }
        if self.over_limit_since.is_none() {
            self.over_limit_since = Some(Instant::now());
        }
    }

    /// Closes at once, dropping what is queued: the client does not read its replies.
    fn close_overflowing(&mut self, queued: usize) {
        tracing::warn!(connection = self.id, peer = %self.peer, queued, limit = self.tier.max_outbound_bytes,
            signed_in = self.tier.signed_in, "closing client: outbound queue over its limit");
        Counters::bump(&self.services.counters.slow_client_disconnects);
        self.closing = true;
        self.outbound.discard();
        self.stop_self();
    }

    fn stop_self(&mut self) {
        if let Some(addr) = &self.me {
            addr.do_send(Control::Close);
        }
    }

    /// The client signed in (or used a token, or acts as guest): full limits from now on.
    fn enter_signed_in(&mut self) {
        if self.tier.signed_in {
            return;
        }
        self.tier = Tier::signed_in(&self.services.config.limits);
        self.decoder.set_max_frame(self.tier.max_message_size);
        if let Some(window) = self.window.as_mut() {
            window.set_limits(self.tier.seq_window, self.tier.seq_window_bytes);
        }
        if let Some(frame_limit) = &self.frame_limit {
            frame_limit.set(ws_frame_limit(&self.tier));
        }
    }

    /// A protocol violation: tell the client why (when possible), then close at once.
    fn violation(&mut self, reason: String, ctx: &mut Context<Self>) {
        tracing::warn!(connection = self.id, transport = self.transport.as_str(), peer = %self.peer, %reason, "closing connection");
        Counters::bump(&self.services.counters.protocol_violations);
        self.send(error_reply("", &OpenCoreError::BadRequest(reason)));
        ctx.stop();
    }

    /// An envelope (or frame) over the tier's size limit: error, then close.
    fn too_large(&mut self, size: usize, ctx: &mut Context<Self>) {
        let err = self.tier.too_large(&self.services.config.limits, size);
        tracing::warn!(connection = self.id, transport = self.transport.as_str(), peer = %self.peer, %err, "closing connection");
        Counters::bump(&self.services.counters.protocol_violations);
        self.send(error_reply("", &err));
        ctx.stop();
    }

    fn on_bytes(&mut self, bytes: Bytes, ctx: &mut Context<Self>) {
        self.decoder.extend(&bytes);
        loop {
            match self.decoder.next_frame() {
                Ok(Some(frame)) => {
                    let size = frame.len();
                    match Envelope::decode(frame) {
                        Ok(envelope) => self.on_envelope(envelope, size, ctx),
                        Err(err) => {
                            return self.violation(format!("undecodable envelope: {err}"), ctx)
                        }
                    }
                }
                Ok(None) => return,
                Err(crate::protocol::frame::FrameError::TooLarge { size, .. }) => {
                    return self.too_large(size, ctx);
                }
                Err(err) => return self.violation(err.to_string(), ctx),
            }
            if !ctx.state().alive() {
                return;
            }
        }
    }

    fn on_envelope(&mut self, envelope: Envelope, size: usize, ctx: &mut Context<Self>) {
        let Some(window) = self.window.as_mut() else {
            return self.process(envelope, size, ctx);
        };
        if let Err(err) = window.accept(envelope, size) {
            return self.violation(err.to_string(), ctx);
        }
        while let Some((ready, size)) = self.window.as_mut().and_then(SeqWindow::pop_ready) {
            self.process(ready, size, ctx);
            if self.closing {
                return;
            }
        }
    }

    /// One envelope in client order: limits, identity, dispatch.
    fn process(&mut self, mut envelope: Envelope, size: usize, ctx: &mut Context<Self>) {
        self.last_inbound = Instant::now();
        if envelope.command.bytes().any(|b| b.is_ascii_uppercase()) {
            envelope.command = envelope.command.to_ascii_lowercase();
        }
        if is_silent(&envelope.command) {
            return;
        }
        // Envelopes with a `rid` answer something the server sent (replies to server
        // requests) or belong to an upload's stream (routed to it here, before any
        // dispatch); none expects a reply.
        if !envelope.rid.is_empty() {
            return self.route_upload_piece(&envelope, ctx);
        }
        let limits = &self.services.config.limits;
        let rejection = if self.draining {
            Some(OpenCoreError::ShuttingDown)
        } else if !self.rate.try_acquire() {
            Some(OpenCoreError::RateLimited(limits.rate_limit))
        } else {
            self.tier
                .admit_request(limits, self.in_flight, self.in_flight_bytes, size)
                .err()
        };
        Counters::bump(&self.stats.requests);
        self.stats.touch();
        if let Some(err) = rejection {
            Counters::bump(&self.services.counters.errors);
            Counters::bump(&self.stats.errors);
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
        // An upload's stream follows its request at once: its route must exist before
        // the next envelope is read (the command gets the other end).
        let upload = if envelope.command == "upload" {
            self.uploads.open(&envelope.id)
        } else {
            None
        };
        self.in_flight += 1;
        self.in_flight_bytes += size;
        self.stats
            .in_flight
            .store(self.in_flight as u64, std::sync::atomic::Ordering::Relaxed);
        self.supervisor.do_send(Dispatch(Request {
            envelope,
            identity,
            peer: self.peer.clone(),
            reply_to: ReplyTo::Connection(replies),
            received: Instant::now(),
            bytes: size,
            origin: self.id,
            budget: None,
            connection: self.handle.clone(),
            upload,
        }));
    }

    /// A new or refreshed session; the registry learns who the connection belongs to.
    fn set_session(&mut self, mut update: SessionUpdate) {
        if let Some(previous) = &self.session {
            if update.agent.is_empty() {
                update.agent = previous.agent.clone();
            }
            if update.version.is_empty() {
                update.version = previous.version.clone();
            }
        }
        let user = &update.user;
        self.services.connections.set_session(
            self.id,
            Some(UserRef {
                id: user.id.clone(),
                name: user.name.clone(),
                username: user.username.clone(),
            }),
            &update.agent,
            &update.version,
        );
        self.session = Some(update);
    }

    /// One message handled, for the actor tree.
    #[inline]
    fn count_handled(&self) {
        if let Some(tree) = &self.tree {
            tree.handled();
        }
    }

    fn stop_reading(&mut self, ctx: &mut Context<Self>) {
        if let Some(handle) = self.inbound.take() {
            ctx.cancel_future(handle);
        }
    }
}

impl Actor for ConnectionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let me = ctx.address();
        self.replies = Some(me.clone().recipient());
        self.handle = Some(ConnectionHandle::new(
            self.id,
            self.transport,
            me.clone().recipient(),
            me.clone().recipient(),
            me.clone().recipient(),
            me.clone().recipient(),
            me.clone().recipient(),
        ));
        self.me = Some(me.clone());
        Counters::bump(&self.services.counters.connections_opened);
        let tree = self.services.actors.register(
            "connection",
            format!("{} {} {}", self.id, self.transport.as_str(), self.peer),
            crate::actors::supervisor::Supervisor::local_tree_id(),
        );
        self.stats
            .actor
            .store(tree.id(), std::sync::atomic::Ordering::Relaxed);
        self.stats.touch();
        self.tree = Some(tree);
        self.services.connections.insert(RegistryEntry {
            info: ConnectionInfo {
                id: self.id,
                transport: self.transport,
                peer: self.peer.to_string(),
                agent: String::new(),
                version: String::new(),
                user: None,
                connected: std::time::SystemTime::now(),
                children: Vec::new(),
            },
            control: me.clone().recipient(),
            push: me.recipient(),
            stats: self.stats.clone(),
        });
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
        self.children.stop_all();
        // Uploads still streaming end without their `endstream`: their actors remove
        // what they wrote.
        self.uploads.clear();
        self.services.connections.remove(self.id);
        Counters::bump(&self.services.counters.connections_closed);
        self.tree = None;
        tracing::debug!(connection = self.id, "disconnected");
    }
}

impl StreamHandler<Inbound> for ConnectionActor {
    fn handle(&mut self, item: Inbound, ctx: &mut Context<Self>) {
        self.count_handled();
        match item {
            Inbound::Bytes(bytes) => self.on_bytes(bytes, ctx),
            Inbound::Envelope(envelope) => {
                // gRPC: tonic decoded it (up to --max-message-size); the tier may be smaller.
                let size = envelope.encoded_len();
                if size > self.tier.max_message_size {
                    return self.too_large(size, ctx);
                }
                self.on_envelope(envelope, size, ctx)
            }
            Inbound::TooLarge(size) => self.too_large(size, ctx),
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
        self.count_handled();
        self.in_flight = self.in_flight.saturating_sub(1);
        self.in_flight_bytes = self.in_flight_bytes.saturating_sub(completed.request_bytes);
        self.stats
            .in_flight
            .store(self.in_flight as u64, std::sync::atomic::Ordering::Relaxed);
        if completed
            .reply
            .as_ref()
            .is_some_and(|r| r.command == "error")
        {
            Counters::bump(&self.stats.errors);
        }
        if completed.signed_in || completed.session.is_some() {
            self.enter_signed_in();
        }
        if let Some(session) = completed.session {
            self.set_session(session);
        }
        if let Some(reply) = completed.reply {
            self.send(reply);
        }
        if let Some(after_reply) = completed.after_reply {
            after_reply();
        }
        if self.draining && self.in_flight == 0 {
            ctx.stop();
        }
    }
}

impl Handler<Push> for ConnectionActor {
    type Result = ();

    fn handle(&mut self, Push(envelope): Push, _ctx: &mut Context<Self>) {
        self.count_handled();
        self.send(envelope);
    }
}

impl Handler<PushTracked> for ConnectionActor {
    type Result = ();

    fn handle(&mut self, push: PushTracked, _ctx: &mut Context<Self>) {
        self.count_handled();
        self.send_tracked(push.envelope, Some(push.written));
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

/// A WebSocket frame may carry one whole envelope plus its length prefix.
fn ws_frame_limit(tier: &Tier) -> usize {
    tier.max_message_size
        .saturating_add(crate::protocol::frame::LENGTH_PREFIX)
}

impl Handler<Attach> for ConnectionActor {
    type Result = Result<(), OpenCoreError>;

    fn handle(&mut self, attach: Attach, _ctx: &mut Context<Self>) -> Self::Result {
        if self.closing || self.draining {
            return Err(OpenCoreError::ConnectionClosed);
        }
        let limit = match attach.kind {
            ChildKind::Watch => self.services.config.limits.max_watches_per_connection,
            ChildKind::Queue => self.services.config.bus.max_queues_per_connection,
            ChildKind::Upload => crate::connections::upload::MAX_UPLOADS_PER_CONNECTION,
        };
        // An upload whose stream already ended needs no stopping: its actor is only
        // finishing the `.files` document (and would detach itself before this).
        if attach.kind == ChildKind::Upload && !self.uploads.is_open(&attach.id) {
            return Ok(());
        }
        let (kind, id) = (attach.kind, attach.id.clone());
        let tree = self
            .tree
            .as_ref()
            .map(|t| t.child(kind.as_str(), id.clone()));
        self.children.attach(attach, limit, tree)?;
        self.services.connections.add_child(self.id, kind, &id);
        Ok(())
    }
}

impl Handler<Detach> for ConnectionActor {
    type Result = bool;

    fn handle(&mut self, Detach { kind, id }: Detach, _ctx: &mut Context<Self>) -> bool {
        if kind == ChildKind::Upload {
            self.uploads.close(&id);
        }
        let found = self.children.detach(kind, &id);
        if found {
            self.services.connections.remove_child(self.id, kind, &id);
        }
        found
    }
}
