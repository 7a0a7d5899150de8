//! Images at rest: the blob store and signed URLs.
//!
//! This module owns two things:
//!
//! - [`BlobStore`]: result images, previews and watermarked variants under keys such as
//!   `tasks/<uid>/1.png`, kept on the local disk ([`BlobConfig::Filesystem`], the
//!   default) or in any S3-compatible object store ([`BlobConfig::S3`]). Both go through
//!   the `object_store` crate, so API nodes and workers on different machines share one
//!   S3 bucket with no code of our own speaking S3.
//! - [`UrlSigner`]: the HMAC-signed, expiring query strings that result URLs carry, so a
//!   file can be served without an API key yet only to someone the API handed a link.

use crate::StoreError;
use bytes::Bytes;
use futures::TryStreamExt;
use hmac::{Hmac, Mac};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// Where blobs live (`[storage]` in the configuration).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BlobConfig {
    /// A folder on the local disk.
    Filesystem {
        /// The folder (created if missing).
        root: PathBuf,
    },
    /// An S3-compatible object store.
    S3 {
        /// Bucket.
        bucket: String,
        /// Endpoint URL (for non-AWS stores), e.g. `http://127.0.0.1:9000`.
        endpoint: Option<String>,
        /// Region.
        region: Option<String>,
        /// Access key id.
        access_key_id: Option<String>,
        /// Secret access key (never logged).
        secret_access_key: Option<backdrop_core::Secret>,
        /// Allow plain HTTP endpoints. An `http://` endpoint allows it by itself: naming
        /// one is the operator's choice of plain HTTP.
        #[serde(default)]
        allow_http: bool,
    },
}

/// The longest key accepted, in bytes: S3's own limit.
const MAX_KEY_LEN: usize = 1024;

/// A blob store: bytes under slash-separated keys such as `tasks/<uid>/1.png`.
///
/// Cheap to clone (the backend is shared). Keys are checked before they reach the
/// backend: an empty key, a leading `/`, an empty segment (`a//b`, `a/`), any `..` or a
/// `.` segment, a backslash or a control character is refused with [`StoreError::Blob`],
/// so a key built from request data can never name a file outside the store's root.
#[derive(Clone)]
pub struct BlobStore {
    inner: Arc<dyn ObjectStore>,
    /// Where the blobs are, for `Debug` and error messages; never holds a credential.
    describe: String,
}

impl fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the backend's own Debug: it carries the S3 configuration, and we keep even
        // the access key id out of logs.
        write!(f, "BlobStore({})", self.describe)
    }
}

impl BlobStore {
    /// Opens the store described by `config`.
    ///
    /// A filesystem root is created if missing. An S3 store is only configured here, not
    /// contacted: a wrong endpoint or credential shows on the first request.
    pub fn open(config: &BlobConfig) -> Result<BlobStore, StoreError> {
        match config {
            BlobConfig::Filesystem { root } => {
                std::fs::create_dir_all(root).map_err(|e| {
                    StoreError::Blob(format!("cannot create blob folder {}: {e}", root.display()))
                })?;
                let fs = LocalFileSystem::new_with_prefix(root).map_err(|e| {
                    StoreError::Blob(format!("cannot open blob folder {}: {e}", root.display()))
                })?;
                Ok(BlobStore {
                    inner: Arc::new(fs),
                    describe: format!("filesystem {}", root.display()),
                })
            }
            BlobConfig::S3 {
                bucket,
                endpoint,
                region,
                access_key_id,
                secret_access_key,
                allow_http,
            } => {
                if bucket.trim().is_empty() {
                    return Err(StoreError::Config("storage: the S3 bucket is empty".into()));
                }
                // `new`, not `from_env`: the configuration is the one source of truth
                // (the server merges file, environment and flags before this point).
                let mut builder = AmazonS3Builder::new()
                    .with_bucket_name(bucket)
                    .with_region(region.as_deref().unwrap_or("us-east-1"))
                    .with_allow_http(*allow_http || endpoint_is_plain_http(endpoint.as_deref()));
                if let Some(endpoint) = endpoint {
                    // Custom endpoints (MinIO, Garage, moto, ...) are reached by address,
                    // often an IP, where `bucket.host` names do not resolve.
                    builder =
                        builder.with_endpoint(endpoint).with_virtual_hosted_style_request(false);
                }
                match (access_key_id, secret_access_key) {
                    (Some(id), Some(secret)) => {
                        builder =
                            builder.with_access_key_id(id).with_secret_access_key(secret.expose());
                    }
                    // Without keys object_store falls back to the environment's
                    // instance or container credentials.
                    (None, None) => {}
                    _ => {
                        return Err(StoreError::Config(
                            "storage: set both access_key_id and secret_access_key, or neither"
                                .into(),
                        ))
                    }
                }
                let s3 = builder
                    .build()
                    .map_err(|e| StoreError::Config(format!("storage: S3 configuration: {e}")))?;
                let describe = match endpoint {
                    Some(endpoint) => format!("s3 {endpoint}/{bucket}"),
                    None => format!("s3 bucket {bucket}"),
                };
                Ok(BlobStore { inner: Arc::new(s3), describe })
            }
        }
    }

