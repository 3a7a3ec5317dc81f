//! In-process bus (being written).
