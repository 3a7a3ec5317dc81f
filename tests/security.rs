//! Attacks on a real server, one module per part of the security model (issue 7):
//! identity (forged and re-created principals, protected fields), bounded work per
//! request (deep paths and documents, unbounded stages), bounded memory per connection
//! and per server, and a matrix of bad inputs per command. Every test here fails
//! without the guard it names.

mod common;
mod data_support;

#[path = "security/bad_input.rs"]
mod bad_input;
#[path = "security/bounded_work.rs"]
mod bounded_work;
#[path = "security/identity.rs"]
mod identity;
#[path = "security/limits.rs"]
mod limits;
#[path = "security/store_bounds.rs"]
mod store_bounds;
