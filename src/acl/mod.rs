//! Access control on documents: rights bits, who is asking (a user and its roles, or a
//! `queryas` target), the database filter every read/update/delete carries, the
//! in-memory check, ACE normalisation on writes, and the restrictions on aggregation
//! pipelines (ACL inside `$lookup`/`$unionWith`, admin-only stages).
//!
//! Admins (root and members of `admins`) bypass every check, as in the reference.
//! Unlike the reference, an ACE only grants when the SAME entry names one of the
//! caller's ids and carries the right (`$elemMatch`, also for files' `metadata._acl`),
//! `deny: true` entries never grant, and documents without an ACL are not readable by
//! non-admins.

pub mod ace;
pub mod check;
pub mod filter;
pub mod location;
pub mod pipeline;
pub mod principals;
pub mod rights;

pub use check::has_right;
pub use filter::acl_filter;
pub use location::AclLocation;
pub use principals::Principals;
pub use rights::Right;
