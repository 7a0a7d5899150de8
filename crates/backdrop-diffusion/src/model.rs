//! One Stable Diffusion model in the ONNX folder layout of diffusers/Optimum exports, and
//! its four networks as ONNX Runtime sessions.
//!
//! ```text
//! model_index.json
//! text_encoder/model.onnx     input_ids -> last_hidden_state
//! unet/model.onnx (+ weights) sample, timestep, encoder_hidden_states -> out_sample
//! vae_encoder/model.onnx      sample -> latent_parameters (mean and log-variance)
//! vae_decoder/model.onnx      latent_sample -> sample
//! tokenizer/                  vocab.json, merges.txt, tokenizer_config.json
//! scheduler/scheduler_config.json
//! vae_decoder_tiny/           optional: a TAESD-style decoder (diffusers'
//!                             `AutoencoderTiny`), same input and output names
//! vae_encoder_tiny/           optional: its encoder, sample -> latents (no sampling)
//! ```
//!
//! This module owns reading that layout: which files must exist, the network facts that
//! the pipeline needs (UNet input channels, latent channels, VAE scale and scaling
//! factor, input element types), read from the sessions' signatures and the `config.json`
//! files the exports write beside each network. An older export whose VAE encoder returns
//! an already sampled `latent_sample` is accepted too.
//!
//! It also owns how the networks are driven: with `fixed_shapes` a network's sessions are
//! built per concrete input shape (free-dimension overrides) and cached; the UNet of a
//! denoising loop runs through an [`UnetCall`], whose text embeddings, constant input
//! channels and output buffer are bound once for all steps.

use crate::runtime::{
    after_run, run_options, session, session_with, Optimization, Provider, RuntimeConfig,
};
use crate::scheduler::SchedulerConfig;
use crate::tiles::{check_tile, tiled_decode};
use crate::tokenizer::ClipTokenizer;
use crate::DiffusionError;
use ort::io_binding::IoBinding;
use ort::session::Session;
use ort::tensor::TensorElementType;
use ort::value::{DynValue, Tensor, ValueType};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Whether a folder looks like an ONNX Stable Diffusion export (the files the pipeline
/// opens all exist).
pub fn missing_files(root: &Path) -> Vec<&'static str> {
    [
        "text_encoder/model.onnx",
        "unet/model.onnx",
        "vae_encoder/model.onnx",
        "vae_decoder/model.onnx",
        "tokenizer/vocab.json",
        "tokenizer/merges.txt",
        "scheduler/scheduler_config.json",
    ]
    .into_iter()
    .filter(|f| !root.join(f).is_file())
    .collect()
}

/// What the VAE encoder returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncoderOutput {
    /// Mean and log-variance (`2 * latent_channels` channels); sampled here with the
    /// seed's generator, as diffusers does.
    Parameters,
    /// An already sampled latent (older exports sample inside the graph).
    Sampled,
    /// Deterministic latents: a TAESD-style encoder's, which diffusers takes as they are
    /// (`retrieve_latents` reads `.latents`), drawing nothing from the generator.
    Latents,
}

/// Per-model options from the configuration (`[diffusion.models.ID]`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelOptions {
    /// A TAESD-style tiny VAE decoder folder (`model.onnx` and `config.json`) or
    /// `.onnx` file to decode with instead of `vae_decoder/`; relative to the model folder.
    pub tiny_decoder: Option<PathBuf>,
    /// A TAESD-style tiny VAE encoder, likewise, to encode the image to inpaint with
    /// instead of `vae_encoder/`.
    pub tiny_encoder: Option<PathBuf>,
    /// Decode with the KL decoder in overlapping tiles of this many pixels (see
    /// [`crate::tiles`]); images no larger than a tile decode whole.
    pub decode_tile: Option<usize>,
}

/// A tiny VAE half's folder or file, resolved against the model folder.
pub fn tiny_vae_file(root: &Path, tiny: &Path) -> PathBuf {
    let path = if tiny.is_absolute() { tiny.to_path_buf() } else { root.join(tiny) };
    if path.extension().is_some_and(|e| e == "onnx") {
        path
    } else {
        path.join("model.onnx")
    }
}

