//! The studio fill for an expansion: the photo's border colours, blurred outward.
//!
//! Known pixels (alpha 255) are averaged into blocks at a quarter of the resolution.
//! Every block outside the photo takes the colour of its nearest known block, so the
//! border is stretched outward (sky continues as sky beside the photo, grass as grass),
//! and that stretched plane is blurred at three widths. Each block then blends the
//! widths by its distance from the photo, like a lens going out of focus: crisp next to
//! the border, soft far away, with no seam between rings. The result is a soft,
//! plausible continuation rather than a reconstruction; the `patch` engine is the one
//! that synthesises texture.

use super::rng::{grain, RowNoise};
use super::{tap, FACTOR};
use backdrop_imaging::blur::gaussian_approx;
use image::{RgbImage, RgbaImage};
use rayon::prelude::*;

/// Colour used when the canvas has no known pixel at all.
const NEUTRAL: [f32; 3] = [0.9, 0.9, 0.9];

/// The fill for `canvas`; known pixels are copied, soft-edged ones blended.
pub(crate) fn continue_border(canvas: &RgbaImage, grain_seed: u32, grain_amp: f32) -> RgbImage {
    let (width, height) = (canvas.width() as usize, canvas.height() as usize);
    let mut out = RgbImage::new(canvas.width(), canvas.height());
    if width == 0 || height == 0 {
        return out;
    }
    let (sw, sh) = (width.div_ceil(FACTOR), height.div_ceil(FACTOR));
    let raw = canvas.as_raw();

    // Mean colour of the known pixels of each block, if it has any.
    let blocks: Vec<Option<[f32; 3]>> = (0..sh)
        .into_par_iter()
        .flat_map_iter(|sy| {
            let (y0, y1) = (sy * FACTOR, ((sy + 1) * FACTOR).min(height));
            (0..sw).map(move |sx| {
                let (x0, x1) = (sx * FACTOR, ((sx + 1) * FACTOR).min(width));
                let mut acc = [0u32; 4];
                for y in y0..y1 {
                    for p in raw[(y * width + x0) * 4..(y * width + x1) * 4].chunks_exact(4) {
                        if p[3] == 255 {
                            for (a, v) in acc.iter_mut().zip([p[0], p[1], p[2], 1]) {
                                *a += u32::from(v);
                            }
                        }
                    }
                }
                (acc[3] > 0).then(|| [0, 1, 2].map(|c| acc[c] as f32 / (255.0 * acc[3] as f32)))
            })
        })
        .collect();

    let fill = match nearest_known(&blocks, sw, sh) {
        Some(nearest) => blur_by_distance(&blocks, &nearest, sw, sh),
        None => vec![NEUTRAL; sw * sh],
    };

    let col_taps: Vec<(usize, usize, f32)> = (0..width).map(|x| tap(x, sw)).collect();
    let hf = height as f32;
    out.par_chunks_mut(width * 3).enumerate().for_each_init(
        || vec![[0.0f32; 3]; sw],
        |line, (y, row)| {
            // Interpolate between plane rows once per row; pixels then only blend
            // horizontally.
            let (r0, r1, t) = tap(y, sh);
            for (l, (a, b)) in
                line.iter_mut().zip(fill[r0 * sw..(r0 + 1) * sw].iter().zip(&fill[r1 * sw..]))
            {
                *l = [0, 1, 2].map(|c| a[c] + (b[c] - a[c]) * t);
            }
            // A faint low-frequency mottle keeps large flat areas from looking printed.
            let mut mottle = RowNoise::new(y as f32 / hf * 6.0, grain_seed ^ 0x6d2b);
            let src_row = &raw[y * width * 4..(y + 1) * width * 4];
            for (x, (px, src)) in row.chunks_exact_mut(3).zip(src_row.chunks_exact(4)).enumerate() {
                if src[3] == 255 {
                    px.copy_from_slice(&src[..3]);
                    continue;
                }
                let a = f32::from(src[3]) / 255.0;
                let (c0, c1, u) = col_taps[x];
                let k = 1.0 + 0.02 * (mottle.at(x as f32 / hf * 6.0) - 0.5);
                let noise = grain_amp * grain(x as i32, y as i32, grain_seed);
                for ch in 0..3 {
                    let left = line[c0][ch];
                    let generated = (left + (line[c1][ch] - left) * u) * k + noise;
                    let known = f32::from(src[ch]) / 255.0;
                    let v = generated + (known - generated) * a;
                    px[ch] = (v * 255.0 + 0.5).clamp(0.0, 255.0) as u8;
                }
            }
        },
    );
    out
}

