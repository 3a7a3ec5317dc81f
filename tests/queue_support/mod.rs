//! Shared by the queue tests: servers on either bus, and a raw client that keeps the
//! `queueevent`s it meets while it waits for replies.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::time::Duration;

use crate::common::*;
use crate::data_support::{admin, signed_in, start_server};
use opencore::config::ServeConfig;
use opencore::proto::*;
use prost::{Message, Name};
use serde_json::Value;

/// The buses to run each test on: always the embedded one; RabbitMQ when reachable.
pub fn buses() -> Vec<Option<String>> {
    let mut buses = vec![None];
    if let Some(url) = amqp_url() {
        buses.push(Some(url));
    }
    buses
}

pub fn amqp_url() -> Option<String> {
    if let Ok(url) = std::env::var("AMQP_URL") {
        if url == "off" {
            return None;
        }
        if !url.is_empty() {
            return Some(url);
        }
    }
    if std::net::TcpStream::connect_timeout(
        &"127.0.0.1:5672".parse().unwrap(),
        Duration::from_millis(300),
    )
    .is_ok()
    {
        return Some("amqp://guest:guest@127.0.0.1:5672/%2f".to_string());
    }
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        b"SKIPPED (RabbitMQ half): no AMQP_URL and nothing on 127.0.0.1:5672\n",
    );
    None
}

pub fn server_on(bus: &Option<String>, adjust: impl FnOnce(&mut ServeConfig)) -> TestServer {
    let bus = bus.clone();
    start_server(move |config| {
        config.bus.amqp_url = bus;
        adjust(config);
    })
}

/// Unique per test run: named queues on a shared broker must not meet old ones.
pub fn unique(prefix: &str) -> String {
    use rand::distr::{Alphanumeric, SampleString};
    format!(
        "{prefix}-{}",
        Alphanumeric
            .sample_string(&mut rand::rng(), 10)
            .to_lowercase()
    )
}

/// A raw client that keeps the `queueevent`s it meets while waiting for replies.
pub struct Client {
    pub raw: RawClient,
    pub events: VecDeque<Envelope>,
}

impl Client {
    pub async fn admin(server: &TestServer) -> Client {
        Client {
            raw: admin(server).await,
            events: VecDeque::new(),
        }
    }

    pub async fn user(server: &TestServer, username: &str, password: &str) -> Client {
        Client {
            raw: signed_in(server, username, password).await,
            events: VecDeque::new(),
        }
    }

    pub async fn call<M: Message + Name>(&mut self, command: &str, message: &M) -> Envelope {
        self.call_with_priority(command, message, 0).await
    }

    pub async fn call_with_priority<M: Message + Name>(
        &mut self,
        command: &str,
        message: &M,
        priority: i32,
    ) -> Envelope {
        let mut envelope = self.raw.envelope(command, message);
        envelope.priority = priority;
        let id = self.raw.send(envelope).await;
        loop {
            let envelope = self.raw.recv().await.expect("a reply");
            if envelope.rid == id {
                return envelope;
            }
            if envelope.command == "queueevent" {
                self.events.push_back(envelope);
            }
        }
    }

    pub async fn register(&mut self, name: &str) -> Result<String, String> {
        let reply = self
            .call(
                "registerqueue",
                &RegisterQueueRequest {
                    queuename: name.into(),
                },
            )
            .await;
        result::<RegisterQueueResponse>(&reply).map(|r| r.queuename)
    }

    pub async fn exchange(
        &mut self,
        name: &str,
        algorithm: &str,
        routingkey: &str,
    ) -> Result<String, String> {
        let reply = self
            .call(
                "registerexchange",
                &RegisterExchangeRequest {
                    exchangename: name.into(),
                    algorithm: algorithm.into(),
                    routingkey: routingkey.into(),
                    addqueue: true,
                },
            )
            .await;
        result::<RegisterExchangeResponse>(&reply).map(|r| r.queuename)
    }

    pub async fn send(
        &mut self,
        request: QueueMessageRequest,
    ) -> Result<QueueMessageResponse, String> {
        let reply = self.call("queuemessage", &request).await;
        result(&reply)
    }

    pub async fn send_to(
        &mut self,
        queue: &str,
        data: Value,
    ) -> Result<QueueMessageResponse, String> {
        self.send(QueueMessageRequest {
            queuename: queue.into(),
            data: data.to_string(),
            striptoken: true,
            ..Default::default()
        })
        .await
    }

    pub async fn unregister(&mut self, name: &str) {
        let reply = self
            .call(
                "unregisterqueue",
                &UnRegisterQueueRequest {
                    queuename: name.into(),
                },
            )
            .await;
        result::<UnRegisterQueueResponse>(&reply).unwrap();
    }

    /// The next queue event within `wait`.
    pub async fn event_within(&mut self, wait: Duration) -> Option<(QueueEvent, i32)> {
        if let Some(envelope) = self.events.pop_front() {
            return Some((decode(&envelope), envelope.priority));
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let envelope = tokio::time::timeout_at(deadline, self.raw.recv())
                .await
                .ok()??;
            if envelope.command == "queueevent" {
                assert!(envelope.rid.is_empty(), "events carry no rid");
                return Some((decode(&envelope), envelope.priority));
            }
        }
    }

    pub async fn event(&mut self) -> QueueEvent {
        self.event_within(WAIT)
            .await
            .expect("a queueevent in time")
            .0
    }

    pub async fn no_event(&mut self, wait: Duration) {
        if let Some((event, _)) = self.event_within(wait).await {
            panic!("unexpected queueevent {event:?}");
        }
    }
}

pub fn result<R: Message + Default>(reply: &Envelope) -> Result<R, String> {
    match error_message(reply) {
        Some(message) => Err(message),
        None => Ok(decode(reply)),
    }
}

pub fn data(event: &QueueEvent) -> Value {
    serde_json::from_str(&event.data).expect("queueevent data is JSON")
}
