//! Translations between the store's types and the MongoDB driver's: error mapping,
//! creation options, index models, and connection-string redaction for logs.

use std::time::Duration;

use bson::{doc, Bson, Document};
use mongodb::error::{Error as MongoError, ErrorKind, WriteFailure};
use mongodb::options::IndexOptions;
use mongodb::IndexModel;

use crate::store::{CollectionOptions, IndexSpec, StoreError};

/// MongoDB server error codes the store distinguishes.
pub mod codes {
    pub const NAMESPACE_NOT_FOUND: i32 = 26;
    pub const INDEX_NOT_FOUND: i32 = 27;
    pub const NAMESPACE_EXISTS: i32 = 48;
    pub const CANNOT_CREATE_INDEX: i32 = 67;
    pub const INVALID_OPTIONS: i32 = 72;
    pub const INDEX_OPTIONS_CONFLICT: i32 = 85;
    pub const INDEX_KEY_SPECS_CONFLICT: i32 = 86;
    pub const INVALID_INDEX_SPECIFICATION_OPTION: i32 = 197;
    pub const INVALID_RESUME_TOKEN: i32 = 260;
    pub const CHANGE_STREAM_FATAL_ERROR: i32 = 280;
    pub const CHANGE_STREAM_HISTORY_LOST: i32 = 286;
    pub const DUPLICATE_KEY: i32 = 11000;
    /// Older servers' duplicate-key codes (update paths, capped collections).
    pub const DUPLICATE_KEY_LEGACY: [i32; 2] = [11001, 12582];
}

fn is_duplicate_code(code: i32) -> bool {
    code == codes::DUPLICATE_KEY || codes::DUPLICATE_KEY_LEGACY.contains(&code)
}

/// The server's error code and message, when the error came from the server.
pub fn server_error(err: &MongoError) -> Option<(i32, String)> {
    match err.kind.as_ref() {
        ErrorKind::Command(command) => Some((command.code, command.message.clone())),
        ErrorKind::Write(WriteFailure::WriteError(write)) => {
            Some((write.code, write.message.clone()))
        }
        ErrorKind::Write(WriteFailure::WriteConcernError(concern)) => {
            Some((concern.code, concern.message.clone()))
        }
        ErrorKind::InsertMany(insert) => {
            if let Some(first) = insert
                .write_errors
                .as_ref()
                .and_then(|errors| errors.first())
            {
                return Some((first.code, first.message.clone()));
            }
            insert
                .write_concern_error
                .as_ref()
                .map(|concern| (concern.code, concern.message.clone()))
        }
        ErrorKind::BulkWrite(bulk) => bulk
            .write_errors
            .values()
            .next()
            .map(|write| (write.code, write.message.clone()))
            .or_else(|| {
                bulk.write_concern_errors
                    .first()
                    .map(|concern| (concern.code, concern.message.clone()))
            }),
        _ => None,
    }
}

pub fn server_code(err: &MongoError) -> Option<i32> {
    server_error(err).map(|(code, _)| code)
}

/// The key part of MongoDB's duplicate-key message (`{ _id: "x" }`), else the message.
fn duplicate_key_text(message: &str) -> String {
    match message.find("dup key:") {
        Some(at) => message[at + "dup key:".len()..].trim().to_string(),
        None => message.to_string(),
    }
}

/// Maps a driver error onto the store's error kinds.
pub fn store_error(collection: &str, err: MongoError) -> StoreError {
    if let Some((code, message)) = server_error(&err) {
        return match code {
            code if is_duplicate_code(code) => StoreError::DuplicateKey {
                collection: collection.to_string(),
                key: duplicate_key_text(&message),
            },
            codes::NAMESPACE_NOT_FOUND => StoreError::NoSuchCollection(collection.to_string()),
            codes::INDEX_NOT_FOUND => StoreError::Query(message),
            codes::NAMESPACE_EXISTS
            | codes::CANNOT_CREATE_INDEX
            | codes::INVALID_OPTIONS
            | codes::INDEX_OPTIONS_CONFLICT
            | codes::INDEX_KEY_SPECS_CONFLICT
            | codes::INVALID_INDEX_SPECIFICATION_OPTION => StoreError::InvalidOptions(message),
            _ if is_connection_trouble(&err) => StoreError::Backend(err.to_string()),
            _ => StoreError::Query(message),
        };
    }
    match err.kind.as_ref() {
        ErrorKind::InvalidArgument { message, .. } => StoreError::Query(message.clone()),
        ErrorKind::BsonSerialization(_) | ErrorKind::BsonDeserialization(_) => {
            StoreError::Query(err.to_string())
        }
        ErrorKind::Shutdown => StoreError::Closed,
        _ => StoreError::Backend(err.to_string()),
    }
}

/// Errors of the connection rather than of the request (the server said "not
/// primary", "shutting down", ...): retryable by the caller, so not a query error.
fn is_connection_trouble(err: &MongoError) -> bool {
    err.contains_label(mongodb::error::RETRYABLE_WRITE_ERROR)
        || err.contains_label(mongodb::error::TRANSIENT_TRANSACTION_ERROR)
        || err.contains_label(mongodb::error::RESUMABLE_CHANGE_STREAM_ERROR)
}

const GRANULARITIES: [&str; 3] = ["seconds", "minutes", "hours"];

