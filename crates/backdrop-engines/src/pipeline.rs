//! One job from decoded input to encoded files: the pipeline every surface runs.
//!
//! ```text
//! validate spec -> check input -> canvas + mask -> engine -> exact composite (+ seam)
//!     -> encode result (+ preview, + watermarked variant)
//! ```
//!
//! The command line and the server's workers call [`run_background`] /
//! [`run_expansion`] and then [`render`]; nothing here does IO, so the same code serves
//! local files and blob stores.

use crate::framing::FloorEffects;
use crate::Engines;
use backdrop_core::{
    Backdrop, BackgroundSpec, CancelToken, CutoutMode, EngineError, EngineInput, EngineName,
    EngineOptions, ErrorCode, ExpansionSpec, JobKind, Progress, SpecError, StepProgress,
};
use backdrop_imaging::canvas::{background_canvas, expansion_canvas};
use backdrop_imaging::composite::{composite, default_feather, Seam};
use backdrop_imaging::decode::check_cutout;
use backdrop_imaging::mask::generation_mask;
use backdrop_imaging::matte::{apply_matte, has_transparency};
use backdrop_imaging::placement::place;
use backdrop_imaging::preview::preview_image;
use backdrop_imaging::watermark::watermark;
use backdrop_imaging::{encode_image, DecodedImage, InputError, OutputFormat};
use image::{imageops, DynamicImage, RgbaImage};
use rayon::prelude::*;
use std::time::Instant;

/// A background job ready to run.
#[derive(Debug, Clone)]
pub struct BackgroundJob<'a> {
    /// The decoded cut-out.
    pub cutout: &'a DecodedImage,
    /// What to make.
    pub spec: &'a BackgroundSpec,
    /// A reference background, if the job has one.
    pub reference: Option<&'a RgbaImage>,
    /// Mask growth into the cut-out's edge, in pixels
    /// (see [`backdrop_imaging::mask`]).
    pub mask_grow: u32,
    /// The engine as the user named it (`auto` is resolved here).
    pub engine: EngineName,
    /// Engine knobs.
    pub options: EngineOptions,
}

/// An expansion job ready to run.
#[derive(Debug, Clone)]
pub struct ExpansionJob<'a> {
    /// The decoded photo.
    pub photo: &'a DecodedImage,
    /// What to make.
    pub spec: &'a ExpansionSpec,
    /// Overlap of the generated area into the original, in pixels.
    pub mask_grow: u32,
    /// The engine as the user named it (`auto` is resolved here).
    pub engine: EngineName,
    /// Engine knobs.
    pub options: EngineOptions,
}

/// Where the time of a run went, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Timings {
    /// Canvas and mask.
    pub prepare_ms: f64,
    /// The engine.
    pub engine_ms: f64,
    /// Composite and seam.
    pub composite_ms: f64,
    /// Automatic cut-out of a photo (0 when the input was a cut-out).
    pub segment_ms: f64,
}

/// What a run made.
#[derive(Debug, Clone)]
pub struct JobOutput {
    /// The engine that ran.
    pub engine: EngineName,
    /// The seed of the first image (image `i` used `seed + i`).
    pub seed: u64,
    /// The finished images, protected pixels restored: RGB, or RGBA for a transparent
    /// backdrop.
    pub images: Vec<DynamicImage>,
    /// Choices the engine reported (e.g. the scene and why).
    pub notes: Vec<(String, String)>,
    /// Timings.
    pub timings: Timings,
}

/// Why a job failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JobError {
    /// The spec broke a limit.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The input image was refused.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The engine failed or was canceled.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A result could not be encoded.
    #[error("could not encode a result: {0}")]
    Encode(String),
}

impl JobError {
    /// The stable code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            JobError::Spec(e) => e.code(),
            JobError::Input(e) => e.code(),
            JobError::Engine(e) => e.code(),
            JobError::Encode(_) => ErrorCode::OutputFailed,
        }
    }
}

