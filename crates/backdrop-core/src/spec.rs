//! The two jobs and their validation.
//!
//! A spec is plain data that any surface can build (command-line flags, native JSON,
//! vendor fields). `validate` checks every documented limit and returns the first
//! violation as a [`SpecError`]; it never panics, whatever the numbers (NaN and
//! infinities included).
//!
//! # Limits
//! | field | limit |
//! |---|---|
//! | prompt, negative prompt | at most [`MAX_PROMPT_CHARS`] characters |
//! | background `n` | 1..=[`MAX_BACKGROUND_IMAGES`] |
//! | expansion `n` | 1..=[`MAX_EXPANSION_IMAGES`] |
//! | output size | each side [`MIN_OUTPUT_SIDE`]..=[`MAX_OUTPUT_SIDE`] |
//! | steps | 1..=[`MAX_STEPS`] |
//! | LoRA weight | finite, in [-[`MAX_LORA_WEIGHT`], [`MAX_LORA_WEIGHT`]] |
//! | reference strength | [0, 1] |
//! | expansion ratio | each in [0, [`MAX_EXPANSION_RATIO`]], not all zero |
//! | expansion area | `(1 + left + right) * (1 + up + down)` at most [`MAX_EXPANSION_AREA`] |
//! | framing | scale in (0, 1], padding leaving room, shadow knobs and reflection in range ([`crate::framing`]) |
//!
//! # Expansion geometry
//! Each side's new strip is `round(ratio * original side)` pixels, rounding half away
//! from zero, computed independently per side: `left` and `right` scale the original
//! width, `up` and `down` its height. The original sits at `(left_px, up_px)` in a canvas
//! of `(left_px + width + right_px) x (up_px + height + down_px)`. See
//! [`ExpansionRatios::pixels`].

use crate::error::ErrorCode;
use crate::framing::Framing;
use crate::scene::SceneTemplate;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Longest prompt or negative prompt accepted, in characters (Unicode scalar values).
pub const MAX_PROMPT_CHARS: usize = 2500;
/// Most images one background task may ask for.
pub const MAX_BACKGROUND_IMAGES: u32 = 16;
/// Most images one expansion task may ask for.
pub const MAX_EXPANSION_IMAGES: u32 = 9;
/// Smallest output side in pixels.
pub const MIN_OUTPUT_SIDE: u32 = 64;
/// Largest output side in pixels (also the largest expanded canvas side).
pub const MAX_OUTPUT_SIDE: u32 = 8192;
/// Most denoising steps.
pub const MAX_STEPS: u32 = 150;
/// Largest classifier-free guidance scale.
pub const MAX_GUIDANCE: f32 = 50.0;
/// The diffusion schedulers by the names users write; the engine implements each.
pub const SCHEDULERS: &[&str] = &["ddim", "euler-a", "dpm++2m", "dpm++2m-karras", "lcm"];

/// The scheduler a user's spelling names, as one of [`SCHEDULERS`]: case and `_`/`-`
/// do not matter, and a few common aliases are accepted.
pub fn scheduler_name(given: &str) -> Option<&'static str> {
    let lower = given.trim().to_ascii_lowercase().replace('_', "-");
    Some(match lower.as_str() {
        "ddim" => "ddim",
        "euler-a" | "euler-ancestral" => "euler-a",
        "dpm++2m" | "dpmpp-2m" | "dpm-solver++" => "dpm++2m",
        "dpm++2m-karras" | "dpmpp-2m-karras" => "dpm++2m-karras",
        "lcm" => "lcm",
        _ => return None,
    })
}
/// Largest absolute LoRA weight.
pub const MAX_LORA_WEIGHT: f32 = 4.0;
/// Largest ratio for one side of an expansion.
pub const MAX_EXPANSION_RATIO: f64 = 2.0;
/// Largest expanded area as a multiple of the original area.
pub const MAX_EXPANSION_AREA: f64 = 3.0;

