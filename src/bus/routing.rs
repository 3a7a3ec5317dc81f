//! Exchange routing rules, as RabbitMQ applies them: which bindings of an exchange a
//! published message matches. Pure functions, shared by the embedded bus (the AMQP bus
//! leaves routing to the broker) and tested against RabbitMQ's edge cases.

use super::ExchangeKind;

/// Whether a binding (`binding_key`, with its `arguments`) of an exchange of `kind`
/// takes a message published with `routing_key` and `headers`.
pub fn matches(
    kind: ExchangeKind,
    binding_key: &str,
    arguments: &[(String, String)],
    routing_key: &str,
    headers: &[(String, String)],
) -> bool {
    match kind {
        ExchangeKind::Direct => direct_matches(binding_key, routing_key),
        ExchangeKind::Fanout => true,
        ExchangeKind::Topic => topic_matches(binding_key, routing_key),
        ExchangeKind::Headers => headers_match(arguments, headers),
    }
}

/// Direct exchange: the routing key equals the binding key, byte for byte.
pub fn direct_matches(binding_key: &str, routing_key: &str) -> bool {
    binding_key == routing_key
}

/// Topic exchange: words separated by `.`; in the binding pattern `*` stands for
/// exactly one word and `#` for zero or more. An empty key has no words (so `#`
/// matches it and `*` does not); `a.` has two words, `a` and the empty word.
///
/// Greedy matching with a backtrack point at the last `#` (as for shell globs): no
/// allocation, and O(words × words) at worst however many `#` a pattern holds.
pub fn topic_matches(pattern: &str, routing_key: &str) -> bool {
    let mut pat = Words::new(pattern);
    let mut key = Words::new(routing_key);
    // Pattern just after the last `#` seen, and where in the key that `#` stops.
    let mut backtrack: Option<(Words<'_>, Words<'_>)> = None;
    loop {
        match pat.next() {
            Some("#") => {
                backtrack = Some((pat.clone(), key.clone()));
                continue;
            }
            Some(word) => {
                if let Some(got) = key.next() {
                    if word == "*" || word == got {
                        continue;
                    }
                }
            }
            None => {
                if key.clone().next().is_none() {
                    return true;
                }
            }
        }
        // Mismatch: let the last `#` swallow one more word and retry after it.
        let Some((after_hash, hash_end)) = backtrack.as_mut() else {
            return false;
        };
        if hash_end.next().is_none() {
            return false;
        }
        pat = after_hash.clone();
        key = hash_end.clone();
    }
}

/// The words of a topic key or pattern (RabbitMQ's split: `""` has none).
#[derive(Clone)]
struct Words<'a> {
    rest: Option<&'a str>,
}

impl<'a> Words<'a> {
    fn new(text: &'a str) -> Words<'a> {
        Words {
            rest: (!text.is_empty()).then_some(text),
        }
    }
}

impl<'a> Iterator for Words<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let rest = self.rest?;
        match rest.split_once('.') {
            Some((word, tail)) => {
                self.rest = Some(tail);
                Some(word)
            }
            None => {
                self.rest = None;
                Some(rest)
            }
        }
    }
}

