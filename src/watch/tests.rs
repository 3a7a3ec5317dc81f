use std::sync::Arc;

use bson::{doc, Bson};
use serde_json::json;

use super::feeds::PreparedChange;
use super::*;
use crate::store::{ChangeEvent, ChangeOperation};

fn matches(paths: &[&str], document: serde_json::Value) -> bool {
    let paths: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
    let filter = PathFilter::compile(&paths).expect("valid paths");
    filter.matches(&json!({ "a": document }))
}

#[test]
fn the_clients_path_form_filters_on_the_document() {
    let path = ["$.[?(@._type == 'test')]"];
    assert!(matches(&path, json!({"_type": "test"})));
    assert!(!matches(&path, json!({"_type": "other"})));
    assert!(!matches(&path, json!({})));
    // RFC 9535 spelling works as well.
    assert!(matches(
        &["$[?@._type == 'test']"],
        json!({"_type": "test"})
    ));
    // Strings keep `.[` as it is.
    assert!(matches(&["$[?@.name == 'a.[b']"], json!({"name": "a.[b"})));
    // A descendant step stays one.
    assert!(matches(
        &["$..[?@.n == 3]"],
        json!({"deep": {"x": {"n": 3}}})
    ));
}

#[test]
fn empty_paths_pass_everything() {
    assert!(PathFilter::compile(&[]).unwrap().is_empty());
    assert!(PathFilter::compile(&["".into()]).unwrap().is_empty());
    assert!(PathFilter::compile(&["  ".into(), "".into()])
        .unwrap()
        .is_empty());
    assert!(matches(&[""], json!({"x": 1})));
}

#[test]
fn any_path_selecting_something_passes() {
    let paths = ["$.a.missing", "$.a.n"];
    assert!(matches(&paths, json!({"n": 0})));
    assert!(!matches(&paths, json!({"m": 0})));
}

#[test]
fn invalid_and_oversized_paths_are_errors() {
    for bad in ["$[?(@.a ==", "not a path", "$.a[", "$[?@.a == 'x']]"] {
        let err = PathFilter::compile(&[bad.to_string()]).unwrap_err();
        assert_eq!(err.code(), 2083, "{bad}: {err}");
    }
    let long = format!("$.a{}", ".b".repeat(4000));
    assert_eq!(PathFilter::compile(&[long]).unwrap_err().code(), 2083);
    let many: Vec<String> = (0..33).map(|i| format!("$.a.f{i}")).collect();
    assert_eq!(PathFilter::compile(&many).unwrap_err().code(), 2007);
}

#[test]
fn paths_that_would_cost_too_much_are_refused_before_parsing() {
    // Deep nesting would recurse in the parser (a stack overflow aborts the server).
    let deep = format!("$[?{}@.a{}]", "(".repeat(2000), ")".repeat(2000));
    let err = PathFilter::compile(&[deep]).unwrap_err();
    assert!(err.to_string().contains("nested deeper than 32"), "{err}");
    let ok = format!("$[?{}@.a == 1{}]", "(".repeat(30), ")".repeat(30));
    PathFilter::compile(&[ok]).expect("30 levels are fine");
    // Several descendant segments multiply the work per event.
    let err = PathFilter::compile(&["$..*..*..*".to_string()]).unwrap_err();
    assert!(err.to_string().contains("descendant"), "{err}");
    let err = PathFilter::compile(&["$..[?@..x]".to_string()]).unwrap_err();
    assert!(err.to_string().contains("descendant"), "{err}");
    // Brackets and dots inside strings are text.
    PathFilter::compile(&["$[?@.a == '((((..[[..']".to_string()]).expect("quoted text");
}

#[test]
fn heartbeat_only_updates_are_recognised() {
    let fields = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(is_heartbeat_only(&fields(&[
        "lastseen",
        "_modified",
        "_version"
    ])));
    assert!(is_heartbeat_only(&fields(&["_heartbeat"])));
    assert!(!is_heartbeat_only(&fields(&["lastseen", "name"])));
    assert!(!is_heartbeat_only(&fields(&["_modified"])));
    assert!(!is_heartbeat_only(&fields(&[])));
}

fn event(
    collection: &str,
    operation: ChangeOperation,
    document: Option<bson::Document>,
) -> ChangeEvent {
    ChangeEvent {
        collection: collection.into(),
        operation,
        document_key: Bson::String("k1".into()),
        full_document: document,
        updated_fields: None,
    }
}

