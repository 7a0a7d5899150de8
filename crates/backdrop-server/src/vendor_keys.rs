//! Credentials for the vendor surfaces that sign requests.
//!
//! Kling (JWT HS256) and PicPik (SHA-1 signatures), and Cutout.pro's signed form, need a
//! secret that the server can read back, which a stored hash cannot give. Rather than
//! store a second secret per key, each key's pair is derived from the server's secret:
//!
//! - access key: `ak{id}x{tag}` where `tag` = the first 12 hex digits of
//!   `HMAC-SHA256(server_secret, "access:{id}")` — the id is readable, the tag proves the
//!   server issued it;
//! - secret key: `sk` + hex of `HMAC-SHA256(server_secret, "secret:{id}")`.
//!
//! `backdrop keys create` and `backdrop keys show ID` print them. Revoking the key revokes
//! them. Changing the server secret changes every pair (and every signed URL), so all
//! nodes share one secret (`server.secret`, or the generated `data_dir/secret`).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A key's access key and secret key for signing surfaces.
#[derive(Clone, PartialEq, Eq)]
pub struct VendorCredentials {
    /// Public part (PicPik `PublicKey`, Kling `iss`, Cutout.pro `uid`).
    pub access_key: String,
    /// Private part (PicPik private key, Kling secret, Cutout.pro signing `apikey`).
    pub secret_key: String,
}

impl std::fmt::Debug for VendorCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VendorCredentials")
            .field("access_key", &self.access_key)
            .field("secret_key", &"***")
            .finish()
    }
}

fn mac_hex(server_secret: &[u8], message: &str) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(server_secret) {
        Ok(mac) => mac,
        // HMAC accepts keys of any length.
        Err(_) => return String::new(),
    };
    mac.update(message.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The pair of key `id`.
pub fn credentials(server_secret: &[u8], id: i64) -> VendorCredentials {
    let tag = mac_hex(server_secret, &format!("access:{id}"));
    VendorCredentials {
        access_key: format!("ak{id}x{}", &tag[..12]),
        secret_key: format!("sk{}", mac_hex(server_secret, &format!("secret:{id}"))),
    }
}

/// The key id an access key was issued for, if the server issued it.
pub fn key_id(server_secret: &[u8], access_key: &str) -> Option<i64> {
    let rest = access_key.strip_prefix("ak")?;
    let (id, _) = rest.split_once('x')?;
    let id: i64 = id.parse().ok()?;
    let expected = credentials(server_secret, id);
    // Constant-time enough for a public identifier; the secret is what authenticates.
    (expected.access_key == access_key).then_some(id)
}

/// The longest a signed credential may stay valid, counted from now: a signature with an
/// expiry further ahead (a Cutout.pro `signExpireTime`, a Kling JWT `exp`) is refused, so
/// a leaked one cannot work for ever.
pub const MAX_SIGNATURE_LIFETIME_SECS: i64 = 24 * 60 * 60;

/// Whether `a` and `b` are equal, in time that depends only on their lengths (signature
/// comparisons must not tell an attacker how many leading bytes were right).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_stable_distinct_and_verifiable() {
        let a = credentials(b"server", 7);
        assert_eq!(a, credentials(b"server", 7));
        assert_ne!(a.secret_key, credentials(b"server", 8).secret_key);
        assert_ne!(a.secret_key, credentials(b"other", 7).secret_key);
        assert_eq!(key_id(b"server", &a.access_key), Some(7));
        assert_eq!(key_id(b"other", &a.access_key), None);
        assert_eq!(key_id(b"server", "ak7x000000000000"), None);
        assert_eq!(key_id(b"server", "garbage"), None);
        assert!(!format!("{a:?}").contains(&a.secret_key));
    }
}
