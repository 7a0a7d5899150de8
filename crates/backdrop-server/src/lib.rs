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
pub mod body;
pub mod callbacks;
pub mod compat;
pub mod config;
pub mod error;
pub mod listen;
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
use std::path::Path;
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
    /// Event streams and synchronous waits each key holds.
    pub streams: Arc<ratelimit::StreamSlots>,
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
    /// the URL-signing secret if needed). Nothing is contacted yet: [`Shared::check`]
    /// proves both stores work.
    pub async fn open(config: ServiceConfig, engines: Engines) -> Result<Shared, String> {
        ensure_data_dir(&config.server.data_dir)?;
        let repo = open_repo(&config).await?;
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
        let streams = ratelimit::StreamSlots::new(config.limits.max_key_streams);
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
            streams,
            metrics: metrics::Metrics::default(),
            callback_renderers,
            models: Vec::new(),
            server_secret: secret,
        })
    }

    /// Proves the database answers and the blob store can write, read back and delete
    /// a probe, so a misconfigured node stops at start with one line instead of failing
    /// every request later.
    pub async fn check(&self) -> Result<(), String> {
        self.repo.ping().await.map_err(|e| {
            format!(
                "database {} does not answer: {}",
                redact_url(&self.config.database_url()),
                redact_url(&e.to_string())
            )
        })?;
        self.blobs.probe().await.map_err(|e| format!("storage does not work: {e}"))
    }

    /// The public base URL.
    pub fn public_url(&self) -> String {
        self.config.public_url()
    }
}

/// The shortest server secret accepted, in bytes: result URLs and vendor credentials
/// are HMACs keyed with it.
pub const MIN_SECRET_LEN: usize = 32;

/// The server secret: `server.secret` when set (at least [`MIN_SECRET_LEN`] bytes), else
/// the one kept in `data_dir/secret`, made on first use.
///
/// The file is created owner-only (0600) and published atomically: each process writes
/// its own temporary file and links it into place, and a process that loses the race
/// reads the winner's secret, so nodes started together on one data directory agree.
/// A file that exists but cannot be read, or is too short, stops the process: a new
/// secret would silently invalidate every signed URL and vendor credential.
pub fn server_secret(config: &ServiceConfig) -> Result<Vec<u8>, String> {
    match &config.server.secret {
        Some(secret) => {
            let bytes = secret.expose().as_bytes();
            if bytes.len() < MIN_SECRET_LEN {
                return Err(format!(
                    "server.secret (BACKDROP_SECRET) is {} bytes; it must be at least \
                     {MIN_SECRET_LEN} (for example: openssl rand -hex 32)",
                    bytes.len()
                ));
            }
            Ok(bytes.to_vec())
        }
        None => {
            ensure_data_dir(&config.server.data_dir)?;
            load_or_create_secret(&config.server.data_dir.join("secret"))
        }
    }
}

fn load_or_create_secret(path: &Path) -> Result<Vec<u8>, String> {
    match read_secret(path)? {
        Some(secret) => Ok(secret),
        None => {
            use rand::RngCore;
            let mut bytes = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            let text = hex::encode(bytes);
            let tmp = path.with_file_name(format!(
                ".secret.{}.{}.tmp",
                std::process::id(),
                hex::encode(&bytes[..4])
            ));
            let published =
                write_private(&tmp, text.as_bytes()).and_then(|()| std::fs::hard_link(&tmp, path));
            let _ = std::fs::remove_file(&tmp);
            match published {
                Ok(()) => Ok(text.into_bytes()),
                // Another process published first: use its secret.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_secret(path)?
                    .ok_or_else(|| format!("{} vanished while it was read", path.display())),
                Err(e) => Err(format!("cannot create the server secret {}: {e}", path.display())),
            }
        }
    }
}

/// The secret in `path`, `None` if there is no such file.
fn read_secret(path: &Path) -> Result<Option<Vec<u8>>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) if text.trim().len() >= MIN_SECRET_LEN => {
            Ok(Some(text.trim().as_bytes().to_vec()))
        }
        Ok(_) => Err(format!(
            "the server secret {} is shorter than {MIN_SECRET_LEN} bytes; restore it, or \
             delete it to make a new one (signed URLs and vendor credentials then change)",
            path.display()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read the server secret {}: {e}", path.display())),
    }
}

