//! A handler actor serves one command family on one worker thread. Each request runs
//! as its own future (so slow commands do not block fast ones); a panic while handling
//! becomes an `error` reply for that request and nothing else.

use std::cell::Cell;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::Arc;

use actix::prelude::*;
use futures_util::FutureExt;

use crate::actors::messages::{Completed, Request};
use crate::commands::{Command, CommandContext};
use crate::error::OpenCoreError;
use crate::policy::identity;
use crate::protocol::envelope::error_reply;
use crate::services::{Counters, Services};

pub struct CommandHandler {
    services: Arc<Services>,
}

impl CommandHandler {
    pub fn new(services: Arc<Services>) -> Self {
        CommandHandler { services }
    }
}

impl Actor for CommandHandler {
    type Context = Context<Self>;
}

impl Supervised for CommandHandler {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        tracing::warn!("command handler restarting");
    }
}

/// Run one request; resolves when the reply has been handed to the connection.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Execute {
    pub command: Command,
    pub request: Request,
}

impl Handler<Execute> for CommandHandler {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, message: Execute, _ctx: &mut Context<Self>) -> Self::Result {
        let services = self.services.clone();
        Box::pin(async move {
            let Execute { command, request } = message;
            let Request {
                envelope,
                identity: claimed,
                peer,
                reply_to,
                bytes,
                budget,
                ..
            } = request;
            let request_id = envelope.id.clone();
            let command_name = envelope.command.clone();
            let signed_in = Rc::new(Cell::new(false));
            let work = {
                let services = services.clone();
                let signed_in = signed_in.clone();
                async move {
                    let user =
                        identity::resolve(&services, &claimed, &envelope.command, &peer).await?;
                    signed_in.set(user.is_some());
                    if command.needs_user() && user.is_none() {
                        return Err(OpenCoreError::NotSignedIn);
                    }
                    command
                        .run(CommandContext {
                            services,
                            envelope,
                            user,
                            peer,
                        })
                        .await
                }
            };
            let mut completed = guarded(work, &request_id, command_name, &services).await;
            completed.request_bytes = bytes;
            completed.signed_in = signed_in.get() || completed.session.is_some();
            reply_to.send(completed);
            drop(budget);
        })
    }
}

/// Runs a command to its reply: an error becomes an `error` reply, and so does a panic
/// (the panic ends this request only; the handler, connection and server live on).
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
            reply: Some(outcome.reply),
            session: outcome.session,
            ..Completed::default()
        },
        Ok(Err(err)) => {
            Counters::bump(&services.counters.errors);
            Completed {
                reply: Some(error_reply(request_id, &err)),
                ..Completed::default()
            }
        }
        Err(_) => {
            Counters::bump(&services.counters.errors);
            tracing::error!(%command, "handler panicked; answered with an error");
            let err = OpenCoreError::HandlerPanicked(command);
            Completed {
                reply: Some(error_reply(request_id, &err)),
                ..Completed::default()
            }
        }
    }
}

#[cfg(test)]
mod tests;
