//! Alpha mattes for cut-outs: a segmentation network's low-resolution mask brought to the
//! photo's size along the photo's own edges, and the transparent cut-out made from it.
//!
//! A plain resize of a 320 x 320 mask gives a blurred, blocky outline at 2048 px. The
//! mask is instead refined with a colour guided filter (He, Sun and Tang, "Guided Image
//! Filtering") in its fast form: the filter's local linear model `alpha = a . rgb + b` is
//! fitted at a working resolution, its coefficients are upsampled, and they are applied
//! to the full-resolution photo. Edges therefore follow the photo's colour edges at full
//! resolution, antialiased and hair-thin edges keep soft values, and the cost at full size
//! is one multiply-add per channel and pixel.
//!
//! No threshold is applied: [`MatteParams::levels`] only maps near-certain values to
//! exactly 0 and 255, so the product's interior is fully opaque (and comes back
//! bit-identical from the photo) while its edge stays soft.

use crate::blur::box_blur;
use image::{GrayImage, RgbaImage};
use rayon::prelude::*;

/// How a coarse mask is refined.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MatteParams {
    /// Longest side of the resolution the guided filter's coefficients are fitted at.
    pub work_side: u32,
    /// Window half-width at the working resolution, in pixels.
    pub radius: usize,
    /// Regularisation: larger keeps closer to the coarse mask, smaller follows the
    /// photo's edges more tightly (colour values in [0, 1]).
    pub epsilon: f32,
    /// Values at or below `levels.0` become 0, at or above `levels.1` become 1, linear
    /// between: a soft edge is kept, a near-certain interior becomes exact.
    pub levels: (f32, f32),
}

impl Default for MatteParams {
    fn default() -> Self {
        // Tuned on the composites of backdrop-diffusion's tests/segment.rs (boundary
        // error against the true alpha, over plain, gradient, blurred and textured
        // backgrounds): a wide window with a small epsilon follows colour edges best.
        MatteParams { work_side: 640, radius: 8, epsilon: 1e-4, levels: (0.04, 0.96) }
    }
}

/// Brings a coarse mask (`width * height` values in [0, 1], row-major, any size and
/// aspect) to the photo's size, refined against the photo (its alpha is ignored).
pub fn refine_matte(
    photo: &RgbaImage,
    coarse: &[f32],
    width: usize,
    height: usize,
    params: &MatteParams,
) -> GrayImage {
    let small = working_image(photo, params);
    refine_matte_with(photo, small.as_ref().unwrap_or(photo), coarse, width, height, params)
}

/// The photo at the working resolution, when it is larger: shrunk by a whole factor,
/// each pixel the mean of its block, in one pass (a segmenter also feeds its network
/// from it, so a large photo is read once). `None` when the photo is small enough.
pub fn working_image(photo: &RgbaImage, params: &MatteParams) -> Option<RgbaImage> {
    let (pw, ph) = photo.dimensions();
    let factor = pw.max(ph).div_ceil(params.work_side.max(1));
    if factor <= 1 {
        return None;
    }
    let (w, h) = (pw.div_ceil(factor), ph.div_ceil(factor));
    let source = photo.as_raw();
    let mut out = vec![0u8; (w * h * 4) as usize];
    out.par_chunks_mut((w * 4) as usize).enumerate().for_each(|(y, row)| {
        let y0 = y as u32 * factor;
        let y1 = (y0 + factor).min(ph);
        for (x, pixel) in row.chunks_exact_mut(4).enumerate() {
            let x0 = x as u32 * factor;
            let x1 = (x0 + factor).min(pw);
            let mut sum = [0u32; 4];
            for sy in y0..y1 {
                let line = &source[((sy * pw + x0) * 4) as usize..((sy * pw + x1) * 4) as usize];
                for p in line.chunks_exact(4) {
                    for c in 0..4 {
                        sum[c] += u32::from(p[c]);
                    }
                }
            }
            let count = (y1 - y0) * (x1 - x0);
            for c in 0..4 {
                pixel[c] = ((sum[c] + count / 2) / count) as u8;
            }
        }
    });
    RgbaImage::from_raw(w, h, out)
}

