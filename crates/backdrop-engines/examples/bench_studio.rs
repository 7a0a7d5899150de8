//! Times the `studio` engine on every scene at 1024×1024, with PNG encoding.
//!
//! ```text
//! cargo run --release -p backdrop-engines --example bench_studio [-- --save DIR]
//! ```
//!
//! The input is a synthetic cut-out: a bottle standing on the lower third of the frame,
//! with an antialiased edge. For each scene the table shows the median over several runs
//! of the render, the PNG encode, and the two together, and the last line compares the
//! worst total with the product target of 100 ms. `--save DIR` also writes each scene's
//! image with the bottle composited on top, for looking at.

use backdrop_core::{CancelToken, Engine, EngineInput, EngineOptions, JobKind, RunControl, SCENES};
use backdrop_engines::studio::StudioEngine;
use backdrop_imaging::{encode, OutputFormat};
use image::{GrayImage, Luma, Rgb, RgbImage, Rgba, RgbaImage};
use std::time::Instant;

const SIZE: u32 = 1024;
const RUNS: usize = 9;
const TARGET_MS: f64 = 100.0;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let save = args.iter().position(|a| a == "--save").and_then(|i| args.get(i + 1)).cloned();
    if let Some(dir) = &save {
        if let Err(e) = std::fs::create_dir_all(dir) {
            eprintln!("cannot create {dir}: {e}");
            std::process::exit(1);
        }
    }

    let canvas = bottle(SIZE, SIZE);
    let mask = GrayImage::from_fn(SIZE, SIZE, |x, y| Luma([255 - canvas.get_pixel(x, y)[3]]));
    let options = EngineOptions::default();
    let engine = StudioEngine::default();
    let cancel = CancelToken::new();

    println!(
        "studio engine, {SIZE}x{SIZE}, {} threads, median of {RUNS} runs",
        rayon::current_num_threads()
    );
    println!("{:<18} {:>10} {:>10} {:>10}", "scene", "render ms", "png ms", "total ms");

    let mut worst: (f64, &str) = (0.0, "");
    for template in SCENES {
        let input = EngineInput {
            scene: Some(template.id),
            seed: 1234,
            ..EngineInput::new(JobKind::Background, &canvas, &mask, &options)
        };
        let mut render = Vec::with_capacity(RUNS);
        let mut png = Vec::with_capacity(RUNS);
        let mut total = Vec::with_capacity(RUNS);
        let mut last = None;
        // One extra, untimed run warms caches and the thread pool.
        for run in 0..=RUNS {
            let start = Instant::now();
            let out = match engine.generate(&input, RunControl::new(&(), &cancel)) {
                Ok(out) => out,
                Err(e) => {
                    eprintln!("{}: {e}", template.id);
                    std::process::exit(1);
                }
            };
            let rendered = Instant::now();
            let Some(image) = out.images.into_iter().next() else {
                eprintln!("{}: no image", template.id);
                std::process::exit(1);
            };
            let bytes = match encode(&image, OutputFormat::Png) {
                Ok(bytes) => bytes,
                Err(e) => {
                    eprintln!("{}: encode failed: {e}", template.id);
                    std::process::exit(1);
                }
            };
            let done = Instant::now();
            if run > 0 {
                render.push(ms(rendered - start));
                png.push(ms(done - rendered));
                total.push(ms(done - start));
            }
            last = Some((image, bytes.len()));
        }
        let (r, p, t) = (median(&mut render), median(&mut png), median(&mut total));
        println!("{:<18} {:>10.1} {:>10.1} {:>10.1}", template.id, r, p, t);
        if t > worst.0 {
            worst = (t, template.id);
        }
        if let (Some(dir), Some((image, _))) = (&save, last) {
            let path = format!("{dir}/{}.png", template.id);
            if let Err(e) = composite(&image, &canvas).save(&path) {
                eprintln!("cannot write {path}: {e}");
            }
        }
    }
    let verdict = if worst.0 < TARGET_MS { "within" } else { "OVER" };
    println!(
        "worst total: {:.1} ms ({}), {verdict} the {TARGET_MS:.0} ms target",
        worst.0, worst.1
    );
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// A bottle: body with rounded shoulders, a neck and a cap, standing at 86% of the
/// height, with a one-pixel antialiased edge from a signed distance.
fn bottle(width: u32, height: u32) -> RgbaImage {
    let (w, h) = (width as f32, height as f32);
    let cx = w * 0.5;
    let base = h * 0.86;
    let body_half = w * 0.11;
    let body_top = h * 0.42;
    let neck_half = w * 0.035;
    let neck_top = h * 0.22;
    let cap_top = h * 0.18;
    RgbaImage::from_fn(width, height, |x, y| {
        let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
        let dx = (px - cx).abs();
        // Distance inside (positive) of a union of rounded boxes, good to a pixel.
        let body = rounded_box(dx, py, body_half, body_top, base, w * 0.05);
        let neck = rounded_box(dx, py, neck_half, neck_top, body_top + w * 0.02, 2.0);
        let cap = rounded_box(dx, py, neck_half * 1.25, cap_top, neck_top + h * 0.01, 3.0);
        let inside = body.max(neck).max(cap);
        let alpha = (inside + 0.5).clamp(0.0, 1.0);
        let shade = (1.0 - dx / body_half).clamp(0.0, 1.0);
        let colour = if cap >= inside && cap > -1.0 {
            [30, 30, 34]
        } else {
            [(40.0 + 60.0 * shade) as u8, (110.0 + 80.0 * shade) as u8, (70.0 + 50.0 * shade) as u8]
        };
        Rgba([colour[0], colour[1], colour[2], (alpha * 255.0).round() as u8])
    })
}

/// Signed distance (positive inside) to a box of half-width `half` spanning `top..bottom`
/// with corners rounded by `r`, for a point at horizontal offset `dx` from its axis.
fn rounded_box(dx: f32, y: f32, half: f32, top: f32, bottom: f32, r: f32) -> f32 {
    let cy = (top + bottom) * 0.5;
    let half_h = (bottom - top) * 0.5;
    let qx = dx - (half - r);
    let qy = (y - cy).abs() - (half_h - r);
    let outside = (qx.max(0.0).powi(2) + qy.max(0.0).powi(2)).sqrt();
    let inside = qx.max(qy).min(0.0);
    -(outside + inside - r)
}

/// The cut-out laid over the backdrop, as the pipeline would, for viewing.
fn composite(backdrop: &RgbImage, canvas: &RgbaImage) -> RgbImage {
    RgbImage::from_fn(backdrop.width(), backdrop.height(), |x, y| {
        let b = backdrop.get_pixel(x, y);
        let c = canvas.get_pixel(x, y);
        let a = f32::from(c[3]) / 255.0;
        let mix = |i: usize| (f32::from(b[i]) * (1.0 - a) + f32::from(c[i]) * a).round() as u8;
        Rgb([mix(0), mix(1), mix(2)])
    })
}
