//! `backdrop serve`, `backdrop worker` and `backdrop keys`: the task service.
//!
//! Configuration comes from the TOML file (see [`crate::config`]), then environment
//! variables, then flags, each overriding the one before:
//!
//! | setting | file | environment | flag |
//! |---|---|---|---|
//! | listen address | `server.bind` | `BACKDROP_BIND` | `--bind` |
//! | data directory | `server.data_dir` | `BACKDROP_DATA_DIR` | `--data-dir` |
//! | public base URL | `server.public_url` | `BACKDROP_PUBLIC_URL` | `--public-url` |
//! | URL-signing secret | `server.secret` | `BACKDROP_SECRET` | |
//! | database | `database.url` | `BACKDROP_DATABASE_URL` | `--database-url` |
//! | fetch allow-list | `fetch.allow` | `BACKDROP_FETCH_ALLOW` (comma-separated) | |
//! | lease length | `queue.lease_ms` | `BACKDROP_LEASE_MS` | |
//! | submits per second | `limits.submits_per_second` | `BACKDROP_SUBMITS_PER_SECOND` | |
//! | result lifetime | `results.ttl_secs` | `BACKDROP_RESULTS_TTL_SECS` | |

use crate::config::Config;
use backdrop_core::Secret;
use backdrop_engines::Engines;
use backdrop_server::{now_ms, worker, ServiceConfig, Shared};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::watch;

/// Flags every service command shares.
#[derive(Debug, Args, Clone, Default)]
pub struct ServiceArgs {
    /// Data directory (SQLite database, blobs, secret).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Database URL: sqlite://PATH or postgres://USER:PASS@HOST/DB.
    #[arg(long)]
    pub database_url: Option<String>,
}

/// `backdrop serve`.
#[derive(Debug, Args, Clone)]
pub struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:8080).
    #[arg(long)]
    pub bind: Option<String>,
    /// Base URL clients reach the server at (used in result URLs).
    #[arg(long)]
    pub public_url: Option<String>,
    /// Serve the API only; leave processing to `backdrop worker` processes.
    #[arg(long)]
    pub no_worker: bool,
    /// Shared flags.
    #[command(flatten)]
    pub service: ServiceArgs,
}

/// `backdrop worker`.
#[derive(Debug, Args, Clone)]
pub struct WorkerArgs {
    /// Shared flags.
    #[command(flatten)]
    pub service: ServiceArgs,
}

/// `backdrop keys ...`.
#[derive(Debug, Subcommand, Clone)]
pub enum KeysCommand {
    /// Make a key; its plaintext is printed once.
    Create {
        /// A label.
        #[arg(long, default_value = "default")]
        name: String,
        /// Starting credits; without it the key is unmetered.
        #[arg(long)]
        credits: Option<i64>,
        /// Shared flags.
        #[command(flatten)]
        service: ServiceArgs,
    },
    /// Show a key's access key and secret key for the signing surfaces.
    Show {
        /// Key id.
        id: i64,
        /// Shared flags.
        #[command(flatten)]
        service: ServiceArgs,
    },
    /// List keys (never their plaintext).
    List {
        /// Shared flags.
        #[command(flatten)]
        service: ServiceArgs,
    },
    /// Revoke a key.
    Revoke {
        /// Key id.
        id: i64,
        /// Shared flags.
        #[command(flatten)]
        service: ServiceArgs,
    },
    /// Add credits (negative to remove); an unmetered key becomes metered.
    Credit {
        /// Key id.
        id: i64,
        /// Amount.
        #[arg(allow_negative_numbers = true)]
        amount: i64,
        /// Why.
        #[arg(long, default_value = "")]
        note: String,
        /// Shared flags.
        #[command(flatten)]
        service: ServiceArgs,
    },
}

