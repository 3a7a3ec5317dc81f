//! Store-level bounds (issue 7): a write that fails inside the store fails alone;
//! sorts no index provides, `distinct` and multi-document `updatedocument` are bounded
//! in memory; negative and huge `top`/`skip` are clean.

use opencore::proto::{ErrorResponse, QueryRequest};
use serde_json::{json, Value};

use crate::common::*;
use crate::data_support::*;

/// ~3 MB of documents: 300 of ~10 KB, `v` a shuffled 0..300 (not indexed).
async fn wide_collection(c: &mut RawClient, collection: &str) {
    let padding = "x".repeat(10_000);
    let items: Vec<Value> = (0..300)
        .map(|n| json!({"n": n, "v": (n * 7) % 300, "padding": padding}))
        .collect();
    insert_many(c, collection, Value::Array(items), true)
        .await
        .expect("inserted");
}

async fn query_error(c: &mut RawClient, request: QueryRequest) -> (i32, String) {
    let reply = c.request("query", &request).await;
    assert_eq!(reply.command, "error", "expected an error reply");
    let error: ErrorResponse = decode(&reply);
    (error.code, error.message)
}

fn sorted_query(collection: &str, orderby: &str, top: i32, skip: i32) -> QueryRequest {
    QueryRequest {
        collectionname: collection.into(),
        query: "{}".into(),
        projection: r#"{"v": 1}"#.into(),
        orderby: orderby.into(),
        top,
        skip,
        ..Default::default()
    }
}