/// The decoder a model decodes with.
#[derive(Debug, Clone, PartialEq)]
pub struct DecoderInfo {
    /// Its ONNX file.
    pub file: PathBuf,
    /// Whether it is a tiny (TAESD-style) decoder.
    pub tiny: bool,
    /// What the UNet's latents are divided by before decoding: the KL decoder's
    /// `scaling_factor` (0.18215 for SD 1.x), or the tiny decoder's own (1.0 for TAESD,
    /// which decodes the UNet's latents as they are), read from its `config.json`.
    pub scaling_factor: f32,
    /// The tile size in pixels when it decodes in tiles (see [`crate::tiles`]).
    pub tile: Option<usize>,
}

/// The encoder a model encodes images with.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderInfo {
    /// Its ONNX file.
    pub file: PathBuf,
    /// Whether it is a tiny (TAESD-style) encoder.
    pub tiny: bool,
    /// What it returns.
    pub output: EncoderOutput,
    /// What its latents are multiplied by to be the UNet's: the KL VAE's
    /// `scaling_factor`, or the tiny encoder's own (1.0 for TAESD).
    pub scaling_factor: f32,
}

/// Facts about a loaded model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// The folder.
    pub root: PathBuf,
    /// UNet input channels: 9 for inpainting UNets, 4 for ordinary ones.
    pub unet_in_channels: usize,
    /// Latent channels (4).
    pub latent_channels: usize,
    /// Pixels per latent pixel along a side (8 for SD).
    pub vae_scale_factor: usize,
    /// What both image sides must be a multiple of: the VAE scale times the UNet's own
    /// downsampling (64 for SD: 8 x 2^3), since an exported UNet cannot resize its skip
    /// connections for other sizes.
    pub size_multiple: usize,
    /// The KL VAE's latent scaling factor (0.18215 for SD 1.x/2.x).
    pub scaling_factor: f32,
    /// Text embedding width (768 SD 1.x, 1024 SD 2.x).
    pub embedding_dim: Option<usize>,
    /// The encoder images are encoded with.
    pub encoder: EncoderInfo,
    /// The scheduler configuration shipped with the model.
    pub scheduler: SchedulerConfig,
    /// The decoder images are decoded with.
    pub decoder: DecoderInfo,
    /// Bytes of the networks' ONNX files and external weights on disk (with the encoder
    /// and decoder in use), about what loading them takes in memory.
    pub weights_bytes: u64,
}

/// Calls made to a model's networks, for tests and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModelStats {
    /// UNet calls.
    pub unet_calls: u64,
    /// UNet batch entries over all calls (with guidance each image is two).
    pub unet_batch_entries: u64,
    /// Sessions built for fixed shapes.
    pub fixed_sessions_built: u64,
}

/// The sizes of a network's symbolic dimensions, and the session built for them.
type FixedSession = (Vec<(String, i64)>, Arc<Mutex<Session>>);

/// One network: its file, its input signature, and its sessions.
struct Network {
    what: &'static str,
    file: PathBuf,
    runtime: RuntimeConfig,
    /// Per input: name, element type, shape (-1 where dynamic) and dimension symbols.
    inputs: Vec<(String, TensorElementType, Vec<i64>, Vec<String>)>,
    /// Output names in order.
    outputs: Vec<String>,
    /// The dynamic-shape session (absent with fixed shapes, once the signature is read).
    dynamic: Option<Arc<Mutex<Session>>>,
    /// Fixed-shape sessions, most recently used first.
    fixed: Mutex<Vec<FixedSession>>,
    built: AtomicU64,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network").field("file", &self.file).finish_non_exhaustive()
    }
}

