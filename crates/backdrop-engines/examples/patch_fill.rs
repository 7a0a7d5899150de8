//! Runs the patch engine on one canvas and mask, for benchmarks and quick looks.
//!
//! ```text
//! cargo run --release -p backdrop-engines --example patch_fill -- CANVAS.png MASK.png OUT.png SEED
//! ```
//!
//! `CANVAS.png` is read as RGBA (known pixels opaque), `MASK.png` as 8-bit grey (> 0 =
//! generate). Writes the RGB result to `OUT.png` and prints `{"ms": <engine
//! milliseconds>}` on stdout; decoding and encoding are not timed.
//!
//! For tuning experiments, `PATCH_PARAMS="locality=0.5,fine_temperature=0.05"` overrides
//! fields of [`PatchParams`] (unset fields keep their defaults).

use backdrop_core::{CancelToken, Engine, EngineInput, EngineOptions, JobKind, RunControl};
use backdrop_engines::patch::{PatchEngine, PatchParams};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 4 {
        eprintln!("usage: patch_fill CANVAS.png MASK.png OUT.png SEED");
        std::process::exit(2);
    }
    let canvas = image::open(&args[0]).expect("read the canvas").to_rgba8();
    let mask = image::open(&args[1]).expect("read the mask").to_luma8();
    let seed: u64 = args[3].parse().expect("SEED must be an unsigned integer");
    let options = EngineOptions::default();
    let input =
        EngineInput { seed, ..EngineInput::new(JobKind::Expansion, &canvas, &mask, &options) };
    let start = Instant::now();
    let engine = PatchEngine::new(params_from_env());
    let output =
        engine.generate(&input, RunControl::new(&(), &CancelToken::new())).expect("patch engine");
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    let image = output.images.into_iter().next().expect("one image");
    let png = backdrop_imaging::encode(&image, backdrop_imaging::OutputFormat::Png)
        .expect("encode the result");
    std::fs::write(&args[2], png).expect("write the result");
    println!("{{\"ms\": {ms:.1}}}");
}

/// The default parameters with the overrides of `PATCH_PARAMS` applied.
fn params_from_env() -> PatchParams {
    let mut p = PatchParams::default();
    let Ok(spec) = std::env::var("PATCH_PARAMS") else { return p };
    for pair in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (key, value) = pair.split_once('=').expect("PATCH_PARAMS entries are key=value");
        let int = || value.parse::<u32>().expect("an unsigned integer");
        let float = || value.parse::<f32>().expect("a number");
        match key {
            "patch_radius" => p.patch_radius = int(),
            "max_levels" => p.max_levels = int(),
            "coarsest_depth" => p.coarsest_depth = int(),
            "coarse_iterations" => p.coarse_iterations = int(),
            "middle_iterations" => p.middle_iterations = int(),
            "fine_iterations" => p.fine_iterations = int(),
            "search_passes" => p.search_passes = int(),
            "fine_search_passes" => p.fine_search_passes = int(),
            "refine_radius" => p.refine_radius = int(),
            "temperature" => p.temperature = float(),
            "fine_temperature" => p.fine_temperature = float(),
            "depth_falloff" => p.depth_falloff = float(),
            "locality" => p.locality = float(),
            "band" => p.band = float(),
            "band_free" => p.band_free = float(),
            "reuse" => p.reuse = float(),
            "smooth_flat" => p.smooth_flat = float(),
            "smooth_textured" => p.smooth_textured = float(),
            "smooth_sigma" => p.smooth_sigma = float(),
            other => panic!("unknown PATCH_PARAMS key '{other}'"),
        }
    }
    p
}