/// A violated limit of a job spec. Each variant names the limit it broke.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// Neither prompt nor scene was given.
    #[error("a background needs a prompt or a scene id")]
    PromptOrSceneRequired,
    /// The prompt is too long.
    #[error("prompt is {len} characters; the limit is {max}")]
    PromptTooLong {
        /// Its length in characters.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The negative prompt is too long.
    #[error("negative prompt is {len} characters; the limit is {max}")]
    NegativePromptTooLong {
        /// Its length in characters.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The scene id is unknown.
    #[error("unknown scene '{id}' (list them with `backdrop scenes`)")]
    UnknownScene {
        /// The id given.
        id: String,
    },
    /// `n` is out of range.
    #[error("n must be between {min} and {max}; got {got}")]
    ImageCountOutOfRange {
        /// Smallest allowed.
        min: u32,
        /// Largest allowed.
        max: u32,
        /// What was asked.
        got: u32,
    },
    /// The output size is out of range.
    #[error("output size {width}x{height} is out of range; each side must be {min}..={max}")]
    OutputSizeOutOfRange {
        /// Requested width.
        width: u32,
        /// Requested height.
        height: u32,
        /// Smallest side.
        min: u32,
        /// Largest side.
        max: u32,
    },
    /// Steps out of range.
    #[error("steps must be between 1 and {max}; got {got}")]
    StepsOutOfRange {
        /// Largest allowed.
        max: u32,
        /// What was asked.
        got: u32,
    },
    /// Guidance not a number or out of range.
    #[error("guidance must be between 0 and {max}; got {got}")]
    GuidanceOutOfRange {
        /// Largest allowed.
        max: f32,
        /// What was asked.
        got: f32,
    },
    /// A scheduler name that is not one of [`SCHEDULERS`].
    #[error("unknown scheduler '{name}' (expected one of {})", SCHEDULERS.join(", "))]
    UnknownScheduler {
        /// The name given.
        name: String,
    },
    /// The model id is malformed.
    #[error(
        "invalid model id '{id}': use 1-128 characters of letters, digits, '-', '_', '.', '/'"
    )]
    InvalidModelId {
        /// The id given.
        id: String,
    },
    /// A LoRA is malformed.
    #[error("invalid LoRA '{name}': {reason}")]
    InvalidLora {
        /// Its name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// Reference strength out of [0, 1].
    #[error("reference strength must be between 0 and 1; got {got}")]
    ReferenceStrengthOutOfRange {
        /// What was asked.
        got: f32,
    },
    /// An expansion ratio is out of range.
    #[error("{side} ratio must be between 0 and {max}; got {got}")]
    RatioOutOfRange {
        /// Which side (`up`, `down`, `left`, `right`).
        side: &'static str,
        /// Largest allowed.
        max: f64,
        /// What was asked.
        got: f64,
    },
    /// The expanded area is too large.
    #[error("expanded canvas would be {factor:.3}x the original area; the limit is {max}x")]
    ExpansionAreaTooLarge {
        /// `(1 + left + right) * (1 + up + down)`.
        factor: f64,
        /// The limit.
        max: f64,
    },
    /// All ratios are zero.
    #[error("all four expansion ratios are 0: nothing to expand")]
    NothingToExpand,
    /// The expanded canvas is too large in pixels.
    #[error("expanded canvas {width}x{height} exceeds the largest side of {max}")]
    CanvasTooLarge {
        /// Canvas width.
        width: u64,
        /// Canvas height.
        height: u64,
        /// Largest side.
        max: u32,
    },
    /// The placement scale is outside (0, 1].
    #[error("scale must be more than 0 and at most 1; got {got}")]
    ScaleOutOfRange {
        /// What was asked.
        got: f64,
    },
    /// A padding value is malformed or negative.
    #[error("invalid padding: {reason}")]
    InvalidPadding {
        /// What is wrong.
        reason: String,
    },
    /// The padding leaves no room for the product.
    #[error("padding {padding} leaves no room for the product in a {width}x{height} canvas")]
    PaddingLeavesNoRoom {
        /// The padding as given (top,right,bottom,left).
        padding: String,
        /// Canvas width.
        width: u32,
        /// Canvas height.
        height: u32,
    },
    /// The alignment is unknown.
    #[error("unknown align '{got}' (expected one of {})", crate::framing::Align::NAMES.join(", "))]
    UnknownAlign {
        /// What was given.
        got: String,
    },
    /// The offset is malformed or too large.
    #[error("invalid offset: {reason}")]
    InvalidOffset {
        /// What is wrong.
        reason: String,
    },
    /// The shadow style is unknown.
    #[error(
        "unknown shadow style '{got}' (expected one of {})",
        crate::framing::ShadowStyle::NAMES.join(", ")
    )]
    UnknownShadowStyle {
        /// What was given.
        got: String,
    },
    /// A shadow knob is out of range.
    #[error("shadow {what} must be in {range}; got {got}")]
    ShadowOutOfRange {
        /// Which knob.
        what: &'static str,
        /// Its range.
        range: &'static str,
        /// What was asked.
        got: f32,
    },
    /// The reflection opacity is out of range.
    #[error("reflection must be between 0 and 1; got {got}")]
    ReflectionOutOfRange {
        /// What was asked.
        got: f32,
    },
    /// The backdrop is malformed or the format cannot carry it.
    #[error("invalid backdrop: {reason}")]
    InvalidBackdrop {
        /// What is wrong.
        reason: String,
    },
}