impl Network {
    fn open(
        what: &'static str,
        file: &Path,
        runtime: &RuntimeConfig,
        shaped: bool,
    ) -> Result<Network, DiffusionError> {
        // With fixed shapes the dynamic session is not kept: a second copy of the weights
        // for a session that never runs. It only tells the signature then, so a plain CPU
        // session reads it without compiling for the provider (OpenVINO cannot compile
        // the dynamic shapes, and a GPU provider would load the weights for nothing).
        let keep_dynamic = !(shaped && runtime.shapes_fixed());
        let session = if keep_dynamic {
            session(runtime, file)?
        } else {
            let signature = RuntimeConfig {
                provider: Provider::Cpu,
                optimization: Optimization::Disable,
                ..runtime.clone()
            };
            session(&signature, file)?
        };
        let inputs = session
            .inputs
            .iter()
            .filter_map(|i| match &i.input_type {
                ValueType::Tensor { ty, shape, dimension_symbols } => Some((
                    i.name.clone(),
                    *ty,
                    shape.to_vec(),
                    dimension_symbols.iter().cloned().collect(),
                )),
                _ => None,
            })
            .collect();
        let outputs = session.outputs.iter().map(|o| o.name.clone()).collect();
        Ok(Network {
            what,
            file: file.to_path_buf(),
            runtime: runtime.clone(),
            inputs,
            outputs,
            dynamic: keep_dynamic.then(|| Arc::new(Mutex::new(session))),
            fixed: Mutex::new(Vec::new()),
            built: AtomicU64::new(0),
        })
    }

    fn input(&self, name: &str) -> Option<(TensorElementType, &[i64])> {
        self.inputs.iter().find(|i| i.0 == name).map(|i| (i.1, i.2.as_slice()))
    }

    /// The session for inputs of these shapes: the dynamic one, or the one built for
    /// exactly these sizes of the symbolic dimensions.
    fn session(&self, shapes: &[(&str, &[i64])]) -> Result<Arc<Mutex<Session>>, DiffusionError> {
        if let Some(dynamic) = &self.dynamic {
            return Ok(Arc::clone(dynamic));
        }
        let mut key: Vec<(String, i64)> = Vec::new();
        for (name, shape) in shapes {
            let Some(input) = self.inputs.iter().find(|i| i.0 == *name) else { continue };
            for (at, (&dim, symbol)) in input.2.iter().zip(&input.3).enumerate() {
                if dim >= 0 || symbol.is_empty() || key.iter().any(|(s, _)| s == symbol) {
                    continue;
                }
                if let Some(&size) = shape.get(at) {
                    key.push((symbol.clone(), size));
                }
            }
        }
        key.sort();
        let mut fixed = self.fixed.lock().map_err(|_| {
            DiffusionError::Failed(format!("{}: a previous run panicked", self.what))
        })?;
        if let Some(at) = fixed.iter().position(|(k, _)| *k == key) {
            let entry = fixed.remove(at);
            let session = Arc::clone(&entry.1);
            fixed.insert(0, entry);
            return Ok(session);
        }
        // Drop the oldest before building, so the weights are held at most `cache` times.
        let cache = self.runtime.fixed_shape_cache.max(1);
        fixed.truncate(cache - 1);
        let session = Arc::new(Mutex::new(session_with(&self.runtime, &self.file, &key)?));
        self.built.fetch_add(1, Ordering::Relaxed);
        fixed.insert(0, (key, Arc::clone(&session)));
        Ok(session)
    }

    /// Runs once with owned inputs and returns the first output as f32.
    /// With `release`, the run's activation memory goes back when it ends (see
    /// [`run_options`]).
    fn run(
        &self,
        inputs: Vec<(&str, DynValue)>,
        release: bool,
    ) -> Result<(Vec<i64>, Vec<f32>), DiffusionError> {
        let shapes: Vec<(&str, Vec<i64>)> = inputs
            .iter()
            .map(|(n, v)| {
                let shape = match v.dtype() {
                    ValueType::Tensor { shape, .. } => shape.to_vec(),
                    _ => Vec::new(),
                };
                (*n, shape)
            })
            .collect();
        let refs: Vec<(&str, &[i64])> = shapes.iter().map(|(n, s)| (*n, s.as_slice())).collect();
        let session = self.session(&refs)?;
        run(&session, self.what, inputs, &self.runtime, release)
    }
}

/// A model with its sessions open.
#[derive(Debug)]
pub struct Model {
    /// Facts about it.
    pub info: ModelInfo,
    /// Its tokenizer.
    pub tokenizer: ClipTokenizer,
    text_encoder: Network,
    unet: Network,
    vae_encoder: Network,
    vae_decoder: Network,
    ids_are_i32: bool,
    timestep_type: TensorElementType,
    unet_calls: AtomicU64,
    unet_entries: AtomicU64,
}

