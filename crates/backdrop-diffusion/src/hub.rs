//! Where a named model's files are: a local folder, the local Hugging Face cache (used in
//! place, never copied), or a download from the Hugging Face hub (`backdrop models pull`).
//! Diffusion models are ONNX Stable Diffusion folders; segmentation models
//! ([`crate::segment`]) are single ONNX networks, pulled the same way.
//!
//! Downloads go through the `hf-hub` crate into the standard cache, so a later run finds
//! them there. Offline (`HF_HUB_OFFLINE=1`, or the hub does not answer within a few
//! seconds) a pull fails at once with a message saying so.

use crate::config::ModelEntry;
use crate::model::missing_files;
use crate::DiffusionError;
use hf_hub::{Cache, Repo, RepoType};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

/// The folders of the ONNX layout that a pull downloads (the tiny VAE halves when the repo
/// has them, so a model entry may name them).
const LAYOUT_PREFIXES: &[&str] = &[
    "text_encoder/",
    "unet/",
    "vae_encoder/",
    "vae_decoder/",
    "vae_encoder_tiny/",
    "vae_decoder_tiny/",
    "tokenizer/",
    "scheduler/",
];

/// Whether a pull downloads this file of a repo.
fn in_layout(file: &str) -> bool {
    file == "model_index.json" || LAYOUT_PREFIXES.iter().any(|p| file.starts_with(p))
}

fn repo(id: &str, revision: Option<&str>) -> Repo {
    Repo::with_revision(id.to_owned(), RepoType::Model, revision.unwrap_or("main").to_owned())
}

/// The snapshot folder of a repo in the local Hugging Face cache, when it is complete.
pub fn cached(id: &str, revision: Option<&str>) -> Option<PathBuf> {
    let index = cached_file(id, revision, "model_index.json")?;
    let folder = index.parent()?.to_path_buf();
    missing_files(&folder).is_empty().then_some(folder)
}

/// One file of a repo in the local Hugging Face cache.
pub fn cached_file(id: &str, revision: Option<&str>, file: &str) -> Option<PathBuf> {
    Cache::from_env().repo(repo(id, revision)).get(file).filter(|p| p.is_file())
}

/// The local folder of a model entry.
pub fn resolve(id: &str, entry: &ModelEntry) -> Result<PathBuf, DiffusionError> {
    if let Some(path) = &entry.path {
        if path.is_dir() {
            return Ok(path.clone());
        }
        return Err(DiffusionError::Model(format!(
            "model '{id}': folder {} does not exist",
            path.display()
        )));
    }
    if let Some(repo_id) = &entry.repo {
        return cached(repo_id, entry.revision.as_deref()).ok_or_else(|| {
            DiffusionError::Model(format!(
                "model '{id}': {repo_id} is not in the Hugging Face cache; run `backdrop models pull {repo_id}`"
            ))
        });
    }
    Err(DiffusionError::Model(format!("model '{id}' has neither `path` nor `repo`")))
}

/// Whether the hub answers: the host resolves and accepts a connection within `timeout`.
fn hub_reachable(timeout: Duration) -> bool {
    let endpoint = std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".into());
    let host = endpoint
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or("huggingface.co")
        .to_owned();
    let target = if host.contains(':') { host } else { format!("{host}:443") };
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        let ok = target
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .is_some_and(|addr| TcpStream::connect_timeout(&addr, timeout).is_ok());
        let _ = send.send(ok);
    });
    receive.recv_timeout(timeout).unwrap_or(false)
}

