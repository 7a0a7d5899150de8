//! The service's configuration: every section with its defaults.
//!
//! Loaded by the binary from a TOML file, then environment variables, then flags (each
//! overriding the one before). Secrets are [`Secret`]s: their `Debug` shows `***`, so a
//! logged configuration never leaks them.
//!
//! ```toml
//! [server]
//! bind = "127.0.0.1:8080"
//! data_dir = "./backdrop-data"
//! public_url = "http://127.0.0.1:8080"   # base of result URLs
//!
//! [database]
//! url = "sqlite://./backdrop-data/backdrop.db"   # or postgres://user:pass@host/db
//!
//! [storage]
//! type = "filesystem"                  # or "s3" with bucket, endpoint, region, ...
//! root = "./backdrop-data/blobs"
//!
//! [limits]
//! max_task_memory_bytes = 2147483648   # estimated peak of one task; larger is refused
//! ```

use backdrop_core::{PriceTable, Secret};
use backdrop_store::blob::BlobConfig;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Everything the service reads from configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceConfig {
    /// Listening and identity.
    pub server: ServerSection,
    /// Task database.
    pub database: DatabaseSection,
    /// Blob store; `None` means a `blobs` folder in the data directory.
    pub storage: Option<BlobConfig>,
    /// Request limits.
    pub limits: LimitsSection,
    /// Queue and workers.
    pub queue: QueueSection,
    /// Result lifetime.
    pub results: ResultsSection,
    /// Fetching input URLs.
    pub fetch: FetchSection,
    /// Callback delivery.
    pub callbacks: CallbacksSection,
    /// Credit prices.
    pub prices: PriceTable,
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSection {
    /// Address to listen on.
    pub bind: String,
    /// Folder for the SQLite database, blobs and the generated secret.
    pub data_dir: PathBuf,
    /// Base URL clients reach this server at (result URLs start with it); defaults to
    /// `http://{bind}`.
    pub public_url: Option<String>,
    /// Secret for signing result URLs; generated and kept in `data_dir/secret` if unset.
    pub secret: Option<Secret>,
    /// Open connections at once; further clients wait to be accepted.
    pub max_connections: usize,
    /// Seconds a request head may take to arrive (trickling or silent clients are
    /// disconnected after it).
    pub header_read_timeout_secs: u64,
    /// Seconds a request may take until its response starts (body upload included);
    /// longer ones get 408 `request_timeout`. Above PicWish's longest `sync=1` wait.
    pub request_timeout_secs: u64,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            bind: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("backdrop-data"),
            public_url: None,
            secret: None,
            max_connections: 1024,
            header_read_timeout_secs: 10,
            request_timeout_secs: 300,
        }
    }
}

/// `[database]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSection {
    /// `sqlite://PATH` or `postgres://...`; defaults to `data_dir/backdrop.db`.
    pub url: Option<Secret>,
}

/// `[limits]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsSection {
    /// Submits per second per key (token bucket refill rate).
    pub submits_per_second: f64,
    /// Submits a key may burst above the rate.
    pub submit_burst: u32,
    /// Images (sum of `n`) a key may have queued or running.
    pub max_key_images: u64,
    /// Queued tasks per engine before submits get 429.
    pub max_queued: u64,
    /// Largest request body in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Long-lived requests a key may hold at once: event streams
    /// (`GET /v1/tasks/{id}/events`) and PicWish `sync=1` waits (429 `too_many_streams`
    /// beyond), so a few keys cannot tie up the database pool with polling.
    pub max_key_streams: u32,
    /// The most memory one task may need, in bytes, as estimated at submit from its
    /// sizes, `n` and engine (`backdrop_engines::pipeline::peak_memory`); a task over it
    /// is refused with 400 `task_too_large` before it is queued. Size it to what a
    /// worker process can give one task per device.
    pub max_task_memory_bytes: u64,
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            submits_per_second: 2.0,
            submit_burst: 2,
            max_key_images: 64,
            max_queued: 1000,
            max_body_bytes: 48 * 1024 * 1024,
            max_key_streams: 8,
            max_task_memory_bytes: 2 * 1024 * 1024 * 1024,
        }
    }
}

/// `[queue]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueSection {
    /// Lease length; a worker renews it at a third of this.
    pub lease_ms: i64,
    /// Claims before a task whose lease keeps lapsing fails with `retries_exhausted`.
    pub max_attempts: u32,
    /// How often an idle worker looks for work.
    pub poll_ms: u64,
    /// Engine threads ("devices") each worker process runs.
    pub devices: usize,
}

impl Default for QueueSection {
    fn default() -> Self {
        QueueSection { lease_ms: 30_000, max_attempts: 3, poll_ms: 200, devices: 1 }
    }
}

/// `[results]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResultsSection {
    /// How long results and their URLs live, in seconds.
    pub ttl_secs: i64,
    /// How often expired results are swept, in seconds.
    pub sweep_secs: u64,
}

impl Default for ResultsSection {
    fn default() -> Self {
        ResultsSection { ttl_secs: 3600, sweep_secs: 60 }
    }
}

/// `[fetch]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FetchSection {
    /// Networks that may be fetched although private or loopback (CIDR).
    pub allow: Vec<String>,
    /// Largest download in bytes.
    pub max_bytes: u64,
    /// Time limit for one download, in seconds.
    pub timeout_secs: u64,
}

impl Default for FetchSection {
    fn default() -> Self {
        FetchSection { allow: Vec::new(), max_bytes: 32 * 1024 * 1024, timeout_secs: 20 }
    }
}

/// `[callbacks]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallbacksSection {
    /// Attempts per state change before giving up.
    pub max_attempts: u32,
    /// First retry delay; each further retry doubles it.
    pub backoff_ms: i64,
    /// Time limit for one delivery, in seconds.
    pub timeout_secs: u64,
}

impl Default for CallbacksSection {
    fn default() -> Self {
        CallbacksSection { max_attempts: 8, backoff_ms: 1000, timeout_secs: 10 }
    }
}

impl ServiceConfig {
    /// The database URL, defaulting to SQLite in the data directory.
    pub fn database_url(&self) -> String {
        match &self.database.url {
            Some(url) => url.expose().to_string(),
            None => format!("sqlite://{}", self.server.data_dir.join("backdrop.db").display()),
        }
    }

    /// The blob store, defaulting to the data directory.
    pub fn blob_config(&self) -> BlobConfig {
        self.storage
            .clone()
            .unwrap_or_else(|| BlobConfig::Filesystem { root: self.server.data_dir.join("blobs") })
    }

    /// The base of URLs handed to clients.
    pub fn public_url(&self) -> String {
        let url = self
            .server
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.server.bind));
        url.trim_end_matches('/').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_show_in_debug() {
        let mut config = ServiceConfig::default();
        config.server.secret = Some(Secret::new("s3cr3t-value"));
        config.database.url = Some(Secret::new("postgres://u:hunter2@db/x"));
        let text = format!("{config:?}");
        assert!(!text.contains("s3cr3t-value") && !text.contains("hunter2"), "{text}");
    }

    #[test]
    fn defaults_are_a_local_embedded_setup() {
        let config = ServiceConfig::default();
        assert_eq!(config.server.bind, "127.0.0.1:8080");
        assert!(config.database_url().starts_with("sqlite://"));
        assert_eq!(config.public_url(), "http://127.0.0.1:8080");
        assert_eq!(config.results.ttl_secs, 3600);
        assert_eq!(config.limits.submits_per_second, 2.0);
    }
}
