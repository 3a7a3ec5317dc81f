//! Running one request: check who is asking, run the command, turn its outcome (or
//! error, or panic) into the reply for its connection. Runs as a future on the
//! supervisor's worker thread; a panic ends that request only.

use std::cell::Cell;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::Arc;

use futures_util::FutureExt;

use crate::actors::messages::{Completed, Request};
use crate::commands::{Command, CommandContext};
use crate::error::OpenCoreError;
use crate::policy::identity;
use crate::protocol::envelope::error_reply;
use crate::services::{Counters, Services};
use crate::telemetry::{metrics, traces};
use tracing::Instrument;

/// Runs one request to its end; resolves when the reply has been handed to the
/// connection (or the unary caller).
pub async fn execute(services: Arc<Services>, command: Command, request: Request) {
    let Request {
        envelope,
        identity: claimed,
        peer,
        reply_to,
        bytes,
        budget,
        connection,
        upload,
        received,
        ..
    } = request;
    let request_id = envelope.id.clone();
    let command_name = envelope.command.clone();
    // Only with an exporter running: otherwise `Span::none()`, which costs nothing.
    let span = if traces::enabled() {
        traces::request_span(command.name(), &envelope.traceid, &envelope.spanid)
    } else {
        tracing::Span::none()
    };
    let signed_in = Rc::new(Cell::new(false));
    let work = {
        let services = services.clone();
        let signed_in = signed_in.clone();
        async move {
            let user =
                identity::resolve(services.directory(), &claimed, &envelope.command, &peer).await?;
            signed_in.set(user.is_some());
            if let Some(user) = user.as_ref().filter(|_| traces::enabled()) {
                tracing::Span::current().record("user.id", user.id.as_str());
            }
            if command.needs_user() && user.is_none() {
                return Err(OpenCoreError::NotSignedIn);
            }
            command
                .run(CommandContext {
                    services,
                    envelope,
                    user,
                    peer,
                    connection,
                    upload,
                })
                .await
        }
    };
    let mut completed = guarded(
        work.instrument(span.clone()),
        &request_id,
        command_name,
        &services,
    )
    .await;
    if traces::enabled() {
        span.record("result.code", completed.error_code);
        // The reply names the server's span, so the client can link to it.
        if let (Some(reply), Some((trace_id, span_id))) =
            (completed.reply.as_mut(), traces::ids(&span))
        {
            reply.traceid = trace_id;
            reply.spanid = span_id;
        }
    }
    metrics::record_request(
        Some(command as usize),
        Some(command.family() as usize),
        completed.error_code,
        received.elapsed(),
    );
    if command == Command::Signin {
        metrics::record_signin(completed.error_code == 0);
    }
    completed.request_bytes = bytes;
    completed.signed_in = signed_in.get() || completed.session.is_some();
    reply_to.send(completed);
    drop(budget);
}

/// Runs a command to its reply: an error becomes an `error` reply, and so does a panic
/// (the panic ends this request only; the supervisor, connection and server live on).
pub async fn guarded<F>(
    work: F,
    request_id: &str,
    command: String,
    services: &Services,
) -> Completed
where
    F: std::future::Future<Output = Result<crate::commands::Outcome, OpenCoreError>>,
{
    match AssertUnwindSafe(work).catch_unwind().await {
        Ok(Ok(outcome)) => Completed {
            reply: (!outcome.deferred).then_some(outcome.reply),
            session: outcome.session,
            after_reply: outcome.after_reply,
            ..Completed::default()
        },
        Ok(Err(err)) => {
            Counters::bump(&services.counters.errors);
            Completed {
                reply: Some(error_reply(request_id, &err)),
                error_code: err.code(),
                ..Completed::default()
            }
        }
        Err(_) => {
            Counters::bump(&services.counters.errors);
            tracing::error!(%command, "command panicked; answered with an error");
            let err = OpenCoreError::HandlerPanicked(command);
            Completed {
                reply: Some(error_reply(request_id, &err)),
                error_code: err.code(),
                ..Completed::default()
            }
        }
    }
}