#[test]
fn prepared_changes_hide_password_hashes_and_render_json_once() {
    let users = event(
        "users",
        ChangeOperation::Insert,
        Some(doc! {"_id": "k1", "username": "u", "passwordhash": "$2b$..."}),
    );
    let prepared = PreparedChange::new("users", &users);
    assert!(!prepared.json.contains("passwordhash"));
    assert_eq!(prepared.wrapped()["a"]["username"], json!("u"));
    let deleted = PreparedChange::new("things", &event("things", ChangeOperation::Delete, None));
    assert_eq!(deleted.json, r#"{"_id":"k1"}"#);
    let dropped = PreparedChange::new("things", &event("things", ChangeOperation::Drop, None));
    assert_eq!(dropped.json, "{}");
}

#[test]
fn heartbeat_updates_of_users_are_marked() {
    let mut heartbeat = event("users", ChangeOperation::Update, Some(doc! {"_id": "k1"}));
    heartbeat.updated_fields = Some(vec!["lastseen".into(), "_modified".into()]);
    assert!(PreparedChange::new("users", &heartbeat).heartbeat_only);
    let mut elsewhere = heartbeat.clone();
    elsewhere.collection = "things".into();
    assert!(!PreparedChange::new("things", &elsewhere).heartbeat_only);
    let mut real = heartbeat;
    real.updated_fields = Some(vec!["lastseen".into(), "disabled".into()]);
    assert!(!PreparedChange::new("users", &real).heartbeat_only);
}

#[tokio::test]
async fn a_relay_is_shared_and_ends_with_its_last_watch() {
    let dir = tempfile::tempdir().unwrap();
    let store: crate::store::SharedStore =
        Arc::new(crate::store::embedded::EmbeddedStore::open(dir.path()).unwrap());
    let feeds = Feeds::default();
    let first = feeds.join(&store, "things", 1).unwrap();
    let second = feeds.join(&store, "things", 1).unwrap();
    assert_eq!(
        feeds.join(&store, "others", 1).err().map(|e| e.code()),
        Some(2084),
        "a second collection is over the limit of 1"
    );
    assert!(Arc::ptr_eq(&first, &second));
    let mut receiver = first.subscribe();
    store
        .insert_many("things", vec![doc! {"_id": "a", "n": 1}])
        .await
        .unwrap();
    let prepared = tokio::time::timeout(std::time::Duration::from_secs(5), receiver.recv())
        .await
        .unwrap()
        .unwrap();
    match prepared.as_ref() {
        Prepared::Change(change) => assert_eq!(change.operation, ChangeOperation::Insert),
        Prepared::Lost(_) => panic!("nothing was lost"),
    }
    assert_eq!(feeds.snapshot()[0].events, 1);
    drop(receiver);
    drop((first, second));
    assert!(feeds.snapshot().is_empty());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while store.changes().subscribers("things") > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the store subscription ended"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Stands in for a connection: records pushes and closes.
#[derive(Default)]
struct Probe {
    pushes: Vec<crate::proto::Envelope>,
    closed: bool,
}

impl actix::Actor for Probe {
    type Context = actix::Context<Self>;
}

impl actix::Handler<crate::connections::Push> for Probe {
    type Result = ();
    fn handle(&mut self, push: crate::connections::Push, _: &mut actix::Context<Self>) {
        self.pushes.push(push.0);
    }
}

impl actix::Handler<crate::connections::PushTracked> for Probe {
    type Result = ();
    fn handle(&mut self, push: crate::connections::PushTracked, _: &mut actix::Context<Self>) {
        self.pushes.push(push.envelope);
        let _ = push.written.send(true);
    }
}

impl actix::Handler<crate::connections::Control> for Probe {
    type Result = ();
    fn handle(&mut self, _: crate::connections::Control, _: &mut actix::Context<Self>) {
        self.closed = true;
    }
}

impl actix::Handler<crate::connections::Attach> for Probe {
    type Result = Result<(), crate::error::OpenCoreError>;
    fn handle(
        &mut self,
        _: crate::connections::Attach,
        _: &mut actix::Context<Self>,
    ) -> Self::Result {
        Ok(())
    }
}

impl actix::Handler<crate::connections::Detach> for Probe {
    type Result = bool;
    fn handle(&mut self, _: crate::connections::Detach, _: &mut actix::Context<Self>) -> bool {
        true
    }
}

#[derive(actix::Message)]
#[rtype(result = "(usize, bool)")]
struct Seen;

impl actix::Handler<Seen> for Probe {
    type Result = actix::MessageResult<Seen>;
    fn handle(&mut self, _: Seen, _: &mut actix::Context<Self>) -> Self::Result {
        actix::MessageResult((self.pushes.len(), self.closed))
    }
}

async fn watch_setup() -> (
    tempfile::TempDir,
    crate::store::SharedStore,
    Arc<crate::documents::state::DocumentState>,
    actix::Addr<Probe>,
    crate::connections::ConnectionHandle,
) {
    use actix::Actor;
    let dir = tempfile::tempdir().unwrap();
    let store: crate::store::SharedStore =
        Arc::new(crate::store::embedded::EmbeddedStore::open(dir.path()).unwrap());
    let directory = crate::auth::Directory::new(
        store.clone(),
        b"secret",
        crate::auth::DirectorySettings {
            short_token_ttl: std::time::Duration::from_secs(60),
            long_token_ttl: std::time::Duration::from_secs(60),
            enable_guest: false,
            bcrypt_cost: 4,
        },
    );
    let documents = Arc::new(crate::documents::state::DocumentState::new(
        store.clone(),
        directory,
    ));
    let probe = Probe::default().start();
    let handle = crate::connections::ConnectionHandle::new(
        1,
        crate::connections::TransportKind::Tcp,
        probe.clone().recipient(),
        probe.clone().recipient(),
        probe.clone().recipient(),
        probe.clone().recipient(),
        probe.clone().recipient(),
    );
    (dir, store, documents, probe, handle)
}

/// A watch of `things` by root, every document, not started.
fn admin_watch(
    feeds: &Feeds,
    store: &crate::store::SharedStore,
    documents: Arc<crate::documents::state::DocumentState>,
    connection: crate::connections::ConnectionHandle,
) -> WatchActor {
    let settings = WatchSettings {
        id: "w".into(),
        user: admin_user(),
        paths: PathFilter::default(),
        location: crate::acl::AclLocation::Root,
        documents,
        connection_id: 1,
        push: connection.pusher(),
        control: connection.control(),
        counters: feeds.counters.clone(),
    };
    WatchActor::new(settings, feeds.join(store, "things", 10).unwrap())
}

fn admin_user() -> Arc<crate::auth::ResolvedUser> {
    Arc::new(crate::auth::ResolvedUser {
        id: crate::auth::builtin::ROOT_USER_ID.into(),
        name: "root".into(),
        username: "root".into(),
        email: String::new(),
        disabled: false,
        roles: Vec::new(),
        created: None,
        token_generation: 0,
    })
}

#[actix_rt::test]
async fn a_watch_that_falls_behind_closes_its_connection_instead_of_skipping() {
    use actix::Actor;
    let (_dir, store, documents, probe, handle) = watch_setup().await;
    let feeds = Feeds::default();
    let watch = admin_watch(&feeds, &store, documents, handle).start();
    // More events than the relay keeps arrive before the watch reads any.
    let documents: Vec<bson::Document> = (0..feeds::RELAY_CAPACITY + 50)
        .map(|i| doc! {"_id": i as i64})
        .collect();
    store.insert_many("things", documents).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while feeds.snapshot()[0].events < (feeds::RELAY_CAPACITY + 50) as u64 {
        assert!(
            std::time::Instant::now() < deadline,
            "relay did not pass the events on"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    watch.do_send(Begin);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (pushes, closed) = probe.send(Seen).await.unwrap();
        if closed {
            assert_eq!(pushes, 0, "nothing delivered past a hole");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "lagging watch did not close its connection"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(
        feeds
            .counters
            .lag_disconnects
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[actix_rt::test]
async fn a_watch_delivers_after_begin_only() {
    use actix::Actor;
    let (_dir, store, documents, probe, handle) = watch_setup().await;
    let feeds = Feeds::default();
    let watch = admin_watch(&feeds, &store, documents, handle).start();
    store
        .insert_many("things", vec![doc! {"_id": 1}])
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(probe.send(Seen).await.unwrap(), (0, false));
    watch.do_send(Begin);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while probe.send(Seen).await.unwrap().0 < 1 {
        assert!(std::time::Instant::now() < deadline, "event after begin");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