/// Writes a new owner-only file (fails if `path` exists).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Creates the data directory, owner-only (0700), if it does not exist. An existing
/// directory keeps its mode: it may be one the operator shares on purpose.
pub fn ensure_data_dir(dir: &Path) -> Result<(), String> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|e| format!("cannot create data directory {}: {e}", dir.display()))
}

/// Opens the task repository of `config`. A SQLite database file is made owner-only
/// (0600) before SQLite opens it (its journal and WAL files take the same mode).
pub async fn open_repo(config: &ServiceConfig) -> Result<Arc<dyn TaskRepo>, String> {
    let url = config.database_url();
    if let Some(path) = sqlite_file(&url) {
        make_private_file(&path)
            .map_err(|e| format!("cannot create the database file {}: {e}", path.display()))?;
    }
    backdrop_store::open(&url).await.map_err(|e| redact_url(&e.to_string()))
}

/// The file of a `sqlite://PATH[?options]` URL (none for in-memory databases).
fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && !path.starts_with(":memory:")).then(|| path.into())
}

/// Creates `path` empty and owner-only if missing; restricts it to its owner if not.
fn make_private_file(path: &Path) -> std::io::Result<()> {
    match write_private(path, b"") {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// `text` with any password of a URL in it hidden: `user:PASSWORD@` and `password=...`
/// query parameters become `***`.
pub fn redact_url(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    // user:password@ after a scheme.
    while let Some(scheme) = rest.find("://") {
        let (head, tail) = rest.split_at(scheme + 3);
        out.push_str(head);
        let authority_end = tail.find(['/', '?', '#', ' ', '"', '\'']).unwrap_or(tail.len());
        let authority = &tail[..authority_end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&authority[..colon]);
                out.push_str(":***");
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[authority_end..];
    }
    out.push_str(rest);
    // password=... in a query string or a key/value connection string.
    let mut redacted = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(at) = rest.to_ascii_lowercase().find("password=") {
        let value_start = at + "password=".len();
        redacted.push_str(&rest[..value_start]);
        redacted.push_str("***");
        let value = &rest[value_start..];
        let end = value.find(['&', ' ', '#', '"', '\'']).unwrap_or(value.len());
        rest = &value[end..];
    }
    redacted.push_str(rest);
    redacted
}

/// The router of the whole service.
pub fn router(state: AppState) -> axum::Router {
    api::router(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden_wherever_a_url_shows_one() {
        assert_eq!(redact_url("postgres://app:hunter2@db:5432/x"), "postgres://app:***@db:5432/x");
        assert_eq!(redact_url("sqlite://data/b.db"), "sqlite://data/b.db");
        assert_eq!(
            redact_url("postgres://db/x?user=app&password=hunter2&sslmode=require"),
            "postgres://db/x?user=app&password=***&sslmode=require"
        );
        assert_eq!(
            redact_url("error connecting to postgres://u:p@h/d: refused (PASSWORD=x y)"),
            "error connecting to postgres://u:***@h/d: refused (PASSWORD=*** y)"
        );
        assert_eq!(redact_url("http://minio:9000/bucket"), "http://minio:9000/bucket");
    }

    #[test]
    fn processes_starting_together_agree_on_one_private_secret() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret");
        let secrets: Vec<Vec<u8>> = std::thread::scope(|scope| {
            let handles: Vec<_> =
                (0..8).map(|_| scope.spawn(|| load_or_create_secret(&path))).collect();
            handles.into_iter().map(|h| h.join().expect("joins").expect("a secret")).collect()
        });
        assert!(secrets.windows(2).all(|w| w[0] == w[1]), "every process reads one secret");
        assert_eq!(std::fs::read(&path).expect("the file"), secrets[0]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        // No temporary files are left behind.
        assert_eq!(std::fs::read_dir(dir.path()).expect("lists").count(), 1);
    }
}
