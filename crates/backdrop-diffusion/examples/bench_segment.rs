//! Times automatic cut-out on one photo, for `tools/bench-cutout`.
//!
//! `bench_segment PHOTO --side 2048 --runs 5 [--matte OUT.png] [--model ID]`: the photo is
//! resized to SIDE x SIDE (Lanczos) and written next to OUT as `photo-SIDE.png` for the
//! peer to read, one warm-up run opens the session, then each run segments it (network and
//! guided refinement to the full size). Prints one JSON line: milliseconds per run, their
//! median, the network's share, and where the matte and photo were written.

use backdrop_core::{CancelToken, Segmenter};
use backdrop_diffusion::runtime::RuntimeConfig;
use backdrop_diffusion::segment::{OnnxSegmenter, SegmentationConfig};
use backdrop_imaging::matte::{working_image, MatteParams};
use image::imageops::FilterType;
use std::path::PathBuf;
use std::time::Instant;

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let mut photo = None;
    let (mut side, mut runs, mut matte_path, mut model) = (2048u32, 5usize, None, None);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--side" => side = value()?.parse().map_err(|e| format!("--side: {e}"))?,
            "--runs" => runs = value()?.parse().map_err(|e| format!("--runs: {e}"))?,
            "--matte" => matte_path = Some(PathBuf::from(value()?)),
            "--model" => model = Some(value()?),
            other => photo = Some(PathBuf::from(other)),
        }
    }
    let photo =
        photo.ok_or("usage: bench_segment PHOTO [--side N] [--runs N] [--matte OUT.png]")?;
    let image = image::open(&photo).map_err(|e| format!("{}: {e}", photo.display()))?;
    let image = image.resize_exact(side, side, FilterType::Lanczos3).to_rgba8();
    let segmenter = OnnxSegmenter::new(SegmentationConfig::default(), RuntimeConfig::default())
        .map_err(|e| e.to_string())?
        .ok_or("no segmentation model: install the bundled one (tools/test does)")?;
    let cancel = CancelToken::new();
    let model = model.as_deref();
    let mut matte = segmenter.segment(&image, model, &cancel).map_err(|e| e.to_string())?;
    let mut total = Vec::new();
    let mut network = Vec::new();
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        matte = segmenter.segment(&image, model, &cancel).map_err(|e| e.to_string())?;
        total.push(started.elapsed().as_secs_f64() * 1000.0);
        // The network's part of a run: the shrink it reads from, the resize, the network.
        let started = Instant::now();
        let small = working_image(&image, &MatteParams::default());
        segmenter
            .probabilities(small.as_ref().unwrap_or(&image), model)
            .map_err(|e| e.to_string())?;
        network.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let mut written = serde_json::Map::new();
    if let Some(path) = &matte_path {
        matte.save(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let photo_path = path.with_file_name(format!("photo-{side}.png"));
        image.save(&photo_path).map_err(|e| format!("{}: {e}", photo_path.display()))?;
        written.insert("matte".into(), path.display().to_string().into());
        written.insert("photo".into(), photo_path.display().to_string().into());
    }
    println!(
        "{}",
        serde_json::json!({
            "side": side,
            "runs_ms": total,
            "median_ms": median(&total),
            "network_median_ms": median(&network),
            "files": written,
        })
    );
    Ok(())
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(0.0)
}
