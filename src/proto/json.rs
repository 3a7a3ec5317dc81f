//! serde helpers for the JSON form of the generated messages (REST API), wired in by
//! `build.rs`. Timestamps are RFC 3339 strings; `bytes` are base64 strings; `Any` is
//! `{type_url, value}` with `value` base64. Input is lenient where clients differ:
//! bytes also as a Node Buffer (`{"type":"Buffer","data":[…]}`), an array of numbers
//! or a typed-array object (`{"0":1,"1":2}`); timestamps also as `{seconds, nanos}`.

use base64::Engine;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// Bytes from any of the JSON forms clients send; `None` when `value` is none of them.
pub fn bytes_from_json(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::Null => Some(Vec::new()),
        Value::String(text) => b64().decode(text.trim()).ok().or_else(|| {
            base64::engine::general_purpose::URL_SAFE
                .decode(text.trim())
                .ok()
        }),
        Value::Array(items) => items
            .iter()
            .map(|item| item.as_u64().and_then(|n| u8::try_from(n).ok()))
            .collect(),
        Value::Object(map) => {
            if let Some(data) = map.get("data").filter(|_| map.contains_key("type")) {
                return bytes_from_json(data);
            }
            // A Uint8Array through JSON.stringify: {"0":1,"1":2,…}, in index order.
            let mut out = vec![0u8; map.len()];
            for (key, item) in map {
                let index: usize = key.parse().ok()?;
                *out.get_mut(index)? = item.as_u64().and_then(|n| u8::try_from(n).ok())?;
            }
            Some(out)
        }
        _ => None,
    }
}

pub mod bytes {
    use super::*;

    pub fn serialize<S: Serializer>(value: &::bytes::Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&b64().encode(value))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<::bytes::Bytes, D::Error> {
        let value = Value::deserialize(d)?;
        bytes_from_json(&value)
            .map(::bytes::Bytes::from)
            .ok_or_else(|| D::Error::custom("expected base64 text or a byte array"))
    }
}

pub mod repeated_bytes {
    use super::*;

    pub fn serialize<S: Serializer>(value: &[::bytes::Bytes], s: S) -> Result<S::Ok, S::Error> {
        let texts: Vec<String> = value.iter().map(|b| b64().encode(b)).collect();
        texts.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<::bytes::Bytes>, D::Error> {
        let values = Vec::<Value>::deserialize(d)?;
        values
            .iter()
            .map(|v| bytes_from_json(v).map(::bytes::Bytes::from))
            .collect::<Option<_>>()
            .ok_or_else(|| D::Error::custom("expected base64 text or byte arrays"))
    }
}

/// `{type_url, value}` of an `Any`; `value` read with `bytes_from_json`.
pub fn any_from_json(value: &Value) -> Option<prost_types::Any> {
    let map = value.as_object()?;
    let type_url = match map.get("type_url").or_else(|| map.get("typeUrl")) {
        Some(Value::String(text)) => text.clone(),
        None | Some(Value::Null) => String::new(),
        Some(_) => return None,
    };
    let value = bytes_from_json(map.get("value").unwrap_or(&Value::Null))?;
    Some(prost_types::Any { type_url, value })
}

pub fn any_to_json(any: &prost_types::Any) -> Value {
    serde_json::json!({"type_url": any.type_url, "value": b64().encode(&any.value)})
}

pub mod any {
    use super::*;

    pub fn serialize<S: Serializer>(
        value: &Option<prost_types::Any>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        value.as_ref().map(any_to_json).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<prost_types::Any>, D::Error> {
        match Value::deserialize(d)? {
            Value::Null => Ok(None),
            value => any_from_json(&value)
                .map(Some)
                .ok_or_else(|| D::Error::custom("expected {type_url, value}")),
        }
    }
}

pub fn timestamp_to_json(ts: &prost_types::Timestamp) -> Value {
    let nanos = u32::try_from(ts.nanos).unwrap_or(0);
    match chrono::DateTime::from_timestamp(ts.seconds, nanos) {
        Some(dt) => Value::String(dt.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        None => serde_json::json!({"seconds": ts.seconds, "nanos": ts.nanos}),
    }
}

pub fn timestamp_from_json(value: &Value) -> Option<prost_types::Timestamp> {
    match value {
        Value::String(text) => {
            let dt = chrono::DateTime::parse_from_rfc3339(text.trim()).ok()?;
            Some(prost_types::Timestamp {
                seconds: dt.timestamp(),
                nanos: i32::try_from(dt.timestamp_subsec_nanos()).ok()?,
            })
        }
        Value::Object(map) => Some(prost_types::Timestamp {
            seconds: map.get("seconds").map(int_of).unwrap_or(Some(0))?,
            nanos: i32::try_from(map.get("nanos").map(int_of).unwrap_or(Some(0))?).ok()?,
        }),
        _ => None,
    }
}

/// A number, or a number in a string (protobuf JSON writes 64-bit integers as text).
fn int_of(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(text) => text.trim().parse().ok(),
        Value::Null => Some(0),
        _ => None,
    }
}

pub mod timestamp {
    use super::*;

    pub fn serialize<S: Serializer>(
        value: &Option<prost_types::Timestamp>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        value.as_ref().map(timestamp_to_json).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<prost_types::Timestamp>, D::Error> {
        match Value::deserialize(d)? {
            Value::Null => Ok(None),
            value => timestamp_from_json(&value)
                .map(Some)
                .ok_or_else(|| D::Error::custom("expected an RFC 3339 timestamp")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Envelope, QueryRequest, Workitem};

    #[test]
    fn field_names_follow_the_proto() {
        let json = serde_json::json!({"collectionname": "entities", "query": "{}", "top": 5});
        let request: QueryRequest = serde_json::from_value(json).expect("query request");
        assert_eq!(request.collectionname, "entities");
        assert_eq!(request.top, 5);
        let item = Workitem {
            id: "abc".into(),
            nextrun: Some(prost_types::Timestamp {
                seconds: 0,
                nanos: 0,
            }),
            ..Default::default()
        };
        let value = serde_json::to_value(&item).expect("workitem json");
        assert_eq!(value["_id"], "abc");
        assert_eq!(value["nextrun"], "1970-01-01T00:00:00Z");
        let back: Workitem = serde_json::from_value(value).expect("round trip");
        assert_eq!(back, item);
    }

    #[test]
    fn bytes_and_any_accept_every_client_form() {
        let buffer = serde_json::json!({"type": "Buffer", "data": [1, 2, 3]});
        assert_eq!(bytes_from_json(&buffer), Some(vec![1, 2, 3]));
        assert_eq!(
            bytes_from_json(&serde_json::json!({"1": 2, "0": 1})),
            Some(vec![1, 2])
        );
        assert_eq!(
            bytes_from_json(&serde_json::json!("AQID")),
            Some(vec![1, 2, 3])
        );
        assert_eq!(bytes_from_json(&serde_json::json!({"5": 1})), None);
        let envelope: Envelope = serde_json::from_value(serde_json::json!({
            "command": "ping", "data": {"type_url": "x", "value": "AQID"}
        }))
        .expect("envelope");
        assert_eq!(envelope.data.map(|a| a.value), Some(vec![1, 2, 3]));
    }
}
