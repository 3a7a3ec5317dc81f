//! `registerexchange`: declare an exchange (`direct`, `fanout`, `topic`, `headers`;
//! the reference's `header` means `headers`) whose first registrant owns its name,
//! and with `addqueue` consume a temporary queue bound to it with `routingkey`.

use super::{CommandContext, Outcome};
use crate::bus::{ExchangeKind, QueueKind, QueueSpec};
use crate::error::OpenCoreError;
use crate::proto::{RegisterExchangeRequest, RegisterExchangeResponse};
use crate::queues::consumer::{self, Begin};
use crate::queues::names;
use crate::queues::objects::{ObjectKind, Purpose};

pub async fn run(ctx: CommandContext) -> Result<Outcome, OpenCoreError> {
    let request: RegisterExchangeRequest = ctx.request(true)?;
    let user = ctx.user()?.clone();
    let queues = &ctx.services.queues;
    let exchange = names::normalise(&request.exchangename, "exchangename")?;
    if exchange.is_empty() {
        return Err(OpenCoreError::BadRequest(
            "exchangename is mandatory".into(),
        ));
    }
    let algorithm = request.algorithm.trim().to_lowercase();
    if algorithm.is_empty() {
        return Err(OpenCoreError::BadRequest(
            "algorithm is mandatory, as either direct, fanout, topic or header".into(),
        ));
    }
    let kind = ExchangeKind::parse(&algorithm).ok_or_else(|| {
        OpenCoreError::BadRequest(
            "invalid algorithm must be either direct, fanout, topic or header".into(),
        )
    })?;
    // Checked before anything is declared, so a refused caller changes nothing.
    let connection = if request.addqueue {
        Some(ctx.connection()?.clone())
    } else {
        None
    };
    queues
        .objects
        .authorize(&user, ObjectKind::Exchange, &exchange, Purpose::Consume)
        .await?;
    queues.bus.declare_exchange(&exchange, kind).await?;
    let Some(connection) = connection else {
        return Ok(ctx.reply(&RegisterExchangeResponse {
            queuename: String::new(),
        }));
    };
    let spec = QueueSpec {
        name: names::temporary(&ctx.agent()),
        kind: QueueKind::Temporary,
    };
    let actor = consumer::start(
        queues,
        &connection,
        spec.clone(),
        Some((&exchange, &request.routingkey)),
    )
    .await?;
    let mut outcome = ctx.reply(&RegisterExchangeResponse {
        queuename: spec.name,
    });
    outcome.after_reply = Some(Box::new(move || actor.do_send(Begin)));
    Ok(outcome)
}
