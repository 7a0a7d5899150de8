//! Shared harness of the server's integration tests: the real router served on
//! loopback with a temp SQLite database and blob folder.
#![allow(dead_code)]

use backdrop_engines::Engines;
use backdrop_server::ratelimit::{ManualClock, RateLimiter};
use backdrop_server::vendor_keys::credentials;
use backdrop_server::{auth, callbacks, now_ms, worker, ServiceConfig, Shared};
use backdrop_store::blob::BlobStore;
use base64::Engine as _;
use image::{DynamicImage, Rgba, RgbaImage};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::net::SocketAddr;
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
        send_json(client.get(self.url(path)).bearer_auth(key)).await.1
    }

    /// An absolute URL.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POSTs `body` as JSON to a native route with `key`; the status and the JSON answer.
    pub async fn post_json(
        &self,
        client: &reqwest::Client,
        key: &str,
        path: &str,
        body: &Value,
    ) -> (StatusCode, Value) {
        send_json(client.post(self.url(path)).bearer_auth(key).json(body)).await
    }

    /// Submits `body` to a native route, which must accept it; the new task's id.
    pub async fn submit(
        &self,
        client: &reqwest::Client,
        key: &str,
        path: &str,
        body: &Value,
    ) -> String {
        let (status, accepted) = self.post_json(client, key, path, body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
        accepted["id"].as_str().expect("id").to_string()
    }

    /// Polls the native API until the task ends.
    pub async fn wait_terminal(&self, client: &reqwest::Client, key: &str, id: &str) -> Value {
        let url = self.url(&format!("/v1/tasks/{id}"));
        poll_json(
            Duration::from_secs(60),
            || client.get(&url).bearer_auth(key),
            |task| matches!(task["state"].as_str(), Some("succeeded" | "failed" | "canceled")),
        )
        .await
    }

    /// Polls a task's callback log, within `limit`, until `done` holds for its deliveries;
    /// those deliveries.
    pub async fn wait_deliveries(
        &self,
        client: &reqwest::Client,
        key: &str,
        id: &str,
        limit: Duration,
        mut done: impl FnMut(&[Value]) -> bool,
    ) -> Vec<Value> {
        let url = self.url(&format!("/v1/tasks/{id}/callbacks"));
        let deliveries = |log: &Value| log["deliveries"].as_array().cloned().unwrap_or_default();
        let log =
            poll_json(limit, || client.get(&url).bearer_auth(key), |log| done(&deliveries(log)))
                .await;
        deliveries(&log)
    }

    /// Waits for task `id`, which must succeed, and downloads its first image; the image
    /// and the task.
    pub async fn first_image(
        &self,
        client: &reqwest::Client,
        key: &str,
        id: &str,
    ) -> (RgbaImage, Value) {
        let task = self.wait_terminal(client, key, id).await;
        assert_eq!(task["state"], "succeeded", "{task}");
        let url = task["images"][0]["url"].as_str().expect("url");
        (download_image(client, url).await.to_rgba8(), task)
    }
}

/// Sends `request`; the status and the JSON answer.
pub async fn send_json(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.expect("send");
    let status = response.status();
    (status, response.json().await.expect("a JSON answer"))
}

/// Sends `request`, which must answer 200 with JSON; the answer.
pub async fn ok_json(request: reqwest::RequestBuilder) -> Value {
    let (status, body) = send_json(request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// GETs `url`, which must answer 200; the headers and the body.
pub async fn download(client: &reqwest::Client, url: &str) -> (HeaderMap, Vec<u8>) {
    let response = client.get(url).send().await.expect("download");
    assert_eq!(response.status(), StatusCode::OK, "{url}");
    let headers = response.headers().clone();
    (headers, response.bytes().await.expect("bytes").to_vec())
}

/// GETs `url`, which must answer 200 with an image; the image.
pub async fn download_image(client: &reqwest::Client, url: &str) -> DynamicImage {
    let (_, bytes) = download(client, url).await;
    image::load_from_memory(&bytes).expect("an image")
}

/// Between two polls of something that is expected to change.
pub const POLL: Duration = Duration::from_millis(30);

/// The time a polling loop has; `again` waits before its next look.
pub struct Deadline(Instant);

impl Deadline {
    /// `limit` from now.
    pub fn after(limit: Duration) -> Deadline {
        Deadline(Instant::now() + limit)
    }

    /// Waits [`POLL`] before the next look; panics with `seen` (what the last look saw)
    /// once the time is up.
    pub async fn again(&self, seen: impl std::fmt::Display) {
        assert!(Instant::now() < self.0, "not done in time: {seen}");
        tokio::time::sleep(POLL).await;
    }
}

/// Sends what `make` builds, within `limit`, until `done` holds for its answer (200 with
/// JSON each time); that answer.
pub async fn poll_json(
    limit: Duration,
    make: impl Fn() -> reqwest::RequestBuilder,
    mut done: impl FnMut(&Value) -> bool,
) -> Value {
    let deadline = Deadline::after(limit);
    loop {
        let body = ok_json(make()).await;
        if done(&body) {
            return body;
        }
        deadline.again(&body).await;
    }
}

/// No submit rate limit worth the name, for tests that submit many tasks.
pub fn no_rate_limit(config: &mut ServiceConfig) {
    config.limits.submits_per_second = 1000.0;
    config.limits.submit_burst = 1000;
}

/// Serves `app` on `listener` until the test ends.
pub fn serve_on(listener: tokio::net::TcpListener, app: axum::Router) {
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
}

/// Serves `app` on a loopback port of its own; its address.
pub async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    serve_on(listener, app);
    addr
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
    b64(&png(&img))
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
    let app = axum::Router::new().route(
        "/cutout.png",
        axum::routing::get(move || {
            let bytes = bytes.clone();
            async move { ([("content-type", "image/png")], bytes) }
        }),
    );
    format!("http://{}/cutout.png", serve(app).await)
}

/// A `w`x`h` PNG cut-out: an opaque ellipse on transparency.
pub fn cutout(w: u32, h: u32) -> Vec<u8> {
    png(&RgbaImage::from_fn(w, h, |x, y| {
        let dx = (x as f32 - w as f32 / 2.0) / (w as f32 / 3.0);
        let dy = (y as f32 - h as f32 / 2.0) / (h as f32 / 3.0);
        if dx * dx + dy * dy < 1.0 {
            Rgba([180, (x % 256) as u8, 60, 255])
        } else {
            Rgba([0, 0, 0, 0])
        }
    }))
}

/// Standard base64 of `bytes`.
pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
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
