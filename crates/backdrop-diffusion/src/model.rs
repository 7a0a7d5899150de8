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
//! ```
//!
//! This module owns reading that layout: which files must exist, the network facts that
//! the pipeline needs (UNet input channels, latent channels, VAE scale and scaling
//! factor, input element types), read from the sessions' signatures and the `config.json`
//! files the exports write beside each network. An older export whose VAE encoder returns
//! an already sampled `latent_sample` is accepted too.

use crate::runtime::{session, RuntimeConfig};
use crate::scheduler::SchedulerConfig;
use crate::tokenizer::ClipTokenizer;
use crate::DiffusionError;
use ort::session::Session;
use ort::tensor::TensorElementType;
use ort::value::{DynValue, Tensor, ValueType};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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
    /// Latent scaling factor (0.18215 for SD 1.x/2.x).
    pub scaling_factor: f32,
    /// Text embedding width (768 SD 1.x, 1024 SD 2.x).
    pub embedding_dim: Option<usize>,
    /// VAE encoder output kind.
    pub encoder_output: EncoderOutput,
    /// The scheduler configuration shipped with the model.
    pub scheduler: SchedulerConfig,
}

/// A model with its sessions open.
#[derive(Debug)]
pub struct Model {
    /// Facts about it.
    pub info: ModelInfo,
    /// Its tokenizer.
    pub tokenizer: ClipTokenizer,
    text_encoder: Mutex<Session>,
    unet: Mutex<Session>,
    vae_encoder: Mutex<Session>,
    vae_decoder: Mutex<Session>,
    ids_are_i32: bool,
    timestep_type: TensorElementType,
}

fn read_json(path: &Path) -> Option<Value> {
    std::fs::read_to_string(path).ok().and_then(|s| serde_json::from_str(&s).ok())
}

fn input_type(session: &Session, name: &str) -> Option<(TensorElementType, Vec<i64>)> {
    session.inputs.iter().find(|i| i.name == name).and_then(|i| match &i.input_type {
        ValueType::Tensor { ty, shape, .. } => Some((*ty, shape.to_vec())),
        _ => None,
    })
}

