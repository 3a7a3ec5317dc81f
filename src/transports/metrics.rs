//! `GET /metrics`: Prometheus text. Series the server counts anyway (connections,
//! in-flight, lanes, queues, watches) are read from its atomics here, at scrape time;
//! per-request series are recorded as requests end (`telemetry::metrics`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use crate::connections::{ChildKind, TransportKind};
use crate::services::Services;
use crate::telemetry::metrics::{self as m, counter_total, gauge};

pub async fn scrape(request: HttpRequest, services: web::Data<Arc<Services>>) -> HttpResponse {
    if let Some(expected) = services.config.metrics_token.as_deref() {
        let given = request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !constant_time_eq(given.as_bytes(), expected.as_bytes()) {
            return HttpResponse::Unauthorized().json(
                json!({"message": "GET /metrics needs Authorization: Bearer <metrics token>"}),
            );
        }
    }
    if m::install().is_none() {
        return HttpResponse::ServiceUnavailable()
            .json(json!({"message": "metrics are not available in this process"}));
    }
    publish_state(&services);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(m::render())
}

/// Compares without returning early, so the time taken says nothing about the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (n, byte) in b.iter().enumerate() {
        diff |= usize::from(a.get(n).copied().unwrap_or(0) ^ byte);
    }
    diff == 0
}

fn publish_state(services: &Services) {
    let by_transport = services.connections.by_transport();
    for transport in TransportKind::ALL {
        let open = by_transport.get(transport.as_str()).copied().unwrap_or(0);
        gauge(
            "opencore_connections",
            &[("transport", transport.as_str().to_string())],
            open as f64,
        );
    }
    let counters = &services.counters;
    let total = |name, value: &std::sync::atomic::AtomicU64| {
        counter_total(name, &[], value.load(Ordering::Relaxed))
    };
    total(
        "opencore_connections_opened_total",
        &counters.connections_opened,
    );
    total(
        "opencore_connections_closed_total",
        &counters.connections_closed,
    );
    total(
        "opencore_protocol_violations_total",
        &counters.protocol_violations,
    );
    total(
        "opencore_slow_client_disconnects_total",
        &counters.slow_client_disconnects,
    );
    total("opencore_upload_pauses_total", &counters.upload_pauses);
    counter_total(
        "opencore_connections_refused_total",
        &[],
        services.admission.refused() as u64,
    );

    let (in_flight, lanes) = services.loads.totals();
    gauge("opencore_in_flight", &[], in_flight as f64);
    for (priority, waiting) in lanes.iter().enumerate() {
        gauge(
            "opencore_lane_depth",
            &[("priority", priority.to_string())],
            *waiting as f64,
        );
    }

    let queues = &services.queues.counters;
    total("opencore_queue_published_total", &queues.published);
    total("opencore_queue_unroutable_total", &queues.unroutable);
    total("opencore_queue_deliveries_total", &queues.delivered);
    total("opencore_queue_redeliveries_total", &queues.requeued);
    total("opencore_queue_dropped_too_large_total", &queues.dropped);
    total("opencore_queue_timeouts_total", &queues.timeouts);
    gauge(
        "opencore_queue_consumers",
        &[],
        services.connections.count_children(ChildKind::Queue) as f64,
    );

    let feeds = services.feeds.snapshot();
    gauge(
        "opencore_watches",
        &[],
        services.connections.count_children(ChildKind::Watch) as f64,
    );
    total(
        "opencore_watch_events_total",
        &services.feeds.counters.delivered,
    );
    total(
        "opencore_watch_lag_disconnects_total",
        &services.feeds.counters.lag_disconnects,
    );
    gauge(
        "opencore_change_feed_lag_events",
        &[],
        feeds.iter().map(|feed| feed.backlog).max().unwrap_or(0) as f64,
    );
    gauge("opencore_change_feeds", &[], feeds.len() as f64);
    gauge(
        "opencore_uploads",
        &[],
        services.connections.count_children(ChildKind::Upload) as f64,
    );
}
