//! OpenTelemetry traces over OTLP/gRPC, configured by the standard environment:
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) turns them on;
//! `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER(_ARG)` and
//! `OTEL_BSP_*` are read by the SDK itself.
//!
//! Off (no endpoint) means no exporter and no OpenTelemetry layer: the spans below use
//! the target [`TARGET`], which no other layer enables, so their callsites are disabled
//! and cost one cached check each.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The `tracing` target of every span meant for OpenTelemetry (request, store, bus).
pub const TARGET: &str = "opencore_trace";

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether an exporter is running: request spans are created only then.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The endpoint the environment asks for, if any.
pub fn endpoint_from_env() -> Option<String> {
    [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .iter()
    .filter_map(|name| std::env::var(name).ok())
    .find(|value| !value.trim().is_empty())
}

/// A running exporter. Its runtime hosts the gRPC channel's background task (tonic
/// needs one when the exporter is built); it is not the server's runtime, so exports
/// never compete with requests for its threads.
pub struct Traces {
    provider: SdkTracerProvider,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Traces {
    /// Starts the exporter when the environment names an endpoint; `node_id` becomes
    /// the resource's `service.instance.id`.
    pub fn from_env(node_id: &str) -> Result<Option<Traces>, String> {
        if endpoint_from_env().is_none() {
            return Ok(None);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("opencore-otlp")
            .enable_all()
            .build()
            .map_err(|err| format!("OTLP exporter runtime: {err}"))?;
        let exporter = {
            let _inside = runtime.enter();
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .build()
                .map_err(|err| format!("OTLP span exporter: {err}"))?
        };
        let mut resource = Resource::builder()
            .with_attribute(KeyValue::new("service.instance.id", node_id.to_string()));
        if std::env::var("OTEL_SERVICE_NAME").is_err() {
            resource = resource.with_service_name("opencore");
        }
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build();
        ENABLED.store(true, Ordering::Relaxed);
        Ok(Some(Traces {
            provider,
            runtime: Some(runtime),
        }))
    }

    pub fn tracer(&self) -> SdkTracer {
        self.provider.tracer("opencore")
    }

    /// Exports what is buffered and stops.
    pub fn shutdown(mut self) {
        ENABLED.store(false, Ordering::Relaxed);
        if let Err(err) = self.provider.shutdown() {
            tracing::warn!(%err, "traces: exporter did not shut down cleanly");
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(std::time::Duration::from_secs(1));
        }
    }
}

/// The client's span as a remote parent: W3C ids in hex (`Envelope.traceid`, `spanid`).
pub fn remote_parent(trace_id: &str, span_id: &str) -> Option<Context> {
    let trace = TraceId::from_hex(trace_id)
        .ok()
        .filter(|t| *t != TraceId::INVALID)?;
    let span = SpanId::from_hex(span_id)
        .ok()
        .filter(|s| *s != SpanId::INVALID)?;
    let remote = SpanContext::new(
        trace,
        span,
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    Some(Context::new().with_remote_span_context(remote))
}

/// A request's server span, child of the client's span when the envelope names one.
pub fn request_span(command: &str, trace_id: &str, span_id: &str) -> tracing::Span {
    let span = tracing::info_span!(
        target: "opencore_trace",
        "request",
        otel.name = command,
        otel.kind = "server",
        command = command,
        user.id = tracing::field::Empty,
        result.code = tracing::field::Empty,
    );
    if let Some(parent) = remote_parent(trace_id, span_id) {
        let _ = span.set_parent(parent);
    }
    span
}

/// `(trace id, span id)` in hex of a span that OpenTelemetry records.
pub fn ids(span: &tracing::Span) -> Option<(String, String)> {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then(|| {
        (
            span_context.trace_id().to_string(),
            span_context.span_id().to_string(),
        )
    })
}

/// W3C `traceparent` for a trace and span id in hex (`None` if they are not ids).
pub fn traceparent(trace_id: &str, span_id: &str) -> Option<String> {
    remote_parent(trace_id, span_id)?;
    Some(format!("00-{trace_id}-{span_id}-01"))
}

/// `(trace id, span id)` of a W3C `traceparent` header.
pub fn parse_traceparent(header: &str) -> Option<(String, String)> {
    let mut parts = header.trim().split('-');
    let (version, trace, span) = (parts.next()?, parts.next()?, parts.next()?);
    if version.len() != 2 || trace.len() != 32 || span.len() != 16 {
        return None;
    }
    remote_parent(trace, span)?;
    Some((trace.to_ascii_lowercase(), span.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trip_and_rejects() {
        let (trace, span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
        let header = traceparent(trace, span).expect("valid ids");
        assert_eq!(header, format!("00-{trace}-{span}-01"));
        assert_eq!(
            parse_traceparent(&header),
            Some((trace.to_string(), span.to_string()))
        );
        assert!(traceparent("", span).is_none());
        assert!(
            traceparent(&"0".repeat(32), span).is_none(),
            "the invalid id"
        );
        assert!(traceparent("xyz", span).is_none());
        assert!(parse_traceparent("00-abc-def-01").is_none());
        assert!(parse_traceparent("garbage").is_none());
    }
}