/// A seed for a job that did not give one: from the process's random hasher keys and the
/// clock, kept below 2^31 so every surface (some take signed 32-bit seeds) can echo it.
pub fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish() & 0x7FFF_FFFF
}

/// Runs a background job.
pub fn run_background(
    engines: &Engines,
    job: &BackgroundJob<'_>,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<JobOutput, JobError> {
    job.spec.validate()?;
    job.options.validate()?;
    let started = Instant::now();
    let cut = photo_cutout(engines, job.cutout, job.spec.cutout, cancel)?;
    let cutout = cut.as_ref().map_or(job.cutout, |c| &c.image);
    check_cutout(cutout)?;
    let framing = &job.spec.framing;
    let canvas = match &framing.placement {
        Some(placement) => {
            let (w, h) = cutout.image.dimensions();
            let size = job.spec.size.map_or((w, h), |s| (s.width, s.height));
            place(&cutout.image, size.0, size.1, placement)?
        }
        None => background_canvas(&cutout.image, job.spec.size, job.spec.resize_mode),
    };
    let mask = generation_mask(&canvas, job.mask_grow);
    let effects = framing.has_floor_effects().then(|| FloorEffects::new(&canvas, framing));
    if let (Some(effects), Backdrop::Colour(_) | Backdrop::Transparent) =
        (&effects, framing.backdrop)
    {
        let (engine, _) = engines.get(job.engine, JobKind::Background)?;
        let output = backdrop_only(
            effects,
            framing.backdrop,
            &canvas,
            &mask,
            job,
            engine,
            started,
            progress,
        );
        return Ok(with_cutout_notes(output, cut));
    }
    let reference = job.reference.map(|r| {
        let (w, h) = canvas.dimensions();
        let mode = job.spec.reference.as_ref().map(|r| r.resize_mode).unwrap_or_default();
        fit_reference(r, w, h, mode)
    });
    let mut options = job.options.clone();
    // An explicit shadow style is drawn by the pipeline, the same way on every engine.
    options.no_shadow |= framing.shadow.is_some();
    options.steps = options.steps.or(job.spec.steps);
    options.model = options.model.or_else(|| job.spec.model.clone());
    if options.loras.is_empty() {
        options.loras = job.spec.loras.clone();
    }
    options.reference_strength =
        options.reference_strength.or(job.spec.reference.as_ref().map(|r| r.strength));
    let input = EngineInput {
        kind: JobKind::Background,
        canvas: &canvas,
        mask: &mask,
        reference: reference.as_ref(),
        prompt: job.spec.prompt.as_deref(),
        negative_prompt: job.spec.negative_prompt.as_deref(),
        scene: job.spec.scene.as_deref(),
        seed: job.spec.seed.unwrap_or_else(random_seed),
        n: job.spec.n,
        options: &options,
    };
    let output = run(
        engines,
        job.engine,
        &input,
        Seam::AlphaOnly,
        effects.as_ref(),
        started,
        progress,
        cancel,
    )?;
    Ok(with_cutout_notes(output, cut))
}

/// Reports an automatic cut-out (its model and time) in a job's output.
fn with_cutout_notes(mut output: JobOutput, cut: Option<Cutout>) -> JobOutput {
    if let Some(cut) = cut {
        output.notes.push(("cutout".into(), cut.model));
        output.timings.segment_ms = cut.segment_ms;
    }
    output
}

