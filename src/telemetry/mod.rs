//! Observability: Prometheus metrics (`metrics`) and, when configured, OpenTelemetry
//! traces. A leaf: everything may record here; this module imports nothing of the
//! server's own.

pub mod metrics;
pub mod traces;