/// The service configuration: file, then environment, then flags.
pub fn service_config(
    config: &Config,
    args: &ServiceArgs,
    bind: Option<&str>,
    public_url: Option<&str>,
) -> Result<ServiceConfig, String> {
    let mut c = config.service();
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if let Some(v) = env("BACKDROP_BIND") {
        c.server.bind = v;
    }
    if let Some(v) = env("BACKDROP_DATA_DIR") {
        c.server.data_dir = v.into();
    }
    if let Some(v) = env("BACKDROP_PUBLIC_URL") {
        c.server.public_url = Some(v);
    }
    if let Some(v) = env("BACKDROP_SECRET") {
        c.server.secret = Some(Secret::new(v));
    }
    if let Some(v) = env("BACKDROP_DATABASE_URL") {
        c.database.url = Some(Secret::new(v));
    }
    if let Some(v) = env("BACKDROP_FETCH_ALLOW") {
        c.fetch.allow =
            v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    }
    let number = |name: &str| -> Result<Option<f64>, String> {
        env(name)
            .map(|v| v.parse::<f64>().map_err(|_| format!("{name}='{v}' is not a number")))
            .transpose()
    };
    if let Some(v) = number("BACKDROP_LEASE_MS")? {
        c.queue.lease_ms = v as i64;
    }
    if let Some(v) = number("BACKDROP_SUBMITS_PER_SECOND")? {
        c.limits.submits_per_second = v;
    }
    if let Some(v) = number("BACKDROP_RESULTS_TTL_SECS")? {
        c.results.ttl_secs = v as i64;
    }
    if let Some(v) = &args.data_dir {
        c.server.data_dir = v.clone();
    }
    if let Some(v) = &args.database_url {
        c.database.url = Some(Secret::new(v.clone()));
    }
    if let Some(v) = bind {
        c.server.bind = v.to_string();
    }
    if let Some(v) = public_url {
        c.server.public_url = Some(v.to_string());
    }
    Ok(c)
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BACKDROP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,tower_http=warn"));
    let _ =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}

fn worker_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
    format!("{host}-{}-{}", std::process::id(), now_ms())
}

/// `backdrop serve`.
pub fn serve(config: &Config, engines: Engines, args: ServeArgs) -> Result<(), String> {
    init_logging();
    let service =
        service_config(config, &args.service, args.bind.as_deref(), args.public_url.as_deref())?;
    runtime()?.block_on(async move {
        let bind = service.server.bind.clone();
        let listener = tokio::net::TcpListener::bind(&bind)
            .await
            .map_err(|e| format!("cannot listen on {bind}: {e}"))?;
        let mut shared = Shared::open(service, engines).await?;
        shared.check().await?;
        shared.models = model_listing(config);
        let shared = Arc::new(shared);
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        let engines: Vec<&str> = shared.engines.available().iter().map(|e| e.as_str()).collect();
        println!("backdrop listening on http://{local} (public URL {})", shared.public_url());
        println!(
            "engines: {}; data in {}",
            engines.join(", "),
            shared.config.server.data_dir.display()
        );
        println!("create an API key with: backdrop keys create --name me");
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::new();
        if !args.no_worker {
            let devices = shared.config.queue.devices;
            tasks.push(tokio::spawn(worker::run(
                Arc::clone(&shared),
                worker_id(),
                devices,
                stopped.clone(),
            )));
        }
        tasks.push(tokio::spawn(backdrop_server::callbacks::run(
            Arc::clone(&shared),
            stopped.clone(),
        )));
        tasks.push(tokio::spawn(backdrop_server::sweeper::run(
            Arc::clone(&shared),
            stopped.clone(),
        )));
        let app = backdrop_server::router(Arc::clone(&shared));
        let limits = backdrop_server::listen::ConnectionLimits::of(&shared.config);
        let served = backdrop_server::listen::serve(listener, app, limits, shutdown_signal()).await;
        let _ = stop.send(true);
        for task in tasks {
            let _ = task.await;
        }
        served.map_err(|e| format!("server error: {e}"))
    })
}

/// `backdrop worker`.
pub fn worker(config: &Config, engines: Engines, args: WorkerArgs) -> Result<(), String> {
    init_logging();
    let service = service_config(config, &args.service, None, None)?;
    runtime()?.block_on(async move {
        let shared = Arc::new(Shared::open(service, engines).await?);
        shared.check().await?;
        let engines: Vec<&str> = shared.engines.available().iter().map(|e| e.as_str()).collect();
        println!(
            "backdrop worker for {} on {}",
            engines.join(", "),
            backdrop_server::redact_url(&shared.config.database_url())
        );
        let (stop, stopped) = watch::channel(false);
        let devices = shared.config.queue.devices;
        let work =
            tokio::spawn(worker::run(Arc::clone(&shared), worker_id(), devices, stopped.clone()));
        let deliver =
            tokio::spawn(backdrop_server::callbacks::run(Arc::clone(&shared), stopped.clone()));
        let sweep = tokio::spawn(backdrop_server::sweeper::run(Arc::clone(&shared), stopped));
        shutdown_signal().await;
        let _ = stop.send(true);
        let _ = tokio::join!(work, deliver, sweep);
        Ok(())
    })
}

