//! The command table: every protobuf command the server serves, its handler family,
//! and the function that runs it. One file per command, named after it.

mod add_work_item_queue;
mod aggregate;
mod context;
mod count;
mod create_collection;
mod create_index;
mod delete_many;
mod delete_one;
mod delete_work_item_queue;
mod delete_workitem;
mod distinct;
pub mod download;
mod drop_collection;
mod drop_index;
mod get_document_version;
mod get_element;
mod get_indexes;
mod insert_many;
mod insert_one;
mod insert_or_update_many;
mod insert_or_update_one;
mod list_collections;
mod ping;
mod pop_workitem;
mod push_workitem;
mod push_workitems;
mod query;
mod queue_message;
mod register_exchange;
mod register_queue;
mod signin;
mod unregister_queue;
mod unwatch;
mod update_document;
mod update_one;
mod update_work_item_queue;
mod update_workitem;
mod upload;
mod watch;

pub use context::{AfterReply, CommandContext, Outcome, SessionUpdate};

use crate::error::OpenCoreError;

/// Command families. Each has its own concurrency limit per worker, with priority
/// lanes in front (see `actors::supervisor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// Sign-in: bcrypt makes it CPU-heavy, so few run at once.
    Session,
    /// Cheap diagnostics answered at once.
    Diagnostics,
    /// Document reads and writes: many at once (they mostly wait on the store).
    Data,
    /// Creating and dropping collections and indexes (admins): rare and possibly slow
    /// (an index build scans the collection), so few at once.
    Admin,
}

