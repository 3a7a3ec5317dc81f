//! Wire protocol helpers shared by every transport.

pub mod envelope;
pub mod frame;
