//! Filled in by the store_bounds work of issue 7.
