//! Parity with diffusers on the tiny fixture models: every case of `cases.json` runs through
//! the job pipeline the command line uses (`run_background` / `run_expansion` with the
//! diffusion engine, seed only), and the engine's images must be within 1/255 of
//! diffusers' `StableDiffusionInpaintPipeline` on the same ONNX files; the final latents
//! within 1e-3. Needs the ONNX Runtime library that `tools/test` installs.
//!
//! The cases cover the no-guidance path (guidance <= 1: one UNet batch entry per image,
//! as diffusers skips classifier-free guidance), the tiny decoder (`tiny-inpaint-taesd`:
//! the tiny-inpaint folder decoded by its `vae_decoder_tiny/`, against diffusers'
//! `AutoencoderTiny`) and the tiny encoder as well (`tiny-inpaint-taesd-enc`: also
//! encoded by its `vae_encoder_tiny/`, against diffusers with `AutoencoderTiny` as the
//! pipeline's VAE), fixed-shape sessions give the same results as dynamic ones, and
//! so does a UNet run through ONNX Runtime's Stable Diffusion optimizer
//! (`tiny-inpaint/unet-ort-cpu/`, `make_fixtures.py ort-unet`); an int8-quantized UNet
//! (`tiny-inpaint/unet-int8/`, `make_fixtures.py int8-unet`) stays within a bound of them.
//!
//! Regenerating: `make_fixtures.py models` and `make_fixtures.py tiny-vae`, then this
//! file's ignored `write_prepared_inputs`, then `make_fixtures.py references`.

use backdrop_core::{
    BackgroundSpec, CancelToken, Engine, EngineError, EngineInput, EngineName, EngineOptions,
    EngineOutput, EngineResult, ExpansionRatios, ExpansionSpec, ReferenceSpec, RunControl,
    StepProgress,
};
use backdrop_diffusion::inpaint::{inpaint, InpaintRequest};
use backdrop_diffusion::runtime::RuntimeConfig;
use backdrop_diffusion::{DiffusionConfig, DiffusionEngine, ModelEntry};
use backdrop_engines::pipeline::{run_background, run_expansion, BackgroundJob, ExpansionJob};
use backdrop_engines::Engines;
use backdrop_imaging::mask::{DEFAULT_BACKGROUND_GROW, DEFAULT_EXPANSION_GROW};
use backdrop_imaging::{decode, DecodeLimits, DecodedImage};
use image::{GrayImage, RgbImage};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The runtime: the CPU, or the provider `BACKDROP_TEST_PROVIDER` names (`cuda`,
/// `tensorrt`: `tools/gpu-check` sets it; `openvino`).
fn runtime() -> RuntimeConfig {
    let mut runtime = RuntimeConfig::default();
    if let Some(name) = std::env::var("BACKDROP_TEST_PROVIDER").ok().filter(|p| !p.is_empty()) {
        runtime.provider = serde_json::from_value(Value::String(name))
            .expect("BACKDROP_TEST_PROVIDER is cpu, cuda, tensorrt or openvino");
    }
    runtime
}

fn config() -> DiffusionConfig {
    let mut config = DiffusionConfig { runtime: runtime(), ..Default::default() };
    for name in ["tiny-inpaint", "tiny-plain"] {
        config.models.insert(
            name.into(),
            ModelEntry { path: Some(fixtures().join("models").join(name)), ..Default::default() },
        );
    }
    config.models.insert(
        "tiny-inpaint-taesd".into(),
        ModelEntry {
            path: Some(fixtures().join("models/tiny-inpaint")),
            tiny_decoder: Some("vae_decoder_tiny".into()),
            ..Default::default()
        },
    );
    config.models.insert(
        "tiny-inpaint-taesd-enc".into(),
        ModelEntry {
            path: Some(fixtures().join("models/tiny-inpaint")),
            tiny_decoder: Some("vae_decoder_tiny".into()),
            tiny_encoder: Some("vae_encoder_tiny".into()),
            ..Default::default()
        },
    );
    // The KL decoder in 32-pixel tiles (4 latents): a 64x64 image decodes as 3x3 tiles,
    // the last row and column narrower, as with diffusers' VAE tiling.
    config.models.insert(
        "tiny-inpaint-tiled".into(),
        ModelEntry {
            path: Some(fixtures().join("models/tiny-inpaint")),
            decode_tile: Some(32),
            ..Default::default()
        },
    );
    config.default_model = Some("tiny-inpaint".into());
    config
}

/// The same configuration with sessions built per shape.
fn fixed_config() -> DiffusionConfig {
    let mut config = config();
    config.runtime.fixed_shapes = true;
    config
}

/// What the engine saw and made.
#[derive(Default)]
struct Seen {
    image: Option<RgbImage>,
    mask: Option<GrayImage>,
    strength: f32,
    output: Option<EngineOutput>,
}

/// The diffusion engine, recording its prepared input and raw output.
struct Recording {
    engine: Arc<DiffusionEngine>,
    seen: Mutex<Seen>,
}

impl Engine for Recording {
    fn name(&self) -> &'static str {
        "diffusion"
    }

    fn generate(&self, input: &EngineInput<'_>, run: RunControl<'_>) -> EngineResult {
        let model = self
            .engine
            .model(input.options.model.as_deref().unwrap_or("tiny-inpaint"))
            .map_err(|e| EngineError::Failed { engine: "diffusion", reason: e.to_string() })?;
        let (image, mask) = self.engine.prepare(input, model.info.vae_scale_factor as u32);
        let multiple = model.info.size_multiple as u32;
        let settings = self.engine.settings(input).expect("settings");
        let output = self.engine.generate(input, run)?;
        let mut seen = self.seen.lock().expect("lock");
        seen.image = Some(backdrop_diffusion::engine::pad_to_multiple(&image, multiple));
        seen.mask = Some(backdrop_diffusion::engine::pad_to_multiple(&mask, multiple));
        seen.strength = settings.strength;
        seen.output = Some(output.clone());
        Ok(output)
    }
}

