//! What the bench sends: one variant per command, each knowing its request payload
//! and the reply command that counts as success. Add a command by adding a variant.
//!
//! Document workloads work in the collection `bench` and need a signed-in user:
//! `insertone` inserts a small document per request; `query` first inserts one
//! document per connection (the setup request) and then queries it by `_id`.

use std::fmt::Write as _;

use super::wire::Head;
use crate::proto::{
    Envelope, GetElementRequest, InsertOneRequest, InsertOneResponse, QueryRequest, SigninRequest,
    WatchRequest,
};
use crate::protocol::envelope::{pack, reply_command};

/// The collection the document workloads use.
pub const BENCH_COLLECTION: &str = "bench";
/// The collection `--command watch` watches and writes.
pub const WATCH_COLLECTION: &str = "benchwatch";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchCommand {
    /// Diagnostic echo: `GetElementRequest{xpath}` answered by `getelement`.
    #[value(name = "getelement")]
    GetElement,
    /// `query` by `_id` of a document the connection inserted during setup.
    #[value(name = "query")]
    Query,
    /// `insertone` of a small document into `bench`.
    #[value(name = "insertone")]
    InsertOne,
    /// C connections watch `benchwatch` while one more connection inserts into it
    /// (`--rate`); reports events delivered per second and insert→event latency.
    #[value(name = "watch")]
    Watch,
    /// C connections in a ring, each with a temporary queue, each keeping K
    /// `queuemessage`s in flight to the next one's queue; reports acks/s,
    /// deliveries/s, send→delivery latency and lost messages (see `queue.rs`).
    #[value(name = "queuemessage")]
    QueueMessage,
    /// The same ring straight on RabbitMQ with lapin (`--amqp-url`), no opencore
    /// in between (see `amqp_baseline.rs`).
    #[value(name = "amqp-baseline")]
    AmqpBaseline,
    /// Work item cycles: `pushworkitem` → `popworkitem` → `updateworkitem`
    /// (successful), K per connection, on a fresh queue (see `pushpop.rs`).
    #[value(name = "pushpop")]
    PushPop,
    /// Each connection uploads one `--file-mb` file; reports MiB/s (see `files.rs`).
    #[value(name = "upload")]
    Upload,
    /// Each connection uploads one file, then downloads it until `--duration` ends;
    /// reports MiB/s and, with `--server-pid`, the server's RSS growth.
    #[value(name = "download")]
    Download,
}

impl BenchCommand {
    /// The envelope `command`.
    pub fn name(&self) -> &'static str {
        match self {
            BenchCommand::GetElement => "getelement",
            BenchCommand::Query => "query",
            BenchCommand::InsertOne => "insertone",
            BenchCommand::Watch => "watch",
            BenchCommand::QueueMessage => "queuemessage",
            BenchCommand::AmqpBaseline => "amqp-baseline",
            BenchCommand::PushPop => "pushpop",
            BenchCommand::Upload => "upload",
            BenchCommand::Download => "download",
        }
    }

    /// The reply command that means success.
    pub fn success_reply(&self) -> String {
        reply_command(self.name())
    }

    /// Whether the command needs `--username`/`--password`.
    pub fn needs_signin(&self) -> bool {
        !matches!(self, BenchCommand::GetElement | BenchCommand::AmqpBaseline)
    }

    /// A request each connection sends once, after sign-in and before the load; its
    /// reply goes to `template_after_setup`.
    pub fn setup(&self, priority: i32) -> Option<Envelope> {
        match self {
            BenchCommand::Query => Some(insert_envelope(priority, "bench-seed")),
            BenchCommand::Watch => Some(watch_envelope(priority)),
            BenchCommand::GetElement
            | BenchCommand::InsertOne
            | BenchCommand::QueueMessage
            | BenchCommand::AmqpBaseline
            | BenchCommand::PushPop
            | BenchCommand::Upload
            | BenchCommand::Download => None,
        }
    }

    /// The request envelope, without `seq`/`id` (filled in per request), for commands
    /// without a setup request.
    pub fn template(&self, priority: i32) -> Envelope {
        let data = match self {
            BenchCommand::GetElement => pack(&GetElementRequest {
                xpath: "bench".into(),
            }),
            BenchCommand::InsertOne => return insert_envelope(priority, "bench"),
            BenchCommand::Watch => return watch_envelope(priority),
            BenchCommand::Query => pack(&query_by_id("")),
            // Built per message by `queue.rs` (or not sent at all: the AMQP baseline).
            BenchCommand::QueueMessage
            | BenchCommand::AmqpBaseline
            | BenchCommand::PushPop
            | BenchCommand::Upload
            | BenchCommand::Download => {
                return Envelope {
                    command: self.name().into(),
                    priority,
                    ..Default::default()
                }
            }
        };
        Envelope {
            command: self.name().into(),
            priority,
            data: Some(data),
            ..Default::default()
        }
    }

    /// The request envelope once the setup request was answered with `reply`.
    pub fn template_after_setup(&self, priority: i32, reply: &Head) -> Result<Envelope, String> {
        match self {
            BenchCommand::Query => {
                let inserted: InsertOneResponse = reply
                    .payload()
                    .map_err(|err| format!("undecodable setup reply: {err}"))?;
                let document: serde_json::Value = serde_json::from_str(&inserted.result)
                    .map_err(|err| format!("setup reply is not JSON: {err}"))?;
                let id = document["_id"]
                    .as_str()
                    .ok_or("the setup insert returned no _id")?;
                let data = pack(&query_by_id(id));
                Ok(Envelope {
                    command: self.name().into(),
                    priority,
                    data: Some(data),
                    ..Default::default()
                })
            }
            other => Ok(other.template(priority)),
        }
    }
}

fn query_by_id(id: &str) -> QueryRequest {
    QueryRequest {
        collectionname: BENCH_COLLECTION.into(),
        query: serde_json::json!({ "_id": id }).to_string(),
        top: 1,
        ..Default::default()
    }
}

fn insert_envelope(priority: i32, name: &str) -> Envelope {
    let item = serde_json::json!({"name": name, "kind": "bench", "value": 42, "tags": ["a", "b"]})
        .to_string();
    let request = InsertOneRequest {
        collectionname: BENCH_COLLECTION.into(),
        item,
        ..Default::default()
    };
    Envelope {
        command: "insertone".into(),
        priority,
        data: Some(pack(&request)),
        ..Default::default()
    }
}

/// A `watch` of the watch workload's collection, every document.
pub fn watch_envelope(priority: i32) -> Envelope {
    Envelope {
        command: "watch".into(),
        priority,
        data: Some(pack(&WatchRequest {
            collectionname: WATCH_COLLECTION.into(),
            paths: Vec::new(),
        })),
        ..Default::default()
    }
}

/// A `signin` with username and password.
pub fn signin_envelope(username: &str, password: &str, priority: i32) -> Envelope {
    let request = SigninRequest {
        username: username.into(),
        password: password.into(),
        agent: "opencore-bench".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    };
    Envelope {
        command: "signin".into(),
        priority,
        data: Some(pack(&request)),
        ..Default::default()
    }
}

/// Sets `seq` and `id` on an envelope, reusing its `id` allocation.
pub fn number(envelope: &mut Envelope, counter: u64) {
    envelope.seq = counter as i32;
    envelope.id.clear();
    let _ = write!(envelope.id, "{counter}");
}
