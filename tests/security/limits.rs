//! Filled in by the limits work of issue 7.