/// A configured tiny VAE half (`key` is its configuration key), resolved and checked to
/// exist.
fn tiny_vae(
    root: &Path,
    key: &str,
    configured: Option<&Path>,
) -> Result<Option<PathBuf>, DiffusionError> {
    let Some(file) = configured.map(|t| tiny_vae_file(root, t)) else { return Ok(None) };
    if !file.is_file() {
        return Err(DiffusionError::Model(format!("{key}: {} does not exist", file.display())));
    }
    Ok(Some(file))
}

/// A tiny VAE half's scaling factor from the `config.json` beside it: diffusers'
/// AutoencoderTiny has 1.0 (its latents are the UNet's, not the KL VAE's unscaled ones).
/// Its latent channels must be the model's.
fn tiny_scaling(key: &str, file: &Path, latent_channels: usize) -> Result<f32, DiffusionError> {
    let config = file.parent().and_then(|d| read_json(&d.join("config.json")));
    let get = |name: &str| config.as_ref().and_then(|c| c.get(name));
    let channels = get("latent_channels").and_then(Value::as_u64).unwrap_or(4);
    if channels as usize != latent_channels {
        return Err(DiffusionError::Model(format!(
            "{key} {} has {channels} latent channels, the model {latent_channels}",
            file.display()
        )));
    }
    Ok(get("scaling_factor").and_then(Value::as_f64).unwrap_or(1.0) as f32)
}

fn read_json(path: &Path) -> Option<Value> {
    std::fs::read_to_string(path).ok().and_then(|s| serde_json::from_str(&s).ok())
}

/// Bytes of a network's weights on disk (the ONNX file and any external data beside it).
fn weights_on_disk(file: &Path) -> u64 {
    let Some(dir) = file.parent() else { return 0 };
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| {
                    let name = e.file_name();
                    let name = name.to_string_lossy();
                    name.ends_with(".onnx") || name.ends_with(".pb") || name.ends_with(".onnx_data")
                })
                .filter_map(|e| e.metadata().ok().map(|m| m.len()))
                .sum()
        })
        .unwrap_or(0)
}

impl Model {
    /// Opens a model folder with default options.
    pub fn open(root: &Path, runtime: &RuntimeConfig) -> Result<Model, DiffusionError> {
        Model::open_with(root, runtime, &ModelOptions::default())
    }

