//! Unit tests of the work item logic: pop plan and cost on the embedded store, state
//! decisions, payloads, timestamps, names.

use bson::{doc, Bson, DateTime};

use super::pop::ready_filter;
use super::push::parse_payload;
use super::update::decide;
use super::*;
use crate::acl::{acl_filter, AclLocation, Principals, Right};
use crate::store::embedded::EmbeddedStore;
use crate::store::{FindAndModifyOptions, FindOptions};

fn item(i: i32, wiqid: &str, state: &str, priority: i32, created: DateTime) -> bson::Document {
    doc! {
        "_id": crate::documents::metadata::new_id(),
        "_type": ITEM_TYPE,
        "wiqid": wiqid,
        "state": state,
        "priority": priority,
        "nextrun": created,
        "_created": created,
        "i": i,
        "_acl": [{"_id": "role-1", "name": "r", "rights": 65535}],
    }
}

/// A pop walks the pop index in sort order and reads one document, however many
/// items the queue (and other queues) hold, with a non-admin's ACL filter too.
#[tokio::test]
async fn pop_uses_the_index_and_reads_one_document() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    ensure_indexes(&store).await.unwrap();
    let start = DateTime::now().timestamp_millis() - 60_000;
    let mut documents = Vec::new();
    for i in 0..3000 {
        let created = DateTime::from_millis(start + i64::from(i));
        let (wiqid, state) = match i % 3 {
            0 => ("q1", state::NEW),
            1 => ("q2", state::NEW),
            _ => ("q1", state::SUCCESSFUL),
        };
        documents.push(item(i, wiqid, state, 2 + i % 2, created));
    }
    store
        .insert_many(ITEMS_COLLECTION, documents)
        .await
        .unwrap();
    let principals = Principals {
        admin: false,
        ids: vec!["user-1".into(), "role-1".into()],
    };
    let acl = acl_filter(&principals, Right::Invoke, AclLocation::Root);
    let filter = ready_filter("q1", DateTime::now(), acl);
    let options = FindOptions {
        sort: Some(pop_sort()),
        limit: 1,
        ..Default::default()
    };
    let explain = store
        .explain(ITEMS_COLLECTION, &filter, &options)
        .await
        .unwrap();
    assert_eq!(explain.plan, format!("IXSCAN {POP_INDEX}"));
    assert!(explain.sorted_by_index);
    assert_eq!(explain.returned, 1);
    assert!(explain.docs_examined <= 1, "{explain:?}");

    let before = store.stats();
    let claim = FindAndModifyOptions {
        sort: Some(pop_sort()),
        return_new: true,
        ..Default::default()
    };
    let popped = store
        .find_one_and_update(
            ITEMS_COLLECTION,
            &filter,
            &doc! {"$set": {"state": state::PROCESSING}, "$unset": {"nextrun": ""}},
            &claim,
        )
        .await
        .unwrap()
        .expect("an item");
    let after = store.stats();
    // Priority 2 (even i) before 3, oldest first: item 0.
    assert_eq!(popped.get_i32("i").unwrap(), 0);
    assert_eq!(after.docs_examined - before.docs_examined, 1);
    // The next pop takes the next oldest of priority 2 in q1 (i = 6).
    let next = store
        .find_one_and_update(
            ITEMS_COLLECTION,
            &filter,
            &doc! {"$set": {"state": state::PROCESSING}},
            &claim,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next.get_i32("i").unwrap(), 6);
    // Someone without invoke rights gets nothing.
    let stranger = Principals {
        admin: false,
        ids: vec!["user-2".into()],
    };
    let none = store
        .find_one_and_update(
            ITEMS_COLLECTION,
            &ready_filter(
                "q1",
                DateTime::now(),
                acl_filter(&stranger, Right::Invoke, AclLocation::Root),
            ),
            &doc! {"$set": {"state": state::PROCESSING}},
            &claim,
        )
        .await
        .unwrap();
    assert!(none.is_none());
}

#[test]
fn state_decisions() {
    let ok = |r: &str, cur: &str, et: &str, ignore: bool, retries: i32, max: i32| {
        decide(r, cur, et, ignore, retries, max).unwrap()
    };
    assert_eq!(
        ok("Successful", "processing", "", false, 0, 3),
        ("successful".into(), false)
    );
    assert_eq!(
        ok("retry", "processing", "", false, 0, 3),
        ("new".into(), true)
    );
    assert_eq!(
        ok("retry", "processing", "", false, 1, 3),
        ("new".into(), true)
    );
    assert_eq!(
        ok("retry", "processing", "", false, 2, 3),
        ("failed".into(), false)
    );
    assert_eq!(
        ok("retry", "processing", "", true, 20, 3),
        ("new".into(), true)
    );
    assert_eq!(
        ok("retry", "processing", "business", false, 0, 3),
        ("failed".into(), false)
    );
    assert_eq!(
        ok("retry", "processing", "business", true, 0, 3),
        ("new".into(), true)
    );
    assert_eq!(ok("new", "new", "", false, 0, 3), ("new".into(), false));
    assert!(matches!(
        decide("new", "processing", "", false, 0, 3),
        Err(crate::error::OpenCoreError::WorkitemIllegalState(_))
    ));
    let err = decide("done", "processing", "", false, 0, 3).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Illegal state done on Workitem, must be failed, successful, processing or retry"
    );
}

#[test]
fn payloads_are_objects() {
    assert_eq!(parse_payload("").unwrap(), doc! {});
    assert_eq!(parse_payload("null").unwrap(), doc! {});
    assert_eq!(parse_payload(r#"{"a": 1}"#).unwrap(), doc! {"a": 1});
    assert_eq!(
        parse_payload("7").unwrap().get("value"),
        Some(&Bson::Int32(7))
    );
    assert!(parse_payload("{not json").is_err());
}

#[test]
fn timestamps_round_trip_and_refuse_garbage() {
    use super::convert::{date_to_timestamp, timestamp_to_date};
    let date = DateTime::from_millis(1_700_000_000_123);
    let ts = date_to_timestamp(date);
    assert_eq!((ts.seconds, ts.nanos), (1_700_000_000, 123_000_000));
    assert_eq!(timestamp_to_date("nextrun", &ts).unwrap(), date);
    // nanos 0 works (the reference fails on it).
    let whole = prost_types::Timestamp {
        seconds: 5,
        nanos: 0,
    };
    assert_eq!(
        timestamp_to_date("nextrun", &whole)
            .unwrap()
            .timestamp_millis(),
        5000
    );
    let bad = prost_types::Timestamp {
        seconds: i64::MAX,
        nanos: 0,
    };
    assert!(timestamp_to_date("nextrun", &bad).is_err());
    let bad = prost_types::Timestamp {
        seconds: 1,
        nanos: -1,
    };
    assert!(timestamp_to_date("nextrun", &bad).is_err());
}

#[test]
fn names_and_paths() {
    use super::files::split_path;
    assert_eq!(split_path("a/b/c.txt"), ("a/b", "c.txt"));
    assert_eq!(split_path("c:\\x\\y.pdf"), ("c:\\x", "y.pdf"));
    assert_eq!(split_path("plain"), ("", "plain"));
    assert!(check_text("name", "ok name", 10).is_ok());
    assert!(check_text("name", "12345678901", 10).is_err());
    assert!(check_text("name", "bad\u{0}name", 100).is_err());
}
