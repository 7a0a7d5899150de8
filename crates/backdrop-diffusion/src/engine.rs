//! The diffusion engine as the pipeline sees it: [`DiffusionEngine`] implements
//! [`backdrop_core::Engine`] for both jobs.
//!
//! This module owns turning an [`EngineInput`] into an inpainting request and back:
//! - model choice (the job's `model`, else the configured default) and settings (job,
//!   then the model entry, then built-in defaults);
//! - the pixel budget, checked before the model is even loaded;
//! - the image the model sees: for a background, the canvas over the reference background
//!   (or mid grey); for an expansion, the canvas with its border pre-filled by the `patch`
//!   engine so the model starts from plausible context;
//! - the mask: every pixel the pipeline asks for (soft edges included); for an expansion
//!   grown by two latent pixels into the original so the join is generated, not cut;
//! - any canvas size: padded on the right and bottom (edge pixels repeated, mask too) to
//!   the multiple the model needs (64 for SD: the VAE's 8 times the UNet's 8), and
//!   cropped back afterwards; the budget counts the padded size;
//! - strength: a reference background seeds the result at `reference_strength` (the
//!   PicPik `ReferStrength`, 0..1, where 1 ignores the reference); expansions use
//!   `[diffusion] expansion_strength`; plain backgrounds start from pure noise.
//!
//! Models are loaded on first use and kept for later runs.

use crate::config::{DiffusionConfig, DEFAULT_GUIDANCE, DEFAULT_STEPS};
use crate::inpaint::{inpaint, InpaintRequest};
use crate::model::Model;
use crate::scheduler::SchedulerKind;
use crate::DiffusionError;
use backdrop_core::{
    CancelToken, Engine, EngineError, EngineInput, EngineOutput, EngineResult, JobKind, RunControl,
    SceneTemplate,
};
use backdrop_engines::patch::PatchEngine;
use image::{imageops, GrayImage, Luma, Rgb, RgbImage};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The engine's name.
pub const NAME: &str = "diffusion";

/// The settings one run resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSettings {
    /// Model id.
    pub model: String,
    /// Steps.
    pub steps: u32,
    /// Guidance scale.
    pub guidance: f32,
    /// Scheduler, when the job or the entry names one (else the model's own).
    pub scheduler: Option<SchedulerKind>,
    /// Strength.
    pub strength: f32,
}

/// Stable Diffusion inpainting on ONNX Runtime.
pub struct DiffusionEngine {
    config: DiffusionConfig,
    models: Mutex<HashMap<String, Arc<Model>>>,
}

impl std::fmt::Debug for DiffusionEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiffusionEngine").field("config", &self.config).finish()
    }
}

fn failed(e: DiffusionError) -> EngineError {
    engine_error(NAME, e)
}

/// An error of an engine of this crate, as the pipeline sees it.
pub(crate) fn engine_error(engine: &'static str, e: DiffusionError) -> EngineError {
    match e {
        DiffusionError::Canceled => EngineError::Canceled,
        DiffusionError::Unsupported(reason) => EngineError::Unsupported { engine, reason },
        other => EngineError::Failed { engine, reason: other.to_string() },
    }
}

impl DiffusionEngine {
    /// An engine over a validated configuration.
    pub fn new(config: DiffusionConfig) -> Result<Self, DiffusionError> {
        config.validate().map_err(DiffusionError::Config)?;
        Ok(DiffusionEngine { config, models: Mutex::new(HashMap::new()) })
    }

    /// The configuration.
    pub fn config(&self) -> &DiffusionConfig {
        &self.config
    }

