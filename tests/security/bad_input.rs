//! A matrix of bad inputs per command: wrong JSON types, malformed JSON, deep nesting,
//! long paths, huge regexes, unknown operators, 10 MiB strings and invalid UTF-8 in
//! protobuf strings. Every one is answered with an `error` envelope (never a panic, a
//! hang or a closed connection), and the server keeps serving a second connection.
//! Inputs that are valid but large (a 100,000-element `$in`, negative or huge
//! `top`/`skip`) get an ordinary reply.

use opencore::proto::*;
use prost::Name;
use serde_json::json;

use crate::common::*;
use crate::data_support::*;

const COLLECTION: &str = "badinput";
const PASSWORD: &str = "user-password-1";

fn deep_json(levels: usize) -> String {
    format!("{}1{}", "{\"a\":".repeat(levels), "}".repeat(levels))
}

fn long_path(parts: usize) -> String {
    vec!["p"; parts].join(".")
}

fn query_with(query: &str) -> QueryRequest {
    QueryRequest {
        collectionname: COLLECTION.into(),
        query: query.into(),
        top: 10,
        ..Default::default()
    }
}

/// Every filter-taking command with the same bad filter text.
fn with_filter(filter: &str) -> Vec<(&'static str, Box<dyn Fn(&mut RawClient) -> Envelope>)> {
    let f = filter.to_string();
    let (a, b, c, d, e) = (f.clone(), f.clone(), f.clone(), f.clone(), f);
    vec![
        (
            "query",
            Box::new(move |cl: &mut RawClient| cl.envelope("query", &query_with(&a))),
        ),
        (
            "count",
            Box::new(move |cl: &mut RawClient| {
                cl.envelope(
                    "count",
                    &CountRequest {
                        collectionname: COLLECTION.into(),
                        query: b.clone(),
                        ..Default::default()
                    },
                )
            }),
        ),
        (
            "distinct",
            Box::new(move |cl: &mut RawClient| {
                cl.envelope(
                    "distinct",
                    &DistinctRequest {
                        collectionname: COLLECTION.into(),
                        field: "a".into(),
                        query: c.clone(),
                        ..Default::default()
                    },
                )
            }),
        ),
        (
            "updatedocument",
            Box::new(move |cl: &mut RawClient| {
                cl.envelope(
                    "updatedocument",
                    &UpdateDocumentRequest {
                        collectionname: COLLECTION.into(),
                        query: d.clone(),
                        document: r#"{"$set":{"x":1}}"#.into(),
                        ..Default::default()
                    },
                )
            }),
        ),
        (
            "deletemany",
            Box::new(move |cl: &mut RawClient| {
                cl.envelope(
                    "deletemany",
                    &DeleteManyRequest {
                        collectionname: COLLECTION.into(),
                        query: e.clone(),
                        ..Default::default()
                    },
                )
            }),
        ),
    ]
}

/// Every document-taking command with the same bad item text.
fn with_item(item: &str) -> Vec<(&'static str, Box<dyn Fn(&mut RawClient) -> Envelope>)> {
    let i = item.to_string();
    let (a, b, c, d) = (i.clone(), i.clone(), i.clone(), format!("[{i}]"));
    vec![
        (
            "insertone",
            Box::new(move |cl: &mut RawClient| {
                cl.envelope(
                    "insertone",
                    &InsertOneRequest {
                        collectionname: COLLECTION.into(),
                        item: a.clone(),
                        ..Default::default()
                    },
                )
            }),
        ),
        (
            "updateone",
            Box::new(move |cl: &mut RawClient| {
                cl.envelope(
                    "updateone",
                    &UpdateOneRequest {
                        collectionname: COLLECTION.into(),
                        item: b.clone(),
                        ..Default::default()
                    },
                )
            }),
        ),
        (
            "insertorupdateone",
            Box::new(move |cl: &mut RawClient| {
                cl.envelope(
                    "insertorupdateone",
                    &InsertOrUpdateOneRequest {
                        collectionname: COLLECTION.into(),
                        item: c.clone(),
                        uniqeness: "name".into(),
                        ..Default::default()
                    },
                )
            }),
        ),
        (
            "insertmany",
            Box::new(move |cl: &mut RawClient| {
                cl.envelope(
                    "insertmany",
                    &InsertManyRequest {
                        collectionname: COLLECTION.into(),
                        items: d.clone(),
                        ..Default::default()
                    },
                )
            }),
        ),
    ]
}