/// [`refine_matte`] with the working-resolution guide already made (the photo itself, or
/// [`working_image`]'s result).
pub fn refine_matte_with(
    photo: &RgbaImage,
    guide: &RgbaImage,
    coarse: &[f32],
    width: usize,
    height: usize,
    params: &MatteParams,
) -> GrayImage {
    let (pw, ph) = photo.dimensions();
    if pw == 0 || ph == 0 || width == 0 || height == 0 || coarse.len() != width * height {
        return GrayImage::new(pw, ph);
    }
    let (w, h) = (guide.width() as usize, guide.height() as usize);
    let planes = planes(guide);
    let mask = resample(coarse, width, height, w, h);
    let coefficients = fit(&planes, &mask, w, h, params);
    apply(photo, &coefficients, w, h, params.levels)
}

/// Bilinear resampling of a plane (pixel centres aligned), without refinement.
pub fn resample(plane: &[f32], width: usize, height: usize, to_w: usize, to_h: usize) -> Vec<f32> {
    let xs = taps(width, to_w);
    let ys = taps(height, to_h);
    let mut out = vec![0.0f32; to_w * to_h];
    out.par_chunks_mut(to_w.max(1)).zip(ys.par_iter()).for_each(|(row, &(y0, y1, fy))| {
        let (r0, r1) = (&plane[y0 * width..][..width], &plane[y1 * width..][..width]);
        for (value, &(x0, x1, fx)) in row.iter_mut().zip(&xs) {
            let top = r0[x0] + (r0[x1] - r0[x0]) * fx;
            let bottom = r1[x0] + (r1[x1] - r1[x0]) * fx;
            *value = top + (bottom - top) * fy;
        }
    });
    out
}

/// The transparent cut-out: the photo's colour with the matte as alpha (the photo's own
/// alpha is kept where it is lower, so a cut-out segmented again never grows).
pub fn apply_matte(photo: &RgbaImage, matte: &GrayImage) -> RgbaImage {
    let mut out = photo.clone();
    for (pixel, alpha) in out.pixels_mut().zip(matte.as_raw()) {
        pixel.0[3] = pixel.0[3].min(*alpha);
    }
    out
}

/// Whether any pixel is less than fully opaque.
pub fn has_transparency(image: &RgbaImage) -> bool {
    image.pixels().any(|p| p.0[3] < 255)
}

/// For each output index, the two source indices and the weight of the second.
fn taps(from: usize, to: usize) -> Vec<(usize, usize, f32)> {
    let ratio = from as f32 / to.max(1) as f32;
    (0..to)
        .map(|i| {
            let position = ((i as f32 + 0.5) * ratio - 0.5).clamp(0.0, (from - 1) as f32);
            let low = position.floor() as usize;
            (low, (low + 1).min(from - 1), position - low as f32)
        })
        .collect()
}

/// The three colour planes of an image, in [0, 1].
fn planes(image: &RgbaImage) -> [Vec<f32>; 3] {
    let mut out = [Vec::new(), Vec::new(), Vec::new()];
    for (c, plane) in out.iter_mut().enumerate() {
        *plane = image.pixels().map(|p| f32::from(p.0[c]) / 255.0).collect();
    }
    out
}