fn read(path: &Path) -> DecodedImage {
    let bytes = std::fs::read(path).expect("fixture image");
    decode(&bytes, &DecodeLimits::default()).expect("decodes")
}

/// Runs one case through the job pipeline.
fn run_case(engine: &Arc<DiffusionEngine>, case: &Value) -> Seen {
    let recording = Arc::new(Recording { engine: Arc::clone(engine), seen: Mutex::default() });
    let engines = Engines::weight_free().with_diffusion(recording.clone());
    let options = EngineOptions {
        steps: case["steps"].as_u64().map(|s| s as u32),
        guidance: case["guidance"].as_f64().map(|g| g as f32),
        model: case["model"].as_str().map(str::to_owned),
        scheduler: case["scheduler"].as_str().map(str::to_owned),
        ..Default::default()
    };
    let n = case["n"].as_u64().expect("n") as u32;
    let seed = case["seed"].as_u64().expect("seed");
    let prompt = case["prompt"].as_str().map(str::to_owned);
    let negative = case["negative"].as_str().map(str::to_owned);
    let steps_seen = Mutex::new(Vec::new());
    let progress = |p: StepProgress| steps_seen.lock().expect("lock").push(p.step);
    let output = if case["kind"] == "background" {
        let cutout = read(&fixtures().join("cutout.png"));
        let reference = case["reference"].as_str().map(|r| read(&fixtures().join(r)).image);
        let spec = BackgroundSpec {
            prompt,
            negative_prompt: negative,
            n,
            seed: Some(seed),
            reference: case["strength"]
                .as_f64()
                .map(|s| ReferenceSpec { strength: s as f32, resize_mode: Default::default() }),
            ..Default::default()
        };
        let job = BackgroundJob {
            cutout: &cutout,
            spec: &spec,
            reference: reference.as_ref(),
            mask_grow: DEFAULT_BACKGROUND_GROW,
            engine: EngineName::Diffusion,
            options,
        };
        run_background(&engines, &job, &progress, &CancelToken::new()).expect("background runs")
    } else {
        let photo = read(&fixtures().join("photo.png"));
        let r = &case["ratios"];
        let ratio = |k: &str| r[k].as_f64().unwrap_or(0.0);
        let spec = ExpansionSpec {
            ratios: ExpansionRatios {
                up: ratio("up"),
                down: ratio("down"),
                left: ratio("left"),
                right: ratio("right"),
            },
            prompt,
            n,
            seed: Some(seed),
            watermark: false,
        };
        let job = ExpansionJob {
            photo: &photo,
            spec: &spec,
            mask_grow: DEFAULT_EXPANSION_GROW,
            engine: EngineName::Diffusion,
            options,
        };
        run_expansion(&engines, &job, &progress, &CancelToken::new()).expect("expansion runs")
    };
    assert_eq!(output.images.len(), n as usize);
    let steps = steps_seen.into_inner().expect("lock");
    assert!(!steps.is_empty() && steps.windows(2).all(|w| w[1] == w[0] + 1), "progress {steps:?}");
    let seen = std::mem::take(&mut *recording.seen.lock().expect("lock"));
    seen
}

