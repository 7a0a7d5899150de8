//! The nearest-neighbour field (NNF) and the two halves of one EM iteration: the
//! PatchMatch search (propagation and random search) and the vote that rebuilds the hole
//! from the matched patches.
//!
//! Parallel passes are deterministic by construction: a search pass splits the image
//! into fixed bands of rows (their boundaries depend on the pass, not on the thread
//! count); each band is scanned sequentially with its own seeded generator and reads
//! rows outside itself only from a snapshot taken before the pass. The vote gathers, for
//! each output pixel, from read-only inputs.

use super::level::{pack, unpack, Level, CHANNELS};
use crate::rng::SplitMix64 as Rng;
use rayon::prelude::*;

/// Marks a pixel that has no match (not a target). Never a packed coordinate, since
/// sides are below 65535.
pub(crate) const NONE: u32 = u32::MAX;
/// Largest supported patch radius (patches up to 9 x 9).
pub(crate) const MAX_RADIUS: usize = 4;
/// Rows per band of a search pass: enough rows for propagation to travel, enough bands
/// to keep every core busy.
const BAND_ROWS: usize = 16;

/// Inclusive patch offsets that stay inside the image for one centre: patches at the
/// image edge are clipped, and a candidate is compared over the same clipped window.
#[derive(Debug, Clone, Copy)]
struct Window {
    dy0: i32,
    dy1: i32,
    dx0: i32,
    dx1: i32,
}

impl Window {
    #[inline]
    fn at(x: usize, y: usize, w: usize, h: usize, r: usize) -> Window {
        let r = r as i32;
        let (x, y, w, h) = (x as i32, y as i32, w as i32, h as i32);
        Window {
            dy0: (-r).max(-y),
            dy1: r.min(h - 1 - y),
            dx0: (-r).max(-x),
            dx1: r.min(w - 1 - x),
        }
    }

    #[inline]
    fn pixels(&self) -> i32 {
        (self.dy1 - self.dy0 + 1) * (self.dx1 - self.dx0 + 1)
    }
}

/// Sum of squared RGB differences between the patch at target `(tx, ty)` (clipped by
/// `win`) and the patch at source `(sx, sy)`, stopping as soon as a row pushes the sum to
/// `bound` or more: most candidates lose, and they usually lose within a few rows.
#[inline]
fn ssd(img: &[u8], w: usize, t: (usize, usize), s: (usize, usize), win: Window, bound: i32) -> i32 {
    let cols = (win.dx1 - win.dx0 + 1) as usize;
    let pair = PatchPair { w, t: t.1 * w + t.0, s: s.1 * w + s.0, win };
    // Unclipped rows of the common patch sizes get a fixed length, which the compiler
    // unrolls and vectorizes.
    match cols {
        7 => ssd_rows::<28>(img, pair, bound),
        5 => ssd_rows::<20>(img, pair, bound),
        9 => ssd_rows::<36>(img, pair, bound),
        3 => ssd_rows::<12>(img, pair, bound),
        _ => ssd_rows_any(img, pair, bound, cols * CHANNELS),
    }
}

/// A target patch and a source patch, by their centres' pixel indices in an image `w`
/// pixels wide, compared over the same clipped window.
#[derive(Clone, Copy)]
struct PatchPair {
    w: usize,
    t: usize,
    s: usize,
    win: Window,
}

impl PatchPair {
    /// For each row of the window, where that row starts (in bytes) in the target patch
    /// and in the source patch.
    #[inline(always)]
    fn rows(self) -> impl Iterator<Item = (usize, usize)> {
        let wi = self.w as isize;
        (self.win.dy0..=self.win.dy1).map(move |dy| {
            let off = dy as isize * wi + self.win.dx0 as isize;
            let ti = (self.t as isize + off) as usize * CHANNELS;
            let si = (self.s as isize + off) as usize * CHANNELS;
            (ti, si)
        })
    }
}

