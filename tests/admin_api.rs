//! `/admin/api/*`: who may call it, the dashboard's cookie sign-in and its CSRF rule,
//! what the views list (connections, their watches and queue consumers, the actor
//! tree) and that nothing stays registered after a connection closed.

mod admin_support;
mod common;
mod data_support;

use admin_support::*;
use common::*;
use data_support::*;
use opencore::proto::*;
use serde_json::{json, Value};

const ROUTES: &[&str] = &[
    "/admin/api/connections",
    "/admin/api/connections/1",
    "/admin/api/actors",
    "/admin/api/queues",
    "/admin/api/watches",
    "/admin/api/health",
    "/admin/api/config",
];

fn signin_body(username: &str, password: &str) -> String {
    json!({"username": username, "password": password}).to_string()
}

async fn admin_cookie(server: &TestServer) -> String {
    let signed = http(
        server.http(),
        "POST",
        "/admin/api/signin",
        &[],
        Some(&signin_body(ADMIN, ADMIN_PASSWORD)),
    )
    .await;
    assert_eq!(signed.status, 200, "{}", signed.body);
    signed.cookie().expect("a session cookie")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_refuse_anonymous_and_non_admin_callers() {
    let server = TestServer::start();
    let addr = server.http();
    let mut admin = RawClient::connect(server.tcp()).await;
    admin.signin(ADMIN, ADMIN_PASSWORD).await;
    create_user(&mut admin, "alice", "alice-password").await;
    let mut alice = RawClient::connect(server.tcp()).await;
    let alice_jwt = alice.signin("alice", "alice-password").await.jwt;

    for route in ROUTES {
        for (method, headers, status) in [
            ("GET", vec![], 401),
            ("GET", bearer("garbage"), 401),
            ("GET", cookie("opencore_admin=garbage"), 401),
            ("GET", bearer(&alice_jwt), 403),
            ("DELETE", vec![], 401),
            ("DELETE", bearer(&alice_jwt), 403),
        ] {
            if method == "DELETE" && !route.starts_with("/admin/api/connections/") {
                continue;
            }
            let answer = http(addr, method, route, &headers, None).await;
            assert_eq!(answer.status, status, "{method} {route} {headers:?}");
            assert!(answer.json()["message"].is_string(), "{}", answer.body);
        }
    }

    // Cookie sign-in: admins only; one answer for a bad password and an unknown user.
    let refused = http(
        addr,
        "POST",
        "/admin/api/signin",
        &[],
        Some(&signin_body("alice", "alice-password")),
    )
    .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.set_cookie().is_none());
    let bad = http(
        addr,
        "POST",
        "/admin/api/signin",
        &[],
        Some(&signin_body(ADMIN, "wrong")),
    )
    .await;
    assert_eq!(bad.status, 401);
    let unknown = http(
        addr,
        "POST",
        "/admin/api/signin",
        &[],
        Some(&signin_body("nobody", "wrong")),
    )
    .await;
    assert_eq!(unknown.status, 401);
    assert_eq!(bad.json()["message"], unknown.json()["message"]);
    assert!(bad.set_cookie().is_none());

    let signed = http(
        addr,
        "POST",
        "/admin/api/signin",
        &[],
        Some(&signin_body(ADMIN, ADMIN_PASSWORD)),
    )
    .await;
    assert_eq!(signed.status, 200, "{}", signed.body);
    assert_eq!(signed.json()["user"]["username"], ADMIN);
    let set_cookie = signed.set_cookie().expect("cookie set");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/admin"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    let session = signed.cookie().expect("cookie");
    for route in ROUTES.iter().filter(|r| !r.ends_with("/1")) {
        let answer = get(addr, route, &cookie(&session)).await;
        assert_eq!(answer.status, 200, "{route}: {}", answer.body);
    }
    // /admin/stats takes the cookie too, and still the Bearer token.
    assert_eq!(
        get(addr, "/admin/stats", &cookie(&session)).await.status,
        200
    );

    let out = http(addr, "POST", "/admin/api/signout", &cookie(&session), None).await;
    assert_eq!(out.status, 200);
    assert!(out.set_cookie().unwrap_or_default().contains("Max-Age=0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_connection_needs_the_csrf_header_with_a_cookie() {
    let server = TestServer::start();
    let addr = server.http();
    let session = admin_cookie(&server).await;
    let mut admin = RawClient::connect(server.tcp()).await;
    let jwt = admin.signin(ADMIN, ADMIN_PASSWORD).await.jwt;
    let mut other = RawClient::connect(server.tcp()).await;
    other.signin(ADMIN, ADMIN_PASSWORD).await;

    let list = get(addr, "/admin/api/connections", &bearer(&jwt))
        .await
        .json();
    assert_eq!(list["total"], 2, "{list}");
    let ids: Vec<u64> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_u64().unwrap())
        .collect();
    let victim = *ids.iter().max().unwrap();

    let path = format!("/admin/api/connections/{victim}");
    let one = get(addr, &path, &cookie(&session)).await;
    assert_eq!(one.status, 200);
    assert_eq!(one.json()["user"]["username"], ADMIN);
    assert_eq!(one.json()["transport"], "tcp");

    let refused = http(addr, "DELETE", &path, &cookie(&session), None).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.json()["message"]
        .as_str()
        .unwrap()
        .contains("X-Requested-With"));
    assert_eq!(
        get(addr, &path, &bearer(&jwt)).await.status,
        200,
        "still open"
    );

    let mut headers = cookie(&session);
    headers.push("X-Requested-With: test".into());
    let closed = http(addr, "DELETE", &path, &headers, None).await;
    assert_eq!(closed.status, 200, "{}", closed.body);
    assert!(other.closed().await, "the server closed it");
    eventually("connection gone", || async {
        get(addr, &path, &bearer(&jwt)).await.status == 404
    })
    .await;

    // Unknown ids: 404 with a message; a Bearer caller needs no CSRF header.
    let unknown = http(
        addr,
        "DELETE",
        "/admin/api/connections/999999",
        &bearer(&jwt),
        None,
    )
    .await;
    assert_eq!(unknown.status, 404);
    assert!(unknown.json()["message"].is_string());
    assert_eq!(
        http(
            addr,
            "DELETE",
            "/admin/api/connections/x",
            &bearer(&jwt),
            None
        )
        .await
        .status,
        404
    );
}