fn cases() -> Vec<Value> {
    let text = std::fs::read_to_string(fixtures().join("cases.json")).expect("cases.json");
    serde_json::from_str::<Value>(&text).expect("JSON").as_array().expect("list").clone()
}

fn png(path: &Path) -> image::DynamicImage {
    image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn floats(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).expect("latents file");
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

#[test]
fn engine_matches_diffusers_on_every_case() {
    let engine = Arc::new(DiffusionEngine::new(config()).expect("config"));
    let prepared = fixtures().join("prepared");
    let references = fixtures().join("references");
    let mut report = Vec::new();
    let mut images_checked = 0;
    let mut worst = 0u8;
    for case in cases() {
        let name = case["name"].as_str().expect("name");
        let seen = run_case(&engine, &case);
        // The engine prepared exactly the inputs diffusers was given.
        let image = seen.image.as_ref().expect("image");
        let mask = seen.mask.as_ref().expect("mask");
        let expected_image = png(&prepared.join(format!("{name}-image.png"))).to_rgb8();
        let expected_mask = png(&prepared.join(format!("{name}-mask.png"))).to_luma8();
        assert!(
            image == &expected_image && mask == &expected_mask,
            "{name}: prepared input changed; regenerate the fixtures (see this file's doc)"
        );
        let output = seen.output.expect("output");
        let (w, h) = (output.images[0].width(), output.images[0].height());
        for (i, made) in output.images.iter().enumerate() {
            let reference = png(&references.join(format!("{name}-{i}.png"))).to_rgb8();
            let reference = image::imageops::crop_imm(&reference, 0, 0, w, h).to_image();
            let diff = made
                .as_raw()
                .iter()
                .zip(reference.as_raw())
                .map(|(a, b)| a.abs_diff(*b))
                .max()
                .expect("pixels");
            let count = made
                .as_raw()
                .iter()
                .zip(reference.as_raw())
                .filter(|(a, b)| a.abs_diff(**b) > 1)
                .count();
            report.push(format!("{name}[{i}] image max diff {diff}/255 ({count} channels over 1)"));
            worst = worst.max(diff);
            images_checked += 1;
        }
    }
    eprintln!("{}", report.join("\n"));
    assert!(worst <= 1, "images differ from diffusers:\n{}", report.join("\n"));
    assert!(images_checked >= 10, "{images_checked}");
}

/// Every case's final latents from `inpaint` directly, by case name.
fn latents_of_every_case(engine: &DiffusionEngine) -> Vec<(String, Vec<Vec<f32>>)> {
    let prepared = fixtures().join("prepared");
    let mut all = Vec::new();
    for case in cases() {
        let name = case["name"].as_str().expect("name");
        let model = engine.model(case["model"].as_str().expect("model")).expect("model loads");
        let image = png(&prepared.join(format!("{name}-image.png"))).to_rgb8();
        let mask = png(&prepared.join(format!("{name}-mask.png"))).to_luma8();
        let meta: Value = serde_json::from_str(
            &std::fs::read_to_string(prepared.join(format!("{name}.json"))).expect("meta"),
        )
        .expect("JSON");
        let n = case["n"].as_u64().expect("n");
        let seeds: Vec<u64> = (0..n).map(|i| case["seed"].as_u64().expect("seed") + i).collect();
        let request = InpaintRequest {
            image: &image,
            mask: &mask,
            prompt: case["prompt"].as_str().unwrap_or(""),
            negative_prompt: case["negative"].as_str(),
            seeds: &seeds,
            steps: case["steps"].as_u64().expect("steps") as usize,
            guidance: case["guidance"].as_f64().expect("guidance") as f32,
            scheduler: case["scheduler"].as_str().expect("scheduler").parse().expect("known"),
            strength: meta["strength"].as_f64().expect("strength") as f32,
            max_batch: 2,
        };
        let out = inpaint(&model, &request, &(), &CancelToken::new()).expect("runs");
        all.push((name.to_owned(), out.latents));
    }
    all
}

fn worst_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn latents_match_diffusers_on_every_case() {
    let engine = DiffusionEngine::new(config()).expect("config");
    let references = fixtures().join("references");
    let mut worst_all = 0f32;
    for (name, latents) in latents_of_every_case(&engine) {
        for (i, latents) in latents.iter().enumerate() {
            let expected = floats(&references.join(format!("{name}-{i}.f32")));
            let worst = worst_difference(latents, &expected);
            worst_all = worst_all.max(worst);
            assert!(worst <= 1e-3, "{name}[{i}]: latents differ by {worst}");
        }
    }
    eprintln!("worst latent difference: {worst_all:e}");
}

#[test]
fn releasing_arena_memory_changes_no_result() {
    // The default gives the arena's memory back after the one-off networks and a loop's
    // last step; keeping it must give the same bytes.
    let mut kept = config();
    kept.runtime.release_memory = false;
    assert!(config().runtime.release_memory, "released by default");
    let released = DiffusionEngine::new(config()).expect("config");
    let kept = DiffusionEngine::new(kept).expect("config");
    for ((name, a), (_, b)) in
        latents_of_every_case(&released).into_iter().zip(latents_of_every_case(&kept))
    {
        assert_eq!(a, b, "{name}: releasing memory changed the latents");
    }
}

#[test]
fn an_arena_per_network_gives_what_the_shared_arena_gives() {
    // By default every network takes its CPU memory from one arena registered with ONNX
    // Runtime's environment; an arena per network must give the same bytes.
    assert!(config().runtime.shared_arena, "shared by default");
    let mut own = config();
    own.runtime.shared_arena = false;
    let shared = DiffusionEngine::new(config()).expect("config");
    let own = DiffusionEngine::new(own).expect("config");
    for ((name, a), (_, b)) in
        latents_of_every_case(&shared).into_iter().zip(latents_of_every_case(&own))
    {
        assert_eq!(a, b, "{name}: the shared arena changed the latents");
    }
}

#[test]
fn fixed_shape_sessions_match_dynamic_ones_and_diffusers() {
    let dynamic = DiffusionEngine::new(config()).expect("config");
    let fixed = DiffusionEngine::new(fixed_config()).expect("config");
    let references = fixtures().join("references");
    let mut worst_dynamic = 0f32;
    for ((name, a), (_, b)) in
        latents_of_every_case(&dynamic).into_iter().zip(latents_of_every_case(&fixed))
    {
        for (i, (a, b)) in a.iter().zip(&b).enumerate() {
            let expected = floats(&references.join(format!("{name}-{i}.f32")));
            let worst = worst_difference(b, &expected);
            assert!(
                worst <= 1e-3,
                "{name}[{i}]: fixed-shape latents differ from diffusers by {worst}"
            );
            worst_dynamic = worst_dynamic.max(worst_difference(a, b));
        }
    }
    eprintln!("fixed shapes vs dynamic: worst latent difference {worst_dynamic:e}");
    // Fixed shapes let ONNX Runtime pick other kernels and fusions: equal to float
    // rounding, well inside the bound against diffusers.
    assert!(worst_dynamic <= 5e-4, "fixed shapes change the latents by {worst_dynamic}");
    let built = fixed.model("tiny-inpaint").expect("model").stats().fixed_sessions_built;
    assert!(built >= 3, "the UNet and VAE ran on fixed-shape sessions ({built} built)");
    assert_eq!(dynamic.model("tiny-inpaint").expect("model").stats().fixed_sessions_built, 0);
    // The same images through the job pipeline too.
    let case = cases().into_iter().find(|c| c["name"] == "inpaint-bg-lcm-tiny").expect("case");
    let seen = run_case(&Arc::new(fixed), &case);
    let made = &seen.output.expect("output").images[0];
    let reference = png(&references.join("inpaint-bg-lcm-tiny-0.png")).to_rgb8();
    let reference =
        image::imageops::crop_imm(&reference, 0, 0, made.width(), made.height()).to_image();
    let diff = made.as_raw().iter().zip(reference.as_raw()).map(|(a, b)| a.abs_diff(*b)).max();
    assert!(diff <= Some(1), "fixed shapes: image differs by {diff:?}/255");
}

/// The UNets that stand in for tiny-inpaint's own in the swap tests: `unet-ort-cpu/` (the
/// same weights through ONNX Runtime's Stable Diffusion optimizer, `make_fixtures.py
/// ort-unet`) and `unet-int8/` (its matrix multiplications quantized, `make_fixtures.py
/// int8-unet`).
const SWAPPED_UNETS: [&str; 2] = ["unet-ort-cpu", "unet-int8"];

/// The tiny-inpaint folder with its UNet swapped for `unet` (one of [`SWAPPED_UNETS`]), as
/// a model folder of links.
fn folder_with_unet(unet: &str) -> tempfile::TempDir {
    let source = fixtures().join("models/tiny-inpaint");
    let folder = tempfile::tempdir().expect("temp dir");
    for entry in std::fs::read_dir(&source).expect("tiny-inpaint") {
        let name = entry.expect("entry").file_name();
        let Some(name_text) = name.to_str() else { continue };
        if name_text == "unet" || SWAPPED_UNETS.contains(&name_text) {
            continue;
        }
        std::os::unix::fs::symlink(source.join(&name), folder.path().join(&name)).expect("link");
    }
    std::os::unix::fs::symlink(source.join(unet), folder.path().join("unet")).expect("link");
    folder
}

/// `config()` with the tiny-inpaint entries pointed at `folder`.
fn config_with_folder(folder: &Path) -> DiffusionConfig {
    let mut config = config();
    for (name, entry) in config.models.iter_mut() {
        if name.starts_with("tiny-inpaint") {
            entry.path = Some(folder.to_path_buf());
        }
    }
    config
}

/// An engine whose tiny-inpaint models run the swapped UNet `unet` (which must hold each of
/// the node types `nodes`), and the folder of links it reads (kept alive beside it).
fn swapped_engine(unet: &str, nodes: &[&str]) -> (tempfile::TempDir, DiffusionEngine) {
    let graph_file = fixtures().join("models/tiny-inpaint").join(unet).join("model.onnx");
    let graph = std::fs::read(&graph_file).expect("the swapped UNet fixture");
    for node in nodes {
        assert!(
            graph.windows(node.len()).any(|w| w == node.as_bytes()),
            "{} holds no {node} node",
            graph_file.display()
        );
    }
    let folder = folder_with_unet(unet);
    let engine = DiffusionEngine::new(config_with_folder(folder.path())).expect("config");
    (folder, engine)
}

/// For every tiny-inpaint image of every case: the latents through `engine`, the plain
/// engine's and diffusers' (the references), by case name.
type LatentTriples = Vec<(String, Vec<f32>, Vec<f32>, Vec<f32>)>;

fn tiny_inpaint_latents(engine: &DiffusionEngine) -> LatentTriples {
    let plain = DiffusionEngine::new(config()).expect("config");
    let references = fixtures().join("references");
    let models: Vec<String> =
        cases().iter().map(|c| c["model"].as_str().expect("model").to_owned()).collect();
    let mut out = Vec::new();
    for (((name, latents), (_, plain_latents)), model) in
        latents_of_every_case(engine).into_iter().zip(latents_of_every_case(&plain)).zip(models)
    {
        if !model.starts_with("tiny-inpaint") {
            continue;
        }
        for (i, (latents, plain_latents)) in latents.into_iter().zip(plain_latents).enumerate() {
            let expected = floats(&references.join(format!("{name}-{i}.f32")));
            out.push((format!("{name}[{i}]"), latents, plain_latents, expected));
        }
    }
    assert!(out.len() >= 4, "{} images on tiny-inpaint", out.len());
    out
}

#[test]
fn the_ort_optimized_unet_matches_diffusers() {
    let (_folder, engine) =
        swapped_engine("unet-ort-cpu", &["MultiHeadAttention", "SkipLayerNormalization"]);
    // Self-attention too is MultiHeadAttention (export_onnx.py rewrites the optimizer's
    // `Attention`, whose CPU kernel holds the whole score matrix), so this parity covers
    // the graph a `--ort-optimize cpu` export runs.
    let fused: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("models/tiny-inpaint/unet-ort-cpu/fused.json"))
            .expect("fused.json"),
    )
    .expect("JSON");
    assert!(fused.get("Attention").is_none(), "{fused}");
    assert_eq!(fused["MultiHeadAttention"], 8, "{fused}");
    let mut worst_plain = 0f32;
    for (name, latents, plain, expected) in tiny_inpaint_latents(&engine) {
        let worst = worst_difference(&latents, &expected);
        assert!(worst <= 1e-3, "{name}: optimized-UNet latents differ by {worst}");
        worst_plain = worst_plain.max(worst_difference(&latents, &plain));
    }
    eprintln!("optimized vs plain UNet: worst latent difference {worst_plain:e}");
}

