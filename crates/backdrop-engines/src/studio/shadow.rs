//! The contact shadow a cut-out casts on the backdrop.
//!
//! All geometry and blurring happen on the alpha downsampled by [`FACTOR`]: a shadow is
//! soft by nature, so the lost detail is invisible, and the blurs cost a sixteenth. The
//! result is sampled bilinearly at full resolution while the backdrop is shaded.
//!
//! Three layers, combined like stacked gels (`1 - (1-a)(1-b)(1-c)`):
//! - *contact*: a thin dark band just under the object's lowest edge, where it touches
//!   the floor and almost no light reaches;
//! - *cast*: the alpha projected onto the floor, squashed toward the horizon and sheared
//!   away from the key light, fading and softening with height;
//! - *ambient*: a wide, faint pool around the footprint.
//!
//! [`Cutout::shadow`] is the engine's own look, its light taken from the image's
//! variant. [`Cutout::styled`] draws an explicit [`ShadowSpec`] from the same layers,
//! for the pipeline to lay on any engine's output ([`crate::framing`]): `contact` is the
//! contact band with a little ambient; `soft` a short, very blurred cast plus a wide
//! pool; `hard` a long, barely blurred cast; `floating` the object's width profile laid
//! flat a little below its lowest row, with no contact. A cast is the alpha splatted
//! along the requested direction on a floor foreshortened by [`FLOOR_SQUASH`].

use super::{tap, FACTOR};
use backdrop_core::{ShadowSpec, ShadowStyle};
use backdrop_imaging::blur::gaussian_approx;
use image::RgbaImage;
use rayon::prelude::*;

/// Shadow values below this leave a pixel untouched (less than half a level on white).
const EPSILON: f32 = 1.0 / 1024.0;

/// A cut-out's alpha at working resolution and where it stands.
#[derive(Debug, Clone)]
pub(crate) struct Cutout {
    alpha: Vec<f32>,
    sw: usize,
    sh: usize,
    width: usize,
    height: usize,
    /// Lowest solid row of each column, if any.
    bottom: Vec<Option<usize>>,
    /// Lowest and highest solid rows overall.
    base: usize,
    top: usize,
}

impl Cutout {
    /// The object in `canvas` (alpha > 0); `None` when the canvas holds none.
    pub(crate) fn from_canvas(canvas: &RgbaImage) -> Option<Cutout> {
        let (width, height) = (canvas.width() as usize, canvas.height() as usize);
        if width == 0 || height == 0 {
            return None;
        }
        let (sw, sh) = (width.div_ceil(FACTOR), height.div_ceil(FACTOR));
        let raw = canvas.as_raw();
        let mut alpha = vec![0.0f32; sw * sh];
        alpha.par_chunks_mut(sw).enumerate().for_each(|(sy, out)| {
            let (y0, y1) = (sy * FACTOR, ((sy + 1) * FACTOR).min(height));
            for (sx, o) in out.iter_mut().enumerate() {
                let (x0, x1) = (sx * FACTOR, ((sx + 1) * FACTOR).min(width));
                let mut sum = 0u32;
                for y in y0..y1 {
                    let line = &raw[(y * width + x0) * 4..(y * width + x1) * 4];
                    sum += line.chunks_exact(4).map(|p| u32::from(p[3])).sum::<u32>();
                }
                *o = sum as f32 / (255.0 * ((y1 - y0) * (x1 - x0)) as f32);
            }
        });

        // "Solid" ignores a faint antialiased fringe; an object made only of fringe (a
        // hairline) still counts.
        let solid = if alpha.iter().any(|&a| a > 0.3) { 0.3 } else { 0.0 };
        let bottom: Vec<Option<usize>> =
            (0..sw).map(|x| (0..sh).rev().find(|&y| alpha[y * sw + x] > solid)).collect();
        let base = bottom.iter().flatten().copied().max()?;
        let top = (0..sh).find(|&y| alpha[y * sw..(y + 1) * sw].iter().any(|&a| a > solid))?;
        Some(Cutout { alpha, sw, sh, width, height, bottom, base, top })
    }

    /// Height of the object in working-plane rows.
    fn tall(&self) -> f32 {
        (self.base - self.top + 1) as f32
    }

