//! Models on the command line: the diffusion `--model/--steps/--guidance/--scheduler/
//! --strength` flags, the `models list|show|pull` subcommand (diffusion and segmentation
//! models), and building the engine set from the configuration.
//!
//! `--model` and `models show` take an exported folder as well as a configured id: a
//! folder that is no configured id becomes a model of its own for that command (see
//! [`with_model_path`]), so a fresh export runs without a configuration file. Only the
//! command line does this; the service serves configured ids only.

use crate::config::Config;
use backdrop_core::EngineOptions;
use backdrop_engines::Engines;
use clap::{Args, Subcommand};

/// Diffusion flags shared by `generate` and `expand`.
#[derive(Debug, Clone, Default, Args)]
pub struct DiffusionArgs {
    /// Diffusion model: an id from the configuration, or an exported ONNX folder
    /// (default: `default_model`).
    #[arg(long)]
    pub model: Option<String>,
    /// Denoising steps (default: the model's, else 25).
    #[arg(long)]
    pub steps: Option<u32>,
    /// Guidance scale (default: the model's, else 7.5).
    #[arg(long)]
    pub guidance: Option<f32>,
    /// Scheduler: ddim, euler-a, dpm++2m, dpm++2m-karras or lcm (default: the model's).
    #[arg(long)]
    pub scheduler: Option<String>,
    /// Strength in (0, 1]: how far a reference background or the expansion pre-fill is
    /// noised (1 ignores it).
    #[arg(long)]
    pub strength: Option<f32>,
}

impl DiffusionArgs {
    /// The engine options these flags set.
    pub fn apply(&self, mut options: EngineOptions) -> EngineOptions {
        options.model = self.model.clone().or(options.model);
        options.steps = self.steps.or(options.steps);
        options.guidance = self.guidance.or(options.guidance);
        options.scheduler = self.scheduler.clone().or(options.scheduler);
        options.reference_strength = self.strength.or(options.reference_strength);
        options
    }
}

/// `backdrop models`.
#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// List the configured models.
    List,
    /// Show one model: where its files are and what it is.
    Show {
        /// The model id.
        id: String,
    },
    /// Download an ONNX export from the Hugging Face hub into the local cache.
    Pull {
        /// The repo id (owner/name).
        repo: String,
        /// Branch, tag or commit.
        #[arg(long)]
        revision: Option<String>,
    },
}

/// The configuration a `generate` or `expand` runs with: when `--model` names no
/// configured id but an exported ONNX folder, that folder joins `[diffusion.models]`
/// under the name given (so the engine finds it by the same string) and becomes the
/// default model when none is configured, so that `auto` picks diffusion. Otherwise the
/// configuration is returned as it is, and an unknown id is refused by the engine.
pub fn with_model_path(config: Config, args: &DiffusionArgs) -> Config {
    #[cfg(feature = "diffusion")]
    if let Some(id) = &args.model {
        let path = std::path::Path::new(id);
        if !config.diffusion.models.contains_key(id) && path.is_dir() {
            let mut config = config;
            config.diffusion.models.insert(
                id.clone(),
                backdrop_diffusion::ModelEntry {
                    path: Some(path.to_path_buf()),
                    ..Default::default()
                },
            );
            if config.diffusion.default_model.is_none() {
                config.diffusion.default_model = Some(id.clone());
            }
            return config;
        }
    }
    let _ = args;
    config
}