fn actors_of_kind(tree: &Value, kind: &str) -> Vec<Value> {
    tree["actors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == kind)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_and_queue_consumers_are_listed_and_gone_after_close() {
    let server = TestServer::start();
    let addr = server.http();
    let mut observer = RawClient::connect(server.tcp()).await;
    let jwt = observer.signin(ADMIN, ADMIN_PASSWORD).await.jwt;
    let auth = bearer(&jwt);
    let baseline = get(addr, "/admin/api/actors", &auth).await.json();

    let mut client = RawClient::connect(server.tcp()).await;
    client.signin(ADMIN, ADMIN_PASSWORD).await;
    let watch: WatchResponse = call(
        &mut client,
        "watch",
        &WatchRequest {
            collectionname: "entities".into(),
            paths: vec![],
        },
    )
    .await
    .expect("watch");
    let queue: RegisterQueueResponse = call(
        &mut client,
        "registerqueue",
        &RegisterQueueRequest::default(),
    )
    .await
    .expect("registerqueue");

    let list = get(addr, "/admin/api/connections", &auth).await.json();
    let mine = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["watches"].as_array().is_some_and(|w| !w.is_empty()))
        .cloned()
        .expect("the watching connection");
    assert_eq!(mine["watches"], json!([watch.id]));
    assert_eq!(mine["queues"], json!([queue.queuename]));
    assert!(mine["requests"].as_u64().unwrap() >= 3, "{mine}");
    assert!(
        mine["last_activity"].as_str().unwrap().starts_with("20"),
        "{mine}"
    );

    let tree = get(addr, "/admin/api/actors", &auth).await.json();
    let connection_actor = mine["actor"].clone();
    let watches = actors_of_kind(&tree, "watch");
    assert_eq!(watches.len(), 1, "{tree}");
    assert_eq!(watches[0]["parent"], connection_actor);
    assert_eq!(watches[0]["name"], watch.id);
    let queues = actors_of_kind(&tree, "queue");
    assert_eq!(queues.len(), 1, "{tree}");
    assert_eq!(queues[0]["parent"], connection_actor);
    let connection = tree["actors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == connection_actor)
        .cloned()
        .expect("connection actor");
    assert_eq!(connection["kind"], "connection");
    assert!(connection["handled"].as_u64().unwrap() >= 3, "{connection}");
    let parent = connection["parent"].clone();
    assert!(
        tree["actors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == parent && a["kind"] == "supervisor"),
        "{tree}"
    );

    let watched = get(addr, "/admin/api/watches", &auth).await.json();
    assert_eq!(
        watched["collections"][0]["collection"], "entities",
        "{watched}"
    );
    assert_eq!(watched["collections"][0]["watchers"], 1);
    assert_eq!(watched["watches"][0]["id"], watch.id);
    let queued = get(addr, "/admin/api/queues", &auth).await.json();
    assert_eq!(queued["consumers"][0]["queue"], queue.queuename, "{queued}");
    assert_eq!(queued["bus"]["up"], true);
    // The embedded bus shows the queue itself: its kind, depth and consumers.
    let declared = &queued["declared"]["queues"];
    let own = declared
        .as_array()
        .and_then(|queues| {
            queues
                .iter()
                .find(|q| q["name"] == queue.queuename.as_str())
        })
        .unwrap_or_else(|| panic!("{queued}"));
    assert_eq!(
        (&own["kind"], &own["consumers"], &own["messages"]),
        (&json!("temporary"), &json!(1), &json!(0))
    );
    let health = get(addr, "/admin/api/health", &auth).await.json();
    assert_eq!(health["up"], true, "{health}");
    assert_eq!(health["store"]["up"], true);

    drop(client);
    eventually("no leaked registrations", || {
        let auth = auth.clone();
        let baseline = baseline.clone();
        async move {
            let tree = get(addr, "/admin/api/actors", &auth).await.json();
            let connections = get(addr, "/admin/api/connections", &auth).await.json();
            actors_of_kind(&tree, "watch").is_empty()
                && actors_of_kind(&tree, "queue").is_empty()
                && connections["total"] == 1
                && actors_of_kind(&tree, "connection").len()
                    == actors_of_kind(&baseline, "connection").len()
        }
    })
    .await;
    let watched = get(addr, "/admin/api/watches", &auth).await.json();
    assert_eq!(watched["watches"], json!([]), "{watched}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_masks_secrets() {
    let server = TestServer::start_with(|c| {
        c.bus.amqp_url = None;
        c.mongodb_url = None;
    });
    let session = admin_cookie(&server).await;
    let answer = get(server.http(), "/admin/api/config", &cookie(&session)).await;
    assert_eq!(answer.status, 200);
    assert!(!answer.body.contains(ADMIN_PASSWORD), "{}", answer.body);
    assert!(
        !answer.body.contains("test-secret-test-secret"),
        "{}",
        answer.body
    );
    let config = answer.json();
    assert_eq!(config["admin_password"], "********");
    assert_eq!(config["jwt_secret"], "********");
    assert_eq!(config["admin_user"], ADMIN);
    assert!(config["limits"]["max_message_size"].is_number(), "{config}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_page_and_filter() {
    let server = TestServer::start();
    let addr = server.http();
    let mut admin = RawClient::connect(server.tcp()).await;
    let jwt = admin.signin(ADMIN, ADMIN_PASSWORD).await.jwt;
    let auth = bearer(&jwt);
    let _anonymous: Vec<RawClient> = vec![
        RawClient::connect(server.tcp()).await,
        RawClient::connect(server.tcp()).await,
    ];
    eventually("three connections", || async {
        get(addr, "/admin/api/connections", &auth).await.json()["total"] == 3
    })
    .await;
    let page1 = get(addr, "/admin/api/connections?limit=2&page=1", &auth)
        .await
        .json();
    let page2 = get(addr, "/admin/api/connections?limit=2&page=2", &auth)
        .await
        .json();
    assert_eq!(page1["items"].as_array().unwrap().len(), 2);
    assert_eq!(page2["items"].as_array().unwrap().len(), 1);
    assert_eq!(page1["total"], 3);
    assert!(page1["items"][1]["id"].as_u64() < page2["items"][0]["id"].as_u64());
    let huge = get(addr, "/admin/api/connections?limit=1000000", &auth)
        .await
        .json();
    assert_eq!(huge["limit"], 500);

    let by_user = get(addr, "/admin/api/connections?user=admin", &auth)
        .await
        .json();
    assert_eq!(by_user["total"], 1, "{by_user}");
    assert_eq!(by_user["items"][0]["user"]["username"], ADMIN);
    assert_eq!(
        get(addr, "/admin/api/connections?transport=tcp", &auth)
            .await
            .json()["total"],
        3
    );
    assert_eq!(
        get(addr, "/admin/api/connections?transport=grpc", &auth)
            .await
            .json()["total"],
        0
    );
    assert_eq!(
        get(
            addr,
            "/admin/api/connections?agent=nothing-like-this",
            &auth
        )
        .await
        .json()["total"],
        0
    );
}

/// The dashboard's sign-in is the `signin` command under the caller address's unary
/// budget: a burst of password guesses from one address is cut off with 429 rather than
/// running unbounded bcrypt work (here the budget allows one call in flight).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signin_guesses_share_the_address_budget() {
    let server = TestServer::start_with(|c| {
        c.limits.unauth_max_in_flight = 1;
        c.bcrypt_cost = 10;
    });
    let addr = server.http();
    let guesses: Vec<_> = (0..12)
        .map(|n| {
            tokio::spawn(async move {
                let body = signin_body(ADMIN, &format!("guess-{n}"));
                http(addr, "POST", "/admin/api/signin", &[], Some(&body))
                    .await
                    .status
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for guess in guesses {
        statuses.push(guess.await.unwrap());
    }
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );
    assert!(statuses.contains(&429), "{statuses:?}");
    // The right password still works once the burst is over.
    admin_cookie(&server).await;
}