#[inline(always)]
fn ssd_rows<const LEN: usize>(img: &[u8], pair: PatchPair, bound: i32) -> i32 {
    let mut sum = 0i32;
    for (ti, si) in pair.rows() {
        let (Some(a), Some(b)) = (img.get(ti..ti + LEN), img.get(si..si + LEN)) else {
            return i32::MAX;
        };
        let mut row = 0u32;
        for k in 0..LEN {
            // |a - b| in u8 and its square in u16 (255^2 fits) keep the vectors narrow.
            let d = u16::from(a[k].abs_diff(b[k]));
            row += u32::from(d * d);
        }
        sum += row as i32;
        if sum >= bound {
            return sum;
        }
    }
    sum
}

fn ssd_rows_any(img: &[u8], pair: PatchPair, bound: i32, len: usize) -> i32 {
    let mut sum = 0i32;
    for (ti, si) in pair.rows() {
        let a = &img[ti..ti + len];
        let b = &img[si..si + len];
        sum += a
            .iter()
            .zip(b)
            .map(|(&p, &q)| {
                let d = i32::from(p) - i32::from(q);
                d * d
            })
            .sum::<i32>();
        if sum >= bound {
            return sum;
        }
    }
    sum
}

/// Tuning of the search.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SearchParams {
    /// Patch radius.
    pub radius: usize,
    /// Cost per patch pixel, in squared 8-bit units, of a source one level diagonal away
    /// from its target (linear in the distance); 0 disables it.
    pub locality: f32,
    /// 1 / the level's diagonal in pixels.
    pub inv_diagonal: f32,
    /// Band prior: cost per patch pixel of a source at the deepest point of the known
    /// area, rising linearly from 0 at `band_free` of that depth; 0 disables it.
    pub band: f32,
    /// Share of the known area's depth, from the hole inward, that costs nothing.
    pub band_free: f32,
    /// Reuse prior: cost per patch pixel for each further use of a source region beyond
    /// one target per source pixel; 0 disables it.
    pub reuse: f32,
}

/// Distance of the patch at `t` (clipped to `win`) to the source centre `s`: the patch
/// SSD plus the locality cost and the source's prior cost, bounded as in [`ssd`].
#[inline]
fn cost(
    level: &Level,
    params: SearchParams,
    prior: &[f32],
    win: Window,
    t: (usize, usize),
    s: (usize, usize),
    bound: i32,
) -> i32 {
    let mut extra = if params.locality > 0.0 { locality_cost(params, win, t, s) } else { 0 };
    extra += (prior[s.1 * level.w + s.0] * win.pixels() as f32) as i32;
    if extra >= bound {
        return bound;
    }
    extra.saturating_add(ssd(&level.img, level.w, t, s, win, bound.saturating_sub(extra)))
}

/// The locality cost: patches taken from near the target continue what is next to it,
/// which keeps structures going across the border instead of importing content from far
/// away, while texture can still come from anywhere when it matches much better. The
/// distance is measured relative to the level's diagonal so the cost means the same at
/// every level.
#[inline]
fn locality_cost(params: SearchParams, win: Window, t: (usize, usize), s: (usize, usize)) -> i32 {
    let dx = s.0.abs_diff(t.0) as f32;
    let dy = s.1.abs_diff(t.1) as f32;
    // Octagonal estimate of the Euclidean distance (within 8 %): this runs for every
    // candidate, and a square root there is a measurable share of the search.
    let dist = (dx.max(dy) + 0.41 * dx.min(dy)) * params.inv_diagonal;
    (params.locality * dist * win.pixels() as f32).min(i32::MAX as f32 / 4.0) as i32
}

/// For every target pixel, the centre of its best-known source patch and the distance.
#[derive(Debug, Clone)]
pub(crate) struct Nnf {
    /// Packed source centre per pixel ([`pack`]), [`NONE`] off the targets.
    pub src: Vec<u32>,
    /// Patch distance (sum of squared differences plus the locality and prior costs)
    /// per pixel.
    pub dist: Vec<i32>,
    /// Prior cost per patch pixel of copying from each source centre (band and reuse),
    /// refreshed by [`Nnf::recompute`] from the field as it stood then.
    pub prior: Vec<f32>,
}

