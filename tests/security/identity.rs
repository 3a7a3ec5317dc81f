//! Filled in by the identity work of issue 7.