/// The engines this process offers: the diffusion engine joins the weight-free ones when
/// the configuration names any model, and segmentation (automatic cut-out) when any
/// segmentation model is available.
pub fn engines(config: &Config) -> Result<Engines, String> {
    #[cfg(feature = "diffusion")]
    {
        let mut engines = Engines::weight_free();
        if !config.diffusion.models.is_empty() {
            let engine = backdrop_diffusion::DiffusionEngine::new(config.diffusion.clone())
                .map_err(|e| e.to_string())?;
            // `auto` picks diffusion only with a default model.
            engines = if config.diffusion.has_default_model() {
                engines.with_diffusion(std::sync::Arc::new(engine))
            } else {
                engines.with_named_diffusion(std::sync::Arc::new(engine))
            };
        }
        let segmenter = backdrop_diffusion::segment::OnnxSegmenter::new(
            config.segmentation.clone(),
            config.diffusion.runtime.clone(),
        )
        .map_err(|e| e.to_string())?;
        if let Some(segmenter) = segmenter {
            engines = engines.with_segmenter(std::sync::Arc::new(segmenter));
        }
        Ok(engines)
    }
    #[cfg(not(feature = "diffusion"))]
    {
        let _ = config;
        Ok(Engines::weight_free())
    }
}

/// Runs `backdrop models ...`; returns the lines to print.
#[cfg(feature = "diffusion")]
pub fn run(config: &Config, command: ModelsCommand) -> Result<Vec<String>, String> {
    use backdrop_diffusion::{hub, model};
    let diffusion = &config.diffusion;
    match command {
        ModelsCommand::List => {
            let mut lines = segmentation_lines(&config.segmentation);
            if diffusion.models.is_empty() {
                lines.insert(0,
                    "no models configured: add [diffusion.models.ID] to backdrop.toml (see the README's Models section)".into(),
                );
                return Ok(lines);
            }
            let mut listed: Vec<String> = diffusion
                .models
                .iter()
                .map(|(id, entry)| {
                    let default = if diffusion.default_model.as_deref() == Some(id) {
                        " (default)"
                    } else {
                        ""
                    };
                    let source = entry
                        .path
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .or_else(|| entry.repo.as_ref().map(|r| format!("hf:{r}")))
                        .unwrap_or_default();
                    let status = match hub::resolve(id, entry) {
                        Ok(folder) if model::missing_files(&folder).is_empty() => "ready",
                        Ok(_) => "incomplete",
                        Err(_) => "missing",
                    };
                    let description =
                        entry.description.as_deref().map(|d| format!("  {d}")).unwrap_or_default();
                    format!("{id}{default}  {status}  {source}{description}")
                })
                .collect();
            listed.append(&mut lines);
            Ok(listed)
        }
        ModelsCommand::Show { id } if !diffusion.models.contains_key(&id) => {
            let folder = std::path::Path::new(&id);
            if folder.is_dir() && !store_knows(config, &id) {
                let entry = backdrop_diffusion::ModelEntry {
                    path: Some(folder.to_path_buf()),
                    ..Default::default()
                };
                return show_diffusion(config, &id, &entry);
            }
            show_segmentation(config, &id)
        }
        ModelsCommand::Show { id } => {
            let entry = diffusion.models.get(&id).ok_or_else(|| {
                format!(
                    "unknown model '{id}' (configured: {})",
                    diffusion.models.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            })?;
            show_diffusion(config, &id, entry)
        }
        ModelsCommand::Pull { repo, revision } => {
            let folder =
                hub::pull(&repo, revision.as_deref(), &|file| eprintln!("downloading {file}"))
                    .map_err(|e| e.to_string())?;
            let section = if folder.join("model_index.json").is_file() {
                "diffusion"
            } else {
                "segmentation"
            };
            Ok(vec![
                format!("pulled {repo} into {}", folder.display()),
                format!("use it with:  [{section}.models.NAME]  repo = \"{repo}\""),
            ])
        }
    }
}

/// Whether a name is a segmentation model's.
#[cfg(feature = "diffusion")]
fn store_knows(config: &Config, id: &str) -> bool {
    backdrop_diffusion::segment::store::known_models(&config.segmentation).iter().any(|k| k == id)
}

/// `models show` for a diffusion model: where it is and what it needs (channels, sizes,
/// decoder, precision, memory).
#[cfg(feature = "diffusion")]
fn show_diffusion(
    config: &Config,
    id: &str,
    entry: &backdrop_diffusion::ModelEntry,
) -> Result<Vec<String>, String> {
    use backdrop_core::Engine;
    use backdrop_diffusion::{hub, model};
    let diffusion = &config.diffusion;
    let mut lines = vec![format!("model: {id}")];
    let folder = hub::resolve(id, entry).map_err(|e| e.to_string())?;
    lines.push(format!("folder: {}", folder.display()));
    let missing = model::missing_files(&folder);
    if !missing.is_empty() {
        lines.push(format!("missing: {}", missing.join(", ")));
        return Ok(lines);
    }
    let loaded = model::Model::open_with(&folder, &diffusion.runtime, &entry.options())
        .map_err(|e| e.to_string())?;
    let info = &loaded.info;
    let family = if info.unet_in_channels == info.latent_channels {
        "ordinary UNet (inpaints by latent blending)"
    } else {
        "inpainting UNet"
    };
    lines.push(format!("unet: {} input channels, {family}", info.unet_in_channels));
    lines.push(format!(
        "latents: {} channels, 1/{} of the image side, scaling factor {}",
        info.latent_channels, info.vae_scale_factor, info.scaling_factor
    ));
    lines.push(format!(
        "text embedding width: {}",
        info.embedding_dim.map_or("dynamic".into(), |d| d.to_string())
    ));
    lines.push(format!(
        "vae scale: {}, sizes padded to multiples of {}",
        info.vae_scale_factor, info.size_multiple
    ));
    let (encoder, decoder) = (&info.encoder, &info.decoder);
    for (half, tiny, file, scaling) in [
        (
            "encoder",
            encoder.tiny,
            &encoder.file,
            format!("latents times {}", encoder.scaling_factor),
        ),
        (
            "decoder",
            decoder.tiny,
            &decoder.file,
            match decoder.tile {
                Some(tile) => format!(
                    "latents divided by {}, in overlapping {tile}-pixel tiles",
                    decoder.scaling_factor
                ),
                None => format!("latents divided by {}", decoder.scaling_factor),
            },
        ),
    ] {
        let kind = if tiny { "tiny (TAESD-style)" } else { "VAE (KL)" };
        lines.push(format!("{half}: {kind} ({}, {scaling})", file.display()));
    }
    let export: Option<serde_json::Value> = std::fs::read_to_string(folder.join("export.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let field = |name: &str| export.as_ref().and_then(|e| e.get(name));
    let mut precision = field("precision")
        .and_then(|p| p.as_str())
        .unwrap_or("not recorded (no export.json); inputs float32")
        .to_owned();
    if let Some(kind) = field("quantize").and_then(|q| q.as_str()) {
        precision.push_str(&format!("; UNet matrix multiplications {kind} (dynamic)"));
        if let Some(error) = field("quantize_rel_error").and_then(|e| e.as_f64()) {
            precision.push_str(&format!(", one step's relative error {error:.1e}"));
        }
    }
    if let Some(target) = field("ort_optimize").and_then(|t| t.as_str()) {
        precision.push_str(&format!("; UNet fused by ONNX Runtime's optimizer for {target}"));
    }
    lines.push(format!("precision: {precision}"));
    lines.push(format!(
        "scheduler: {} (prediction {})",
        info.scheduler.class_name.as_deref().unwrap_or("unknown"),
        info.scheduler.prediction_type.as_deref().unwrap_or("epsilon")
    ));
    let engine = backdrop_diffusion::DiffusionEngine::new(diffusion.clone());
    let per_image = engine.as_ref().map_or(0, |e| e.working_memory(512, 512));
    let mb = |b: u64| b.div_ceil(1024 * 1024);
    lines.push(format!(
        "memory: weights {} MB (on disk, held once per session); estimated {} MB more per \
         512x512 image while it runs; largest image {} pixels ([diffusion] max_pixels)",
        mb(info.weights_bytes),
        mb(per_image),
        diffusion.max_pixels
    ));
    let defaults = format!(
        "defaults: steps {}, guidance {}, scheduler {}",
        entry.steps.unwrap_or(backdrop_diffusion::config::DEFAULT_STEPS),
        entry.guidance.unwrap_or(backdrop_diffusion::config::DEFAULT_GUIDANCE),
        entry.scheduler.as_deref().unwrap_or("the model's")
    );
    lines.push(defaults);
    Ok(lines)
}

/// `models list` lines for the segmentation models.
#[cfg(feature = "diffusion")]
fn segmentation_lines(config: &backdrop_diffusion::segment::SegmentationConfig) -> Vec<String> {
    use backdrop_diffusion::segment::store;
    let default = store::default_model(config);
    let mut lines = vec!["segmentation (cut-out):".to_string()];
    for id in store::known_models(config) {
        let mark = if default.as_deref() == Some(id.as_str()) { " (default)" } else { "" };
        let line = match store::resolve(config, &id) {
            Ok(model) => format!("{id}{mark}  ready  {}", model.file.display()),
            Err(e) => format!("{id}{mark}  missing  {e}"),
        };
        lines.push(line);
    }
    lines
}

/// `models show ID` for a segmentation model: its file, layout and input.
#[cfg(feature = "diffusion")]
fn show_segmentation(config: &Config, id: &str) -> Result<Vec<String>, String> {
    use backdrop_diffusion::segment::{store, OnnxSegmenter};
    let known = store::known_models(&config.segmentation);
    if !known.iter().any(|k| k == id) {
        return Err(format!(
            "unknown model '{id}' (diffusion: {}; segmentation: {})",
            config.diffusion.models.keys().cloned().collect::<Vec<_>>().join(", "),
            known.join(", ")
        ));
    }
    let resolved = store::resolve(&config.segmentation, id).map_err(|e| e.to_string())?;
    let segmenter =
        OnnxSegmenter::new(config.segmentation.clone(), config.diffusion.runtime.clone())
            .map_err(|e| e.to_string())?
            .ok_or_else(store::install_hint)?;
    let (_, pre, (w, h)) = segmenter.open(Some(id)).map_err(|e| e.to_string())?;
    Ok(vec![
        format!("model: {id} (segmentation)"),
        format!("file: {}", resolved.file.display()),
        format!("input: {w}x{h}, mean {:?}, std {:?}", pre.mean, pre.std),
        format!("output: {}", if pre.logits { "logits" } else { "probabilities" }),
    ])
}

/// Without the diffusion engine there are no models.
#[cfg(not(feature = "diffusion"))]
pub fn run(_config: &Config, _command: ModelsCommand) -> Result<Vec<String>, String> {
    Err("this build has no diffusion engine (cargo feature `diffusion`)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_options() {
        let args = DiffusionArgs { steps: Some(9), strength: Some(0.5), ..Default::default() };
        let options = args.apply(EngineOptions { guidance: Some(2.0), ..Default::default() });
        assert_eq!(options.steps, Some(9));
        assert_eq!(options.guidance, Some(2.0));
        assert_eq!(options.reference_strength, Some(0.5));
    }

    #[cfg(feature = "diffusion")]
    #[test]
    fn auto_picks_diffusion_only_with_a_default_model() {
        use backdrop_core::{EngineName, JobKind};
        let with_default = Config::parse(
            "[diffusion]\ndefault_model = \"m\"\n[diffusion.models.m]\npath = \"/m\"\n",
        )
        .expect("parses");
        let configured = engines(&with_default).expect("engines");
        let (name, _) = configured.get(EngineName::Auto, JobKind::Background).expect("auto");
        assert_eq!(name, EngineName::Diffusion);
        let none = engines(&Config::default()).expect("engines");
        assert!(!none.has_diffusion());
    }
}
