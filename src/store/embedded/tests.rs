use super::*;
use crate::store::engine;
use crate::store::{ChangeOperation, TimeseriesOptions};
use bson::{doc, DateTime};
use std::collections::HashSet;
use std::time::Duration;

fn open(dir: &tempfile::TempDir) -> EmbeddedStore {
    EmbeddedStore::open(dir.path()).unwrap()
}

/// A fresh store whose collection `collection` holds `documents`.
async fn seeded(collection: &str, documents: Vec<Document>) -> (tempfile::TempDir, EmbeddedStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.insert_many(collection, documents).await.unwrap();
    (dir, store)
}

/// The document with `_id` `id`, which must exist.
async fn by_id(store: &EmbeddedStore, collection: &str, id: Bson) -> Document {
    store.find_by_id(collection, &id).await.unwrap().unwrap()
}

fn ids(docs: &[Document]) -> Vec<Bson> {
    docs.iter()
        .map(|d| d.get("_id").cloned().unwrap())
        .collect()
}

fn spec(keys: Document) -> IndexSpec {
    IndexSpec {
        keys,
        ..Default::default()
    }
}

fn unique(keys: Document) -> IndexSpec {
    IndexSpec {
        keys,
        unique: true,
        ..Default::default()
    }
}

fn find_opts(sort: Option<Document>, skip: u64, limit: u64) -> FindOptions {
    FindOptions {
        projection: None,
        sort,
        skip,
        limit,
    }
}

#[tokio::test]
async fn writes_survive_reopen_and_publish_changes() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let mut changes = store.changes().subscribe("things");
        let before = store.changes().generation("things");
        store
            .insert_many(
                "things",
                vec![doc! {"_id": "a", "n": 1}, doc! {"_id": "b", "n": 2}],
            )
            .await
            .unwrap();
        assert_eq!(store.changes().generation("things"), before + 2);
        let event = changes.recv().await.unwrap();
        assert_eq!(event.operation.as_str(), "insert");
        assert_eq!(event.document_key, Bson::String("a".into()));
        let outcome = store
            .replace_one("things", &doc! {"_id": "a"}, doc! {"n": 10}, false)
            .await
            .unwrap();
        assert_eq!((outcome.matched, outcome.modified), (1, 1));
        assert_eq!(
            store
                .delete("things", &doc! {"_id": "b"}, true)
                .await
                .unwrap(),
            1
        );
        store.close().await.unwrap();
    }
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let a = store
        .find_by_id("things", &Bson::String("a".into()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a, doc! {"_id": "a", "n": 10});
    assert!(store
        .find_by_id("things", &Bson::String("b".into()))
        .await
        .unwrap()
        .is_none());
    assert_eq!(store.count("things", &doc! {}).await.unwrap(), 1);
}

#[tokio::test]
async fn duplicate_ids_are_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    store.insert_many("c", vec![doc! {"_id": 1}]).await.unwrap();
    // 1.0 and 1 are the same _id for MongoDB.
    let err = store
        .insert_many("c", vec![doc! {"_id": 2}, doc! {"_id": 1.0}])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::DuplicateKey { .. }));
    assert_eq!(
        store.count("c", &doc! {}).await.unwrap(),
        1,
        "nothing of the failed batch was written"
    );
    // The same _id twice in one call, too.
    let err = store
        .insert_many("c", vec![doc! {"_id": 3}, doc! {"_id": 3i64}])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::DuplicateKey { .. }));
    assert_eq!(store.count("c", &doc! {}).await.unwrap(), 1);
}

#[tokio::test]
async fn concurrent_writers_share_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let before = store.stats();
    let mut tasks = Vec::new();
    for n in 0..200 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.insert_many("c", vec![doc! {"_id": n}]).await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(store.count("c", &doc! {}).await.unwrap(), 200);
    let after = store.stats();
    assert_eq!(after.writes - before.writes, 200);
    assert!(
        after.commits - before.commits < 200,
        "group commit batched writes: {after:?}"
    );
}

#[tokio::test]
async fn a_failed_write_does_not_disturb_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&dir));
    store
        .create_index("c", &unique(doc! {"email": 1}))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for n in 0..100 {
        let store = store.clone();
        // Every fourth document reuses an email: those inserts must fail alone.
        let email = if n % 4 == 3 {
            format!("u{}", n - 1)
        } else {
            format!("u{n}")
        };
        tasks.push(tokio::spawn(async move {
            store
                .insert_many("c", vec![doc! {"_id": n, "email": email}])
                .await
        }));
    }
    let mut failed = 0;
    for task in tasks {
        if task.await.unwrap().is_err() {
            failed += 1;
        }
    }
    assert_eq!(failed, 25);
    assert_eq!(store.count("c", &doc! {}).await.unwrap(), 75);
    for n in 0..100 {
        let found = store.find_by_id("c", &Bson::Int32(n)).await.unwrap();
        assert_eq!(
            found.is_some(),
            n % 4 != 3
                || store
                    .count("c", &doc! {"email": format!("u{}", n - 1)})
                    .await
                    .unwrap()
                    == 0
        );
    }
}

#[tokio::test]
async fn find_sort_skip_limit_projection_count() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let docs: Vec<Document> =
        (0..20).map(|n| doc! {"_id": n, "n": n % 5, "name": format!("x{n:02}"), "tags": ["a", format!("t{}", n % 3)]}).collect();
    store.insert_many("c", docs).await.unwrap();
    let options = FindOptions {
        projection: Some(doc! {"name": 1, "_id": 0}),
        sort: Some(doc! {"n": -1, "name": 1}),
        skip: 1,
        limit: 3,
    };
    let found = store
        .find("c", &doc! {"n": {"$gte": 2}}, &options)
        .await
        .unwrap();
    assert_eq!(
        found,
        vec![
            doc! {"name": "x09"},
            doc! {"name": "x14"},
            doc! {"name": "x19"}
        ]
    );
    assert_eq!(
        store.count("c", &doc! {"n": {"$gte": 2}}).await.unwrap(),
        12
    );
    assert_eq!(store.count("c", &doc! {}).await.unwrap(), 20);
    assert_eq!(store.count("c", &doc! {"_id": 3}).await.unwrap(), 1);
    assert_eq!(store.count("missing", &doc! {"a": 1}).await.unwrap(), 0);
    assert!(store
        .find("missing", &doc! {}, &FindOptions::default())
        .await
        .unwrap()
        .is_empty());
    let found = store
        .find(
            "c",
            &doc! {"_id": {"$in": [3, 1, 2, 99]}},
            &find_opts(Some(doc! {"_id": -1}), 0, 0),
        )
        .await
        .unwrap();
    assert_eq!(
        ids(&found),
        vec![Bson::Int32(3), Bson::Int32(2), Bson::Int32(1)]
    );
    let found = store
        .find("c", &doc! {"_id": {"$gt": 15}}, &find_opts(None, 0, 0))
        .await
        .unwrap();
    assert_eq!(found.len(), 4);
    // Bad filters are errors.
    assert!(matches!(
        store
            .find("c", &doc! {"$foo": 1}, &FindOptions::default())
            .await,
        Err(StoreError::Query(_))
    ));
}

