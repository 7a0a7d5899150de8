//! Timings of the diffusion engine on one model folder, printed as one JSON line for
//! `tools/diffusion/bench.py`. Every figure is the median of `--runs` timed runs after
//! one warm-up run (the first runs of a session are slower while ONNX Runtime settles).
//!
//! - `unet_step_s`: one UNet step, batch 2 (guidance), 64x64 latents, through the bound
//!   call a denoising loop uses (embeddings bound once, buffers reused);
//! - `unet_step_plain_s`: the same step with owned inputs and a fresh output per call;
//! - `unet_step_b1_s`: batch 1 (guidance <= 1, the LCM path);
//! - `vae_encode_s`, `vae_decode_s` at 512x512; `vae_decode_tiny_s` with `--tiny-decoder`,
//!   `vae_encode_tiny_s` with `--tiny-encoder`;
//! - `inpaint_s`: a full `--steps` inpaint at 512x512 (guidance 7.5, DPM-Solver++);
//!   `lcm_s`: 4 LCM steps with guidance 1, and `lcm_tiny_s` the same with the tiny
//!   decoder and encoder given (the full inpaint is one run, the 4-step ones medians like
//!   the calls; not with `--quick`, which times the UNet step and the decode only);
//! - `peak_rss_mb`: the process's peak resident memory.
//!
//! `--inpaint-only` opens the model (with the tiny networks given, if any) and runs the one
//! `--steps` inpaint and nothing else, so its `peak_rss_mb` is what one inpaint needs (the
//! full run also holds the batch-1 plan, the plain call's buffers and a second model for
//! the tiny networks); `load_peak_rss_mb` is the peak once the model is open.
//!
//! Usage: `bench MODEL_DIR [--steps N] [--runs N] [--quick] [--inpaint-only]
//! [--fixed-shapes] [--tiny-decoder PATH] [--tiny-encoder PATH] [--threads N] [--no-arena]
//! [--own-arenas] (an arena per network instead of the shared one) [--decode-tile PIXELS]
//! (the KL decode in tiles; with `--inpaint-only`)
//! [--memory-pattern | --no-memory-pattern]
//! [--optimization disable|basic|extended|all]` (release build; ONNX Runtime found as usual;
//! `BACKDROP_BENCH_PROVIDER=cuda` or `tensorrt` picks the execution provider).

use backdrop_core::CancelToken;
use backdrop_diffusion::inpaint::{inpaint, InpaintRequest};
use backdrop_diffusion::model::{Model, ModelOptions};
use backdrop_diffusion::rng::TorchGenerator;
use backdrop_diffusion::runtime::RuntimeConfig;
use image::{GrayImage, Luma, Rgb, RgbImage};
use std::path::PathBuf;
use std::time::Instant;

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<f64>().ok()))
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

type Failure = Box<dyn std::error::Error>;

/// One warm-up run, then the median of `runs` timed runs, and every timed run.
fn median_of(
    runs: usize,
    mut f: impl FnMut() -> Result<(), Failure>,
) -> Result<(f64, Vec<f64>), Failure> {
    f()?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        f()?;
        times.push(started.elapsed().as_secs_f64());
    }
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    Ok((sorted[sorted.len() / 2], times))
}

struct Args {
    folder: PathBuf,
    steps: usize,
    runs: usize,
    quick: bool,
    inpaint_only: bool,
    runtime: RuntimeConfig,
    tiny: ModelOptions,
}

fn parse() -> Result<Args, Failure> {
    let usage = "usage: bench MODEL_DIR [--steps N] [--runs N] [--quick] [--inpaint-only] \
                 [--fixed-shapes] [--tiny-decoder PATH] [--tiny-encoder PATH] [--threads N] [--no-arena] \
                 [--own-arenas] [--decode-tile PIXELS] \
                 [--optimization LEVEL] [--memory-pattern | --no-memory-pattern]";
    let mut args = std::env::args().skip(1);
    let folder = PathBuf::from(args.next().ok_or(usage)?);
    let mut parsed = Args {
        folder,
        steps: 20,
        runs: 3,
        quick: false,
        inpaint_only: false,
        runtime: RuntimeConfig::default(),
        tiny: ModelOptions::default(),
    };
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--steps" => parsed.steps = args.next().ok_or(usage)?.parse()?,
            "--runs" => parsed.runs = args.next().ok_or(usage)?.parse()?,
            "--threads" => parsed.runtime.threads = Some(args.next().ok_or(usage)?.parse()?),
            "--quick" => parsed.quick = true,
            "--inpaint-only" => parsed.inpaint_only = true,
            "--fixed-shapes" => parsed.runtime.fixed_shapes = true,
            "--no-arena" => parsed.runtime.memory_arena = false,
            "--own-arenas" => parsed.runtime.shared_arena = false,
            "--optimization" => {
                let level = serde_json::Value::String(args.next().ok_or(usage)?);
                parsed.runtime.optimization = serde_json::from_value(level)?;
            }
            "--no-memory-pattern" => parsed.runtime.memory_pattern = Some(false),
            "--memory-pattern" => parsed.runtime.memory_pattern = Some(true),
            "--tiny-decoder" => {
                parsed.tiny.tiny_decoder = Some(PathBuf::from(args.next().ok_or(usage)?));
            }
            "--decode-tile" => parsed.tiny.decode_tile = Some(args.next().ok_or(usage)?.parse()?),
            "--tiny-encoder" => {
                parsed.tiny.tiny_encoder = Some(PathBuf::from(args.next().ok_or(usage)?));
            }
            // A bare number is the step count, as before.
            other if other.parse::<usize>().is_ok() => parsed.steps = other.parse()?,
            other => return Err(format!("unknown argument {other}; {usage}").into()),
        }
    }
    if let Some(name) = std::env::var("BACKDROP_BENCH_PROVIDER").ok().filter(|p| !p.is_empty()) {
        parsed.runtime.provider = serde_json::from_value(serde_json::Value::String(name))?;
    }
    Ok(parsed)
}

