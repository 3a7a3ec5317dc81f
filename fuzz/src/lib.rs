//! Fuzz targets for opencore (see README.md). The targets live in `targets/` so the
//! root crate's property tests can include the very same code.

pub mod targets;
