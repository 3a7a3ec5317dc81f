//! `GET /metrics`: Prometheus text that a Prometheus parser reads, whose series move as
//! requests are made; `--metrics-token` closes it to callers without the token.

mod common;

use common::*;
use opencore::proto::{GetElementRequest, QueryRequest};
use prometheus_parse::{Scrape, Value};

async fn scrape(server: &TestServer) -> Scrape {
    let (status, body) = http_get(server.http(), "/metrics", None).await;
    assert_eq!(status, 200, "{body}");
    Scrape::parse(body.lines().map(|line| Ok(line.to_string()))).expect("Prometheus text")
}

/// The value of the sample named `metric` whose labels include `labels` (0 if absent).
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets.last().map(|b| b.count).unwrap_or(0.0),
            Value::Summary(_) => 0.0,
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_move_as_requests_are_made() {
    let server = TestServer::start();
    let before = scrape(&server).await;
    let mut client = RawClient::connect(server.tcp()).await;
    client.signin(ADMIN, ADMIN_PASSWORD).await;
    for _ in 0..5 {
        client
            .request("getelement", &GetElementRequest { xpath: "x".into() })
            .await;
    }
    // A refused request: a query on a collection name the server rejects.
    let refused = client
        .request(
            "query",
            &QueryRequest {
                collectionname: "$bad".into(),
                query: "{}".into(),
                ..Default::default()
            },
        )
        .await;
    let code = decode::<opencore::proto::ErrorResponse>(&refused).code;
    assert_ne!(code, 0);
    let after = scrape(&server).await;

    // Other tests in this process may add to the same series: compare at least.
    let ok = |s: &Scrape| {
        value(
            s,
            "opencore_requests_total",
            &[("command", "getelement"), ("code", "0")],
        )
    };
    assert!(ok(&after) - ok(&before) >= 5.0, "getelement successes");
    let code = code.to_string();
    assert!(
        value(
            &after,
            "opencore_requests_total",
            &[("command", "query"), ("code", &code)]
        ) >= 1.0,
        "the refused query is counted with its code {code}"
    );
    assert!(value(&after, "opencore_signins_total", &[("result", "ok")]) >= 1.0);
    assert!(value(&after, "opencore_connections", &[("transport", "tcp")]) >= 1.0);
    // Latency histogram of the diagnostics family (getelement) has observations.
    let latency = |s: &Scrape| {
        value(
            s,
            "opencore_request_duration_seconds",
            &[("family", "diagnostics")],
        )
    };
    assert!(
        latency(&after) - latency(&before) >= 5.0,
        "latency observations"
    );
    // The sign-in wrote (users `lastseen`/history bookkeeping is a store write), so the
    // embedded store committed at least one group.
    assert!(value(&after, "opencore_store_group_commit_size", &[]) >= 1.0);
    for series in [
        "opencore_in_flight",
        "opencore_lane_depth",
        "opencore_queue_deliveries_total",
        "opencore_watch_events_total",
        "opencore_change_feed_lag_events",
        "opencore_slow_client_disconnects_total",
    ] {
        assert!(
            after.samples.iter().any(|s| s.metric == series),
            "{series} is exported"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_token_is_required_when_set() {
    let server = TestServer::start_with(|c| c.metrics_token = Some("scrape-secret".into()));
    let (status, body) = http_get(server.http(), "/metrics", None).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("message"), "{body}");
    assert_eq!(
        http_get(server.http(), "/metrics", Some("scrape-secreT"))
            .await
            .0,
        401
    );
    assert_eq!(
        http_get(server.http(), "/metrics", Some("scrape-secret-and-more"))
            .await
            .0,
        401
    );
    let (status, body) = http_get(server.http(), "/metrics", Some("scrape-secret")).await;
    assert_eq!(status, 200);
    assert!(body.contains("opencore_connections"), "{body}");
}
