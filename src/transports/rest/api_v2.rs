//! `POST /api/v2`: one envelope as JSON in, the reply envelope as JSON out.
//!
//! `data` may be (a) the request message as a JSON object (field names as in the
//! .proto), (b) a string holding such an object (the reference's form), (c) an `Any`
//! `{type_url, value}` with `value` as a Node Buffer JSON, a byte array or base64, or
//! (d) a Node Buffer JSON of the raw protobuf bytes. Replies mirror the request: JSON
//! requests get `data` as the reply message's JSON and an HTTP status from the error
//! code; protobuf requests (c, d: what `@openiap/nodeapi` sends in `http:` mode) get
//! `data` as `{type_url, value: {"type":"Buffer","data":[…]}}` and always 200, because
//! that client rejects any other status without settling the call and reads errors
//! from the `error` envelope.

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use prost::{Message, Name};
use serde_json::{json, Map, Value};

use crate::error::OpenCoreError;
use crate::proto::json::{any_from_json, bytes_from_json};
use crate::proto::*;
use crate::protocol::envelope::error_reply;
use crate::services::Services;
use crate::transports::rest::dispatch::{self, Caller};
use crate::transports::rest::{caller, read_body, EnvelopeJson, ErrorJson};

/// Commands whose results go to a connection (events, deliveries, content streams).
const STREAMING: [&str; 8] = [
    "watch",
    "unwatch",
    "registerqueue",
    "registerexchange",
    "unregisterqueue",
    "closequeue",
    "upload",
    "download",
];

/// Request and reply types per command, for the JSON form of `data`.
macro_rules! json_table {
    ($($command:literal => $request:ty, $reply:ty;)*) => {
        /// `Some(type_url)` for every command served over REST.
        fn request_type_url(command: &str) -> Option<String> {
            match command {
                $($command => Some(<$request>::type_url()),)*
                _ => None,
            }
        }

        /// The request message's protobuf bytes from its JSON form.
        fn request_from_json(command: &str, value: Value) -> Result<Vec<u8>, String> {
            match command {
                $($command => serde_json::from_value::<$request>(value)
                    .map(|m| m.encode_to_vec())
                    .map_err(|err| err.to_string()),)*
                _ => Err(format!("no JSON form for {command}")),
            }
        }

        /// The JSON form of the reply message to `command`.
        fn reply_to_json(command: &str, bytes: &[u8]) -> Result<Value, String> {
            fn convert<M: Message + Default + serde::Serialize>(bytes: &[u8]) -> Result<Value, String> {
                let message = M::decode(bytes).map_err(|err| err.to_string())?;
                serde_json::to_value(&message).map_err(|err| err.to_string())
            }
            match command {
                $($command => convert::<$reply>(bytes),)*
                _ => Err(format!("no JSON form for {command}")),
            }
        }
    };
}