#[tokio::test]
async fn distinct_counts_array_elements_once() {
    let (_dir, store) = seeded(
        "c",
        vec![
            doc! {"_id": 1, "tags": ["a", "b"], "n": 1},
            doc! {"_id": 2, "tags": "b", "n": 1.0},
            doc! {"_id": 3, "tags": ["c"], "n": 2},
            doc! {"_id": 4, "n": 3},
        ],
    )
    .await;
    let tags = store.distinct("c", "tags", &doc! {}).await.unwrap();
    assert_eq!(
        tags,
        vec![Bson::from("a"), Bson::from("b"), Bson::from("c")]
    );
    let ns = store
        .distinct("c", "n", &doc! {"_id": {"$lte": 3}})
        .await
        .unwrap();
    assert_eq!(ns.len(), 2, "1 and 1.0 are one value: {ns:?}");
}

#[tokio::test]
async fn aggregate_runs_pipelines_with_lookup_and_refuses_out() {
    let (_dir, store) = seeded(
        "orders",
        vec![
            doc! {"_id": 1, "user": "u1", "total": 5},
            doc! {"_id": 2, "user": "u2", "total": 7},
            doc! {"_id": 3, "user": "u1", "total": 11},
        ],
    )
    .await;
    store
        .insert_many(
            "users",
            vec![
                doc! {"_id": "u1", "name": "Ann"},
                doc! {"_id": "u2", "name": "Bob"},
            ],
        )
        .await
        .unwrap();
    store
        .create_index("orders", &spec(doc! {"user": 1, "total": -1}))
        .await
        .unwrap();
    let pipeline = vec![
        doc! {"$match": {"user": "u1"}},
        doc! {"$sort": {"total": -1}},
        doc! {"$limit": 1},
        doc! {"$lookup": {"from": "users", "localField": "user", "foreignField": "_id", "as": "who"}},
        doc! {"$project": {"_id": 1, "name": {"$arrayElemAt": ["$who.name", 0]}}},
    ];
    let out = store.aggregate("orders", &pipeline).await.unwrap();
    assert_eq!(out, vec![doc! {"_id": 3, "name": "Ann"}]);
    let grouped = store
        .aggregate(
            "orders",
            &[
                doc! {"$group": {"_id": "$user", "sum": {"$sum": "$total"}}},
                doc! {"$sort": {"_id": 1}},
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        grouped,
        vec![doc! {"_id": "u1", "sum": 16}, doc! {"_id": "u2", "sum": 7}]
    );
    for stage in ["$out", "$merge"] {
        let err = store
            .aggregate("orders", &[doc! {stage: "other"}])
            .await
            .unwrap_err();
        assert_eq!(
            err,
            StoreError::Query(format!("{stage} is not supported by the embedded store"))
        );
    }
    assert!(store
        .aggregate("orders", &[doc! {"$bogus": 1}])
        .await
        .is_err());
}

#[tokio::test]
async fn update_operators_events_and_immutable_id() {
    let (_dir, store) = seeded(
        "c",
        vec![
            doc! {"_id": 1, "n": 1, "s": "x"},
            doc! {"_id": 2, "n": 2, "s": "x"},
            doc! {"_id": 3, "n": 3},
        ],
    )
    .await;
    let mut changes = store.changes().subscribe("c");
    let first = UpdateOptions {
        upsert: false,
        multi: false,
    };
    let many = UpdateOptions {
        upsert: false,
        multi: true,
    };
    let outcome = store
        .update("c", &doc! {"s": "x"}, &doc! {"$inc": {"n": 10}}, first)
        .await
        .unwrap();
    assert_eq!((outcome.matched, outcome.modified), (1, 1));
    let event = changes.recv().await.unwrap();
    assert_eq!(event.operation, ChangeOperation::Update);
    assert_eq!(
        event.full_document.as_ref().unwrap(),
        &doc! {"_id": 1, "n": 11, "s": "x"}
    );
    let outcome = store
        .update("c", &doc! {"s": "x"}, &doc! {"$set": {"s": "y"}}, many)
        .await
        .unwrap();
    assert_eq!((outcome.matched, outcome.modified), (2, 2));
    // Matched but unchanged.
    let outcome = store
        .update("c", &doc! {"_id": 3}, &doc! {"$set": {"n": 3}}, first)
        .await
        .unwrap();
    assert_eq!((outcome.matched, outcome.modified), (1, 0));
    // Replacement through update keeps _id first and publishes a replace.
    let mut changes = store.changes().subscribe("c");
    store
        .update("c", &doc! {"_id": 3}, &doc! {"z": 1, "_id": 3}, first)
        .await
        .unwrap();
    let event = changes.recv().await.unwrap();
    assert_eq!(event.operation, ChangeOperation::Replace);
    assert_eq!(
        by_id(&store, "c", Bson::Int32(3)).await,
        doc! {"_id": 3, "z": 1}
    );
    let err = store
        .update("c", &doc! {"_id": 3}, &doc! {"$set": {"_id": 4}}, first)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Query(m) if m.contains("immutable")));
    let err = store
        .replace_one("c", &doc! {"_id": 3}, doc! {"_id": 4, "z": 2}, false)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Query(m) if m.contains("immutable")));
    assert!(store
        .update("c", &doc! {"_id": 3}, &doc! {"$bogus": {"a": 1}}, first)
        .await
        .is_err());
    assert_eq!(
        by_id(&store, "c", Bson::Int32(3)).await,
        doc! {"_id": 3, "z": 1}
    );
    // No match, no upsert: nothing.
    let outcome = store
        .update("c", &doc! {"_id": 99}, &doc! {"$set": {"a": 1}}, many)
        .await
        .unwrap();
    assert_eq!(outcome, UpdateOutcome::default());
    let outcome = store
        .update("nothing", &doc! {"_id": 99}, &doc! {"$set": {"a": 1}}, many)
        .await
        .unwrap();
    assert_eq!(outcome, UpdateOutcome::default());
}

#[tokio::test]
async fn upserts_seed_from_the_query() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let options = UpdateOptions {
        upsert: true,
        multi: false,
    };
    let outcome = store
        .update(
            "c",
            &doc! {"key": "k1", "n": {"$gt": 3}},
            &doc! {"$set": {"v": 1}, "$setOnInsert": {"created": true}},
            options,
        )
        .await
        .unwrap();
    assert_eq!((outcome.matched, outcome.modified), (0, 0));
    let id = outcome.upserted_id.clone().unwrap();
    let stored = store.find_by_id("c", &id).await.unwrap().unwrap();
    assert_eq!(stored.keys().next().unwrap(), "_id");
    assert_eq!(stored.get_str("key").unwrap(), "k1");
    assert!(stored.get_bool("created").unwrap());
    // Second time it matches (n is absent, so use the key only).
    let outcome = store
        .update(
            "c",
            &doc! {"key": "k1"},
            &doc! {"$set": {"v": 2}, "$setOnInsert": {"created": false}},
            options,
        )
        .await
        .unwrap();
    assert_eq!(
        (outcome.matched, outcome.modified, outcome.upserted_id),
        (1, 1, None)
    );
    let stored = store.find_by_id("c", &id).await.unwrap().unwrap();
    assert_eq!(
        (
            stored.get_i32("v").unwrap(),
            stored.get_bool("created").unwrap()
        ),
        (2, true)
    );
    // Upsert with an explicit _id in the query.
    let outcome = store
        .update(
            "c",
            &doc! {"_id": "fixed"},
            &doc! {"$inc": {"hits": 1}},
            options,
        )
        .await
        .unwrap();
    assert_eq!(outcome.upserted_id, Some(Bson::from("fixed")));
    // replace_one upsert.
    let outcome = store
        .replace_one("c", &doc! {"_id": "r"}, doc! {"a": 1}, true)
        .await
        .unwrap();
    assert_eq!(outcome.upserted_id, Some(Bson::from("r")));
    assert_eq!(
        by_id(&store, "c", Bson::from("r")).await,
        doc! {"_id": "r", "a": 1}
    );
    assert_eq!(store.count("c", &doc! {}).await.unwrap(), 3);
    // Without an `_id` in filter or replacement, MongoDB generates an ObjectId, as
    // it does for operator upserts.
    let outcome = store
        .replace_one("c", &doc! {"name": "fresh"}, doc! {"name": "fresh"}, true)
        .await
        .unwrap();
    assert!(matches!(outcome.upserted_id, Some(Bson::ObjectId(_))));
}

