//! REST: `POST /api/v2` round trips in every `data` form, error replies, `/api/v1` CRUD
//! and its ACLs, body limits, and the OpenAPI document (validated by
//! `openapi-spec-validator` when available).

mod common;

use std::net::SocketAddr;

use base64::Engine;
use common::*;
use opencore::proto::{QueryRequest, QueryResponse};
use prost::{Message, Name};
use serde_json::{json, Value};

/// One HTTP/1.1 request (always with a JSON body, empty if none); returns (status, body
/// as JSON or `Value::String` if not JSON).
async fn rest(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&[u8]>,
) -> (u16, Value) {
    let answer = send_http(
        addr,
        method,
        path,
        &bearer_header(bearer),
        Some(body.unwrap_or_default()),
    )
    .await;
    let body = answer.text();
    let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    (answer.status, value)
}

async fn v2(addr: SocketAddr, bearer: Option<&str>, envelope: Value) -> (u16, Value) {
    rest(
        addr,
        "POST",
        "/api/v2",
        bearer,
        Some(envelope.to_string().as_bytes()),
    )
    .await
}

/// Signs in over REST; returns the token.
async fn signin(addr: SocketAddr, username: &str, password: &str) -> String {
    let (status, reply) = v2(
        addr,
        None,
        json!({"command": "signin", "id": "s1", "data": {"username": username, "password": password}}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["command"], "signinreply");
    assert_eq!(reply["rid"], "s1");
    assert_eq!(reply["data"]["user"]["username"], username);
    reply["data"]["jwt"].as_str().expect("jwt").to_string()
}

/// A user created by the admin over REST (`newpassword` is hashed by the server).
async fn create_user(addr: SocketAddr, admin: &str, name: &str) {
    let item = json!({"_type": "user", "name": name, "username": name, "newpassword": "pw-12345"});
    let (status, reply) = v2(
        addr,
        Some(admin),
        json!({"command": "insertone", "data": {"collectionname": "users", "item": item.to_string()}}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
}

fn results(reply: &Value, field: &str) -> Value {
    let text = reply["data"][field].as_str().expect("results text");
    serde_json::from_str(text).expect("results JSON")
}

#[tokio::test(flavor = "multi_thread")]
async fn v2_round_trips_in_every_data_form() {
    let server = TestServer::start();
    let addr = server.http();
    let jwt = signin(addr, ADMIN, ADMIN_PASSWORD).await;

    // getelement needs no user.
    let (status, reply) = v2(
        addr,
        None,
        json!({"command": "getelement", "id": "g", "data": {"xpath": "hello"}}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["command"], "getelement");
    assert!(
        reply["data"]["xpath"]
            .as_str()
            .unwrap_or_default()
            .contains("hello"),
        "{reply}"
    );

    // (a) JSON object, token in the header.
    let item = json!({"name": "first", "n": 1}).to_string();
    let (status, reply) = v2(
        addr,
        Some(&jwt),
        json!({"command": "insertone", "id": "i1", "data": {"collectionname": "entities", "item": item}}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["command"], "insertonereply");
    let inserted: Value =
        serde_json::from_str(reply["data"]["result"].as_str().expect("result")).expect("item JSON");
    let id = inserted["_id"].as_str().expect("_id").to_string();

    // (b) JSON string, token in the envelope.
    let data = json!({"collectionname": "entities", "query": json!({"_id": id}).to_string()});
    let (status, reply) = v2(
        addr,
        None,
        json!({"command": "query", "jwt": jwt, "data": data.to_string()}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(results(&reply, "results")[0]["name"], "first");

    // (c) Any with a Node Buffer value; the reply mirrors it (protobuf bytes).
    let request = QueryRequest {
        collectionname: "entities".into(),
        query: json!({"_id": id}).to_string(),
        ..Default::default()
    };
    let bytes = request.encode_to_vec();
    let (status, reply) = v2(
        addr,
        Some(&jwt),
        json!({"command": "query", "id": "q3", "data": {"type_url": QueryRequest::type_url(), "value": {"type": "Buffer", "data": bytes}}}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["data"]["value"]["type"], "Buffer");
    let raw: Vec<u8> =
        serde_json::from_value(reply["data"]["value"]["data"].clone()).expect("bytes");
    let decoded = QueryResponse::decode(raw.as_slice()).expect("QueryResponse");
    assert!(decoded.results.contains("first"), "{}", decoded.results);
    // … and with base64.
    let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let (status, reply) = v2(
        addr,
        Some(&jwt),
        json!({"command": "query", "data": {"type_url": "", "value": b64}}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    // (d) raw Buffer.
    let (status, reply) = v2(
        addr,
        Some(&jwt),
        json!({"command": "query", "data": {"type": "Buffer", "data": bytes}}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["command"], "queryreply");

    // updateone, count, aggregate, deleteone.
    let updated = json!({"_id": id, "name": "second", "n": 2}).to_string();
    let (status, reply) = v2(
        addr,
        Some(&jwt),
        json!({"command": "updateone", "data": {"collectionname": "entities", "item": updated}}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let (status, reply) = v2(
        addr,
        Some(&jwt),
        json!({"command": "count", "data": {"collectionname": "entities", "query": "{\"name\":\"second\"}"}}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["data"]["result"], 1);
    let pipeline = json!([{"$match": {"name": "second"}}, {"$project": {"n": 1}}]).to_string();
    let (status, reply) = v2(
        addr,
        Some(&jwt),
        json!({"command": "aggregate", "data": {"collectionname": "entities", "aggregates": pipeline}}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(results(&reply, "results")[0]["n"], 2);
    let (status, reply) = v2(
        addr,
        Some(&jwt),
        json!({"command": "deleteone", "data": {"collectionname": "entities", "id": id}}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["data"]["affectedrows"], 1);

    // Work items: push (with a file, bytes as base64) then pop.
    let (status, reply) = v2(
        addr,
        Some(&jwt),
        json!({"command": "addworkitemqueue", "data": {"workitemqueue": {"name": "restq"}}}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let (status, reply) = v2(
        addr,
        Some(&jwt),
        json!({"command": "pushworkitem", "data": {"wiq": "restq", "name": "job", "payload": "{\"a\":1}",
            "files": [{"filename": "f.txt", "file": base64::engine::general_purpose::STANDARD.encode(b"hello")}]}}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["data"]["workitem"]["name"], "job");
    assert!(
        reply["data"]["workitem"]["_id"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "{reply}"
    );
    let (status, reply) = v2(
        addr,
        Some(&jwt),
        json!({"command": "popworkitem", "data": {"wiq": "restq", "includefiles": true}}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["data"]["workitem"]["name"], "job");
    assert_eq!(reply["data"]["workitem"]["state"], "processing");
    // bytes as base64, Timestamp as RFC 3339.
    assert_eq!(
        reply["data"]["workitem"]["files"][0]["file"], "aGVsbG8=",
        "{reply}"
    );
    assert!(
        reply["data"]["workitem"]["lastrun"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{reply}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn v2_error_replies() {
    let server = TestServer::start();
    let addr = server.http();
    let code = |reply: &Value| reply["data"]["code"].as_i64().unwrap_or_default();

    let (status, reply) = v2(addr, None, json!({"command": "nosuchcommand", "id": "x"})).await;
    assert_eq!((status, code(&reply)), (400, 2001), "{reply}");
    assert_eq!(reply["command"], "error");
    assert_eq!(reply["rid"], "x");

    let (status, reply) = v2(
        addr,
        None,
        json!({"command": "query", "data": {"top": "many"}}),
    )
    .await;
    assert_eq!((status, code(&reply)), (400, 2003), "{reply}");
    let (status, reply) = v2(addr, None, json!({"command": "query", "data": "{not json"})).await;
    assert_eq!((status, code(&reply)), (400, 2003), "{reply}");

    // No token for a command that needs a user; an invalid token.
    let (status, reply) = v2(
        addr,
        None,
        json!({"command": "query", "data": {"collectionname": "entities"}}),
    )
    .await;
    assert_eq!((status, code(&reply)), (401, 3000), "{reply}");
    let (status, reply) = v2(
        addr,
        Some("not-a-token"),
        json!({"command": "query", "data": {"collectionname": "entities"}}),
    )
    .await;
    assert_eq!(status, 401, "{reply}");
    // Wrong password.
    let (status, reply) = v2(
        addr,
        None,
        json!({"command": "signin", "data": {"username": ADMIN, "password": "wrong"}}),
    )
    .await;
    assert_eq!(status, 401, "{reply}");

    for command in [
        "watch",
        "upload",
        "download",
        "registerqueue",
        "unwatch",
        "registerexchange",
    ] {
        let (status, reply) = v2(addr, None, json!({"command": command, "data": {}})).await;
        assert_eq!((status, code(&reply)), (400, 2180), "{command}: {reply}");
        assert!(reply["data"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("streaming"));
    }

    // Malformed and deeply nested JSON.
    let (status, reply) = rest(addr, "POST", "/api/v2", None, Some(b"{\"command\":")).await;
    assert_eq!((status, code(&reply)), (400, 2181), "{reply}");
    let nested = format!(
        "{{\"command\":\"ping\",\"data\":{}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let (status, reply) = rest(addr, "POST", "/api/v2", None, Some(nested.as_bytes())).await;
    assert_eq!(status, 400, "{reply}");

    // Protobuf-form requests get errors as 200 + `error` envelope (the Node client).
    let (status, reply) = v2(
        addr,
        None,
        json!({"command": "query", "id": "p", "data": {"type": "Buffer", "data": [10, 1, 120]}}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["command"], "error");
    assert_eq!(reply["data"]["value"]["type"], "Buffer");

    // The Node client's connect probe.
    let (status, _) = v2(addr, None, json!({"command": "noop"})).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_over_the_message_limit_are_refused() {
    let server = TestServer::start_with(|config| config.limits.max_message_size = 64 * 1024);
    let addr = server.http();
    let big = format!(
        "{{\"command\":\"ping\",\"pad\":\"{}\"}}",
        "x".repeat(100 * 1024)
    );
    let (status, reply) = rest(addr, "POST", "/api/v2", None, Some(big.as_bytes())).await;
    assert_eq!(status, 413, "{reply}");
    let (status, _) = rest(
        addr,
        "POST",
        "/api/v1/entities/entities",
        Some("x"),
        Some(big.as_bytes()),
    )
    .await;
    assert_eq!(status, 413);
    // Under the limit still works.
    let (status, reply) = v2(addr, None, json!({"command": "ping"})).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["command"], "pong");
}

#[tokio::test(flavor = "multi_thread")]
async fn v1_crud_round_trip_and_acls() {
    let server = TestServer::start();
    let addr = server.http();
    let admin = signin(addr, ADMIN, ADMIN_PASSWORD).await;
    create_user(addr, &admin, "resta").await;
    create_user(addr, &admin, "restb").await;
    let a = signin(addr, "resta", "pw-12345").await;
    let b = signin(addr, "restb", "pw-12345").await;

    assert_eq!(rest(addr, "GET", "/api/v1/me", None, None).await.0, 401);
    let (status, me) = rest(addr, "GET", "/api/v1/me", Some(&a), None).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["username"], "resta");

    let doc = json!({"name": "secret of a", "kind": "rest"}).to_string();
    let (status, inserted) = rest(
        addr,
        "POST",
        "/api/v1/entities/entities",
        Some(&a),
        Some(doc.as_bytes()),
    )
    .await;
    assert_eq!(status, 200, "{inserted}");
    let id = inserted["_id"].as_str().expect("_id").to_string();

    let (status, found) = rest(
        addr,
        "GET",
        "/api/v1/query/entities?query=%7B%22kind%22%3A%22rest%22%7D&top=10",
        Some(&a),
        None,
    )
    .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found.as_array().map(Vec::len), Some(1), "{found}");
    let query = json!({"query": {"kind": "rest"}, "projection": {"name": 1}}).to_string();
    let (status, found) = rest(
        addr,
        "POST",
        "/api/v1/query/entities",
        Some(&a),
        Some(query.as_bytes()),
    )
    .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found[0]["name"], "secret of a");
    let (status, count) = rest(
        addr,
        "GET",
        "/api/v1/count/entities?query=%7B%22kind%22%3A%22rest%22%7D",
        Some(&a),
        None,
    )
    .await;
    assert_eq!((status, count), (200, json!(1)));
    let pipeline = json!([{"$match": {"kind": "rest"}}, {"$count": "n"}]).to_string();
    let (status, agg) = rest(
        addr,
        "POST",
        "/api/v1/aggregate/entities",
        Some(&a),
        Some(pipeline.as_bytes()),
    )
    .await;
    assert_eq!(status, 200, "{agg}");
    assert_eq!(agg[0]["n"], 1);
    let (status, collections) = rest(addr, "GET", "/api/v1/collections", Some(&a), None).await;
    assert_eq!(status, 200, "{collections}");
    assert!(collections.is_array());

    // Another user sees nothing, cannot update or delete it (v1 and v2 alike).
    let (status, found) = rest(
        addr,
        "GET",
        "/api/v1/query/entities?query=%7B%22kind%22%3A%22rest%22%7D",
        Some(&b),
        None,
    )
    .await;
    assert_eq!((status, found), (200, json!([])));
    let (status, reply) = v2(
        addr,
        Some(&b),
        json!({"command": "query", "data": {"collectionname": "entities", "query": "{\"kind\":\"rest\"}"}}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(results(&reply, "results"), json!([]));
    let stolen = json!({"_id": id, "name": "taken by b", "kind": "rest"}).to_string();
    let (status, err) = rest(
        addr,
        "PUT",
        "/api/v1/entities/entities",
        Some(&b),
        Some(stolen.as_bytes()),
    )
    .await;
    assert!((400..500).contains(&status), "{status} {err}");
    assert!(
        err["code"].as_i64().is_some() && err["message"].is_string(),
        "{err}"
    );
    // Deleting what one may not see deletes nothing (the owner's delete below finds it).
    let (status, err) = rest(
        addr,
        "DELETE",
        &format!("/api/v1/entities/entities/{id}"),
        Some(&b),
        None,
    )
    .await;
    assert!(
        (400..500).contains(&status) || err == json!({"affectedrows": 0}),
        "{status} {err}"
    );

    // The owner updates and deletes.
    let changed = json!({"_id": id, "name": "changed", "kind": "rest"}).to_string();
    let (status, updated) = rest(
        addr,
        "PUT",
        "/api/v1/entities/entities",
        Some(&a),
        Some(changed.as_bytes()),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["name"], "changed");
    let (status, deleted) = rest(
        addr,
        "DELETE",
        &format!("/api/v1/entities/entities/{id}"),
        Some(&a),
        None,
    )
    .await;
    assert_eq!((status, deleted), (200, json!({"affectedrows": 1})));

    // Bad input.
    let (status, err) = rest(
        addr,
        "POST",
        "/api/v1/entities/entities",
        Some(&a),
        Some(b"{nope"),
    )
    .await;
    assert_eq!((status, err["code"].clone()), (400, json!(2181)));
    assert_eq!(
        rest(addr, "GET", "/api/v1/collections", Some("garbage"), None)
            .await
            .0,
        401
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn openapi_document_is_valid_3_1() {
    let server = TestServer::start();
    let (status, doc) = rest(server.http(), "GET", "/api/openapi.json", None, None).await;
    assert_eq!(status, 200);
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1.")),
        "{doc}"
    );
    for path in [
        "/api/v2",
        "/api/v1/me",
        "/api/v1/collections",
        "/api/v1/query/{collectionname}",
        "/api/v1/aggregate/{collectionname}",
        "/api/v1/count/{collectionname}",
        "/api/v1/entities/{collectionname}",
        "/api/v1/entities/{collectionname}/{id}",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing");
    }
    let validator = std::env::var("OPENCORE_OPENAPI_VALIDATOR")
        .ok()
        .or_else(|| {
            let fallback = "/tmp/opencore-ci-tools/bin/openapi-spec-validator";
            std::path::Path::new(fallback)
                .exists()
                .then(|| fallback.to_string())
        });
    let Some(validator) = validator else {
        eprintln!("!!! SKIPPED openapi-spec-validator: set OPENCORE_OPENAPI_VALIDATOR (pip install openapi-spec-validator) !!!");
        return;
    };
    let file = server.dir.path().join("openapi.json");
    std::fs::write(&file, doc.to_string()).expect("write document");
    let output = std::process::Command::new(&validator)
        .arg(&file)
        .output()
        .expect("run openapi-spec-validator");
    assert!(
        output.status.success(),
        "openapi-spec-validator failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