json_table! {
    "signin" => SigninRequest, SigninResponse;
    "getelement" => GetElementRequest, GetElementResponse;
    "ping" => PingRequest, PingResponse;
    "query" => QueryRequest, QueryResponse;
    "count" => CountRequest, CountResponse;
    "distinct" => DistinctRequest, DistinctResponse;
    "aggregate" => AggregateRequest, AggregateResponse;
    "insertone" => InsertOneRequest, InsertOneResponse;
    "insertmany" => InsertManyRequest, InsertManyResponse;
    "updateone" => UpdateOneRequest, UpdateOneResponse;
    "updatedocument" => UpdateDocumentRequest, UpdateDocumentResponse;
    "insertorupdateone" => InsertOrUpdateOneRequest, InsertOrUpdateOneResponse;
    "insertorupdatemany" => InsertOrUpdateManyRequest, InsertOrUpdateManyResponse;
    "deleteone" => DeleteOneRequest, DeleteOneResponse;
    "deletemany" => DeleteManyRequest, DeleteManyResponse;
    "getdocumentversion" => GetDocumentVersionRequest, GetDocumentVersionResponse;
    "listcollections" => ListCollectionsRequest, ListCollectionsResponse;
    "createcollection" => CreateCollectionRequest, CreateCollectionResponse;
    "dropcollection" => DropCollectionRequest, DropCollectionResponse;
    "createindex" => CreateIndexRequest, CreateIndexResponse;
    "getindexes" => GetIndexesRequest, GetIndexesResponse;
    "dropindex" => DropIndexRequest, DropIndexResponse;
    "queuemessage" => QueueMessageRequest, QueueMessageResponse;
    "pushworkitem" => PushWorkitemRequest, PushWorkitemResponse;
    "pushworkitems" => PushWorkitemsRequest, PushWorkitemsResponse;
    "popworkitem" => PopWorkitemRequest, PopWorkitemResponse;
    "updateworkitem" => UpdateWorkitemRequest, UpdateWorkitemResponse;
    "deleteworkitem" => DeleteWorkitemRequest, DeleteWorkitemResponse;
    "addworkitemqueue" => AddWorkItemQueueRequest, AddWorkItemQueueResponse;
    "updateworkitemqueue" => UpdateWorkItemQueueRequest, UpdateWorkItemQueueResponse;
    "deleteworkitemqueue" => DeleteWorkItemQueueRequest, DeleteWorkItemQueueResponse;
}

/// How `data` arrived, which decides how the reply is written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    Json,
    Protobuf,
}

/// Runs one envelope; see the module comment for the accepted forms.
#[utoipa::path(
    post,
    path = "/api/v2",
    tag = "api/v2",
    request_body(content = EnvelopeJson, description = "An envelope; `data` is the request message as JSON (or a string of it, or protobuf bytes as a Node Buffer / `{type_url, value}`)"),
    responses(
        (status = 200, description = "The reply envelope (`command` = `<command>reply`, `data` = the reply message as JSON); protobuf requests get errors here too", body = EnvelopeJson),
        (status = 400, description = "Bad JSON, unknown or streaming command, undecodable data", body = EnvelopeJson),
        (status = 401, description = "No or invalid token for a command that needs a user", body = EnvelopeJson),
        (status = 403, description = "Access denied", body = EnvelopeJson),
        (status = 413, description = "Body over the server's maximum message size", body = EnvelopeJson),
        (status = 429, description = "Rate or in-flight limit of this address", body = EnvelopeJson),
    ),
    security((), ("bearer" = []))
)]
pub async fn post_envelope(
    request: HttpRequest,
    payload: web::Payload,
    services: web::Data<Arc<Services>>,
) -> HttpResponse {
    let body = match read_body(&services, payload, &request).await {
        Ok(body) => body,
        Err(err) => return error_response(&err, "", Form::Json),
    };
    let (envelope, form) = match parse(&body) {
        Ok(parsed) => parsed,
        Err((err, id)) => return error_response(&err, &id, Form::Json),
    };
    let caller = caller(&request, &envelope.jwt);
    respond(&services, &caller, envelope, form).await
}

async fn respond(
    services: &Arc<Services>,
    caller: &Caller,
    envelope: Envelope,
    form: Form,
) -> HttpResponse {
    let command = envelope.command.clone();
    let id = envelope.id.clone();
    // `noop`/`pong` are consumed without a reply, as on a connection; the Node
    // client's connect probe (a `noop`) wants a 200 with JSON.
    if crate::commands::is_silent(&command) {
        return HttpResponse::Ok().json(json!({}));
    }
    let reply = match dispatch::run(services, caller, envelope).await {
        Ok(Some(reply)) => reply,
        Ok(None) => return HttpResponse::Ok().json(json!({})),
        Err(err) => return error_response(&err, &id, form),
    };
    let status = match dispatch::error_of(&reply) {
        Some(error) if form == Form::Json => dispatch::status_for(error.code),
        _ => actix_web::http::StatusCode::OK,
    };
    let data = reply.data.as_ref().map(|any| match form {
        Form::Protobuf => buffer_any(any),
        Form::Json => {
            let converted = if reply.command == "error" {
                ErrorResponse::decode(any.value.as_slice())
                    .map_err(|err| err.to_string())
                    .and_then(|e| serde_json::to_value(e).map_err(|err| err.to_string()))
            } else {
                reply_to_json(&command, &any.value)
            };
            converted.unwrap_or_else(|err| {
                tracing::warn!(%err, command, "REST reply not convertible to JSON");
                buffer_any(any)
            })
        }
    });
    HttpResponse::build(status).json(envelope_json(&reply, data))
}