/// A job whose backdrop is a plain colour or nothing: no engine runs; the product, its
/// shadow and reflection are drawn on the backdrop, the same for every image.
#[allow(clippy::too_many_arguments)]
fn backdrop_only(
    effects: &FloorEffects<'_>,
    backdrop: Backdrop,
    canvas: &RgbaImage,
    mask: &image::GrayImage,
    job: &BackgroundJob<'_>,
    engine: EngineName,
    started: Instant,
    progress: &dyn Progress,
) -> JobOutput {
    let prepare_ms = ms(started);
    let composite_started = Instant::now();
    let image = match effects.backdrop(backdrop) {
        DynamicImage::ImageRgb8(floor) => {
            DynamicImage::ImageRgb8(composite(canvas, &floor, mask, Seam::AlphaOnly))
        }
        other => other,
    };
    let n = job.spec.n;
    progress.step(StepProgress { image: n.saturating_sub(1), images: n, step: 1, steps: 1 });
    let note = match backdrop {
        Backdrop::Colour([r, g, b]) => format!("#{r:02x}{g:02x}{b:02x}: no background generated"),
        _ => "transparent: no background generated".to_string(),
    };
    JobOutput {
        engine,
        seed: job.spec.seed.unwrap_or_else(random_seed),
        images: vec![image; n as usize],
        notes: vec![("backdrop".to_string(), note)],
        timings: Timings {
            prepare_ms,
            engine_ms: 0.0,
            composite_ms: ms(composite_started),
            ..Timings::default()
        },
    }
}

/// Runs an expansion job.
pub fn run_expansion(
    engines: &Engines,
    job: &ExpansionJob<'_>,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<JobOutput, JobError> {
    job.spec.validate()?;
    job.options.validate()?;
    let started = Instant::now();
    let (w, h) = job.photo.image.dimensions();
    let pixels = job.spec.ratios.pixels(w, h)?;
    let canvas = expansion_canvas(&job.photo.image, &pixels);
    let mask = generation_mask(&canvas, job.mask_grow);
    let input = EngineInput {
        kind: JobKind::Expansion,
        canvas: &canvas,
        mask: &mask,
        reference: None,
        prompt: job.spec.prompt.as_deref(),
        negative_prompt: None,
        scene: None,
        seed: job.spec.seed.unwrap_or_else(random_seed),
        n: job.spec.n,
        options: &job.options,
    };
    run(
        engines,
        job.engine,
        &input,
        Seam::Harmonize { feather: default_feather(w, h) },
        None,
        started,
        progress,
        cancel,
    )
}