#[tokio::test]
async fn positional_updates_use_the_matched_element() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store
        .insert_many("c", vec![doc! {"_id": 1, "items": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 2}], "grades": [80, 85, 90]}])
        .await
        .unwrap();
    let options = UpdateOptions::default();
    store
        .update(
            "c",
            &doc! {"items.sku": "b"},
            &doc! {"$set": {"items.$.qty": 5}},
            options,
        )
        .await
        .unwrap();
    store
        .update(
            "c",
            &doc! {"_id": 1, "grades": 85},
            &doc! {"$set": {"grades.$": 86}},
            options,
        )
        .await
        .unwrap();
    let stored = by_id(&store, "c", Bson::Int32(1)).await;
    assert_eq!(
        stored,
        doc! {"_id": 1, "items": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 5}], "grades": [80, 86, 90]}
    );
    // The same through an index on the array field.
    store
        .create_index("c", &spec(doc! {"items.sku": 1}))
        .await
        .unwrap();
    store
        .update(
            "c",
            &doc! {"items.sku": "a"},
            &doc! {"$inc": {"items.$.qty": 10}},
            options,
        )
        .await
        .unwrap();
    let stored = by_id(&store, "c", Bson::Int32(1)).await;
    assert_eq!(
        stored.get_array("items").unwrap()[0],
        Bson::Document(doc! {"sku": "a", "qty": 11})
    );
    // No array match for `$`: an error, nothing written.
    assert!(store
        .update(
            "c",
            &doc! {"_id": 1},
            &doc! {"$set": {"items.$.qty": 0}},
            options
        )
        .await
        .is_err());
}

#[tokio::test]
async fn find_one_and_update_returns_old_or_new_with_projection() {
    let (_dir, store) = seeded(
        "q",
        vec![
            doc! {"_id": 1, "state": "new", "priority": 5},
            doc! {"_id": 2, "state": "new", "priority": 1},
            doc! {"_id": 3, "state": "new", "priority": 3},
        ],
    )
    .await;
    let update = doc! {"$set": {"state": "taken"}};
    let options = FindAndModifyOptions {
        sort: Some(doc! {"priority": 1}),
        ..Default::default()
    };
    let old = store
        .find_one_and_update("q", &doc! {"state": "new"}, &update, &options)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(old, doc! {"_id": 2, "state": "new", "priority": 1});
    let options = FindAndModifyOptions {
        sort: Some(doc! {"priority": -1}),
        return_new: true,
        projection: Some(doc! {"state": 1}),
        ..Default::default()
    };
    let new = store
        .find_one_and_update("q", &doc! {"state": "new"}, &update, &options)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(new, doc! {"_id": 1, "state": "taken"});
    let none = store
        .find_one_and_update("q", &doc! {"state": "gone"}, &update, &options)
        .await
        .unwrap();
    assert!(none.is_none());
    let options = FindAndModifyOptions {
        upsert: true,
        return_new: true,
        ..Default::default()
    };
    let upserted = store
        .find_one_and_update(
            "q",
            &doc! {"_id": 9},
            &doc! {"$set": {"state": "new"}},
            &options,
        )
        .await
        .unwrap();
    assert_eq!(upserted, Some(doc! {"_id": 9, "state": "new"}));
    let options = FindAndModifyOptions {
        upsert: true,
        ..Default::default()
    };
    let upserted = store
        .find_one_and_update(
            "q",
            &doc! {"_id": 10},
            &doc! {"$set": {"state": "new"}},
            &options,
        )
        .await
        .unwrap();
    assert_eq!(
        upserted, None,
        "return_new false: the (absent) old document"
    );
    assert_eq!(store.count("q", &doc! {"state": "new"}).await.unwrap(), 3);
}

#[tokio::test]
async fn concurrent_pops_never_return_the_same_document() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&dir));
    store
        .create_index("wi", &spec(doc! {"state": 1, "wiq": 1, "priority": 1}))
        .await
        .unwrap();
    let docs: Vec<Document> =
        (0..300).map(|n| doc! {"_id": n, "state": "new", "wiq": if n % 2 == 0 { "q" } else { "other" }, "priority": n % 7}).collect();
    store.insert_many("wi", docs).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            let options = FindAndModifyOptions {
                sort: Some(doc! {"priority": 1}),
                ..Default::default()
            };
            while let Some(doc) = store
                .find_one_and_update(
                    "wi",
                    &doc! {"state": "new", "wiq": "q"},
                    &doc! {"$set": {"state": "processing"}},
                    &options,
                )
                .await
                .unwrap()
            {
                got.push((
                    doc.get_i32("_id").unwrap(),
                    doc.get_i32("priority").unwrap(),
                ));
            }
            got
        }));
    }
    let mut seen = HashSet::new();
    for task in tasks {
        let got = task.await.unwrap();
        // Each popper sees priorities in non-decreasing order.
        assert!(got.windows(2).all(|w| w[0].1 <= w[1].1), "{got:?}");
        for (id, _) in got {
            assert!(seen.insert(id), "document {id} popped twice");
        }
    }
    assert_eq!(seen.len(), 150);
    assert!(seen.iter().all(|id| id % 2 == 0));
    assert_eq!(
        store
            .count("wi", &doc! {"state": "processing"})
            .await
            .unwrap(),
        150
    );
}

#[tokio::test]
async fn pops_on_a_compound_index_examine_one_document() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store
        .create_index("wi", &spec(doc! {"state": 1, "wiq": 1, "priority": -1}))
        .await
        .unwrap();
    let docs: Vec<Document> = (0..2000)
        .map(|n| doc! {"_id": n, "state": if n < 1000 { "done" } else { "new" }, "wiq": format!("q{}", n % 4), "priority": n % 10})
        .collect();
    store.insert_many("wi", docs).await.unwrap();
    let before = store.stats();
    let options = FindAndModifyOptions {
        sort: Some(doc! {"priority": -1}),
        ..Default::default()
    };
    let popped = store
        .find_one_and_update(
            "wi",
            &doc! {"state": "new", "wiq": "q1"},
            &doc! {"$set": {"state": "processing"}},
            &options,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(popped.get_i32("priority").unwrap(), 9);
    let after = store.stats();
    assert_eq!(
        after.docs_examined - before.docs_examined,
        1,
        "{before:?} -> {after:?}"
    );
    assert_eq!(after.keys_examined - before.keys_examined, 1);
    // The find equivalent reports the plan.
    let explain = store
        .explain(
            "wi",
            &doc! {"state": "new", "wiq": "q1"},
            &find_opts(Some(doc! {"priority": 1}), 0, 2),
        )
        .await
        .unwrap();
    assert_eq!(explain.plan, "IXSCAN state_1_wiq_1_priority_-1");
    assert!(explain.sorted_by_index);
    assert_eq!((explain.docs_examined, explain.returned), (2, 2));
}

