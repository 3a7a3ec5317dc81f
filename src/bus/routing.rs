//! Exchange routing rules (being written).
