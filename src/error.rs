//! One error type for everything a client can be told. The numeric codes travel in
//! `ErrorResponse.code` and are part of the protocol: never renumber a variant, only add.
//! Messages never carry stack traces or internal state.

use thiserror::Error;

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum OpenCoreError {
    // 1xxx: server-side failures
    #[error("Internal server error")]
    Internal,
    #[error("The handler for {0} failed; the request was not completed")]
    HandlerPanicked(String),
    #[error("Server is shutting down")]
    ShuttingDown,
    #[error("Storage error: {0}")]
    Storage(String),
    /// The store failed internally on this one write (it was rolled back); other
    /// writes are not affected. Details are logged, never sent.
    #[error("The store could not apply this write; nothing of it was written")]
    StoreWriteFailed,

    // 2xxx: malformed or unacceptable envelopes
    #[error("Invalid/empty command")]
    EmptyCommand,
    #[error("Unknown command {0}")]
    UnknownCommand(String),
    #[error("Missing data for command {0}")]
    MissingData(String),
    #[error("Could not decode {command} payload as openiap.{type_name}: {reason}")]
    UndecodablePayload {
        command: String,
        type_name: String,
        reason: String,
    },
    #[error("Message of {size} bytes exceeds the limit of {limit} bytes")]
    MessageTooLarge { size: usize, limit: usize },
    #[error("Too many requests in flight (limit {0}); wait for replies before sending more")]
    TooManyInFlight(usize),
    #[error("Rate limit exceeded: more than {0} requests per second")]
    RateLimited(u32),
    #[error("{0}")]
    BadRequest(String),
    #[error("Reply of {size} bytes exceeds the {limit} bytes this transport's clients accept")]
    ReplyTooLarge { size: usize, limit: usize },
    /// A query, update or pipeline the store or query engine refused (bad operator,
    /// bad value, unsupported stage, ...), with the store's own text.
    #[error("{0}")]
    Query(String),
    #[error("Query is mandatory")]
    QueryMandatory,
    /// The read needed more memory than `--max-aggregate-mb` allows.
    #[error("Query size exceeded {limit_mb} mb")]
    QueryTooLarge { limit_mb: u64 },
    /// An in-memory sort (no index provides the order) needed more than `--max-sort-mb`.
    #[error("Sort exceeded the memory limit of {limit_mb} MB (--max-sort-mb): add an index on the sort fields, or lower skip/top")]
    SortTooLarge { limit_mb: u64 },
    /// `distinct` found more values than `--max-distinct-mb` holds.
    #[error("distinct too big: its values exceed the limit of {limit_mb} MB (--max-distinct-mb); narrow the query")]
    DistinctTooLarge { limit_mb: u64 },
    #[error("id cannot be null")]
    IdRequired,
    #[error("Cannot update item without _id")]
    UpdateWithoutId,
    #[error("Cannot create null item")]
    NullItem,
    #[error("collectionname is mandatory")]
    CollectionRequired,
    #[error("DeleteMany needs either a list of ids or a query")]
    DeleteManyNeedsFilter,
    /// `insertorupdateone`: the uniqueness fields match several documents (the
    /// reference's spelling).
    #[error("{0} is not uniqe, more than 1 item in collection matches this")]
    NotUnique(String),
    /// A JSON-in-string field that is not valid JSON (or not the expected shape).
    #[error("Invalid JSON in {field}: {reason}")]
    InvalidJson { field: String, reason: String },
    /// A write collided with a unique index (`_id` or a unique secondary index).
    #[error("{0}")]
    DuplicateKey(String),
    /// Client data ran into one of the query engine's bounds (path parts, nesting
    /// depth, sort memory, regex size, value size); the text names the limit.
    /// Codes 2020-2024 (`LimitError::code`).
    #[error("{0}")]
    Limit(crate::store::engine::LimitError),

    // 2060-2079: per-connection and per-server resource limits
    #[error(
        "Too many request bytes in flight (limit {0} bytes); wait for replies before sending more"
    )]
    TooManyInFlightBytes(usize),
    #[error("Too many connections: the server accepts at most {0}")]
    TooManyConnections(usize),
    #[error("Too many connections from {ip}: at most {limit} per address")]
    TooManyConnectionsFromIp { ip: String, limit: usize },
    #[error("Message of {size} bytes exceeds the limit of {limit} bytes for connections that have not signed in")]
    MessageTooLargeBeforeSignin { size: usize, limit: usize },
    #[error("Not signed in within {0} seconds; closing the connection")]
    SigninTimeout(u64),
    #[error("Too many requests in flight before sign-in (limit {0}); sign in or wait for replies")]
    TooManyInFlightBeforeSignin(usize),

    // 3xxx: authentication and authorization
    #[error("Not signed in, and missing jwt")]
    NotSignedIn,
    #[error("Discard {command} due to missing jwt, and respond with error, for client at {peer}")]
    InvalidToken { command: String, peer: String },
    #[error("Discard signin due to invalid or expired jwt for client at {0}")]
    InvalidSigninToken(String),
    #[error("{0} failed logging in using local")]
    LoginFailed(String),
    #[error("Disabled user {0} failed logging in using {1}")]
    DisabledUser(String, String),
    #[error("Access denied")]
    AccessDenied,
    #[error("Username cannot be null")]
    UsernameRequired,
    #[error("Password cannot be null")]
    PasswordRequired,
    #[error("Failed resolving token, could not find user by {0}")]
    UnknownTokenUser(String),
    #[error("Guest user is not enabled")]
    GuestDisabled,
    /// "Access denied, <reason>": the reference's specific denial texts.
    #[error("Access denied, {0}")]
    AccessDeniedBecause(String),
    /// The document does not exist or the caller may not see it (deliberately one answer).
    #[error("item {id} not found in {collection} or Access Denied")]
    NotFoundOrDenied { id: String, collection: String },

    // 3012-3039: identity (who a principal is, what only admins may do in `users`)
    /// A non-admin gave a new document in `users` its own `_id`.
    #[error("Access denied, only admins may choose the _id of a new user, role or customer")]
    IdChosenByNonAdmin,
    /// A built-in user or role id (string or ObjectId form) in an insert.
    #[error("Access denied, {0} is the id of a built-in user or role and cannot be inserted")]
    BuiltinIdReserved(String),
    /// The id of a deleted user or role: principal ids are never reused.
    #[error(
        "Access denied, {0} belonged to a deleted user or role; principal ids are never reused"
    )]
    PrincipalIdReused(String),
    /// An update that would turn a user or role into something else, or the reverse.
    #[error("Access denied, the _type of a document in users cannot change to or from {0}")]
    PrincipalTypeChange(String),
    /// A non-admin changing the members of a built-in role.
    #[error("Access denied, only admins may change the members of the built-in role {0}")]
    BuiltinRoleMembers(String),
    /// An update operator on a field that needs the full-document path (`_acl` for
    /// everyone, `members` in `users` for non-admins), where it is normalised and checked.
    #[error("Access denied, {0} cannot be changed with update operators; use updateone")]
    OperatorOnProtectedField(String),
    /// A read that names, computes or could reach `passwordhash`.
    #[error(
        "Access denied, passwordhash cannot be queried, projected, sorted or computed on ({0})"
    )]
    PasswordHashProbe(String),
    /// Another user already has this email.
    #[error("Access denied, a user with email {0} already exists")]
    EmailTaken(String),

    /// A command that needs a connection of its own (to push events to, to own what it
    /// starts) arrived as a gRPC unary call.
    #[error("{0} needs a streaming connection (WebSocket, TCP, pipe or gRPC SetupStream)")]
    NeedsConnection(String),
    #[error("The connection is closing")]
    ConnectionClosed,
    #[error("Too many {kind} on this connection (limit {limit})")]
    TooManyChildren { kind: &'static str, limit: usize },
    /// Distinct collections watched on this node at once (`--max-watched-collections`).
    #[error("Too many collections are watched on this server (limit {0})")]
    TooManyWatchedCollections(usize),
    #[error("Invalid watch path {path}: {reason}")]
    InvalidWatchPath { path: String, reason: String },
    /// The store could not start following the collection (MongoDB change stream).
    #[error("Changes of {0} cannot be followed right now; try again")]
    FeedUnavailable(String),

    // Queues and exchanges (the bus).
    /// A consumer (or sender) without read right on the queue's object.
    #[error(
        "[{user}] Unknown queue {name} or access denied, missing read permission on queue object"
    )]
    QueueAccessDenied { user: String, name: String },
    #[error("[{user}] Unknown exchange {name} or access denied, missing read permission on exchange object")]
    ExchangeAccessDenied { user: String, name: String },
    /// The target queue does not exist (the reference's text; clients may match it).
    #[error("bad queue: {name} correlationId: {correlation_id}")]
    BadQueue {
        name: String,
        correlation_id: String,
    },
    #[error("queue {0} is in use by another connection")]
    QueueInUse(String),
    #[error("Unknown exchange {0}")]
    UnknownExchange(String),
    #[error("exchange {name} exists with type {existing}")]
    ExchangeKindMismatch { name: String, existing: String },
    #[error("Unknown queue {0}")]
    UnknownQueue(String),
    /// The bus would not take the message (a queue or the embedded bus is full).
    #[error("{0}")]
    BusRefused(String),
    #[error("Message broker unavailable: {0}")]
    BusUnavailable(String),
    #[error("message size {size} is larger than configured max size {limit}")]
    QueueMessageTooLarge { size: usize, limit: usize },

    // Files (upload, download): 2120-2139 and 3030-3039.
    /// An upload passed `--max-file-size` while streaming; what it wrote is removed.
    #[error("File exceeds the size limit of {limit} bytes; the upload was removed")]
    FileTooLarge { limit: u64 },
    /// An upload received nothing for `--upload-idle-timeout`; what it wrote is removed.
    #[error("Upload idle for more than {0} s; the upload was removed")]
    UploadIdle(u64),
    /// The connection stopped reading an upload's stream (it closed, or the upload was
    /// refused before its stream ended).
    #[error("The upload ended before its endstream; nothing was stored")]
    UploadIncomplete,
    /// Stored content is missing chunks or they are malformed.
    #[error("File content is damaged: {0}")]
    FileDamaged(String),
    #[error("Guests are not allowed to upload files")]
    GuestUpload,
    /// `download` without `id` and without `filename` (the reference's text).
    #[error("Access denied (No id)")]
    DownloadWithoutId,
    /// Not found or not readable: one answer, so a file's existence is not revealed.
    #[error("Access denied, downloading {0}")]
    DownloadDenied(String),
    /// `*.chunks` holds file content without an ACL: only the server and admins use it.
    #[error("Access denied, {0} holds file content; use upload and download")]
    FileContentCollection(String),
    /// A non-admin chose the `_id` of a new `.files` document: the id names the file's
    /// content, so only `upload` (which writes that content) chooses it.
    #[error("Access denied, only upload chooses the _id of a file in {0}")]
    FileIdChosen(String),
    // Work items (2140-2169, 3040-3049); texts are the reference's where it has one.
    #[error("wiq or wiqid is mandatory")]
    WorkitemQueueRequired,
    #[error("Work item queue not found {wiq} ({wiqid}) not found.")]
    WorkitemQueueNotFound { wiq: String, wiqid: String },
    /// A field of a work item or queue request that is missing or unacceptable.
    #[error("{0}")]
    WorkitemInvalid(String),
    #[error("Work item queue with name {0} already exists")]
    WorkitemQueueExists(String),
    #[error("Work item queue with _id {0} not found.")]
    WorkitemQueueIdNotFound(String),
    #[error("Work item queue with name {0} not found.")]
    WorkitemQueueNameNotFound(String),
    #[error("Work item queue {0} is not empty, enable purge to delete")]
    WorkitemQueueNotEmpty(String),
    #[error("Failed purging workitemqueue {0}")]
    WorkitemQueuePurgeFailed(String),
    #[error("_id is mandatory")]
    WorkitemIdRequired,
    #[error("Work item  with _id {0} not found.")]
    WorkitemNotFound(String),
    #[error("Illegal state {0} on Workitem, must be failed, successful, processing or retry")]
    WorkitemIllegalState(String),
    #[error("Too many work items in one request: {count} (limit {limit})")]
    TooManyWorkitems { count: usize, limit: usize },
    /// A work item file that cannot be stored (too large, bad compression).
    #[error("Work item file {name}: {reason}")]
    WorkitemFile { name: String, reason: String },
    /// Checked before anything is stored: the client would never see the reply.
    #[error("The reply to this push would be about {size} bytes, over the {limit} bytes this transport's clients accept; push fewer or smaller items per request")]
    PushReplyTooLarge { size: usize, limit: usize },
    #[error("Unknown work item queue or {0} is missing invoke rights")]
    WorkitemQueueMissingInvoke(String),
    #[error("Unknown work item or  {0} is missing invoke rights")]
    WorkitemMissingInvoke(String),
    #[error("Unknown work item or access denied")]
    WorkitemDeleteDenied,

    // REST (`/api/v2`, `/api/v1`): 2180-2189.
    /// Commands that push to a connection or stream content cannot answer in one reply.
    #[error("{0} needs a streaming connection (WebSocket, gRPC SetupStream, TCP or unix socket); it is not available over REST")]
    StreamOverRest(String),
    /// The HTTP body is not the JSON the route expects.
    #[error("Invalid request body: {0}")]
    RestBody(String),
    #[error("Request body of {size} bytes is over the {limit} bytes limit")]
    RestBodyTooLarge { size: usize, limit: usize },

    // 4xxx: valid request, not served by this server (yet)
    #[error("{0} is not implemented by this server")]
    NotImplemented(String),
}