/// Runs `request` once and returns the seconds it took.
fn timed_inpaint(model: &Model, request: &InpaintRequest<'_>) -> Result<f64, Failure> {
    let started = Instant::now();
    inpaint(model, request, &(), &CancelToken::new())?;
    Ok(started.elapsed().as_secs_f64())
}

fn print_figures(figures: &[(String, String)]) {
    let body: Vec<String> = figures.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
    println!("{{{}}}", body.join(", "));
}

fn main() -> Result<(), Failure> {
    let args = parse()?;
    let started = Instant::now();
    let options = if args.inpaint_only { args.tiny.clone() } else { ModelOptions::default() };
    let model = Model::open_with(&args.folder, &args.runtime, &options)?;
    let load_s = started.elapsed().as_secs_f64();
    let load_peak_rss_mb = peak_rss_mb();
    let picture = RgbImage::from_fn(512, 512, |x, y| Rgb([(x / 2) as u8, (y / 2) as u8, 128]));
    let mask = GrayImage::from_fn(512, 512, |x, _| Luma([if x > 256 { 255 } else { 0 }]));
    let request = InpaintRequest {
        image: &picture,
        mask: &mask,
        prompt: "a bottle on a table",
        negative_prompt: None,
        seeds: &[1],
        steps: args.steps,
        guidance: 7.5,
        scheduler: "dpm++2m".parse()?,
        strength: 1.0,
        max_batch: 1,
    };
    if args.inpaint_only {
        let inpaint_s = timed_inpaint(&model, &request)?;
        print_figures(&[
            ("load_s".into(), load_s.to_string()),
            ("load_peak_rss_mb".into(), load_peak_rss_mb.to_string()),
            ("inpaint_s".into(), inpaint_s.to_string()),
            ("peak_rss_mb".into(), peak_rss_mb().to_string()),
        ]);
        return Ok(());
    }
    let info = model.info.clone();
    let mut generator = TorchGenerator::new(0);
    let dim = info.embedding_dim.unwrap_or(768);
    let channels = info.unet_in_channels;
    let mut figures: Vec<(String, String)> = vec![("load_s".into(), load_s.to_string())];
    let mut record = |name: &str, (median, runs): (f64, Vec<f64>)| {
        figures.push((name.to_owned(), median.to_string()));
        figures.push((format!("{name}_runs"), format!("{runs:?}")));
    };

    let sample = generator.randn(2 * channels * 64 * 64);
    let hidden = generator.randn(2 * 77 * dim);
    let mut call = model.unet_call([2, channels, 64, 64], hidden.clone(), [2, 77, dim])?;
    call.sample_mut().copy_from_slice(&sample);
    record("unet_step_s", median_of(args.runs, || Ok(call.run(500.0, |_| ())?))?);
    drop(call);
    record(
        "unet_step_plain_s",
        median_of(args.runs, || {
            model.unet(
                sample.clone(),
                [2, channels, 64, 64],
                500.0,
                hidden.clone(),
                [2, 77, dim],
            )?;
            Ok(())
        })?,
    );
    let mut single =
        model.unet_call([1, channels, 64, 64], hidden[..77 * dim].to_vec(), [1, 77, dim])?;
    single.sample_mut().copy_from_slice(&sample[..channels * 64 * 64]);
    record("unet_step_b1_s", median_of(args.runs, || Ok(single.run(500.0, |_| ())?))?);
    drop(single);

    let image = generator.randn(3 * 512 * 512);
    if !args.quick {
        record(
            "vae_encode_s",
            median_of(args.runs, || {
                model.encode_image(image.clone(), 512, 512)?;
                Ok(())
            })?,
        );
    }
    let latent = generator.randn(4 * 64 * 64);
    record(
        "vae_decode_s",
        median_of(args.runs, || {
            model.decode(latent.clone(), 64, 64)?;
            Ok(())
        })?,
    );
    let tiny = if args.tiny == ModelOptions::default() {
        None
    } else {
        let tiny = Model::open_with(&args.folder, &args.runtime, &args.tiny)?;
        if tiny.info.decoder.tiny {
            record(
                "vae_decode_tiny_s",
                median_of(args.runs, || {
                    tiny.decode(latent.clone(), 64, 64)?;
                    Ok(())
                })?,
            );
        }
        if tiny.info.encoder.tiny && !args.quick {
            record(
                "vae_encode_tiny_s",
                median_of(args.runs, || {
                    tiny.encode_image(image.clone(), 512, 512)?;
                    Ok(())
                })?,
            );
        }
        Some(tiny)
    };

    if !args.quick {
        // One timed run: a full inpaint already repeats the step many times.
        let inpaint_s = timed_inpaint(&model, &request)?;
        record("inpaint_s", (inpaint_s, vec![inpaint_s]));
        // A 4-step job is short enough to time like the calls above.
        let lcm = InpaintRequest { steps: 4, guidance: 1.0, scheduler: "lcm".parse()?, ..request };
        let mut lcm_of = |name: &str, model: &Model| -> Result<(), Failure> {
            let timed = median_of(args.runs, || {
                inpaint(model, &lcm, &(), &CancelToken::new())?;
                Ok(())
            })?;
            record(name, timed);
            Ok(())
        };
        lcm_of("lcm_s", &model)?;
        if let Some(tiny) = &tiny {
            lcm_of("lcm_tiny_s", tiny)?;
        }
    }
    figures.push(("peak_rss_mb".into(), peak_rss_mb().to_string()));
    print_figures(&figures);
    Ok(())
}
