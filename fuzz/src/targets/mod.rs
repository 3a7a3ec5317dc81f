//! The fuzz targets, one module each. Every target takes arbitrary bytes, derives its
//! inputs from them, runs the server's own code on them and checks properties that
//! must hold for any input; it must never panic, abort or overflow the stack.
//!
//! This module is used by the AFL binaries of the `fuzz/` crate and, through a
//! `#[path]` module, by the root crate's `tests/properties.rs`, so the fuzzer, the
//! property tests and the corpus replay all run the same code.

pub mod aggregate;
pub mod filter_match;
pub mod frame_envelope;
pub mod input;
pub mod json_bson;
pub mod projection;
pub mod update_apply;

/// A target's entry point: arbitrary bytes in, a panic on a finding.
pub type Target = fn(&[u8]);

/// Every target by the name of its corpus directory and binary.
pub const TARGETS: &[(&str, Target)] = &[
    ("frame_envelope", frame_envelope::run),
    ("json_bson", json_bson::run),
    ("filter_match", filter_match::run),
    ("update_apply", update_apply::run),
    ("projection", projection::run),
    ("aggregate", aggregate::run),
];

/// Runs the named target on a server-sized stack (see [`input::on_server_stack`]).
pub fn run(target: &str, data: &[u8]) {
    let (_, body) = TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .unwrap_or_else(|| panic!("no fuzz target named {target}"));
    input::on_server_stack(|| body(data));
}
