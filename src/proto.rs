//! Generated OpenIAP wire types (`proto/*.proto`, package `openiap`).
#![allow(clippy::all, missing_docs)]

tonic::include_proto!("openiap");

pub mod json;
