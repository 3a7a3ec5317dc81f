//! Documents to wire types and back: dates are protobuf Timestamps in every reply
//! (the reference leaves them as strings in `pushworkitems`), payloads are JSON text,
//! `_acl` entries are `Ace` messages.

use bson::{Bson, DateTime, Document};
use prost_types::Timestamp;

use crate::acl::ace::{self, Ace};
use crate::documents::metadata::id_text;
use crate::documents::output;
use crate::error::OpenCoreError;
use crate::proto;

/// A Timestamp as a date; out-of-range values are refused rather than wrapped.
pub fn timestamp_to_date(field: &str, ts: &Timestamp) -> Result<DateTime, OpenCoreError> {
    let invalid = || OpenCoreError::WorkitemInvalid(format!("{field} is not a valid timestamp"));
    if !(0..1_000_000_000).contains(&ts.nanos) {
        return Err(invalid());
    }
    let millis = ts
        .seconds
        .checked_mul(1000)
        .and_then(|ms| ms.checked_add(i64::from(ts.nanos / 1_000_000)))
        .ok_or_else(invalid)?;
    // Year 0 to 9999, what every client can represent.
    if !(-62_167_219_200_000..=253_402_300_799_999).contains(&millis) {
        return Err(invalid());
    }
    Ok(DateTime::from_millis(millis))
}

pub fn date_to_timestamp(date: DateTime) -> Timestamp {
    let millis = date.timestamp_millis();
    Timestamp {
        seconds: millis.div_euclid(1000),
        nanos: (millis.rem_euclid(1000) * 1_000_000) as i32,
    }
}

fn date_field(document: &Document, key: &str) -> Option<Timestamp> {
    match document.get(key) {
        Some(Bson::DateTime(date)) => Some(date_to_timestamp(*date)),
        _ => None,
    }
}

fn text(document: &Document, key: &str) -> String {
    match document.get(key) {
        Some(Bson::String(s)) => s.clone(),
        Some(Bson::ObjectId(oid)) => oid.to_hex(),
        _ => String::new(),
    }
}

/// A number field as i32, whatever numeric type it was stored with.
pub fn int(document: &Document, key: &str) -> Option<i32> {
    match document.get(key)? {
        Bson::Int32(n) => Some(*n),
        Bson::Int64(n) => i32::try_from(*n).ok(),
        Bson::Double(n) if n.is_finite() => Some(*n as i32),
        _ => None,
    }
}

pub fn id_of(document: &Document) -> String {
    document.get("_id").map(id_text).unwrap_or_default()
}

/// A stored file entry (`{name, filename, _id}`) as a `WorkitemFile` without content.
pub fn file_entry(entry: &Document) -> proto::WorkitemFile {
    let filename = match text(entry, "filename") {
        name if name.is_empty() => text(entry, "name"),
        name => name,
    };
    proto::WorkitemFile {
        filename,
        id: text(entry, "_id"),
        compressed: false,
        file: Default::default(),
    }
}

/// The file entries of an item document.
pub fn file_entries(item: &Document) -> Vec<Document> {
    item.get_array("files")
        .map(|files| {
            files
                .iter()
                .filter_map(Bson::as_document)
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

pub fn workitem(item: &Document) -> proto::Workitem {
    let payload = match item.get("payload") {
        Some(value @ Bson::Document(_)) => output::value_to_json(value),
        Some(Bson::Null) | None => "{}".to_string(),
        Some(other) => output::value_to_json(other),
    };
    proto::Workitem {
        id: id_of(item),
        name: text(item, "name"),
        payload,
        priority: int(item, "priority").unwrap_or(super::DEFAULT_PRIORITY),
        nextrun: date_field(item, "nextrun"),
        lastrun: date_field(item, "lastrun"),
        files: file_entries(item).iter().map(file_entry).collect(),
        state: text(item, "state"),
        wiq: text(item, "wiq"),
        wiqid: text(item, "wiqid"),
        retries: int(item, "retries").unwrap_or(0),
        username: text(item, "username"),
        success_wiqid: text(item, "success_wiqid"),
        failed_wiqid: text(item, "failed_wiqid"),
        success_wiq: text(item, "success_wiq"),
        failed_wiq: text(item, "failed_wiq"),
        errormessage: text(item, "errormessage"),
        errorsource: text(item, "errorsource"),
        errortype: text(item, "errortype"),
        workspaceid: text(item, "_workspaceid"),
    }
}

pub fn queue(queue: &Document) -> proto::WorkItemQueue {
    proto::WorkItemQueue {
        workflowid: text(queue, "workflowid"),
        robotqueue: text(queue, "robotqueue"),
        amqpqueue: text(queue, "amqpqueue"),
        projectid: text(queue, "projectid"),
        usersrole: text(queue, "usersrole"),
        maxretries: int(queue, "maxretries").unwrap_or(0),
        retrydelay: int(queue, "retrydelay").unwrap_or(0),
        initialdelay: int(queue, "initialdelay").unwrap_or(0),
        success_wiqid: text(queue, "success_wiqid"),
        failed_wiqid: text(queue, "failed_wiqid"),
        success_wiq: text(queue, "success_wiq"),
        failed_wiq: text(queue, "failed_wiq"),
        id: id_of(queue),
        acl: ace::parse(queue.get("_acl"))
            .into_iter()
            .map(|ace| proto::Ace {
                id: ace.id,
                deny: ace.deny,
                rights: ace.rights,
            })
            .collect(),
        name: text(queue, "name"),
        createdbyid: text(queue, "_createdbyid"),
        createdby: text(queue, "_createdby"),
        created: date_field(queue, "_created"),
        modifiedbyid: text(queue, "_modifiedbyid"),
        modifiedby: text(queue, "_modifiedby"),
        modified: date_field(queue, "_modified"),
        version: int(queue, "_version").unwrap_or(0),
        packageid: text(queue, "packageid"),
        workspaceid: text(queue, "_workspaceid"),
    }
}

/// The `_acl` of a request (`Ace` messages), parsed and normalised like any ACL.
pub fn acl_from_proto(aces: &[proto::Ace]) -> Vec<Ace> {
    let value = Bson::Array(
        aces.iter()
            .map(|a| {
                let mut entry = bson::doc! {"_id": &a.id, "rights": a.rights};
                if a.deny {
                    entry.insert("deny", true);
                }
                Bson::Document(entry)
            })
            .collect(),
    );
    ace::parse(Some(&value))
}
