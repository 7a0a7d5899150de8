//! Timings of the diffusion engine on one model folder, printed as one JSON line for
//! `tools/diffusion/bench.py`: one UNet step (batch 2, 64x64 latents), VAE encode and
//! decode at 512x512, a full inpaint at 512x512, and the process's peak RSS.
//!
//! Usage: `bench MODEL_DIR [STEPS]` (release build; ONNX Runtime found as usual).

use backdrop_core::CancelToken;
use backdrop_diffusion::inpaint::{inpaint, InpaintRequest};
use backdrop_diffusion::model::Model;
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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let folder = PathBuf::from(args.next().ok_or("usage: bench MODEL_DIR [STEPS]")?);
    let steps: usize = args.next().map_or(Ok(20), |s| s.parse())?;
    let model = Model::open(&folder, &RuntimeConfig::default())?;
    let info = model.info.clone();
    let mut generator = TorchGenerator::new(0);
    let dim = info.embedding_dim.unwrap_or(768);
    let channels = info.unet_in_channels;

    let sample = generator.randn(2 * channels * 64 * 64);
    let hidden = generator.randn(2 * 77 * dim);
    model.unet(sample.clone(), [2, channels, 64, 64], 500.0, hidden.clone(), [2, 77, dim])?;
    let started = Instant::now();
    model.unet(sample, [2, channels, 64, 64], 500.0, hidden, [2, 77, dim])?;
    let unet_step_s = started.elapsed().as_secs_f64();

    let image = generator.randn(3 * 512 * 512);
    let started = Instant::now();
    model.encode_image(image, 512, 512)?;
    let vae_encode_s = started.elapsed().as_secs_f64();
    let latent = generator.randn(4 * 64 * 64);
    let started = Instant::now();
    model.decode(latent, 64, 64)?;
    let vae_decode_s = started.elapsed().as_secs_f64();

    let picture = RgbImage::from_fn(512, 512, |x, y| Rgb([(x / 2) as u8, (y / 2) as u8, 128]));
    let mask = GrayImage::from_fn(512, 512, |x, _| Luma([if x > 256 { 255 } else { 0 }]));
    let request = InpaintRequest {
        image: &picture,
        mask: &mask,
        prompt: "a bottle on a table",
        negative_prompt: None,
        seeds: &[1],
        steps,
        guidance: 7.5,
        scheduler: "dpm++2m".parse()?,
        strength: 1.0,
        max_batch: 1,
    };
    let started = Instant::now();
    inpaint(&model, &request, &(), &CancelToken::new())?;
    let inpaint_s = started.elapsed().as_secs_f64();
    println!(
        "{{\"unet_step_s\": {unet_step_s}, \"vae_encode_s\": {vae_encode_s}, \"vae_decode_s\": {vae_decode_s}, \"inpaint_s\": {inpaint_s}, \"peak_rss_mb\": {}}}",
        peak_rss_mb()
    );
    Ok(())
}