impl SpecError {
    /// The stable code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            SpecError::PromptOrSceneRequired => ErrorCode::PromptOrSceneRequired,
            SpecError::PromptTooLong { .. } => ErrorCode::PromptTooLong,
            SpecError::NegativePromptTooLong { .. } => ErrorCode::NegativePromptTooLong,
            SpecError::UnknownScene { .. } => ErrorCode::UnknownScene,
            SpecError::ImageCountOutOfRange { .. } => ErrorCode::ImageCountOutOfRange,
            SpecError::OutputSizeOutOfRange { .. } => ErrorCode::OutputSizeOutOfRange,
            SpecError::StepsOutOfRange { .. } => ErrorCode::StepsOutOfRange,
            SpecError::GuidanceOutOfRange { .. } => ErrorCode::GuidanceOutOfRange,
            SpecError::UnknownScheduler { .. } => ErrorCode::UnknownScheduler,
            SpecError::InvalidModelId { .. } => ErrorCode::InvalidModelId,
            SpecError::InvalidLora { .. } => ErrorCode::InvalidLora,
            SpecError::ReferenceStrengthOutOfRange { .. } => ErrorCode::ReferenceStrengthOutOfRange,
            SpecError::RatioOutOfRange { .. } => ErrorCode::RatioOutOfRange,
            SpecError::ExpansionAreaTooLarge { .. } => ErrorCode::ExpansionAreaTooLarge,
            SpecError::NothingToExpand => ErrorCode::NothingToExpand,
            SpecError::CanvasTooLarge { .. } => ErrorCode::CanvasTooLarge,
            SpecError::ScaleOutOfRange { .. } => ErrorCode::ScaleOutOfRange,
            SpecError::InvalidPadding { .. } => ErrorCode::InvalidPadding,
            SpecError::PaddingLeavesNoRoom { .. } => ErrorCode::PaddingLeavesNoRoom,
            SpecError::UnknownAlign { .. } => ErrorCode::UnknownAlign,
            SpecError::InvalidOffset { .. } => ErrorCode::InvalidOffset,
            SpecError::UnknownShadowStyle { .. } => ErrorCode::UnknownShadowStyle,
            SpecError::ShadowOutOfRange { .. } => ErrorCode::ShadowOutOfRange,
            SpecError::ReflectionOutOfRange { .. } => ErrorCode::ReflectionOutOfRange,
            SpecError::InvalidBackdrop { .. } => ErrorCode::InvalidBackdrop,
        }
    }
}

/// How the cut-out is fitted into an output size that differs from its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ResizeMode {
    /// Stretch to exactly the output size (aspect ratio not kept).
    JustResize,
    /// Scale to cover the output, keeping the aspect ratio, and crop the overflow
    /// (centred).
    CropAndResize,
    /// Scale to fit inside the output, keeping the aspect ratio, centred; the margin is
    /// transparent and so is generated.
    #[default]
    ResizeAndFill,
}

impl ResizeMode {
    /// The names accepted by [`FromStr`], in kebab case.
    pub const NAMES: &'static [&'static str] =
        &["just-resize", "crop-and-resize", "resize-and-fill"];
}

