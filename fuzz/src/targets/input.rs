//! How a target turns raw fuzzer bytes into its inputs, and the fixed documents the
//! engine targets run against.

use bson::Document;

/// The stack a server thread gets (Rust's default for spawned threads and tokio
/// workers). Targets run on a stack this size so a recursion that would overflow a
/// worker or the store writer overflows here too, even though the fuzzer's main thread
/// has 8 MiB.
pub const SERVER_STACK: usize = 2 << 20;

/// At most this many input lines are used; the rest is ignored.
const MAX_LINES: usize = 16;

/// Runs `body` on a thread with [`SERVER_STACK`]; a panic inside is re-raised here so
/// the fuzzer (or the test) sees it.
pub fn on_server_stack<F: FnOnce() + Send>(body: F) {
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name("fuzz-target".into())
            .stack_size(SERVER_STACK)
            .spawn_scoped(scope, body)
            .expect("spawn the target thread");
        if let Err(panic) = thread.join() {
            std::panic::resume_unwind(panic);
        }
    });
}

/// Inputs of the JSON-driven targets: one JSON text per line (invalid UTF-8 is
/// replaced, as the protobuf string fields cannot carry it anyway).
pub fn lines(data: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(data)
        .split('\n')
        .take(MAX_LINES)
        .map(str::to_owned)
        .collect()
}

/// Fixed documents covering the shapes the engine branches on: nested documents,
/// arrays of scalars, arrays of documents, arrays of arrays, dates, ObjectIds, mixed
/// numeric types, null, missing fields, and a user-like document.
pub const FIXED_DOCUMENTS: &str = r#"[
 {"_id": 1, "a": 1, "b": "x", "c": [1, 2, 3], "d": {"e": 5, "f": [{"g": 1}, {"g": 2, "h": [7, 8]}]}},
 {"_id": {"$oid": "5f0000000000000000000001"}, "a": 2.5, "b": null, "c": [[1], [2, 3]],
  "tags": ["red", "blue"], "when": {"$date": "2021-06-01T00:00:00Z"}, "big": 5000000000},
 {"_id": "59f1f6e6f0a22200126638d8", "_type": "user", "name": "root", "username": "root",
  "email": "root@example.com", "passwordhash": "$2b$10$abcdefghijklmnopqrstuv",
  "_acl": [{"_id": "5a1702fa245d9013697656fb", "rights": 65535, "deny": false}],
  "members": [{"_id": "5a17f157c4815318c8536c21", "name": "admins"}]},
 {"_id": 4, "a": "3", "arr": [{"x": 1, "y": [1, 2]}, {"x": 2, "y": []}, {"x": null}],
  "n": {"$numberLong": "5"}, "neg": -0.0, "s": "abcABC"},
 {"_id": 5, "a": [], "b": true, "nested": {"a": {"b": {"c": {"d": 1}}}}, "e": ["x", 2, null, {"k": 1}]},
 {"_id": 6}
]"#;

pub fn fixed_documents() -> Vec<Document> {
    opencore::documents::json::parse_documents("fixed", FIXED_DOCUMENTS)
        .expect("the fixed documents are valid JSON objects")
}

/// The fixed documents followed by every later input line that parses as a JSON
/// object or array of objects (at most a handful, so one run stays fast).
pub fn documents(extra_lines: &[String]) -> Vec<Document> {
    let mut docs = fixed_documents();
    for line in extra_lines {
        if let Ok(parsed) = opencore::documents::json::parse_documents("doc", line) {
            docs.extend(parsed.into_iter().take(8));
        }
    }
    docs
}