#[tokio::test]
async fn unique_indexes_refuse_violations_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    assert_eq!(
        store
            .create_index("u", &unique(doc! {"email": 1}))
            .await
            .unwrap(),
        "email_1"
    );
    store
        .insert_many(
            "u",
            vec![doc! {"_id": 1, "email": "a"}, doc! {"_id": 2, "email": "b"}],
        )
        .await
        .unwrap();
    // Insert.
    let err = store
        .insert_many(
            "u",
            vec![doc! {"_id": 3, "email": "c"}, doc! {"_id": 4, "email": "a"}],
        )
        .await
        .unwrap_err();
    match &err {
        StoreError::DuplicateKey { collection, key } => {
            assert_eq!(collection, "u index: email_1");
            assert_eq!(key, "{ email: \"a\" }");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(store.count("u", &doc! {}).await.unwrap(), 2);
    assert_eq!(
        store.count("u", &doc! {"email": "c"}).await.unwrap(),
        0,
        "no stale index entry either"
    );
    // Update (single and multi): nothing changes.
    let err = store
        .update(
            "u",
            &doc! {"_id": 2},
            &doc! {"$set": {"email": "a"}},
            UpdateOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::DuplicateKey { .. }));
    let err = store
        .update(
            "u",
            &doc! {},
            &doc! {"$set": {"email": "same"}},
            UpdateOptions {
                upsert: false,
                multi: true,
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::DuplicateKey { .. }));
    let err = store
        .replace_one("u", &doc! {"_id": 2}, doc! {"email": "a"}, false)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::DuplicateKey { .. }));
    let all = store
        .find("u", &doc! {}, &FindOptions::default())
        .await
        .unwrap();
    assert_eq!(
        all,
        vec![doc! {"_id": 1, "email": "a"}, doc! {"_id": 2, "email": "b"}]
    );
    assert_eq!(
        ids(&store
            .find("u", &doc! {"email": "b"}, &FindOptions::default())
            .await
            .unwrap()),
        vec![Bson::Int32(2)]
    );
    // Swapping a value away and back is fine; numbers compare across types.
    store
        .update(
            "u",
            &doc! {"_id": 2},
            &doc! {"$set": {"email": 5}},
            UpdateOptions::default(),
        )
        .await
        .unwrap();
    let err = store
        .insert_many("u", vec![doc! {"_id": 7, "email": 5.0}])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::DuplicateKey { .. }));
    // Missing fields index as null: only one document may lack the field.
    store.insert_many("u", vec![doc! {"_id": 8}]).await.unwrap();
    assert!(store.insert_many("u", vec![doc! {"_id": 9}]).await.is_err());
    // Multikey: elements are keys.
    store
        .create_index("m", &unique(doc! {"tags": 1}))
        .await
        .unwrap();
    store
        .insert_many("m", vec![doc! {"_id": 1, "tags": ["x", "y", "x"]}])
        .await
        .unwrap();
    assert!(store
        .insert_many("m", vec![doc! {"_id": 2, "tags": ["z", "y"]}])
        .await
        .is_err());
    store
        .insert_many("m", vec![doc! {"_id": 3, "tags": ["z"]}])
        .await
        .unwrap();
}

#[tokio::test]
async fn building_a_unique_index_over_duplicates_fails_cleanly() {
    let (_dir, store) = seeded(
        "c",
        vec![
            doc! {"_id": 1, "k": "a"},
            doc! {"_id": 2, "k": "b"},
            doc! {"_id": 3, "k": "a"},
        ],
    )
    .await;
    let err = store
        .create_index("c", &unique(doc! {"k": 1}))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::DuplicateKey { .. }), "{err:?}");
    assert_eq!(store.list_indexes("c").await.unwrap().len(), 1, "only _id_");
    // Writes still work and are not checked against the failed index.
    store
        .insert_many("c", vec![doc! {"_id": 4, "k": "b"}])
        .await
        .unwrap();
    // A non-unique index on the same data builds fine.
    store.create_index("c", &spec(doc! {"k": 1})).await.unwrap();
    assert_eq!(store.count("c", &doc! {"k": "b"}).await.unwrap(), 2);
}

#[tokio::test]
async fn index_definitions_are_idempotent_listed_and_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store
        .insert_many("c", vec![doc! {"_id": 1, "a": 1, "b": 2}])
        .await
        .unwrap();
    assert_eq!(
        store
            .create_index("c", &spec(doc! {"a": 1, "b": -1}))
            .await
            .unwrap(),
        "a_1_b_-1"
    );
    assert_eq!(
        store
            .create_index("c", &spec(doc! {"a": 1, "b": -1}))
            .await
            .unwrap(),
        "a_1_b_-1"
    );
    let named = IndexSpec {
        keys: doc! {"b": 1},
        name: Some("by_b".into()),
        expire_after_seconds: Some(60),
        partial_filter: Some(doc! {"b": {"$exists": true}}),
        unique: false,
    };
    assert_eq!(store.create_index("c", &named).await.unwrap(), "by_b");
    // Same name, different definition; same keys, different name.
    let clash = IndexSpec {
        keys: doc! {"a": -1},
        name: Some("by_b".into()),
        ..Default::default()
    };
    assert!(matches!(
        store.create_index("c", &clash).await,
        Err(StoreError::InvalidOptions(_))
    ));
    let renamed = IndexSpec {
        name: Some("other".into()),
        ..spec(doc! {"a": 1, "b": -1})
    };
    assert!(matches!(
        store.create_index("c", &renamed).await,
        Err(StoreError::InvalidOptions(_))
    ));
    assert!(store
        .create_index("c", &spec(doc! {"a": "text"}))
        .await
        .is_err());
    assert!(store
        .create_index(
            "c",
            &IndexSpec {
                expire_after_seconds: Some(5),
                ..spec(doc! {"a": 1, "b": 1})
            }
        )
        .await
        .is_err());
    assert_eq!(
        store
            .create_index("c", &spec(doc! {"_id": 1}))
            .await
            .unwrap(),
        "_id_"
    );
    let listed = store.list_indexes("c").await.unwrap();
    assert_eq!(
        listed,
        vec![
            doc! {"v": 2, "key": {"_id": 1}, "name": "_id_"},
            doc! {"v": 2, "key": {"a": 1, "b": -1}, "name": "a_1_b_-1"},
            doc! {"v": 2, "key": {"b": 1}, "name": "by_b", "expireAfterSeconds": 60i64, "partialFilterExpression": {"b": {"$exists": true}}},
        ]
    );
    assert_eq!(store.drop_index("c", "a_1_b_-1").await, Ok(()));
    assert_eq!(
        store.drop_index("c", "a_1_b_-1").await,
        Err(StoreError::NoSuchIndex("a_1_b_-1".into()))
    );
    assert!(matches!(
        store.drop_index("c", "_id_").await,
        Err(StoreError::InvalidOptions(_))
    ));
    assert_eq!(
        store.drop_index("nope", "x").await,
        Err(StoreError::NoSuchCollection("nope".into()))
    );
    assert!(matches!(
        store.list_indexes("nope").await,
        Err(StoreError::NoSuchCollection(_))
    ));
    assert_eq!(store.list_indexes("c").await.unwrap().len(), 2);
    // Re-created after a drop: a fresh, correct index.
    store
        .create_index("c", &spec(doc! {"a": 1, "b": -1}))
        .await
        .unwrap();
    assert_eq!(
        store
            .explain("c", &doc! {"a": 1}, &FindOptions::default())
            .await
            .unwrap()
            .returned,
        1
    );
}