/// The configured diffusion models as `GET /v1/models` (and PicPik's `ModelCode`) list
/// them. LoRAs are fused into exported models, so a model lists none of its own.
fn model_listing(config: &Config) -> Vec<serde_json::Value> {
    #[cfg(feature = "diffusion")]
    {
        let default = config.diffusion.default_model.as_deref();
        config
            .diffusion
            .models
            .iter()
            .map(|(id, m)| {
                serde_json::json!({
                    "id": id,
                    "default": default == Some(id.as_str()),
                    "description": m.description,
                    "steps": m.steps,
                    "guidance": m.guidance,
                    "scheduler": m.scheduler,
                    "loras": [],
                })
            })
            .collect()
    }
    #[cfg(not(feature = "diffusion"))]
    {
        let _ = config;
        Vec::new()
    }
}

/// `backdrop keys ...`: returns the lines to print.
pub fn keys(config: &Config, command: KeysCommand) -> Result<Vec<String>, String> {
    let service_args = match &command {
        KeysCommand::Create { service, .. }
        | KeysCommand::Show { service, .. }
        | KeysCommand::List { service }
        | KeysCommand::Revoke { service, .. }
        | KeysCommand::Credit { service, .. } => service.clone(),
    };
    let service = service_config(config, &service_args, None, None)?;
    runtime()?.block_on(async move {
        backdrop_server::ensure_data_dir(&service.server.data_dir)?;
        let repo = backdrop_server::open_repo(&service).await?;
        let now = now_ms();
        match command {
            KeysCommand::Create { name, credits, .. } => {
                let (key, plaintext) =
                    backdrop_server::auth::create_key(repo.as_ref(), &name, credits, now).await.map_err(|e| e.to_string())?;
                let pair = backdrop_server::vendor_keys::credentials(&backdrop_server::server_secret(&service)?, key.id);
                Ok(vec![
                    format!("created key {} ({}), {}", key.id, key.name, balance(key.balance)),
                    plaintext,
                    "keep it now: only its hash is stored. Send it as 'Authorization: Bearer KEY' or 'X-API-Key: KEY'.".into(),
                    format!("access key {} / secret key {} (for the Kling, PicPik and Cutout.pro signed surfaces)", pair.access_key, pair.secret_key),
                ])
            }
            KeysCommand::Show { id, .. } => {
                let key = repo.key(id).await.map_err(|e| e.to_string())?.ok_or_else(|| format!("no key with id {id}"))?;
                let pair = backdrop_server::vendor_keys::credentials(&backdrop_server::server_secret(&service)?, key.id);
                let state = if key.revoked_at.is_some() { "revoked" } else { "active" };
                Ok(vec![
                    format!("key {} ({}), {}, {state}", key.id, key.name, balance(key.balance)),
                    format!("access key {}", pair.access_key),
                    format!("secret key {}", pair.secret_key),
                ])
            }
            KeysCommand::List { .. } => {
                let keys = repo.list_keys().await.map_err(|e| e.to_string())?;
                let mut lines = vec![format!("{:>4}  {:<10}  {:<20}  {:<12}  {}", "id", "prefix", "name", "balance", "state")];
                for k in keys {
                    let state = if k.revoked_at.is_some() { "revoked" } else { "active" };
                    let bal = k.balance.map_or_else(|| "unmetered".to_string(), |b| b.to_string());
                    lines.push(format!("{:>4}  {:<10}  {:<20}  {:<12}  {state}", k.id, format!("{}…", k.prefix), k.name, bal));
                }
                Ok(lines)
            }
            KeysCommand::Revoke { id, .. } => {
                if repo.revoke_key(id, now).await.map_err(|e| e.to_string())? {
                    Ok(vec![format!("revoked key {id}")])
                } else {
                    Err(format!("no key with id {id}"))
                }
            }
            KeysCommand::Credit { id, amount, note, .. } => {
                let key = repo.credit_key(id, amount, &note, now).await.map_err(|e| e.to_string())?;
                Ok(vec![format!("key {id}: {}", balance(key.balance))])
            }
        }
    })
}

fn balance(balance: Option<i64>) -> String {
    balance.map_or_else(|| "unmetered".to_string(), |b| format!("balance {b} credits"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file() {
        let config = Config::default();
        let args = ServiceArgs { data_dir: Some("/tmp/x".into()), database_url: None };
        let c = service_config(&config, &args, Some("127.0.0.1:9999"), None).expect("config");
        assert_eq!(c.server.bind, "127.0.0.1:9999");
        assert_eq!(c.server.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.database_url(), "sqlite:///tmp/x/backdrop.db");
    }
}
