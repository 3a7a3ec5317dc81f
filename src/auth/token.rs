//! Signed session tokens: HS256 with the configured secret, algorithm pinned, expiry enforced.
//! Payload shape follows the reference ("slim" tokens): `{data: {_id}, iat, exp}`;
//! everything else about the user is looked up when the token is used.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenData {
    #[serde(rename = "_id")]
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub impostor: Option<String>,
    /// The user's `_created` (unix ms) when the token was issued: a re-created id is a
    /// different user, whose `_created` differs.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub created: Option<i64>,
    /// The user's `tokengeneration` when the token was issued (password changes raise it).
    #[serde(default)]
    pub generation: i64,
}

/// Which incarnation and password generation of a user a token is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TokenBinding {
    pub created: Option<i64>,
    pub generation: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub data: TokenData,
    pub iat: u64,
    pub exp: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token expired")]
    Expired,
    #[error("invalid token: {0}")]
    Invalid(String),
}

pub struct TokenSigner {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl TokenSigner {
    pub fn new(secret: &[u8]) -> Self {
        // Only HS256 is accepted: a token whose header names another algorithm (or `none`)
        // fails validation before its signature is even looked at.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_exp = true;
        validation.required_spec_claims = ["exp"].into_iter().map(String::from).collect();
        TokenSigner {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// Issues a token for `user_id`; returns it with its expiry (unix seconds).
    pub fn issue(
        &self,
        user_id: &str,
        binding: TokenBinding,
        ttl: Duration,
    ) -> Result<(String, u64), TokenError> {
        let iat = unix_now();
        let exp = iat + ttl.as_secs().max(1);
        let claims = Claims {
            data: TokenData {
                id: user_id.to_string(),
                impostor: None,
                created: binding.created,
                generation: binding.generation,
            },
            iat,
            exp,
        };
        let token = encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|err| TokenError::Invalid(err.to_string()))?;
        Ok((token, exp))
    }

    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let token = strip_scheme(token);
        decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|err| match err.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid(err.to_string()),
            })
    }
}

/// Clients sometimes send `Bearer x` or `JWT x`.
fn strip_scheme(token: &str) -> &str {
    let token = token.trim();
    for prefix in ["Bearer ", "bearer ", "JWT ", "jwt "] {
        if let Some(rest) = token.strip_prefix(prefix) {
            return rest.trim();
        }
    }
    token
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64_helpers::*;

    mod base64_helpers {
        // Minimal URL-safe base64 (no padding) so tests can forge tokens by hand.
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        pub fn b64(input: &[u8]) -> String {
            let mut out = String::new();
            for chunk in input.chunks(3) {
                let b = [
                    chunk[0],
                    *chunk.get(1).unwrap_or(&0),
                    *chunk.get(2).unwrap_or(&0),
                ];
                let n = ((b[0] as u32) << 16) | ((b[1] as u32) << 8) | b[2] as u32;
                for i in 0..=chunk.len() {
                    out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
                }
            }
            out
        }
    }

    #[test]
    fn round_trip() {
        let signer = TokenSigner::new(b"secret");
        let (token, exp) = signer
            .issue("abc", TokenBinding::default(), Duration::from_secs(60))
            .unwrap();
        let claims = signer.verify(&token).unwrap();
        assert_eq!(claims.data.id, "abc");
        assert_eq!(claims.exp, exp);
        assert_eq!(
            signer.verify(&format!("Bearer {token}")).unwrap().data.id,
            "abc"
        );
    }

    #[test]
    fn wrong_key_and_alg_none_are_refused() {
        let (token, _) = TokenSigner::new(b"one")
            .issue("abc", TokenBinding::default(), Duration::from_secs(60))
            .unwrap();
        assert!(matches!(
            TokenSigner::new(b"two").verify(&token),
            Err(TokenError::Invalid(_))
        ));
        let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
        let body = b64(format!(
            r#"{{"data":{{"_id":"abc"}},"iat":1,"exp":{}}}"#,
            unix_now() + 100
        )
        .as_bytes());
        let forged = format!("{header}.{body}.");
        assert!(TokenSigner::new(b"one").verify(&forged).is_err());
    }

    #[test]
    fn expired_is_refused() {
        let signer = TokenSigner::new(b"secret");
        let claims = Claims {
            data: TokenData {
                id: "a".into(),
                impostor: None,
                created: None,
                generation: 0,
            },
            iat: 1,
            exp: unix_now() - 10,
        };
        let token = encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"secret"),
        )
        .unwrap();
        assert_eq!(signer.verify(&token).unwrap_err(), TokenError::Expired);
    }
}