#[tokio::test]
async fn indexes_persist_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(&dir);
        store
            .create_index("c", &unique(doc! {"k": 1}))
            .await
            .unwrap();
        store
            .create_index("c", &spec(doc! {"tags": 1}))
            .await
            .unwrap();
        let docs: Vec<Document> = (0..50)
            .map(|n| doc! {"_id": n, "k": n, "tags": [n % 3, 100]})
            .collect();
        store.insert_many("c", docs).await.unwrap();
        store.close().await.unwrap();
    }
    let store = open(&dir);
    let listed: Vec<String> = store
        .list_indexes("c")
        .await
        .unwrap()
        .iter()
        .map(|d| d.get_str("name").unwrap().to_string())
        .collect();
    assert_eq!(listed, vec!["_id_", "k_1", "tags_1"]);
    let explain = store
        .explain("c", &doc! {"k": 7}, &FindOptions::default())
        .await
        .unwrap();
    assert_eq!(
        (
            explain.plan.as_str(),
            explain.docs_examined,
            explain.returned
        ),
        ("IXSCAN k_1", 1, 1)
    );
    let explain = store
        .explain("c", &doc! {"tags": 1}, &FindOptions::default())
        .await
        .unwrap();
    assert_eq!(
        (explain.plan.as_str(), explain.returned),
        ("IXSCAN tags_1", 17)
    );
    // The multikey flag survived too: no index sort on it.
    let explain = store
        .explain(
            "c",
            &doc! {"tags": 100},
            &find_opts(Some(doc! {"tags": 1}), 0, 1),
        )
        .await
        .unwrap();
    assert!(!explain.sorted_by_index);
    assert!(matches!(
        store.insert_many("c", vec![doc! {"_id": 99, "k": 7}]).await,
        Err(StoreError::DuplicateKey { .. })
    ));
}

#[tokio::test]
async fn planner_uses_indexes_for_equality_ranges_and_sorts() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let docs: Vec<Document> = (0..1000)
        .map(|n| doc! {"_id": n, "a": n % 10, "b": n, "c": format!("s{:04}", n), "d": DateTime::from_millis(n as i64 * 1000)})
        .collect();
    store.insert_many("c", docs).await.unwrap();
    store
        .create_index("c", &spec(doc! {"a": 1, "b": -1}))
        .await
        .unwrap();
    store.create_index("c", &spec(doc! {"c": 1})).await.unwrap();
    store
        .create_index("c", &spec(doc! {"d": -1}))
        .await
        .unwrap();
    let explain = |filter: Document, options: FindOptions| {
        let store = &store;
        async move { store.explain("c", &filter, &options).await.unwrap() }
    };
    // Equality on the prefix.
    let e = explain(doc! {"a": 3}, FindOptions::default()).await;
    assert_eq!(
        (e.plan.as_str(), e.docs_examined, e.returned),
        ("IXSCAN a_1_b_-1", 100, 100)
    );
    // Equality + range on the compound index.
    let e = explain(
        doc! {"a": 3, "b": {"$gte": 500, "$lt": 600}},
        FindOptions::default(),
    )
    .await;
    assert_eq!((e.docs_examined, e.returned), (10, 10));
    // $in on the prefix.
    let e = explain(
        doc! {"a": {"$in": [1, 2]}, "b": {"$lt": 100}},
        FindOptions::default(),
    )
    .await;
    assert_eq!(
        (e.plan.as_str(), e.docs_examined, e.returned),
        ("IXSCAN a_1_b_-1", 20, 20)
    );
    // Range + sort + limit on a string index.
    let e = explain(
        doc! {"c": {"$gt": "s0100"}},
        find_opts(Some(doc! {"c": -1}), 0, 5),
    )
    .await;
    assert_eq!(
        (e.plan.as_str(), e.sorted_by_index, e.docs_examined),
        ("IXSCAN c_1", true, 5)
    );
    // Descending date index, ascending sort: walked backwards.
    let e = explain(
        doc! {"d": {"$gte": DateTime::from_millis(990_000)}},
        find_opts(Some(doc! {"d": 1}), 0, 3),
    )
    .await;
    assert_eq!(
        (
            e.plan.as_str(),
            e.sorted_by_index,
            e.docs_examined,
            e.returned
        ),
        ("IXSCAN d_-1", true, 3, 3)
    );
    // Sort on the index suffix after an equality; both directions.
    let e = explain(doc! {"a": 4}, find_opts(Some(doc! {"b": 1}), 2, 3)).await;
    assert_eq!(
        (e.sorted_by_index, e.docs_examined, e.returned),
        (true, 5, 3)
    );
    let got = store
        .find("c", &doc! {"a": 4}, &find_opts(Some(doc! {"b": 1}), 2, 3))
        .await
        .unwrap();
    assert_eq!(
        ids(&got),
        vec![Bson::Int32(24), Bson::Int32(34), Bson::Int32(44)]
    );
    // Sort-only with a limit walks an index.
    let e = explain(doc! {}, find_opts(Some(doc! {"c": 1}), 0, 2)).await;
    assert_eq!((e.plan.as_str(), e.docs_examined), ("IXSCAN c_1", 2));
    // _id plans.
    let e = explain(doc! {"_id": 5}, FindOptions::default()).await;
    assert_eq!((e.plan.as_str(), e.docs_examined), ("IDHACK", 1));
    let e = explain(doc! {"_id": {"$gte": 990}}, FindOptions::default()).await;
    assert_eq!((e.plan.as_str(), e.docs_examined), ("IDSCAN", 10));
    let e = explain(doc! {}, find_opts(Some(doc! {"_id": -1}), 0, 1)).await;
    assert_eq!(
        (e.plan.as_str(), e.docs_examined, e.sorted_by_index),
        ("COLLSCAN", 1, true)
    );
    // Nothing usable: a scan.
    let e = explain(doc! {"b": 5}, FindOptions::default()).await;
    assert_eq!(
        (e.plan.as_str(), e.docs_examined, e.returned),
        ("COLLSCAN", 1000, 1)
    );
    let e = explain(doc! {"$or": [{"a": 1}, {"a": 2}]}, FindOptions::default()).await;
    assert_eq!(e.plan, "COLLSCAN");
    // A range outside the type bracket finds nothing, without scanning.
    let e = explain(doc! {"c": {"$gt": 5}}, FindOptions::default()).await;
    assert_eq!(
        (e.plan.as_str(), e.docs_examined, e.returned),
        ("IXSCAN c_1", 0, 0)
    );
    // Update and delete use the planner too.
    let before = store.stats();
    store
        .update(
            "c",
            &doc! {"c": "s0500"},
            &doc! {"$set": {"x": 1}},
            UpdateOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .delete("c", &doc! {"a": 9, "b": {"$gt": 900}}, false)
            .await
            .unwrap(),
        10
    );
    assert_eq!(store.stats().docs_examined - before.docs_examined, 11);
    assert_eq!(store.count("c", &doc! {"a": 9}).await.unwrap(), 90);
}

