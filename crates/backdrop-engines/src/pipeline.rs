//! One job from decoded input to encoded files: the pipeline every surface runs.
//!
//! ```text
//! validate spec -> check input -> canvas + mask -> engine -> exact composite (+ seam)
//!     -> encode result (+ preview, + watermarked variant)
//! ```
//!
//! The command line calls [`run_background`] / [`run_expansion`] and then [`render`]. The
//! server's workers call [`stream_background`] / [`stream_expansion`], which hand the
//! finished images to a sink as they are made; nothing here does IO, so the same code
//! serves local files and blob stores.
//!
//! # Memory
//! A run asks its engine for the images in batches of [`images_per_batch`]: as many as
//! fit in [`BATCH_BYTES`] at [`HELD_IMAGE_BYTES_PER_PIXEL`] each, at least one. Image `i`
//! of a batch seeded `seed + first` is image `first + i` of the whole run (the engine
//! contract), so the images do not depend on the batching. Small jobs make all their
//! images in one call, as before; a large canvas is made, composited and handed on one
//! image at a time, so what a task holds does not grow with `n`. [`peak_memory`]
//! estimates a task's peak from its sizes, `n` and engine before it runs.

use crate::framing::FloorEffects;
use crate::Engines;
use backdrop_core::{
    Backdrop, BackgroundSpec, CancelToken, CutoutMode, EngineError, EngineInput, EngineName,
    EngineOptions, ErrorCode, ExpansionSpec, JobKind, Progress, RunControl, SpecError,
    StepProgress,
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

/// What a run reports besides its images.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The engine that ran.
    pub engine: EngineName,
    /// The seed of the first image (image `i` used `seed + i`).
    pub seed: u64,
    /// Choices the engine reported (e.g. the scene and why).
    pub notes: Vec<(String, String)>,
    /// Timings (the sink's time is not in them).
    pub timings: Timings,
}

impl RunReport {
    /// The report with its images: what [`run_background`] and [`run_expansion`] return.
    pub fn with_images(self, images: Vec<DynamicImage>) -> JobOutput {
        JobOutput {
            engine: self.engine,
            seed: self.seed,
            images,
            notes: self.notes,
            timings: self.timings,
        }
    }
}

/// Takes a run's finished images as they are made: the 0-based index of the first image
/// of the batch, and the batch. Called in order; an error stops the run and is its
/// result.
pub type ImageSink<'s> = dyn FnMut(u32, Vec<DynamicImage>) -> Result<(), JobError> + 's;

/// The most bytes of finished images a run holds at once (more only when a single image
/// is larger): the bound that keeps a task's memory from growing with `n`.
pub const BATCH_BYTES: u64 = 128 * 1024 * 1024;

/// What one finished image may cost per canvas pixel while a batch holds it: the
/// composited image (up to 4, RGBA), a watermarked copy while it is encoded (up to 4),
/// and the encoded files (up to 6: PNG of generated pixels rarely beats 1:1 by less).
/// The engine's own RGB output (3) is gone by then, consumed by the composite.
pub const HELD_IMAGE_BYTES_PER_PIXEL: u64 = 14;

/// What a run keeps per canvas pixel from start to end: the canvas (RGBA, 4) and the
/// mask (1).
const CANVAS_BYTES_PER_PIXEL: u64 = 5;

/// What preparing the canvas needs per canvas pixel for a moment, before any image
/// exists: resizing the cut-out (or a reference) goes through premultiplied `f32` RGBA.
const PREPARE_BYTES_PER_PIXEL: u64 = 16;

/// What a run holds per input pixel: the decoded input (RGBA, 4) and its automatic
/// cut-out or resized copy (4).
const INPUT_BYTES_PER_PIXEL: u64 = 8;

/// What a cut-out task holds per photo pixel: the photo (4), the matte and its
/// refinement (2 + 4, floats at coarse scale included), the result (4) and its file (4).
const CUTOUT_BYTES_PER_PIXEL: u64 = 18;

/// Encoded files a worker has handed to storage and not yet written, per canvas pixel:
/// one result's files waiting and one's being written, up to 4 each.
const FILES_IN_FLIGHT_BYTES_PER_PIXEL: u64 = 8;

fn pixels(width: u32, height: u32) -> u64 {
    u64::from(width) * u64::from(height)
}

