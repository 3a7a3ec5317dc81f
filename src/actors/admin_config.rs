//! The effective configuration for `GET /admin/api/config`, secrets masked: passwords,
//! the JWT secret, and credentials inside the MongoDB and AMQP URLs.
//!
//! The settings structs only derive `Debug` (clap builds them); their flat `Debug`
//! rendering is turned into JSON here so every new setting shows up without a change.

use serde_json::{json, Map, Value};

use crate::config::ServeConfig;

pub const MASK: &str = "********";

pub fn effective(config: &ServeConfig) -> Value {
    let secret = |value: &Option<String>| value.as_ref().map(|_| MASK);
    let mut bus = flat_debug(&format!("{:?}", config.bus));
    bus.insert(
        "amqp_url".into(),
        json!(config.bus.amqp_url.as_deref().map(mask_url)),
    );
    json!({
        "bind": config.bind.to_string(),
        "http_port": config.http_port,
        "grpc_port": config.grpc_port,
        "tcp_port": config.tcp_port,
        "pipe_path": config.pipe_path.display().to_string(),
        "no_pipe": config.no_pipe,
        "data_dir": config.data_dir.display().to_string(),
        "jwt_secret": secret(&config.jwt_secret),
        "admin_user": config.admin_user,
        "admin_password": secret(&config.admin_password),
        "short_token_ttl": format!("{:?}", config.short_token_ttl),
        "long_token_ttl": format!("{:?}", config.long_token_ttl),
        "enable_guest": config.enable_guest,
        "domain": config.domain,
        "workers": config.worker_count(),
        "shutdown_grace": format!("{:?}", config.shutdown_grace),
        "bcrypt_cost": config.bcrypt_cost,
        "mongodb_url": config.mongodb_url.as_deref().map(mask_url),
        "mongodb_db": config.mongodb_db,
        "limits": flat_debug(&format!("{:?}", config.limits)),
        "bus": bus,
        "work": flat_debug(&format!("{:?}", config.work)),
    })
}

/// `scheme://user:password@host/…` → `scheme://***@host/…` (user names are credentials too).
pub fn mask_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}***@{}", &url[..scheme_end + 3], &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// `Name { a: 1, b: "x", c: Some(2s) }` → `{"a": "1", "b": "x", "c": "Some(2s)"}`:
/// values stay text, split only at top-level commas.
fn flat_debug(text: &str) -> Map<String, Value> {
    let mut out = Map::new();
    let Some(open) = text.find('{') else {
        return out;
    };
    let body = text[open + 1..].trim_end().trim_end_matches('}').trim();
    let (mut depth, mut start, mut quoted) = (0i32, 0usize, false);
    let mut fields = Vec::new();
    for (i, c) in body.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '(' | '[' | '{' if !quoted => depth += 1,
            ')' | ']' | '}' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                fields.push(&body[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    fields.push(&body[start..]);
    for field in fields {
        if let Some((key, value)) = field.split_once(':') {
            let value = value.trim().trim_matches('"');
            let parsed = value
                .parse::<i64>()
                .map(Value::from)
                .or_else(|_| value.parse::<bool>().map(Value::from))
                .unwrap_or_else(|_| Value::from(value));
            out.insert(key.trim().to_string(), parsed);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            mask_url("amqp://guest:secret@rabbit:5672/vh"),
            "amqp://***@rabbit:5672/vh"
        );
        assert_eq!(mask_url("mongodb://u:p@a,b/?x=1"), "mongodb://***@a,b/?x=1");
        assert_eq!(mask_url("mongodb://host/db"), "mongodb://host/db");
    }

    #[test]
    fn debug_rendering_becomes_fields() {
        let map = flat_debug("L { a: 1, b: Some(\"x, y\"), c: [1, 2], d: true }");
        assert_eq!(map["a"], 1);
        assert_eq!(map["b"], "Some(\"x, y\")".trim_matches('"'));
        assert_eq!(map["c"], "[1, 2]");
        assert_eq!(map["d"], true);
    }
}