/// The guided filter's mean coefficients `[a_r, a_g, a_b, b]` at the working resolution.
fn fit(
    guide: &[Vec<f32>; 3],
    mask: &[f32],
    w: usize,
    h: usize,
    params: &MatteParams,
) -> [Vec<f32>; 4] {
    let n = w * h;
    let radius = params.radius;
    // Window means of I, p, I*I (six distinct products) and I*p, all box filtered at once.
    let mut sums: Vec<Vec<f32>> = guide.to_vec();
    sums.push(mask.to_vec());
    for (i, j) in [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)] {
        sums.push(guide[i].iter().zip(&guide[j]).map(|(a, b)| a * b).collect());
    }
    for channel in guide {
        sums.push(channel.iter().zip(mask).map(|(a, b)| a * b).collect());
    }
    sums.par_iter_mut().for_each(|plane| box_blur(plane, w, h, radius));
    let eps = params.epsilon;
    let mut coefficients = [vec![0.0f32; n], vec![0.0f32; n], vec![0.0f32; n], vec![0.0f32; n]];
    {
        let [ar, ag, ab, b] = &mut coefficients;
        ar.par_iter_mut()
            .zip(ag.par_iter_mut())
            .zip(ab.par_iter_mut())
            .zip(b.par_iter_mut())
            .enumerate()
            .for_each(|(k, (((ar, ag), ab), b))| {
                let m = [sums[0][k], sums[1][k], sums[2][k]];
                let mp = sums[3][k];
                // Covariance of the colours in the window, regularised.
                let s00 = sums[4][k] - m[0] * m[0] + eps;
                let s01 = sums[5][k] - m[0] * m[1];
                let s02 = sums[6][k] - m[0] * m[2];
                let s11 = sums[7][k] - m[1] * m[1] + eps;
                let s12 = sums[8][k] - m[1] * m[2];
                let s22 = sums[9][k] - m[2] * m[2] + eps;
                let cp =
                    [sums[10][k] - m[0] * mp, sums[11][k] - m[1] * mp, sums[12][k] - m[2] * mp];
                // Symmetric 3x3 inverse by cofactors.
                let c00 = s11 * s22 - s12 * s12;
                let c01 = s02 * s12 - s01 * s22;
                let c02 = s01 * s12 - s02 * s11;
                let c11 = s00 * s22 - s02 * s02;
                let c12 = s01 * s02 - s00 * s12;
                let c22 = s00 * s11 - s01 * s01;
                let det = s00 * c00 + s01 * c01 + s02 * c02;
                // Positive definite by construction (epsilon on the diagonal); only a
                // degenerate window (rounding) falls back to the window's mean.
                let (x, y, z) = if det > 1e-15 && det.is_finite() {
                    (
                        (c00 * cp[0] + c01 * cp[1] + c02 * cp[2]) / det,
                        (c01 * cp[0] + c11 * cp[1] + c12 * cp[2]) / det,
                        (c02 * cp[0] + c12 * cp[1] + c22 * cp[2]) / det,
                    )
                } else {
                    (0.0, 0.0, 0.0)
                };
                *ar = x;
                *ag = y;
                *ab = z;
                *b = mp - x * m[0] - y * m[1] - z * m[2];
            });
    }
    coefficients.par_iter_mut().for_each(|plane| box_blur(plane, w, h, radius));
    coefficients
}