/// Downloads the ONNX layout of a hub repo into the Hugging Face cache and returns the
/// snapshot folder.
pub fn pull(
    id: &str,
    revision: Option<&str>,
    report: &dyn Fn(&str),
) -> Result<PathBuf, DiffusionError> {
    let offline = std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1" || v == "true");
    if offline || !hub_reachable(Duration::from_secs(5)) {
        return Err(DiffusionError::Model(format!(
            "cannot pull {id}: the Hugging Face hub is not reachable (offline{}); copy an \
             exported folder to this machine and name it with `path` in [diffusion.models], \
             or convert a local checkpoint with tools/diffusion/export_onnx.py",
            if offline { ": HF_HUB_OFFLINE is set" } else { "" }
        )));
    }
    let api = hf_hub::api::sync::ApiBuilder::from_env()
        .with_progress(false)
        .build()
        .map_err(|e| DiffusionError::Model(format!("hub client: {e}")))?;
    let remote = api.repo(repo(id, revision));
    let info = remote.info().map_err(|e| DiffusionError::Model(format!("{id}: {e}")))?;
    let names: Vec<String> = info.siblings.into_iter().map(|s| s.rfilename).collect();
    if !names.iter().any(|f| f == "unet/model.onnx") && names.iter().any(|f| f.ends_with(".onnx")) {
        return pull_networks(id, &remote, &names, report);
    }
    let files: Vec<String> = names.into_iter().filter(|f| in_layout(f)).collect();
    if !files.iter().any(|f| f == "unet/model.onnx") {
        return Err(DiffusionError::Model(format!(
            "{id} has no unet/model.onnx: it is not an ONNX export (convert it with \
             tools/diffusion/export_onnx.py)"
        )));
    }
    let mut folder = None;
    for file in &files {
        report(file);
        let local =
            remote.get(file).map_err(|e| DiffusionError::Model(format!("{id}/{file}: {e}")))?;
        if file == "model_index.json" {
            folder = local.parent().map(PathBuf::from);
        }
    }
    let folder =
        folder.ok_or_else(|| DiffusionError::Model(format!("{id} has no model_index.json")))?;
    let missing = missing_files(&folder);
    if !missing.is_empty() {
        return Err(DiffusionError::Model(format!("{id} lacks {}", missing.join(", "))));
    }
    Ok(folder)
}

/// Downloads the ONNX networks of a repo that is not a Stable Diffusion export (a
/// segmentation model: `model.onnx`, `onnx/model.onnx`, ... with external weights) and
/// returns the snapshot folder.
fn pull_networks(
    id: &str,
    remote: &hf_hub::api::sync::ApiRepo,
    names: &[String],
    report: &dyn Fn(&str),
) -> Result<PathBuf, DiffusionError> {
    let mut root = None;
    for file in names.iter().filter(|f| f.ends_with(".onnx") || f.ends_with(".onnx_data")) {
        report(file);
        let local =
            remote.get(file).map_err(|e| DiffusionError::Model(format!("{id}/{file}: {e}")))?;
        // The snapshot root: the local file minus the repo-relative path.
        let depth = file.split('/').count();
        root = root.or_else(|| local.ancestors().nth(depth).map(PathBuf::from));
    }
    root.ok_or_else(|| DiffusionError::Model(format!("{id} has no .onnx file")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pull_takes_the_layout_and_the_tiny_vae_halves_only() {
        for file in [
            "model_index.json",
            "unet/model.onnx",
            "unet/weights.pb",
            "vae_encoder_tiny/model.onnx",
            "vae_decoder_tiny/config.json",
            "tokenizer/vocab.json",
        ] {
            assert!(in_layout(file), "{file}");
        }
        for file in ["README.md", "vae/config.json", "safety_checker/model.onnx"] {
            assert!(!in_layout(file), "{file}");
        }
    }

    #[test]
    fn a_missing_folder_and_an_uncached_repo_say_what_to_do() {
        let entry = ModelEntry { path: Some("/nonexistent/model".into()), ..Default::default() };
        assert!(resolve("m", &entry)
            .expect_err("must fail")
            .to_string()
            .contains("does not exist"));
        let entry =
            ModelEntry { repo: Some("nobody/not-cached-anywhere".into()), ..Default::default() };
        let err = resolve("m", &entry).expect_err("must fail").to_string();
        assert!(err.contains("backdrop models pull nobody/not-cached-anywhere"), "{err}");
    }
}