impl Nnf {
    /// Every target matched to a random valid source.
    pub(crate) fn random(level: &Level, params: SearchParams, seed: u64, tag: u64) -> Nnf {
        let w = level.w;
        let mut src = vec![NONE; level.w * level.h];
        src.par_chunks_mut(w).enumerate().for_each(|(y, row)| {
            let mut rng = Rng::for_unit(seed, &[tag, y as u64]);
            for (x, s) in row.iter_mut().enumerate() {
                if level.target[y * w + x] {
                    *s = level.sources[rng.below(level.sources.len())];
                }
            }
        });
        let mut nnf = Nnf { src, dist: vec![i32::MAX; level.w * level.h], prior: Vec::new() };
        nnf.recompute(level, params);
        nnf
    }

    /// The field of the coarser level scaled to `fine`: each target inherits its parent's
    /// source, doubled and shifted by its position inside the parent. Sources that are not
    /// valid at the fine level snap to the nearest valid centre close by, else to a random
    /// one.
    pub(crate) fn upsample(
        &self,
        coarse: &Level,
        fine: &Level,
        params: SearchParams,
        seed: u64,
        tag: u64,
    ) -> Nnf {
        let (w, h) = (fine.w, fine.h);
        let mut src = vec![NONE; w * h];
        src.par_chunks_mut(w).enumerate().for_each(|(y, row)| {
            let mut rng = Rng::for_unit(seed, &[tag, y as u64]);
            let cy = (y / 2).min(coarse.h - 1);
            for (x, s) in row.iter_mut().enumerate() {
                if !fine.target[y * w + x] {
                    continue;
                }
                let cx = (x / 2).min(coarse.w - 1);
                let parent = self.src[cy * coarse.w + cx];
                let inherited = if parent == NONE {
                    None
                } else {
                    let (px, py) = unpack(parent);
                    let fx = (2 * px + x % 2).min(w - 1);
                    let fy = (2 * py + y % 2).min(h - 1);
                    nearest_valid(fine, fx, fy)
                };
                *s = inherited.unwrap_or_else(|| fine.sources[rng.below(fine.sources.len())]);
            }
        });
        let mut nnf = Nnf { src, dist: vec![i32::MAX; w * h], prior: Vec::new() };
        nnf.recompute(fine, params);
        nnf
    }

    /// Refreshes the priors from the current field, then recomputes every distance
    /// against the level's current image (after a vote the targets changed, so stored
    /// distances are stale).
    pub(crate) fn recompute(&mut self, level: &Level, params: SearchParams) {
        self.prior = priors(level, params, &self.src);
        let (w, h) = (level.w, level.h);
        let prior = &self.prior;
        self.dist.par_chunks_mut(w).zip(self.src.par_chunks(w)).enumerate().for_each(
            |(y, (dist, src))| {
                for x in 0..w {
                    if src[x] != NONE {
                        let win = Window::at(x, y, w, h, params.radius);
                        dist[x] = cost(level, params, prior, win, (x, y), unpack(src[x]), i32::MAX);
                    }
                }
            },
        );
    }

