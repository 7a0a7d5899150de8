//! The engine port: what every engine (studio, patch, diffusion) implements.
//!
//! The pipeline prepares a canvas and a mask, hands them to an [`Engine`] as an
//! [`EngineInput`], and composites the protected pixels back afterwards. An engine
//! therefore never has to preserve anything itself: it fills what the mask asks for and
//! may repaint the rest.
//!
//! Engines are synchronous and may be slow; callers run them off any async runtime.
//! They report progress through [`Progress`] after each step and return
//! [`EngineError::Canceled`] at the next step boundary once the [`CancelToken`] is set.

use crate::error::ErrorCode;
use crate::spec::{LoraRef, SpecError};
use image::{GrayImage, RgbImage, RgbaImage};
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Which of the two jobs a run serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Fill the transparent area of a cut-out.
    Background,
    /// Extend a photo outward.
    Expansion,
    /// Cut the product out of a photo (segmentation; no engine run).
    Cutout,
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JobKind::Background => "background",
            JobKind::Expansion => "expansion",
            JobKind::Cutout => "cutout",
        })
    }
}

/// Engine-specific knobs that a spec or a surface may set. Engines ignore what they do
/// not use.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EngineOptions {
    /// Denoising steps; `None` for the engine's default.
    pub steps: Option<u32>,
    /// Classifier-free guidance scale.
    pub guidance: Option<f32>,
    /// Model id.
    pub model: Option<String>,
    /// Scheduler name.
    pub scheduler: Option<String>,
    /// LoRAs with weights.
    pub loras: Vec<LoraRef>,
    /// How strongly a reference image shapes the result (0..=1).
    pub reference_strength: Option<f32>,
    /// Cast a contact shadow from the cut-out (studio); on unless turned off.
    pub no_shadow: bool,
}

impl EngineOptions {
    /// Checks the settings every engine shares a meaning for: steps within
    /// [`MAX_STEPS`](crate::spec::MAX_STEPS), guidance a number within
    /// [`MAX_GUIDANCE`](crate::spec::MAX_GUIDANCE), a scheduler of
    /// [`SCHEDULERS`](crate::spec::SCHEDULERS), a reference strength within 0..=1. Every
    /// surface and the command line check them before a job is accepted, so a bad setting
    /// is refused, not failed at run time.
    pub fn validate(&self) -> Result<(), SpecError> {
        use crate::spec::{scheduler_name, MAX_GUIDANCE, MAX_STEPS};
        if let Some(steps) = self.steps {
            if !(1..=MAX_STEPS).contains(&steps) {
                return Err(SpecError::StepsOutOfRange { max: MAX_STEPS, got: steps });
            }
        }
        if let Some(guidance) = self.guidance {
            if !guidance.is_finite() || !(0.0..=MAX_GUIDANCE).contains(&guidance) {
                return Err(SpecError::GuidanceOutOfRange { max: MAX_GUIDANCE, got: guidance });
            }
        }
        if let Some(name) = &self.scheduler {
            if scheduler_name(name).is_none() {
                return Err(SpecError::UnknownScheduler { name: name.clone() });
            }
        }
        if let Some(strength) = self.reference_strength {
            if !strength.is_finite() || !(0.0..=1.0).contains(&strength) {
                return Err(SpecError::ReferenceStrengthOutOfRange { got: strength });
            }
        }
        Ok(())
    }
}

/// Everything an engine needs for one run.
#[derive(Debug, Clone, Copy)]
pub struct EngineInput<'a> {
    /// The job this run serves.
    pub kind: JobKind,
    /// The canvas at output size: known pixels with their alpha, unknown pixels with
    /// alpha 0. For a background, the placed cut-out; for an expansion, the original
    /// placed at its offset (alpha 255) in a transparent border.
    pub canvas: &'a RgbaImage,
    /// Same size as `canvas`: 255 where the engine must generate, 0 where it may keep the
    /// canvas; values between are a soft edge and count as "generate".
    pub mask: &'a GrayImage,
    /// A reference background at output size, when the job has one.
    pub reference: Option<&'a RgbaImage>,
    /// What to generate, in words.
    pub prompt: Option<&'a str>,
    /// What to avoid, in words.
    pub negative_prompt: Option<&'a str>,
    /// A scene template id (already validated).
    pub scene: Option<&'a str>,
    /// Seed of the first image; image `i` is made with `seed.wrapping_add(i)`, so image
    /// `i` of a run equals image 0 of a run seeded `seed + i`.
    pub seed: u64,
    /// How many images to make.
    pub n: u32,
    /// Engine-specific knobs.
    pub options: &'a EngineOptions,
}