    /// Stores `bytes` under `key`, replacing what was there.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
        let path = object_path(key)?;
        self.inner
            .put(&path, PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|e| self.error("put", key, e))
    }

    /// The bytes under `key`; [`StoreError::BlobNotFound`] if there are none.
    pub async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let path = object_path(key)?;
        let result = match self.inner.get(&path).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(StoreError::BlobNotFound(key.to_owned()))
            }
            Err(e) => return Err(self.error("get", key, e)),
        };
        match result.bytes().await {
            Ok(bytes) => Ok(bytes),
            // Deleted between the open and the read (the sweeper racing a download).
            Err(object_store::Error::NotFound { .. }) => {
                Err(StoreError::BlobNotFound(key.to_owned()))
            }
            Err(e) => Err(self.error("get", key, e)),
        }
    }

    /// Deletes `key`; deleting a missing key is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = object_path(key)?;
        match self.inner.delete(&path).await {
            // S3 answers a delete of a missing key with success, the local disk with
            // NotFound; the sweeper may retry a delete, so both mean "gone".
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error("delete", key, e)),
        }
    }

    /// Writes a probe object, reads it back and deletes it: proves at start that the
    /// store is reachable, the credentials work and the bucket is writable.
    pub async fn probe(&self) -> Result<(), StoreError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let key = format!("probes/{}-{nanos}", std::process::id());
        let body = Bytes::from(format!("backdrop probe {key}"));
        self.put(&key, body.clone()).await?;
        let read = self.get(&key).await;
        let deleted = self.delete(&key).await;
        if read? != body {
            return Err(StoreError::Blob(format!(
                "{}: a probe object read back different bytes",
                self.describe
            )));
        }
        deleted
    }

    /// Whether the store answers a metadata request (for readiness checks, which must
    /// stay cheap: nothing is written).
    pub async fn reachable(&self) -> Result<(), StoreError> {
        let path = ObjectPath::from("probes/ready");
        match self.inner.head(&path).await {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error("head", "probes/ready", e)),
        }
    }

    /// Deletes every blob whose key is under `folder/` and returns how many there were;
    /// a folder with nothing in it is not an error.
    pub async fn delete_folder(&self, folder: &str) -> Result<usize, StoreError> {
        let prefix = object_path(folder)?;
        let found: Vec<ObjectPath> = self
            .inner
            .list(Some(&prefix))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .map_err(|e| self.error("list", folder, e))?;
        for path in &found {
            match self.inner.delete(path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.error("delete", path.as_ref(), e)),
            }
        }
        Ok(found.len())
    }

    /// The same store with its backend wrapped by `wrap`, which sees every call after the
    /// key checks (to observe or delay them, or to make them fail in tests).
    pub fn wrapped(self, wrap: impl FnOnce(Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore>) -> Self {
        BlobStore { inner: wrap(self.inner), describe: self.describe }
    }

    fn error(&self, op: &str, key: &str, e: object_store::Error) -> StoreError {
        StoreError::Blob(format!("{op} '{key}' in {}: {e}", self.describe))
    }
}

/// Whether an S3 endpoint is a plain `http://` URL.
fn endpoint_is_plain_http(endpoint: Option<&str>) -> bool {
    endpoint.is_some_and(|e| e.trim().to_ascii_lowercase().starts_with("http://"))
}