impl FromStr for ResizeMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let folded: String =
            s.chars().filter(|c| *c != '-' && *c != '_').collect::<String>().to_ascii_lowercase();
        match folded.as_str() {
            "justresize" => Ok(ResizeMode::JustResize),
            "cropandresize" => Ok(ResizeMode::CropAndResize),
            "resizeandfill" => Ok(ResizeMode::ResizeAndFill),
            _ => Err(format!(
                "unknown resize mode '{s}' (expected one of {})",
                ResizeMode::NAMES.join(", ")
            )),
        }
    }
}

/// An output size in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputSize {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

impl FromStr for OutputSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("invalid size '{s}': expected WIDTHxHEIGHT, e.g. 1024x768");
        let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
        Ok(OutputSize {
            width: w.trim().parse().map_err(|_| bad())?,
            height: h.trim().parse().map_err(|_| bad())?,
        })
    }
}

impl fmt::Display for OutputSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

/// A LoRA to apply with a weight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraRef {
    /// The LoRA's name as configured.
    pub name: String,
    /// Its weight.
    pub weight: f32,
}

/// A reference background image seeding the generated background.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceSpec {
    /// How strongly the reference shapes the result: 0 ignores it, 1 keeps it nearly as is.
    pub strength: f32,
    /// How the reference is fitted to the output size.
    pub resize_mode: ResizeMode,
}

/// A background job: fill the transparent area of a cut-out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackgroundSpec {
    /// What to generate, in words.
    pub prompt: Option<String>,
    /// A scene template id from [`crate::SCENES`].
    pub scene: Option<String>,
    /// What to avoid, in words.
    pub negative_prompt: Option<String>,
    /// How many images.
    pub n: u32,
    /// The seed of the first image; image `i` uses `seed + i`. `None` picks one at random.
    pub seed: Option<u64>,
    /// Output size; `None` keeps the input's size.
    pub size: Option<OutputSize>,
    /// How the cut-out is fitted into `size`.
    pub resize_mode: ResizeMode,
    /// Denoising steps (diffusion only); `None` uses the model's default.
    pub steps: Option<u32>,
    /// Model id (diffusion only); `None` uses the default model.
    pub model: Option<String>,
    /// LoRAs with weights (diffusion only).
    pub loras: Vec<LoraRef>,
    /// A reference background image's settings, when one is supplied.
    pub reference: Option<ReferenceSpec>,
    /// Placement, shadow, reflection and backdrop ([`crate::framing`]); absent in
    /// specs stored before it existed, which keep today's behaviour.
    #[serde(default)]
    pub framing: Framing,
    /// When the input is cut out automatically first (see [`crate::cutout`]). Tasks
    /// stored before this field existed read as `auto`, which leaves their (transparent)
    /// inputs as they were.
    #[serde(default)]
    pub cutout: crate::cutout::CutoutMode,
}

impl Default for BackgroundSpec {
    fn default() -> Self {
        BackgroundSpec {
            prompt: None,
            scene: None,
            negative_prompt: None,
            n: 1,
            seed: None,
            size: None,
            resize_mode: ResizeMode::default(),
            steps: None,
            model: None,
            loras: Vec::new(),
            reference: None,
            framing: Framing::default(),
            cutout: crate::cutout::CutoutMode::default(),
        }
    }
}