/// `alpha = a . rgb + b` at the photo's size, with the coefficients upsampled bilinearly.
fn apply(
    photo: &RgbaImage,
    coefficients: &[Vec<f32>; 4],
    w: usize,
    h: usize,
    levels: (f32, f32),
) -> GrayImage {
    let (pw, ph) = (photo.width() as usize, photo.height() as usize);
    let xs = taps(w, pw);
    let ys = taps(h, ph);
    let (low, high) = levels;
    let span = (high - low).max(f32::EPSILON);
    let mut out = vec![0u8; pw * ph];
    let source = photo.as_raw();
    out.par_chunks_mut(pw).zip(ys.par_iter()).enumerate().for_each(|(y, (row, &(y0, y1, fy)))| {
        // The coefficients of this row at the working width: one vertical blend per row.
        let lines: Vec<Vec<f32>> = coefficients
            .iter()
            .map(|plane| {
                let (r0, r1) = (&plane[y0 * w..][..w], &plane[y1 * w..][..w]);
                r0.iter().zip(r1).map(|(a, b)| a + (b - a) * fy).collect()
            })
            .collect();
        let pixels = &source[y * pw * 4..][..pw * 4];
        for ((alpha, &(x0, x1, fx)), rgb) in row.iter_mut().zip(&xs).zip(pixels.chunks_exact(4)) {
            let at = |line: &[f32]| line[x0] + (line[x1] - line[x0]) * fx;
            let q = (at(&lines[0]) * f32::from(rgb[0])
                + at(&lines[1]) * f32::from(rgb[1])
                + at(&lines[2]) * f32::from(rgb[2]))
                / 255.0
                + at(&lines[3]);
            *alpha = (((q - low) / span).clamp(0.0, 1.0) * 255.0).round() as u8;
        }
    });
    GrayImage::from_raw(pw as u32, ph as u32, out)
        .unwrap_or_else(|| GrayImage::new(pw as u32, ph as u32))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgba;

    /// A photo with a red disc on grey and its exact coverage.
    fn disc(size: u32) -> (RgbaImage, Vec<f32>) {
        let c = size as f32 / 2.0;
        let r = size as f32 * 0.3;
        let mut truth = Vec::new();
        let photo = RgbaImage::from_fn(size, size, |x, y| {
            let d = ((x as f32 + 0.5 - c).powi(2) + (y as f32 + 0.5 - c).powi(2)).sqrt();
            let a = (r - d + 0.5).clamp(0.0, 1.0);
            truth.push(a);
            let mix = |fg: f32, bg: f32| (fg * a + bg * (1.0 - a)).round() as u8;
            Rgba([mix(220.0, 128.0), mix(30.0, 128.0), mix(40.0, 128.0), 255])
        });
        // `from_fn` walks rows in order, so `truth` is row-major.
        (photo, truth)
    }

    #[test]
    fn a_coarse_mask_is_refined_along_the_photos_edge() {
        let (photo, truth) = disc(512);
        let coarse_side = 64;
        // The coarse mask: the truth averaged down 8 times, as a network sees a photo.
        let factor = 512 / coarse_side;
        let coarse: Vec<f32> = (0..coarse_side * coarse_side)
            .map(|i| {
                let (cx, cy) = (i % coarse_side, i / coarse_side);
                let mut sum = 0.0;
                for y in cy * factor..(cy + 1) * factor {
                    for x in cx * factor..(cx + 1) * factor {
                        sum += truth[y * 512 + x];
                    }
                }
                sum / (factor * factor) as f32
            })
            .collect();
        let error = |alpha: &[f32]| -> f32 {
            alpha.iter().zip(&truth).map(|(a, t)| (a - t).abs()).sum::<f32>() / truth.len() as f32
        };
        let plain = resample(&coarse, coarse_side, coarse_side, 512, 512);
        let refined =
            refine_matte(&photo, &coarse, coarse_side, coarse_side, &MatteParams::default());
        let refined: Vec<f32> = refined.as_raw().iter().map(|&a| f32::from(a) / 255.0).collect();
        assert!(
            error(&refined) < error(&plain) * 0.7,
            "refined {} vs plain resize {}",
            error(&refined),
            error(&plain)
        );
        // The interior is exactly opaque, the far background exactly clear.
        assert_eq!(refined[256 * 512 + 256], 1.0);
        assert_eq!(refined[5 * 512 + 5], 0.0);
    }

    #[test]
    fn a_large_photo_is_shrunk_by_a_whole_factor_to_block_means() {
        let params = MatteParams { work_side: 2, ..MatteParams::default() };
        let photo = RgbaImage::from_fn(5, 4, |x, y| Rgba([(x * 10) as u8, (y * 10) as u8, 7, 255]));
        let small = working_image(&photo, &params).expect("larger than the working side");
        // Factor 3: blocks of 3x3, the last column and row partial.
        assert_eq!(small.dimensions(), (2, 2));
        assert_eq!(small.get_pixel(0, 0).0, [10, 10, 7, 255]);
        assert_eq!(small.get_pixel(1, 1).0, [35, 30, 7, 255]);
        assert!(working_image(&photo, &MatteParams::default()).is_none());
    }

    #[test]
    fn the_cutout_keeps_colours_and_never_grows_alpha() {
        let photo = RgbaImage::from_fn(4, 1, |x, _| {
            Rgba([x as u8 * 50, 1, 2, if x == 3 { 10 } else { 255 }])
        });
        let matte = GrayImage::from_raw(4, 1, vec![0, 128, 255, 255]).expect("size");
        let cut = apply_matte(&photo, &matte);
        let alphas: Vec<u8> = cut.pixels().map(|p| p.0[3]).collect();
        assert_eq!(alphas, vec![0, 128, 255, 10]);
        assert!(cut.pixels().zip(photo.pixels()).all(|(a, b)| a.0[..3] == b.0[..3]));
        assert!(
            has_transparency(&cut)
                && !has_transparency(&RgbaImage::from_pixel(2, 2, Rgba([0, 0, 0, 255])))
        );
    }
}