/// How many of `n` images a run on a `width` x `height` canvas asks its engine for at
/// once: as many as fit in [`BATCH_BYTES`], at least one.
pub fn images_per_batch(width: u32, height: u32, n: u32) -> u32 {
    let per_image = pixels(width, height).max(1) * HELD_IMAGE_BYTES_PER_PIXEL;
    (BATCH_BYTES / per_image).clamp(1, u64::from(n.max(1))) as u32
}

/// The estimated peak memory of one task, in bytes, from what is known before it runs:
/// the job, the engine it resolved to, the input's size, the canvas (output) size and
/// `n`. What a run keeps throughout (the decoded input, canvas and mask), plus the larger
/// of preparing the canvas and running: the engine's own working memory
/// ([`backdrop_core::Engine::working_memory`]), one batch of finished images
/// ([`images_per_batch`]) and the files on their way to storage. Past one batch it does
/// not grow with `n`.
///
/// Meant to err high without refusing what fits: an 8192 x 8192 `studio` task measured
/// 1.3 GiB at its peak in a worker, the same with `n` = 1, 4 (with watermarks) and 16;
/// this estimates 1.9 GiB for it.
pub fn peak_memory(
    engines: &Engines,
    engine: EngineName,
    kind: JobKind,
    input: (u32, u32),
    canvas: (u32, u32),
    n: u32,
) -> u64 {
    let input_px = pixels(input.0, input.1);
    if kind == JobKind::Cutout {
        return input_px * CUTOUT_BYTES_PER_PIXEL;
    }
    let canvas_px = pixels(canvas.0, canvas.1);
    let working =
        engines.get(engine, kind).map_or(0, |(_, e)| e.working_memory(canvas.0, canvas.1));
    let batch = u64::from(images_per_batch(canvas.0, canvas.1, n));
    let prepare = canvas_px * PREPARE_BYTES_PER_PIXEL;
    let run = working
        + batch * canvas_px * HELD_IMAGE_BYTES_PER_PIXEL
        + canvas_px * FILES_IN_FLIGHT_BYTES_PER_PIXEL;
    input_px * INPUT_BYTES_PER_PIXEL + canvas_px * CANVAS_BYTES_PER_PIXEL + prepare.max(run)
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

/// Runs a background job and returns every image.
pub fn run_background(
    engines: &Engines,
    job: &BackgroundJob<'_>,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<JobOutput, JobError> {
    collected(|sink| stream_background(engines, job, progress, cancel, sink))
}

/// Runs `stream` with a sink that keeps every image, for callers that want them all.
fn collected(
    stream: impl FnOnce(&mut ImageSink<'_>) -> Result<RunReport, JobError>,
) -> Result<JobOutput, JobError> {
    let mut images = Vec::new();
    let report = stream(&mut |_, batch| {
        images.extend(batch);
        Ok(())
    })?;
    Ok(report.with_images(images))
}

/// Runs a background job, handing the images to `sink` as they are made (see the module
/// documentation's Memory section).
pub fn stream_background(
    engines: &Engines,
    job: &BackgroundJob<'_>,
    progress: &dyn Progress,
    cancel: &CancelToken,
    sink: &mut ImageSink<'_>,
) -> Result<RunReport, JobError> {
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
            sink,
        )?;
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
        sink,
    )?;
    Ok(with_cutout_notes(output, cut))
}

/// Reports an automatic cut-out (its model and time) in a job's output.
fn with_cutout_notes(mut output: RunReport, cut: Option<Cutout>) -> RunReport {
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
    sink: &mut ImageSink<'_>,
) -> Result<RunReport, JobError> {
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
    let composite_ms = ms(composite_started);
    let note = match backdrop {
        Backdrop::Colour([r, g, b]) => format!("#{r:02x}{g:02x}{b:02x}: no background generated"),
        _ => "transparent: no background generated".to_string(),
    };
    let per_batch = images_per_batch(image.width(), image.height(), n);
    let mut first = 0;
    while first < n {
        let count = per_batch.min(n - first);
        sink(first, vec![image.clone(); count as usize])?;
        first += count;
    }
    Ok(RunReport {
        engine,
        seed: job.spec.seed.unwrap_or_else(random_seed),
        notes: vec![("backdrop".to_string(), note)],
        timings: Timings { prepare_ms, engine_ms: 0.0, composite_ms, ..Timings::default() },
    })
}

