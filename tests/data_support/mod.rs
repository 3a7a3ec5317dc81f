//! Helpers for the document-API tests: typed calls over the raw protocol, JSON in and
//! out, and users/roles created through `insertone` as an admin.
#![allow(dead_code)]

use opencore::proto::*;
use prost::{Message, Name};
use serde_json::{json, Value};

use crate::common::*;

/// Sends a request and decodes the reply, asserting the reply command name; an error
/// reply becomes `Err(message)`.
pub async fn call<Q: Message + Name, R: Message + Default>(
    client: &mut RawClient,
    command: &str,
    request: &Q,
) -> Result<R, String> {
    let reply = client.request(command, request).await;
    if reply.command == "error" {
        return Err(error_message(&reply).unwrap_or_default());
    }
    assert_eq!(
        reply.command,
        format!("{command}reply"),
        "reply name for {command}"
    );
    assert!(reply.data.is_some(), "{command} reply carries data");
    Ok(decode(&reply))
}

pub fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("reply is JSON ({e}): {text}"))
}

pub async fn insert_one(c: &mut RawClient, collection: &str, item: Value) -> Result<Value, String> {
    let r: InsertOneResponse = call(
        c,
        "insertone",
        &InsertOneRequest {
            collectionname: collection.into(),
            item: item.to_string(),
            ..Default::default()
        },
    )
    .await?;
    Ok(parse(&r.result))
}

pub async fn insert_many(
    c: &mut RawClient,
    collection: &str,
    items: Value,
    skip: bool,
) -> Result<Vec<Value>, String> {
    let request = InsertManyRequest {
        collectionname: collection.into(),
        items: items.to_string(),
        skipresults: skip,
        ..Default::default()
    };
    let r: InsertManyResponse = call(c, "insertmany", &request).await?;
    Ok(parse(&r.results).as_array().cloned().unwrap_or_default())
}

pub async fn query_request(c: &mut RawClient, request: QueryRequest) -> Result<Vec<Value>, String> {
    let r: QueryResponse = call(c, "query", &request).await?;
    Ok(parse(&r.results)
        .as_array()
        .cloned()
        .expect("results is an array"))
}

pub async fn query(c: &mut RawClient, collection: &str, q: Value) -> Result<Vec<Value>, String> {
    query_request(
        c,
        QueryRequest {
            collectionname: collection.into(),
            query: q.to_string(),
            ..Default::default()
        },
    )
    .await
}

pub async fn query_as(
    c: &mut RawClient,
    collection: &str,
    q: Value,
    queryas: &str,
) -> Result<Vec<Value>, String> {
    let request = QueryRequest {
        collectionname: collection.into(),
        query: q.to_string(),
        queryas: queryas.into(),
        ..Default::default()
    };
    query_request(c, request).await
}

pub async fn count(c: &mut RawClient, collection: &str, q: Value) -> Result<i32, String> {
    let r: CountResponse = call(
        c,
        "count",
        &CountRequest {
            collectionname: collection.into(),
            query: q.to_string(),
            ..Default::default()
        },
    )
    .await?;
    Ok(r.result)
}

pub async fn distinct(
    c: &mut RawClient,
    collection: &str,
    field: &str,
    q: Value,
) -> Result<Vec<String>, String> {
    let request = DistinctRequest {
        collectionname: collection.into(),
        field: field.into(),
        query: q.to_string(),
        ..Default::default()
    };
    let r: DistinctResponse = call(c, "distinct", &request).await?;
    Ok(r.results)
}

pub async fn aggregate(
    c: &mut RawClient,
    collection: &str,
    pipeline: Value,
) -> Result<Vec<Value>, String> {
    let request = AggregateRequest {
        collectionname: collection.into(),
        aggregates: pipeline.to_string(),
        ..Default::default()
    };
    let r: AggregateResponse = call(c, "aggregate", &request).await?;
    Ok(parse(&r.results)
        .as_array()
        .cloned()
        .expect("results is an array"))
}

pub async fn update_one(c: &mut RawClient, collection: &str, item: Value) -> Result<Value, String> {
    let r: UpdateOneResponse = call(
        c,
        "updateone",
        &UpdateOneRequest {
            collectionname: collection.into(),
            item: item.to_string(),
            ..Default::default()
        },
    )
    .await?;
    Ok(parse(&r.result))
}