    /// A thin band under the columns that touch the floor, 1 at the edge fading down.
    /// Only columns that reach (nearly) the lowest row touch it; a mug's handle ends
    /// higher and casts no contact line.
    fn contact_plane(&self) -> Vec<f32> {
        let (sw, sh, tall) = (self.sw, self.sh, self.tall());
        let band = (0.05 * tall).round().max(1.0) as usize;
        let depth = (0.025 * tall).round().max(1.0) as usize;
        let mut contact = vec![0.0f32; sw * sh];
        for (x, b) in self.bottom.iter().enumerate() {
            let Some(b) = *b else { continue };
            if b + band < self.base {
                continue;
            }
            for k in 0..=depth {
                let y = b + k;
                if y >= sh {
                    break;
                }
                contact[y * sw + x] = 1.0 - k as f32 / (depth + 1) as f32;
            }
        }
        contact
    }

    /// The shadow for a light that shears it by `skew` per unit of height, reaching back
    /// `squash` of the object's height, at peak darkness `strength`.
    pub(crate) fn shadow(&self, skew: f32, squash: f32, strength: f32) -> ShadowMap {
        let (sw, sh) = (self.sw, self.sh);
        let tall = (self.base - self.top + 1) as f32;

        let contact = self.contact_plane();

        // Cast: each floor row behind the base looks up the object row whose projection
        // lands there, so the projection has no holes however it is squashed.
        let squash = squash.max(0.01);
        let mut cast = vec![0.0f32; sw * sh];
        let reach = (tall * squash).ceil() as usize + 1;
        for yd in self.base.saturating_sub(reach)..=self.base {
            let lift = (self.base - yd) as f32 / squash;
            if lift > tall {
                continue;
            }
            let ys = (self.base as f32 - lift).round() as usize;
            let fade = 1.0 - 0.6 * lift / tall;
            let shift = lift * skew;
            let src = &self.alpha[ys * sw..(ys + 1) * sw];
            for (xd, out) in cast[yd * sw..(yd + 1) * sw].iter_mut().enumerate() {
                let xs = (xd as f32 - shift).round();
                if xs >= 0.0 && (xs as usize) < sw {
                    *out = src[xs as usize] * fade;
                }
            }
        }

        // Blur only the box the shadow can reach: the sources' bounds grown by the
        // widest blur's support. Outside it every value is zero either way, so the
        // result is the same as blurring the whole plane, for a fraction of the work.
        let sigmas = [(0.012 * tall).max(0.7), (0.035 * tall).max(1.0), (0.09 * tall).max(2.0)];
        let Some(((x0, x1), (y0, y1))) = bounds(&[&contact[..], &cast[..]], sw) else {
            return ShadowMap::new(vec![0.0; sw * sh], sw, sh, self.width, self.height);
        };
        let margin = 3 * box_radius(sigmas[2]) + 2;
        let (x0, x1) = (x0.saturating_sub(margin), (x1 + margin + 1).min(sw));
        let (y0, y1) = (y0.saturating_sub(margin), (y1 + margin + 1).min(sh));
        let (cw, ch) = (x1 - x0, y1 - y0);
        let crop = |plane: &[f32]| -> Vec<f32> {
            (y0..y1).flat_map(|y| plane[y * sw + x0..y * sw + x1].iter().copied()).collect()
        };
        let (mut contact, mut cast, mut ambient) = (crop(&contact), crop(&cast), crop(&contact));

        let blur = |plane: &mut Vec<f32>, sigma: f32, normalise: bool| {
            gaussian_approx(plane, cw, ch, sigma);
            if normalise {
                let peak = plane.iter().copied().fold(0.0f32, f32::max);
                if peak > 0.0 {
                    plane.iter_mut().for_each(|v| *v /= peak);
                }
            }
        };
        rayon::join(
            || blur(&mut contact, sigmas[0], true),
            || {
                rayon::join(
                    || blur(&mut cast, sigmas[1], false),
                    || blur(&mut ambient, sigmas[2], true),
                )
            },
        );

        let mut plane = vec![0.0f32; sw * sh];
        for (i, ((c, p), a)) in contact.iter().zip(&cast).zip(&ambient).enumerate() {
            let s = 1.0 - (1.0 - 0.85 * c) * (1.0 - 0.5 * p) * (1.0 - 0.3 * a);
            plane[(y0 + i / cw) * sw + x0 + i % cw] = (s * strength).clamp(0.0, 0.95);
        }
        ShadowMap::new(plane, sw, sh, self.width, self.height)
    }
}

/// How much the floor's depth is foreshortened on screen: a shadow reaching back one
/// unit covers this many units of image height (the floor seen from slightly above).
const FLOOR_SQUASH: f32 = 0.3;

/// The depth a flat cut-out is given when it casts a shadow, as a fraction of its height.
const SHADOW_DEPTH: f32 = 0.25;

