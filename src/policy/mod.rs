//! Policies applied around command handling, kept out of the handlers: identity
//! resolution (who is asking) and per-connection rate limiting.

pub mod identity;
pub mod rate_limit;