impl Model {
    /// Opens a model folder.
    pub fn open(root: &Path, runtime: &RuntimeConfig) -> Result<Model, DiffusionError> {
        let missing = missing_files(root);
        if !missing.is_empty() {
            return Err(DiffusionError::Model(format!(
                "{} is not an ONNX Stable Diffusion folder: missing {}",
                root.display(),
                missing.join(", ")
            )));
        }
        let scheduler_text = std::fs::read_to_string(root.join("scheduler/scheduler_config.json"))
            .map_err(|e| DiffusionError::Model(format!("scheduler_config.json: {e}")))?;
        let scheduler: SchedulerConfig = serde_json::from_str(&scheduler_text)
            .map_err(|e| DiffusionError::Model(format!("scheduler_config.json: {e}")))?;
        let tokenizer = ClipTokenizer::from_dir(&root.join("tokenizer"))?;
        let text_encoder = session(runtime, &root.join("text_encoder/model.onnx"))?;
        let unet = session(runtime, &root.join("unet/model.onnx"))?;
        let vae_encoder = session(runtime, &root.join("vae_encoder/model.onnx"))?;
        let vae_decoder = session(runtime, &root.join("vae_decoder/model.onnx"))?;

        let vae_config = read_json(&root.join("vae_decoder/config.json"))
            .or_else(|| read_json(&root.join("vae_encoder/config.json")))
            .or_else(|| read_json(&root.join("vae/config.json")));
        let unet_config = read_json(&root.join("unet/config.json"));
        let from_vae = |key: &str| vae_config.as_ref().and_then(|c| c.get(key));

        let (_, sample_shape) = input_type(&unet, "sample")
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
        let scaling_factor =
            from_vae("scaling_factor").and_then(Value::as_f64).unwrap_or(0.18215) as f32;
        let encoder_output = match vae_encoder.outputs.first().map(|o| o.name.as_str()) {
            Some("latent_sample") => EncoderOutput::Sampled,
            _ => EncoderOutput::Parameters,
        };
        let ids_are_i32 =
            matches!(input_type(&text_encoder, "input_ids"), Some((TensorElementType::Int32, _)));
        let timestep_type = input_type(&unet, "timestep").map(|(t, _)| t).ok_or_else(|| {
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
        let embedding_dim = input_type(&unet, "encoder_hidden_states")
            .and_then(|(_, s)| s.get(2).copied())
            .filter(|&d| d > 0)
            .map(|d| d as usize);
        Ok(Model {
            info: ModelInfo {
                root: root.to_path_buf(),
                unet_in_channels,
                latent_channels,
                vae_scale_factor,
                size_multiple,
                scaling_factor,
                embedding_dim,
                encoder_output,
                scheduler,
            },
            tokenizer,
            text_encoder: Mutex::new(text_encoder),
            unet: Mutex::new(unet),
            vae_encoder: Mutex::new(vae_encoder),
            vae_decoder: Mutex::new(vae_decoder),
            ids_are_i32,
            timestep_type,
        })
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
        let (dims, data) = run(&self.text_encoder, "text encoder", vec![("input_ids", value)])?;
        let dim = *dims.last().unwrap_or(&0) as usize;
        Ok((data, dim))
    }

    /// One UNet call.
    pub fn unet(
        &self,
        sample: Vec<f32>,
        sample_shape: [usize; 4],
        timestep: f64,
        hidden: Vec<f32>,
        hidden_shape: [usize; 3],
    ) -> Result<Vec<f32>, DiffusionError> {
        let batch = sample_shape[0];
        let timestep_value: DynValue = match self.timestep_type {
            TensorElementType::Int64 => tensor(vec![batch as i64], vec![timestep as i64; batch])?,
            TensorElementType::Float64 => tensor(vec![batch as i64], vec![timestep; batch])?,
            _ => tensor(vec![batch as i64], vec![timestep as f32; batch])?,
        };
        let (_, out) = run(
            &self.unet,
            "UNet",
            vec![
                ("sample", tensor(shape_of(&sample_shape), sample)?),
                ("timestep", timestep_value),
                ("encoder_hidden_states", tensor(shape_of(&hidden_shape), hidden)?),
            ],
        )?;
        Ok(out)
    }

    /// The VAE encoder on an image `[1, 3, h, w]` in [-1, 1]: the moments
    /// (`[1, 2c, h/f, w/f]`) or a sampled latent, see [`EncoderOutput`].
    pub fn encode_image(
        &self,
        image: Vec<f32>,
        height: usize,
        width: usize,
    ) -> Result<Vec<f32>, DiffusionError> {
        let (_, out) = run(
            &self.vae_encoder,
            "VAE encoder",
            vec![("sample", tensor(shape_of(&[1, 3, height, width]), image)?)],
        )?;
        Ok(out)
    }

    /// The VAE decoder on unscaled latents `[1, c, h, w]`: an image in about [-1, 1].
    pub fn decode(
        &self,
        latents: Vec<f32>,
        height: usize,
        width: usize,
    ) -> Result<Vec<f32>, DiffusionError> {
        let shape = [1, self.info.latent_channels, height, width];
        let (_, out) = run(
            &self.vae_decoder,
            "VAE decoder",
            vec![("latent_sample", tensor(shape_of(&shape), latents)?)],
        )?;
        Ok(out)
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

/// Runs a session and returns its first output as f32.
pub(crate) fn run(
    session: &Mutex<Session>,
    what: &str,
    inputs: Vec<(&str, DynValue)>,
) -> Result<(Vec<i64>, Vec<f32>), DiffusionError> {
    let mut session = session
        .lock()
        .map_err(|_| DiffusionError::Failed(format!("{what}: a previous run panicked")))?;
    let outputs =
        session.run(inputs).map_err(|e| DiffusionError::Failed(format!("{what}: {e}")))?;
    let (_, first) = outputs
        .iter()
        .next()
        .ok_or_else(|| DiffusionError::Failed(format!("{what}: no output")))?;
    let (shape, data) = first
        .try_extract_tensor::<f32>()
        .map_err(|e| DiffusionError::Failed(format!("{what}: output is not f32: {e}")))?;
    Ok((shape.to_vec(), data.to_vec()))
}