    /// Opens a model folder.
    pub fn open_with(
        root: &Path,
        runtime: &RuntimeConfig,
        options: &ModelOptions,
    ) -> Result<Model, DiffusionError> {
        let missing = missing_files(root);
        if !missing.is_empty() {
            return Err(DiffusionError::Model(format!(
                "{} is not an ONNX Stable Diffusion folder: missing {}",
                root.display(),
                missing.join(", ")
            )));
        }
        let tiny_file = tiny_vae(root, "tiny_decoder", options.tiny_decoder.as_deref())?;
        let tiny_encoder_file = tiny_vae(root, "tiny_encoder", options.tiny_encoder.as_deref())?;
        let scheduler_text = std::fs::read_to_string(root.join("scheduler/scheduler_config.json"))
            .map_err(|e| DiffusionError::Model(format!("scheduler_config.json: {e}")))?;
        let scheduler: SchedulerConfig = serde_json::from_str(&scheduler_text)
            .map_err(|e| DiffusionError::Model(format!("scheduler_config.json: {e}")))?;
        let tokenizer = ClipTokenizer::from_dir(&root.join("tokenizer"))?;
        // The text encoder without pre-packed weights: ONNX Runtime keeps a packed copy of
        // its matrices beside the originals. Measured on SD 1.5's (470 MB on disk, 2
        // cores): 840 MiB resident after loading with packing, 500 MiB without, 0.17 s per
        // call either way. (The UNet's packing pays for itself: without it a 2-step
        // inpaint held more, not less.)
        let text_runtime = RuntimeConfig { prepacking: false, ..runtime.clone() };
        let text_encoder = Network::open(
            "text encoder",
            &root.join("text_encoder/model.onnx"),
            &text_runtime,
            false,
        )?;
        let unet = Network::open("UNet", &root.join("unet/model.onnx"), runtime, true)?;
        let vae_encoder = Network::open(
            if tiny_encoder_file.is_some() { "tiny VAE encoder" } else { "VAE encoder" },
            &tiny_encoder_file.clone().unwrap_or_else(|| root.join("vae_encoder/model.onnx")),
            runtime,
            true,
        )?;
        let decoder_file = tiny_file.clone().unwrap_or_else(|| root.join("vae_decoder/model.onnx"));
        let vae_decoder = Network::open(
            if tiny_file.is_some() { "tiny VAE decoder" } else { "VAE decoder" },
            &decoder_file,
            runtime,
            true,
        )?;

        let vae_config = read_json(&root.join("vae_decoder/config.json"))
            .or_else(|| read_json(&root.join("vae_encoder/config.json")))
            .or_else(|| read_json(&root.join("vae/config.json")));
        let unet_config = read_json(&root.join("unet/config.json"));
        let from_vae = |key: &str| vae_config.as_ref().and_then(|c| c.get(key));

        let (_, sample_shape) = unet
            .input("sample")
            .ok_or_else(|| DiffusionError::Model("unet/model.onnx has no 'sample' input".into()))?;
        let unet_in_channels = sample_shape
            .get(1)
            .copied()
            .filter(|&c| c > 0)
            .map(|c| c as usize)
            .or_else(|| {
                unet_config
                    .as_ref()
                    .and_then(|c| c.get("in_channels"))
                    .and_then(Value::as_u64)
                    .map(|c| c as usize)
            })
            .ok_or_else(|| DiffusionError::Model("cannot tell the UNet's input channels".into()))?;
        let latent_channels =
            from_vae("latent_channels").and_then(Value::as_u64).unwrap_or(4) as usize;
        if unet_in_channels != latent_channels && unet_in_channels != 2 * latent_channels + 1 {
            return Err(DiffusionError::Model(format!(
                "a UNet with {unet_in_channels} input channels is neither an ordinary \
                 ({latent_channels}) nor an inpainting ({}) UNet",
                2 * latent_channels + 1
            )));
        }
        let vae_scale_factor = from_vae("block_out_channels")
            .and_then(Value::as_array)
            .map_or(8, |b| 1usize << b.len().saturating_sub(1));
        let unet_levels = unet_config
            .as_ref()
            .and_then(|c| c.get("block_out_channels"))
            .and_then(Value::as_array)
            .map_or(4, Vec::len);
        let size_multiple = vae_scale_factor << unet_levels.saturating_sub(1);
        if let Some(tile) = options.decode_tile {
            if tiny_file.is_some() {
                return Err(DiffusionError::Config(
                    "decode_tile tiles the KL VAE decoder; it cannot go with tiny_decoder".into(),
                ));
            }
            check_tile(tile, vae_scale_factor).map_err(DiffusionError::Config)?;
        }
        let scaling_factor =
            from_vae("scaling_factor").and_then(Value::as_f64).unwrap_or(0.18215) as f32;
        let decoder = match &tiny_file {
            Some(file) => DecoderInfo {
                file: file.clone(),
                tiny: true,
                scaling_factor: tiny_scaling("tiny_decoder", file, latent_channels)?,
                tile: None,
            },
            None => DecoderInfo {
                file: decoder_file.clone(),
                tiny: false,
                scaling_factor,
                tile: options.decode_tile,
            },
        };
        let encoder = match &tiny_encoder_file {
            Some(file) => EncoderInfo {
                file: file.clone(),
                tiny: true,
                output: EncoderOutput::Latents,
                scaling_factor: tiny_scaling("tiny_encoder", file, latent_channels)?,
            },
            None => EncoderInfo {
                file: vae_encoder.file.clone(),
                tiny: false,
                output: match vae_encoder.outputs.first().map(String::as_str) {
                    Some("latent_sample") => EncoderOutput::Sampled,
                    _ => EncoderOutput::Parameters,
                },
                scaling_factor,
            },
        };
        let ids_are_i32 =
            matches!(text_encoder.input("input_ids"), Some((TensorElementType::Int32, _)));
        let timestep_type = unet.input("timestep").map(|(t, _)| t).ok_or_else(|| {
            DiffusionError::Model("unet/model.onnx has no 'timestep' input".into())
        })?;
        if !matches!(
            timestep_type,
            TensorElementType::Float32 | TensorElementType::Int64 | TensorElementType::Float64
        ) {
            return Err(DiffusionError::Model(format!(
                "UNet timestep type {timestep_type:?} is not supported; export with float32 inputs"
            )));
        }
        let embedding_dim = unet
            .input("encoder_hidden_states")
            .and_then(|(_, s)| s.get(2).copied())
            .filter(|&d| d > 0)
            .map(|d| d as usize);
        let weights_bytes = [&text_encoder.file, &unet.file, &vae_encoder.file, &vae_decoder.file]
            .into_iter()
            .map(|f| weights_on_disk(f))
            .sum();
        Ok(Model {
            info: ModelInfo {
                root: root.to_path_buf(),
                unet_in_channels,
                latent_channels,
                vae_scale_factor,
                size_multiple,
                scaling_factor,
                embedding_dim,
                encoder,
                scheduler,
                decoder,
                weights_bytes,
            },
            tokenizer,
            text_encoder,
            unet,
            vae_encoder,
            vae_decoder,
            ids_are_i32,
            timestep_type,
            unet_calls: AtomicU64::new(0),
            unet_entries: AtomicU64::new(0),
        })
    }

