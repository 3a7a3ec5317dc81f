//! Each transport end to end: WebSocket framing in both directions, gRPC stream and
//! unary RPCs, the unix socket, and the HTTP routes.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use opencore::proto::flow_service_client::FlowServiceClient;
use opencore::proto::{
    Envelope, GetAgentLogRequest, GetElementRequest, GetElementResponse, QueryRequest,
    SigninRequest,
};
use opencore::protocol::envelope::pack;
use prost::Message;
use tokio_tungstenite::tungstenite::Message as WsMessage;

fn getelement(seq: i32, id: &str, xpath: &str) -> Vec<u8> {
    Envelope {
        command: "getelement".into(),
        seq,
        id: id.into(),
        data: Some(pack(&GetElementRequest {
            xpath: xpath.into(),
        })),
        ..Default::default()
    }
    .encode_to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_reads_a_byte_stream_and_writes_length_then_body() {
    let server = TestServer::start();
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws/v2", server.http()))
        .await
        .unwrap();
    // Python/Node style: length and body as two messages.
    let body = getelement(0, "two", "a");
    ws.send(WsMessage::binary(
        (body.len() as u32).to_le_bytes().to_vec(),
    ))
    .await
    .unwrap();
    ws.send(WsMessage::binary(body)).await.unwrap();
    // Rust style: one message with both; plus an envelope split mid-prefix.
    let mut joined = Vec::new();
    for (seq, id) in [(1, "one"), (2, "split")] {
        let body = getelement(seq, id, "b");
        joined.extend_from_slice(&(body.len() as u32).to_le_bytes());
        joined.extend_from_slice(&body);
    }
    let cut = joined.len() - getelement(2, "split", "b").len() - 2;
    ws.send(WsMessage::binary(joined[..cut].to_vec()))
        .await
        .unwrap();
    ws.send(WsMessage::binary(joined[cut..].to_vec()))
        .await
        .unwrap();

    let mut rids = Vec::new();
    for expected_seq in 0..3 {
        let prefix = ws.next().await.unwrap().unwrap();
        let WsMessage::Binary(prefix) = prefix else {
            panic!("binary length message expected")
        };
        assert_eq!(prefix.len(), 4, "the length travels alone");
        let length = u32::from_le_bytes(prefix[..4].try_into().unwrap()) as usize;
        let WsMessage::Binary(body) = ws.next().await.unwrap().unwrap() else {
            panic!("binary body expected")
        };
        assert_eq!(body.len(), length);
        let reply = Envelope::decode(body.as_ref()).unwrap();
        assert_eq!(reply.seq, expected_seq);
        assert_eq!(reply.command, "getelement");
        rids.push(reply.rid);
    }
    assert_eq!(rids, vec!["two", "one", "split"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_stream_accepts_large_envelopes_and_keeps_replies_under_4_mib() {
    let server = TestServer::start();
    let mut client = FlowServiceClient::connect(format!("http://{}", server.grpc()))
        .await
        .unwrap();
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    let mut replies = client
        .setup_stream(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await
        .unwrap()
        .into_inner();
    let small = Envelope::decode(getelement(0, "small", "hi").as_slice()).unwrap();
    sender.send(small).await.unwrap();
    let reply = replies.message().await.unwrap().unwrap();
    assert_eq!(reply.rid, "small");
    assert_eq!(
        decode::<GetElementResponse>(&reply).xpath,
        "Did you say hi ?"
    );
    // 5 MiB in, once signed in (before sign-in envelopes are limited to 1 MiB): accepted
    // (clients inline files that large); the 5 MiB echo cannot go out on gRPC, so it
    // becomes a clear error instead of a broken stream.
    let signin = Envelope {
        command: "signin".into(),
        id: "signin".into(),
        data: Some(pack(&SigninRequest {
            username: ADMIN.into(),
            password: ADMIN_PASSWORD.into(),
            ..Default::default()
        })),
        ..Default::default()
    };
    sender.send(signin).await.unwrap();
    assert_eq!(
        replies.message().await.unwrap().unwrap().command,
        "signinreply"
    );
    let big =
        Envelope::decode(getelement(0, "big", &"x".repeat(5 * 1024 * 1024)).as_slice()).unwrap();
    sender.send(big).await.unwrap();
    let reply = replies.message().await.unwrap().unwrap();
    assert_eq!(reply.rid, "big");
    assert!(
        error_message(&reply)
            .unwrap()
            .contains("exceeds the 4194240 bytes"),
        "{:?}",
        error_message(&reply)
    );
    let after = Envelope::decode(getelement(0, "after", "ok").as_slice()).unwrap();
    sender.send(after).await.unwrap();
    assert_eq!(replies.message().await.unwrap().unwrap().rid, "after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_unary_signin_is_real_and_unserved_rpcs_are_unimplemented() {
    let server = TestServer::start();
    let (mut client, response) = grpc_admin(&server).await;
    assert_eq!(response.user.unwrap().username, ADMIN);
    assert_eq!(response.jwt.split('.').count(), 3);
    let wrong = client
        .signin(SigninRequest {
            username: ADMIN.into(),
            password: "wrong".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
    assert_eq!(wrong.message(), "admin failed logging in using local");
    // A served data RPC without a token is "not signed in"; an unserved RPC is UNIMPLEMENTED.
    let anonymous = client
        .query(QueryRequest {
            collectionname: "x".into(),
            query: "{}".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), tonic::Code::Unauthenticated);
    let unserved = client
        .get_agent_log(GetAgentLogRequest::default())
        .await
        .unwrap_err();
    assert_eq!(unserved.code(), tonic::Code::Unimplemented);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_speaks_the_same_protocol() {
    let server = TestServer::start();
    let path = server.server.bound.pipe.clone().expect("pipe listener");
    let mut stream = tokio::net::UnixStream::connect(&path).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = getelement(0, "pipe", "p");
    let mut frame = (body.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(&body);
    stream.write_all(&frame).await.unwrap();
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).await.unwrap();
    let mut reply = vec![0u8; u32::from_le_bytes(prefix) as usize];
    stream.read_exact(&mut reply).await.unwrap();
    let reply = Envelope::decode(reply.as_slice()).unwrap();
    assert_eq!(
        (reply.rid.as_str(), reply.command.as_str()),
        ("pipe", "getelement")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_routes() {
    let server = TestServer::start();
    let (status, body) = http_get(server.http(), "/config", None).await;
    assert_eq!(status, 200);
    let config: serde_json::Value = serde_json::from_str(body.trim()).unwrap();
    assert_eq!(config["enable_analytics"], false);
    assert_eq!(config["supports_watch"], true);
    assert!(config["ping_clients_interval"].is_i64());
    assert!(config.as_object().unwrap().values().all(|v| !v.is_null()));

    let (status, body) = http_get(server.http(), "/livenessprobe", None).await;
    assert_eq!(status, 200);
    assert!(body.contains(r#""success":"true""#));
    assert_eq!(http_get(server.http(), "/readyz", None).await.0, 200);

    // The admin view needs an admin token.
    assert_eq!(http_get(server.http(), "/admin/stats", None).await.0, 401);
    assert_eq!(
        http_get(server.http(), "/admin/stats", Some("garbage"))
            .await
            .0,
        401
    );
    let mut client = RawClient::connect(server.tcp()).await;
    let jwt = client.signin(ADMIN, ADMIN_PASSWORD).await.jwt;
    let (status, body) = http_get(server.http(), "/admin/stats", Some(&jwt)).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(r#""families""#) && body.contains(r#""session""#),
        "{body}"
    );
    assert!(body.contains(r#""tcp":1"#), "{body}");
}

/// `--node-id` names the node in the admin view (Kubernetes sets it to the pod name).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_view_names_the_node() {
    let server = TestServer::start_with(|c| c.node_id = Some("node-a7".into()));
    let mut client = RawClient::connect(server.tcp()).await;
    let jwt = client.signin(ADMIN, ADMIN_PASSWORD).await.jwt;
    let (status, body) = http_get(server.http(), "/admin/stats", Some(&jwt)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""node":"node-a7""#), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_pings_and_refreshes_tokens_before_they_expire() {
    let server = TestServer::start_with(|c| {
        c.short_token_ttl = std::time::Duration::from_secs(3);
        c.limits.ping_interval = std::time::Duration::from_millis(200);
    });
    let mut client = RawClient::connect(server.tcp()).await;
    let signin = SigninRequest {
        username: ADMIN.into(),
        password: ADMIN_PASSWORD.into(),
        ping: true,
        ..Default::default()
    };
    let reply = client.request("signin", &signin).await;
    let first_jwt = decode::<opencore::proto::SigninResponse>(&reply).jwt;
    let (mut pinged, mut refreshed) = (false, None);
    while !(pinged && refreshed.is_some()) {
        let envelope = client.recv().await.expect("server pushes");
        assert!(envelope.data.is_some(), "server pushes always carry data");
        match envelope.command.as_str() {
            "ping" => {
                pinged = true;
                // Answer like the Rust client: pong with rid = ping id; nothing comes back.
                let pong = Envelope {
                    command: "pong".into(),
                    rid: envelope.id.clone(),
                    ..Default::default()
                };
                client.send(pong).await;
            }
            "refreshtoken" => refreshed = Some(decode::<opencore::proto::RefreshToken>(&envelope)),
            other => panic!("unexpected {other}"),
        }
    }
    let refreshed = refreshed.unwrap();
    assert_eq!(refreshed.username, ADMIN);
    assert_ne!(refreshed.jwt, first_jwt);
    let mut other = RawClient::connect(server.tcp()).await;
    let by_token = SigninRequest {
        jwt: refreshed.jwt,
        ..Default::default()
    };
    assert_eq!(
        other.request("signin", &by_token).await.command,
        "signinreply"
    );
}