/// Relative L2 distance of `a` from `b`.
fn relative_error(a: &[f32], b: &[f32]) -> f64 {
    let diff: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum();
    let norm: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum();
    (diff / norm.max(1e-30)).sqrt()
}

#[test]
fn the_int8_unet_stays_close_to_diffusers() {
    let (_folder, engine) =
        swapped_engine("unet-int8", &["DynamicQuantizeLinear", "MatMulInteger"]);
    let (mut worst, mut moved) = (0f64, 0f32);
    for (name, latents, plain, expected) in tiny_inpaint_latents(&engine) {
        let error = relative_error(&latents, &expected);
        eprintln!("{name}: int8 latents {error:.2e} from diffusers' float32 (relative L2)");
        worst = worst.max(error);
        moved = moved.max(worst_difference(&latents, &plain));
    }
    // Quantization is lossy: the int8 UNet is not bit-equal to the float one, but a
    // whole denoising loop stays within a few percent of diffusers' float result.
    assert!(moved > 1e-5, "the int8 UNet gave the float UNet's latents: not quantized?");
    assert!(worst <= 0.05, "int8 latents are {worst:.3} (relative) from diffusers'");
}

#[test]
fn guidance_of_one_or_less_runs_one_unet_entry_per_image() {
    let engine = DiffusionEngine::new(config()).expect("config");
    let model = engine.model("tiny-plain").expect("model loads");
    let image = RgbImage::from_pixel(32, 32, image::Rgb([100, 140, 200]));
    let mask = GrayImage::from_fn(32, 32, |x, _| image::Luma([if x >= 16 { 255 } else { 0 }]));
    let entries = |guidance: f32| {
        let before = model.stats();
        let request = InpaintRequest {
            image: &image,
            mask: &mask,
            prompt: "sky",
            negative_prompt: Some("text"),
            seeds: &[1, 2, 3],
            steps: 4,
            guidance,
            scheduler: "lcm".parse().expect("known"),
            strength: 1.0,
            max_batch: 2,
        };
        inpaint(&model, &request, &(), &CancelToken::new()).expect("runs");
        let after = model.stats();
        (after.unet_calls - before.unet_calls, after.unet_batch_entries - before.unet_batch_entries)
    };
    // Three images in chunks of two: two calls per step, four steps.
    assert_eq!(entries(1.0), (8, 12), "no guidance: one entry per image and step");
    assert_eq!(entries(0.0), (8, 12));
    assert_eq!(entries(1.5), (8, 24), "guidance: the negative prompt's half as well");
}