impl BackgroundSpec {
    /// Checks every limit; the first violation is returned.
    pub fn validate(&self) -> Result<(), SpecError> {
        let prompt = self.prompt.as_deref().map(str::trim).filter(|p| !p.is_empty());
        let scene = self.scene.as_deref().map(str::trim).filter(|s| !s.is_empty());
        // A plain or transparent backdrop generates nothing, so it needs no words.
        let generates = self.framing.backdrop == crate::framing::Backdrop::Generate;
        if prompt.is_none() && scene.is_none() && generates {
            return Err(SpecError::PromptOrSceneRequired);
        }
        check_prompts(self.prompt.as_deref(), self.negative_prompt.as_deref())?;
        if let Some(id) = scene {
            if SceneTemplate::find(id).is_none() {
                return Err(SpecError::UnknownScene { id: id.to_string() });
            }
        }
        check_count(self.n, MAX_BACKGROUND_IMAGES)?;
        if let Some(size) = self.size {
            let ok = |v: u32| (MIN_OUTPUT_SIDE..=MAX_OUTPUT_SIDE).contains(&v);
            if !ok(size.width) || !ok(size.height) {
                return Err(SpecError::OutputSizeOutOfRange {
                    width: size.width,
                    height: size.height,
                    min: MIN_OUTPUT_SIDE,
                    max: MAX_OUTPUT_SIDE,
                });
            }
        }
        if let Some(steps) = self.steps {
            if !(1..=MAX_STEPS).contains(&steps) {
                return Err(SpecError::StepsOutOfRange { max: MAX_STEPS, got: steps });
            }
        }
        check_model_id(self.model.as_deref())?;
        for lora in &self.loras {
            if !valid_name(&lora.name) {
                return Err(SpecError::InvalidLora {
                    name: lora.name.clone(),
                    reason: "use 1-128 characters of letters, digits, '-', '_', '.', '/'".into(),
                });
            }
            if !lora.weight.is_finite() || lora.weight.abs() > MAX_LORA_WEIGHT {
                return Err(SpecError::InvalidLora {
                    name: lora.name.clone(),
                    reason: format!(
                        "weight must be between -{MAX_LORA_WEIGHT} and {MAX_LORA_WEIGHT}; got {}",
                        lora.weight
                    ),
                });
            }
        }
        if let Some(reference) = &self.reference {
            // `contains` is false for NaN, so NaN is refused too.
            if !(0.0..=1.0).contains(&reference.strength) {
                return Err(SpecError::ReferenceStrengthOutOfRange { got: reference.strength });
            }
        }
        self.framing.validate(self.size)
    }
}

/// How far to expand each side, as a fraction of the original's width (left, right) or
/// height (up, down).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct ExpansionRatios {
    /// New area above, as a fraction of the height.
    pub up: f64,
    /// New area below, as a fraction of the height.
    pub down: f64,
    /// New area to the left, as a fraction of the width.
    pub left: f64,
    /// New area to the right, as a fraction of the width.
    pub right: f64,
}

/// An expansion resolved to pixels for one original size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpansionPixels {
    /// Rows added above.
    pub up: u32,
    /// Rows added below.
    pub down: u32,
    /// Columns added to the left.
    pub left: u32,
    /// Columns added to the right.
    pub right: u32,
    /// Canvas width.
    pub canvas_width: u32,
    /// Canvas height.
    pub canvas_height: u32,
}

impl ExpansionRatios {
    /// Checks each ratio and the area limit.
    pub fn validate(&self) -> Result<(), SpecError> {
        for (side, got) in
            [("up", self.up), ("down", self.down), ("left", self.left), ("right", self.right)]
        {
            if !(0.0..=MAX_EXPANSION_RATIO).contains(&got) {
                return Err(SpecError::RatioOutOfRange { side, max: MAX_EXPANSION_RATIO, got });
            }
        }
        let factor = self.area_factor();
        // A tiny tolerance so that ratios written in decimal (0.5 and 0.5 -> 3.0) that
        // land a rounding error over the limit are not refused.
        if factor > MAX_EXPANSION_AREA + 1e-9 {
            return Err(SpecError::ExpansionAreaTooLarge { factor, max: MAX_EXPANSION_AREA });
        }
        if self.up == 0.0 && self.down == 0.0 && self.left == 0.0 && self.right == 0.0 {
            return Err(SpecError::NothingToExpand);
        }
        Ok(())
    }

    /// `(1 + left + right) * (1 + up + down)`: the new canvas area over the original's.
    pub fn area_factor(&self) -> f64 {
        (1.0 + self.left + self.right) * (1.0 + self.up + self.down)
    }

    /// Resolves the ratios to pixels for an original of `width` x `height` (see the
    /// module doc for the rounding rule). Fails if the canvas would be larger than
    /// [`MAX_OUTPUT_SIDE`] on a side. Call [`ExpansionRatios::validate`] first.
    pub fn pixels(&self, width: u32, height: u32) -> Result<ExpansionPixels, SpecError> {
        let strip = |ratio: f64, side: u32| -> u64 {
            let px = (ratio * f64::from(side)).round();
            if px.is_finite() && px > 0.0 {
                px as u64
            } else {
                0
            }
        };
        let (up, down) = (strip(self.up, height), strip(self.down, height));
        let (left, right) = (strip(self.left, width), strip(self.right, width));
        let canvas_width = left + u64::from(width) + right;
        let canvas_height = up + u64::from(height) + down;
        let max = u64::from(MAX_OUTPUT_SIDE);
        if canvas_width > max || canvas_height > max {
            return Err(SpecError::CanvasTooLarge {
                width: canvas_width,
                height: canvas_height,
                max: MAX_OUTPUT_SIDE,
            });
        }
        // Every value is at most MAX_OUTPUT_SIDE here, so the narrowing is exact.
        Ok(ExpansionPixels {
            up: up as u32,
            down: down as u32,
            left: left as u32,
            right: right as u32,
            canvas_width: canvas_width as u32,
            canvas_height: canvas_height as u32,
        })
    }
}

