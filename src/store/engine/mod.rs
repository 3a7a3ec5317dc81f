//! In-process MongoDB query engine.
//!
//! Evaluates MongoDB-shaped filters, updates, projections, sorts and
//! aggregation pipelines directly on `bson` values, following MongoDB 6/7
//! semantics (type bracketing, implicit array traversal, numeric cross-type
//! equality, ...). Specs are parsed once into typed structures so that the
//! hot path (`matches`, `apply`, `run`) does no re-parsing.
//!
//! The engine never touches storage: `$lookup` reads foreign collections
//! through [`ForeignSource`], which the caller implements (and uses to apply
//! access control).

pub mod aggregate;
pub mod budget;
pub mod compare;
pub mod error;
pub mod filter;
pub mod limits;
pub mod path;
pub mod projection;
pub mod query;
pub mod sort;
pub mod update;

pub use aggregate::{ForeignSource, NoForeign, Pipeline};
pub use compare::{compare_bson, values_equal};
pub use error::EngineError;
pub use filter::{FieldConstraint, Filter, MatchDetails};
pub use limits::LimitError;
pub use projection::Projection;
pub use query::{count, distinct, find, FindOptions};
pub use sort::SortSpec;
pub use update::{ApplyContext, Update};

/// Result alias used throughout the engine.
pub type Result<T> = std::result::Result<T, EngineError>;

#[cfg(test)]
mod limits_tests;
#[cfg(test)]
mod tests;
