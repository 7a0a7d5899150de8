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
use rayon::prelude::*;

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
    // The window statistics and, below, the three colour planes are blurred in parallel:
    // each blur is a sequential pass over the whole level.
    let blurred = |mut plane: Vec<f32>| {
        box_blur(&mut plane, w, h, params.radius.max(1));
        plane
    };
    let square: Vec<f32> = grey.iter().map(|g| g * g).collect();
    let (mean, square) = rayon::join(|| blurred(grey), || blurred(square));
    let spread = (params.textured - params.flat).max(1e-3);
    let share: Vec<f32> = (0..w * h)
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
    let share = blur_half(&share, w, h, params.sigma * 0.5);
    if share.iter().all(|&a| a < 1e-3) {
        return;
    }
    let planes: Vec<Vec<f32>> = (0..3)
        .into_par_iter()
        .map(|c| {
            let plane: Vec<f32> =
                level.img.chunks_exact(CHANNELS).map(|p| f32::from(p[c])).collect();
            blur_half(&plane, w, h, params.sigma)
        })
        .collect();
    let known = &level.known;
    level.img.par_chunks_mut(CHANNELS).enumerate().for_each(|(q, px)| {
        let a = share[q];
        if known[q] || a <= 0.0 {
            return;
        }
        for (c, plane) in planes.iter().enumerate() {
            let v = a * plane[q] + (1.0 - a) * f32::from(px[c]);
            px[c] = v.round().clamp(0.0, 255.0) as u8;
        }
    });
}

/// `plane` blurred by a Gaussian of `sigma`, computed at half resolution (2 x 2 means,
/// blurred by `sigma / 2`, read back bilinearly): a smooth result loses nothing at half
/// resolution, and the blur costs a quarter.
fn blur_half(plane: &[f32], w: usize, h: usize, sigma: f32) -> Vec<f32> {
    let (hw, hh) = (w.div_ceil(2), h.div_ceil(2));
    let mut half = vec![0f32; hw * hh];
    for (hy, row) in half.chunks_exact_mut(hw).enumerate() {
        for (hx, v) in row.iter_mut().enumerate() {
            let (mut sum, mut n) = (0.0, 0.0);
            for y in 2 * hy..(2 * hy + 2).min(h) {
                for x in 2 * hx..(2 * hx + 2).min(w) {
                    sum += plane[y * w + x];
                    n += 1.0;
                }
            }
            *v = sum / n;
        }
    }
    gaussian_approx(&mut half, hw, hh, sigma * 0.5);
    let mut out = vec![0f32; w * h];
    out.par_chunks_mut(w).enumerate().for_each(|(y, row)| {
        // Pixel centres: full-size y + 0.5 sits at half-size (y + 0.5) / 2.
        let fy = ((y as f32 + 0.5) * 0.5 - 0.5).clamp(0.0, (hh - 1) as f32);
        let y0 = fy as usize;
        let y1 = (y0 + 1).min(hh - 1);
        let ty = fy - y0 as f32;
        for (x, v) in row.iter_mut().enumerate() {
            let fx = ((x as f32 + 0.5) * 0.5 - 0.5).clamp(0.0, (hw - 1) as f32);
            let x0 = fx as usize;
            let x1 = (x0 + 1).min(hw - 1);
            let tx = fx - x0 as f32;
            let top = half[y0 * hw + x0] * (1.0 - tx) + half[y0 * hw + x1] * tx;
            let bottom = half[y1 * hw + x0] * (1.0 - tx) + half[y1 * hw + x1] * tx;
            *v = top * (1.0 - ty) + bottom * ty;
        }
    });
    out
}
