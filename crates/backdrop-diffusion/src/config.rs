//! The `[diffusion]` configuration section: named models, the default model, per-model
//! defaults, limits, and the ONNX Runtime settings (`[diffusion.runtime]`).
//!
//! ```toml
//! [diffusion]
//! default_model = "sd15-inpaint"     # `auto` picks diffusion when this is set
//! max_pixels = 1_048_576             # processing pixels per image; larger is refused
//! max_batch = 2                      # images per UNet call
//! expansion_strength = 0.9           # how much of the patch pre-fill survives (1 = none)
//!
//! [diffusion.models.sd15-inpaint]
//! path = "/models/sd15-inpainting-onnx"   # an exported folder, or:
//! # repo = "owner/name"                   # a Hugging Face repo (cache, or `models pull`)
//! steps = 25
//! guidance = 7.5
//! scheduler = "dpm++2m-karras"            # ddim, euler-a, dpm++2m, dpm++2m-karras, lcm
//! tiny_decoder = "vae_decoder_tiny"       # optional TAESD-style decoder (in the folder)
//! tiny_encoder = "vae_encoder_tiny"       # optional TAESD-style encoder (in the folder)
//! decode_tile = 256                        # optional: KL decode in overlapping tiles
//!
//! [diffusion.runtime]
//! library = "/opt/onnxruntime/lib/libonnxruntime.so.1.22.1"   # default: discovered
//! provider = "cpu"                   # cpu, cuda, tensorrt, openvino
//! # openvino_device = "CPU"          # with openvino: CPU, GPU, NPU, ...
//! threads = 2                        # default: all cores
//! optimization = "all"               # disable, basic, extended, all
//! memory_arena = true
//! shared_arena = true                # one CPU arena for all networks (with the arena)
//! memory_pattern = false             # default off (measured: no faster, more memory)
//! release_memory = true              # arena memory back after each phase of a job
//! spinning = true                    # idle threads spin (ONNX Runtime's default)
//! denormal_as_zero = false
//! fixed_shapes = false               # sessions built per batch and size, cached
//! fixed_shape_cache = 1              # fixed-shape sessions kept per network
//! ```

use crate::runtime::RuntimeConfig;
use crate::scheduler::SchedulerKind;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// One named model.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
// Every field is optional: a missing one takes `Default`.
#[serde(default, deny_unknown_fields)]
pub struct ModelEntry {
    /// An exported ONNX folder.
    pub path: Option<PathBuf>,
    /// A Hugging Face repo id holding an ONNX export.
    pub repo: Option<String>,
    /// The repo revision (default `main`).
    pub revision: Option<String>,
    /// Default steps.
    pub steps: Option<u32>,
    /// Default guidance scale.
    pub guidance: Option<f32>,
    /// Default scheduler (see [`SchedulerKind::NAMES`]).
    pub scheduler: Option<String>,
    /// One line for `backdrop models list`.
    pub description: Option<String>,
    /// A TAESD-style tiny VAE decoder to decode with instead of `vae_decoder/`: a folder
    /// with `model.onnx` and `config.json` (diffusers' `AutoencoderTiny`, exported by
    /// `export_onnx.py --tiny-vae` as `vae_decoder_tiny/`) or an `.onnx` file; relative
    /// paths are inside the model folder. Much faster, slightly softer images.
    pub tiny_decoder: Option<PathBuf>,
    /// A TAESD-style tiny VAE encoder to encode the image to inpaint with instead of
    /// `vae_encoder/` (`export_onnx.py --tiny-vae` writes `vae_encoder_tiny/`), given as
    /// `tiny_decoder` is. About nine times faster than the KL encoder on a CPU (0.7 s
    /// against 6.0 s for SD 1.5 at 512x512); its latents are an approximation of the KL
    /// encoder's, so results differ slightly.
    pub tiny_encoder: Option<PathBuf>,
    /// Decode with the KL VAE in overlapping tiles of this many pixels, as diffusers'
    /// `enable_vae_tiling()` does for the decoder: a multiple of 32 for SD (four times
    /// the VAE's scale factor); images no larger than a tile decode whole. The decoder's
    /// activations are then a tile's: SD 1.5's 512x512 decode held about 840 MiB whole.
    /// Results differ slightly from a whole decode (no seams); off by default.
    pub decode_tile: Option<usize>,
}

impl ModelEntry {
    /// The options a model is opened with.
    pub fn options(&self) -> crate::model::ModelOptions {
        crate::model::ModelOptions {
            tiny_decoder: self.tiny_decoder.clone(),
            tiny_encoder: self.tiny_encoder.clone(),
            decode_tile: self.decode_tile,
        }
    }
}