    /// One PatchMatch pass: scan order alternates with `pass` (even: left-to-right and
    /// top-to-bottom, propagating from the left and upper neighbours; odd: the reverse),
    /// then random search around the current best at radii halving from `max_radius`.
    pub(crate) fn search(
        &mut self,
        level: &Level,
        params: SearchParams,
        max_radius: usize,
        seed: u64,
        tag: u64,
        pass: usize,
    ) {
        let (w, h) = (level.w, level.h);
        let forward = pass % 2 == 0;
        // Shift band boundaries every other pair of passes so no row stays a boundary.
        let offset = if (pass / 2) % 2 == 1 { BAND_ROWS / 2 } else { 0 };
        let mut ranges = Vec::new();
        let mut y0 = 0;
        while y0 < h {
            let y1 = if y0 == 0 && offset > 0 { offset.min(h) } else { (y0 + BAND_ROWS).min(h) };
            ranges.push((y0, y1));
            y0 = y1;
        }
        let snapshot = self.src.clone();
        let prior = &self.prior;
        let mut jobs = Vec::with_capacity(ranges.len());
        let (mut src_rest, mut dist_rest) = (&mut self.src[..], &mut self.dist[..]);
        for (band, &(y0, y1)) in ranges.iter().enumerate() {
            let (s, s_tail) = std::mem::take(&mut src_rest).split_at_mut((y1 - y0) * w);
            let (d, d_tail) = std::mem::take(&mut dist_rest).split_at_mut((y1 - y0) * w);
            src_rest = s_tail;
            dist_rest = d_tail;
            jobs.push((band, y0, y1, s, d));
        }
        jobs.into_par_iter().for_each(|(band, y0, y1, src, dist)| {
            let mut rng = Rng::for_unit(seed, &[tag, band as u64]);
            let band = Band { level, params, prior, snapshot: &snapshot, y0, y1, src, dist };
            band.scan(forward, max_radius as i32, &mut rng);
        });
    }
}

/// Most uses of a source region the reuse prior counts: beyond this it costs no more, so
/// a region that every target wants still stays within reach of a much better match.
const MAX_REUSE: f32 = 8.0;

/// The prior cost per patch pixel of copying from each source centre (0 elsewhere).
///
/// *Band*: sources deep inside the known area (the subject of a photo, usually) cost more
/// than those next to the border being extended, so the new border continues what lies
/// along the old one instead of repeating the subject. *Reuse*: the sources are counted in
/// square cells one patch wide, and a cell whose pixels are each already copied more than
/// once costs more for every further use, so repeated motifs (a second cup handle, a row
/// of identical spoons) give way to other, similar regions.
fn priors(level: &Level, params: SearchParams, src: &[u32]) -> Vec<f32> {
    let (w, h) = (level.w, level.h);
    let cell = 2 * params.radius + 1;
    let (cw, ch) = (w.div_ceil(cell), h.div_ceil(cell));
    let mut usage = vec![0f32; cw * ch];
    if params.reuse > 0.0 {
        let mut valid = vec![0u32; cw * ch];
        for &s in &level.sources {
            let (x, y) = unpack(s);
            valid[(y / cell) * cw + x / cell] += 1;
        }
        let mut used = vec![0u32; cw * ch];
        for &s in src.iter().filter(|&&s| s != NONE) {
            let (x, y) = unpack(s);
            used[(y / cell) * cw + x / cell] += 1;
        }
        for ((u, &n), &v) in usage.iter_mut().zip(&used).zip(&valid) {
            if v > 0 {
                *u = params.reuse * (n as f32 / v as f32 - 1.0).clamp(0.0, MAX_REUSE);
            }
        }
    }
    let max_inner = level.max_inner().max(1) as f32;
    let free = params.band_free.clamp(0.0, 0.99);
    let mut prior = vec![0f32; w * h];
    prior.par_chunks_mut(w).enumerate().for_each(|(y, row)| {
        for (x, p) in row.iter_mut().enumerate() {
            let i = y * w + x;
            if !level.valid[i] {
                continue;
            }
            let deep = level.inner[i] as f32 / max_inner;
            let band = params.band * ((deep - free) / (1.0 - free)).max(0.0);
            *p = band + usage[(y / cell) * cw + x / cell];
        }
    });
    prior
}