/// An expansion job: extend a photo outward.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExpansionSpec {
    /// How far to expand each side.
    pub ratios: ExpansionRatios,
    /// What the new area should show, in words (optional).
    pub prompt: Option<String>,
    /// How many images.
    pub n: u32,
    /// The seed of the first image; image `i` uses `seed + i`. `None` picks one at random.
    pub seed: Option<u64>,
    /// Also produce a watermarked variant of each image.
    pub watermark: bool,
}

impl Default for ExpansionSpec {
    fn default() -> Self {
        ExpansionSpec {
            ratios: ExpansionRatios::default(),
            prompt: None,
            n: 1,
            seed: None,
            watermark: false,
        }
    }
}

impl ExpansionSpec {
    /// Checks every limit; the first violation is returned.
    pub fn validate(&self) -> Result<(), SpecError> {
        self.ratios.validate()?;
        check_prompts(self.prompt.as_deref(), None)?;
        check_count(self.n, MAX_EXPANSION_IMAGES)
    }
}

fn check_prompts(prompt: Option<&str>, negative: Option<&str>) -> Result<(), SpecError> {
    if let Some(p) = prompt {
        let len = p.chars().count();
        if len > MAX_PROMPT_CHARS {
            return Err(SpecError::PromptTooLong { len, max: MAX_PROMPT_CHARS });
        }
    }
    if let Some(p) = negative {
        let len = p.chars().count();
        if len > MAX_PROMPT_CHARS {
            return Err(SpecError::NegativePromptTooLong { len, max: MAX_PROMPT_CHARS });
        }
    }
    Ok(())
}

fn check_count(n: u32, max: u32) -> Result<(), SpecError> {
    if (1..=max).contains(&n) {
        Ok(())
    } else {
        Err(SpecError::ImageCountOutOfRange { min: 1, max, got: n })
    }
}

/// Refuses a malformed model id.
pub(crate) fn check_model_id(model: Option<&str>) -> Result<(), SpecError> {
    match model {
        Some(id) if !valid_name(id) => Err(SpecError::InvalidModelId { id: id.to_string() }),
        _ => Ok(()),
    }
}

/// Model and LoRA names: short, and safe to use as a path component of a configured
/// folder (no `..`, no leading `/`).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('/')
        && !name.split('/').any(|part| part == ".." || part.is_empty())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