impl Family {
    /// Family names in declaration order (`Family as usize`).
    pub const NAMES: [&'static str; 4] = ["session", "diagnostics", "data", "admin"];

    pub const ALL: [Family; 4] = [
        Family::Session,
        Family::Diagnostics,
        Family::Data,
        Family::Admin,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Family::Session => "session",
            Family::Diagnostics => "diagnostics",
            Family::Data => "data",
            Family::Admin => "admin",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Signin,
    GetElement,
    Ping,
    Query,
    Count,
    Distinct,
    Aggregate,
    InsertOne,
    InsertMany,
    UpdateOne,
    UpdateDocument,
    InsertOrUpdateOne,
    InsertOrUpdateMany,
    DeleteOne,
    DeleteMany,
    GetDocumentVersion,
    ListCollections,
    CreateCollection,
    DropCollection,
    CreateIndex,
    GetIndexes,
    DropIndex,
    Watch,
    UnWatch,
    RegisterQueue,
    RegisterExchange,
    QueueMessage,
    UnRegisterQueue,
    Upload,
    Download,
    PushWorkitem,
    PushWorkitems,
    PopWorkitem,
    UpdateWorkitem,
    DeleteWorkitem,
    AddWorkItemQueue,
    UpdateWorkItemQueue,
    DeleteWorkItemQueue,
}

impl Command {
    /// Every command's wire name, in declaration order (`Command as usize`): metric
    /// labels and the like.
    pub const NAMES: [&'static str; 38] = [
        "signin",
        "getelement",
        "ping",
        "query",
        "count",
        "distinct",
        "aggregate",
        "insertone",
        "insertmany",
        "updateone",
        "updatedocument",
        "insertorupdateone",
        "insertorupdatemany",
        "deleteone",
        "deletemany",
        "getdocumentversion",
        "listcollections",
        "createcollection",
        "dropcollection",
        "createindex",
        "getindexes",
        "dropindex",
        "watch",
        "unwatch",
        "registerqueue",
        "registerexchange",
        "queuemessage",
        "unregisterqueue",
        "upload",
        "download",
        "pushworkitem",
        "pushworkitems",
        "popworkitem",
        "updateworkitem",
        "deleteworkitem",
        "addworkitemqueue",
        "updateworkitemqueue",
        "deleteworkitemqueue",
    ];

    pub fn name(&self) -> &'static str {
        Self::NAMES[*self as usize]
    }

    /// `command` must already be lower-cased.
    pub fn parse(command: &str) -> Option<Command> {
        Some(match command {
            "signin" => Command::Signin,
            "getelement" => Command::GetElement,
            "ping" => Command::Ping,
            "query" => Command::Query,
            "count" => Command::Count,
            "distinct" => Command::Distinct,
            "aggregate" => Command::Aggregate,
            "insertone" => Command::InsertOne,
            "insertmany" => Command::InsertMany,
            "updateone" => Command::UpdateOne,
            "updatedocument" => Command::UpdateDocument,
            "insertorupdateone" => Command::InsertOrUpdateOne,
            "insertorupdatemany" => Command::InsertOrUpdateMany,
            "deleteone" => Command::DeleteOne,
            "deletemany" => Command::DeleteMany,
            "getdocumentversion" => Command::GetDocumentVersion,
            "listcollections" => Command::ListCollections,
            "createcollection" => Command::CreateCollection,
            "dropcollection" => Command::DropCollection,
            "createindex" => Command::CreateIndex,
            "getindexes" => Command::GetIndexes,
            "dropindex" => Command::DropIndex,
            "watch" => Command::Watch,
            "unwatch" => Command::UnWatch,
            "registerqueue" => Command::RegisterQueue,
            "registerexchange" => Command::RegisterExchange,
            "queuemessage" => Command::QueueMessage,
            // `closequeue` is the reference's internal name for it.
            "unregisterqueue" | "closequeue" => Command::UnRegisterQueue,
            "upload" => Command::Upload,
            "download" => Command::Download,
            "pushworkitem" => Command::PushWorkitem,
            "pushworkitems" => Command::PushWorkitems,
            "popworkitem" => Command::PopWorkitem,
            "updateworkitem" => Command::UpdateWorkitem,
            "deleteworkitem" => Command::DeleteWorkitem,
            "addworkitemqueue" => Command::AddWorkItemQueue,
            "updateworkitemqueue" => Command::UpdateWorkItemQueue,
            "deleteworkitemqueue" => Command::DeleteWorkItemQueue,
            _ => return None,
        })
    }

    pub fn family(&self) -> Family {
        match self {
            Command::Signin => Family::Session,
            Command::GetElement | Command::Ping => Family::Diagnostics,
            Command::CreateCollection
            | Command::DropCollection
            | Command::CreateIndex
            | Command::DropIndex => Family::Admin,
            _ => Family::Data,
        }
    }

    /// Whether the command runs only for a resolved user (guest counts when enabled).
    pub fn needs_user(&self) -> bool {
        !matches!(self, Command::Signin | Command::GetElement | Command::Ping)
    }

    pub async fn run(self, ctx: CommandContext) -> Result<Outcome, OpenCoreError> {
        match self {
            Command::Signin => signin::run(ctx).await,
            Command::GetElement => get_element::run(ctx),
            Command::Ping => ping::run(ctx),
            Command::Query => query::run(ctx).await,
            Command::Count => count::run(ctx).await,
            Command::Distinct => distinct::run(ctx).await,
            Command::Aggregate => aggregate::run(ctx).await,
            Command::InsertOne => insert_one::run(ctx).await,
            Command::InsertMany => insert_many::run(ctx).await,
            Command::UpdateOne => update_one::run(ctx).await,
            Command::UpdateDocument => update_document::run(ctx).await,
            Command::InsertOrUpdateOne => insert_or_update_one::run(ctx).await,
            Command::InsertOrUpdateMany => insert_or_update_many::run(ctx).await,
            Command::DeleteOne => delete_one::run(ctx).await,
            Command::DeleteMany => delete_many::run(ctx).await,
            Command::GetDocumentVersion => get_document_version::run(ctx).await,
            Command::ListCollections => list_collections::run(ctx).await,
            Command::CreateCollection => create_collection::run(ctx).await,
            Command::DropCollection => drop_collection::run(ctx).await,
            Command::CreateIndex => create_index::run(ctx).await,
            Command::GetIndexes => get_indexes::run(ctx).await,
            Command::DropIndex => drop_index::run(ctx).await,
            Command::Watch => watch::run(ctx).await,
            Command::UnWatch => unwatch::run(ctx).await,
            Command::RegisterQueue => register_queue::run(ctx).await,
            Command::RegisterExchange => register_exchange::run(ctx).await,
            Command::QueueMessage => queue_message::run(ctx).await,
            Command::UnRegisterQueue => unregister_queue::run(ctx).await,
            Command::Upload => upload::run(ctx).await,
            Command::Download => download::run(ctx).await,
            Command::PushWorkitem => push_workitem::run(ctx).await,
            Command::PushWorkitems => push_workitems::run(ctx).await,
            Command::PopWorkitem => pop_workitem::run(ctx).await,
            Command::UpdateWorkitem => update_workitem::run(ctx).await,
            Command::DeleteWorkitem => delete_workitem::run(ctx).await,
            Command::AddWorkItemQueue => add_work_item_queue::run(ctx).await,
            Command::UpdateWorkItemQueue => update_work_item_queue::run(ctx).await,
            Command::DeleteWorkItemQueue => delete_work_item_queue::run(ctx).await,
        }
    }
}

/// Commands that are accepted and answered with nothing: `noop`, and `pong`
/// (a client's answer to a server ping).
pub fn is_silent(command: &str) -> bool {
    matches!(command, "noop" | "pong" | "queuemessagereply")
}

#[cfg(test)]
mod names_tests {
    use super::*;

    #[test]
    fn name_tables_match_the_enums() {
        for name in Command::NAMES {
            let command = Command::parse(name).expect("a known command");
            assert_eq!(command.name(), name);
        }
        for family in Family::ALL {
            assert_eq!(Family::NAMES[family as usize], family.as_str());
        }
    }
}