impl Cutout {
    /// The shadow of an explicit [`ShadowSpec`] (see [`backdrop_core::framing`]), cast
    /// on the floor plane the object stands on: its lowest visible row.
    pub(crate) fn styled(&self, spec: &ShadowSpec) -> ShadowMap {
        let (sw, sh, tall) = (self.sw, self.sh, self.tall());
        let (direction, opacity, softness) = spec.resolved();
        let (sin, cos) = direction.to_radians().sin_cos();
        // (plane, blur sigma in rows, normalise to a peak of 1, weight)
        let mut layers: Vec<(Vec<f32>, f32, bool, f32)> = Vec::new();
        let sized = |k: f32, min: f32| (k * tall).max(min);
        match spec.style {
            ShadowStyle::None => {}
            ShadowStyle::Contact => {
                layers.push((self.contact_plane(), sized(0.006 + 0.03 * softness, 0.6), true, 0.9));
                layers.push((self.contact_plane(), sized(0.03 + 0.08 * softness, 1.5), true, 0.3));
            }
            ShadowStyle::Soft => {
                let cast = self.cast_plane(sin, cos, 0.7, 0.7);
                layers.push((cast, sized(0.04 + 0.1 * softness, 1.0), false, 0.85));
                let pool = shifted(&self.contact_plane(), sw, sh, 0.1 * tall, sin, cos);
                layers.push((pool, sized(0.05 + 0.05 * softness, 2.0), true, 0.25));
                layers.push((self.contact_plane(), sized(0.01, 0.7), true, 0.3));
            }
            ShadowStyle::Hard => {
                let cast = self.cast_plane(sin, cos, 0.9, 0.35);
                layers.push((cast, sized(0.003 + 0.05 * softness, 0.5), false, 0.95));
                layers.push((self.contact_plane(), sized(0.008, 0.6), true, 0.6));
            }
            ShadowStyle::Floating => {
                layers.push((
                    self.footprint(sin, cos),
                    sized(0.03 + 0.07 * softness, 1.5),
                    true,
                    1.0,
                ));
            }
        }
        let mut plane = vec![0.0f32; sw * sh];
        if !layers.is_empty() {
            layers.par_iter_mut().for_each(|(layer, sigma, normalise, _)| {
                blur_region(layer, sw, sh, *sigma, *normalise)
            });
            plane.par_iter_mut().enumerate().for_each(|(i, out)| {
                let light: f32 = layers.iter().map(|(l, _, _, w)| 1.0 - w * l[i]).product();
                *out = ((1.0 - light) * opacity).clamp(0.0, 0.95);
            });
        }
        ShadowMap::new(plane, sw, sh, self.width, self.height)
    }

    /// The alpha projected onto the floor along `(sin, cos)` (clockwise from straight
    /// back), a row at height `lift` landing `lift * length` away and fading by
    /// `fade` at the top. A cut-out has no depth, so each projected row is given some
    /// ([`SHADOW_DEPTH`] of the height, foreshortened): a shadow cast sideways is a band,
    /// not a line. Projected rows are thinner than source rows (the floor is squashed),
    /// so splatting each source row leaves no holes; overlaps keep the darkest value.
    fn cast_plane(&self, sin: f32, cos: f32, length: f32, fade: f32) -> Vec<f32> {
        let (sw, sh, tall) = (self.sw, self.sh, self.tall());
        let depth = (SHADOW_DEPTH * tall * FLOOR_SQUASH).round().max(1.0) as isize;
        let mut cast = vec![0.0f32; sw * sh];
        for ys in self.top..=self.base {
            let lift = (self.base - ys) as f32;
            let reach = lift * length;
            let centre = (self.base as f32 - reach * cos * FLOOR_SQUASH).round() as isize;
            let shift = (reach * sin).round() as isize;
            let k = 1.0 - fade * lift / tall;
            let src = &self.alpha[ys * sw..(ys + 1) * sw];
            for yd in
                (centre - depth / 2..=centre + depth / 2).filter(|y| (0..sh as isize).contains(y))
            {
                let dst = &mut cast[yd as usize * sw..(yd as usize + 1) * sw];
                for (xs, a) in src.iter().enumerate().filter(|(_, a)| **a > 0.0) {
                    let xd = xs as isize + shift;
                    if (0..sw as isize).contains(&xd) {
                        let d = &mut dst[xd as usize];
                        *d = d.max(a * k);
                    }
                }
            }
        }
        cast
    }