/// `[diffusion]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiffusionConfig {
    /// Models by id.
    #[serde(default)]
    pub models: BTreeMap<String, ModelEntry>,
    /// The model used when a job names none; also what makes `auto` pick diffusion.
    #[serde(default)]
    pub default_model: Option<String>,
    /// The largest processing size (width x height after rounding up to a multiple of 8)
    /// accepted per image; larger jobs are refused before any work.
    #[serde(default = "default_max_pixels")]
    pub max_pixels: u64,
    /// Images per UNet call (memory grows with it).
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Strength for expansions: the patch pre-fill is noised to this level, so 1 keeps
    /// only the original as context and lower values keep more of the pre-fill's layout.
    #[serde(default = "default_expansion_strength")]
    pub expansion_strength: f32,
    /// ONNX Runtime settings.
    #[serde(default)]
    pub runtime: RuntimeConfig,
}

fn default_max_pixels() -> u64 {
    1024 * 1024
}
fn default_max_batch() -> usize {
    2
}
fn default_expansion_strength() -> f32 {
    0.9
}

impl Default for DiffusionConfig {
    fn default() -> Self {
        DiffusionConfig {
            models: BTreeMap::new(),
            default_model: None,
            max_pixels: default_max_pixels(),
            max_batch: default_max_batch(),
            expansion_strength: default_expansion_strength(),
            runtime: RuntimeConfig::default(),
        }
    }
}

/// Built-in defaults when neither the job nor the model entry says.
pub const DEFAULT_STEPS: u32 = 25;
/// Built-in guidance scale.
pub const DEFAULT_GUIDANCE: f32 = 7.5;

impl DiffusionConfig {
    /// Whether a default model is configured (then `auto` picks diffusion).
    pub fn has_default_model(&self) -> bool {
        self.default_model.is_some()
    }

    /// Checks names and values, so that a bad file is refused at start-up.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(id) = &self.default_model {
            if !self.models.contains_key(id) {
                return Err(format!(
                    "[diffusion] default_model '{id}' is not among [diffusion.models] ({})",
                    self.models.keys().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
        }
        for (id, entry) in &self.models {
            if entry.path.is_none() && entry.repo.is_none() {
                return Err(format!("[diffusion.models.{id}] needs `path` or `repo`"));
            }
            if let Some(s) = &entry.scheduler {
                s.parse::<SchedulerKind>().map_err(|e| format!("[diffusion.models.{id}] {e}"))?;
            }
            // What can be told without the model; the tile's fit to the VAE's scale
            // factor is checked when the model opens.
            match entry.decode_tile {
                Some(_) if entry.tiny_decoder.is_some() => {
                    return Err(format!(
                        "[diffusion.models.{id}] decode_tile tiles the KL VAE decoder; it \
                         cannot go with tiny_decoder"
                    ));
                }
                Some(0) => {
                    return Err(format!("[diffusion.models.{id}] decode_tile must be positive"));
                }
                _ => {}
            }
        }
        if !(0.0..=1.0).contains(&self.expansion_strength) || self.expansion_strength == 0.0 {
            return Err("[diffusion] expansion_strength must be in (0, 1]".into());
        }
        if self.max_batch == 0 {
            return Err("[diffusion] max_batch must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_names_the_broken_entry() {
        let mut config = DiffusionConfig { default_model: Some("x".into()), ..Default::default() };
        assert!(config.validate().expect_err("must fail").contains("default_model 'x'"));
        config.models.insert("x".into(), ModelEntry::default());
        assert!(config.validate().expect_err("must fail").contains("needs `path` or `repo`"));
        config.models.insert(
            "x".into(),
            ModelEntry {
                path: Some("/m".into()),
                scheduler: Some("pndm".into()),
                ..Default::default()
            },
        );
        assert!(config.validate().expect_err("must fail").contains("unknown scheduler"));
        for (entry, message) in [
            (
                ModelEntry {
                    decode_tile: Some(256),
                    tiny_decoder: Some("vae_decoder_tiny".into()),
                    ..Default::default()
                },
                "it cannot go with tiny_decoder",
            ),
            (ModelEntry { decode_tile: Some(0), ..Default::default() }, "must be positive"),
        ] {
            let entry = ModelEntry { path: Some("/m".into()), ..entry };
            config.models.insert("x".into(), entry);
            let err = config.validate().expect_err("must fail");
            assert!(err.contains("[diffusion.models.x] decode_tile"), "{err}");
            assert!(err.contains(message), "{err}");
        }
    }
}
