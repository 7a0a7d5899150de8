//! One blob store suite, run against the local disk always and against a real
//! S3-compatible server when `BACKDROP_TEST_S3_ENDPOINT` is set (`tools/s3` starts one on
//! loopback and prints the variables; `tools/test` does both).

use backdrop_core::Secret;
use backdrop_store::blob::{BlobConfig, BlobStore, UrlSigner};
use backdrop_store::StoreError;
use bytes::Bytes;
use std::time::{SystemTime, UNIX_EPOCH};

/// A prefix no other run shares, so runs against one bucket never see each other's keys.
fn run_prefix(label: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_nanos();
    format!("tasks/t_{label}_{}_{nanos}", std::process::id())
}

/// Bytes that look like what the store holds: a PNG header and a body with every byte
/// value (so nothing is mangled as text on the way).
fn image_bytes(len: usize) -> Bytes {
    let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
    v.extend((0..len).map(|i| (i * 31 % 256) as u8));
    Bytes::from(v)
}

async fn suite(store: &BlobStore, prefix: &str) {
    let key = format!("{prefix}/1.png");
    let preview = format!("{prefix}/1.preview.webp");

    // Missing key.
    match store.get(&key).await {
        Err(StoreError::BlobNotFound(k)) => assert_eq!(k, key),
        other => panic!("expected BlobNotFound, got {other:?}"),
    }

    // Put and get back, byte for byte.
    let first = image_bytes(10_000);
    store.put(&key, first.clone()).await.expect("put");
    assert_eq!(store.get(&key).await.expect("get"), first);

    // Keys are independent.
    store.put(&preview, Bytes::from_static(b"RIFF\0\0\0\0WEBP")).await.expect("put preview");
    assert_eq!(store.get(&key).await.expect("get"), first);

    // Put replaces.
    let second = image_bytes(3);
    store.put(&key, second.clone()).await.expect("replace");
    assert_eq!(store.get(&key).await.expect("get"), second);

    // Empty blobs are blobs.
    let empty = format!("{prefix}/empty");
    store.put(&empty, Bytes::new()).await.expect("put empty");
    assert_eq!(store.get(&empty).await.expect("get empty"), Bytes::new());

    // A larger blob (several MiB, like a 4K PNG).
    let large_key = format!("{prefix}/large.png");
    let large = image_bytes(6 * 1024 * 1024);
    store.put(&large_key, large.clone()).await.expect("put large");
    assert_eq!(store.get(&large_key).await.expect("get large"), large);

    // Delete, then deleting again is fine, and the other keys stay.
    store.delete(&key).await.expect("delete");
    assert!(matches!(store.get(&key).await, Err(StoreError::BlobNotFound(_))));
    store.delete(&key).await.expect("delete missing");
    store.delete(&format!("{prefix}/never-written.png")).await.expect("delete never written");
    assert!(store.get(&preview).await.is_ok());

    // Keys that could escape or confuse the backend are refused before reaching it.
    for bad in [
        String::new(),
        format!("/{prefix}/1.png"),
        format!("{prefix}//1.png"),
        format!("{prefix}/"),
        format!("{prefix}/../../escape.png"),
        "..".to_owned(),
    ] {
        assert!(
            matches!(store.put(&bad, Bytes::from_static(b"x")).await, Err(StoreError::Blob(_))),
            "put {bad:?}"
        );
        assert!(matches!(store.get(&bad).await, Err(StoreError::Blob(_))), "get {bad:?}");
        assert!(matches!(store.delete(&bad).await, Err(StoreError::Blob(_))), "delete {bad:?}");
    }

    // Concurrent writers to distinct keys (API nodes and workers share one store).
    let writes = (0..16).map(|i| {
        let store = store.clone();
        let key = format!("{prefix}/many/{i}.png");
        async move {
            store.put(&key, image_bytes(i * 100)).await.expect("concurrent put");
            (key, i)
        }
    });
    for (key, i) in futures::future::join_all(writes).await {
        assert_eq!(store.get(&key).await.expect("get"), image_bytes(i * 100));
        store.delete(&key).await.expect("cleanup");
    }

    for k in [&preview, &empty, &large_key] {
        store.delete(k).await.expect("cleanup");
    }
}

