//! Filled in by the bounded_work work of issue 7.