    /// The object's width profile laid flat on the floor a little below its lowest row
    /// (it hovers), nudged along `(sin, cos)`.
    fn footprint(&self, sin: f32, cos: f32) -> Vec<f32> {
        let (sw, sh, tall) = (self.sw, self.sh, self.tall());
        let mut profile = vec![0.0f32; sw];
        for y in self.top..=self.base {
            for (p, a) in profile.iter_mut().zip(&self.alpha[y * sw..(y + 1) * sw]) {
                *p = p.max(*a);
            }
        }
        let nudge = 0.12 * tall;
        let centre = self.base as f32 + 0.12 * tall - nudge * cos * FLOOR_SQUASH;
        let shift = (nudge * sin).round() as isize;
        let half = (0.025 * tall).max(1.0);
        let mut plane = vec![0.0f32; sw * sh];
        let rows = (centre - half).round().max(0.0) as usize..=((centre + half).round() as usize);
        for y in rows.filter(|y| *y < sh) {
            for (x, p) in profile.iter().enumerate() {
                let xd = x as isize + shift;
                if (0..sw as isize).contains(&xd) {
                    plane[y * sw + xd as usize] = *p;
                }
            }
        }
        plane
    }
}

/// `plane` moved `distance` rows along the floor direction `(sin, cos)`.
fn shifted(plane: &[f32], sw: usize, sh: usize, distance: f32, sin: f32, cos: f32) -> Vec<f32> {
    let dx = (distance * sin).round() as isize;
    let dy = (-distance * cos * FLOOR_SQUASH).round() as isize;
    let mut out = vec![0.0f32; sw * sh];
    for (i, v) in plane.iter().enumerate().filter(|(_, v)| **v > 0.0) {
        let (x, y) = ((i % sw) as isize + dx, (i / sw) as isize + dy);
        if (0..sw as isize).contains(&x) && (0..sh as isize).contains(&y) {
            out[y as usize * sw + x as usize] = *v;
        }
    }
    out
}

/// Blurs `plane` by `sigma` inside the box its non-zero values can reach (the same
/// result as blurring the whole plane, for a fraction of the work), then scales it to a
/// peak of 1 when `normalise` is set.
fn blur_region(plane: &mut [f32], sw: usize, sh: usize, sigma: f32, normalise: bool) {
    let Some(((x0, x1), (y0, y1))) = bounds(&[plane], sw) else { return };
    let margin = 3 * box_radius(sigma) + 2;
    let (x0, x1) = (x0.saturating_sub(margin), (x1 + margin + 1).min(sw));
    let (y0, y1) = (y0.saturating_sub(margin), (y1 + margin + 1).min(sh));
    let cw = x1 - x0;
    let mut crop: Vec<f32> =
        (y0..y1).flat_map(|y| plane[y * sw + x0..y * sw + x1].iter().copied()).collect();
    gaussian_approx(&mut crop, cw, y1 - y0, sigma);
    let peak = if normalise { crop.iter().copied().fold(0.0f32, f32::max) } else { 1.0 };
    let scale = if peak > 0.0 { 1.0 / peak } else { 1.0 };
    for (i, v) in crop.iter().enumerate() {
        plane[(y0 + i / cw) * sw + x0 + i % cw] = v * scale;
    }
}

/// Half-width of each box pass [`gaussian_approx`] uses for `sigma`, hence a third of
/// its total reach.
fn box_radius(sigma: f32) -> usize {
    (((4.0 * sigma * sigma + 1.0).sqrt() - 1.0) / 2.0).round().max(1.0) as usize
}

/// Columns and rows (inclusive) holding any non-zero value of the planes.
fn bounds(planes: &[&[f32]], width: usize) -> Option<((usize, usize), (usize, usize))> {
    let mut b: Option<((usize, usize), (usize, usize))> = None;
    for plane in planes {
        for (i, _) in plane.iter().enumerate().filter(|(_, v)| **v > 0.0) {
            let (x, y) = (i % width, i / width);
            b = Some(match b {
                None => ((x, x), (y, y)),
                Some(((xa, xb), (ya, yb))) => ((xa.min(x), xb.max(x)), (ya.min(y), yb.max(y))),
            });
        }
    }
    b
}

/// A shadow at working resolution with the full-resolution box it can touch.
#[derive(Debug, Clone)]
pub(crate) struct ShadowMap {
    plane: Vec<f32>,
    sw: usize,
    sh: usize,
    /// Full-resolution rows and columns outside which the shadow is zero.
    rows: (usize, usize),
    cols: (usize, usize),
}

/// Bilinear lookups of the columns inside the shadow's box.
#[derive(Debug, Clone)]
pub(crate) struct ShadowColumns {
    start: usize,
    taps: Vec<(u32, u32, f32)>,
}

