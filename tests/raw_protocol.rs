//! The raw protocol over TCP: ordering, framing errors, bad envelopes, bad credentials.
//! Every bad case must end in a clear error or a clean close, while a second,
//! well-behaved connection keeps being served.

mod common;

use common::*;
use opencore::auth::token::unix_now;
use opencore::proto::{Envelope, GetElementRequest, GetElementResponse, SigninRequest};
use prost::Message;

async fn still_serving(good: &mut RawClient) {
    let reply = good
        .request(
            "getelement",
            &GetElementRequest {
                xpath: "alive".into(),
            },
        )
        .await;
    assert_eq!(reply.command, "getelement");
    assert_eq!(
        decode::<GetElementResponse>(&reply).xpath,
        "Did you say alive ?"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_seq_is_delivered_in_order() {
    let server = TestServer::start();
    let mut client = RawClient::connect(server.tcp()).await;
    let mut envelopes: Vec<Envelope> = (0..3)
        .map(|n| {
            let mut e = client.envelope(
                "getelement",
                &GetElementRequest {
                    xpath: n.to_string(),
                },
            );
            e.seq = n;
            e
        })
        .collect();
    envelopes.reverse();
    for envelope in &envelopes {
        client.send_exact(envelope).await;
    }
    let mut order = Vec::new();
    for _ in 0..3 {
        let reply = client.reply().await;
        order.push(decode::<GetElementResponse>(&reply).xpath);
    }
    assert_eq!(
        order,
        vec!["Did you say 0 ?", "Did you say 1 ?", "Did you say 2 ?"]
    );
    // Server envelopes are numbered 0,1,2,… as well.
    client.seq = 3;
    let reply = client
        .request("getelement", &GetElementRequest::default())
        .await;
    assert_eq!(reply.seq, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_seq_closes_the_connection() {
    let server = TestServer::start();
    let mut good = RawClient::connect(server.tcp()).await;
    let mut client = RawClient::connect(server.tcp()).await;
    let envelope = client.envelope("getelement", &GetElementRequest::default());
    client.send(envelope.clone()).await;
    assert_eq!(client.reply().await.command, "getelement");
    client.send_exact(&envelope).await; // seq 0 again
    assert!(client.closed().await);
    still_serving(&mut good).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_reorder_window_closes_the_connection() {
    let server = TestServer::start_with(|c| c.limits.seq_window = 10);
    let mut good = RawClient::connect(server.tcp()).await;
    let mut client = RawClient::connect(server.tcp()).await;
    for seq in 1..=11 {
        let mut envelope = client.envelope("getelement", &GetElementRequest::default());
        envelope.seq = seq;
        client.send_exact(&envelope).await;
    }
    let mut errors = Vec::new();
    while let Some(envelope) = client.recv().await {
        errors.extend(error_message(&envelope));
    }
    assert!(
        errors
            .iter()
            .any(|e| e.contains("waiting for a missing seq")),
        "{errors:?}"
    );
    still_serving(&mut good).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framing_errors_close_cleanly() {
    let server = TestServer::start_with(|c| c.limits.max_message_size = 1024 * 1024);
    let mut good = RawClient::connect(server.tcp()).await;

    // An HTTP request on the TCP port: its first bytes read as a huge length.
    let mut garbage = RawClient::connect(server.tcp()).await;
    garbage.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let first = garbage.recv().await.expect("an error before the close");
    assert!(error_message(&first).unwrap().contains("exceeds the limit"));
    assert!(garbage.closed().await);
    still_serving(&mut good).await;

    // A length prefix over the configured limit, refused before the body is read.
    let mut oversized = RawClient::connect(server.tcp()).await;
    oversized
        .send_raw(&(2u32 * 1024 * 1024).to_le_bytes())
        .await;
    let first = oversized.recv().await.expect("an error before the close");
    assert_eq!(
        error_message(&first).unwrap(),
        "Message of 2097152 bytes exceeds the limit of 1048576 bytes"
    );
    assert!(oversized.closed().await);
    still_serving(&mut good).await;

    // A zero length.
    let mut zero = RawClient::connect(server.tcp()).await;
    zero.send_raw(&0u32.to_le_bytes()).await;
    assert!(zero.closed().await);

    // A truncated frame, then the client hangs up.
    let mut truncated = RawClient::connect(server.tcp()).await;
    truncated.send_raw(&100u32.to_le_bytes()).await;
    truncated.send_raw(&[1, 2, 3, 4, 5]).await;
    tokio::io::AsyncWriteExt::shutdown(&mut truncated.stream)
        .await
        .unwrap();
    assert!(truncated.closed().await);
    still_serving(&mut good).await;

    // A well-delimited frame that is not an Envelope.
    let mut undecodable = RawClient::connect(server.tcp()).await;
    let mut bytes = 6u32.to_le_bytes().to_vec();
    bytes.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    undecodable.send_raw(&bytes).await;
    let first = undecodable.recv().await.expect("an error before the close");
    assert!(error_message(&first)
        .unwrap()
        .starts_with("undecodable envelope"));
    assert!(undecodable.closed().await);
    still_serving(&mut good).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_envelopes_get_clear_errors() {
    let server = TestServer::start();
    let mut good = RawClient::connect(server.tcp()).await;
    let mut client = RawClient::connect(server.tcp()).await;

    // Missing data where the command needs it.
    let id = client
        .send(Envelope {
            command: "signin".into(),
            id: "nodata".into(),
            ..Default::default()
        })
        .await;
    let reply = client.reply().await;
    assert_eq!(reply.rid, id);
    assert_eq!(
        error_message(&reply).unwrap(),
        "Missing data for command signin"
    );

    // A payload that does not decode as the command's request type.
    let mut bad = client.envelope("signin", &SigninRequest::default());
    bad.data.as_mut().unwrap().value = vec![0x0a, 0xff, 0xff];
    client.send(bad).await;
    let message = error_message(&client.reply().await).unwrap();
    assert!(
        message.starts_with("Could not decode signin payload as openiap.SigninRequest"),
        "{message}"
    );

    // Unknown and empty commands; commands are case-insensitive.
    let reply = client.request("foo", &GetElementRequest::default()).await;
    assert_eq!(error_message(&reply).unwrap(), "Unknown command foo");
    let reply = client.request("", &GetElementRequest::default()).await;
    assert_eq!(error_message(&reply).unwrap(), "Invalid/empty command");
    let reply = client
        .request("GetElement", &GetElementRequest::default())
        .await;
    assert_eq!(reply.command, "getelement");

    // Guest getelement without data (the Rust client's handshake) is answered.
    let id = client
        .send(Envelope {
            command: "getelement".into(),
            id: "guest".into(),
            ..Default::default()
        })
        .await;
    let reply = client.reply().await;
    assert_eq!(
        (reply.rid.as_str(), reply.command.as_str()),
        (id.as_str(), "getelement")
    );
    assert!(reply.data.is_some());

    // A client ping is answered with pong; noop is silent.
    client.send(client_envelope_without_data("noop")).await;
    let reply = client
        .request("ping", &opencore::proto::PingRequest {})
        .await;
    assert_eq!(reply.command, "pong");
    assert!(reply.data.is_some());
    still_serving(&mut good).await;
}

fn client_envelope_without_data(command: &str) -> Envelope {
    Envelope {
        command: command.into(),
        id: format!("{command}-1"),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_and_bad_tokens_are_refused() {
    let server = TestServer::start();
    let mut good = RawClient::connect(server.tcp()).await;
    good.signin(ADMIN, ADMIN_PASSWORD).await;
    let mut client = RawClient::connect(server.tcp()).await;

    let wrong = SigninRequest {
        username: ADMIN.into(),
        password: "nope".into(),
        ..Default::default()
    };
    assert_eq!(
        error_message(&client.request("signin", &wrong).await).unwrap(),
        "admin failed logging in using local"
    );
    let unknown = SigninRequest {
        username: "nobody".into(),
        password: "nope".into(),
        ..Default::default()
    };
    assert_eq!(
        error_message(&client.request("signin", &unknown).await).unwrap(),
        "nobody failed logging in using local"
    );
    let empty = SigninRequest {
        username: ADMIN.into(),
        ..Default::default()
    };
    assert_eq!(
        error_message(&client.request("signin", &empty).await).unwrap(),
        "Password cannot be null"
    );

    let secret = b"test-secret-test-secret-test-secret";
    let expired = forge(secret, "HS256", unix_now() - 5);
    let wrong_key = forge(b"another-secret", "HS256", unix_now() + 600);
    let none_alg = {
        let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
        let body = b64(format!(
            r#"{{"data":{{"_id":"x"}},"iat":1,"exp":{}}}"#,
            unix_now() + 600
        )
        .as_bytes());
        format!("{header}.{body}.")
    };
    let hs512 = forge(secret, "HS512", unix_now() + 600);
    for token in [
        &expired,
        &wrong_key,
        &none_alg,
        &hs512,
        &"not.a.token".to_string(),
    ] {
        let by_token = SigninRequest {
            jwt: token.clone(),
            ..Default::default()
        };
        let message = error_message(&client.request("signin", &by_token).await).unwrap();
        assert!(
            message.starts_with("Discard signin due to invalid or expired jwt"),
            "{message}"
        );
        // The same token on another command, as Envelope.jwt.
        let mut envelope = client.envelope("getelement", &GetElementRequest::default());
        envelope.jwt = token.clone();
        client.send(envelope).await;
        let message = error_message(&client.reply().await).unwrap();
        assert!(
            message.starts_with("Discard getelement due to missing jwt"),
            "{message}"
        );
    }
    still_serving(&mut good).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signin_by_password_then_by_token() {
    let server = TestServer::start();
    let mut client = RawClient::connect(server.tcp()).await;
    let response = client.signin(ADMIN, ADMIN_PASSWORD).await;
    let user = response.user.expect("user is always set");
    assert_eq!(user.username, ADMIN);
    let roles: Vec<&str> = user.roles.iter().map(|r| r.name.as_str()).collect();
    // admins, plus what admins is nested in, plus the implicit users role.
    for role in [
        "admins",
        "filestore admins",
        "filestore users",
        "users",
        "workitem queue admins",
    ] {
        assert!(roles.contains(&role), "{roles:?}");
    }
    let config: serde_json::Value = serde_json::from_str(&response.config).unwrap();
    assert_eq!(config["enable_analytics"], false);

    let mut other = RawClient::connect(server.tcp()).await;
    let by_token = SigninRequest {
        jwt: response.jwt.clone(),
        validateonly: true,
        ..Default::default()
    };
    let reply = other.request("signin", &by_token).await;
    assert_eq!(reply.command, "signinreply");
    let signed: opencore::proto::SigninResponse = decode(&reply);
    assert_eq!(signed.user.unwrap().username, ADMIN);

    // A long token lives for the configured long lifetime.
    let long = SigninRequest {
        jwt: response.jwt,
        longtoken: true,
        ..Default::default()
    };
    let signed: opencore::proto::SigninResponse = decode(&other.request("signin", &long).await);
    let payload = signed.jwt.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&b64_decode(payload)).unwrap();
    assert!(claims["exp"].as_u64().unwrap() > unix_now() + 300 * 86400);
}

// --- token forging helpers -------------------------------------------------------

fn forge(secret: &[u8], alg: &str, exp: u64) -> String {
    let header = b64(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#).as_bytes());
    let body = b64(format!(
        r#"{{"data":{{"_id":"{}"}},"iat":1,"exp":{exp}}}"#,
        "59f1f6e6f0a22200126638d8"
    )
    .as_bytes());
    let signing_input = format!("{header}.{body}");
    let signature = if alg == "HS256" {
        hmac_sha256(secret, signing_input.as_bytes()).to_vec()
    } else {
        vec![1, 2, 3]
    };
    format!("{signing_input}.{}", b64(&signature))
}

const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn b64(input: &[u8]) -> String {
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = ((b[0] as u32) << 16) | ((b[1] as u32) << 8) | b[2] as u32;
        for i in 0..=chunk.len() {
            out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn b64_decode(input: &str) -> Vec<u8> {
    let values: Vec<u32> = input
        .bytes()
        .filter_map(|c| B64.iter().position(|&b| b == c).map(|p| p as u32))
        .collect();
    let mut out = Vec::new();
    for chunk in values.chunks(4) {
        let mut n = 0u32;
        for (i, v) in chunk.iter().enumerate() {
            n |= v << (18 - 6 * i);
        }
        for i in 0..chunk.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

/// HMAC-SHA256 written out, so the test does not trust the server's own crypto.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&sha256(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let inner: Vec<u8> = k
        .iter()
        .map(|b| b ^ 0x36)
        .chain(message.iter().copied())
        .collect();
    let inner_hash = sha256(&inner);
    let outer: Vec<u8> = k
        .iter()
        .map(|b| b ^ 0x5c)
        .chain(inner_hash.iter().copied())
        .collect();
    sha256(&outer)
}

fn sha256(data: &[u8]) -> [u8; 32] {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64) * 8;
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 64];
        for i in 0..16 {
            w[i] = u32::from_be_bytes([
                block[4 * i],
                block[4 * i + 1],
                block[4 * i + 2],
                block[4 * i + 3],
            ]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let mut v = h;
        for i in 0..64 {
            let s1 = v[4].rotate_right(6) ^ v[4].rotate_right(11) ^ v[4].rotate_right(25);
            let ch = (v[4] & v[5]) ^ (!v[4] & v[6]);
            let t1 = v[7]
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = v[0].rotate_right(2) ^ v[0].rotate_right(13) ^ v[0].rotate_right(22);
            let maj = (v[0] & v[1]) ^ (v[0] & v[2]) ^ (v[1] & v[2]);
            let t2 = s0.wrapping_add(maj);
            v = [
                t1.wrapping_add(t2),
                v[0],
                v[1],
                v[2],
                v[3].wrapping_add(t1),
                v[4],
                v[5],
                v[6],
            ];
        }
        for i in 0..8 {
            h[i] = h[i].wrapping_add(v[i]);
        }
    }
    let mut out = [0u8; 32];
    for (i, word) in h.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&word.to_be_bytes());
    }
    out
}

#[test]
fn forged_hs256_matches_the_server_signer() {
    // Guards the helpers above: a token forged here verifies with the server's signer.
    let token = forge(b"k", "HS256", unix_now() + 60);
    let signer = opencore::auth::token::TokenSigner::new(b"k");
    assert_eq!(
        signer.verify(&token).unwrap().data.id,
        "59f1f6e6f0a22200126638d8"
    );
    let _ = Envelope::default().encode_to_vec();
}