#[test]
fn the_tiny_decoder_is_used_with_its_own_scaling() {
    let engine = DiffusionEngine::new(config()).expect("config");
    let kl = engine.model("tiny-inpaint").expect("model loads");
    let tiny = engine.model("tiny-inpaint-taesd").expect("model loads");
    assert!(!kl.info.decoder.tiny);
    assert!((kl.info.decoder.scaling_factor - kl.info.scaling_factor).abs() < 1e-9);
    assert!(tiny.info.decoder.tiny);
    assert_eq!(tiny.info.decoder.scaling_factor, 1.0, "AutoencoderTiny's scaling_factor");
    assert!(tiny.info.decoder.file.ends_with("vae_decoder_tiny/model.onnx"));
    // Encoding stays with the KL VAE.
    assert_eq!(tiny.info.scaling_factor, kl.info.scaling_factor);
    let err = tiny_plain_fails(ModelEntry {
        tiny_decoder: Some("vae_decoder_tiny".into()),
        ..Default::default()
    });
    assert!(err.contains("tiny_decoder: "), "{err}");
    assert!(err.contains("vae_decoder_tiny/model.onnx does not exist"), "{err}");
}

#[test]
fn the_tiny_encoder_is_used_with_its_own_scaling_and_draws_nothing() {
    use backdrop_diffusion::model::EncoderOutput;
    let engine = DiffusionEngine::new(config()).expect("config");
    let kl = engine.model("tiny-inpaint-taesd").expect("model loads");
    let tiny = engine.model("tiny-inpaint-taesd-enc").expect("model loads");
    assert!(!kl.info.encoder.tiny);
    assert_eq!(kl.info.encoder.output, EncoderOutput::Parameters);
    assert!((kl.info.encoder.scaling_factor - kl.info.scaling_factor).abs() < 1e-9);
    assert!(tiny.info.encoder.tiny);
    assert_eq!(tiny.info.encoder.output, EncoderOutput::Latents);
    assert_eq!(tiny.info.encoder.scaling_factor, 1.0, "AutoencoderTiny's scaling_factor");
    assert!(tiny.info.encoder.file.ends_with("vae_encoder_tiny/model.onnx"));
    // The same job through both: only the encoder differs, and the results do.
    let image = RgbImage::from_fn(64, 64, |x, y| image::Rgb([(x * 4) as u8, (y * 4) as u8, 90]));
    let mask = GrayImage::from_fn(64, 64, |x, _| image::Luma([if x > 30 { 255 } else { 0 }]));
    let request = InpaintRequest {
        image: &image,
        mask: &mask,
        prompt: "x",
        negative_prompt: None,
        seeds: &[3],
        steps: 2,
        guidance: 1.0,
        scheduler: "lcm".parse().expect("known"),
        strength: 1.0,
        max_batch: 1,
    };
    let run = |model| inpaint(model, &request, &(), &CancelToken::new()).expect("runs").latents;
    let (a, b) = (run(&kl), run(&tiny));
    assert!(worst_difference(&a[0], &b[0]) > 1e-2, "the tiny encoder changed nothing");
    // A KL encoder named as the tiny one loads (its config says 4 latent channels) but
    // returns twice the values a tiny encoder does: a clear error, not a panic.
    let wrong = DiffusionConfig {
        models: [(
            "m".to_string(),
            ModelEntry {
                path: Some(fixtures().join("models/tiny-inpaint")),
                tiny_encoder: Some("vae_encoder".into()),
                ..Default::default()
            },
        )]
        .into(),
        ..Default::default()
    };
    let wrong = DiffusionEngine::new(wrong).expect("config");
    let model = wrong.model("m").expect("loads");
    let err = inpaint(&model, &request, &(), &CancelToken::new()).expect_err("must fail");
    assert!(err.to_string().contains("not the 256 of 4 latent channels"), "{err}");
    let err = tiny_plain_fails(ModelEntry {
        tiny_encoder: Some("vae_encoder_tiny".into()),
        ..Default::default()
    });
    assert!(err.contains("tiny_encoder: "), "{err}");
    assert!(err.contains("vae_encoder_tiny/model.onnx does not exist"), "{err}");
}