/// Bilinear lookup of one row: the two plane rows and the weight of the second.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ShadowRow {
    r0: usize,
    r1: usize,
    t: f32,
}

impl ShadowMap {
    fn new(plane: Vec<f32>, sw: usize, sh: usize, width: usize, height: usize) -> ShadowMap {
        let mut bx = (usize::MAX, 0usize);
        let mut by = (usize::MAX, 0usize);
        for (i, &s) in plane.iter().enumerate() {
            if s >= EPSILON {
                let (x, y) = (i % sw, i / sw);
                bx = (bx.0.min(x), bx.1.max(x));
                by = (by.0.min(y), by.1.max(y));
            }
        }
        // A full-resolution pixel blends its two nearest plane samples, so the box grows
        // by one sample each side.
        let to_full = |(lo, hi): (usize, usize), full: usize| {
            if lo > hi {
                (0, 0)
            } else {
                (lo.saturating_sub(1) * FACTOR, ((hi + 2) * FACTOR).min(full))
            }
        };
        ShadowMap { rows: to_full(by, height), cols: to_full(bx, width), plane, sw, sh }
    }

    /// Column lookups for an image `width` wide.
    pub(crate) fn columns(&self) -> ShadowColumns {
        let (start, end) = self.cols;
        let taps = (start..end)
            .map(|x| {
                let (i0, i1, t) = tap(x, self.sw);
                (i0 as u32, i1 as u32, t)
            })
            .collect();
        ShadowColumns { start, taps }
    }

    /// The row lookup for full-resolution row `y`, or `None` when the row is unshaded.
    pub(crate) fn row(&self, y: usize) -> Option<ShadowRow> {
        if y < self.rows.0 || y >= self.rows.1 {
            return None;
        }
        let (r0, r1, t) = tap(y, self.sh);
        Some(ShadowRow { r0: r0 * self.sw, r1: r1 * self.sw, t })
    }

    /// Multiplies one row's light by `1 - shadow`.
    pub(crate) fn darken_row(&self, cols: &ShadowColumns, y: usize, light: &mut [f32]) {
        let Some(row) = self.row(y) else { return };
        let p = &self.plane;
        let (top, bottom) = (&p[row.r0..row.r0 + self.sw], &p[row.r1..row.r1 + self.sw]);
        for (m, &(c0, c1, u)) in light[cols.start..].iter_mut().zip(&cols.taps) {
            let (c0, c1) = (c0 as usize, c1 as usize);
            let a = top[c0] + (top[c1] - top[c0]) * u;
            let b = bottom[c0] + (bottom[c1] - bottom[c0]) * u;
            *m *= 1.0 - (a + (b - a) * row.t);
        }
    }

    /// Darkness at full-resolution pixel `(x, y)`; for tests and tools.
    #[cfg(test)]
    pub(crate) fn sample(&self, x: usize, y: usize) -> f32 {
        let mut light = vec![1.0f32; self.cols.1.max(x + 1)];
        self.darken_row(&self.columns(), y, &mut light);
        1.0 - light[x]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(width: u32, height: u32, x: (u32, u32), y: (u32, u32)) -> RgbaImage {
        RgbaImage::from_fn(width, height, |px, py| {
            let inside = (x.0..x.1).contains(&px) && (y.0..y.1).contains(&py);
            image::Rgba([90, 60, 30, if inside { 255 } else { 0 }])
        })
    }

    #[test]
    fn empty_canvas_has_no_cutout() {
        assert!(Cutout::from_canvas(&RgbaImage::new(40, 30)).is_none());
    }

    #[test]
    fn contact_is_darkest_just_under_the_base_and_zero_far_away() {
        let canvas = block(200, 160, (80, 120), (40, 120));
        let cutout = Cutout::from_canvas(&canvas).expect("object");
        let map = cutout.shadow(0.4, 0.25, 0.6);
        let under = map.sample(100, 122);
        assert!(under > 0.3, "under the base: {under}");
        assert!(map.sample(100, 150) < under);
        assert_eq!(map.sample(0, 0), 0.0);
        assert_eq!(map.sample(199, 0), 0.0);
    }

    #[test]
    fn the_cast_shadow_falls_away_from_the_light() {
        let canvas = block(240, 200, (100, 130), (20, 150));
        let cutout = Cutout::from_canvas(&canvas).expect("object");
        // Light on the left (positive skew): the shadow reaches out to the right.
        let map = cutout.shadow(0.6, 0.3, 0.6);
        let right = map.sample(150, 135);
        let left = map.sample(80, 135);
        assert!(right > left + 0.05, "right {right} left {left}");
    }
}
