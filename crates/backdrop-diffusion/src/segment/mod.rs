//! Salient-object segmentation on ONNX Runtime: the engine behind automatic cut-out.
//!
//! It lives beside the diffusion engine because it shares everything around the network
//! with it: the runtime ([`crate::runtime`]), the model store ([`crate::hub`]: local
//! files, the Hugging Face cache, `backdrop models pull`) and this crate's session
//! helpers and errors. Only the network and its pre- and post-processing are its own.
//!
//! One run:
//!
//! ```text
//! photo -> square input of the layout's size (brightest value 1, mean/std) -> network
//!       -> probability map (sigmoid for logits; stretched so its peak is 1 when the
//!          network found something) -> guided-filter refinement to the photo's size
//!          (backdrop_imaging::matte) -> alpha matte
//! ```
//!
//! - [`config`]: `[segmentation]`: models, their layout family (U²-Net, IS-Net,
//!   BiRefNet), input size and normalisation.
//! - [`store`]: where a model's `.onnx` file is, including the bundled `u2netp`.
//! - [`OnnxSegmenter`] implements [`backdrop_core::Segmenter`]; sessions open on first use.

pub mod config;
pub mod store;

pub use config::{Layout, Preprocess, SegmentModelEntry, SegmentationConfig};

use crate::engine::engine_error;
use crate::model::{run, tensor};
use crate::runtime::{session, RuntimeConfig};
use crate::DiffusionError;
use backdrop_core::{CancelToken, EngineError, Segmenter};
use backdrop_imaging::matte::{refine_matte_with, working_image, MatteParams};
use image::imageops::{self, FilterType};
use image::{GrayImage, RgbaImage};
use ort::session::Session;
use ort::value::ValueType;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const NAME: &str = "segment";

/// A network with its session open.
#[derive(Debug)]
struct Network {
    session: Mutex<Session>,
    input: String,
    /// Input width and height.
    size: (u32, u32),
    preprocess: Preprocess,
}

/// The segmentation engine: models from a [`SegmentationConfig`], run with the diffusion
/// engine's runtime settings.
#[derive(Debug)]
pub struct OnnxSegmenter {
    config: SegmentationConfig,
    runtime: RuntimeConfig,
    default_model: String,
    matte: MatteParams,
    networks: Mutex<HashMap<String, Arc<Network>>>,
}

impl OnnxSegmenter {
    /// A segmenter over a validated configuration, or `None` when no model at all is
    /// available (nothing configured, no [`store::MODEL_ENV`], no bundled model).
    pub fn new(
        config: SegmentationConfig,
        runtime: RuntimeConfig,
    ) -> Result<Option<OnnxSegmenter>, DiffusionError> {
        config.validate().map_err(DiffusionError::Config)?;
        let Some(default_model) = store::default_model(&config) else { return Ok(None) };
        Ok(Some(OnnxSegmenter {
            config,
            runtime,
            default_model,
            matte: MatteParams::default(),
            networks: Mutex::new(HashMap::new()),
        }))
    }

    /// The configuration.
    pub fn config(&self) -> &SegmentationConfig {
        &self.config
    }

    /// The default model's network, opened (used by `models show` and benchmarks).
    pub fn open(
        &self,
        model: Option<&str>,
    ) -> Result<(String, Preprocess, (u32, u32)), DiffusionError> {
        let network = self.network(model.unwrap_or(&self.default_model))?;
        Ok((model.unwrap_or(&self.default_model).to_string(), network.preprocess, network.size))
    }

    fn network(&self, id: &str) -> Result<Arc<Network>, DiffusionError> {
        if let Some(network) = self.networks.lock().ok().and_then(|n| n.get(id).cloned()) {
            return Ok(network);
        }
        let resolved = store::resolve(&self.config, id)?;
        let session = session(&self.runtime, &resolved.file)?;
        let (input, shape) = session
            .inputs
            .first()
            .and_then(|i| match &i.input_type {
                ValueType::Tensor { shape, .. } => Some((i.name.clone(), shape.to_vec())),
                _ => None,
            })
            .ok_or_else(|| {
                DiffusionError::Model(format!("{} has no tensor input", resolved.file.display()))
            })?;
        if shape.len() != 4 || shape[1] != 3 {
            return Err(DiffusionError::Model(format!(
                "{} takes {shape:?}, not an RGB image [batch, 3, height, width]",
                resolved.file.display()
            )));
        }
        // A network exported for one size says so; a dynamic one takes the configured size.
        let side = resolved.preprocess.size;
        let fixed = |d: i64| (d > 0).then_some(d as u32);
        let size = match (fixed(shape[3]), fixed(shape[2])) {
            (Some(w), Some(h)) if !resolved.size_configured => (w, h),
            _ => (side, side),
        };
        let network = Arc::new(Network {
            session: Mutex::new(session),
            input,
            size,
            preprocess: resolved.preprocess,
        });
        if let Ok(mut networks) = self.networks.lock() {
            networks.insert(id.to_string(), Arc::clone(&network));
        }
        Ok(network)
    }

