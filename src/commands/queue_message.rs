//! `queuemessage`: publish to a queue or an exchange. The sender needs read on the
//! target's object when one exists (`queues::objects`); JSON object bodies carry the
//! sender (`queues::body`); the envelope's priority (0–3) is the message's. A message
//! no queue takes is answered as the reference does: the first bounce of an RPC gets a
//! `timeout` event on its `replyto`, anything else a `bad queue` error.

use std::time::Duration;

use rand::distr::{Alphanumeric, SampleString};

use super::{CommandContext, Outcome};
use crate::bus::{OutgoingMessage, Published, Target, MAX_PRIORITY};
use crate::error::OpenCoreError;
use crate::proto::{QueueMessageRequest, QueueMessageResponse};
use crate::queues::body::{self, Parsed, Sender};
use crate::queues::names;
use crate::queues::objects::{ObjectKind, Purpose};
use crate::queues::timeouts;
use crate::telemetry::traces;
use tracing::Instrument;

pub async fn run(ctx: CommandContext) -> Result<Outcome, OpenCoreError> {
    let request: QueueMessageRequest = ctx.request(true)?;
    let user = ctx.user()?.clone();
    let services = &ctx.services;
    let queues = &services.queues;
    let queuename = names::normalise(&request.queuename, "queuename")?;
    let exchangename = names::normalise(&request.exchangename, "exchangename")?;
    let replyto = names::normalise(&request.replyto, "replyto")?;
    let target = if !exchangename.is_empty() {
        if !queues.settings.enable_exchanges {
            return Err(OpenCoreError::BadRequest(
                "AMQP exchange is not enabled on this OpenFlow".into(),
            ));
        }
        queues
            .objects
            .authorize(&user, ObjectKind::Exchange, &exchangename, Purpose::Send)
            .await?;
        Target::Exchange {
            name: exchangename.clone(),
            routing_key: request.routingkey.clone(),
        }
    } else if !queuename.is_empty() {
        queues
            .objects
            .authorize(&user, ObjectKind::Queue, &queuename, Purpose::Send)
            .await?;
        Target::Queue(queuename.clone())
    } else {
        return Err(OpenCoreError::BadRequest(
            "queuename or exchange must be given".into(),
        ));
    };
    if request.data.is_empty() {
        return Err(OpenCoreError::BadRequest(
            "data is mandatory: the message body (JSON, or text sent as a JSON string)".into(),
        ));
    }
    // Cheap first check on what the client sent; the final body is checked below.
    let limit = queues.settings.max_queue_message_size;
    if request.data.len() > limit {
        return Err(OpenCoreError::QueueMessageTooLarge {
            size: request.data.len(),
            limit,
        });
    }
    let mut parsed = body::parse(&request.data);
    let inner = body::inner_token(&mut parsed);
    let from = match inner {
        // The reference sends as the user of a token inside the object; it must resolve.
        Some(token) => {
            services
                .directory()
                .resolve_token(&token)
                .await
                .map_err(|_| OpenCoreError::AccessDenied)?
                .0
        }
        None => user.clone(),
    };
    let sender = if request.striptoken || !matches!(parsed, Parsed::Object(_)) {
        None
    } else {
        let (token, _) = services.directory().issue_token(&from, false)?;
        Some(Sender { user: &from, token })
    };
    let body = body::render(parsed, sender);
    body::check_size(&body, limit)?;
    let correlation_id = if request.correlation_id.is_empty() {
        Alphanumeric.sample_string(&mut rand::rng(), 24)
    } else {
        request.correlation_id.clone()
    };
    let expiration = if request.expiration < 1 {
        queues.settings.default_expiration
    } else {
        Duration::from_millis(request.expiration as u64)
    };
    let priority = ctx.envelope.priority.clamp(0, i32::from(MAX_PRIORITY)) as u8;
    let publish_span =
        tracing::info_span!(target: "opencore_trace", "bus.publish", otel.kind = "producer");
    let published = queues
        .bus
        .publish(OutgoingMessage {
            target,
            body: body.clone(),
            correlation_id: correlation_id.clone(),
            reply_to: replyto.clone(),
            priority,
            expiration,
            headers: trace_headers(&ctx, &publish_span),
        })
        .instrument(publish_span)
        .await?;
    queues
        .counters
        .published
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if published == Published::Unroutable {
        queues
            .counters
            .unroutable
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        unroutable(
            &ctx,
            &queuename,
            &exchangename,
            &replyto,
            &correlation_id,
            &body,
        )?;
    } else if !queuename.is_empty() {
        queues.bad.routed(&queuename);
    }
    Ok(ctx.reply(&QueueMessageResponse {
        queuename,
        correlation_id,
        replyto,
        routingkey: request.routingkey,
        exchangename,
        data: String::from_utf8_lossy(&body).into_owned(),
    }))
}

/// No queue took the message. An RPC's first bounce is answered on its `replyto`
/// (clients then see a `timeout` answer); a plain send, or a send to a name that
/// bounced before, is an error. Nothing bound to an exchange is not an error (like
/// AMQP), but an RPC through it still gets its timeout.
fn unroutable(
    ctx: &CommandContext,
    queuename: &str,
    exchangename: &str,
    replyto: &str,
    correlation_id: &str,
    body: &[u8],
) -> Result<(), OpenCoreError> {
    let queues = &ctx.services.queues;
    let answer_rpc = || {
        timeouts::reply(
            &queues.bus,
            &queues.counters,
            replyto.to_string(),
            correlation_id.to_string(),
            body,
        )
    };
    if !exchangename.is_empty() {
        if !replyto.is_empty() {
            answer_rpc();
        }
        return Ok(());
    }
    let bounced_before = queues.bad.bounced(queuename);
    if replyto.is_empty() || bounced_before {
        return Err(OpenCoreError::BadQueue {
            name: queuename.to_string(),
            correlation_id: correlation_id.to_string(),
        });
    }
    answer_rpc();
    Ok(())
}

/// `traceparent` for the message: the publish span when traces are on, else the
/// sender's own ids if its envelope carries them, so the consumer's `queueevent` (on any
/// node) continues the same trace.
fn trace_headers(ctx: &CommandContext, publish: &tracing::Span) -> Vec<(String, String)> {
    let ids = traces::ids(publish)
        .or_else(|| Some((ctx.envelope.traceid.clone(), ctx.envelope.spanid.clone())));
    ids.and_then(|(trace_id, span_id)| traces::traceparent(&trace_id, &span_id))
        .map(|header| vec![("traceparent".to_string(), header)])
        .unwrap_or_default()
}