    /// Calls made so far.
    pub fn stats(&self) -> ModelStats {
        ModelStats {
            unet_calls: self.unet_calls.load(Ordering::Relaxed),
            unet_batch_entries: self.unet_entries.load(Ordering::Relaxed),
            fixed_sessions_built: [&self.unet, &self.vae_encoder, &self.vae_decoder]
                .iter()
                .map(|n| n.built.load(Ordering::Relaxed))
                .sum(),
        }
    }

    /// Text embeddings for a batch of framed ids: `[batch, 77, dim]` flattened, and dim.
    pub fn encode_text(&self, ids: &[Vec<u32>]) -> Result<(Vec<f32>, usize), DiffusionError> {
        let batch = ids.len();
        let len = ids.first().map_or(0, Vec::len);
        let flat: Vec<u32> = ids.iter().flatten().copied().collect();
        let shape = vec![batch as i64, len as i64];
        let value: DynValue = if self.ids_are_i32 {
            tensor(shape, flat.iter().map(|&i| i as i32).collect())?
        } else {
            tensor(shape, flat.iter().map(|&i| i64::from(i)).collect())?
        };
        let (dims, data) = self.text_encoder.run(vec![("input_ids", value)], true)?;
        let dim = *dims.last().unwrap_or(&0) as usize;
        Ok((data, dim))
    }

    fn timestep_value(&self, batch: usize, timestep: f64) -> Result<DynValue, DiffusionError> {
        match self.timestep_type {
            TensorElementType::Int64 => tensor(vec![batch as i64], vec![timestep as i64; batch]),
            TensorElementType::Float64 => tensor(vec![batch as i64], vec![timestep; batch]),
            _ => tensor(vec![batch as i64], vec![timestep as f32; batch]),
        }
    }

    /// One UNet call with owned inputs (a single call; a denoising loop uses
    /// [`Model::unet_call`]).
    pub fn unet(
        &self,
        sample: Vec<f32>,
        sample_shape: [usize; 4],
        timestep: f64,
        hidden: Vec<f32>,
        hidden_shape: [usize; 3],
    ) -> Result<Vec<f32>, DiffusionError> {
        let batch = sample_shape[0];
        self.unet_calls.fetch_add(1, Ordering::Relaxed);
        self.unet_entries.fetch_add(batch as u64, Ordering::Relaxed);
        let (_, out) = self.unet.run(
            vec![
                ("sample", tensor(shape_of(&sample_shape), sample)?),
                ("timestep", self.timestep_value(batch, timestep)?),
                ("encoder_hidden_states", tensor(shape_of(&hidden_shape), hidden)?),
            ],
            true,
        )?;
        Ok(out)
    }