fn values(results: &[Value]) -> Vec<i64> {
    results.iter().map(|d| d["v"].as_i64().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sorts_without_an_index_are_bounded_by_max_sort_mb() {
    // The embedded store's limit (MongoDB sorts server-side, under its own limit).
    let server = TestServer::start_with(|c| c.limits.max_sort_mb = 1);
    let mut c = admin(&server).await;
    wide_collection(&mut c, "wide").await;
    // The best skip + top are all a sort holds: a page of ~3 MB of matches is fine.
    let top = query_request(&mut c, sorted_query("wide", "v", 10, 0)).await;
    assert_eq!(values(&top.unwrap()), (0..10).collect::<Vec<_>>());
    let page = query_request(&mut c, sorted_query("wide", r#"{"v": -1}"#, 5, 20)).await;
    assert_eq!(values(&page.unwrap()), (275..280).rev().collect::<Vec<_>>());
    // A skip that needs every match held is refused with the limit named.
    for skip in [290, i32::MAX] {
        let (code, message) = query_error(&mut c, sorted_query("wide", "v", 10, skip)).await;
        assert_eq!(code, 2040, "{message}");
        assert!(
            message.contains("1 MB") && message.contains("--max-sort-mb"),
            "{message}"
        );
    }
    // The connection goes on; with an index on the field the same query streams.
    let index = opencore::proto::CreateIndexRequest {
        collectionname: "wide".into(),
        index: r#"{"v": 1}"#.into(),
        ..Default::default()
    };
    let reply = c.request("createindex", &index).await;
    assert_eq!(
        reply.command,
        "createindexreply",
        "{:?}",
        error_message(&reply)
    );
    let tail = query_request(&mut c, sorted_query("wide", "v", 10, 290)).await;
    assert_eq!(values(&tail.unwrap()), (290..300).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_and_huge_top_and_skip_are_clean() {
    let server = start_server(|_| {});
    let mut c = admin(&server).await;
    let items: Vec<Value> = (0..20).map(|n| json!({"v": n})).collect();
    insert_many(&mut c, "small", Value::Array(items), true)
        .await
        .unwrap();
    for orderby in ["", "v", r#"{"v": -1}"#] {
        // top -1 means the default (all 20 here), skip -5 means none.
        let all = query_request(&mut c, sorted_query("small", orderby, -1, -5)).await;
        assert_eq!(all.unwrap().len(), 20, "orderby {orderby:?}");
        let none = query_request(&mut c, sorted_query("small", orderby, 10, i32::MAX)).await;
        assert!(none.unwrap().is_empty(), "orderby {orderby:?}");
        let most = query_request(&mut c, sorted_query("small", orderby, i32::MAX, 15)).await;
        assert_eq!(most.unwrap().len(), 5, "orderby {orderby:?}");
        let min = query_request(&mut c, sorted_query("small", orderby, i32::MIN, i32::MIN)).await;
        assert_eq!(min.unwrap().len(), 20, "orderby {orderby:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distinct_is_bounded_by_max_distinct_mb() {
    let server = start_server(|c| c.limits.max_distinct_mb = 1);
    let mut c = admin(&server).await;
    let padding = "x".repeat(10_000);
    let items: Vec<Value> = (0..200)
        .map(|n| json!({"group": n % 3, "v": format!("{n}{padding}")}))
        .collect();
    insert_many(&mut c, "values", Value::Array(items), true)
        .await
        .unwrap();
    let groups = distinct(&mut c, "values", "group", json!({}))
        .await
        .unwrap();
    assert_eq!(groups, vec!["0", "1", "2"]);
    let err = distinct(&mut c, "values", "v", json!({}))
        .await
        .unwrap_err();
    assert!(
        err.contains("1 MB") && err.contains("--max-distinct-mb"),
        "{err}"
    );
    // Narrower queries still answer.
    let few = distinct(
        &mut c,
        "values",
        "v",
        json!({"group": 0, "v": {"$lt": "2"}}),
    );
    assert!(!few.await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updatedocument_pages_through_large_sets_updating_each_match_once() {
    // Embedded only: 5,000 history and update round trips outlast the client's wait on
    // an emulated MongoDB (the paging itself is backend-neutral).
    let server = TestServer::start_with(|_| {});
    let mut c = admin(&server).await;
    // 2,500 matches (three pages of 1,000) whose `_id`s are of three types (numbers,
    // strings, ObjectIds): every page starts after the last `_id` of the one before,
    // and the update leaves each document matching.
    for collection in ["paged", "workitems"] {
        let mut items: Vec<Value> = Vec::new();
        for n in 0..2500 {
            let id = match n % 3 {
                0 => json!(n),
                1 => json!(format!("id-{n:05}")),
                _ => json!({"$oid": format!("{:024x}", n)}),
            };
            items.push(json!({"_id": id, "n": 0, "_type": "thing"}));
        }
        for chunk in items.chunks(500) {
            insert_many(&mut c, collection, Value::Array(chunk.to_vec()), true)
                .await
                .unwrap();
        }
        let result = update_document(
            &mut c,
            collection,
            json!({"n": {"$gte": 0}}),
            json!({"$inc": {"n": 1}}),
        )
        .await
        .unwrap();
        assert_eq!(
            (result.matched_count, result.modified_count),
            (2500, 2500),
            "{collection}"
        );
        assert_eq!(
            count(&mut c, collection, json!({"n": 1})).await.unwrap(),
            2500,
            "{collection}"
        );
    }
    // The tracked collection got one history record per changed document.
    assert_eq!(count(&mut c, "paged_hist", json!({})).await.unwrap(), 2500);
    assert_eq!(
        count(&mut c, "paged", json!({"_version": 1}))
            .await
            .unwrap(),
        2500
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_update_fails_only_that_request() {
    let server = start_server(|_| {});
    let mut c = admin(&server).await;
    let items: Vec<Value> = (0..50)
        .map(|n| json!({"n": n, "name": format!("x{n}")}))
        .collect();
    insert_many(&mut c, "mixed", Value::Array(items), true)
        .await
        .unwrap();
    // Many writers at once (so the store groups their writes into shared commits);
    // one of them sends an update the store fails on while applying it ($inc of a string).
    let mut tasks = Vec::new();
    for writer in 0..8 {
        let addr = server.tcp();
        tasks.push(tokio::spawn(async move {
            let mut c = RawClient::connect(addr).await;
            c.signin(ADMIN, ADMIN_PASSWORD).await;
            let mut outcomes = Vec::new();
            for round in 0..20 {
                let bad = writer == 3 && round % 5 == 0;
                let update = if bad {
                    json!({"$inc": {"name": 1}})
                } else {
                    json!({"$inc": {"n": 1000}})
                };
                let query = json!({"n": {"$mod": [50, (writer * 20 + round) % 50]}});
                outcomes.push((bad, update_document(&mut c, "mixed", query, update).await));
            }
            outcomes
        }));
    }
    for task in tasks {
        for (bad, outcome) in task.await.unwrap() {
            match (bad, outcome) {
                (true, Err(message)) => assert!(message.contains("non-numeric"), "{message}"),
                (false, Ok(result)) => assert_eq!(result.matched_count, 1),
                (bad, other) => panic!("bad={bad}: {other:?}"),
            }
        }
    }
    // Every good update committed: 160 of them, 1,000 each.
    let docs = query(&mut c, "mixed", json!({})).await.unwrap();
    let total: i64 = docs.iter().map(|d| d["n"].as_i64().unwrap() / 1000).sum();
    assert_eq!(total, 8 * 20 - 4);
    // The server (and its store writer) keeps serving other connections.
    let mut other = admin(&server).await;
    insert_one(&mut other, "mixed", json!({"after": true}))
        .await
        .unwrap();
}

/// A plain `query` (no sort) holds at most `--max-aggregate-mb` of matched documents:
/// before, `top` large documents were all held at once, so a user who stored a few
/// hundred big documents could make one request take gigabytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_queries_hold_at_most_the_memory_limit() {
    let server = TestServer::start_with(|c| c.limits.max_aggregate_mb = 1);
    let mut client = admin(&server).await;
    wide_collection(&mut client, "plainheld").await;
    let all = QueryRequest {
        collectionname: "plainheld".into(),
        query: "{}".into(),
        top: 300,
        ..Default::default()
    };
    let (code, message) = query_error(&mut client, all).await;
    assert_eq!(code, 2019, "{message}");
    assert!(message.contains("1 mb"), "{message}");
    // A page that fits, and a far skip (counted, not held), are served.
    let page = QueryRequest {
        collectionname: "plainheld".into(),
        query: "{}".into(),
        top: 20,
        skip: 250,
        ..Default::default()
    };
    assert_eq!(query_request(&mut client, page).await.unwrap().len(), 20);
}