pub async fn update_document(
    c: &mut RawClient,
    collection: &str,
    q: Value,
    update: Value,
) -> Result<UpdateResult, String> {
    let request = UpdateDocumentRequest {
        collectionname: collection.into(),
        query: q.to_string(),
        document: update.to_string(),
        ..Default::default()
    };
    let r: UpdateDocumentResponse = call(c, "updatedocument", &request).await?;
    Ok(r.opresult.expect("opresult is set"))
}

pub async fn upsert(
    c: &mut RawClient,
    collection: &str,
    uniqueness: &str,
    item: Value,
) -> Result<Value, String> {
    let request = InsertOrUpdateOneRequest {
        collectionname: collection.into(),
        uniqeness: uniqueness.into(),
        item: item.to_string(),
        ..Default::default()
    };
    let r: InsertOrUpdateOneResponse = call(c, "insertorupdateone", &request).await?;
    Ok(parse(&r.result))
}

pub async fn delete_one(c: &mut RawClient, collection: &str, id: &str) -> Result<i32, String> {
    let r: DeleteOneResponse = call(
        c,
        "deleteone",
        &DeleteOneRequest {
            collectionname: collection.into(),
            id: id.into(),
            ..Default::default()
        },
    )
    .await?;
    Ok(r.affectedrows)
}

pub async fn delete_many(
    c: &mut RawClient,
    collection: &str,
    q: Option<Value>,
    ids: &[&str],
) -> Result<i32, String> {
    let request = DeleteManyRequest {
        collectionname: collection.into(),
        query: q.map(|q| q.to_string()).unwrap_or_default(),
        ids: ids.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let r: DeleteManyResponse = call(c, "deletemany", &request).await?;
    Ok(r.affectedrows)
}

pub async fn get_version(
    c: &mut RawClient,
    collection: &str,
    id: &str,
    version: i32,
) -> Result<Value, String> {
    let request = GetDocumentVersionRequest {
        collectionname: collection.into(),
        id: id.into(),
        version,
        ..Default::default()
    };
    let r: GetDocumentVersionResponse = call(c, "getdocumentversion", &request).await?;
    Ok(parse(&r.result))
}

pub fn id_of(document: &Value) -> String {
    document["_id"]
        .as_str()
        .expect("_id is a string")
        .to_string()
}

/// A user created by an admin with `newpassword`; returns its id.
pub async fn create_user(admin: &mut RawClient, username: &str, password: &str) -> String {
    let user =
        json!({"_type": "user", "name": username, "username": username, "newpassword": password});
    id_of(
        &insert_one(admin, "users", user)
            .await
            .expect("user created"),
    )
}

pub async fn create_role(admin: &mut RawClient, name: &str) -> String {
    id_of(
        &insert_one(
            admin,
            "users",
            json!({"_type": "role", "name": name, "members": []}),
        )
        .await
        .expect("role created"),
    )
}

/// Replaces a role's members (as an admin).
pub async fn set_members(admin: &mut RawClient, role_id: &str, members: &[(&str, &str)]) {
    let mut role = query(admin, "users", json!({"_id": role_id}))
        .await
        .unwrap()
        .pop()
        .expect("role exists");
    role["members"] = Value::Array(
        members
            .iter()
            .map(|(id, name)| json!({"_id": id, "name": name}))
            .collect(),
    );
    update_one(admin, "users", role)
        .await
        .expect("role updated");
}

/// A server on the embedded store, or on MongoDB (a fresh database) when
/// `OPENCORE_DATA_TESTS_MONGODB_URL` is set: the document tests run unchanged on both.
pub fn start_server(adjust: impl FnOnce(&mut opencore::config::ServeConfig)) -> TestServer {
    let mongo = std::env::var("OPENCORE_DATA_TESTS_MONGODB_URL")
        .ok()
        .filter(|u| !u.is_empty());
    TestServer::start_with(move |config| {
        if let Some(url) = mongo {
            config.mongodb_url = Some(url);
            config.mongodb_db = format!("datatests_{:x}", rand_suffix());
        }
        adjust(config);
    })
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    hasher.finish()
}

pub async fn signed_in(server: &TestServer, username: &str, password: &str) -> RawClient {
    let mut client = RawClient::connect(server.tcp()).await;
    client.signin(username, password).await;
    client
}

/// The reply to a sign-in on a fresh connection (for sign-ins expected to fail).
pub async fn signin_reply(server: &TestServer, username: &str, password: &str) -> Envelope {
    let mut client = RawClient::connect(server.tcp()).await;
    client.signin_reply(username, password).await
}

pub async fn admin(server: &TestServer) -> RawClient {
    signed_in(server, ADMIN, ADMIN_PASSWORD).await
}