    /// A UNet call to repeat over the steps of a loop: `hidden` (`[batch, seq, dim]`) is
    /// bound once, the sample buffer (`[batch, channels, h, w]`) is written in place
    /// between steps, and the output goes to the same buffer every step.
    pub fn unet_call(
        &self,
        sample_shape: [usize; 4],
        hidden: Vec<f32>,
        hidden_shape: [usize; 3],
    ) -> Result<UnetCall<'_>, DiffusionError> {
        let fail = |e: ort::Error| DiffusionError::Failed(format!("UNet: {e}"));
        let sample_dims = shape_of(&sample_shape);
        let hidden_dims = shape_of(&hidden_shape);
        let batch = sample_shape[0];
        let session = self.unet.session(&[
            ("sample", &sample_dims),
            ("timestep", &[batch as i64]),
            ("encoder_hidden_states", &hidden_dims),
        ])?;
        let hidden = Tensor::from_array((hidden_dims, hidden)).map_err(fail)?;
        let sample = Tensor::from_array((sample_dims, vec![0f32; sample_shape.iter().product()]))
            .map_err(fail)?;
        let out_len = batch * self.info.latent_channels * sample_shape[2] * sample_shape[3];
        let out_dims =
            shape_of(&[batch, self.info.latent_channels, sample_shape[2], sample_shape[3]]);
        let output = Tensor::from_array((out_dims, vec![0f32; out_len])).map_err(fail)?;
        let output_name = self.unet.outputs.first().cloned().unwrap_or_else(|| "out_sample".into());
        let mut binding = {
            let guard = session
                .lock()
                .map_err(|_| DiffusionError::Failed("UNet: a previous run panicked".into()))?;
            guard.create_binding().map_err(fail)?
        };
        binding.bind_input("encoder_hidden_states", &hidden).map_err(fail)?;
        binding.bind_output(output_name.as_str(), output).map_err(fail)?;
        Ok(UnetCall {
            model: self,
            session,
            binding,
            sample,
            _hidden: hidden,
            batch,
            release_after: false,
        })
    }

    /// The encoder on an image `[1, 3, h, w]` in [-1, 1]: the moments
    /// (`[1, 2c, h/f, w/f]`) or latents, see [`EncoderOutput`].
    pub fn encode_image(
        &self,
        image: Vec<f32>,
        height: usize,
        width: usize,
    ) -> Result<Vec<f32>, DiffusionError> {
        let (_, out) = self
            .vae_encoder
            .run(vec![("sample", tensor(shape_of(&[1, 3, height, width]), image)?)], true)?;
        Ok(out)
    }

    /// The decoder on decoder-input latents `[1, c, h, w]` (already divided by
    /// [`DecoderInfo::scaling_factor`]): an image in about [-1, 1].
    pub fn decode(
        &self,
        latents: Vec<f32>,
        height: usize,
        width: usize,
    ) -> Result<Vec<f32>, DiffusionError> {
        let channels = self.info.latent_channels;
        let whole = |latents: Vec<f32>, height: usize, width: usize, release: bool| {
            let shape = shape_of(&[1, channels, height, width]);
            let (_, out) =
                self.vae_decoder.run(vec![("latent_sample", tensor(shape, latents)?)], release)?;
            Ok(out)
        };
        let scale = self.info.vae_scale_factor;
        match self.info.decoder.tile {
            // Only an image larger than a tile is tiled, as in diffusers.
            Some(tile) if height.max(width) * scale > tile => {
                tiled_decode(&latents, channels, height, width, tile, scale, whole)
            }
            _ => whole(latents, height, width, true),
        }
    }

    /// The decoder on the UNet's latents `[c, h, w]`: divides by the decoder's scaling
    /// factor (the KL VAE's, or 1 for a tiny decoder) and decodes.
    pub fn decode_latents(
        &self,
        latents: &[f32],
        height: usize,
        width: usize,
    ) -> Result<Vec<f32>, DiffusionError> {
        let scaling = self.info.decoder.scaling_factor;
        self.decode(latents.iter().map(|&v| v / scaling).collect(), height, width)
    }
}

/// A UNet call bound for the steps of one denoising loop; see [`Model::unet_call`].
pub struct UnetCall<'m> {
    model: &'m Model,
    session: Arc<Mutex<Session>>,
    binding: IoBinding,
    sample: Tensor<f32>,
    // Kept alive for the binding (which also holds it), and so that its memory is not
    // freed while the session may read it.
    _hidden: Tensor<f32>,
    batch: usize,
    /// Whether the next run gives the arena's memory back (see
    /// [`UnetCall::release_after_next_run`]).
    release_after: bool,
}

