//! `studio`: parametric studio backdrops with a contact shadow. No model weights; a
//! 1024×1024 image renders in milliseconds.
//!
//! This module owns the whole engine: picking the scene, turning a seed into a variant,
//! shading the backdrop, casting the cut-out's shadow, and the simple fill it offers for
//! expansions. It paints the whole canvas; the pipeline puts the protected pixels back.
//!
//! # Scenes
//! Every template in [`backdrop_core::SCENES`] has a look built from a few parts: a
//! seamless paper sweep (the wall curving into the floor, lit from above so it falls off
//! toward the top), a wall meeting a floor at a crisp horizon with a darker crease, or a
//! free gradient; soft elliptical lights (a single hard-rimmed spotlight for
//! `dark-spotlight`); a vignette; and a surface texture where the description asks for
//! one: paper fibres, mottled concrete from value noise, wood boards in perspective, a
//! haze that bends the gradient. The scene comes from
//! [`SceneTemplate::choose`](backdrop_core::SceneTemplate::choose), and the choice and its
//! reason are returned as the notes `scene` and `scene_reason`.
//!
//! # Variants
//! Image `i` is made from `input.image_seed(i)`. A SplitMix64 stream seeded with it
//! picks the key light's side and position, the horizon height, the gradient tilt, a
//! small hue / saturation / brightness jitter of the palette, the vignette centre, the
//! grain and the texture's noise seeds, in a fixed order. Per-pixel noise is a hash of
//! the pixel's coordinates and those seeds, never a stream, so the bytes are the same
//! however rayon splits the rows. The same seed gives the same light set-up in every
//! scene.
//!
//! # Shadow
//! For a background job the object is where the canvas alpha is above zero. Unless
//! `options.no_shadow` is set, it casts a shadow made of a tight contact band under its
//! lowest edge, a softer projection of its alpha squashed onto the floor and sheared
//! away from the variant's key light, and a faint wide pool; all of it is worked out at
//! a quarter of the resolution and sampled bilinearly. The backdrop is multiplied by
//! `1 - shadow`.
//!
//! # Expansion
//! For an expansion there is no scene: each new pixel takes a heavily blurred
//! continuation of the photo's border colours (pixels with alpha 255), with a faint
//! mottle and grain that depend on the seed. No shadow is cast.

mod expand;
mod look;
mod rng;
pub(crate) mod shadow;

#[cfg(test)]
mod tests;

use backdrop_core::{
    CancelToken, Engine, EngineError, EngineInput, EngineOutput, EngineResult, JobKind, Progress,
    RunControl, SceneTemplate, StepProgress, SCENES,
};
use look::{Look, Scene, Variant};
use shadow::Cutout;

const NAME: &str = "studio";

/// Downsampling factor of the working planes for the shadow and the expansion fill.
const FACTOR: usize = 4;

/// Grain of the expansion fill, in `[0, 1]` units (about 1.5 levels).
const EXPANSION_GRAIN: f32 = 1.5 / 255.0;

/// The studio engine: renders the scene templates; see the [module docs](self).
///
/// It holds no state; build it with [`Default`].
#[derive(Debug, Default, Clone, Copy)]
pub struct StudioEngine {}

impl Engine for StudioEngine {
    fn name(&self) -> &'static str {
        NAME
    }

    fn generate(&self, input: &EngineInput<'_>, run: RunControl<'_>) -> EngineResult {
        let RunControl { progress, cancel } = run;
        match input.kind {
            JobKind::Background => background(input, progress, cancel),
            JobKind::Expansion => expansion(input, progress, cancel),
            JobKind::Cutout => Err(EngineError::Unsupported {
                engine: "studio",
                reason: "cut-outs run on the segment engine".into(),
            }),
        }
    }

    /// The shadow planes and the expansion blur pyramid: measured at 0.4 to 2.4 bytes
    /// per canvas pixel (1024 to 4096 px squares), so 4.
    fn working_memory(&self, width: u32, height: u32) -> u64 {
        u64::from(width) * u64::from(height) * 4
    }
}

fn background(
    input: &EngineInput<'_>,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<EngineOutput, EngineError> {
    let choice = SceneTemplate::choose(input.scene, input.prompt).ok_or_else(|| {
        let known: Vec<&str> = SCENES.iter().map(|s| s.id).collect();
        EngineError::Unsupported {
            engine: NAME,
            reason: format!(
                "unknown scene '{}' (known scenes: {})",
                input.scene.unwrap_or_default().trim(),
                known.join(", ")
            ),
        }
    })?;
    let scene = Scene::from_id(choice.id).ok_or_else(|| EngineError::Unsupported {
        engine: NAME,
        reason: format!("scene '{}' has no studio renderer", choice.id),
    })?;

    let (width, height) = input.canvas.dimensions();
    let aspect = width as f32 / height.max(1) as f32;
    // The object does not change between images; only the light that shapes its
    // shadow does.
    let cutout = if input.options.no_shadow { None } else { Cutout::from_canvas(input.canvas) };

    let mut images = Vec::with_capacity(input.n as usize);
    for i in 0..input.n {
        cancel.check()?;
        let variant = Variant::from_seed(input.image_seed(i));
        let look = Look::new(scene, &variant, aspect);
        let shadow = cutout
            .as_ref()
            .map(|c| c.shadow(variant.shadow_skew(), variant.shadow_squash, look.shadow_strength));
        images.push(look.render(width, height, shadow.as_ref()));
        progress.step(StepProgress { image: i, images: input.n, step: 1, steps: 1 });
    }
    Ok(EngineOutput {
        images,
        notes: vec![
            ("scene".to_string(), choice.id.to_string()),
            ("scene_reason".to_string(), choice.reason),
        ],
    })
}

fn expansion(
    input: &EngineInput<'_>,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<EngineOutput, EngineError> {
    let mut images = Vec::with_capacity(input.n as usize);
    for i in 0..input.n {
        cancel.check()?;
        let variant = Variant::from_seed(input.image_seed(i));
        images.push(expand::continue_border(input.canvas, variant.grain_seed, EXPANSION_GRAIN));
        progress.step(StepProgress { image: i, images: input.n, step: 1, steps: 1 });
    }
    let mut notes =
        vec![("fill".to_string(), "blurred continuation of the photo's border colours".into())];
    if let Some(scene) = input.scene.map(str::trim).filter(|s| !s.is_empty()) {
        notes.push(("scene_ignored".to_string(), format!("{scene}: scenes apply to backgrounds")));
    }
    Ok(EngineOutput { images, notes })
}

/// The two working-plane samples around full-resolution coordinate `i` (sample `k`
/// centred on `(k + 0.5) * FACTOR`) and the weight of the second.
fn tap(i: usize, len: usize) -> (usize, usize, f32) {
    let s = ((i as f32 + 0.5) / FACTOR as f32 - 0.5).clamp(0.0, len.saturating_sub(1) as f32);
    let i0 = s as usize;
    let i1 = (i0 + 1).min(len.saturating_sub(1));
    (i0, i1, s - i0 as f32)
}
