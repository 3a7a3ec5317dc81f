//! `registerqueue`: consume a queue on this connection. An empty (or `amq.*`) name
//! makes a temporary queue that lives as long as this consumer; a named queue is
//! durable and shared round-robin by its consumers, and the first registrant of an
//! unclaimed name owns it (`queues::objects`). Registering a name this connection
//! already consumes replaces that consumer. Needs a streaming connection.

use super::{CommandContext, Outcome};
use crate::bus::{QueueKind, QueueSpec};
use crate::error::OpenCoreError;
use crate::proto::{RegisterQueueRequest, RegisterQueueResponse};
use crate::queues::consumer::{self, Begin};
use crate::queues::names;
use crate::queues::objects::{ObjectKind, Purpose};

pub async fn run(ctx: CommandContext) -> Result<Outcome, OpenCoreError> {
    let request: RegisterQueueRequest = ctx.request(false)?;
    let connection = ctx.connection()?.clone();
    let user = ctx.user()?.clone();
    let queues = &ctx.services.queues;
    let requested = names::normalise(&request.queuename, "queuename")?;
    let spec = if names::wants_temporary(&requested) {
        QueueSpec {
            name: names::temporary(&ctx.agent()),
            kind: QueueKind::Temporary,
        }
    } else {
        queues
            .objects
            .authorize(&user, ObjectKind::Queue, &requested, Purpose::Consume)
            .await?;
        QueueSpec {
            name: requested,
            kind: QueueKind::Named,
        }
    };
    let actor = consumer::start(queues, &connection, spec.clone(), None).await?;
    let mut outcome = ctx.reply(&RegisterQueueResponse {
        queuename: spec.name,
    });
    outcome.after_reply = Some(Box::new(move || actor.do_send(Begin)));
    Ok(outcome)
}