#[tokio::test]
async fn partial_indexes_are_used_only_when_the_query_implies_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let partial = IndexSpec {
        keys: doc! {"name": 1},
        partial_filter: Some(doc! {"_type": "user"}),
        ..Default::default()
    };
    store.create_index("c", &partial).await.unwrap();
    let docs: Vec<Document> = (0..100)
        .map(|n| doc! {"_id": n, "_type": if n % 2 == 0 { "user" } else { "role" }, "name": format!("n{}", n / 2)})
        .collect();
    store.insert_many("c", docs).await.unwrap();
    let e = store
        .explain(
            "c",
            &doc! {"name": "n3", "_type": "user"},
            &FindOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!((e.plan.as_str(), e.returned), ("IXSCAN name_1", 1));
    let e = store
        .explain("c", &doc! {"name": "n3"}, &FindOptions::default())
        .await
        .unwrap();
    assert_eq!((e.plan.as_str(), e.returned), ("COLLSCAN", 2));
    let e = store
        .explain(
            "c",
            &doc! {"name": "n3", "_type": {"$in": ["user"]}},
            &FindOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!((e.plan.as_str(), e.returned), ("IXSCAN name_1", 1));
    // Unique partial: only documents inside the filter are constrained.
    let unique_partial = IndexSpec {
        keys: doc! {"email": 1},
        unique: true,
        partial_filter: Some(doc! {"email": {"$exists": true}}),
        ..Default::default()
    };
    store.create_index("p", &unique_partial).await.unwrap();
    store
        .insert_many(
            "p",
            vec![
                doc! {"_id": 1},
                doc! {"_id": 2},
                doc! {"_id": 3, "email": "x"},
            ],
        )
        .await
        .unwrap();
    assert!(store
        .insert_many("p", vec![doc! {"_id": 4, "email": "x"}])
        .await
        .is_err());
    let e = store
        .explain("p", &doc! {"email": "x"}, &FindOptions::default())
        .await
        .unwrap();
    assert_eq!((e.plan.as_str(), e.returned), ("IXSCAN email_1", 1));
}

/// Deterministic pseudo-random numbers (no global state).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn random_value(rng: &mut Lcg, depth: u32) -> Option<Bson> {
    Some(match rng.below(if depth > 0 { 9 } else { 11 }) {
        0 => return None,
        1 => Bson::Null,
        2 => Bson::Int32(rng.below(20) as i32 - 5),
        3 => Bson::Int64(rng.below(20) as i64 - 5),
        4 => Bson::Double((rng.below(40) as f64) / 2.0 - 5.0),
        5 => Bson::String(["a", "b", "ab", "", "z", "B"][rng.below(6) as usize].to_string()),
        6 => Bson::DateTime(DateTime::from_millis(rng.below(10) as i64 * 1000)),
        7 => Bson::Boolean(rng.below(2) == 0),
        8 => Bson::Document(doc! {"x": rng.below(3) as i32}),
        _ => Bson::Array(
            (0..rng.below(4))
                .filter_map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
    })
}

/// Index plans return exactly what a scan returns, over mixed types and arrays.
#[tokio::test]
async fn indexed_results_equal_scan_results_on_mixed_types() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let seed = std::env::var("STORE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(42);
    let mut rng = Lcg(seed);
    let mut docs = Vec::new();
    for n in 0..600 {
        let mut doc = doc! {"_id": n};
        for field in ["a", "b"] {
            if let Some(v) = random_value(&mut rng, 0) {
                doc.insert(field, v);
            }
        }
        doc.insert("s", n % 5);
        // Dotted paths: a sub-document, an array of sub-documents, a scalar, or nothing.
        match rng.below(4) {
            0 => {
                if let Some(v) = random_value(&mut rng, 1) {
                    doc.insert("n", doc! {"x": v});
                }
            }
            1 => {
                let items: Vec<Bson> = (0..rng.below(3))
                    .map(|_| match random_value(&mut rng, 1) {
                        Some(v) => Bson::Document(doc! {"x": v}),
                        None => Bson::Document(doc! {}),
                    })
                    .collect();
                doc.insert("n", items);
            }
            2 => {
                doc.insert("n", rng.below(3) as i32);
            }
            _ => {}
        }
        docs.push(doc);
    }
    store.insert_many("c", docs.clone()).await.unwrap();
    store.create_index("c", &spec(doc! {"a": 1})).await.unwrap();
    store
        .create_index("c", &spec(doc! {"s": 1, "b": -1}))
        .await
        .unwrap();
    store
        .create_index("c", &spec(doc! {"n.x": -1}))
        .await
        .unwrap();
    let probes: Vec<Bson> = vec![
        Bson::Int32(0),
        Bson::Int64(3),
        Bson::Double(2.5),
        Bson::Double(-1.0),
        Bson::String("ab".into()),
        Bson::String("".into()),
        Bson::DateTime(DateTime::from_millis(3000)),
        Bson::Boolean(true),
    ];
    let mut filters = Vec::new();
    for p in &probes {
        for field in ["a", "b", "n.x"] {
            filters.push(doc! {field: p.clone()});
            for op in ["$gt", "$gte", "$lt", "$lte"] {
                filters.push(doc! {field: {op: p.clone()}});
                filters.push(doc! {"s": 2, field: {op: p.clone()}});
            }
            filters.push(doc! {field: {"$gt": p.clone(), "$lt": 4}});
            filters.push(doc! {field: {"$in": [p.clone(), 1, "b"]}});
            filters.push(doc! {"s": {"$in": [1, 3]}, field: {"$gte": p.clone()}});
        }
    }
    let sorts = [
        None,
        Some(doc! {"a": 1}),
        Some(doc! {"b": -1}),
        Some(doc! {"s": 1, "b": 1}),
        Some(doc! {"b": 1, "_id": -1}),
        Some(doc! {"n.x": 1}),
        Some(doc! {"_id": -1}),
    ];
    for filter in &filters {
        for sort in &sorts {
            for limit in [0u64, 3] {
                let options = find_opts(sort.clone(), 0, limit);
                let got = store.find("c", filter, &options).await.unwrap();
                let engine_options =
                    engine::FindOptions::parse(filter, None, sort.as_ref(), 0, limit).unwrap();
                let expected = engine::find(docs.iter(), &engine_options).unwrap();
                if sort.is_some() {
                    assert_eq!(
                        ids(&got),
                        ids(&expected),
                        "filter {filter} sort {sort:?} limit {limit}"
                    );
                    assert_eq!(got, expected, "filter {filter} sort {sort:?} limit {limit}");
                } else if limit == 0 {
                    let mut g = ids(&got);
                    let mut e = ids(&expected);
                    g.sort_by(engine::compare_bson);
                    e.sort_by(engine::compare_bson);
                    assert_eq!(g, e, "filter {filter}");
                } else {
                    assert_eq!(got.len(), expected.len(), "filter {filter}");
                }
            }
            assert_eq!(
                store.count("c", filter).await.unwrap(),
                engine::count(docs.iter(), &engine::Filter::parse(filter).unwrap()).unwrap(),
                "count {filter}"
            );
        }
    }
}

#[tokio::test]
async fn ttl_indexes_expire_documents_with_delete_events() {
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions {
        ttl_interval: Duration::from_millis(100),
        ..Default::default()
    };
    let store = EmbeddedStore::open_with(dir.path(), options).unwrap();
    let ttl = IndexSpec {
        keys: doc! {"at": 1},
        expire_after_seconds: Some(60),
        ..Default::default()
    };
    store.create_index("s", &ttl).await.unwrap();
    let now = DateTime::now().timestamp_millis();
    store
        .insert_many(
            "s",
            vec![
                doc! {"_id": 1, "at": DateTime::from_millis(now - 120_000)},
                doc! {"_id": 2, "at": DateTime::from_millis(now)},
                doc! {"_id": 3, "at": "not a date"},
                doc! {"_id": 4},
                doc! {"_id": 5, "at": [DateTime::from_millis(now), DateTime::from_millis(now - 3_600_000)]},
            ],
        )
        .await
        .unwrap();
    let mut changes = store.changes().subscribe("s");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while store.count("s", &doc! {}).await.unwrap() > 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the background TTL task never ran"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut deleted = Vec::new();
    for _ in 0..2 {
        let event = changes.recv().await.unwrap();
        assert_eq!(event.operation, ChangeOperation::Delete);
        assert!(event.full_document.is_some());
        deleted.push(event.document_key.clone());
    }
    deleted.sort_by(engine::compare_bson);
    assert_eq!(deleted, vec![Bson::Int32(1), Bson::Int32(5)]);
    let left = ids(&store
        .find("s", &doc! {}, &FindOptions::default())
        .await
        .unwrap());
    assert_eq!(left, vec![Bson::Int32(2), Bson::Int32(3), Bson::Int32(4)]);
    assert_eq!(store.expire_now().await.unwrap(), 0);
    store.close().await.unwrap();
}

#[tokio::test]
async fn timeseries_collections_need_their_time_field_and_expire() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let options = CollectionOptions {
        timeseries: Some(TimeseriesOptions {
            time_field: "ts".into(),
            meta_field: Some("meta".into()),
            granularity: None,
        }),
        expire_after_seconds: Some(3600),
    };
    store.create_collection("metrics", &options).await.unwrap();
    store.create_collection("metrics", &options).await.unwrap();
    assert!(matches!(
        store
            .create_collection("metrics", &CollectionOptions::default())
            .await,
        Err(StoreError::InvalidOptions(_))
    ));
    let bad = CollectionOptions {
        expire_after_seconds: Some(5),
        ..Default::default()
    };
    assert!(matches!(
        store.create_collection("plain", &bad).await,
        Err(StoreError::InvalidOptions(_))
    ));
    store
        .insert_many("plain", vec![doc! {"_id": 1}])
        .await
        .unwrap();
    let listed = store.list_collections().await.unwrap();
    assert_eq!(
        listed,
        vec![
            CollectionInfo {
                name: "metrics".into(),
                kind: "timeseries".into(),
                options: doc! {"timeseries": {"timeField": "ts", "metaField": "meta", "granularity": "seconds"}, "expireAfterSeconds": 3600i64},
            },
            CollectionInfo {
                name: "plain".into(),
                kind: "collection".into(),
                options: doc! {}
            },
        ]
    );
    assert_eq!(
        store.list_indexes("metrics").await.unwrap().len(),
        1,
        "the time index is internal"
    );
    let err = store
        .insert_many("metrics", vec![doc! {"_id": 1, "meta": "m", "v": 1}])
        .await
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::Query(
            "'ts' must be present and contain a valid BSON UTC datetime value".into()
        )
    );
    assert!(store
        .insert_many("metrics", vec![doc! {"_id": 1, "ts": "yesterday"}])
        .await
        .is_err());
    let now = DateTime::now().timestamp_millis();
    store
        .insert_many(
            "metrics",
            vec![
                doc! {"_id": 1, "ts": DateTime::from_millis(now - 7_200_000)},
                doc! {"_id": 2, "ts": DateTime::from_millis(now)},
            ],
        )
        .await
        .unwrap();
    assert!(store
        .update(
            "metrics",
            &doc! {"_id": 2},
            &doc! {"$unset": {"ts": 1}},
            UpdateOptions::default()
        )
        .await
        .is_err());
    let e = store
        .explain(
            "metrics",
            &doc! {"ts": {"$gt": DateTime::from_millis(now - 60_000)}},
            &FindOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!((e.plan.as_str(), e.returned), ("IXSCAN __time_ts", 1));
    assert_eq!(store.expire_now().await.unwrap(), 1);
    assert_eq!(
        ids(&store
            .find("metrics", &doc! {}, &FindOptions::default())
            .await
            .unwrap()),
        vec![Bson::Int32(2)]
    );
    // Options survive a reopen.
    store.close().await.unwrap();
    drop(store);
    let store = open(&dir);
    assert_eq!(
        store.list_collections().await.unwrap()[0].kind,
        "timeseries"
    );
    assert!(store
        .insert_many("metrics", vec![doc! {"_id": 3}])
        .await
        .is_err());
}