impl std::fmt::Debug for UnetCall<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnetCall").field("batch", &self.batch).finish_non_exhaustive()
    }
}

impl UnetCall<'_> {
    /// The sample buffer, `[batch, channels, h, w]`, kept between steps: channels that do
    /// not change (an inpainting UNet's mask and masked-image latents) are written once.
    pub fn sample_mut(&mut self) -> &mut [f32] {
        self.sample.extract_tensor_mut().1
    }

    /// Makes the next run the loop's last: when it ends, the UNet's activation memory goes
    /// back to the system (with [`RuntimeConfig::release_memory`]), so the decoder that
    /// runs next does not need room beside it.
    pub fn release_after_next_run(&mut self) {
        self.release_after = true;
    }

    /// Runs one step at `timestep` and hands the output (`[batch, c, h, w]`) to `read`.
    pub fn run<R>(
        &mut self,
        timestep: f64,
        read: impl FnOnce(&[f32]) -> R,
    ) -> Result<R, DiffusionError> {
        let fail = |e: ort::Error| DiffusionError::Failed(format!("UNet: {e}"));
        let model = self.model;
        model.unet_calls.fetch_add(1, Ordering::Relaxed);
        model.unet_entries.fetch_add(self.batch as u64, Ordering::Relaxed);
        let timestep = model.timestep_value(self.batch, timestep)?;
        // Bound again each step: on a device this is the copy of the new values; on the
        // CPU it only points the binding at the same buffer.
        self.binding.bind_input("sample", &self.sample).map_err(fail)?;
        self.binding.bind_input("timestep", &timestep).map_err(fail)?;
        let mut session = self
            .session
            .lock()
            .map_err(|_| DiffusionError::Failed("UNet: a previous run panicked".into()))?;
        let release = std::mem::take(&mut self.release_after);
        let options = run_options(&model.unet.runtime, release)?;
        let outputs = session.run_binding_with_options(&self.binding, &options).map_err(fail)?;
        after_run(&model.unet.runtime, release);
        let (_, first) = outputs
            .iter()
            .next()
            .ok_or_else(|| DiffusionError::Failed("UNet: no output".into()))?;
        let (_, data) = first
            .try_extract_tensor::<f32>()
            .map_err(|e| DiffusionError::Failed(format!("UNet: output is not f32: {e}")))?;
        Ok(read(data))
    }
}

fn shape_of(dims: &[usize]) -> Vec<i64> {
    dims.iter().map(|&d| d as i64).collect()
}

pub(crate) fn tensor<T>(shape: Vec<i64>, data: Vec<T>) -> Result<DynValue, DiffusionError>
where
    T: ort::tensor::PrimitiveTensorElementType + Clone + std::fmt::Debug + 'static,
{
    Tensor::from_array((shape, data))
        .map(|t| t.into_dyn())
        .map_err(|e| DiffusionError::Failed(format!("cannot build an input tensor: {e}")))
}

/// Runs a session and returns its first output as f32; with `release` (a network that
/// runs once per job or photo: the text encoder, the VAE, a segmentation network), the
/// run's activation memory goes back when it ends (see [`run_options`]).
pub(crate) fn run(
    session: &Mutex<Session>,
    what: &str,
    inputs: Vec<(&str, DynValue)>,
    runtime: &RuntimeConfig,
    release: bool,
) -> Result<(Vec<i64>, Vec<f32>), DiffusionError> {
    let options = run_options(runtime, release)?;
    let copied = {
        let mut session = session
            .lock()
            .map_err(|_| DiffusionError::Failed(format!("{what}: a previous run panicked")))?;
        let outputs = session
            .run_with_options(inputs, &options)
            .map_err(|e| DiffusionError::Failed(format!("{what}: {e}")))?;
        let (_, first) = outputs
            .iter()
            .next()
            .ok_or_else(|| DiffusionError::Failed(format!("{what}: no output")))?;
        first
            .try_extract_tensor::<f32>()
            .map(|(shape, data)| (shape.to_vec(), data.to_vec()))
            .map_err(|e| DiffusionError::Failed(format!("{what}: output is not f32: {e}")))
    };
    // Once the session is free for the next caller and the run's outputs are dropped.
    after_run(runtime, release);
    copied
}
