//! The configuration file: TOML, one section per part of the system.
//!
//! Found at `--config FILE`, else `$BACKDROP_CONFIG`, else `./backdrop.toml` when present;
//! no file means the defaults (no model: the weight-free engines only).
//!
//! `[diffusion]` configures the diffusion engine: named models (`[diffusion.models.ID]`
//! with `path` = an exported ONNX folder or `repo` = a Hugging Face repo id, and per-model
//! `steps`, `guidance`, `scheduler`), `default_model` (which makes `auto` pick diffusion),
//! `max_pixels`, `max_batch`, `expansion_strength`, and `[diffusion.runtime]` for ONNX
//! Runtime (`library`, `provider` = cpu | cuda | tensorrt, `device_id`, `threads`,
//! `optimization` = disable | basic | extended | all, `memory_arena`). The full annotated
//! example is in the README's "Models" section.
//!
//! `[segmentation]` configures automatic cut-out: named models (`[segmentation.models.ID]`
//! with `path` or `repo`, `layout` = u2net | isnet | birefnet, `size`, `mean`, `std`) and
//! `default_model`; without it the bundled u2netp is used when installed (see the README's
//! "Cut-out" section).

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Everything the configuration file can set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The diffusion engine.
    #[cfg(feature = "diffusion")]
    #[serde(default)]
    pub diffusion: backdrop_diffusion::DiffusionConfig,
    /// Accepted and ignored when built without the diffusion engine.
    #[cfg(not(feature = "diffusion"))]
    #[serde(default)]
    pub diffusion: Option<toml::Value>,
    /// The segmentation engine (automatic cut-out; runs on `[diffusion.runtime]`).
    #[cfg(feature = "diffusion")]
    #[serde(default)]
    pub segmentation: backdrop_diffusion::segment::SegmentationConfig,
    /// Accepted and ignored when built without the ONNX Runtime engines.
    #[cfg(not(feature = "diffusion"))]
    #[serde(default)]
    pub segmentation: Option<toml::Value>,
    /// `[server]`: listening address, data directory, public URL, URL-signing secret.
    #[serde(default)]
    pub server: backdrop_server::config::ServerSection,
    /// `[database]`: `url` = `sqlite://PATH` or `postgres://...`.
    #[serde(default)]
    pub database: backdrop_server::config::DatabaseSection,
    /// `[storage]`: `type = "filesystem"` (`root`) or `type = "s3"`.
    #[serde(default)]
    pub storage: Option<backdrop_store::blob::BlobConfig>,
    /// `[limits]`: rate, burst, per-key images, queue length, body size.
    #[serde(default)]
    pub limits: backdrop_server::config::LimitsSection,
    /// `[queue]`: lease, retries, polling, devices.
    #[serde(default)]
    pub queue: backdrop_server::config::QueueSection,
    /// `[results]`: time to live and sweep interval.
    #[serde(default)]
    pub results: backdrop_server::config::ResultsSection,
    /// `[fetch]`: allow-list, size and time limits for input URLs.
    #[serde(default)]
    pub fetch: backdrop_server::config::FetchSection,
    /// `[callbacks]`: attempts, backoff, timeout.
    #[serde(default)]
    pub callbacks: backdrop_server::config::CallbacksSection,
    /// `[prices]`: credits per surface.
    #[serde(default)]
    pub prices: backdrop_core::PriceTable,
}

impl Config {
    /// The service sections, as the server reads them.
    pub fn service(&self) -> backdrop_server::ServiceConfig {
        backdrop_server::ServiceConfig {
            server: self.server.clone(),
            database: self.database.clone(),
            storage: self.storage.clone(),
            limits: self.limits.clone(),
            queue: self.queue.clone(),
            results: self.results.clone(),
            fetch: self.fetch.clone(),
            callbacks: self.callbacks.clone(),
            prices: self.prices.clone(),
        }
    }
}

/// The file name looked for in the working directory.
pub const DEFAULT_FILE: &str = "backdrop.toml";

impl Config {
    /// Which file to read: the flag, then `$BACKDROP_CONFIG`, then `./backdrop.toml` if it
    /// exists.
    pub fn locate(flag: Option<&Path>) -> Option<PathBuf> {
        if let Some(path) = flag {
            return Some(path.to_path_buf());
        }
        if let Some(path) = std::env::var_os("BACKDROP_CONFIG").filter(|p| !p.is_empty()) {
            return Some(PathBuf::from(path));
        }
        let local = PathBuf::from(DEFAULT_FILE);
        local.is_file().then_some(local)
    }

    /// Loads and checks the configuration (defaults when no file is found).
    pub fn load(flag: Option<&Path>) -> Result<Config, String> {
        let Some(path) = Config::locate(flag) else { return Ok(Config::default()) };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read configuration {}: {e}", path.display()))?;
        Config::parse(&text).map_err(|e| format!("configuration {}: {e}", path.display()))
    }

    /// Parses and checks a configuration text.
    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        #[cfg(feature = "diffusion")]
        config.diffusion.validate()?;
        #[cfg(feature = "diffusion")]
        config.segmentation.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_is_the_defaults() {
        let config = Config::parse("").expect("parses");
        #[cfg(feature = "diffusion")]
        assert!(config.diffusion.default_model.is_none());
        let _ = config;
    }

    #[cfg(feature = "diffusion")]
    #[test]
    fn the_documented_example_parses() {
        let text = r#"
            [diffusion]
            default_model = "sd15-inpaint"
            max_pixels = 1_048_576
            [diffusion.models.sd15-inpaint]
            path = "/models/sd15-inpainting-onnx"
            steps = 25
            guidance = 7.5
            scheduler = "dpm++2m-karras"
            [diffusion.models.hub]
            repo = "owner/name"
            [diffusion.runtime]
            provider = "cuda"
            threads = 2
            optimization = "extended"
            memory_arena = false
        "#;
        let config = Config::parse(text).expect("parses");
        assert_eq!(config.diffusion.models.len(), 2);
        assert_eq!(config.diffusion.runtime.threads, Some(2));
        assert!(!config.diffusion.runtime.memory_arena);
        assert!(Config::parse("[diffusion]\ndefault_model = \"nope\"").is_err());
        assert!(Config::parse("[diffusion]\nunknown_key = 1").is_err());
    }
}
