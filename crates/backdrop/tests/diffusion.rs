//! The diffusion engine from the command line: a configuration file naming the tiny
//! fixture model, `--engine diffusion` with its flags, `auto` picking it, and
//! `models list|show`. Needs the ONNX Runtime library that `tools/test` installs.

#![cfg(feature = "diffusion")]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tempfile::TempDir;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../backdrop-diffusion/tests/fixtures")
}

fn backdrop(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_backdrop")).args(args).output().expect("binary runs")
}

/// The binary run in `dir`, where there is no configuration file.
fn backdrop_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_backdrop"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("binary runs")
}

/// `backdrop --config CONFIG generate CUTOUT ARGS... -o OUT`.
fn generate(config: &Path, cutout: &Path, args: &[&str], out: &Path) -> Output {
    let mut all = vec!["--config", s(config), "generate", s(cutout)];
    all.extend_from_slice(args);
    all.extend(["-o", s(out)]);
    backdrop(&all)
}

/// `backdrop generate` of the fixture cut-out in `dir` (no configuration file there) with
/// the exported folder `model`, two steps and `flags`, and its `--json` summary.
fn generate_from_folder(dir: &Path, model: &Path, flags: &[&str], out: &Path) -> Output {
    let cutout = fixtures().join("cutout.png");
    let mut args = vec!["generate", s(&cutout), "--prompt", "a table", "--model", s(model)];
    args.extend(["--steps", "2"]);
    args.extend_from_slice(flags);
    args.extend(["--json", "-o", s(out)]);
    backdrop_in(dir, &args)
}

/// The standard output of a run that must have succeeded.
fn stdout(run: &Output) -> String {
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    String::from_utf8_lossy(&run.stdout).into_owned()
}

/// The `--json` summary of a run that must have succeeded.
fn json_summary(run: &Output) -> Value {
    serde_json::from_str(&stdout(run)).expect("JSON")
}

/// Asserts that a run was refused as a usage error (exit code 2) saying `message`.
fn assert_refused(run: &Output, message: &str) {
    assert_eq!(run.status.code(), Some(2));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains(message), "{err}");
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A configuration with the tiny inpainting model as the default.
fn config(dir: &TempDir) -> PathBuf {
    config_with(
        dir,
        "[diffusion]\ndefault_model = \"tiny\"\n\n[diffusion.models.tiny]\npath = \"{model}\"\nsteps = 3\nguidance = 6.0\nscheduler = \"ddim\"\n\n[diffusion.runtime]\nthreads = 2\n",
    )
}

/// `backdrop.toml` in `dir` holding `text`, with `{model}` replaced by the tiny
/// inpainting model's folder.
fn config_with(dir: &TempDir, text: &str) -> PathBuf {
    let path = dir.path().join("backdrop.toml");
    let model = fixtures().join("models/tiny-inpaint");
    let text = text.replace("{model}", &model.display().to_string());
    std::fs::write(&path, text).expect("config written");
    path
}

#[test]
fn generate_and_expand_run_the_diffusion_engine_from_the_config() {
    let dir = TempDir::new().expect("tempdir");
    let config = config(&dir);
    let out = dir.path().join("bg");
    let cutout = fixtures().join("cutout.png");
    let run = generate(
        &config,
        &cutout,
        &[
            "--prompt",
            "a table",
            "--seed",
            "4",
            "--steps",
            "2",
            "--scheduler",
            "euler-a",
            "-n",
            "2",
            "--json",
        ],
        &out,
    );
    let summary = json_summary(&run);
    assert_eq!(summary["engine"], "diffusion", "auto picks diffusion with a default model");
    assert_eq!(summary["notes"]["model"], "tiny");
    assert_eq!(summary["notes"]["scheduler"], "euler-a");
    assert_eq!(summary["notes"]["steps"], "2");
    assert_eq!(summary["notes"]["guidance"], "6", "the model entry's default");
    assert_eq!(summary["images"].as_array().map(Vec::len), Some(2));
    let first = image::open(summary["images"][0]["path"].as_str().expect("path")).expect("png");
    assert_eq!((first.width(), first.height()), (60, 52), "any size comes back at its size");

    let out = dir.path().join("ex");
    let photo = fixtures().join("photo.png");
    let run = backdrop(&[
        "--config",
        s(&config),
        "expand",
        s(&photo),
        "--left",
        "0.25",
        "--engine",
        "diffusion",
        "--seed",
        "1",
        "--strength",
        "0.8",
        "--json",
        "-o",
        s(&out),
    ]);
    let summary = json_summary(&run);
    assert_eq!(summary["engine"], "diffusion");
    assert_eq!(summary["notes"]["strength"], "0.8");
    assert_eq!(summary["notes"]["scheduler"], "ddim", "the model entry's scheduler");
}