/// The error of opening tiny-plain (which has no tiny networks) with `entry`'s options.
fn tiny_plain_fails(entry: ModelEntry) -> String {
    let entry = ModelEntry { path: Some(fixtures().join("models/tiny-plain")), ..entry };
    let config =
        DiffusionConfig { models: [("m".to_string(), entry)].into(), ..Default::default() };
    let engine = DiffusionEngine::new(config).expect("config");
    engine.model("m").expect_err("must fail").to_string()
}

#[test]
fn cancel_stops_between_steps_and_progress_counts_them() {
    let engine = DiffusionEngine::new(config()).expect("config");
    let model = engine.model("tiny-inpaint").expect("model loads");
    let image = RgbImage::from_pixel(64, 64, image::Rgb([120, 90, 60]));
    let mask = GrayImage::from_fn(64, 64, |x, _| image::Luma([if x > 20 { 255 } else { 0 }]));
    let cancel = CancelToken::new();
    let steps = Mutex::new(0u32);
    let progress = |p: StepProgress| {
        *steps.lock().expect("lock") = p.step;
        if p.step == 2 {
            cancel.cancel();
        }
    };
    let request = InpaintRequest {
        image: &image,
        mask: &mask,
        prompt: "x",
        negative_prompt: None,
        seeds: &[1],
        steps: 6,
        guidance: 7.5,
        scheduler: "ddim".parse().expect("known"),
        strength: 1.0,
        max_batch: 1,
    };
    let err = inpaint(&model, &request, &progress, &cancel).expect_err("must fail");
    assert_eq!(err, backdrop_diffusion::DiffusionError::Canceled);
    assert_eq!(*steps.lock().expect("lock"), 2, "stopped right after the step that canceled");
}