#[tokio::test]
async fn drop_collection_removes_data_indexes_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store
        .insert_many("c", vec![doc! {"_id": 1, "k": "a"}])
        .await
        .unwrap();
    store
        .create_index("c", &unique(doc! {"k": 1}))
        .await
        .unwrap();
    let generation = store.changes().generation("c");
    assert!(store.drop_collection("c").await.unwrap());
    assert!(store.changes().generation("c") > generation);
    assert!(!store.drop_collection("c").await.unwrap());
    assert!(store.list_collections().await.unwrap().is_empty());
    assert_eq!(store.count("c", &doc! {}).await.unwrap(), 0);
    assert!(store
        .find_by_id("c", &Bson::Int32(1))
        .await
        .unwrap()
        .is_none());
    // Recreated: no old index, no old data.
    store
        .insert_many(
            "c",
            vec![doc! {"_id": 1, "k": "a"}, doc! {"_id": 2, "k": "a"}],
        )
        .await
        .unwrap();
    assert_eq!(store.list_indexes("c").await.unwrap().len(), 1);
    store.create_index("c", &spec(doc! {"k": 1})).await.unwrap();
    assert_eq!(store.count("c", &doc! {"k": "a"}).await.unwrap(), 2);
    store
        .create_collection("e", &CollectionOptions::default())
        .await
        .unwrap();
    assert_eq!(store.list_collections().await.unwrap().len(), 2);
    assert!(store.drop_collection("e").await.unwrap());
}

