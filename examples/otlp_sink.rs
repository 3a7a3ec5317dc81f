//! A minimal OTLP/gRPC trace receiver for benchmarks: accepts every export, counts the
//! spans and prints the total every 5 seconds. It lets `opencore serve` run with traces
//! on (a real exporter, real network round trips) without a collector installed.
//!
//! ```bash
//! cargo run --release --example otlp_sink -- 127.0.0.1:4317
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 OTEL_TRACES_SAMPLER=traceidratio \
//!     OTEL_TRACES_SAMPLER_ARG=0.1 ./target/release/opencore serve ...
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};

#[derive(Default)]
struct Sink {
    spans: Arc<AtomicU64>,
    exports: Arc<AtomicU64>,
}

#[tonic::codegen::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans: usize = request
            .get_ref()
            .resource_spans
            .iter()
            .flat_map(|resource| &resource.scope_spans)
            .map(|scope| scope.spans.len())
            .sum();
        self.spans.fetch_add(spans as u64, Ordering::Relaxed);
        self.exports.fetch_add(1, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:4317".into())
        .parse()?;
    let sink = Sink::default();
    let (spans, exports) = (sink.spans.clone(), sink.exports.clone());
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            println!(
                "otlp_sink: {} spans in {} exports",
                spans.load(Ordering::Relaxed),
                exports.load(Ordering::Relaxed)
            );
        }
    });
    println!("otlp_sink: listening on {addr}");
    tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(sink))
        .serve(addr)
        .await?;
    Ok(())
}