/// Runs an expansion job and returns every image.
pub fn run_expansion(
    engines: &Engines,
    job: &ExpansionJob<'_>,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<JobOutput, JobError> {
    collected(|sink| stream_expansion(engines, job, progress, cancel, sink))
}

/// Runs an expansion job, handing the images to `sink` as they are made (see the module
/// documentation's Memory section).
pub fn stream_expansion(
    engines: &Engines,
    job: &ExpansionJob<'_>,
    progress: &dyn Progress,
    cancel: &CancelToken,
    sink: &mut ImageSink<'_>,
) -> Result<RunReport, JobError> {
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
        sink,
    )
}

/// Runs the engine batch by batch ([`images_per_batch`]), composites each batch and hands
/// it to `sink` before the next is made.
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
    sink: &mut ImageSink<'_>,
) -> Result<RunReport, JobError> {
    let (engine_name, engine) = engines.get(name, input.kind)?;
    let prepare_ms = ms(started);
    let (width, height) = input.canvas.dimensions();
    let per_batch = images_per_batch(width, height, input.n);
    let (mut engine_ms, mut composite_ms) = (0.0, 0.0);
    let mut notes = Vec::new();
    let mut first = 0;
    while first < input.n {
        cancel.check()?;
        let count = per_batch.min(input.n - first);
        // Image `i` of a run seeded `seed + first` is image `first + i` of this run.
        let batch = EngineInput { seed: input.image_seed(first), n: count, ..*input };
        let batch_progress = |p: StepProgress| {
            progress.step(StepProgress { image: first + p.image, images: input.n, ..p })
        };
        let engine_started = Instant::now();
        let output = engine.generate(&batch, RunControl::new(&batch_progress, cancel))?;
        engine_ms += ms(engine_started);
        if output.images.len() != count as usize {
            return Err(EngineError::Failed {
                engine: engine.name(),
                reason: format!("made {} images, {} were asked", output.images.len(), count),
            }
            .into());
        }
        if first == 0 {
            notes = output.notes;
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
        composite_ms += ms(composite_started);
        sink(first, images)?;
        first += count;
    }
    Ok(RunReport {
        engine: engine_name,
        seed: input.seed,
        notes,
        timings: Timings { prepare_ms, engine_ms, composite_ms, ..Timings::default() },
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

/// Which file of one result image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultFile {
    /// The clean result.
    Main,
    /// The smaller copy.
    Preview,
    /// The watermarked copy.
    Watermarked,
}

impl RenderedImage {
    /// The image's files and their names: `{stem}.{ext}`, `{stem}.preview.{ext}` and
    /// `{stem}.watermarked.{ext}`, those that were made. The one naming of results that
    /// the command line (stem `background-1`) and the worker (stem `tasks/{id}/1`) share.
    pub fn into_files(
        self,
        stem: &str,
        format: OutputFormat,
    ) -> Vec<(ResultFile, String, Vec<u8>)> {
        let ext = format.extension();
        let mut files = vec![(ResultFile::Main, format!("{stem}.{ext}"), self.main)];
        if let Some(bytes) = self.preview {
            files.push((ResultFile::Preview, format!("{stem}.preview.{ext}"), bytes));
        }
        if let Some(bytes) = self.watermarked {
            files.push((ResultFile::Watermarked, format!("{stem}.watermarked.{ext}"), bytes));
        }
        files
    }
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
            // The variants encode in parallel too: a large image is often rendered alone.
            let (main, (preview, watermarked)) = rayon::join(
                || encode_image(image, options.format),
                || {
                    rayon::join(
                        || {
                            options
                                .preview_side
                                .map(|side| {
                                    encode_image(&preview_image(image, side), options.format)
                                })
                                .transpose()
                        },
                        || {
                            options
                                .watermark
                                .then(|| encode_image(&watermarked(image), options.format))
                                .transpose()
                        },
                    )
                },
            );
            Ok(RenderedImage {
                main: main.map_err(failed)?,
                preview: preview.map_err(failed)?,
                watermarked: watermarked.map_err(failed)?,
            })
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

#[cfg(test)]
mod tests {
    use super::*;
    use backdrop_core::OutputSize;
    use backdrop_imaging::decode::InputFormat;
    use image::{GenericImageView, Rgba};

    /// A 96x96 cut-out: an opaque disc on transparency.
    fn disc() -> DecodedImage {
        let image = RgbaImage::from_fn(96, 96, |x, y| {
            let (dx, dy) = (x as f32 - 48.0, y as f32 - 52.0);
            if dx * dx + dy * dy < 30.0 * 30.0 {
                Rgba([200, (x * 2) as u8, 40, 255])
            } else {
                Rgba([0, 0, 0, 0])
            }
        });
        DecodedImage { image, format: InputFormat::Png, has_alpha: true }
    }

    /// The batches a background run on a `width` x `height` canvas hands its sink, as
    /// `(first, images)`.
    fn batches(width: u32, height: u32, n: u32) -> Vec<(u32, usize)> {
        let cutout = disc();
        let spec = BackgroundSpec {
            scene: Some("concrete".into()),
            n,
            seed: Some(5),
            size: Some(OutputSize { width, height }),
            ..BackgroundSpec::default()
        };
        let job = BackgroundJob {
            cutout: &cutout,
            spec: &spec,
            reference: None,
            mask_grow: 2,
            engine: EngineName::Studio,
            options: EngineOptions::default(),
        };
        let mut seen = Vec::new();
        let report = stream_background(
            &Engines::weight_free(),
            &job,
            &(),
            &CancelToken::new(),
            &mut |first, images| {
                assert!(images.iter().all(|i| i.dimensions() == (width, height)));
                seen.push((first, images.len()));
                Ok(())
            },
        )
        .expect("runs");
        assert_eq!(report.seed, 5);
        seen
    }

    #[test]
    fn a_large_canvas_is_handed_on_one_image_at_a_time() {
        // 2400 x 2400 px: one image is more than half of BATCH_BYTES.
        assert_eq!(images_per_batch(2400, 2400, 3), 1);
        assert_eq!(batches(2400, 2400, 3), vec![(0, 1), (1, 1), (2, 1)]);
    }

    #[test]
    fn small_canvases_keep_their_images_in_one_batch() {
        assert_eq!(batches(256, 256, 4), vec![(0, 4)]);
        assert_eq!(images_per_batch(1024, 1024, 16), 9);
        assert_eq!(images_per_batch(1024, 1024, 3), 3);
    }

    #[test]
    fn a_sink_error_stops_the_run() {
        let cutout = disc();
        let spec = BackgroundSpec {
            scene: Some("concrete".into()),
            n: 3,
            size: Some(OutputSize { width: 2400, height: 2400 }),
            ..BackgroundSpec::default()
        };
        let job = BackgroundJob {
            cutout: &cutout,
            spec: &spec,
            reference: None,
            mask_grow: 2,
            engine: EngineName::Studio,
            options: EngineOptions::default(),
        };
        let made = std::sync::atomic::AtomicU32::new(0);
        let progress = |p: StepProgress| {
            made.fetch_max(p.image + 1, std::sync::atomic::Ordering::SeqCst);
        };
        let err = stream_background(
            &Engines::weight_free(),
            &job,
            &progress,
            &CancelToken::new(),
            &mut |_, _| Err(JobError::Encode("disk full".into())),
        )
        .expect_err("the sink failed");
        assert_eq!(err, JobError::Encode("disk full".into()));
        assert_eq!(made.into_inner(), 1, "no image is made after the sink refused one");
    }

    #[test]
    fn peak_memory_stops_growing_with_n_after_one_batch() {
        let engines = Engines::weight_free();
        let peak = |side: u32, n: u32| {
            peak_memory(
                &engines,
                EngineName::Studio,
                JobKind::Background,
                (96, 96),
                (side, side),
                n,
            )
        };
        // One image of 8192 x 8192 fills a batch alone: 16 of them cost what 1 does, and
        // that fits the default budget of 2 GiB.
        assert_eq!(peak(8192, 16), peak(8192, 1));
        assert!(peak(8192, 16) < 2 << 30, "{}", peak(8192, 16));
        // Small images share a batch, which grows with n up to BATCH_BYTES.
        assert!(peak(512, 2) > peak(512, 1));
        assert!(peak(1024, 16) - peak(1024, 1) <= BATCH_BYTES);
        // The engine's own memory counts: patch keeps a pyramid and a match field.
        let expansion = |engine| {
            peak_memory(&engines, engine, JobKind::Expansion, (1000, 1000), (2000, 2000), 1)
        };
        assert!(expansion(EngineName::Patch) > expansion(EngineName::Studio));
    }
}