impl<'a> EngineInput<'a> {
    /// One image of `kind` on `canvas` and `mask`, seeded 0, with no reference, words or
    /// scene; callers set what their run has with struct update syntax.
    pub fn new(
        kind: JobKind,
        canvas: &'a RgbaImage,
        mask: &'a GrayImage,
        options: &'a EngineOptions,
    ) -> Self {
        EngineInput {
            kind,
            canvas,
            mask,
            reference: None,
            prompt: None,
            negative_prompt: None,
            scene: None,
            seed: 0,
            n: 1,
            options,
        }
    }

    /// The seed of image `index`.
    pub fn image_seed(&self, index: u32) -> u64 {
        self.seed.wrapping_add(u64::from(index))
    }
}

/// What an engine made.
#[derive(Debug, Clone)]
pub struct EngineOutput {
    /// `n` images at canvas size.
    pub images: Vec<RgbImage>,
    /// Choices the engine made that the user should see, as `(key, value)`; e.g.
    /// `("scene", "warm-paper")` and `("scene_reason", "prompt words: warm")`.
    pub notes: Vec<(String, String)>,
}

/// One step done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepProgress {
    /// Index of the image being made (0-based); engines that make all images at once
    /// report 0.
    pub image: u32,
    /// Number of images in the run.
    pub images: u32,
    /// Steps finished for this image (1-based once a step is done).
    pub step: u32,
    /// Steps per image.
    pub steps: u32,
}

impl StepProgress {
    /// Fraction of the whole run done, in [0, 1].
    pub fn fraction(&self) -> f64 {
        if self.images == 0 || self.steps == 0 {
            return 0.0;
        }
        let done =
            f64::from(self.image) * f64::from(self.steps) + f64::from(self.step.min(self.steps));
        (done / (f64::from(self.images) * f64::from(self.steps))).clamp(0.0, 1.0)
    }
}

/// Receives progress reports. Called from the engine's thread.
pub trait Progress: Sync {
    /// One step finished.
    fn step(&self, progress: StepProgress);
}

/// What an engine run answers.
pub type EngineResult = Result<EngineOutput, EngineError>;

/// How a run is watched and stopped: where it reports its steps and the token that
/// cancels it, handed through engines and their helpers as one value.
#[derive(Clone, Copy)]
pub struct RunControl<'a> {
    /// Where each finished step is reported.
    pub progress: &'a dyn Progress,
    /// Checked between steps.
    pub cancel: &'a CancelToken,
}

impl<'a> RunControl<'a> {
    /// Reports to `progress`, stops on `cancel`.
    pub fn new(progress: &'a dyn Progress, cancel: &'a CancelToken) -> Self {
        RunControl { progress, cancel }
    }
}

/// A [`Progress`] that ignores every report.
impl Progress for () {
    fn step(&self, _progress: StepProgress) {}
}

impl<F: Fn(StepProgress) + Sync> Progress for F {
    fn step(&self, progress: StepProgress) {
        self(progress)
    }
}

/// A flag that asks a running engine to stop at its next step boundary.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token not yet canceled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the run to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether [`CancelToken::cancel`] was called.
    pub fn is_canceled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// `Err(EngineError::Canceled)` once canceled; engines call it between steps.
    pub fn check(&self) -> Result<(), EngineError> {
        if self.is_canceled() {
            Err(EngineError::Canceled)
        } else {
            Ok(())
        }
    }
}

/// Why an engine run did not produce images.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The run was canceled.
    #[error("canceled")]
    Canceled,
    /// The engine cannot do this job or option.
    #[error("engine '{engine}' cannot do this: {reason}")]
    Unsupported {
        /// The engine.
        engine: &'static str,
        /// Why not.
        reason: String,
    },
    /// The engine failed.
    #[error("engine '{engine}' failed: {reason}")]
    Failed {
        /// The engine.
        engine: &'static str,
        /// What went wrong.
        reason: String,
    },
}

impl EngineError {
    /// The stable code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            EngineError::Canceled => ErrorCode::Canceled,
            EngineError::Unsupported { .. } => ErrorCode::UnknownEngine,
            EngineError::Failed { .. } => ErrorCode::EngineFailed,
        }
    }
}

/// An engine: fills the masked part of a canvas, `n` times.
pub trait Engine: Send + Sync {
    /// The engine's name as users choose it.
    fn name(&self) -> &'static str;

    /// Makes `input.n` images. Reports progress after each step and checks `cancel`
    /// between steps.
    fn generate(&self, input: &EngineInput<'_>, run: RunControl<'_>) -> EngineResult;

    /// The bytes this engine allocates for itself during a run on a `width` x `height`
    /// canvas (pyramids, fields, activations), beyond the canvas and mask it is given and
    /// the images it returns. An estimate on the high side: a server refuses tasks whose
    /// estimated peak memory is over its budget before they run. The default is
    /// [`DEFAULT_WORKING_BYTES_PER_PIXEL`] per canvas pixel.
    fn working_memory(&self, width: u32, height: u32) -> u64 {
        u64::from(width) * u64::from(height) * DEFAULT_WORKING_BYTES_PER_PIXEL
    }
}