async fn expect_error(client: &mut RawClient, what: &str, envelope: Envelope) {
    client.send(envelope).await;
    let reply = client.reply().await;
    assert_eq!(
        reply.command,
        "error",
        "{what}: expected an error envelope, got {} {:?}",
        reply.command,
        error_message(&reply)
    );
    let error: ErrorResponse = decode(&reply);
    assert!(
        error.code > 0 && !error.message.is_empty(),
        "{what}: {error:?}"
    );
    assert!(error.stack.is_empty(), "{what}: no stack traces");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_gets_an_error_and_the_server_keeps_serving() {
    let server = start_server(|_| {});
    let mut admin_client = admin(&server).await;
    create_user(&mut admin_client, "bad-input", PASSWORD).await;
    let mut user = signed_in(&server, "bad-input", PASSWORD).await;
    insert_one(&mut user, COLLECTION, json!({"name": "seed", "a": 1}))
        .await
        .unwrap();

    let bad_filters = [
        ("malformed JSON", "{\"a\": ".to_string()),
        ("an array, not an object", "[1, 2, 3]".to_string()),
        ("a string, not an object", "\"text\"".to_string()),
        ("150 levels of nesting", deep_json(150)),
        (
            "a 20,000-part path",
            format!("{{\"{}\": 1}}", long_path(20_000)),
        ),
        (
            "an unknown operator",
            r#"{"a": {"$frobnicate": 1}}"#.to_string(),
        ),
        (
            "a 100 KiB regex",
            format!(r#"{{"a": {{"$regex": "{}"}}}}"#, "a".repeat(100 * 1024)),
        ),
        (
            "a regex too large to compile",
            r#"{"a": {"$regex": "(((a{100}){100}){100})"}}"#.to_string(),
        ),
        ("$where", r#"{"$where": "sleep(1000)"}"#.to_string()),
        ("a wrong operand type", r#"{"a": {"$in": 5}}"#.to_string()),
    ];
    for (what, filter) in &bad_filters {
        for (command, build) in with_filter(filter) {
            let envelope = build(&mut user);
            expect_error(&mut user, &format!("{command} with {what}"), envelope).await;
        }
    }

    let bad_items = [
        ("malformed JSON", "{\"name\": ".to_string()),
        ("a number, not an object", "42".to_string()),
        ("150 levels of nesting", deep_json(150)),
    ];
    for (what, item) in &bad_items {
        for (command, build) in with_item(item) {
            let envelope = build(&mut user);
            expect_error(&mut user, &format!("{command} with {what}"), envelope).await;
        }
    }

    // Pipelines and updates with unknown operators, and a 10 MiB collection name.
    let envelope = user.envelope(
        "aggregate",
        &AggregateRequest {
            collectionname: COLLECTION.into(),
            aggregates: r#"[{"$frobnicate": {}}]"#.into(),
            ..Default::default()
        },
    );
    expect_error(&mut user, "aggregate with an unknown stage", envelope).await;
    let envelope = user.envelope(
        "aggregate",
        &AggregateRequest {
            collectionname: COLLECTION.into(),
            aggregates: r#"{"not": "an array"}"#.into(),
            ..Default::default()
        },
    );
    expect_error(&mut user, "aggregate with an object, not stages", envelope).await;
    let envelope = user.envelope(
        "updatedocument",
        &UpdateDocumentRequest {
            collectionname: COLLECTION.into(),
            query: "{}".into(),
            document: r#"{"$frobnicate": {"a": 1}}"#.into(),
            ..Default::default()
        },
    );
    expect_error(
        &mut user,
        "updatedocument with an unknown update operator",
        envelope,
    )
    .await;
    let envelope = user.envelope(
        "query",
        &QueryRequest {
            collectionname: "c".repeat(10 * 1024 * 1024),
            query: "{}".into(),
            ..Default::default()
        },
    );
    expect_error(&mut user, "query on a 10 MiB collection name", envelope).await;
    let envelope = user.envelope(
        "getdocumentversion",
        &GetDocumentVersionRequest {
            collectionname: COLLECTION.into(),
            id: "x".repeat(10 * 1024 * 1024),
            version: -1,
            ..Default::default()
        },
    );
    user.send(envelope).await;
    let reply = user.reply().await;
    assert!(
        reply.command == "error" || reply.command == "getdocumentversionreply",
        "{}",
        reply.command
    );

    // Invalid UTF-8 inside a protobuf string field: the payload does not decode.
    let mut envelope = user.envelope("query", &query_with("{\"a\": \"XXXX\"}"));
    let data = envelope.data.as_mut().expect("a payload");
    let at = data
        .value
        .windows(4)
        .position(|w| w == b"XXXX")
        .expect("the marker");
    data.value[at..at + 4].copy_from_slice(&[0xff, 0xfe, 0xc0, 0x80]);
    expect_error(&mut user, "query with invalid UTF-8", envelope).await;
    // A payload of the wrong message type for its command.
    let mut envelope = user.envelope("query", &query_with("{}"));
    envelope.data.as_mut().expect("a payload").type_url =
        format!("type.googleapis.com/{}", SigninRequest::full_name());
    envelope.data.as_mut().expect("a payload").value = vec![0xff; 64];
    expect_error(&mut user, "query with an undecodable payload", envelope).await;

    // Valid but large or odd inputs get ordinary replies.
    let many: Vec<i64> = (0..100_000).collect();
    let reply = user
        .request(
            "query",
            &query_with(&json!({"a": {"$in": many}}).to_string()),
        )
        .await;
    assert_eq!(reply.command, "queryreply", "{:?}", error_message(&reply));
    for (top, skip) in [(-1, -5), (i32::MAX, i32::MAX), (i32::MIN, 0)] {
        let request = QueryRequest {
            top,
            skip,
            ..query_with("{}")
        };
        let reply = user.request("query", &request).await;
        assert_eq!(
            reply.command,
            "queryreply",
            "top {top} skip {skip}: {:?}",
            error_message(&reply)
        );
    }

    // The same connection and a second one are still served.
    assert_eq!(
        query(&mut user, COLLECTION, json!({"name": "seed"}))
            .await
            .unwrap()
            .len(),
        1
    );
    let mut other = signed_in(&server, "bad-input", PASSWORD).await;
    assert_eq!(
        query(&mut other, COLLECTION, json!({}))
            .await
            .unwrap()
            .len(),
        1
    );
}
