//! JSON-in-strings, inbound: the protocol carries queries, items, projections and
//! pipelines as JSON text. They are parsed straight into BSON (key order kept, which
//! sorts and index specs depend on), with the reference's revivers:
//!
//! - ISO-8601 timestamps with fractional seconds (`2024-05-01T10:00:00.000Z`) and
//!   `/Date(ms)/` strings become dates;
//! - `"__REGEXP /pattern/flags"` (how nodeapi serialises a RegExp) becomes a regex;
//! - `{"$oid": "<24 hex>"}` and `{"$date": ...}` (MongoDB extended JSON) are understood.
//!
//! Integers that fit 32 bits become Int32 (as JavaScript drivers store them), larger
//! ones Int64; everything else with a fraction or exponent is a Double.
//!
//! Objects and arrays nest at most `MAX_DOCUMENT_DEPTH` (100) levels, MongoDB's
//! limit: every document, filter, update and pipeline a client sends is bounded
//! here, before anything recursive sees it.

use std::fmt;

use bson::{oid::ObjectId, Bson, Document};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::error::OpenCoreError;
use crate::store::engine::limits::{LimitError, MAX_DOCUMENT_DEPTH};

/// The error text a too-deep value stops the deserializer with (never shown).
const TOO_DEEP: &str = "\u{0}nesting limit";

/// Parses any JSON value.
pub fn parse_value(field: &str, text: &str) -> Result<Bson, OpenCoreError> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = BsonSeed { depth: 0 }
        .deserialize(&mut deserializer)
        .map_err(|err| {
            if err.to_string().starts_with(TOO_DEEP) {
                OpenCoreError::from(LimitError::too_deep(
                    format!("The JSON in {field}"),
                    MAX_DOCUMENT_DEPTH,
                ))
            } else {
                invalid(field, err)
            }
        })?;
    deserializer.end().map_err(|err| invalid(field, err))?;
    Ok(value)
}

/// Parses a JSON object (`null` is refused like any other non-object).
pub fn parse_document(field: &str, text: &str) -> Result<Document, OpenCoreError> {
    match parse_value(field, text)? {
        Bson::Document(document) => Ok(document),
        other => Err(OpenCoreError::InvalidJson {
            field: field.to_string(),
            reason: format!("expected an object, got {}", kind_name(&other)),
        }),
    }
}

/// The `items` of `insertmany` and `insertorupdatemany`: a non-empty JSON array of
/// objects (`Cannot create null item` otherwise), free of JavaScript operators.
pub fn parse_items(text: &str) -> Result<Vec<Document>, OpenCoreError> {
    let text = text.trim();
    if text.is_empty() || text == "null" || text == "[]" {
        return Err(OpenCoreError::NullItem);
    }
    let items = parse_documents("items", text)?;
    super::guard::refuse_javascript_in(&items)?;
    Ok(items)
}

/// Parses a JSON array of objects; a single object counts as a one-element array.
pub fn parse_documents(field: &str, text: &str) -> Result<Vec<Document>, OpenCoreError> {
    match parse_value(field, text)? {
        Bson::Document(document) => Ok(vec![document]),
        Bson::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Bson::Document(document) => Ok(document),
                other => Err(OpenCoreError::InvalidJson {
                    field: field.to_string(),
                    reason: format!("expected an array of objects, found {}", kind_name(&other)),
                }),
            })
            .collect(),
        other => Err(OpenCoreError::InvalidJson {
            field: field.to_string(),
            reason: format!("expected an array, got {}", kind_name(&other)),
        }),
    }
}

fn invalid(field: &str, err: serde_json::Error) -> OpenCoreError {
    OpenCoreError::InvalidJson {
        field: field.to_string(),
        reason: err.to_string(),
    }
}

fn kind_name(value: &Bson) -> &'static str {
    match value {
        Bson::Null => "null",
        Bson::Boolean(_) => "a boolean",
        Bson::String(_) | Bson::DateTime(_) | Bson::RegularExpression(_) => "a string",
        Bson::Array(_) => "an array",
        Bson::Document(_) => "an object",
        _ => "a number",
    }
}