#[allow(clippy::too_many_arguments)]
fn run(
    engines: &Engines,
    name: EngineName,
    input: &EngineInput<'_>,
    seam: Seam,
    effects: Option<&FloorEffects<'_>>,
    started: Instant,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<JobOutput, JobError> {
    let (engine_name, engine) = engines.get(name, input.kind)?;
    let prepare_ms = ms(started);
    cancel.check()?;
    let engine_started = Instant::now();
    let output = engine.generate(input, progress, cancel)?;
    let engine_ms = ms(engine_started);
    if output.images.len() != input.n as usize {
        return Err(EngineError::Failed {
            engine: engine.name(),
            reason: format!("made {} images, {} were asked", output.images.len(), input.n),
        }
        .into());
    }
    let composite_started = Instant::now();
    let images: Vec<DynamicImage> = output
        .images
        .into_par_iter()
        .map(|mut generated| {
            if let Some(effects) = effects {
                effects.draw(&mut generated);
            }
            DynamicImage::ImageRgb8(composite(input.canvas, &generated, input.mask, seam))
        })
        .collect();
    Ok(JobOutput {
        engine: engine_name,
        seed: input.seed,
        images,
        notes: output.notes,
        timings: Timings {
            prepare_ms,
            engine_ms,
            composite_ms: ms(composite_started),
            ..Timings::default()
        },
    })
}

/// A photo cut out by the segmenter.
#[derive(Debug, Clone)]
pub struct Cutout {
    /// The photo with the matte as alpha: its opaque pixels are the photo's, exactly.
    pub image: DecodedImage,
    /// The segmentation model that ran.
    pub model: String,
    /// Time spent segmenting.
    pub segment_ms: f64,
}

/// Cuts the most salient object out of a photo: the photo with a refined alpha matte.
/// A matte holding no object is refused ([`backdrop_core::NoObject`]).
pub fn cut_out(
    engines: &Engines,
    photo: &DecodedImage,
    model: Option<&str>,
    cancel: &CancelToken,
) -> Result<Cutout, JobError> {
    let segmenter = engines.segmenter()?;
    let started = Instant::now();
    let matte = segmenter.segment(&photo.image, model, cancel)?;
    backdrop_core::cutout::check_matte(&matte).map_err(InputError::from)?;
    let image = apply_matte(&photo.image, &matte);
    Ok(Cutout {
        image: DecodedImage { image, format: photo.format, has_alpha: true },
        model: model.map_or_else(|| segmenter.default_model(), str::to_string),
        segment_ms: ms(started),
    })
}

/// The automatic cut-out of a background job's input, when its mode asks for one. `auto`
/// segments a photo (no transparent pixel) only when a segmenter is available; without
/// one the input is checked as a cut-out as before, so the refusal names what is missing.
fn photo_cutout(
    engines: &Engines,
    input: &DecodedImage,
    mode: CutoutMode,
    cancel: &CancelToken,
) -> Result<Option<Cutout>, JobError> {
    let wanted = mode.segments(has_transparency(&input.image));
    if !wanted || (mode == CutoutMode::Auto && !engines.has_segmenter()) {
        return Ok(None);
    }
    cut_out(engines, input, None, cancel).map(Some)
}

/// Encodes a cut-out (PNG, with its alpha).
pub fn encode_cutout(image: &RgbaImage) -> Result<Vec<u8>, JobError> {
    backdrop_imaging::encode::encode_cutout(image).map_err(|e| JobError::Encode(e.to_string()))
}

/// Fits a reference background to the canvas size.
fn fit_reference(
    reference: &RgbaImage,
    width: u32,
    height: u32,
    mode: backdrop_core::ResizeMode,
) -> RgbaImage {
    let mut fitted =
        background_canvas(reference, Some(backdrop_core::OutputSize { width, height }), mode);
    // A reference is a full background; margins left by fitting take its edge colours.
    if fitted.pixels().any(|p| p.0[3] < 255) {
        let stretched = imageops::resize(reference, width, height, imageops::FilterType::Triangle);
        for (dst, src) in fitted.pixels_mut().zip(stretched.pixels()) {
            if dst.0[3] < 255 {
                *dst = *src;
            }
        }
    }
    fitted
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

/// One image encoded, with its optional variants.
#[derive(Debug, Clone)]
pub struct RenderedImage {
    /// The clean result.
    pub main: Vec<u8>,
    /// A smaller copy, when asked.
    pub preview: Option<Vec<u8>>,
    /// A watermarked copy, when asked.
    pub watermarked: Option<Vec<u8>>,
}

/// What to encode for each image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenderOptions {
    /// File format of every variant.
    pub format: OutputFormat,
    /// Longest side of a preview; `None` for no preview.
    pub preview_side: Option<u32>,
    /// Also make a watermarked variant.
    pub watermark: bool,
}

/// Encodes every image and its variants, in parallel. RGBA images keep their alpha in
/// every variant (the watermark marks their colour channels).
pub fn render(
    images: &[DynamicImage],
    options: RenderOptions,
) -> Result<Vec<RenderedImage>, JobError> {
    let failed = |e: image::ImageError| JobError::Encode(e.to_string());
    images
        .par_iter()
        .map(|image| {
            let main = encode_image(image, options.format).map_err(failed)?;
            let preview = options
                .preview_side
                .map(|side| encode_image(&preview_image(image, side), options.format))
                .transpose()
                .map_err(failed)?;
            let watermarked = options
                .watermark
                .then(|| encode_image(&watermarked(image), options.format))
                .transpose()
                .map_err(failed)?;
            Ok(RenderedImage { main, preview, watermarked })
        })
        .collect()
}

fn watermarked(image: &DynamicImage) -> DynamicImage {
    match image {
        DynamicImage::ImageRgba8(rgba) => {
            let marked = watermark(&DynamicImage::ImageRgba8(rgba.clone()).to_rgb8());
            let mut out = rgba.clone();
            for (o, m) in out.pixels_mut().zip(marked.pixels()) {
                o.0[..3].copy_from_slice(&m.0);
            }
            DynamicImage::ImageRgba8(out)
        }
        other => DynamicImage::ImageRgb8(watermark(&other.to_rgb8())),
    }
}
