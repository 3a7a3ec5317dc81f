use std::sync::Mutex;

use super::*;

fn event(collection: &str, id: i32) -> ChangeEvent {
    ChangeEvent {
        collection: collection.into(),
        operation: ChangeOperation::Insert,
        document_key: Bson::Int32(id),
        full_document: None,
        updated_fields: None,
    }
}

/// ("watch"|"unwatch", collection) as the hooks were called, in order.
type Calls = Arc<Mutex<Vec<(&'static str, String)>>>;

/// A feed whose hooks record their calls.
fn recorded_feed() -> (ChangeFeed, Calls) {
    let feed = ChangeFeed::default();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let sink = calls.clone();
    assert!(feed.set_watch_hook(Box::new(move |name: &str| sink
        .lock()
        .unwrap()
        .push(("watch", name.to_string())))));
    let sink = calls.clone();
    assert!(feed.set_unwatch_hook(Box::new(move |name: &str| sink
        .lock()
        .unwrap()
        .push(("unwatch", name.to_string())))));
    (feed, calls)
}

fn taken(calls: &Mutex<Vec<(&'static str, String)>>) -> Vec<(&'static str, String)> {
    std::mem::take(&mut *calls.lock().unwrap())
}

#[test]
fn drop_operation_is_named_drop() {
    assert_eq!(ChangeOperation::Drop.as_str(), "drop");
}

#[test]
fn hooks_are_set_once_and_early_watches_are_listed() {
    let feed = ChangeFeed::default();
    // In use before the hooks exist: reported by watched_collections.
    let _early = feed.subscribe("early");
    let seen = Arc::new(Mutex::new(0));
    let counter = seen.clone();
    assert!(feed.set_watch_hook(Box::new(move |_: &str| *counter.lock().unwrap() += 1)));
    assert!(
        !feed.set_watch_hook(Box::new(|_: &str| {})),
        "only one hook"
    );
    assert!(feed.set_unwatch_hook(Box::new(|_: &str| {})));
    assert!(!feed.set_unwatch_hook(Box::new(|_: &str| {})), "only one");
    assert_eq!(feed.watched_collections(), vec!["early".to_string()]);
    // Bumping or publishing alone does not bring a collection into use.
    feed.bump("quiet");
    feed.publish(event("quiet", 1));
    assert_eq!(*seen.lock().unwrap(), 0);
    assert!(!feed.in_use("quiet"));
    assert_eq!(feed.generation("quiet"), 2);
    assert_eq!(*seen.lock().unwrap(), 1, "the generation read pinned it");
}

#[test]
fn subscriptions_are_counted_and_the_last_one_out_unwatches() {
    let (feed, calls) = recorded_feed();
    let first = feed.subscribe("a");
    let second = feed.subscribe("a");
    assert_eq!(first.collection(), "a");
    assert_eq!(feed.subscribers("a"), 2);
    assert_eq!(feed.subscribers("nobody"), 0);
    assert_eq!(taken(&calls), vec![("watch", "a".to_string())], "once");
    assert_eq!(feed.watched_collections(), vec!["a".to_string()]);
    drop(first);
    assert_eq!(feed.subscribers("a"), 1);
    assert!(taken(&calls).is_empty(), "one subscriber is left");
    drop(second);
    assert_eq!(feed.subscribers("a"), 0);
    assert!(!feed.in_use("a"));
    assert!(feed.watched_collections().is_empty());
    assert_eq!(taken(&calls), vec![("unwatch", "a".to_string())]);
    // Coming back watches again.
    let _again = feed.subscribe("a");
    assert_eq!(taken(&calls), vec![("watch", "a".to_string())]);
}

#[test]
fn pinned_collections_are_never_unwatched() {
    let (feed, calls) = recorded_feed();
    // Pinned by a generation read, then subscribed: one watch, no unwatch.
    feed.generation("roles");
    let subscription = feed.subscribe("roles");
    drop(subscription);
    assert_eq!(taken(&calls), vec![("watch", "roles".to_string())]);
    assert!(feed.in_use("roles"));
    // Subscribed, then pinned (the store's users): the subscriber's leave keeps it.
    let subscription = feed.subscribe("users");
    feed.pin("users");
    feed.pin("users");
    drop(subscription);
    assert_eq!(taken(&calls), vec![("watch", "users".to_string())]);
    let mut watched = feed.watched_collections();
    watched.sort();
    assert_eq!(watched, vec!["roles", "users"]);
}

#[tokio::test]
async fn subscriptions_receive_lag_and_close_like_broadcast() {
    let feed = ChangeFeed::default();
    let mut subscription = feed.subscribe("c");
    feed.publish(event("other", 0));
    feed.publish(event("c", 1));
    assert_eq!(
        subscription.recv().await.unwrap().document_key,
        Bson::Int32(1)
    );
    assert!(matches!(subscription.try_recv(), Err(TryRecvError::Empty)));
    for id in 0..CHANNEL_CAPACITY as i32 + 3 {
        feed.publish(event("c", id));
    }
    assert!(matches!(
        subscription.recv().await,
        Err(RecvError::Lagged(3))
    ));
    assert_eq!(
        subscription.recv().await.unwrap().document_key,
        Bson::Int32(3)
    );
    drop(feed);
    while subscription.try_recv().is_ok() {}
    assert!(matches!(subscription.recv().await, Err(RecvError::Closed)));
}

#[test]
fn racing_subscribers_and_leavers_end_with_the_right_count() {
    let (feed, calls) = recorded_feed();
    let feed = Arc::new(feed);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let feed = feed.clone();
            std::thread::spawn(move || {
                for _ in 0..500 {
                    let subscription = feed.subscribe("busy");
                    drop(subscription);
                }
            })
        })
        .collect();
    let kept = feed.subscribe("busy");
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(feed.subscribers("busy"), 1);
    // Every unwatch follows a watch; the last call leaves it watched (`kept`).
    let calls = taken(&calls);
    let watches = calls.iter().filter(|(kind, _)| *kind == "watch").count();
    let unwatches = calls.len() - watches;
    assert!(
        watches >= 1 && watches == unwatches + 1,
        "{watches} {unwatches}"
    );
    drop(kept);
}

#[test]
fn channels_end_with_their_last_subscriber() {
    let feed = ChangeFeed::default();
    for index in 0..100 {
        let first = feed.subscribe(&format!("c{index}"));
        let second = feed.subscribe(&format!("c{index}"));
        drop(first);
        assert_eq!(feed.channels.len(), 1, "kept while a subscriber is left");
        drop(second);
    }
    assert_eq!(
        feed.channels.len(),
        0,
        "no channel left for names nobody follows"
    );
}