fn envelope_json(reply: &Envelope, data: Option<Value>) -> Value {
    json!({
        "command": reply.command,
        "id": reply.id,
        "rid": reply.rid,
        "priority": reply.priority,
        "traceid": reply.traceid,
        "spanid": reply.spanid,
        "data": data,
    })
}

/// The reference's reply form: `value` as a Node Buffer JSON.
fn buffer_any(any: &prost_types::Any) -> Value {
    json!({"type_url": any.type_url, "value": {"type": "Buffer", "data": any.value}})
}

/// An `error` envelope for a failure before or around dispatch.
fn error_response(err: &OpenCoreError, id: &str, form: Form) -> HttpResponse {
    let reply = error_reply(id, err);
    let status = match form {
        Form::Json => dispatch::status_for(err.code()),
        Form::Protobuf => actix_web::http::StatusCode::OK,
    };
    let data = match form {
        Form::Json => serde_json::to_value(ErrorJson::from(err)).ok(),
        Form::Protobuf => reply.data.as_ref().map(buffer_any),
    };
    HttpResponse::build(status).json(envelope_json(&reply, data))
}

/// The envelope from the body; on failure, the error and the request id (if any).
fn parse(body: &[u8]) -> Result<(Envelope, Form), (OpenCoreError, String)> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|err| (OpenCoreError::RestBody(err.to_string()), String::new()))?;
    let Value::Object(mut object) = value else {
        return Err((
            OpenCoreError::RestBody("expected a JSON object (an envelope)".into()),
            String::new(),
        ));
    };
    let id = text(&object, "id");
    let fail = |err: OpenCoreError| (err, id.clone());
    let command = text(&object, "command").trim().to_lowercase();
    if command.is_empty() {
        return Err(fail(OpenCoreError::EmptyCommand));
    }
    if STREAMING.contains(&command.as_str()) {
        return Err(fail(OpenCoreError::StreamOverRest(command)));
    }
    let mut envelope = Envelope {
        command: command.clone(),
        id: id.clone(),
        rid: text(&object, "rid"),
        jwt: text(&object, "jwt"),
        traceid: text(&object, "traceid"),
        spanid: text(&object, "spanid"),
        priority: object
            .get("priority")
            .and_then(Value::as_i64)
            .and_then(|p| i32::try_from(p).ok())
            .unwrap_or(0),
        ..Default::default()
    };
    if crate::commands::is_silent(&command) {
        return Ok((envelope, Form::Json));
    }
    let Some(type_url) = request_type_url(&command) else {
        return Err(fail(OpenCoreError::UnknownCommand(command)));
    };
    let undecodable = |reason: String| OpenCoreError::UndecodablePayload {
        command: command.clone(),
        type_name: type_url.rsplit('.').next().unwrap_or_default().to_string(),
        reason,
    };
    let (data, form) = match object.remove("data") {
        None | Some(Value::Null) => (None, Form::Json),
        Some(Value::String(text)) => {
            let value: Value = serde_json::from_str(&text)
                .map_err(|err| fail(undecodable(format!("data is not JSON: {err}"))))?;
            (
                Some(from_json(&command, value, &type_url).map_err(|e| fail(undecodable(e)))?),
                Form::Json,
            )
        }
        Some(Value::Object(map)) if is_any(&map) => {
            let mut any = any_from_json(&Value::Object(map))
                .ok_or_else(|| fail(undecodable("data.value is not bytes".into())))?;
            if any.type_url.is_empty() {
                any.type_url = type_url;
            }
            (Some(any), Form::Protobuf)
        }
        Some(Value::Object(map)) if is_buffer(&map) => {
            let value = bytes_from_json(&Value::Object(map))
                .ok_or_else(|| fail(undecodable("data.data is not a byte array".into())))?;
            (Some(prost_types::Any { type_url, value }), Form::Protobuf)
        }
        Some(value @ Value::Object(_)) => (
            Some(from_json(&command, value, &type_url).map_err(|e| fail(undecodable(e)))?),
            Form::Json,
        ),
        Some(_) => {
            return Err(fail(undecodable(
                "data must be an object, a JSON string or protobuf bytes".into(),
            )))
        }
    };
    envelope.data = data;
    Ok((envelope, form))
}