/// For every block, the nearest block holding known pixels (as `(x, y)`), or `None`
/// when there is none at all. Two raster passes propagate nearest candidates from the
/// eight neighbours (the 8SSEDT scheme), which is exact up to rare ties and costs a few
/// operations per block.
fn nearest_known(blocks: &[Option<[f32; 3]>], sw: usize, sh: usize) -> Option<Vec<(i32, i32)>> {
    const NONE: (i32, i32) = (i32::MIN / 4, i32::MIN / 4);
    let mut near: Vec<(i32, i32)> = (0..sw * sh)
        .map(|i| if blocks[i].is_some() { ((i % sw) as i32, (i / sw) as i32) } else { NONE })
        .collect();
    if near.iter().all(|&n| n == NONE) {
        return None;
    }
    let d2 = |(x, y): (i32, i32), (sx, sy): (i32, i32)| -> i64 {
        let (dx, dy) = (i64::from(x - sx), i64::from(y - sy));
        dx * dx + dy * dy
    };
    let (w, h) = (sw as i32, sh as i32);
    let relax = |near: &mut Vec<(i32, i32)>, x: i32, y: i32, offsets: &[(i32, i32)]| {
        let here = (y * w + x) as usize;
        for &(ox, oy) in offsets {
            let (nx, ny) = (x + ox, y + oy);
            if nx < 0 || ny < 0 || nx >= w || ny >= h {
                continue;
            }
            let candidate = near[(ny * w + nx) as usize];
            if candidate != NONE && d2((x, y), candidate) < d2((x, y), near[here]) {
                near[here] = candidate;
            }
        }
    };
    for y in 0..h {
        for x in 0..w {
            relax(&mut near, x, y, &[(-1, 0), (-1, -1), (0, -1), (1, -1)]);
        }
        for x in (0..w).rev() {
            relax(&mut near, x, y, &[(1, 0)]);
        }
    }
    for y in (0..h).rev() {
        for x in (0..w).rev() {
            relax(&mut near, x, y, &[(1, 0), (1, 1), (0, 1), (-1, 1)]);
        }
        for x in 0..w {
            relax(&mut near, x, y, &[(-1, 0)]);
        }
    }
    Some(near)
}

/// The border stretched outward and blurred more the further a block is from it.
fn blur_by_distance(
    blocks: &[Option<[f32; 3]>],
    nearest: &[(i32, i32)],
    sw: usize,
    sh: usize,
) -> Vec<[f32; 3]> {
    let stretched: Vec<[f32; 3]> = nearest
        .iter()
        .map(|&(x, y)| blocks[y as usize * sw + x as usize].unwrap_or(NEUTRAL))
        .collect();
    // Widths relative to the frame so the look does not change with resolution.
    let span = sw.max(sh) as f32;
    let sigmas = [(0.01 * span).max(1.0), (0.04 * span).max(2.0), (0.16 * span).max(4.0)];
    let mut levels: Vec<Vec<f32>> =
        (0..9).map(|i| stretched.iter().map(|c| c[i % 3]).collect()).collect();
    levels.par_iter_mut().enumerate().for_each(|(i, plane)| {
        gaussian_approx(plane, sw, sh, sigmas[i / 3]);
    });

    nearest
        .par_iter()
        .enumerate()
        .map(|(i, &(nx, ny))| {
            let (dx, dy) = ((i % sw) as f32 - nx as f32, (i / sw) as f32 - ny as f32);
            // Defocus grows with distance; between two widths, blend linearly.
            let want = sigmas[0] + 0.6 * (dx * dx + dy * dy).sqrt();
            let (lo, t) = if want <= sigmas[1] {
                (0, (want - sigmas[0]) / (sigmas[1] - sigmas[0]))
            } else {
                (1, ((want - sigmas[1]) / (sigmas[2] - sigmas[1])).min(1.0))
            };
            [0, 1, 2].map(|c| {
                let a = levels[lo * 3 + c][i];
                a + (levels[(lo + 1) * 3 + c][i] - a) * t.max(0.0)
            })
        })
        .collect()
}