/// [`Engine::working_memory`] per canvas pixel of an engine that gives no estimate of
/// its own.
pub const DEFAULT_WORKING_BYTES_PER_PIXEL: u64 = 64;

/// An engine as users name it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum EngineName {
    /// `diffusion` when a model is configured, else `studio` for backgrounds and `patch`
    /// for expansions.
    #[default]
    Auto,
    /// Parametric studio backdrops (no weights).
    Studio,
    /// PatchMatch image completion (no weights).
    Patch,
    /// Stable Diffusion inpainting.
    Diffusion,
    /// Salient-object segmentation (cut-out tasks).
    Segment,
}

impl EngineName {
    /// Every name, as accepted by [`FromStr`].
    pub const NAMES: &'static [&'static str] = &["auto", "studio", "patch", "diffusion", "segment"];

    /// The name as users write it.
    pub fn as_str(self) -> &'static str {
        match self {
            EngineName::Auto => "auto",
            EngineName::Studio => "studio",
            EngineName::Patch => "patch",
            EngineName::Diffusion => "diffusion",
            EngineName::Segment => "segment",
        }
    }

    /// The concrete engine for a job: `Auto` is resolved, others are returned as they
    /// are.
    pub fn resolve(self, kind: JobKind, model_configured: bool) -> EngineName {
        match self {
            EngineName::Auto if kind == JobKind::Cutout => EngineName::Segment,
            EngineName::Auto if model_configured => EngineName::Diffusion,
            EngineName::Auto => match kind {
                JobKind::Background => EngineName::Studio,
                JobKind::Expansion => EngineName::Patch,
                JobKind::Cutout => EngineName::Segment,
            },
            other => other,
        }
    }
}

impl fmt::Display for EngineName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EngineName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(EngineName::Auto),
            "studio" => Ok(EngineName::Studio),
            "patch" => Ok(EngineName::Patch),
            "diffusion" => Ok(EngineName::Diffusion),
            "segment" => Ok(EngineName::Segment),
            _ => Err(format!(
                "unknown engine '{s}' (expected one of {})",
                EngineName::NAMES.join(", ")
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_resolves_by_job_and_model() {
        assert_eq!(EngineName::Auto.resolve(JobKind::Background, false), EngineName::Studio);
        assert_eq!(EngineName::Auto.resolve(JobKind::Expansion, false), EngineName::Patch);
        assert_eq!(EngineName::Auto.resolve(JobKind::Expansion, true), EngineName::Diffusion);
        assert_eq!(EngineName::Patch.resolve(JobKind::Background, true), EngineName::Patch);
        assert_eq!(EngineName::Auto.resolve(JobKind::Cutout, true), EngineName::Segment);
    }

    #[test]
    fn progress_fraction_covers_all_images() {
        let p = StepProgress { image: 1, images: 2, step: 5, steps: 10 };
        assert!((p.fraction() - 0.75).abs() < 1e-12);
        let none = StepProgress { image: 0, images: 0, step: 0, steps: 0 };
        assert_eq!(none.fraction(), 0.0);
    }

    #[test]
    fn cancel_is_seen_by_clones() {
        let token = CancelToken::new();
        let seen_by_engine = token.clone();
        assert!(seen_by_engine.check().is_ok());
        token.cancel();
        assert_eq!(seen_by_engine.check(), Err(EngineError::Canceled));
    }

    #[test]
    fn engine_settings_are_checked_against_the_shared_limits() {
        use crate::spec::SpecError;
        let ok = EngineOptions {
            steps: Some(150),
            guidance: Some(0.0),
            scheduler: Some("DPM++2M_Karras".into()),
            reference_strength: Some(1.0),
            ..Default::default()
        };
        assert_eq!(ok.validate(), Ok(()));
        let refused = |options: EngineOptions| options.validate().map_err(|e| e.code());
        assert_eq!(
            refused(EngineOptions { steps: Some(151), ..Default::default() }),
            Err(ErrorCode::StepsOutOfRange)
        );
        assert_eq!(
            refused(EngineOptions { steps: Some(0), ..Default::default() }),
            Err(ErrorCode::StepsOutOfRange)
        );
        for guidance in [f32::NAN, f32::INFINITY, -0.5, 50.5] {
            assert_eq!(
                refused(EngineOptions { guidance: Some(guidance), ..Default::default() }),
                Err(ErrorCode::GuidanceOutOfRange),
                "{guidance}"
            );
        }
        assert!(matches!(
            EngineOptions { scheduler: Some("pndm".into()), ..Default::default() }.validate(),
            Err(SpecError::UnknownScheduler { .. })
        ));
        assert_eq!(
            refused(EngineOptions { reference_strength: Some(1.5), ..Default::default() }),
            Err(ErrorCode::ReferenceStrengthOutOfRange)
        );
    }
}