fn from_json(command: &str, value: Value, type_url: &str) -> Result<prost_types::Any, String> {
    if !value.is_object() {
        return Err("data must be a JSON object".into());
    }
    Ok(prost_types::Any {
        type_url: type_url.to_string(),
        value: request_from_json(command, value)?,
    })
}

fn is_any(map: &Map<String, Value>) -> bool {
    (map.contains_key("type_url") || map.contains_key("typeUrl")) && map.contains_key("value")
}

fn is_buffer(map: &Map<String, Value>) -> bool {
    map.get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| t.eq_ignore_ascii_case("buffer"))
        && map.get("data").is_some_and(Value::is_array)
}

fn text(object: &Map<String, Value>, key: &str) -> String {
    match object.get(key) {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_data_form_decodes_to_the_same_request() {
        let forms = [
            json!({"command": "Query", "data": {"collectionname": "c", "top": 2}}),
            json!({"command": "query", "data": "{\"collectionname\":\"c\",\"top\":2}"}),
        ];
        let expected = QueryRequest {
            collectionname: "c".into(),
            top: 2,
            ..Default::default()
        };
        let bytes = expected.encode_to_vec();
        let binary = [
            json!({"command": "query", "data": {"type_url": "", "value": {"type": "Buffer", "data": bytes}}}),
            json!({"command": "query", "data": {"type": "Buffer", "data": bytes}}),
        ];
        for (body, form) in forms
            .iter()
            .map(|b| (b, Form::Json))
            .chain(binary.iter().map(|b| (b, Form::Protobuf)))
        {
            let (envelope, got) = parse(body.to_string().as_bytes()).expect("parses");
            assert!(got == form, "{body}");
            assert_eq!(envelope.command, "query");
            let any = envelope.data.expect("data");
            assert_eq!(any.type_url, QueryRequest::type_url());
            assert_eq!(
                QueryRequest::decode(any.value.as_slice()).ok(),
                Some(expected.clone())
            );
        }
    }

    #[test]
    fn bad_bodies_are_refused_with_stable_codes() {
        let code = |body: &str| parse(body.as_bytes()).err().map(|(e, _)| e.code());
        assert_eq!(code("not json"), Some(2181));
        assert_eq!(code("[1]"), Some(2181));
        assert_eq!(code(&"[".repeat(10_000)), Some(2181));
        assert_eq!(code(r#"{"command": ""}"#), Some(2000));
        assert_eq!(code(r#"{"command": "nosuch"}"#), Some(2001));
        assert_eq!(code(r#"{"command": "watch"}"#), Some(2180));
        assert_eq!(code(r#"{"command": "query", "data": 5}"#), Some(2003));
        assert_eq!(code(r#"{"command": "query", "data": "{"}"#), Some(2003));
        assert_eq!(
            code(r#"{"command": "query", "data": {"top": "x"}}"#),
            Some(2003)
        );
    }
}
