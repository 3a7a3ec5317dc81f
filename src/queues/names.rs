//! Queue and exchange names: what clients may ask for, and the temporary names the
//! server makes up.

use rand::distr::{Alphanumeric, SampleString};

use crate::error::OpenCoreError;

/// The reference server's own queue and exchange: no client may use it.
pub const RESERVED: &str = "openflow";

/// AMQP's limit on queue and exchange names.
const MAX_NAME_BYTES: usize = 255;

/// Random part of a temporary queue name: long enough that nobody guesses another
/// connection's reply queue (the reference used 9 characters).
const TEMPORARY_SUFFIX_LEN: usize = 24;

/// A name as the server uses it: lower-cased (the reference does), checked.
/// `what` names the field for errors ("queuename", "exchangename", "replyto").
pub fn normalise(name: &str, what: &str) -> Result<String, OpenCoreError> {
    let name = name.trim().to_lowercase();
    if name.len() > MAX_NAME_BYTES {
        return Err(OpenCoreError::BadRequest(format!(
            "{what} is longer than {MAX_NAME_BYTES} bytes"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(OpenCoreError::BadRequest(format!(
            "{what} contains control characters"
        )));
    }
    if is_reserved(&name) {
        return Err(OpenCoreError::AccessDenied);
    }
    Ok(name)
}

/// `openflow`, the dead-letter exchange and the server's own queues.
fn is_reserved(name: &str) -> bool {
    name == RESERVED || name == crate::bus::DEAD_LETTER_EXCHANGE || name.starts_with("opencore.")
}

/// Whether a `registerqueue` name asks for a temporary queue: empty, or an `amq.*`
/// name (the broker's own namespace).
pub fn wants_temporary(name: &str) -> bool {
    name.is_empty() || name.starts_with("amq.")
}

/// `<agent>.<random>`: the client's agent (what it called itself at sign-in) when it is
/// a plain word, else `unknown`.
pub fn temporary(agent: &str) -> String {
    let agent = agent.trim().to_lowercase();
    let prefix = if !agent.is_empty()
        && agent.len() <= 32
        && agent
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        agent
    } else {
        "unknown".to_string()
    };
    let suffix = Alphanumeric
        .sample_string(&mut rand::rng(), TEMPORARY_SUFFIX_LEN)
        .to_lowercase();
    format!("{prefix}.{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lower_cased_and_reserved_ones_refused() {
        assert_eq!(normalise(" MyQueue ", "queuename").unwrap(), "myqueue");
        for reserved in ["openflow", "OpenFlow", "openflow-dlx", "opencore.dlx"] {
            assert_eq!(
                normalise(reserved, "queuename"),
                Err(OpenCoreError::AccessDenied),
                "{reserved}"
            );
        }
        assert!(normalise(&"a".repeat(256), "queuename").is_err());
        assert!(normalise("a\u{0}b", "queuename").is_err());
    }

    #[test]
    fn temporary_names_are_unique_and_prefixed() {
        let a = temporary("Rust");
        let b = temporary("rust");
        assert!(a.starts_with("rust."), "{a}");
        assert_ne!(a, b);
        assert_eq!(a.len(), "rust.".len() + TEMPORARY_SUFFIX_LEN);
        assert!(temporary("evil.agent/../x").starts_with("unknown."));
        assert!(temporary("").starts_with("unknown."));
        assert!(wants_temporary(""));
        assert!(wants_temporary("amq.gen-1"));
        assert!(!wants_temporary("jobs"));
    }
}