    /// The network's probability map for a photo: `(values, width, height)`. `photo` may
    /// be the working-resolution copy of the photo (see [`working_image`]).
    pub fn probabilities(
        &self,
        photo: &RgbaImage,
        model: Option<&str>,
    ) -> Result<(Vec<f32>, usize, usize), DiffusionError> {
        let network = self.network(model.unwrap_or(&self.default_model))?;
        let (w, h) = network.size;
        let input = network_input(photo, w, h, &network.preprocess);
        let shape = vec![1, 3, i64::from(h), i64::from(w)];
        let (out_shape, mut values) = run(
            &network.session,
            "segmentation network",
            vec![(network.input.as_str(), tensor(shape, input)?)],
            &self.runtime,
            true,
        )?;
        let dims: Vec<usize> = out_shape.iter().map(|&d| d.max(0) as usize).collect();
        let (oh, ow) = match dims.as_slice() {
            [.., oh, ow] if oh * ow > 0 && values.len() >= oh * ow => (*oh, *ow),
            _ => {
                return Err(DiffusionError::Failed(format!(
                    "the segmentation network returned {out_shape:?}, not a mask"
                )))
            }
        };
        values.truncate(oh * ow);
        to_probabilities(&mut values, network.preprocess.logits);
        Ok((values, ow, oh))
    }
}

/// The network's input: the photo squashed to `w x h`, scaled so its brightest value is
/// 1 (as U²-Net was trained and rembg feeds it), normalised per channel, planar.
fn network_input(photo: &RgbaImage, w: u32, h: u32, pre: &Preprocess) -> Vec<f32> {
    let small = imageops::resize(photo, w, h, FilterType::Triangle);
    let peak = small.pixels().flat_map(|p| p.0[..3].to_vec()).max().unwrap_or(0).max(1);
    let scale = 1.0 / f32::from(peak);
    let plane = (w * h) as usize;
    let mut input = vec![0.0f32; 3 * plane];
    for (i, p) in small.pixels().enumerate() {
        for c in 0..3 {
            input[c * plane + i] = (f32::from(p.0[c]) * scale - pre.mean[c]) / pre.std[c];
        }
    }
    input
}

/// Turns the network's output into probabilities in [0, 1]: a sigmoid for logits, then,
/// when the network is confident somewhere (peak above one half), a stretch so the peak
/// is exactly 1 (U²-Net's interiors otherwise stop just short of opaque). A map with no
/// confident value is left as it is, so "nothing found" stays empty instead of noise
/// being stretched into an object.
fn to_probabilities(values: &mut [f32], logits: bool) {
    if logits {
        for v in values.iter_mut() {
            *v = 1.0 / (1.0 + (-*v).exp());
        }
    }
    let peak = values.iter().copied().fold(0.0f32, f32::max);
    let scale = if peak > 0.5 { 1.0 / peak } else { 1.0 };
    for v in values.iter_mut() {
        *v = (*v * scale).clamp(0.0, 1.0);
    }
}

impl Segmenter for OnnxSegmenter {
    fn default_model(&self) -> String {
        self.default_model.clone()
    }

    fn segment(
        &self,
        photo: &RgbaImage,
        model: Option<&str>,
        cancel: &CancelToken,
    ) -> Result<GrayImage, EngineError> {
        cancel.check()?;
        // A large photo is shrunk once; the network and the refinement both read that.
        let small = working_image(photo, &self.matte);
        let guide = small.as_ref().unwrap_or(photo);
        let (coarse, w, h) = self.probabilities(guide, model).map_err(|e| engine_error(NAME, e))?;
        cancel.check()?;
        Ok(refine_matte_with(photo, guide, &coarse, w, h, &self.matte))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confident_maps_are_stretched_and_empty_ones_are_not() {
        let mut found = vec![0.0, 0.45, 0.9];
        to_probabilities(&mut found, false);
        assert_eq!(found, vec![0.0, 0.5, 1.0]);
        let mut empty = vec![0.0, 0.01, 0.3];
        to_probabilities(&mut empty, false);
        assert_eq!(empty, vec![0.0, 0.01, 0.3]);
        let mut logits = vec![0.0, 20.0];
        to_probabilities(&mut logits, true);
        assert!((logits[0] - 0.5).abs() < 1e-6 && logits[1] == 1.0);
    }

    #[test]
    fn the_input_is_planar_and_normalised_after_scaling_to_the_peak() {
        let photo = RgbaImage::from_pixel(8, 8, image::Rgba([100, 50, 0, 0]));
        let pre = Preprocess { size: 4, mean: [0.5; 3], std: [0.5; 3], logits: false };
        let input = network_input(&photo, 4, 2, &pre);
        assert_eq!(input.len(), 3 * 8);
        // Red is the brightest value: 1 -> (1 - 0.5) / 0.5.
        assert!((input[0] - 1.0).abs() < 1e-6);
        assert!((input[8] - 0.0).abs() < 1e-6);
        assert!((input[16] + 1.0).abs() < 1e-6);
    }
}
