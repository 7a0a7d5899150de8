//! Shared harness of the server's integration tests: the real router served on
//! loopback with a temp SQLite database and blob folder.
#![allow(dead_code)]

use backdrop_engines::Engines;
use backdrop_server::ratelimit::{ManualClock, RateLimiter};
use backdrop_server::vendor_keys::credentials;
use backdrop_server::{auth, callbacks, now_ms, worker, ServiceConfig, Shared};
use backdrop_store::blob::BlobStore;
use base64::Engine as _;
use image::{Rgba, RgbaImage};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// A server on loopback with its own data dir.
pub struct TestServer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The server's state.
    pub shared: Arc<Shared>,
    /// Stops everything when dropped.
    pub stop: watch::Sender<bool>,
    /// The data dir.
    pub _dir: tempfile::TempDir,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Starts a server; `workers` also runs a worker loop.
pub async fn start(workers: bool, adjust: impl FnOnce(&mut ServiceConfig)) -> TestServer {
    start_with(Engines::weight_free(), usize::from(workers), adjust, |blobs| blobs).await
}

/// Starts a server with `engines`, running `devices` worker loops (none when 0) over the
/// blob store that `blobs` makes of the configured one.
pub async fn start_with(
    engines: Engines,
    devices: usize,
    adjust: impl FnOnce(&mut ServiceConfig),
    blobs: impl FnOnce(BlobStore) -> BlobStore,
) -> TestServer {
    start_prepared(engines, devices, adjust, |shared| shared.blobs = blobs(shared.blobs.clone()))
        .await
}

/// Starts a server (with a worker when `workers`) whose submit rate limiter runs on a
/// clock the test moves, so rate-limit tests need no sleeps.
pub async fn start_with_clock(
    workers: bool,
    adjust: impl FnOnce(&mut ServiceConfig),
) -> (TestServer, Arc<ManualClock>) {
    let clock = ManualClock::new();
    let limiter_clock = Arc::clone(&clock);
    let server = start_prepared(Engines::weight_free(), usize::from(workers), adjust, |shared| {
        let limits = &shared.config.limits;
        shared.limiter =
            RateLimiter::with_clock(limits.submits_per_second, limits.submit_burst, limiter_clock);
    })
    .await;
    (server, clock)
}

/// Starts a server with `engines` and `devices` worker loops, letting `prepare` change the
/// shared state (the fetcher's resolver, the blob store) before anything uses it.
pub async fn start_prepared(
    engines: Engines,
    devices: usize,
    adjust: impl FnOnce(&mut ServiceConfig),
    prepare: impl FnOnce(&mut Shared),
) -> TestServer {
    let dir = tempfile::tempdir().expect("tmp");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut config = ServiceConfig::default();
    config.server.data_dir = dir.path().to_path_buf();
    config.server.bind = addr.to_string();
    config.queue.poll_ms = 20;
    config.callbacks.backoff_ms = 50;
    adjust(&mut config);
    let mut shared = Shared::open(config, engines).await.expect("open");
    prepare(&mut shared);
    let shared = Arc::new(shared);
    let (stop, stopped) = watch::channel(false);
    let app = backdrop_server::router(Arc::clone(&shared));
    let mut shutdown = stopped.clone();
    let limits = backdrop_server::listen::ConnectionLimits::of(&shared.config);
    tokio::spawn(backdrop_server::listen::serve(listener, app, limits, async move {
        let _ = shutdown.changed().await;
    }));
    if devices > 0 {
        let worker =
            worker::run(Arc::clone(&shared), "test-worker".into(), devices, stopped.clone());
        tokio::spawn(worker);
    }
    tokio::spawn(callbacks::run(Arc::clone(&shared), stopped));
    TestServer { base: format!("http://{addr}"), shared, stop, _dir: dir }
}

impl TestServer {
    /// A new key's plaintext.
    pub async fn key(&self, credits: Option<i64>) -> String {
        auth::create_key(self.shared.repo.as_ref(), "test", credits, now_ms()).await.expect("key").1
    }

    /// GETs a native route with `key`; the JSON answer, whatever the status.
    pub async fn get_json(&self, client: &reqwest::Client, key: &str, path: &str) -> Value {
        let response = client.get(self.url(path)).bearer_auth(key).send().await.expect("get");
        response.json().await.expect("json")
    }

    /// An absolute URL.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Polls the native API until the task ends.
    pub async fn wait_terminal(&self, client: &reqwest::Client, key: &str, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let task: Value = client
                .get(self.url(&format!("/v1/tasks/{id}")))
                .bearer_auth(key)
                .send()
                .await
                .expect("poll")
                .json()
                .await
                .expect("json");
            if matches!(task["state"].as_str(), Some("succeeded" | "failed" | "canceled")) {
                return task;
            }
            assert!(Instant::now() < deadline, "task {id} did not finish: {task}");
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }
}

/// PNG bytes.
pub fn png(img: &RgbaImage) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png).expect("encode");
    out
}

/// A 96x96 cut-out: an opaque disc on transparency.
pub fn cutout_b64() -> String {
    let img = RgbaImage::from_fn(96, 96, |x, y| {
        let (dx, dy) = (x as f32 - 48.0, y as f32 - 52.0);
        if dx * dx + dy * dy < 30.0 * 30.0 {
            Rgba([200, (x * 2) as u8, 40, 255])
        } else {
            Rgba([0, 0, 0, 0])
        }
    });
    base64::engine::general_purpose::STANDARD.encode(png(&img))
}

/// A 64x48 textured "photo".
pub fn photo_png() -> Vec<u8> {
    png(&RgbaImage::from_fn(64, 48, |x, y| {
        Rgba([(x * 4) as u8, (y * 5) as u8, ((x ^ y) * 8) as u8, 255])
    }))
}

/// Serves `bytes` as `image/png` on a loopback port of its own; the image's URL. Fetching
/// it needs `[fetch] allow` to include 127.0.0.1.
pub async fn serve_png(bytes: Vec<u8>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new().route(
        "/cutout.png",
        axum::routing::get(move || {
            let bytes = bytes.clone();
            async move { ([("content-type", "image/png")], bytes) }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/cutout.png")
}

/// An HS256 JWT of `claims` signed with `secret`, as a Kling client makes one (with a
/// JWT library, not with the server's code).
pub fn kling_jwt(claims: &Value, secret: &str) -> String {
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    jsonwebtoken::encode(&header, claims, &key).expect("jwt")
}

/// A valid Kling token of key `id`, as Kling's sample code makes it: `exp` = now + 1800,
/// `nbf` = now - 5.
pub fn kling_token(shared: &Shared, id: i64) -> String {
    let pair = credentials(&shared.server_secret, id);
    let now = now_ms() / 1000;
    kling_jwt(&json!({"iss": pair.access_key, "exp": now + 1800, "nbf": now - 5}), &pair.secret_key)
}