/// A value at `depth` objects/arrays below the top.
struct BsonSeed {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for BsonSeed {
    type Value = Bson;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Bson, D::Error> {
        deserializer.deserialize_any(BsonVisitor { depth: self.depth })
    }
}

struct BsonVisitor {
    depth: usize,
}

impl BsonVisitor {
    /// The seed of this container's children, refused past the depth limit.
    fn children<E: de::Error>(&self) -> Result<BsonSeed, E> {
        if self.depth >= MAX_DOCUMENT_DEPTH {
            return Err(E::custom(TOO_DEEP));
        }
        Ok(BsonSeed {
            depth: self.depth + 1,
        })
    }
}

fn integer(value: i64) -> Bson {
    match i32::try_from(value) {
        Ok(small) => Bson::Int32(small),
        Err(_) => Bson::Int64(value),
    }
}

impl<'de> Visitor<'de> for BsonVisitor {
    type Value = Bson;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Bson, E> {
        Ok(Bson::Boolean(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Bson, E> {
        Ok(integer(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Bson, E> {
        Ok(match i64::try_from(v) {
            Ok(signed) => integer(signed),
            Err(_) => Bson::Double(v as f64),
        })
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Bson, E> {
        Ok(Bson::Double(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Bson, E> {
        Ok(revive(v).unwrap_or_else(|| Bson::String(v.to_string())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Bson, E> {
        Ok(revive(&v).unwrap_or(Bson::String(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Bson, E> {
        Ok(Bson::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Bson, E> {
        Ok(Bson::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Bson, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bson, A::Error> {
        self.children::<A::Error>()?;
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element_seed(self.children()?)? {
            items.push(item);
        }
        Ok(Bson::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Bson, A::Error> {
        self.children::<A::Error>()?;
        let mut document = Document::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(self.children()?)?;
            document.insert(key, value);
        }
        Ok(extended(document))
    }
}

/// `{"$oid": hex}` and `{"$date": ISO | millis | {"$numberLong": ms}}`.
fn extended(document: Document) -> Bson {
    if document.len() == 1 {
        match document.iter().next() {
            Some((key, Bson::String(hex))) if key == "$oid" => {
                if let Ok(oid) = ObjectId::parse_str(hex) {
                    return Bson::ObjectId(oid);
                }
            }
            Some((key, value)) if key == "$date" => {
                let millis = match value {
                    Bson::DateTime(date) => Some(date.timestamp_millis()),
                    Bson::String(text) => chrono::DateTime::parse_from_rfc3339(text)
                        .ok()
                        .map(|d| d.timestamp_millis()),
                    Bson::Int32(n) => Some(i64::from(*n)),
                    Bson::Int64(n) => Some(*n),
                    Bson::Double(n) if n.is_finite() => Some(*n as i64),
                    Bson::Document(inner) => inner
                        .get_str("$numberLong")
                        .ok()
                        .and_then(|s| s.parse().ok()),
                    _ => None,
                };
                if let Some(millis) = millis {
                    return Bson::DateTime(bson::DateTime::from_millis(millis));
                }
            }
            _ => {}
        }
    }
    Bson::Document(document)
}

/// The reference's string revivers; `None` keeps the string as it is.
pub fn revive(text: &str) -> Option<Bson> {
    if let Some(rest) = text.strip_prefix("__REGEXP ") {
        return parse_regex_literal(rest).map(Bson::RegularExpression);
    }
    if let Some(millis) = text
        .strip_prefix("/Date(")
        .and_then(|rest| rest.strip_suffix(")/"))
    {
        return millis
            .parse::<i64>()
            .ok()
            .map(|ms| Bson::DateTime(bson::DateTime::from_millis(ms)));
    }
    if looks_like_iso_timestamp(text) {
        if let Ok(date) = chrono::DateTime::parse_from_rfc3339(text) {
            return Some(Bson::DateTime(bson::DateTime::from_millis(
                date.timestamp_millis(),
            )));
        }
    }
    None
}

/// `YYYY-MM-DDTHH:MM:SS.f…` followed by `Z` or an offset: the shape the reference turns
/// into a date (a timestamp without fractional seconds stays a string, as there).
fn looks_like_iso_timestamp(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() >= 21
        && b.len() <= 40
        && b[4] == b'-'
        && b[7] == b'-'
        && (b[10] == b'T' || b[10] == b't')
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[20].is_ascii_digit()
}

/// `/pattern/flags` → regex (flags sorted, as MongoDB stores them).
pub fn parse_regex_literal(text: &str) -> Option<bson::Regex> {
    let body = text.strip_prefix('/')?;
    let end = body.rfind('/')?;
    let (pattern, flags) = (&body[..end], &body[end + 1..]);
    let mut options: Vec<char> = flags.chars().filter(|c| c.is_ascii_alphabetic()).collect();
    options.sort_unstable();
    options.dedup();
    Some(bson::Regex {
        pattern: pattern.to_string(),
        options: options.into_iter().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[test]
    fn keeps_key_order_and_integer_widths() {
        let d = parse_document(
            "q",
            r#"{"b": 1, "a": -1, "big": 5000000000, "f": 1.5, "u": 18446744073709551615}"#,
        )
        .unwrap();
        let keys: Vec<&str> = d.keys().map(String::as_str).collect();
        assert_eq!(keys, ["b", "a", "big", "f", "u"]);
        assert_eq!(d.get("b"), Some(&Bson::Int32(1)));
        assert_eq!(d.get("big"), Some(&Bson::Int64(5_000_000_000)));
        assert_eq!(d.get("f"), Some(&Bson::Double(1.5)));
        assert!(matches!(d.get("u"), Some(Bson::Double(_))));
    }

    #[test]
    fn revivers() {
        let d = parse_document(
            "q",
            r#"{"d": "2024-05-01T10:00:00.123Z", "o": "2024-05-01T12:00:00.5+02:00", "plain": "2024-05-01T10:00:00Z",
                "r": "__REGEXP /^ab+c/ig", "ms": "/Date(1000)/", "id": {"$oid": "5a1702fa245d9013697656fb"},
                "dt": {"$date": "2024-01-01T00:00:00Z"}, "n": [null, true]}"#,
        )
        .unwrap();
        assert_eq!(
            d.get("d"),
            Some(&Bson::DateTime(bson::DateTime::from_millis(1714557600123)))
        );
        assert_eq!(
            d.get("o"),
            Some(&Bson::DateTime(bson::DateTime::from_millis(1714557600500)))
        );
        assert_eq!(
            d.get("plain"),
            Some(&Bson::String("2024-05-01T10:00:00Z".into()))
        );
        assert_eq!(
            d.get("r"),
            Some(&Bson::RegularExpression(bson::Regex {
                pattern: "^ab+c".into(),
                options: "gi".into()
            }))
        );
        assert_eq!(
            d.get("ms"),
            Some(&Bson::DateTime(bson::DateTime::from_millis(1000)))
        );
        assert!(matches!(d.get("id"), Some(Bson::ObjectId(_))));
        assert!(matches!(d.get("dt"), Some(Bson::DateTime(_))));
        assert_eq!(
            d.get_array("n").unwrap(),
            &vec![Bson::Null, Bson::Boolean(true)]
        );
    }

    #[test]
    fn nesting_is_capped_at_the_document_depth() {
        let nest = |levels: usize| "[".repeat(levels) + &"]".repeat(levels);
        assert!(parse_value("q", &nest(MAX_DOCUMENT_DEPTH)).is_ok());
        let err = parse_value("q", &nest(MAX_DOCUMENT_DEPTH + 1)).unwrap_err();
        assert_eq!(err.code(), 2021);
        assert_eq!(
            err.to_string(),
            "The JSON in q exceeds the maximum nesting depth of 100"
        );
        let objects = |levels: usize| "{\"a\":".repeat(levels) + "1" + &"}".repeat(levels);
        assert!(parse_document("q", &objects(MAX_DOCUMENT_DEPTH)).is_ok());
        assert!(parse_document("q", &objects(MAX_DOCUMENT_DEPTH + 1)).is_err());
    }

    #[test]
    fn shapes_and_errors() {
        assert!(parse_document("query", "").is_err());
        assert!(parse_document("query", "[1]").is_err());
        assert!(parse_document("query", "{} x").is_err());
        assert_eq!(
            parse_documents("items", r#"{"a":1}"#).unwrap(),
            vec![doc! {"a": 1}]
        );
        assert_eq!(
            parse_documents("items", r#"[{"a":1},{"b":2}]"#)
                .unwrap()
                .len(),
            2
        );
        assert!(parse_documents("items", r#"[1]"#).is_err());
        let err = parse_document("query", "{").unwrap_err();
        assert!(
            err.to_string().starts_with("Invalid JSON in query:"),
            "{err}"
        );
    }
}