/// The `create` command for a collection with these options.
pub fn create_command(name: &str, options: &CollectionOptions) -> Result<Document, StoreError> {
    let mut command = doc! {"create": name};
    if let Some(timeseries) = &options.timeseries {
        if timeseries.time_field.is_empty() {
            return Err(StoreError::InvalidOptions(
                "timeseries.timeField is required".into(),
            ));
        }
        let mut spec = doc! {"timeField": &timeseries.time_field};
        if let Some(meta) = &timeseries.meta_field {
            if meta == &timeseries.time_field {
                return Err(StoreError::InvalidOptions(
                    "timeseries.metaField must differ from timeField".into(),
                ));
            }
            spec.insert("metaField", meta);
        }
        if let Some(granularity) = &timeseries.granularity {
            if !GRANULARITIES.contains(&granularity.as_str()) {
                return Err(StoreError::InvalidOptions(format!(
                    "timeseries.granularity must be one of seconds, minutes, hours, not '{granularity}'"
                )));
            }
            spec.insert("granularity", granularity);
        }
        command.insert("timeseries", spec);
    }
    if let Some(seconds) = options.expire_after_seconds {
        if options.timeseries.is_none() {
            return Err(StoreError::InvalidOptions(
                "expireAfterSeconds is only supported on timeseries collections".into(),
            ));
        }
        if seconds < 0 {
            return Err(StoreError::InvalidOptions(
                "expireAfterSeconds must be non-negative".into(),
            ));
        }
        command.insert("expireAfterSeconds", seconds);
    }
    Ok(command)
}

/// The driver's index model for a spec.
pub fn index_model(spec: &IndexSpec) -> Result<IndexModel, StoreError> {
    if spec.keys.is_empty() {
        return Err(StoreError::InvalidOptions(
            "index keys must not be empty".into(),
        ));
    }
    let mut options = IndexOptions::default();
    options.name = spec.name.clone();
    if spec.unique {
        options.unique = Some(true);
    }
    if let Some(seconds) = spec.expire_after_seconds {
        if seconds < 0 {
            return Err(StoreError::InvalidOptions(
                "expireAfterSeconds must be non-negative".into(),
            ));
        }
        options.expire_after = Some(Duration::from_secs(seconds as u64));
    }
    options.partial_filter_expression = spec.partial_filter.clone();
    Ok(IndexModel::builder()
        .keys(spec.keys.clone())
        .options(options)
        .build())
}

/// listCollections reports a timeseries collection as `timeseries`; some
/// MongoDB-protocol servers say `collection` but keep the `timeseries` option.
pub fn collection_kind(info: &Document) -> String {
    let reported = info.get_str("type").unwrap_or("collection");
    let timeseries = info
        .get_document("options")
        .map(|options| options.contains_key("timeseries"))
        .unwrap_or(false);
    if timeseries {
        "timeseries".to_string()
    } else {
        reported.to_string()
    }
}

/// The `_id` of a change event's document key (the whole key when it has no `_id`).
pub fn key_id(document_key: Option<Document>) -> Bson {
    match document_key {
        Some(mut key) => key.remove("_id").unwrap_or(Bson::Document(key)),
        None => Bson::Null,
    }
}

/// The connection string without its password, for logs.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let host_end = rest.find('/').unwrap_or(rest.len());
    match rest[..host_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or("");
            format!("{}{}:***@{}", &url[..scheme_end + 3], user, &rest[at + 1..])
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod unit {
    use super::*;
    use crate::store::TimeseriesOptions;

    #[test]
    fn mongo_redacts_passwords() {
        assert_eq!(
            redact_url("mongodb://u:secret@h:1/db?x=1"),
            "mongodb://u:***@h:1/db?x=1"
        );
        assert_eq!(
            redact_url("mongodb://h:1/?directConnection=true"),
            "mongodb://h:1/?directConnection=true"
        );
        assert_eq!(
            redact_url("mongodb+srv://u:p@a@cluster/db"),
            "mongodb+srv://u:***@cluster/db"
        );
    }

    #[test]
    fn mongo_create_command_options() {
        let options = CollectionOptions {
            timeseries: Some(TimeseriesOptions {
                time_field: "ts".into(),
                meta_field: Some("m".into()),
                granularity: Some("minutes".into()),
            }),
            expire_after_seconds: Some(60),
        };
        assert_eq!(
            create_command("t", &options).unwrap(),
            doc! {"create": "t", "timeseries": {"timeField": "ts", "metaField": "m", "granularity": "minutes"}, "expireAfterSeconds": 60_i64}
        );
        let bad = CollectionOptions {
            timeseries: Some(TimeseriesOptions {
                time_field: "ts".into(),
                meta_field: None,
                granularity: Some("weeks".into()),
            }),
            expire_after_seconds: None,
        };
        assert!(matches!(
            create_command("t", &bad),
            Err(StoreError::InvalidOptions(_))
        ));
        let ttl_only = CollectionOptions {
            timeseries: None,
            expire_after_seconds: Some(5),
        };
        assert!(matches!(
            create_command("t", &ttl_only),
            Err(StoreError::InvalidOptions(_))
        ));
    }

    #[test]
    fn mongo_duplicate_key_text() {
        assert_eq!(
            duplicate_key_text(
                "E11000 duplicate key error collection: d.c index: _id_ dup key: { _id: 1 }"
            ),
            "{ _id: 1 }"
        );
    }
}