/// Checks `key` and turns it into an object store path.
fn object_path(key: &str) -> Result<ObjectPath, StoreError> {
    check_key(key)?;
    // `Path::parse` keeps the segments as given (no percent-encoding) and itself
    // refuses empty and dot segments; `check_key` already did, with our own messages.
    ObjectPath::parse(key).map_err(|e| StoreError::Blob(format!("invalid blob key '{key}': {e}")))
}

/// Refuses keys that could escape the store's root or that backends treat differently.
fn check_key(key: &str) -> Result<(), StoreError> {
    let refuse = |why: &str| Err(StoreError::Blob(format!("invalid blob key {key:?}: {why}")));
    if key.is_empty() {
        return refuse("empty");
    }
    if key.len() > MAX_KEY_LEN {
        return refuse("longer than 1024 bytes");
    }
    if key.starts_with('/') {
        return refuse("starts with '/'");
    }
    if key.contains("..") {
        return refuse("contains '..'");
    }
    if key.chars().any(|c| c == '\\' || c.is_control()) {
        return refuse("contains a backslash or a control character");
    }
    for segment in key.split('/') {
        if segment.is_empty() {
            return refuse("has an empty segment");
        }
        if segment == "." {
            return refuse("has a '.' segment");
        }
    }
    Ok(())
}

/// Why a signed URL was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The signature does not match (tampered path, expiry or signature): answer 403.
    #[error("invalid signature")]
    Invalid,
    /// The signature matches but the expiry passed: answer 410.
    #[error("link expired")]
    Expired,
}

type HmacSha256 = Hmac<Sha256>;

/// Signs and verifies blob URLs: `sig = hex(HMAC-SHA256(secret, key + "\n" + exp))`.
///
/// The key and the expiry are both under the MAC, so neither can be changed without
/// the signature failing. The newline separates them unambiguously: keys never contain
/// control characters (see [`BlobStore`]), so `("a", 12)` and `("a\n1", 2)` cannot
/// collide.
#[derive(Clone)]
pub struct UrlSigner {
    secret: Vec<u8>,
}

impl fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UrlSigner(***)")
    }
}

impl UrlSigner {
    /// A signer with this secret. Every node that serves the files must use the same
    /// secret; it should be at least 32 random bytes.
    pub fn new(secret: &[u8]) -> Self {
        UrlSigner { secret: secret.to_vec() }
    }

    fn mac(&self, key: &str, expires_at: i64) -> HmacSha256 {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(key.as_bytes());
        mac.update(b"\n");
        mac.update(expires_at.to_string().as_bytes());
        mac
    }

    /// The query string `exp=EXPIRES&sig=HEX` for `key`, valid until `expires_at` (unix
    /// seconds).
    pub fn sign(&self, key: &str, expires_at: i64) -> String {
        let sig = hex::encode(self.mac(key, expires_at).finalize().into_bytes());
        format!("exp={expires_at}&sig={sig}")
    }

