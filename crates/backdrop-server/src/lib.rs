//! Backdrop's HTTP service.
//!
//! [`Shared`] holds what every request and worker needs (configuration, the task
//! repository, the blob store, the URL signer, the fetcher, the engines, limits,
//! metrics); [`router`] builds the axum router from it, the same one `backdrop serve` and
//! the tests use.
//!
//! - [`service`]: what every API surface does, in domain terms: authenticate, load an
//!   input image, submit a task (validate fully, store the input, persist, reserve
//!   credits), sign result URLs. Vendor surfaces are thin translations onto it.
//! - [`api`]: the native v1 API, files, health, metrics, OpenAPI and the playground page.
//! - [`compat`]: the Cutout.pro, PicWish, PicPik and Kling wire formats.
//! - [`worker`]: the processing loop (claim with a lease, run the engine on a device
//!   thread, store results, renew the lease, requeue lapsed ones).
//! - [`callbacks`]: the outbox deliverer (retries with backoff, HMAC signatures).
//! - [`sweeper`]: deletes expired results.

#![deny(missing_docs)]

pub mod api;
pub mod auth;
pub mod callbacks;
pub mod compat;
pub mod config;
pub mod error;
pub mod metrics;
pub mod ratelimit;
pub mod service;
pub mod sweeper;
pub mod vendor_keys;
pub mod worker;

pub use config::ServiceConfig;
pub use error::ApiError;

use backdrop_engines::Engines;
use backdrop_fetch::{FetchPolicy, Fetcher};
use backdrop_store::blob::{BlobStore, UrlSigner};
use backdrop_store::TaskRepo;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Renders the body of a callback for a task that entered a state (one per surface).
pub type CallbackRenderer =
    Arc<dyn Fn(&Shared, &backdrop_store::Task, backdrop_core::TaskState) -> String + Send + Sync>;

/// What requests and workers share.
pub struct Shared {
    /// Configuration.
    pub config: ServiceConfig,
    /// Tasks, keys, credits, callbacks.
    pub repo: Arc<dyn TaskRepo>,
    /// Images.
    pub blobs: BlobStore,
    /// Signs result URLs.
    pub signer: UrlSigner,
    /// Fetches input URLs safely.
    pub fetcher: Fetcher,
    /// The engines tasks are resolved against (and run on, in workers).
    pub engines: Engines,
    /// Submit rate limits.
    pub limiter: ratelimit::RateLimiter,
    /// Metrics.
    pub metrics: metrics::Metrics,
    /// Callback bodies per surface (`native` is always there).
    pub callback_renderers: HashMap<String, CallbackRenderer>,
    /// The configured models, as `GET /v1/models` lists them (set by the binary).
    pub models: Vec<serde_json::Value>,
    /// The server secret that vendor credentials derive from ([`vendor_keys`]).
    pub server_secret: Vec<u8>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .field("engines", &self.engines)
            .finish_non_exhaustive()
    }
}

/// The shared state handed to handlers.
pub type AppState = Arc<Shared>;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Shared {
    /// Opens the database and blob store of `config` (creating the data directory and
    /// the URL-signing secret if needed).
    pub async fn open(config: ServiceConfig, engines: Engines) -> Result<Shared, String> {
        std::fs::create_dir_all(&config.server.data_dir).map_err(|e| {
            format!("cannot create data directory {}: {e}", config.server.data_dir.display())
        })?;
        let repo = backdrop_store::open(&config.database_url()).await.map_err(|e| e.to_string())?;
        let blobs = BlobStore::open(&config.blob_config()).map_err(|e| e.to_string())?;
        let secret = server_secret(&config)?;
        let allow = config
            .fetch
            .allow
            .iter()
            .map(|net| {
                net.parse().map_err(|e| format!("fetch.allow: '{net}' is not a network: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let fetcher = Fetcher::new(FetchPolicy {
            max_bytes: config.fetch.max_bytes,
            timeout: Duration::from_secs(config.fetch.timeout_secs),
            max_redirects: 5,
            allow,
        });
        let limiter = ratelimit::RateLimiter::new(
            config.limits.submits_per_second,
            config.limits.submit_burst,
        );
        let mut callback_renderers: HashMap<String, CallbackRenderer> = HashMap::new();
        callback_renderers.insert("native".into(), Arc::new(api::native::callback_body));
        compat::register_callbacks(&mut callback_renderers);
        Ok(Shared {
            config,
            repo,
            blobs,
            signer: UrlSigner::new(&secret),
            fetcher,
            engines,
            limiter,
            metrics: metrics::Metrics::default(),
            callback_renderers,
            models: Vec::new(),
            server_secret: secret,
        })
    }

    /// The public base URL.
    pub fn public_url(&self) -> String {
        self.config.public_url()
    }
}

/// The server secret: `server.secret` when set, else the one kept in `data_dir/secret`
/// (made on first use).
pub fn server_secret(config: &ServiceConfig) -> Result<Vec<u8>, String> {
    match &config.server.secret {
        Some(secret) => Ok(secret.expose().as_bytes().to_vec()),
        None => {
            std::fs::create_dir_all(&config.server.data_dir).map_err(|e| {
                format!("cannot create data directory {}: {e}", config.server.data_dir.display())
            })?;
            load_or_create_secret(&config.server.data_dir.join("secret"))
        }
    }
}

fn load_or_create_secret(path: &std::path::Path) -> Result<Vec<u8>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) if text.trim().len() >= 32 => Ok(text.trim().as_bytes().to_vec()),
        _ => {
            use rand::RngCore;
            let mut bytes = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            let text = hex::encode(bytes);
            std::fs::write(path, &text)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            Ok(text.into_bytes())
        }
    }
}

/// The router of the whole service.
pub fn router(state: AppState) -> axum::Router {
    api::router(state)
}
