//! What the bench sends: one variant per command, each knowing its request payload
//! and the reply command that counts as success. Add a command by adding a variant.

use std::fmt::Write as _;

use crate::proto::{Envelope, GetElementRequest, SigninRequest};
use crate::protocol::envelope::{pack, reply_command};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchCommand {
    /// Diagnostic echo: `GetElementRequest{xpath}` answered by `getelement`.
    #[value(name = "getelement")]
    GetElement,
}

impl BenchCommand {
    /// The envelope `command`.
    pub fn name(&self) -> &'static str {
        match self {
            BenchCommand::GetElement => "getelement",
        }
    }

    /// The reply command that means success.
    pub fn success_reply(&self) -> String {
        reply_command(self.name())
    }

    /// The request envelope, without `seq`/`id` (filled in per request).
    pub fn template(&self, priority: i32) -> Envelope {
        let data = match self {
            BenchCommand::GetElement => pack(&GetElementRequest { xpath: "bench".into() }),
        };
        Envelope { command: self.name().into(), priority, data: Some(data), ..Default::default() }
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
    Envelope { command: "signin".into(), priority, data: Some(pack(&request)), ..Default::default() }
}

/// Sets `seq` and `id` on an envelope, reusing its `id` allocation.
pub fn number(envelope: &mut Envelope, counter: u64) {
    envelope.seq = counter as i32;
    envelope.id.clear();
    let _ = write!(envelope.id, "{counter}");
}