#[tokio::test]
async fn writes_on_missing_collections_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    assert_eq!(store.delete("ghost", &doc! {}, false).await.unwrap(), 0);
    assert!(store
        .find_one_and_update(
            "ghost",
            &doc! {},
            &doc! {"$set": {"a": 1}},
            &Default::default()
        )
        .await
        .unwrap()
        .is_none());
    assert!(store.list_collections().await.unwrap().is_empty());
    assert!(store
        .distinct("ghost", "a", &doc! {})
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .aggregate("ghost", &[doc! {"$match": {}}])
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn delete_one_or_many() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.create_index("c", &spec(doc! {"g": 1})).await.unwrap();
    store
        .insert_many("c", (0..10).map(|n| doc! {"_id": n, "g": n % 2}).collect())
        .await
        .unwrap();
    let mut changes = store.changes().subscribe("c");
    assert_eq!(store.delete("c", &doc! {"g": 1}, true).await.unwrap(), 1);
    assert_eq!(
        changes.recv().await.unwrap().operation,
        ChangeOperation::Delete
    );
    assert_eq!(store.delete("c", &doc! {"g": 1}, false).await.unwrap(), 4);
    assert_eq!(store.count("c", &doc! {"g": 1}).await.unwrap(), 0);
    assert_eq!(store.count("c", &doc! {}).await.unwrap(), 5);
}

#[tokio::test]
async fn aggregations_stop_at_their_memory_limit() {
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions {
        limits: MemoryLimits {
            aggregate_mb: 1,
            ..Default::default()
        },
        ..Default::default()
    };
    let store = EmbeddedStore::open_with(dir.path(), options).unwrap();
    // 200 documents of ~10 KB: about 2 MB in all.
    let padding = "x".repeat(10_000);
    let big: Vec<Document> = (0..200)
        .map(|i| doc! {"_id": i, "group": i % 2, "padding": &padding})
        .collect();
    store.insert_many("big", big).await.unwrap();
    store
        .insert_many("small", vec![doc! {"_id": 1, "group": 0}])
        .await
        .unwrap();
    let count_all = [doc! {"$group": {"_id": null, "n": {"$sum": 1}}}];
    let err = store.aggregate("big", &count_all).await.unwrap_err();
    assert!(
        matches!(err, StoreError::TooLarge { limit_mb: 1 }),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "Query size exceeded 1 mb");
    // Under the limit (a `$match` keeps the input small), the same pipeline runs.
    let few = [
        doc! {"$match": {"_id": {"$lt": 50}}},
        doc! {"$group": {"_id": null, "n": {"$sum": 1}}},
    ];
    let result = store.aggregate("big", &few).await.unwrap();
    assert_eq!(result, vec![doc! {"_id": null, "n": 50}]);
    // A `$lookup`'s foreign collection counts against the same limit.
    let lookup = [doc! {"$lookup": {
        "from": "big", "localField": "group", "foreignField": "group", "as": "joined"
    }}];
    let err = store.aggregate("small", &lookup).await.unwrap_err();
    assert!(matches!(err, StoreError::TooLarge { .. }), "{err:?}");
    // Finds hold at most the same limit of matched documents; a page that fits is served.
    let all = store.find("big", &doc! {}, &FindOptions::default()).await;
    assert!(
        matches!(all, Err(StoreError::TooLarge { limit_mb: 1 })),
        "{all:?}"
    );
    let page = FindOptions {
        limit: 50,
        ..Default::default()
    };
    assert_eq!(store.find("big", &doc! {}, &page).await.unwrap().len(), 50);
}

#[tokio::test]
async fn dropping_a_collection_publishes_one_drop_event() {
    let (_dir, store) = seeded("c", vec![doc! {"_id": 1}]).await;
    let mut changes = store.changes().subscribe("c");
    let mut others = store.changes().subscribe("d");
    let generation = store.changes().generation("c");
    assert!(store.drop_collection("c").await.unwrap());
    let event = changes.recv().await.unwrap();
    assert_eq!(event.collection, "c");
    assert_eq!(event.operation, ChangeOperation::Drop);
    assert_eq!(event.operation.as_str(), "drop");
    assert_eq!(event.document_key, Bson::Null);
    assert_eq!(event.full_document, None);
    assert_eq!(event.updated_fields, None);
    assert_eq!(store.changes().generation("c"), generation + 1);
    // A collection that does not exist: no event, no generation move.
    assert!(!store.drop_collection("c").await.unwrap());
    assert!(!store.drop_collection("d").await.unwrap());
    assert!(changes.try_recv().is_err());
    assert!(others.try_recv().is_err());
    assert_eq!(store.changes().generation("c"), generation + 1);
    // An explicitly created, still empty collection exists too.
    store
        .create_collection("d", &CollectionOptions::default())
        .await
        .unwrap();
    assert!(store.drop_collection("d").await.unwrap());
    assert_eq!(
        others.recv().await.unwrap().operation,
        ChangeOperation::Drop
    );
}

#[tokio::test]
async fn update_events_name_the_top_level_fields_that_changed() {
    let (_dir, store) = seeded(
        "c",
        vec![doc! {"_id": 1, "a": 1, "b": {"c": 1, "e": 1}, "d": 1, "n": 0}],
    )
    .await;
    let mut changes = store.changes().subscribe("c");
    store
        .update(
            "c",
            &doc! {"_id": 1},
            &doc! {"$set": {"a": 1, "b.c": 2, "new": true}, "$unset": {"d": ""}},
            UpdateOptions::default(),
        )
        .await
        .unwrap();
    let event = changes.recv().await.unwrap();
    assert_eq!(event.operation, ChangeOperation::Update);
    assert_eq!(
        event.updated_fields,
        Some(vec!["b".to_string(), "new".to_string(), "d".to_string()]),
        "a was set to the value it had"
    );
    let options = FindAndModifyOptions::default();
    store
        .find_one_and_update("c", &doc! {"_id": 1}, &doc! {"$inc": {"n": 1}}, &options)
        .await
        .unwrap();
    let event = changes.recv().await.unwrap();
    assert_eq!(event.updated_fields, Some(vec!["n".to_string()]));
    // Other operations carry none.
    store
        .replace_one("c", &doc! {"_id": 1}, doc! {"z": 1}, false)
        .await
        .unwrap();
    let upsert = UpdateOptions {
        upsert: true,
        multi: false,
    };
    store
        .update("c", &doc! {"_id": 2}, &doc! {"$set": {"a": 1}}, upsert)
        .await
        .unwrap();
    store.delete("c", &doc! {}, false).await.unwrap();
    let mut operations = Vec::new();
    while let Ok(event) = changes.try_recv() {
        assert_eq!(event.updated_fields, None, "{:?}", event.operation);
        operations.push(event.operation);
    }
    assert_eq!(
        operations,
        vec![
            ChangeOperation::Replace,
            ChangeOperation::Insert,
            ChangeOperation::Delete,
            ChangeOperation::Delete
        ]
    );
}

#[tokio::test]
async fn embedded_subscriptions_are_counted() {
    let (_dir, store) = seeded("c", vec![]).await;
    let first = store.changes().subscribe("c");
    let second = store.changes().subscribe("c");
    assert_eq!(store.changes().subscribers("c"), 2);
    drop(first);
    drop(second);
    assert_eq!(store.changes().subscribers("c"), 0);
    // Without an unwatch hook the channel stays: a new subscriber gets events.
    let mut again = store.changes().subscribe("c");
    store.insert_many("c", vec![doc! {"_id": 1}]).await.unwrap();
    assert_eq!(again.recv().await.unwrap().document_key, Bson::Int32(1));
}

#[test]
fn a_second_open_of_the_same_data_dir_fails_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let _first = open(&dir);
    let Err(err) = EmbeddedStore::open(dir.path()) else {
        panic!("two stores on one data dir");
    };
    let message = err.to_string();
    assert!(
        message.contains("in use by another opencore process"),
        "{message}"
    );
}