impl OpenCoreError {
    /// Stable wire code (`ErrorResponse.code`).
    pub fn code(&self) -> i32 {
        use OpenCoreError::*;
        match self {
            Internal => 1000,
            HandlerPanicked(_) => 1001,
            ShuttingDown => 1002,
            Storage(_) => 1003,
            StoreWriteFailed => 1010,
            EmptyCommand => 2000,
            UnknownCommand(_) => 2001,
            MissingData(_) => 2002,
            UndecodablePayload { .. } => 2003,
            MessageTooLarge { .. } => 2004,
            TooManyInFlight(_) => 2005,
            RateLimited(_) => 2006,
            BadRequest(_) => 2007,
            ReplyTooLarge { .. } => 2008,
            Query(_) => 2009,
            QueryMandatory => 2010,
            IdRequired => 2011,
            UpdateWithoutId => 2012,
            NullItem => 2013,
            CollectionRequired => 2014,
            DeleteManyNeedsFilter => 2015,
            NotUnique(_) => 2016,
            InvalidJson { .. } => 2017,
            DuplicateKey(_) => 2018,
            QueryTooLarge { .. } => 2019,
            Limit(limit) => limit.code(),
            SortTooLarge { .. } => 2040,
            DistinctTooLarge { .. } => 2041,
            TooManyInFlightBytes(_) => 2060,
            TooManyConnections(_) => 2061,
            TooManyConnectionsFromIp { .. } => 2062,
            MessageTooLargeBeforeSignin { .. } => 2063,
            SigninTimeout(_) => 2064,
            TooManyInFlightBeforeSignin(_) => 2065,
            NotSignedIn => 3000,
            InvalidToken { .. } => 3001,
            InvalidSigninToken(_) => 3002,
            LoginFailed(_) => 3003,
            DisabledUser(..) => 3004,
            AccessDenied => 3005,
            UsernameRequired => 3006,
            PasswordRequired => 3007,
            UnknownTokenUser(_) => 3008,
            GuestDisabled => 3009,
            AccessDeniedBecause(_) => 3010,
            NotFoundOrDenied { .. } => 3011,
            IdChosenByNonAdmin => 3012,
            BuiltinIdReserved(_) => 3013,
            PrincipalIdReused(_) => 3014,
            PrincipalTypeChange(_) => 3015,
            BuiltinRoleMembers(_) => 3016,
            OperatorOnProtectedField(_) => 3017,
            PasswordHashProbe(_) => 3018,
            EmailTaken(_) => 3019,
            NeedsConnection(_) => 2080,
            ConnectionClosed => 2081,
            TooManyChildren { .. } => 2082,
            InvalidWatchPath { .. } => 2083,
            TooManyWatchedCollections(_) => 2084,
            FeedUnavailable(_) => 1020,
            QueueAccessDenied { .. } => 3020,
            ExchangeAccessDenied { .. } => 3021,
            BadQueue { .. } => 2100,
            QueueInUse(_) => 2101,
            UnknownExchange(_) => 2102,
            ExchangeKindMismatch { .. } => 2103,
            UnknownQueue(_) => 2104,
            BusRefused(_) => 2105,
            QueueMessageTooLarge { .. } => 2106,
            BusUnavailable(_) => 1030,
            FileTooLarge { .. } => 2120,
            UploadIdle(_) => 2121,
            UploadIncomplete => 2122,
            FileDamaged(_) => 2123,
            GuestUpload => 3030,
            DownloadWithoutId => 3031,
            DownloadDenied(_) => 3032,
            FileContentCollection(_) => 3033,
            FileIdChosen(_) => 3034,
            WorkitemQueueRequired => 2140,
            WorkitemQueueNotFound { .. } => 2141,
            WorkitemInvalid(_) => 2142,
            WorkitemQueueExists(_) => 2143,
            WorkitemQueueIdNotFound(_) => 2144,
            WorkitemQueueNameNotFound(_) => 2145,
            WorkitemQueueNotEmpty(_) => 2146,
            WorkitemQueuePurgeFailed(_) => 2147,
            WorkitemIdRequired => 2148,
            WorkitemNotFound(_) => 2149,
            WorkitemIllegalState(_) => 2150,
            TooManyWorkitems { .. } => 2151,
            WorkitemFile { .. } => 2152,
            PushReplyTooLarge { .. } => 2153,
            WorkitemQueueMissingInvoke(_) => 3040,
            WorkitemMissingInvoke(_) => 3041,
            WorkitemDeleteDenied => 3042,
            StreamOverRest(_) => 2180,
            RestBody(_) => 2181,
            RestBodyTooLarge { .. } => 2182,
            NotImplemented(_) => 4000,
        }
    }

