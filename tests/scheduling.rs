//! Priority lanes and per-connection limits.

mod common;

use common::*;
use opencore::proto::{GetElementRequest, SigninRequest};

/// Sign-ins are CPU-heavy (bcrypt), so few run at once and the rest wait in priority
/// lanes. With a backlog of priority-0 sign-ins queued, a priority-3 sign-in sent last
/// must be served before that backlog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn higher_priority_jumps_the_backlog() {
    let server = TestServer::start_with(|c| {
        c.limits.auth_concurrency = 1;
        // A realistic cost makes each sign-in take milliseconds.
        c.bcrypt_cost = 8;
    });
    let mut client = RawClient::connect(server.tcp()).await;
    // Signed in first: before sign-in a connection may have only 8 requests in flight.
    client.signin(ADMIN, ADMIN_PASSWORD).await;
    let signin = SigninRequest {
        username: ADMIN.into(),
        password: ADMIN_PASSWORD.into(),
        ..Default::default()
    };
    let mut batch = Vec::new();
    for n in 0..8 {
        let mut envelope = client.envelope("signin", &signin);
        envelope.id = format!("low{n}");
        envelope.priority = 0;
        batch.push(envelope);
    }
    let mut urgent = client.envelope("signin", &signin);
    urgent.id = "urgent".into();
    urgent.priority = 3;
    batch.push(urgent);
    // One write, so the whole backlog is queued before the first sign-in finishes.
    let mut bytes = bytes::BytesMut::new();
    for envelope in batch.iter_mut() {
        envelope.seq = client.seq;
        client.seq += 1;
        opencore::protocol::frame::encode_frame(
            &prost::Message::encode_to_vec(envelope),
            &mut bytes,
        );
    }
    client.send_raw(&bytes).await;
    let mut order = Vec::new();
    for _ in 0..9 {
        let reply = client.reply().await;
        assert_eq!(reply.command, "signinreply");
        order.push(reply.rid);
    }
    let position = order.iter().position(|rid| rid == "urgent").unwrap();
    // At most the sign-in already running when it arrived finishes first.
    assert!(
        position <= 1,
        "urgent finished at position {position}: {order:?}"
    );
    assert_eq!(order.last().unwrap(), "low7");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_limit_answers_with_an_error() {
    let server = TestServer::start_with(|c| {
        c.limits.max_in_flight = 2;
        c.limits.auth_concurrency = 1;
        c.bcrypt_cost = 8;
    });
    let mut client = RawClient::connect(server.tcp()).await;
    let signin = SigninRequest {
        username: ADMIN.into(),
        password: ADMIN_PASSWORD.into(),
        ..Default::default()
    };
    let mut bytes = bytes::BytesMut::new();
    for seq in 0..4 {
        let mut envelope = client.envelope("signin", &signin);
        envelope.seq = seq;
        opencore::protocol::frame::encode_frame(
            &prost::Message::encode_to_vec(&envelope),
            &mut bytes,
        );
    }
    client.seq = 4;
    client.send_raw(&bytes).await;
    let mut errors = Vec::new();
    let mut ok = 0;
    for _ in 0..4 {
        let reply = client.reply().await;
        match error_message(&reply) {
            Some(message) => errors.push(message),
            None => ok += 1,
        }
    }
    assert_eq!(ok, 2);
    assert_eq!(errors.len(), 2);
    assert!(
        errors[0].starts_with("Too many requests in flight (limit 2)"),
        "{errors:?}"
    );
    // Once answered, the connection is usable again.
    assert_eq!(
        client
            .request("getelement", &GetElementRequest::default())
            .await
            .command,
        "getelement"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_answers_with_an_error() {
    let server = TestServer::start_with(|c| c.limits.rate_limit = 5);
    let mut client = RawClient::connect(server.tcp()).await;
    let mut bytes = bytes::BytesMut::new();
    for seq in 0..8 {
        let mut envelope = client.envelope("getelement", &GetElementRequest::default());
        envelope.seq = seq;
        opencore::protocol::frame::encode_frame(
            &prost::Message::encode_to_vec(&envelope),
            &mut bytes,
        );
    }
    client.seq = 8;
    client.send_raw(&bytes).await;
    let mut limited = 0;
    for _ in 0..8 {
        if let Some(message) = error_message(&client.reply().await) {
            assert_eq!(
                message,
                "Rate limit exceeded: more than 5 requests per second"
            );
            limited += 1;
        }
    }
    assert_eq!(limited, 3);
}

/// A client that never reads its replies is disconnected once its outbound queue has
/// stayed over the limit for the grace period; memory stays bounded meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_client_is_disconnected() {
    let server = TestServer::start_with(|c| {
        c.limits.max_outbound_bytes = 64 * 1024;
        c.limits.slow_client_grace = std::time::Duration::from_millis(500);
    });
    let mut good = RawClient::connect(server.tcp()).await;
    let mut slow = RawClient::connect(server.tcp()).await;
    // Large echoes that the client never reads: fills socket buffers, then the queue.
    let big = GetElementRequest {
        xpath: "x".repeat(256 * 1024),
    };
    let mut disconnected = false;
    for _ in 0..400 {
        let envelope = slow.envelope("getelement", &big);
        let mut framed = bytes::BytesMut::new();
        let mut envelope = envelope;
        envelope.seq = slow.seq;
        slow.seq += 1;
        opencore::protocol::frame::encode_frame(
            &prost::Message::encode_to_vec(&envelope),
            &mut framed,
        );
        use tokio::io::AsyncWriteExt;
        let write = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            slow.stream.write_all(&framed),
        )
        .await;
        if !matches!(write, Ok(Ok(()))) {
            disconnected = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    if !disconnected {
        // Drain: the server must have closed us (we never read a byte before).
        disconnected = slow.closed().await;
    }
    assert!(disconnected, "the slow client was never disconnected");
    assert_eq!(
        good.request("getelement", &GetElementRequest::default())
            .await
            .command,
        "getelement"
    );
}