/// The valid source centre nearest to `(x, y)` within two pixels, if any.
fn nearest_valid(level: &Level, x: usize, y: usize) -> Option<u32> {
    if level.valid[y * level.w + x] {
        return Some(pack(x, y));
    }
    let (w, h) = (level.w as i32, level.h as i32);
    let mut best: Option<(i32, u32)> = None;
    for dy in -2i32..=2 {
        for dx in -2i32..=2 {
            let (nx, ny) = (x as i32 + dx, y as i32 + dy);
            if nx < 0 || ny < 0 || nx >= w || ny >= h {
                continue;
            }
            let d2 = dx * dx + dy * dy;
            if level.valid[(ny * w + nx) as usize] && best.is_none_or(|(bd, _)| d2 < bd) {
                best = Some((d2, pack(nx as usize, ny as usize)));
            }
        }
    }
    best.map(|(_, s)| s)
}

/// One band of rows in a search pass.
struct Band<'a> {
    level: &'a Level,
    params: SearchParams,
    prior: &'a [f32],
    snapshot: &'a [u32],
    y0: usize,
    y1: usize,
    src: &'a mut [u32],
    dist: &'a mut [i32],
}

impl Band<'_> {
    /// The current source of `(x, y)`: this band's own (already updated) value inside the
    /// band, the pre-pass snapshot outside it.
    #[inline]
    fn neighbour(&self, x: usize, y: usize) -> u32 {
        if (self.y0..self.y1).contains(&y) {
            self.src[(y - self.y0) * self.level.w + x]
        } else {
            self.snapshot[y * self.level.w + x]
        }
    }

    fn scan(mut self, forward: bool, max_radius: i32, rng: &mut Rng) {
        let w = self.level.w;
        for row in 0..(self.y1 - self.y0) {
            let y = if forward { self.y0 + row } else { self.y1 - 1 - row };
            for col in 0..w {
                let x = if forward { col } else { w - 1 - col };
                if self.level.target[y * w + x] {
                    self.improve(x, y, forward, max_radius, rng);
                }
            }
        }
    }

    fn improve(&mut self, x: usize, y: usize, forward: bool, max_radius: i32, rng: &mut Rng) {
        let level = self.level;
        let (w, h) = (level.w, level.h);
        let li = (y - self.y0) * w + x;
        let (mut bx, mut by) = unpack(self.src[li]);
        let mut best_d = self.dist[li];
        let win = Window::at(x, y, w, h, self.params.radius);
        let (params, prior) = (self.params, self.prior);
        let mut consider = |cx: usize, cy: usize, bx: &mut usize, by: &mut usize| {
            if (cx, cy) != (*bx, *by) && level.valid[cy * w + cx] {
                let d = cost(level, params, prior, win, (x, y), (cx, cy), best_d);
                if d < best_d {
                    (*bx, *by, best_d) = (cx, cy, d);
                }
            }
        };
        // Propagation: the neighbours already visited in scan order, their matches
        // shifted by one pixel back.
        if forward {
            if x > 0 {
                let n = self.neighbour(x - 1, y);
                if n != NONE {
                    let (sx, sy) = unpack(n);
                    if sx + 1 < w {
                        consider(sx + 1, sy, &mut bx, &mut by);
                    }
                }
            }
            if y > 0 {
                let n = self.neighbour(x, y - 1);
                if n != NONE {
                    let (sx, sy) = unpack(n);
                    if sy + 1 < h {
                        consider(sx, sy + 1, &mut bx, &mut by);
                    }
                }
            }
        } else {
            if x + 1 < w {
                let n = self.neighbour(x + 1, y);
                if n != NONE {
                    let (sx, sy) = unpack(n);
                    if sx > 0 {
                        consider(sx - 1, sy, &mut bx, &mut by);
                    }
                }
            }
            if y + 1 < h {
                let n = self.neighbour(x, y + 1);
                if n != NONE {
                    let (sx, sy) = unpack(n);
                    if sy > 0 {
                        consider(sx, sy - 1, &mut bx, &mut by);
                    }
                }
            }
        }
        // Random search around the best so far, halving the radius each time.
        let mut radius = max_radius;
        while radius >= 1 {
            let cx = (bx as i32 + rng.offset(radius)).clamp(0, w as i32 - 1) as usize;
            let cy = (by as i32 + rng.offset(radius)).clamp(0, h as i32 - 1) as usize;
            consider(cx, cy, &mut bx, &mut by);
            radius /= 2;
        }
        self.src[li] = pack(bx, by);
        self.dist[li] = best_d;
    }
}