/// Headers exchange: the binding's `x-match` argument (`all`, the default, or `any`;
/// `all-with-x` / `any-with-x` also compare the other `x-` arguments) decides whether
/// every other argument or at least one must be a message header with the same value.
/// Arguments starting with `x-` are otherwise not compared. With nothing to compare,
/// `all` matches every message and `any` none (RabbitMQ's rule), so a binding without
/// arguments takes every message.
pub fn headers_match(arguments: &[(String, String)], headers: &[(String, String)]) -> bool {
    let mode = arguments
        .iter()
        .find(|(name, _)| name == "x-match")
        .map(|(_, value)| value.as_str())
        .unwrap_or("all");
    let (any, with_x) = match mode {
        "any" => (true, false),
        "any-with-x" => (true, true),
        "all-with-x" => (false, true),
        // RabbitMQ refuses other values at bind time; here they read as the default.
        _ => (false, false),
    };
    let mut compared = arguments
        .iter()
        .filter(|(name, _)| name != "x-match" && (with_x || !name.starts_with("x-")))
        .map(|(name, value)| headers.iter().any(|(h, v)| h == name && v == value));
    if any {
        compared.any(|hit| hit)
    } else {
        compared.all(|hit| hit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn direct_is_exact() {
        assert!(direct_matches("a.b", "a.b"));
        assert!(direct_matches("", ""));
        assert!(!direct_matches("a.b", "a.B"));
        assert!(!direct_matches("a", ""));
        assert!(!direct_matches("#", "a"));
    }

    #[test]
    fn topic_literal_and_star() {
        assert!(topic_matches("a.b.c", "a.b.c"));
        assert!(!topic_matches("a.b.c", "a.b"));
        assert!(!topic_matches("a.b", "a.b.c"));
        assert!(topic_matches("a.*.c", "a.b.c"));
        assert!(topic_matches("a.*.c", "a..c"));
        assert!(!topic_matches("a.*.c", "a.c"));
        assert!(!topic_matches("a.*.c", "a.b.b.c"));
        assert!(topic_matches("*", "a"));
        assert!(!topic_matches("*", ""));
        assert!(!topic_matches("*", "a.b"));
        assert!(topic_matches("*.*", "a.b"));
        assert!(topic_matches("*.*", "a."));
        assert!(topic_matches("*.*", "."));
    }

    #[test]
    fn topic_hash() {
        assert!(topic_matches("#", ""));
        assert!(topic_matches("#", "a"));
        assert!(topic_matches("#", "a.b.c"));
        assert!(topic_matches("a.#", "a"));
        assert!(topic_matches("a.#", "a.b"));
        assert!(topic_matches("a.#", "a.b.c"));
        assert!(!topic_matches("a.#", "b.a"));
        assert!(!topic_matches("a.#", ""));
        assert!(topic_matches("#.b", "b"));
        assert!(topic_matches("#.b", "a.b"));
        assert!(topic_matches("#.b", "x.y.b"));
        assert!(!topic_matches("#.b", "b.a"));
        assert!(topic_matches("a.#.b", "a.b"));
        assert!(topic_matches("a.#.b", "a.x.y.b"));
        assert!(topic_matches("a.#.b", "a.b.b"));
        assert!(!topic_matches("a.#.b", "a.b.c"));
        assert!(topic_matches("#.#", ""));
        assert!(topic_matches("#.*", "a"));
        assert!(!topic_matches("#.*", ""));
        assert!(topic_matches("#.a.#.b.#", "x.a.y.b.z"));
        assert!(!topic_matches("#.a.#.b.#", "x.b.y.a.z"));
        assert!(topic_matches("*.#.*", "a.b"));
        assert!(!topic_matches("*.#.*", "a"));
    }

    #[test]
    fn topic_empty_words() {
        assert!(topic_matches("", ""));
        assert!(!topic_matches("", "a"));
        assert!(!topic_matches("a", ""));
        assert!(topic_matches("a.", "a."));
        assert!(!topic_matches("a.", "a"));
        assert!(topic_matches("a.#", "a."));
    }

    #[test]
    fn topic_many_hashes_stay_fast() {
        let pattern = vec!["#"; 40].join(".") + ".z";
        let key = vec!["a"; 200].join(".");
        assert!(!topic_matches(&pattern, &key));
        assert!(topic_matches(&pattern, &(key + ".z")));
    }

    #[test]
    fn headers_all_and_any() {
        let headers = args(&[("format", "pdf"), ("type", "report")]);
        assert!(headers_match(&[], &headers));
        assert!(headers_match(&[], &[]));
        assert!(headers_match(&args(&[("format", "pdf")]), &headers));
        assert!(headers_match(
            &args(&[("format", "pdf"), ("type", "report")]),
            &headers
        ));
        assert!(!headers_match(
            &args(&[("format", "pdf"), ("type", "log")]),
            &headers
        ));
        assert!(!headers_match(&args(&[("format", "zip")]), &headers));
        assert!(!headers_match(&args(&[("missing", "x")]), &headers));
        let any = args(&[("x-match", "any"), ("format", "zip"), ("type", "report")]);
        assert!(headers_match(&any, &headers));
        let none = args(&[("x-match", "any"), ("format", "zip"), ("type", "log")]);
        assert!(!headers_match(&none, &headers));
        // `any` with nothing to compare matches nothing (RabbitMQ).
        assert!(!headers_match(&args(&[("x-match", "any")]), &headers));
        assert!(headers_match(&args(&[("x-match", "all")]), &headers));
    }

    #[test]
    fn headers_x_arguments() {
        let headers = args(&[("x-tag", "1"), ("a", "b")]);
        // Plain modes ignore other x- arguments.
        assert!(headers_match(
            &args(&[("x-tag", "2"), ("a", "b")]),
            &headers
        ));
        assert!(!headers_match(
            &args(&[("x-match", "all-with-x"), ("x-tag", "2"), ("a", "b")]),
            &headers
        ));
        assert!(headers_match(
            &args(&[("x-match", "all-with-x"), ("x-tag", "1"), ("a", "b")]),
            &headers
        ));
        assert!(headers_match(
            &args(&[("x-match", "any-with-x"), ("x-tag", "1"), ("a", "c")]),
            &headers
        ));
        assert!(!headers_match(
            &args(&[("x-match", "any"), ("x-tag", "1"), ("a", "c")]),
            &headers
        ));
    }

    #[test]
    fn dispatch_by_kind() {
        let h = args(&[("k", "v")]);
        assert!(matches(ExchangeKind::Fanout, "x", &[], "y", &h));
        assert!(matches(ExchangeKind::Direct, "x", &[], "x", &h));
        assert!(!matches(ExchangeKind::Direct, "x", &[], "y", &h));
        assert!(matches(ExchangeKind::Topic, "x.*", &[], "x.y", &h));
        assert!(!matches(ExchangeKind::Topic, "x.*", &[], "x", &h));
        assert!(matches(ExchangeKind::Headers, "ignored", &[], "y", &h));
        assert!(!matches(
            ExchangeKind::Headers,
            "",
            &args(&[("k", "w")]),
            "",
            &h
        ));
    }
}