    /// Checks a signature at time `now` (unix seconds).
    ///
    /// The signature is checked first, in constant time, and only then the expiry: a
    /// forged link is always [`SignatureError::Invalid`], so answers reveal nothing about
    /// expiries to someone without a valid signature. A link is still valid at
    /// `now == expires_at` and [`SignatureError::Expired`] from the next second on.
    pub fn verify(
        &self,
        key: &str,
        expires_at: i64,
        sig: &str,
        now: i64,
    ) -> Result<(), SignatureError> {
        let sig = hex::decode(sig).map_err(|_| SignatureError::Invalid)?;
        self.mac(key, expires_at).verify_slice(&sig).map_err(|_| SignatureError::Invalid)?;
        if now > expires_at {
            return Err(SignatureError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "tasks/t_abc123/1.png";

    fn parts(query: &str) -> (i64, String) {
        let (exp, sig) = query
            .strip_prefix("exp=")
            .and_then(|rest| rest.split_once("&sig="))
            .expect("exp=..&sig=..");
        (exp.parse().expect("numeric exp"), sig.to_owned())
    }

    #[test]
    fn signed_query_has_the_documented_shape() {
        let signer = UrlSigner::new(b"secret");
        let query = signer.sign(KEY, 1_700_000_000);
        let (exp, sig) = parts(&query);
        assert_eq!(exp, 1_700_000_000);
        assert_eq!(sig.len(), 64);
        assert!(sig.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        // Same inputs, same link: URLs are stable across nodes sharing the secret.
        assert_eq!(UrlSigner::new(b"secret").sign(KEY, 1_700_000_000), query);
    }

    #[test]
    fn matches_an_independent_hmac() {
        // RFC 4231 test case 2 key, over our message layout.
        let mut mac = <HmacSha256 as Mac>::new_from_slice(b"Jefe").expect("hmac key");
        mac.update(b"tasks/x/1.png\n42");
        let expected = hex::encode(mac.finalize().into_bytes());
        assert_eq!(
            UrlSigner::new(b"Jefe").sign("tasks/x/1.png", 42),
            format!("exp=42&sig={expected}")
        );
    }

    #[test]
    fn valid_signature_verifies_until_expiry_inclusive() {
        let signer = UrlSigner::new(b"secret");
        let (exp, sig) = parts(&signer.sign(KEY, 1000));
        assert_eq!(signer.verify(KEY, exp, &sig, 0), Ok(()));
        assert_eq!(signer.verify(KEY, exp, &sig, 999), Ok(()));
        assert_eq!(signer.verify(KEY, exp, &sig, 1000), Ok(()));
        assert_eq!(signer.verify(KEY, exp, &sig, 1001), Err(SignatureError::Expired));
        assert_eq!(signer.verify(KEY, exp, &sig, i64::MAX), Err(SignatureError::Expired));
    }

    #[test]
    fn tampered_key_is_invalid() {
        let signer = UrlSigner::new(b"secret");
        let (exp, sig) = parts(&signer.sign(KEY, 1000));
        for other in ["tasks/t_abc123/2.png", "tasks/t_abc124/1.png", "tasks/t_abc123/1.png ", ""] {
            assert_eq!(signer.verify(other, exp, &sig, 0), Err(SignatureError::Invalid), "{other}");
        }
    }

    #[test]
    fn tampered_expiry_is_invalid_even_when_it_would_extend_the_link() {
        let signer = UrlSigner::new(b"secret");
        let (exp, sig) = parts(&signer.sign(KEY, 1000));
        assert_eq!(signer.verify(KEY, exp + 1, &sig, 0), Err(SignatureError::Invalid));
        assert_eq!(signer.verify(KEY, i64::MAX, &sig, 5000), Err(SignatureError::Invalid));
        assert_eq!(signer.verify(KEY, exp - 1, &sig, 0), Err(SignatureError::Invalid));
    }

    #[test]
    fn signature_is_checked_before_expiry() {
        // A forged link past its expiry is Invalid, not Expired: the answer must not
        // tell a forger anything.
        let signer = UrlSigner::new(b"secret");
        let (exp, _) = parts(&signer.sign(KEY, 1000));
        assert_eq!(signer.verify(KEY, exp, &"0".repeat(64), 2000), Err(SignatureError::Invalid));
    }

    #[test]
    fn tampered_or_malformed_signature_is_invalid() {
        let signer = UrlSigner::new(b"secret");
        let (exp, sig) = parts(&signer.sign(KEY, 1000));
        let mut flipped = sig.clone().into_bytes();
        flipped[10] = if flipped[10] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).expect("ascii");
        for bad in [
            flipped.as_str(),
            &sig[..62],          // truncated
            &sig[..0],           // empty
            &format!("{sig}00"), // extended
            &sig.to_uppercase(), // hex decodes case-insensitively; still the same MAC
            "zz",                // not hex
        ] {
            let expected =
                if bad.eq_ignore_ascii_case(&sig) { Ok(()) } else { Err(SignatureError::Invalid) };
            assert_eq!(signer.verify(KEY, exp, bad, 0), expected, "{bad}");
        }
    }

    #[test]
    fn another_secret_is_invalid() {
        let (exp, sig) = parts(&UrlSigner::new(b"secret").sign(KEY, 1000));
        assert_eq!(
            UrlSigner::new(b"other").verify(KEY, exp, &sig, 0),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn debug_hides_the_secret() {
        assert_eq!(format!("{:?}", UrlSigner::new(b"hunter2")), "UrlSigner(***)");
    }

    #[test]
    fn keys_are_checked() {
        for good in ["tasks/t_1/1.png", "a", "tasks/t_1/preview.webp", "in/ab-cd_EF.1.jpg"] {
            assert!(check_key(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "/tasks/x/1.png",
            "tasks//1.png",
            "tasks/x/",
            "tasks/../../etc/passwd",
            "..",
            "tasks/x/..",
            "a..b",
            "tasks/./1.png",
            "tasks\\x",
            "tasks/x\n/1.png",
        ] {
            assert!(matches!(check_key(bad), Err(StoreError::Blob(_))), "{bad:?}");
        }
        assert!(check_key(&"a".repeat(MAX_KEY_LEN)).is_ok());
        assert!(check_key(&"a".repeat(MAX_KEY_LEN + 1)).is_err());
    }

    #[tokio::test]
    async fn filesystem_store_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("blobs/nested");
        let store = BlobStore::open(&BlobConfig::Filesystem { root: root.clone() }).expect("open");
        assert!(root.is_dir(), "root is created");

        store.put(KEY, Bytes::from_static(b"one")).await.expect("put");
        assert_eq!(store.get(KEY).await.expect("get"), Bytes::from_static(b"one"));
        // The file is where an operator would look for it.
        assert_eq!(std::fs::read(root.join(KEY)).expect("on disk"), b"one");

        store.put(KEY, Bytes::from_static(b"two")).await.expect("replace");
        assert_eq!(store.get(KEY).await.expect("get"), Bytes::from_static(b"two"));

        store.delete(KEY).await.expect("delete");
        assert!(matches!(store.get(KEY).await, Err(StoreError::BlobNotFound(k)) if k == KEY));
        store.delete(KEY).await.expect("deleting a missing key is fine");
    }

    #[tokio::test]
    async fn delete_folder_takes_everything_under_it_and_nothing_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            BlobStore::open(&BlobConfig::Filesystem { root: dir.path().into() }).expect("open");
        for key in ["tasks/ab/input", "tasks/ab/1.png", "tasks/ab/deep/2.png", "tasks/abc/input"] {
            store.put(key, Bytes::from_static(b"x")).await.expect("put");
        }
        assert_eq!(store.delete_folder("tasks/ab").await.expect("deletes"), 3);
        for key in ["tasks/ab/input", "tasks/ab/1.png", "tasks/ab/deep/2.png"] {
            assert!(matches!(store.get(key).await, Err(StoreError::BlobNotFound(_))), "{key}");
        }
        assert!(store.get("tasks/abc/input").await.is_ok(), "a longer name is another folder");
        assert_eq!(store.delete_folder("tasks/ab").await.expect("empty"), 0);
        assert_eq!(store.delete_folder("tasks/none").await.expect("missing"), 0);
        assert!(matches!(store.delete_folder("../x").await, Err(StoreError::Blob(_))));
    }

    #[tokio::test]
    async fn filesystem_store_refuses_escaping_keys_without_touching_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        let store = BlobStore::open(&BlobConfig::Filesystem { root }).expect("open");
        let outside = dir.path().join("outside.png");
        let err = store.put("../outside.png", Bytes::from_static(b"x")).await.expect_err("refused");
        assert!(matches!(err, StoreError::Blob(_)), "{err:?}");
        assert!(!outside.exists());
        assert!(matches!(store.get("/etc/passwd").await, Err(StoreError::Blob(_))));
        assert!(matches!(store.delete("a//b").await, Err(StoreError::Blob(_))));
    }

    #[test]
    fn s3_config_is_checked_and_debug_shows_no_credentials() {
        let config = |id: Option<&str>, secret: Option<&str>| BlobConfig::S3 {
            bucket: "b".into(),
            endpoint: Some("http://127.0.0.1:9".into()),
            region: None,
            access_key_id: id.map(Into::into),
            secret_access_key: secret.map(backdrop_core::Secret::new),
            allow_http: true,
        };
        let store = BlobStore::open(&config(Some("AKIDEXAMPLE"), Some("hunter2"))).expect("open");
        let shown = format!("{store:?}");
        assert_eq!(shown, "BlobStore(s3 http://127.0.0.1:9/b)");
        assert!(matches!(BlobStore::open(&config(Some("id"), None)), Err(StoreError::Config(_))));
        let empty = BlobConfig::S3 {
            bucket: " ".into(),
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
            allow_http: false,
        };
        assert!(matches!(BlobStore::open(&empty), Err(StoreError::Config(_))));
    }
}