    /// The gRPC status a unary RPC reports for an error with this wire code.
    pub fn grpc_code_for(code: i32) -> tonic::Code {
        match code {
            2004
            | 2005
            | 2006
            | 2008
            | 2019
            | 2022
            | 2024
            | 2040
            | 2041
            | 2060..=2063
            | 2065
            | 2082
            | 2084
            | 2105
            | 2106
            | 2120
            | 2151
            | 2153 => tonic::Code::ResourceExhausted,
            2100 | 2102 | 2104 | 2141 | 2144 | 2145 | 2149 => tonic::Code::NotFound,
            2101 | 2103 | 2146 | 2147 => tonic::Code::FailedPrecondition,
            2143 => tonic::Code::AlreadyExists,
            3040..=3042 => tonic::Code::PermissionDenied,
            2001 => tonic::Code::Unimplemented,
            2080 => tonic::Code::FailedPrecondition,
            2121 | 2122 => tonic::Code::Aborted,
            2123 => tonic::Code::DataLoss,
            3030 | 3033 | 3034 => tonic::Code::PermissionDenied,
            3031 | 3032 => tonic::Code::NotFound,
            3005 | 3010 | 3012..=3021 => tonic::Code::PermissionDenied,
            3011 => tonic::Code::NotFound,
            2018 => tonic::Code::AlreadyExists,
            1002 | 1020 | 1030 => tonic::Code::Unavailable,
            _ => match code / 1000 {
                2 => tonic::Code::InvalidArgument,
                3 => tonic::Code::Unauthenticated,
                4 => tonic::Code::Unimplemented,
                _ => tonic::Code::Internal,
            },
        }
    }
}