#[test]
fn image_i_equals_image_zero_of_seed_plus_i() {
    let engine = DiffusionEngine::new(config()).expect("config");
    let model = engine.model("tiny-plain").expect("model loads");
    let image = RgbImage::from_fn(32, 32, |x, y| image::Rgb([(x * 8) as u8, (y * 8) as u8, 77]));
    let mask = GrayImage::from_fn(32, 32, |x, y| image::Luma([if x + y > 30 { 255 } else { 0 }]));
    let run = |seeds: &[u64]| {
        let request = InpaintRequest {
            image: &image,
            mask: &mask,
            prompt: "forest",
            negative_prompt: Some("text"),
            seeds,
            steps: 3,
            guidance: 5.0,
            scheduler: "euler-a".parse().expect("known"),
            strength: 1.0,
            max_batch: 2,
        };
        inpaint(&model, &request, &(), &CancelToken::new()).expect("runs").latents
    };
    let both = run(&[40, 41]);
    let second = run(&[41]);
    let worst = both[1].iter().zip(&second[0]).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(worst < 1e-4, "batched image 1 differs from a run seeded 41 by {worst}");
    assert!(both[0].iter().zip(&both[1]).any(|(a, b)| (a - b).abs() > 1e-2), "seeds differ");
}

/// Writes the prepared inputs the reference script feeds diffusers. Run only when the
/// fixtures are regenerated.
#[test]
#[ignore = "regenerates fixtures"]
fn write_prepared_inputs() {
    let engine = Arc::new(DiffusionEngine::new(config()).expect("config"));
    let prepared = fixtures().join("prepared");
    std::fs::create_dir_all(&prepared).expect("folder");
    for case in cases() {
        let name = case["name"].as_str().expect("name");
        let seen = run_case(&engine, &case);
        seen.image.expect("image").save(prepared.join(format!("{name}-image.png"))).expect("save");
        seen.mask.expect("mask").save(prepared.join(format!("{name}-mask.png"))).expect("save");
        std::fs::write(
            prepared.join(format!("{name}.json")),
            format!("{{\"strength\": {}}}\n", seen.strength),
        )
        .expect("save");
    }
}
