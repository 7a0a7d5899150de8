//! The smooth fallback of the finest level: where the fill copies smooth content (sky,
//! a plain wall, an out-of-focus background) it becomes a smooth continuation.
//!
//! Patches copied from different parts of a smooth gradient differ slightly in
//! brightness, and where two of them meet the eye sees a straight, hard-edged block that
//! no texture hides. A fill pixel whose source patch is itself flat carries no detail worth
//! keeping, so it is replaced by a blurred version of the fill; pixels copying texture
//! keep it. The share blends smoothly between the two, so no edge appears where the
//! content changes from flat to textured.

use super::level::{unpack, Level, CHANNELS};
use super::matcher::{Nnf, NONE};
use backdrop_imaging::blur::{box_blur, gaussian_approx};

/// Tuning of the fallback.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SmoothParams {
    /// Patch radius: the window over which a source's flatness is measured.
    pub radius: usize,
    /// Standard deviation (grey levels) of a source window at or below which the fill
    /// is fully smoothed.
    pub flat: f32,
    /// Standard deviation at or above which the fill is kept as copied.
    pub textured: f32,
    /// Blur (Gaussian sigma, pixels) of the smooth continuation.
    pub sigma: f32,
}

/// Blends the hole of `level` toward its blur wherever the matched sources are flat.
pub(crate) fn smooth_fallback(level: &mut Level, nnf: &Nnf, params: SmoothParams) {
    let (w, h) = (level.w, level.h);
    if params.sigma <= 0.0 || w == 0 || h == 0 {
        return;
    }
    let grey: Vec<f32> = level
        .img
        .chunks_exact(CHANNELS)
        .map(|p| 0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2]))
        .collect();
    let mut mean = grey.clone();
    let mut square: Vec<f32> = grey.iter().map(|g| g * g).collect();
    box_blur(&mut mean, w, h, params.radius.max(1));
    box_blur(&mut square, w, h, params.radius.max(1));
    let spread = (params.textured - params.flat).max(1e-3);
    let mut share: Vec<f32> = (0..w * h)
        .map(|q| {
            let s = nnf.src[q];
            if level.known[q] || s == NONE {
                return 0.0;
            }
            let (sx, sy) = unpack(s);
            let i = sy * w + sx;
            let sd = (square[i] - mean[i] * mean[i]).max(0.0).sqrt();
            ((params.textured - sd) / spread).clamp(0.0, 1.0)
        })
        .collect();
    // Soften the share so it never switches at a pixel boundary.
    gaussian_approx(&mut share, w, h, params.sigma * 0.5);
    if share.iter().all(|&a| a < 1e-3) {
        return;
    }
    for c in 0..3 {
        let mut plane: Vec<f32> =
            level.img.chunks_exact(CHANNELS).map(|p| f32::from(p[c])).collect();
        let original = plane.clone();
        gaussian_approx(&mut plane, w, h, params.sigma);
        for (q, px) in level.img.chunks_exact_mut(CHANNELS).enumerate() {
            if level.known[q] || share[q] <= 0.0 {
                continue;
            }
            let a = share[q];
            px[c] = (a * plane[q] + (1.0 - a) * original[q]).round().clamp(0.0, 255.0) as u8;
        }
    }
}
