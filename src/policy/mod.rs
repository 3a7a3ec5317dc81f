//! Policies applied around command handling, kept out of the handlers and the
//! transports: connection caps (`admission`), what one connection may hold (`tier`),
//! rate limits, gRPC unary budgets, and identity resolution (who is asking).

pub mod admission;
pub mod identity;
pub mod rate_limit;
pub mod tier;
pub mod unary_budget;