#[test]
fn bad_diffusion_flags_and_sizes_are_refused_with_a_clear_message() {
    let dir = TempDir::new().expect("tempdir");
    let config = config(&dir);
    let cutout = fixtures().join("cutout.png");
    let out = dir.path().join("o");
    let run = generate(&config, &cutout, &["--prompt", "x", "--scheduler", "pndm"], &out);
    assert_refused(&run, "unknown scheduler 'pndm'");

    let small = dir.path().join("small.toml");
    let text = std::fs::read_to_string(&config)
        .expect("config")
        .replace("[diffusion]\n", "[diffusion]\nmax_pixels = 1000\n");
    std::fs::write(&small, text).expect("written");
    let run = generate(&small, &cutout, &["--prompt", "x"], &out);
    assert_ne!(run.status.code(), Some(0));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("max_pixels"), "{err}");
    let written = std::fs::read_dir(&out).map_or(0, |d| d.count());
    assert_eq!(written, 0, "nothing written when refused");
}

#[test]
fn models_list_and_show_describe_the_configured_model() {
    let dir = TempDir::new().expect("tempdir");
    let config = config(&dir);
    let text = stdout(&backdrop(&["--config", s(&config), "models", "list"]));
    assert!(text.contains("tiny (default)  ready"), "{text}");

    let text = stdout(&backdrop(&["--config", s(&config), "models", "show", "tiny"]));
    assert!(text.contains("unet: 9 input channels, inpainting UNet"), "{text}");
    assert!(text.contains("sizes padded to multiples of 16"), "{text}");

    let unknown = backdrop(&["--config", s(&config), "models", "show", "nope"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown model 'nope'"));
}

#[test]
fn an_exported_folder_runs_and_shows_without_a_configuration_file() {
    let dir = TempDir::new().expect("tempdir");
    let model = fixtures().join("models/tiny-inpaint");
    let cutout = fixtures().join("cutout.png");
    let out = dir.path().join("bg");
    // No --config and no --engine: the folder is the model and `auto` picks diffusion.
    let flags = ["--guidance", "1", "--scheduler", "lcm", "--seed", "3"];
    let run = generate_from_folder(dir.path(), &model, &flags, &out);
    let summary = json_summary(&run);
    assert_eq!(summary["engine"], "diffusion");
    assert_eq!(summary["notes"]["model"], s(&model));
    assert_eq!(summary["notes"]["scheduler"], "lcm");
    assert_eq!(summary["images"].as_array().map(Vec::len), Some(1));

    // A name that is neither a configured id nor a folder is refused as before.
    let config = config(&dir);
    let run = generate(&config, &cutout, &["--prompt", "x", "--model", "no-such-model"], &out);
    assert_refused(&run, "unknown model 'no-such-model'");

    let text = stdout(&backdrop_in(dir.path(), &["models", "show", s(&model)]));
    assert!(text.contains("unet: 9 input channels, inpainting UNet"), "{text}");
    assert!(text.contains("latents: 4 channels, 1/8 of the image side"), "{text}");
    assert!(text.contains("decoder: VAE (KL)"), "{text}");
    assert!(text.contains("encoder: VAE (KL)"), "{text}");
    assert!(text.contains("precision: "), "{text}");
    assert!(text.contains("memory: weights "), "{text}");
}

#[test]
fn models_show_names_a_configured_tiny_decoder_and_encoder() {
    let dir = TempDir::new().expect("tempdir");
    let path = config_with(
        &dir,
        "[diffusion.models.fast]\npath = \"{model}\"\ntiny_decoder = \"vae_decoder_tiny\"\ntiny_encoder = \"vae_encoder_tiny\"\nscheduler = \"lcm\"\nguidance = 1.0\nsteps = 4\n",
    );
    let text = stdout(&backdrop(&["--config", s(&path), "models", "show", "fast"]));
    assert!(text.contains("decoder: tiny (TAESD-style)"), "{text}");
    assert!(text.contains("vae_decoder_tiny/model.onnx, latents divided by 1)"), "{text}");
    assert!(text.contains("encoder: tiny (TAESD-style)"), "{text}");
    assert!(text.contains("vae_encoder_tiny/model.onnx, latents times 1)"), "{text}");
    assert!(text.contains("defaults: steps 4, guidance 1, scheduler lcm"), "{text}");
    // The fast path runs as a user reaches it: the configured model through `generate`.
    let summary = background_with(&dir, &path, "fast");
    assert_eq!(summary["notes"]["steps"], "4");
}

/// `backdrop generate` of the tiny cut-out with the diffusion engine and `model`; checks
/// that the engine and model ran and that the image is the cut-out's size.
fn background_with(dir: &TempDir, config: &Path, model: &str) -> Value {
    let out = dir.path().join("bg");
    let cutout = fixtures().join("cutout.png");
    let summary = json_summary(&generate(
        config,
        &cutout,
        &["--engine", "diffusion", "--model", model, "--prompt", "a table", "--json"],
        &out,
    ));
    assert_eq!(summary["engine"], "diffusion");
    assert_eq!(summary["notes"]["model"], model);
    let image = image::open(summary["images"][0]["path"].as_str().expect("path")).expect("png");
    let cutout = image::open(&cutout).expect("png");
    assert_eq!((image.width(), image.height()), (cutout.width(), cutout.height()));
    summary
}

#[test]
fn a_tiled_decode_is_shown_runs_and_refuses_a_tile_that_does_not_fit() {
    let dir = TempDir::new().expect("tempdir");
    let path = config_with(
        &dir,
        "[diffusion.models.tiled]\npath = \"{model}\"\ndecode_tile = 32\nsteps = 2\n\n[diffusion.models.odd]\npath = \"{model}\"\ndecode_tile = 40\n",
    );
    let text = stdout(&backdrop(&["--config", s(&path), "models", "show", "tiled"]));
    assert!(text.contains("decoder: VAE (KL)"), "{text}");
    assert!(text.contains("in overlapping 32-pixel tiles"), "{text}");
    // The tiny cut-out is 64x64 once padded: larger than a tile, so it decodes in tiles.
    let summary = background_with(&dir, &path, "tiled");
    assert_eq!(summary["notes"]["steps"], "2");
    // A tile that does not fit the model's VAE is refused when the model opens; one that
    // goes with a tiny decoder is refused with the configuration, before anything runs.
    let both_dir = TempDir::new().expect("tempdir");
    let both = config_with(
        &both_dir,
        "[diffusion.models.both]\npath = \"{model}\"\ndecode_tile = 32\ntiny_decoder = \"vae_decoder_tiny\"\n",
    );
    for (config, model, message) in [
        (&path, "odd", "decode_tile = 40: must be a positive multiple of 32 pixels"),
        (&both, "both", "decode_tile tiles the KL VAE decoder; it cannot go with tiny_decoder"),
    ] {
        let run = backdrop(&["--config", s(config), "models", "show", model]);
        assert!(!run.status.success(), "{model} was accepted");
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(err.contains(message), "{model}: {err}");
    }
    let run = backdrop(&["--config", s(&both), "models", "list"]);
    assert!(!run.status.success(), "a configuration with both was loaded");
}

/// An export whose UNet was quantized (`export_onnx.py --quantize int8`): the tiny model's
/// folder with its int8 UNet and the `export.json` the export tool writes beside it.
fn quantized_export(dir: &TempDir) -> PathBuf {
    let source = fixtures().join("models/tiny-inpaint");
    let folder = dir.path().join("tiny-int8");
    std::fs::create_dir(&folder).expect("folder");
    for part in ["text_encoder", "tokenizer", "scheduler", "vae_encoder", "vae_decoder"] {
        std::os::unix::fs::symlink(source.join(part), folder.join(part)).expect("link");
    }
    std::os::unix::fs::symlink(source.join("unet-int8"), folder.join("unet")).expect("link");
    std::fs::copy(source.join("model_index.json"), folder.join("model_index.json")).expect("copy");
    let recorded: Value = serde_json::from_str(
        &std::fs::read_to_string(source.join("unet-int8/quantize.json")).expect("quantize.json"),
    )
    .expect("JSON");
    let export = serde_json::json!({
        "precision": "fp32",
        "quantize": "int8",
        "quantize_rel_error": recorded["rel_error"],
    });
    std::fs::write(folder.join("export.json"), export.to_string()).expect("export.json");
    folder
}

#[test]
fn an_int8_export_runs_and_shows_its_quantization() {
    let dir = TempDir::new().expect("tempdir");
    let model = quantized_export(&dir);
    let out = dir.path().join("bg");
    let summary = json_summary(&generate_from_folder(dir.path(), &model, &[], &out));
    assert_eq!(summary["engine"], "diffusion");
    assert!(out.join("background-1.png").is_file());

    let text = stdout(&backdrop_in(dir.path(), &["models", "show", s(&model)]));
    let line = text.lines().find(|l| l.starts_with("precision: ")).expect("a precision line");
    assert!(line.contains("UNet matrix multiplications int8 (dynamic)"), "{text}");
    assert!(line.contains("one step's relative error "), "{text}");
}
