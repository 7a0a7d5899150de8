//! The command line as a user runs it: the real binary, real files, real exit codes.

use image::{GenericImageView, Rgba, RgbaImage};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tempfile::TempDir;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn backdrop(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_backdrop")).args(args).output().expect("binary runs")
}

fn ok_json(args: &[&str]) -> Value {
    let out = backdrop(args);
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON summary")
}

/// `backdrop COMMAND INPUT FLAGS... --json -o OUT`, which must succeed; its JSON summary.
fn run_summary(command: &str, input: &Path, flags: &[&str], out: &Path) -> Value {
    let mut args = vec![command, s(input)];
    args.extend_from_slice(flags);
    args.extend(["--json", "-o", s(out)]);
    ok_json(&args)
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn image_paths(summary: &Value) -> Vec<PathBuf> {
    summary["images"]
        .as_array()
        .expect("images")
        .iter()
        .map(|i| PathBuf::from(i["path"].as_str().expect("path")))
        .collect()
}

/// Every pixel the input holds fully opaque must come back bit-identical.
fn assert_opaque_pixels_kept(input: &RgbaImage, output: &Path) {
    let out = image::open(output).expect("result decodes").to_rgb8();
    assert_eq!(out.dimensions(), input.dimensions());
    let mut checked = 0;
    for (x, y, p) in input.enumerate_pixels() {
        if p.0[3] == 255 {
            assert_eq!(
                out.get_pixel(x, y).0,
                [p.0[0], p.0[1], p.0[2]],
                "pixel ({x},{y}) changed in {output:?}"
            );
            checked += 1;
        }
    }
    assert!(checked > 1000, "the example has an opaque product");
}

#[test]
fn background_keeps_the_product_exact_for_every_engine() {
    let input_path = examples().join("bottle-cutout.png");
    let input = image::open(&input_path).expect("example").to_rgba8();
    for engine in ["studio", "patch", "auto"] {
        let dir = TempDir::new().expect("tmp");
        let flags = ["--prompt", "warm paper", "--engine", engine, "--seed", "7", "--n", "2"];
        let summary = run_summary("generate", &input_path, &flags, dir.path());
        let expected = if engine == "auto" { "studio" } else { engine };
        assert_eq!(summary["engine"], expected);
        assert_eq!(summary["engine_requested"], engine);
        let paths = image_paths(&summary);
        assert_eq!(paths.len(), 2);
        for path in &paths {
            assert_opaque_pixels_kept(&input, path);
        }
        // The background really was generated: the transparent corner is not black.
        let first = image::open(&paths[0]).expect("decodes").to_rgb8();
        assert_ne!(first.get_pixel(5, 5).0, [0, 0, 0], "{engine} left the background empty");
    }
}

#[test]
fn studio_reports_the_scene_it_picked_from_the_prompt() {
    let dir = TempDir::new().expect("tmp");
    let input = examples().join("bottle-cutout.png");
    let flags = ["--prompt", "bottle on warm cream paper", "--seed", "1"];
    let summary = run_summary("generate", &input, &flags, dir.path());
    assert_eq!(summary["notes"]["scene"], "warm-paper");
    assert_eq!(summary["notes"]["scene_reason"], "prompt words: warm, cream, paper");
    let human = backdrop(&[
        "generate",
        s(&input),
        "--scene",
        "dark-spotlight",
        "--seed",
        "1",
        "-o",
        s(dir.path()),
    ]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains("engine: studio (from auto), scene: dark-spotlight"), "{text}");
    assert!(text.contains("wrote "), "{text}");
}

#[test]
fn expansion_keeps_the_original_exact() {
    let input_path = examples().join("coffee.jpg");
    let original = image::open(&input_path).expect("example").to_rgb8();
    let (w, h) = original.dimensions();
    for engine in ["patch", "studio"] {
        let dir = TempDir::new().expect("tmp");
        let flags = [
            "--up", "0.25", "--down", "0.1", "--left", "0.5", "--right", "0.05", "--engine",
            engine, "--seed", "3",
        ];
        let summary = run_summary("expand", &input_path, &flags, dir.path());
        assert_eq!(summary["engine"], engine);
        // Pixels round half away from zero per side: 0.25*400=100, 0.1*400=40, 0.5*600=300, 0.05*600=30.
        assert_eq!((summary["width"].as_u64(), summary["height"].as_u64()), (Some(930), Some(540)));
        let out = image::open(&image_paths(&summary)[0]).expect("decodes").to_rgb8();
        let region = out.view(300, 100, w, h).to_image();
        assert!(region == original, "{engine} altered the original region");
    }
}

#[test]
fn same_seed_same_bytes_other_seed_other_image() {
    let cutout = examples().join("bottle-cutout.png");
    let photo = examples().join("coffee.jpg");
    let runs: [(&str, &Path, Vec<&str>); 2] = [
        ("generate", &cutout, vec!["--scene", "sunset-gradient"]),
        ("expand", &photo, vec!["--left", "0.2", "--up", "0.2"]),
    ];
    for run @ (command, input, flags) in &runs {
        let files: Vec<Vec<u8>> = ["11", "11", "12"]
            .iter()
            .map(|seed| {
                let dir = TempDir::new().expect("tmp");
                let mut flags = flags.clone();
                flags.extend(["--seed", seed]);
                let summary = run_summary(command, input, &flags, dir.path());
                std::fs::read(&image_paths(&summary)[0]).expect("read")
            })
            .collect();
        assert!(files[0] == files[1], "{run:?}: same seed gave different bytes");
        assert!(files[0] != files[2], "{run:?}: another seed gave the same image");
    }
}

#[test]
fn sizes_formats_previews_and_watermarks() {
    let input = examples().join("bottle-cutout.png");
    let dir = TempDir::new().expect("tmp");
    // The concrete scene at 1024x768 in WebP, first with a preview and a watermark.
    let webp = ["--scene", "concrete", "--size", "1024x768", "--format", "webp", "--seed", "5"];
    let extras = ["--resize-mode", "resize-and-fill", "--preview", "--watermark"];
    let summary = run_summary("generate", &input, &[&webp[..], &extras].concat(), dir.path());
    let item = &summary["images"][0];
    let main = image::open(item["path"].as_str().expect("path")).expect("webp decodes");
    assert_eq!(main.dimensions(), (1024, 768));
    let preview = image::open(item["preview"].as_str().expect("preview")).expect("decodes");
    assert_eq!(preview.dimensions(), (512, 384));
    let marked = image::open(item["watermarked"].as_str().expect("watermarked")).expect("decodes");
    assert_eq!(marked.dimensions(), (1024, 768));
    assert_ne!(marked.to_rgb8(), main.to_rgb8(), "watermark is visible");

    // The clean image does not depend on whether a watermark was asked for.
    let plain_dir = TempDir::new().expect("tmp");
    let plain = run_summary("generate", &input, &webp, plain_dir.path());
    let a = std::fs::read(item["path"].as_str().expect("path")).expect("read");
    let b = std::fs::read(image_paths(&plain)[0].clone()).expect("read");
    assert!(a == b);

    for mode in ["resize-and-fill", "just-resize", "crop-and-resize"] {
        let d = TempDir::new().expect("tmp");
        let flags =
            ["--scene", "concrete", "--size", "1024x400", "--resize-mode", mode, "--format", "jpg"];
        let summary = run_summary("generate", &input, &flags, d.path());
        let img = image::open(&image_paths(&summary)[0]).expect("jpeg decodes");
        assert_eq!(img.dimensions(), (1024, 400), "{mode}");
    }
}

#[test]
fn scenes_are_listed() {
    let out = backdrop(&["scenes", "--json"]);
    assert!(out.status.success());
    let list: Value = serde_json::from_slice(&out.stdout).expect("json");
    let list = list.as_array().expect("array");
    assert!(list.len() >= 12);
    assert!(list.iter().all(|s| s["id"].is_string() && s["description"].is_string()));
    let table = String::from_utf8(backdrop(&["scenes"]).stdout).expect("utf-8");
    assert!(table.lines().count() >= 12 && table.contains("white-seamless"));
}

fn write_png(path: &Path, img: &RgbaImage) {
    img.save(path).expect("write fixture");
}

/// Bad inputs: each gets a non-zero exit, one clear line naming the problem, and no
/// output file.
#[test]
fn bad_inputs_fail_clearly_and_write_nothing() {
    let tmp = TempDir::new().expect("tmp");
    let t = tmp.path();
    let cutout = examples().join("bottle-cutout.png");
    let photo = examples().join("coffee.jpg");

    let bytes = std::fs::read(&cutout).expect("example");
    std::fs::write(t.join("truncated.png"), &bytes[..bytes.len() / 3]).expect("write");
    std::fs::write(t.join("text.png"), "this is not an image\n").expect("write");
    std::fs::write(t.join("anim.png"), b"GIF89a\x01\x00\x01\x00\x00\x00\x00;").expect("write");
    std::fs::write(t.join("empty.png"), b"").expect("write");
    // A real 1x1 PNG whose header claims 100000 x 100000.
    let mut bomb = Vec::new();
    image::RgbaImage::new(1, 1)
        .write_to(&mut std::io::Cursor::new(&mut bomb), image::ImageFormat::Png)
        .expect("encode");
    bomb[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    bomb[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let crc = crc32fast::hash(&bomb[12..29]);
    bomb[29..33].copy_from_slice(&crc.to_be_bytes());
    std::fs::write(t.join("bomb.png"), &bomb).expect("write");
    write_png(&t.join("opaque.png"), &RgbaImage::from_pixel(64, 64, Rgba([10, 20, 30, 255])));
    write_png(&t.join("clear.png"), &RgbaImage::new(64, 64));
    write_png(
        &t.join("tiny.png"),
        &RgbaImage::from_fn(8, 8, |x, _| Rgba([1, 2, 3, if x < 4 { 0 } else { 255 }])),
    );
    std::fs::write(t.join("file"), "a regular file").expect("write");

    let p = |name: &str| t.join(name).to_str().expect("utf-8").to_string();
    let c = s(&cutout).to_string();
    let ph = s(&photo).to_string();
    let long_prompt = "x".repeat(2501);
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["generate".into(), p("truncated.png"), "--prompt".into(), "a".into()],
            "corrupt_image",
        ),
        (
            vec!["generate".into(), p("text.png"), "--prompt".into(), "a".into()],
            "not a PNG, JPEG or WebP image (looks like text)",
        ),
        (vec!["generate".into(), p("anim.png"), "--prompt".into(), "a".into()], "looks like GIF"),
        (
            vec!["generate".into(), p("empty.png"), "--prompt".into(), "a".into()],
            "the file is empty",
        ),
        (
            vec!["generate".into(), p("bomb.png"), "--prompt".into(), "a".into()],
            "image is 100000x100000; the limit is 8192x8192",
        ),
        // `--cutout never`: with the default `auto` a photo would be cut out first.
        (
            vec![
                "generate".into(),
                p("opaque.png"),
                "--prompt".into(),
                "a".into(),
                "--cutout".into(),
                "never".into(),
            ],
            "fully_opaque",
        ),
        (
            vec!["generate".into(), p("clear.png"), "--prompt".into(), "a".into()],
            "fully_transparent",
        ),
        (
            vec![
                "generate".into(),
                ph.clone(),
                "--prompt".into(),
                "a".into(),
                "--cutout".into(),
                "never".into(),
            ],
            "no_alpha_channel",
        ),
        (
            vec!["generate".into(), p("tiny.png"), "--prompt".into(), "a".into()],
            "each side must be at least 16x16",
        ),
        (
            vec!["generate".into(), p("missing.png"), "--prompt".into(), "a".into()],
            "input_unreadable",
        ),
        (
            vec!["generate".into(), c.clone(), "--scene".into(), "moon-base".into()],
            "unknown scene 'moon-base'",
        ),
        (
            vec![
                "generate".into(),
                c.clone(),
                "--prompt".into(),
                "a".into(),
                "--n".into(),
                "17".into(),
            ],
            "n must be between 1 and 16; got 17",
        ),
        (
            vec!["generate".into(), c.clone(), "--prompt".into(), long_prompt],
            "prompt is 2501 characters; the limit is 2500",
        ),
        (
            vec![
                "generate".into(),
                c.clone(),
                "--prompt".into(),
                "a".into(),
                "--size".into(),
                "32x32".into(),
            ],
            "output_size_out_of_range",
        ),
        (
            vec![
                "generate".into(),
                c.clone(),
                "--prompt".into(),
                "a".into(),
                "--engine".into(),
                "diffusion".into(),
            ],
            "no diffusion model is configured",
        ),
        (
            vec!["expand".into(), ph.clone(), "--up".into(), "2.5".into()],
            "up ratio must be between 0 and 2; got 2.5",
        ),
        (
            vec!["expand".into(), ph.clone(), "--left".into(), "-0.1".into()],
            "left ratio must be between 0 and 2; got -0.1",
        ),
        (
            vec![
                "expand".into(),
                ph.clone(),
                "--left".into(),
                "1".into(),
                "--right".into(),
                "1".into(),
                "--up".into(),
                "0.5".into(),
            ],
            "4.500x the original area; the limit is 3x",
        ),
        (vec!["expand".into(), ph.clone()], "nothing_to_expand"),
        (
            vec![
                "expand".into(),
                ph.clone(),
                "--up".into(),
                "0.5".into(),
                "--n".into(),
                "10".into(),
            ],
            "n must be between 1 and 9; got 10",
        ),
        (vec!["expand".into(), ph.clone(), "--up".into(), "NaN".into()], "ratio_out_of_range"),
        // Engine settings are checked before anything is read or written, whatever the
        // engine (studio ignores them, so a typo would otherwise pass unnoticed).
        (
            vec![
                "generate".into(),
                c.clone(),
                "--prompt".into(),
                "a".into(),
                "--steps".into(),
                "151".into(),
            ],
            "steps must be between 1 and 150; got 151",
        ),
        (
            vec![
                "generate".into(),
                c.clone(),
                "--prompt".into(),
                "a".into(),
                "--guidance".into(),
                "NaN".into(),
            ],
            "guidance_out_of_range",
        ),
        (
            vec![
                "expand".into(),
                ph.clone(),
                "--up".into(),
                "0.5".into(),
                "--scheduler".into(),
                "pndm".into(),
            ],
            "unknown scheduler 'pndm'",
        ),
    ];
    for (args, expected) in &cases {
        let out_dir = t.join("out");
        let mut full: Vec<&str> = args.iter().map(String::as_str).collect();
        full.extend(["-o", s(&out_dir)]);
        let out = backdrop(&full);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(expected), "{args:?}: expected {expected:?} in {stderr:?}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: one line, got {stderr:?}");
        assert!(stderr.starts_with("error: "), "{stderr}");
        let leftovers = std::fs::read_dir(&out_dir).map(|d| d.count()).unwrap_or(0);
        assert_eq!(leftovers, 0, "{args:?} left files behind");
    }

    // Unwritable output directory: its parent is a regular file.
    let out = backdrop(&["generate", &c, "--prompt", "a", "-o", &format!("{}/sub", p("file"))]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot write to output directory") && stderr.contains("output_failed"),
        "{stderr}"
    );

    // Unknown engine names are refused by the flag parser with the list of engines.
    let out = backdrop(&["generate", &c, "--prompt", "a", "--engine", "magic", "-o", &p("out")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("expected one of auto, studio, patch, diffusion"));
}

#[test]
fn an_invalid_config_file_is_refused_with_its_own_code() {
    let dir = TempDir::new().expect("tmp");
    let config = dir.path().join("backdrop.toml");
    std::fs::write(&config, "[diffusion\nmax_pixels = ").expect("write");
    let out = dir.path().join("out");
    let input = examples().join("bottle-cutout.png");
    let output =
        backdrop(&["--config", s(&config), "generate", s(&input), "--prompt", "x", "-o", s(&out)]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("[invalid_config]"), "{stderr}");
    assert!(!out.exists(), "nothing is written");
}