/// How votes are weighted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct VoteParams {
    /// Patch radius.
    pub radius: usize,
    /// Weight temperature relative to the level's typical patch distance: 1 averages
    /// broadly, small values favour the best-matching patch, 0 copies it outright.
    pub temperature: f32,
    /// Natural log of the per-pixel confidence falloff: a patch whose centre lies one
    /// pixel deeper into the hole than another gets `exp(-depth_falloff)` times its
    /// weight, so patches anchored near the known border lead.
    pub depth_falloff: f32,
}

/// Rebuilds every hole pixel from the patches that cover it: each covering target patch
/// proposes the colour its source has at the same offset, weighted by how well the patch
/// matched and how close to the known area its centre is.
pub(crate) fn vote(level: &mut Level, nnf: &Nnf, params: VoteParams) {
    let (w, h, r) = (level.w, level.h, params.radius.min(MAX_RADIUS));
    // Per-pixel patch distance of every target (clipped patches have fewer pixels). The
    // priors steer the search but say nothing about how well a patch fits where it is,
    // so they are taken out: otherwise they would raise every distance alike and flatten
    // the weights into a blur.
    let per_pixel: Vec<f32> = nnf
        .src
        .par_iter()
        .zip(&nnf.dist)
        .enumerate()
        .map(|(i, (&s, &d))| {
            if s == NONE {
                f32::INFINITY
            } else {
                let (sx, sy) = unpack(s);
                let prior = nnf.prior.get(sy * w + sx).copied().unwrap_or(0.0);
                (d as f32 / Window::at(i % w, i / w, w, h, r).pixels() as f32 - prior).max(0.0)
            }
        })
        .collect();
    // Typical distance: the 75th percentile over the targets.
    let mut finite: Vec<f32> = per_pixel.iter().copied().filter(|d| d.is_finite()).collect();
    let scale = if finite.is_empty() {
        1.0
    } else {
        let k = finite.len() * 3 / 4;
        let (_, v, _) = finite.select_nth_unstable_by(k, f32::total_cmp);
        v.max(1.0)
    };
    drop(finite);
    let exact_best = params.temperature <= 0.0;
    let inv_h = 1.0 / (params.temperature.max(1e-6) * scale);
    let score = |p: usize| {
        let depth = level.depth[p] as f32;
        if exact_best {
            per_pixel[p] + 1e-3 * depth
        } else {
            per_pixel[p] * inv_h + params.depth_falloff * depth
        }
    };
    // Per patch: its weight, in f64 (which holds e^-700), and where its source lies
    // relative to it. Weights only matter relative to the others covering a pixel, so one
    // exponential per patch serves all the pixels it covers; the offset turns "the
    // colour patch p proposes for q" into one add. Non-targets get weight 0.
    let prepared: Vec<(f64, i32)> = (0..w * h)
        .into_par_iter()
        .map(|p| {
            let s = nnf.src[p];
            if s == NONE {
                return (0.0, 0);
            }
            let (sx, sy) = unpack(s);
            let weight = if exact_best { 0.0 } else { (-f64::from(score(p).min(700.0))).exp() };
            (weight, (sy * w + sx) as i32 - p as i32)
        })
        .collect();
    let lvl: &Level = level;
    let img = &lvl.img;
    let colour = |q: usize, offset: i32| {
        let c = (q as isize + offset as isize) as usize * CHANNELS;
        [img[c], img[c + 1], img[c + 2]]
    };
    // The proposal of the best-scoring patch covering q: the vote at temperature 0, and
    // the limit when every weight underflowed. The first of equal scores in scan order
    // wins, the same way every run.
    let best_proposal = |q: usize, win: Window| {
        let (x, y) = ((q % w) as i32, (q / w) as i32);
        let mut best = (f32::INFINITY, [0u8; 3]);
        for dy in win.dy0..=win.dy1 {
            for dx in win.dx0..=win.dx1 {
                let p = ((y + dy) * w as i32 + x + dx) as usize;
                if nnf.src[p] != NONE && score(p) < best.0 {
                    best = (score(p), colour(q, prepared[p].1));
                }
            }
        }
        (best.0.is_finite()).then_some(best.1)
    };
    let mut out = img.clone();
    out.par_chunks_mut(w * CHANNELS).enumerate().for_each(|(y, row)| {
        for x in 0..w {
            let q = y * w + x;
            if lvl.known[q] {
                continue;
            }
            let win = Window::at(x, y, w, h, r);
            let out_px = &mut row[x * CHANNELS..x * CHANNELS + 3];
            if !exact_best {
                // R, G, B and the total weight side by side, so the four running sums
                // update together.
                let mut acc = [0f64; 4];
                for dy in win.dy0..=win.dy1 {
                    let base = (y as i32 + dy) as usize * w;
                    let span =
                        base + (x as i32 + win.dx0) as usize..=base + (x as i32 + win.dx1) as usize;
                    for &(weight, offset) in &prepared[span] {
                        let c = (q as isize + offset as isize) as usize * CHANNELS;
                        let Some(&[r, g, b, _]) = img.get(c..c + CHANNELS) else { continue };
                        let v = [f64::from(r), f64::from(g), f64::from(b), 1.0];
                        for k in 0..4 {
                            acc[k] += weight * v[k];
                        }
                    }
                }
                let total = acc[3];
                if total > 1e-290 {
                    for k in 0..3 {
                        out_px[k] = (acc[k] / total).round().clamp(0.0, 255.0) as u8;
                    }
                    continue;
                }
            }
            if let Some(c) = best_proposal(q, win) {
                out_px.copy_from_slice(&c);
            }
        }
    });
    level.img = out;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(band: f32, reuse: f32) -> SearchParams {
        SearchParams { radius: 1, locality: 0.0, inv_diagonal: 0.01, band, band_free: 0.25, reuse }
    }

    /// A 40 x 40 level whose known area is the middle 20 x 20.
    fn level() -> Level {
        let (w, h) = (40, 40);
        let known: Vec<bool> = (0..w * h)
            .map(|i| (10..30).contains(&(i % w)) && (10..30).contains(&(i / w)))
            .collect();
        Level::assemble(w, h, vec![90; w * h * CHANNELS], known, 1)
    }

    #[test]
    fn band_prior_rises_with_depth_inside_the_known_area() {
        let level = level();
        let prior = priors(&level, params(1000.0, 0.0), &vec![NONE; 40 * 40]);
        let at = |x: usize, y: usize| prior[y * 40 + x];
        // Next to the border (within the free band): free; the centre: the full cost.
        assert_eq!(at(11, 11), 0.0);
        assert_eq!(at(19, 19), 1000.0);
        assert!(at(15, 15) > at(13, 13) && at(15, 15) < at(19, 19));
        // Only source centres carry a cost.
        assert_eq!(at(2, 2), 0.0);
    }

    #[test]
    fn reuse_prior_charges_only_overused_regions() {
        let level = level();
        // Every target copies from one source pixel.
        let src: Vec<u32> =
            level.target.iter().map(|&t| if t { pack(12, 12) } else { NONE }).collect();
        let prior = priors(&level, params(0.0, 100.0), &src);
        assert_eq!(prior[12 * 40 + 12], 100.0 * MAX_REUSE);
        assert_eq!(prior[12 * 40 + 13], 100.0 * MAX_REUSE, "the same cell");
        assert_eq!(prior[20 * 40 + 20], 0.0, "an unused cell");
    }
}