impl From<crate::store::engine::LimitError> for OpenCoreError {
    fn from(limit: crate::store::engine::LimitError) -> Self {
        match limit {
            crate::store::engine::LimitError::Memory { limit_mb } => {
                OpenCoreError::QueryTooLarge { limit_mb }
            }
            other => OpenCoreError::Limit(other),
        }
    }
}

/// What the bus failed with, as clients see it.
impl From<crate::bus::BusError> for OpenCoreError {
    fn from(error: crate::bus::BusError) -> Self {
        use crate::bus::BusError;
        match error {
            BusError::QueueLocked(name) => OpenCoreError::QueueInUse(name),
            BusError::UnknownExchange(name) => OpenCoreError::UnknownExchange(name),
            BusError::ExchangeKindMismatch { name, existing } => {
                OpenCoreError::ExchangeKindMismatch { name, existing }
            }
            BusError::UnknownQueue(name) => OpenCoreError::UnknownQueue(name),
            BusError::Unavailable(reason) => OpenCoreError::BusUnavailable(reason),
            BusError::Refused(reason) => OpenCoreError::BusRefused(reason),
        }
    }
}

pub type Result<T, E = OpenCoreError> = std::result::Result<T, E>;

/// Store failures as clients see them: what the client asked for wrong keeps the
/// store's text (2009/2018); backend trouble is a storage error (1003).
impl From<crate::store::StoreError> for OpenCoreError {
    fn from(err: crate::store::StoreError) -> Self {
        use crate::store::StoreError;
        match err {
            err @ StoreError::DuplicateKey { .. } => OpenCoreError::DuplicateKey(err.to_string()),
            err @ (StoreError::Query(_)
            | StoreError::NoSuchCollection(_)
            | StoreError::NoSuchIndex(_)
            | StoreError::InvalidOptions(_)) => OpenCoreError::Query(err.to_string()),
            StoreError::Closed => OpenCoreError::ShuttingDown,
            StoreError::TooLarge { limit_mb } => OpenCoreError::QueryTooLarge { limit_mb },
            StoreError::Limit(limit) => OpenCoreError::from(limit),
            StoreError::SortTooLarge { limit_mb } => OpenCoreError::SortTooLarge { limit_mb },
            StoreError::DistinctTooLarge { limit_mb } => {
                OpenCoreError::DistinctTooLarge { limit_mb }
            }
            StoreError::WriteFailed(_) => OpenCoreError::StoreWriteFailed,
            #[allow(unreachable_patterns)]
            other => OpenCoreError::Storage(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_grouped() {
        let samples = [
            OpenCoreError::Internal,
            OpenCoreError::HandlerPanicked("x".into()),
            OpenCoreError::ShuttingDown,
            OpenCoreError::Storage("x".into()),
            OpenCoreError::EmptyCommand,
            OpenCoreError::UnknownCommand("x".into()),
            OpenCoreError::MissingData("x".into()),
            OpenCoreError::UndecodablePayload {
                command: "a".into(),
                type_name: "b".into(),
                reason: "c".into(),
            },
            OpenCoreError::MessageTooLarge { size: 2, limit: 1 },
            OpenCoreError::TooManyInFlight(1),
            OpenCoreError::RateLimited(1),
            OpenCoreError::BadRequest("x".into()),
            OpenCoreError::ReplyTooLarge { size: 2, limit: 1 },
            OpenCoreError::Query("x".into()),
            OpenCoreError::QueryMandatory,
            OpenCoreError::IdRequired,
            OpenCoreError::UpdateWithoutId,
            OpenCoreError::NullItem,
            OpenCoreError::CollectionRequired,
            OpenCoreError::DeleteManyNeedsFilter,
            OpenCoreError::NotUnique("x".into()),
            OpenCoreError::InvalidJson {
                field: "a".into(),
                reason: "b".into(),
            },
            OpenCoreError::DuplicateKey("x".into()),
            OpenCoreError::QueryTooLarge { limit_mb: 1 },
            OpenCoreError::Limit(crate::store::engine::LimitError::PathTooLong {
                path: "a".into(),
                segments: 2,
                limit: 1,
            }),
            OpenCoreError::Limit(crate::store::engine::LimitError::too_deep("x", 1)),
            OpenCoreError::Limit(crate::store::engine::LimitError::SortMemory { limit_mb: 1 }),
            OpenCoreError::Limit(crate::store::engine::LimitError::RegexTooLarge { limit: 1 }),
            OpenCoreError::Limit(crate::store::engine::LimitError::ValueTooLarge { limit: 1 }),
            OpenCoreError::SortTooLarge { limit_mb: 1 },
            OpenCoreError::DistinctTooLarge { limit_mb: 1 },
            OpenCoreError::StoreWriteFailed,
            OpenCoreError::TooManyInFlightBytes(1),
            OpenCoreError::TooManyConnections(1),
            OpenCoreError::TooManyConnectionsFromIp {
                ip: "a".into(),
                limit: 1,
            },
            OpenCoreError::MessageTooLargeBeforeSignin { size: 2, limit: 1 },
            OpenCoreError::SigninTimeout(1),
            OpenCoreError::TooManyInFlightBeforeSignin(1),
            OpenCoreError::NotSignedIn,
            OpenCoreError::InvalidToken {
                command: "a".into(),
                peer: "b".into(),
            },
            OpenCoreError::InvalidSigninToken("x".into()),
            OpenCoreError::LoginFailed("x".into()),
            OpenCoreError::DisabledUser("x".into(), "y".into()),
            OpenCoreError::AccessDenied,
            OpenCoreError::UsernameRequired,
            OpenCoreError::PasswordRequired,
            OpenCoreError::UnknownTokenUser("x".into()),
            OpenCoreError::GuestDisabled,
            OpenCoreError::AccessDeniedBecause("x".into()),
            OpenCoreError::NotFoundOrDenied {
                id: "a".into(),
                collection: "b".into(),
            },
            OpenCoreError::IdChosenByNonAdmin,
            OpenCoreError::BuiltinIdReserved("x".into()),
            OpenCoreError::PrincipalIdReused("x".into()),
            OpenCoreError::PrincipalTypeChange("x".into()),
            OpenCoreError::BuiltinRoleMembers("x".into()),
            OpenCoreError::OperatorOnProtectedField("x".into()),
            OpenCoreError::PasswordHashProbe("x".into()),
            OpenCoreError::EmailTaken("x".into()),
            OpenCoreError::NeedsConnection("x".into()),
            OpenCoreError::ConnectionClosed,
            OpenCoreError::TooManyChildren {
                kind: "watches",
                limit: 1,
            },
            OpenCoreError::InvalidWatchPath {
                path: "x".into(),
                reason: "y".into(),
            },
            OpenCoreError::FeedUnavailable("x".into()),
            OpenCoreError::TooManyWatchedCollections(1),
            OpenCoreError::QueueAccessDenied {
                user: "u".into(),
                name: "q".into(),
            },
            OpenCoreError::ExchangeAccessDenied {
                user: "u".into(),
                name: "e".into(),
            },
            OpenCoreError::BadQueue {
                name: "q".into(),
                correlation_id: "c".into(),
            },
            OpenCoreError::QueueInUse("q".into()),
            OpenCoreError::UnknownExchange("e".into()),
            OpenCoreError::ExchangeKindMismatch {
                name: "e".into(),
                existing: "fanout".into(),
            },
            OpenCoreError::UnknownQueue("q".into()),
            OpenCoreError::BusRefused("full".into()),
            OpenCoreError::BusUnavailable("down".into()),
            OpenCoreError::QueueMessageTooLarge { size: 2, limit: 1 },
            OpenCoreError::WorkitemQueueRequired,
            OpenCoreError::WorkitemQueueNotFound {
                wiq: "a".into(),
                wiqid: "b".into(),
            },
            OpenCoreError::WorkitemInvalid("x".into()),
            OpenCoreError::WorkitemQueueExists("x".into()),
            OpenCoreError::WorkitemQueueIdNotFound("x".into()),
            OpenCoreError::WorkitemQueueNameNotFound("x".into()),
            OpenCoreError::WorkitemQueueNotEmpty("x".into()),
            OpenCoreError::WorkitemQueuePurgeFailed("x".into()),
            OpenCoreError::WorkitemIdRequired,
            OpenCoreError::WorkitemNotFound("x".into()),
            OpenCoreError::WorkitemIllegalState("x".into()),
            OpenCoreError::TooManyWorkitems { count: 2, limit: 1 },
            OpenCoreError::WorkitemFile {
                name: "a".into(),
                reason: "b".into(),
            },
            OpenCoreError::PushReplyTooLarge { size: 2, limit: 1 },
            OpenCoreError::WorkitemQueueMissingInvoke("x".into()),
            OpenCoreError::WorkitemMissingInvoke("x".into()),
            OpenCoreError::WorkitemDeleteDenied,
            OpenCoreError::StreamOverRest("watch".into()),
            OpenCoreError::RestBody("x".into()),
            OpenCoreError::RestBodyTooLarge { size: 2, limit: 1 },
            OpenCoreError::NotImplemented("x".into()),
            OpenCoreError::FileTooLarge { limit: 1 },
            OpenCoreError::UploadIdle(1),
            OpenCoreError::UploadIncomplete,
            OpenCoreError::FileDamaged("x".into()),
            OpenCoreError::GuestUpload,
            OpenCoreError::DownloadWithoutId,
            OpenCoreError::DownloadDenied("x".into()),
            OpenCoreError::FileContentCollection("fs.chunks".into()),
            OpenCoreError::FileIdChosen("fs.files".into()),
        ];
        let mut codes: Vec<i32> = samples.iter().map(|e| e.code()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), samples.len());
    }

    #[test]
    fn reference_texts_are_kept() {
        assert_eq!(
            OpenCoreError::UnknownCommand("foo".into()).to_string(),
            "Unknown command foo"
        );
        assert_eq!(
            OpenCoreError::NotSignedIn.to_string(),
            "Not signed in, and missing jwt"
        );
        assert_eq!(
            OpenCoreError::LoginFailed("bob".into()).to_string(),
            "bob failed logging in using local"
        );
        assert_eq!(
            OpenCoreError::QueryMandatory.to_string(),
            "Query is mandatory"
        );
        assert_eq!(OpenCoreError::IdRequired.to_string(), "id cannot be null");
        assert_eq!(
            OpenCoreError::NotFoundOrDenied {
                id: "x".into(),
                collection: "entities".into()
            }
            .to_string(),
            "item x not found in entities or Access Denied"
        );
        assert_eq!(
            OpenCoreError::AccessDeniedBecause("creating reserved collection users".into())
                .to_string(),
            "Access denied, creating reserved collection users"
        );
    }
}