    /// The loaded model for an id, loading it on first use.
    pub fn model(&self, id: &str) -> Result<Arc<Model>, DiffusionError> {
        if let Some(model) = self.models.lock().ok().and_then(|m| m.get(id).cloned()) {
            return Ok(model);
        }
        let entry = self.config.models.get(id).ok_or_else(|| {
            DiffusionError::Unsupported(format!(
                "unknown model '{id}' (configured: {})",
                self.config.models.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?;
        let folder = crate::hub::resolve(id, entry)?;
        let model = Arc::new(Model::open_with(&folder, &self.config.runtime, &entry.options())?);
        if let Ok(mut models) = self.models.lock() {
            models.insert(id.to_owned(), Arc::clone(&model));
        }
        Ok(model)
    }

    /// Resolves the model and settings of a run.
    pub fn settings(&self, input: &EngineInput<'_>) -> Result<RunSettings, DiffusionError> {
        let options = input.options;
        let model = options
            .model
            .clone()
            .or_else(|| self.config.default_model.clone())
            .ok_or_else(|| {
                DiffusionError::Unsupported("no model given and no default_model configured".into())
            })?;
        let entry = self.config.models.get(&model).ok_or_else(|| {
            DiffusionError::Unsupported(format!(
                "unknown model '{model}' (configured: {})",
                self.config.models.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?;
        let scheduler = match options.scheduler.as_deref().or(entry.scheduler.as_deref()) {
            Some(name) => Some(name.parse::<SchedulerKind>().map_err(DiffusionError::Unsupported)?),
            None => None,
        };
        let strength = match input.kind {
            JobKind::Background if input.reference.is_some() => {
                options.reference_strength.unwrap_or(0.75)
            }
            JobKind::Background => 1.0,
            JobKind::Expansion => {
                options.reference_strength.unwrap_or(self.config.expansion_strength)
            }
            JobKind::Cutout => {
                return Err(DiffusionError::Unsupported(
                    "cut-outs run on the segment engine".into(),
                ))
            }
        };
        if !(strength > 0.0 && strength <= 1.0) {
            return Err(DiffusionError::Unsupported(format!(
                "strength {strength} is outside (0, 1]"
            )));
        }
        let steps = options.steps.or(entry.steps).unwrap_or(DEFAULT_STEPS);
        if steps == 0 || steps > 1000 {
            return Err(DiffusionError::Unsupported(format!("steps {steps} is outside 1..=1000")));
        }
        let guidance = options.guidance.or(entry.guidance).unwrap_or(DEFAULT_GUIDANCE);
        if !guidance.is_finite() || !(0.0..=50.0).contains(&guidance) {
            return Err(DiffusionError::Unsupported(format!(
                "guidance {guidance} is outside 0..=50"
            )));
        }
        Ok(RunSettings { model, steps, guidance, scheduler, strength })
    }

    /// Checks the processing size against the pixel budget.
    pub fn check_budget(&self, width: u32, height: u32) -> Result<(), DiffusionError> {
        let (pw, ph) = (round_up(width, 8), round_up(height, 8));
        let pixels = u64::from(pw) * u64::from(ph);
        if pixels > self.config.max_pixels {
            return Err(DiffusionError::Unsupported(format!(
                "{width}x{height} is processed at {pw}x{ph} = {pixels} pixels, over the \
                 budget of {} ([diffusion] max_pixels); choose a smaller size",
                self.config.max_pixels
            )));
        }
        Ok(())
    }

    /// The image and mask the model sees, at canvas size (before padding).
    pub fn prepare(&self, input: &EngineInput<'_>, model_scale: u32) -> (RgbImage, GrayImage) {
        let canvas = input.canvas;
        let (w, h) = canvas.dimensions();
        let backdrop: RgbImage = match (input.kind, input.reference) {
            (JobKind::Expansion, _) => prefill(input),
            (JobKind::Background | JobKind::Cutout, Some(reference)) => {
                RgbImage::from_fn(w, h, |x, y| {
                    let p = reference.get_pixel(x, y);
                    Rgb([p[0], p[1], p[2]])
                })
            }
            (JobKind::Background | JobKind::Cutout, None) => {
                RgbImage::from_pixel(w, h, Rgb([128, 128, 128]))
            }
        };
        let image = RgbImage::from_fn(w, h, |x, y| {
            let p = canvas.get_pixel(x, y);
            let under = backdrop.get_pixel(x, y);
            let a = u32::from(p[3]);
            let mix = |c: usize| {
                ((u32::from(p[c]) * a + u32::from(under[c]) * (255 - a) + 127) / 255) as u8
            };
            Rgb([mix(0), mix(1), mix(2)])
        });
        let mut mask = GrayImage::from_fn(w, h, |x, y| {
            Luma([if input.mask.get_pixel(x, y)[0] > 0 { 255 } else { 0 }])
        });
        if input.kind == JobKind::Expansion {
            mask = dilate(&mask, 2 * model_scale);
        }
        (image, mask)
    }
}

fn round_up(v: u32, to: u32) -> u32 {
    v.div_ceil(to) * to
}

/// The expansion pre-fill: the patch engine's completion of the border, seeded like the
/// job.
fn prefill(input: &EngineInput<'_>) -> RgbImage {
    let single = EngineInput { n: 1, ..*input };
    let patch = PatchEngine::default();
    match patch.generate(&single, RunControl::new(&(), &CancelToken::new())) {
        Ok(mut out) if !out.images.is_empty() => out.images.swap_remove(0),
        // The pre-fill only seeds the model; without it the border starts grey.
        _ => {
            RgbImage::from_pixel(input.canvas.width(), input.canvas.height(), Rgb([128, 128, 128]))
        }
    }
}

/// Square dilation of a binary mask by `radius` pixels (separable max).
fn dilate(mask: &GrayImage, radius: u32) -> GrayImage {
    if radius == 0 {
        return mask.clone();
    }
    let (w, h) = mask.dimensions();
    let r = radius as i64;
    let horizontal = GrayImage::from_fn(w, h, |x, y| {
        let lo = (i64::from(x) - r).max(0) as u32;
        let hi = (i64::from(x) + r).min(i64::from(w) - 1) as u32;
        Luma([(lo..=hi).map(|xx| mask.get_pixel(xx, y)[0]).max().unwrap_or(0)])
    });
    GrayImage::from_fn(w, h, |x, y| {
        let lo = (i64::from(y) - r).max(0) as u32;
        let hi = (i64::from(y) + r).min(i64::from(h) - 1) as u32;
        Luma([(lo..=hi).map(|yy| horizontal.get_pixel(x, yy)[0]).max().unwrap_or(0)])
    })
}

/// Pads on the right and bottom to a multiple of `to`, repeating edge pixels.
pub fn pad_to_multiple<P: image::Pixel>(
    img: &image::ImageBuffer<P, Vec<P::Subpixel>>,
    to: u32,
) -> image::ImageBuffer<P, Vec<P::Subpixel>> {
    let (w, h) = img.dimensions();
    let (pw, ph) = (round_up(w, to), round_up(h, to));
    image::ImageBuffer::from_fn(pw, ph, |x, y| *img.get_pixel(x.min(w - 1), y.min(h - 1)))
}

impl Engine for DiffusionEngine {
    fn name(&self) -> &'static str {
        NAME
    }

    /// The VAE's full-resolution activations dominate (128 channels of `f32`, a few
    /// tensors alive at once while encoding or decoding one image); the UNet works at
    /// 1/64 of the pixels and the weights are the process's, not the task's. Estimated,
    /// not measured on a full-size model, at 1 KiB per processed pixel.
    fn working_memory(&self, width: u32, height: u32) -> u64 {
        let (pw, ph) = (round_up(width, 8), round_up(height, 8));
        u64::from(pw) * u64::from(ph) * 1024
    }

    fn generate(&self, input: &EngineInput<'_>, run: RunControl<'_>) -> EngineResult {
        let RunControl { progress, cancel } = run;
        let (w, h) = input.canvas.dimensions();
        self.check_budget(w, h).map_err(failed)?;
        let settings = self.settings(input).map_err(failed)?;
        cancel.check()?;
        let model = self.model(&settings.model).map_err(failed)?;
        let scale = model.info.vae_scale_factor as u32;
        let multiple = model.info.size_multiple as u32;
        self.check_budget(round_up(w, multiple), round_up(h, multiple)).map_err(failed)?;
        let scheduler = settings.scheduler.unwrap_or_else(|| {
            SchedulerKind::from_class(
                model.info.scheduler.class_name.as_deref(),
                &model.info.scheduler,
            )
        });
        cancel.check()?;
        let (image, mask) = self.prepare(input, scale);
        let image = pad_to_multiple(&image, multiple);
        let mask = pad_to_multiple(&mask, multiple);
        let scene_prompt = input
            .scene
            .and_then(SceneTemplate::find)
            .map(|s| format!("{}: {}", s.name, s.description));
        let prompt = input.prompt.map(str::to_owned).or(scene_prompt).unwrap_or_default();
        let seeds: Vec<u64> = (0..input.n).map(|i| input.image_seed(i)).collect();
        let request = InpaintRequest {
            image: &image,
            mask: &mask,
            prompt: &prompt,
            negative_prompt: input.negative_prompt,
            seeds: &seeds,
            steps: settings.steps as usize,
            guidance: settings.guidance,
            scheduler,
            strength: settings.strength,
            max_batch: self.config.max_batch,
        };
        let output = inpaint(&model, &request, progress, cancel).map_err(failed)?;
        let images = output
            .images
            .into_iter()
            .map(|img| imageops::crop_imm(&img, 0, 0, w, h).to_image())
            .collect();
        Ok(EngineOutput {
            images,
            notes: vec![
                ("model".into(), settings.model),
                ("scheduler".into(), scheduler.to_string()),
                ("steps".into(), settings.steps.to_string()),
                ("guidance".into(), settings.guidance.to_string()),
                ("strength".into(), settings.strength.to_string()),
            ],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ModelEntry;
    use backdrop_core::EngineOptions;
    use image::RgbaImage;

    fn engine(max_pixels: u64) -> DiffusionEngine {
        let mut config = DiffusionConfig { max_pixels, ..Default::default() };
        config.models.insert(
            "m".into(),
            ModelEntry { path: Some("/nonexistent".into()), steps: Some(9), ..Default::default() },
        );
        config.default_model = Some("m".into());
        DiffusionEngine::new(config).expect("valid config")
    }

    #[test]
    fn the_budget_is_refused_before_the_model_is_touched() {
        let engine = engine(64 * 64);
        let canvas = RgbaImage::new(65, 64);
        let mask = GrayImage::new(65, 64);
        let options = EngineOptions::default();
        let input = EngineInput {
            prompt: Some("x"),
            seed: 1,
            ..EngineInput::new(JobKind::Background, &canvas, &mask, &options)
        };
        // The model folder does not exist: the budget error must come first.
        let err = engine
            .generate(&input, RunControl::new(&(), &CancelToken::new()))
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("72x64"), "{err}");
        assert!(err.contains("max_pixels"), "{err}");
    }

    #[test]
    fn settings_come_from_the_job_then_the_entry_then_defaults() {
        let engine = engine(1 << 20);
        let canvas = RgbaImage::new(8, 8);
        let mask = GrayImage::new(8, 8);
        let options = EngineOptions { guidance: Some(3.0), ..Default::default() };
        let input = EngineInput {
            seed: 1,
            ..EngineInput::new(JobKind::Expansion, &canvas, &mask, &options)
        };
        let s = engine.settings(&input).expect("settings");
        assert_eq!((s.steps, s.guidance, s.strength), (9, 3.0, 0.9));
        let bad = EngineOptions { scheduler: Some("pndm".into()), ..Default::default() };
        let input = EngineInput { options: &bad, ..input };
        assert!(engine.settings(&input).is_err());
    }

    #[test]
    fn padding_repeats_edges_and_dilation_grows_the_mask() {
        let mut img = GrayImage::new(3, 2);
        img.put_pixel(2, 1, Luma([200]));
        let padded = pad_to_multiple(&img, 8);
        assert_eq!(padded.dimensions(), (8, 8));
        assert_eq!(padded.get_pixel(7, 7)[0], 200);
        assert_eq!(padded.get_pixel(0, 0)[0], 0);
        let grown = dilate(&img, 1);
        assert_eq!(grown.get_pixel(1, 0)[0], 200);
        assert_eq!(grown.get_pixel(0, 0)[0], 0);
    }
}
