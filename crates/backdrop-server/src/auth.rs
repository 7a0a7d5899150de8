//! API keys: making them, and finding the key a request carries.
//!
//! A key is `bd_` followed by 32 random base62 characters. Only its SHA-256 (hex) is
//! stored; the plaintext is shown once when the key is made. A request carries it as
//! `Authorization: Bearer KEY` or `X-API-Key: KEY`.

use crate::error::ApiError;
use axum::http::HeaderMap;
use backdrop_store::{ApiKey, NewKey, TaskRepo};
use rand::Rng;
use sha2::{Digest, Sha256};

/// Hex SHA-256 of a key's plaintext: what is stored and looked up.
pub fn hash_key(plaintext: &str) -> String {
    hex::encode(Sha256::digest(plaintext.as_bytes()))
}

/// A new random key's plaintext.
pub fn generate_key() -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rngs::OsRng;
    let body: String =
        (0..32).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect();
    format!("bd_{body}")
}

/// Makes and stores a key; returns the stored record and the plaintext (shown once).
pub async fn create_key(
    repo: &dyn TaskRepo,
    name: &str,
    balance: Option<i64>,
    now: i64,
) -> Result<(ApiKey, String), backdrop_store::StoreError> {
    let plaintext = generate_key();
    let key = repo
        .create_key(
            NewKey {
                name: name.to_string(),
                hash: hash_key(&plaintext),
                prefix: plaintext[..7].to_string(),
                balance,
            },
            now,
        )
        .await?;
    Ok((key, plaintext))
}

/// The key's plaintext as the request carries it, if any.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(value.trim());
    }
    let auth = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = auth.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The active key a request carries: 401 when none is presented or it is unknown or
/// revoked.
pub async fn authenticate(repo: &dyn TaskRepo, headers: &HeaderMap) -> Result<ApiKey, ApiError> {
    let plaintext = presented_key(headers).filter(|k| !k.is_empty()).ok_or_else(|| {
        ApiError::unauthorized(
            "an API key is required: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
        )
    })?;
    repo.key_by_hash(&hash_key(plaintext))
        .await?
        .ok_or_else(|| ApiError::unauthorized("the API key is unknown or revoked"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn keys_are_random_and_hashed() {
        let (a, b) = (generate_key(), generate_key());
        assert_ne!(a, b);
        assert_eq!(a.len(), 35);
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn both_headers_are_read() {
        let mut h = HeaderMap::new();
        assert_eq!(presented_key(&h), None);
        h.insert("authorization", HeaderValue::from_static("Bearer bd_x"));
        assert_eq!(presented_key(&h), Some("bd_x"));
        h.insert("x-api-key", HeaderValue::from_static("bd_y"));
        assert_eq!(presented_key(&h), Some("bd_y"));
        let mut basic = HeaderMap::new();
        basic.insert("authorization", HeaderValue::from_static("Basic Zm9v"));
        assert_eq!(presented_key(&basic), None);
    }
}
