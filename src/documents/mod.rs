//! The document API's shared logic. Each command in `src/commands/` parses its request
//! and calls into these:
//!
//! - `json` / `output`: JSON-in-strings in and out (revivers, ISO dates, hex ids);
//! - `query`: the query, sort and projection of a request; `_id` string/ObjectId matching;
//! - `id_pages`: walking every match in bounded pages by `_id` (multi-document updates);
//! - `collections` / `catalog`: names, aliases, reserved names, collection kinds;
//! - `scope`: one request's caller + collection, with its ACL filters and checks;
//! - `metadata`: `_id`, `_type`, `_created*`, `_modified*`, `_version`;
//! - `insert`, `replace`, `remove`: the write paths (history and `users` rules included);
//! - `guard`: operators refused everywhere (server-side JavaScript);
//! - `id_forms`: a 24-hex string `_id` and its ObjectId are one id (the second is a duplicate);
//! - `locks`: per-key locks for upserts and `_id` claims.

pub mod catalog;
pub mod collections;
pub mod guard;
pub mod history;
pub mod id_forms;
pub mod id_pages;
pub mod insert;
pub mod json;
pub mod locks;
pub mod metadata;
pub mod output;
pub mod query;
pub mod read;
pub mod remove;
pub mod replace;
pub mod scope;
pub mod state;
pub mod upsert;
pub mod users;

pub use scope::Scope;