#[tokio::test]
async fn filesystem_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("blobs");
    let store = BlobStore::open(&BlobConfig::Filesystem { root: root.clone() }).expect("open");
    suite(&store, &run_prefix("fs")).await;
    // Nothing was written outside the root.
    let outside: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(outside, vec![std::ffi::OsString::from("blobs")]);
}

fn s3_config() -> Option<BlobConfig> {
    let endpoint = std::env::var("BACKDROP_TEST_S3_ENDPOINT").ok().filter(|s| !s.is_empty())?;
    let var =
        |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
    Some(BlobConfig::S3 {
        bucket: var("BACKDROP_TEST_S3_BUCKET", "backdrop-test"),
        allow_http: endpoint.starts_with("http://"),
        endpoint: Some(endpoint),
        region: Some(var("BACKDROP_TEST_S3_REGION", "us-east-1")),
        access_key_id: Some(var("BACKDROP_TEST_S3_ACCESS_KEY_ID", "testing")),
        secret_access_key: Some(Secret::new(var("BACKDROP_TEST_S3_SECRET_ACCESS_KEY", "testing"))),
    })
}

#[tokio::test]
async fn s3_store() {
    let Some(config) = s3_config() else {
        eprintln!("skipping the S3 blob store suite: BACKDROP_TEST_S3_ENDPOINT is not set (run `eval \"$(tools/s3)\"`)");
        return;
    };
    let store = BlobStore::open(&config).expect("open");
    assert!(!format!("{store:?}").contains("testing"), "no credentials in Debug");
    suite(&store, &run_prefix("s3")).await;
}

#[tokio::test]
async fn s3_store_with_a_missing_bucket_reports_an_error() {
    let Some(BlobConfig::S3 {
        endpoint, region, access_key_id, secret_access_key, allow_http, ..
    }) = s3_config()
    else {
        eprintln!("skipping: BACKDROP_TEST_S3_ENDPOINT is not set");
        return;
    };
    let config = BlobConfig::S3 {
        bucket: format!("backdrop-missing-{}", std::process::id()),
        endpoint,
        region,
        access_key_id,
        secret_access_key,
        allow_http,
    };
    let store = BlobStore::open(&config).expect("open does not contact the store");
    let err = store.put("tasks/x/1.png", Bytes::from_static(b"x")).await.expect_err("no bucket");
    assert!(matches!(err, StoreError::Blob(_)), "{err:?}");
}

/// A signed link for a stored blob, checked the way the file route will: the key from the
/// path, `exp` and `sig` from the query.
#[tokio::test]
async fn signed_links_for_stored_blobs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store =
        BlobStore::open(&BlobConfig::Filesystem { root: dir.path().to_path_buf() }).expect("open");
    let key = "tasks/t_signed/1.png";
    store.put(key, image_bytes(10)).await.expect("put");

    let signer = UrlSigner::new(b"0123456789abcdef0123456789abcdef");
    let now = 1_800_000_000;
    let query = signer.sign(key, now + 3600);
    let url = url::Url::parse(&format!("http://localhost/files/{key}?{query}")).expect("url");
    let param = |name: &str| {
        url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned()).expect(name)
    };
    let path_key = url.path().strip_prefix("/files/").expect("route prefix");
    let exp: i64 = param("exp").parse().expect("exp");
    let sig = param("sig");

    assert_eq!(signer.verify(path_key, exp, &sig, now), Ok(()));
    assert_eq!(store.get(path_key).await.expect("get"), image_bytes(10));
    assert_eq!(
        signer.verify(path_key, exp, &sig, now + 3601),
        Err(backdrop_store::blob::SignatureError::Expired)
    );
    assert_eq!(
        signer.verify("tasks/t_signed/2.png", exp, &sig, now),
        Err(backdrop_store::blob::SignatureError::Invalid)
    );
}