/// A background spec as task rows stored it before framing and cut-out modes existed:
/// such rows must keep parsing, with both at their defaults.
#[cfg(test)]
pub(crate) fn stored_before_framing() -> BackgroundSpec {
    let stored = r#"{"prompt":"a","scene":null,"negative_prompt":null,"n":1,"seed":3,
        "size":null,"resize_mode":"ResizeAndFill","steps":null,"model":null,"loras":[],
        "reference":null}"#;
    serde_json::from_str(stored).expect("parses")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bg() -> BackgroundSpec {
        BackgroundSpec { prompt: Some("a marble table".into()), ..Default::default() }
    }

    #[test]
    fn background_limits_have_their_codes() {
        assert_eq!(bg().validate(), Ok(()));
        let cases: Vec<(BackgroundSpec, ErrorCode)> = vec![
            (
                BackgroundSpec { prompt: Some("  ".into()), ..bg() },
                ErrorCode::PromptOrSceneRequired,
            ),
            (BackgroundSpec { prompt: Some("x".repeat(2501)), ..bg() }, ErrorCode::PromptTooLong),
            (
                BackgroundSpec { negative_prompt: Some("é".repeat(2501)), ..bg() },
                ErrorCode::NegativePromptTooLong,
            ),
            (BackgroundSpec { scene: Some("moon-base".into()), ..bg() }, ErrorCode::UnknownScene),
            (BackgroundSpec { n: 0, ..bg() }, ErrorCode::ImageCountOutOfRange),
            (BackgroundSpec { n: 17, ..bg() }, ErrorCode::ImageCountOutOfRange),
            (
                BackgroundSpec { size: Some(OutputSize { width: 63, height: 512 }), ..bg() },
                ErrorCode::OutputSizeOutOfRange,
            ),
            (BackgroundSpec { steps: Some(0), ..bg() }, ErrorCode::StepsOutOfRange),
            (BackgroundSpec { model: Some("../etc".into()), ..bg() }, ErrorCode::InvalidModelId),
            (
                BackgroundSpec {
                    loras: vec![LoraRef { name: "ok".into(), weight: f32::NAN }],
                    ..bg()
                },
                ErrorCode::InvalidLora,
            ),
            (
                BackgroundSpec {
                    reference: Some(ReferenceSpec {
                        strength: 1.5,
                        resize_mode: ResizeMode::JustResize,
                    }),
                    ..bg()
                },
                ErrorCode::ReferenceStrengthOutOfRange,
            ),
        ];
        for (spec, code) in cases {
            assert_eq!(spec.validate().map_err(|e| e.code()), Err(code), "{spec:?}");
        }
    }

    #[test]
    fn a_prompt_at_the_limit_is_accepted() {
        let spec = BackgroundSpec { prompt: Some("ü".repeat(MAX_PROMPT_CHARS)), ..bg() };
        assert_eq!(spec.validate(), Ok(()));
    }

    #[test]
    fn ratios_refuse_nan_negative_and_large() {
        for bad in [f64::NAN, -0.01, 2.01, f64::INFINITY] {
            let r = ExpansionRatios { up: bad, ..Default::default() };
            assert_eq!(r.validate().map_err(|e| e.code()), Err(ErrorCode::RatioOutOfRange));
        }
        let r = ExpansionRatios { left: 1.0, right: 1.0, up: 0.1, down: 0.0 };
        assert_eq!(r.validate().map_err(|e| e.code()), Err(ErrorCode::ExpansionAreaTooLarge));
        let r = ExpansionRatios { left: 1.0, right: 1.0, up: 0.0, down: 0.0 };
        assert_eq!(r.validate(), Ok(()), "exactly 3x is allowed");
        let r = ExpansionRatios::default();
        assert_eq!(r.validate().map_err(|e| e.code()), Err(ErrorCode::NothingToExpand));
    }

    #[test]
    fn pixels_round_half_away_from_zero_per_side() {
        let r = ExpansionRatios { up: 0.25, down: 0.5, left: 0.1, right: 0.0 };
        let px = r.pixels(15, 10).expect("fits");
        // 0.25 * 10 = 2.5 -> 3; 0.5 * 10 = 5; 0.1 * 15 = 1.5 -> 2.
        assert_eq!((px.up, px.down, px.left, px.right), (3, 5, 2, 0));
        assert_eq!((px.canvas_width, px.canvas_height), (17, 18));
    }

    #[test]
    fn pixels_refuse_oversize_canvas() {
        let r = ExpansionRatios { left: 1.0, right: 1.0, up: 0.0, down: 0.0 };
        assert_eq!(r.pixels(4000, 100).map_err(|e| e.code()), Err(ErrorCode::CanvasTooLarge));
    }

    #[test]
    fn parses_sizes_and_modes() {
        assert_eq!("1024x768".parse::<OutputSize>(), Ok(OutputSize { width: 1024, height: 768 }));
        assert!("1024".parse::<OutputSize>().is_err());
        assert_eq!("crop-and-resize".parse::<ResizeMode>(), Ok(ResizeMode::CropAndResize));
        assert_eq!("ResizeAndFill".parse::<ResizeMode>(), Ok(ResizeMode::ResizeAndFill));
        assert!("stretch".parse::<ResizeMode>().is_err());
    }

    #[test]
    fn expansion_count_limit() {
        let spec = ExpansionSpec {
            ratios: ExpansionRatios { up: 0.5, ..Default::default() },
            n: 10,
            ..Default::default()
        };
        assert_eq!(spec.validate().map_err(|e| e.code()), Err(ErrorCode::ImageCountOutOfRange));
    }
}
