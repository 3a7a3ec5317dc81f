//! Message bodies: what `queuemessage` puts on the bus and what a `timeout` reply says.
//!
//! Bodies are always JSON text, so every client can parse what it receives (the Python
//! and Node clients parse `QueueEvent.data` unconditionally): a `data` that is not JSON
//! travels as a JSON string. A JSON object carries its sender, `__jwt` (a fresh
//! short-lived token of the sender, never the caller's own session token) and `__user`,
//! unless the sender asked for `striptoken`; a `jwt` field inside the object is never
//! forwarded.

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::auth::ResolvedUser;
use crate::error::OpenCoreError;

/// Who the message is from, for JSON object bodies.
pub struct Sender<'a> {
    pub user: &'a ResolvedUser,
    /// A token of `user` (minted for this message).
    pub token: String,
}

/// What `data` holds, as far as the body is concerned.
pub enum Parsed {
    /// A JSON object: fields to add to (or strip from).
    Object(Map<String, Value>),
    /// Any other JSON value, or text that is no JSON (as a JSON string): sent as is.
    Other(String),
}

/// Parses `data`. Objects are only taken apart when something must change in them;
/// other valid JSON is passed through as the client wrote it.
pub fn parse(data: &str) -> Parsed {
    match serde_json::from_str::<Value>(data) {
        Ok(Value::Object(map)) => Parsed::Object(map),
        Ok(_) => Parsed::Other(data.to_string()),
        Err(_) => Parsed::Other(Value::String(data.to_string()).to_string()),
    }
}

/// The `jwt` a sender put inside its object (the reference acts as that token's user).
pub fn inner_token(parsed: &mut Parsed) -> Option<String> {
    match parsed {
        Parsed::Object(map) => match map.remove("jwt") {
            Some(Value::String(token)) if !token.is_empty() => Some(token),
            _ => None,
        },
        Parsed::Other(_) => None,
    }
}

/// The body as it goes on the bus.
pub fn render(parsed: Parsed, sender: Option<Sender<'_>>) -> Bytes {
    match parsed {
        Parsed::Other(text) => Bytes::from(text),
        Parsed::Object(mut map) => {
            map.remove("__jwt");
            map.remove("__user");
            if let Some(sender) = sender {
                map.insert("__jwt".into(), Value::String(sender.token));
                map.insert("__user".into(), token_user(sender.user));
            }
            Bytes::from(Value::Object(map).to_string())
        }
    }
}

/// The user as the reference's `TokenUser` (what clients read from `__user`).
fn token_user(user: &ResolvedUser) -> Value {
    let roles: Vec<Value> = user
        .roles
        .iter()
        .map(|role| serde_json::json!({ "_id": role.id, "name": role.name }))
        .collect();
    serde_json::json!({
        "_type": "user",
        "_id": user.id,
        "name": user.name,
        "username": user.username,
        "email": user.email,
        "roles": roles,
    })
}

/// Checks a rendered body against `--max-queue-message-size`.
pub fn check_size(body: &Bytes, limit: usize) -> Result<(), OpenCoreError> {
    if body.len() > limit {
        return Err(OpenCoreError::QueueMessageTooLarge {
            size: body.len(),
            limit,
        });
    }
    Ok(())
}

/// What the requester gets when its message expired or could not be routed: its own
/// object without the sender fields and with `"command": "timeout"`, or the string
/// `"timeout"` for other bodies.
pub fn timeout(original: &[u8]) -> Bytes {
    match serde_json::from_slice::<Value>(original) {
        Ok(Value::Object(mut map)) => {
            map.remove("__jwt");
            map.remove("__user");
            map.insert("command".into(), Value::String("timeout".into()));
            Bytes::from(Value::Object(map).to_string())
        }
        _ => Bytes::from_static(b"\"timeout\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> ResolvedUser {
        ResolvedUser {
            id: "u1".into(),
            name: "Ann".into(),
            username: "ann".into(),
            email: String::new(),
            disabled: false,
            roles: vec![],
            created: None,
            token_generation: 0,
        }
    }

    fn json(body: &Bytes) -> Value {
        serde_json::from_slice(body).unwrap()
    }

    #[test]
    fn objects_carry_their_sender_unless_stripped() {
        let user = user();
        let body = render(
            parse(r#"{"a":1,"__jwt":"forged","__user":{"_id":"root"}}"#),
            Some(Sender {
                user: &user,
                token: "minted".into(),
            }),
        );
        let value = json(&body);
        assert_eq!(value["a"], 1);
        assert_eq!(value["__jwt"], "minted");
        assert_eq!(value["__user"]["_id"], "u1");
        let stripped = json(&render(parse(r#"{"a":1,"__jwt":"forged"}"#), None));
        assert!(
            stripped.get("__jwt").is_none(),
            "a client cannot forge a sender"
        );
    }

    #[test]
    fn inner_jwt_is_taken_out() {
        let mut parsed = parse(r#"{"jwt":"t","a":1}"#);
        assert_eq!(inner_token(&mut parsed).as_deref(), Some("t"));
        assert!(json(&render(parsed, None)).get("jwt").is_none());
    }

    #[test]
    fn other_values_pass_and_text_becomes_a_json_string() {
        assert_eq!(&render(parse("[1, 2]"), None)[..], b"[1, 2]");
        assert_eq!(&render(parse("hi mom"), None)[..], br#""hi mom""#);
        assert_eq!(&render(parse("\"x\""), None)[..], br#""x""#);
    }

    #[test]
    fn timeouts_echo_objects_without_the_sender() {
        let value = json(&timeout(br#"{"a":1,"__jwt":"t","__user":{}}"#));
        assert_eq!(value, serde_json::json!({"a": 1, "command": "timeout"}));
        assert_eq!(&timeout(b"\"hi\"")[..], b"\"timeout\"");
    }

    #[test]
    fn size_is_checked() {
        assert!(check_size(&Bytes::from_static(b"12345"), 5).is_ok());
        assert_eq!(
            check_size(&Bytes::from_static(b"123456"), 5),
            Err(OpenCoreError::QueueMessageTooLarge { size: 6, limit: 5 })
        );
    }
}
