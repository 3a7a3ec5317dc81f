//! The command table: every protobuf command the server serves, its handler family,
//! and the function that runs it. One file per command, named after it.

mod context;
mod get_element;
mod ping;
mod signin;

pub use context::{CommandContext, Outcome};

use crate::error::OpenCoreError;

/// Handler families. Each has its own handler actor per worker and its own
/// concurrency limit with priority lanes in front.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// Sign-in: bcrypt makes it CPU-heavy, so few run at once.
    Session,
    /// Cheap diagnostics answered at once.
    Diagnostics,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::Session, Family::Diagnostics];

    pub fn as_str(&self) -> &'static str {
        match self {
            Family::Session => "session",
            Family::Diagnostics => "diagnostics",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Signin,
    GetElement,
    Ping,
}

impl Command {
    /// `command` must already be lower-cased.
    pub fn parse(command: &str) -> Option<Command> {
        Some(match command {
            "signin" => Command::Signin,
            "getelement" => Command::GetElement,
            "ping" => Command::Ping,
            _ => return None,
        })
    }

    pub fn family(&self) -> Family {
        match self {
            Command::Signin => Family::Session,
            Command::GetElement | Command::Ping => Family::Diagnostics,
        }
    }

    /// Whether the command runs only for a resolved user (guest counts when enabled).
    pub fn needs_user(&self) -> bool {
        match self {
            Command::Signin | Command::GetElement | Command::Ping => false,
        }
    }

    pub async fn run(self, ctx: CommandContext) -> Result<Outcome, OpenCoreError> {
        match self {
            Command::Signin => signin::run(ctx).await,
            Command::GetElement => get_element::run(ctx),
            Command::Ping => ping::run(ctx),
        }
    }
}

/// Commands that are accepted and answered with nothing: `noop`, and `pong`
/// (a client's answer to a server ping).
pub fn is_silent(command: &str) -> bool {
    matches!(command, "noop" | "pong" | "queuemessagereply")
}
