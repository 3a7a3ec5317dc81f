//! HTTP helpers for the admin API tests (plain HTTP/1.1 over TCP, no client library).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

pub struct Response {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_str(self.body.trim())
            .unwrap_or_else(|err| panic!("JSON body ({err}): {}", self.body))
    }

    /// The `name=value` of the first `Set-Cookie` header.
    pub fn cookie(&self) -> Option<String> {
        self.set_cookie()
            .and_then(|c| c.split(';').next().map(str::to_string))
    }

    pub fn set_cookie(&self) -> Option<String> {
        self.head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
            .map(|l| l["set-cookie:".len()..].trim().to_string())
    }
}

/// One request; `headers` are full header lines without CRLF. A POST always has a
/// (possibly empty) JSON body.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[String],
    body: Option<&str>,
) -> Response {
    let body = match body {
        None if method == "POST" => Some(""),
        body => body,
    };
    let answer =
        crate::common::send_http(addr, method, path, headers, body.map(str::as_bytes)).await;
    Response {
        status: answer.status,
        body: answer.text(),
        head: answer.head,
    }
}

pub fn bearer(token: &str) -> Vec<String> {
    vec![format!("Authorization: Bearer {token}")]
}

pub fn cookie(cookie: &str) -> Vec<String> {
    vec![format!("Cookie: {cookie}")]
}

pub async fn get(addr: SocketAddr, path: &str, headers: &[String]) -> Response {
    http(addr, "GET", path, headers, None).await
}

/// Polls `check` every 50 ms for up to 10 s.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}
