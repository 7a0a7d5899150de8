//! One level of the image pyramid and the maps derived from its known area.

use image::{GrayImage, RgbaImage};

/// Bytes per pixel in a level's image: RGB plus one zero byte, so that a patch row is a
/// contiguous run the compiler can vectorize and the padding byte adds nothing to a
/// distance.
pub(crate) const CHANNELS: usize = 4;

/// Packs a pixel position into one `u32` (x low, y high); sides must be below 65535.
/// Matches are stored this way so that reading a match's coordinates costs no division.
#[inline]
pub(crate) fn pack(x: usize, y: usize) -> u32 {
    (y as u32) << 16 | x as u32
}

/// The position packed by [`pack`].
#[inline]
pub(crate) fn unpack(s: u32) -> (usize, usize) {
    ((s & 0xffff) as usize, (s >> 16) as usize)
}

/// One pyramid level: the current estimate of the image and which pixels are known.
#[derive(Debug, Clone)]
pub(crate) struct Level {
    /// Width in pixels.
    pub w: usize,
    /// Height in pixels.
    pub h: usize,
    /// RGBX, row-major. Known pixels hold the input; hole pixels the current estimate.
    pub img: Vec<u8>,
    /// Whether each pixel is known (never rewritten).
    pub known: Vec<bool>,
    /// Whether the patch centred here overlaps the hole: these patches get a nearest
    /// neighbour and vote.
    pub target: Vec<bool>,
    /// Whether the patch centred here lies inside the image and wholly in the known area:
    /// only these patches are copied from.
    pub valid: Vec<bool>,
    /// The valid centres, packed ([`pack`]), for random picks.
    pub sources: Vec<u32>,
    /// Chessboard distance to the nearest known pixel (0 on known pixels).
    pub depth: Vec<u32>,
    /// Chessboard distance from a known pixel to the nearest hole pixel (0 in the hole):
    /// how deep a source lies inside the original, away from the border being extended.
    pub inner: Vec<u32>,
}

impl Level {
    /// The finest level: known pixels are opaque and unmasked.
    pub(crate) fn from_canvas(canvas: &RgbaImage, mask: &GrayImage, radius: usize) -> Level {
        let (w, h) = (canvas.width() as usize, canvas.height() as usize);
        let mut img = vec![0u8; w * h * CHANNELS];
        let mut known = vec![false; w * h];
        for (i, ((px, m), out)) in
            canvas.pixels().zip(mask.pixels()).zip(img.chunks_exact_mut(CHANNELS)).enumerate()
        {
            out[..3].copy_from_slice(&px.0[..3]);
            known[i] = px.0[3] == 255 && m.0[0] == 0;
        }
        Level::assemble(w, h, img, known, radius)
    }

    /// Derives the maps from an image and its known area.
    pub(crate) fn assemble(
        w: usize,
        h: usize,
        img: Vec<u8>,
        known: Vec<bool>,
        radius: usize,
    ) -> Level {
        let hole: Vec<bool> = known.iter().map(|k| !k).collect();
        let target = dilate(&hole, w, h, radius);
        let r = radius;
        let mut valid = vec![false; w * h];
        let mut sources = Vec::new();
        for y in r..h.saturating_sub(r) {
            for x in r..w.saturating_sub(r) {
                let i = y * w + x;
                // Inside the image and not within `radius` of a hole pixel: the whole
                // patch is known.
                if !target[i] {
                    valid[i] = true;
                    sources.push(pack(x, y));
                }
            }
        }
        let depth = chessboard_depth(&known, w, h);
        let inner = chessboard_depth(&hole, w, h);
        Level { w, h, img, known, target, valid, sources, depth, inner }
    }

    /// Whether any pixel is known.
    pub(crate) fn has_known(&self) -> bool {
        self.known.iter().any(|&k| k)
    }

    /// The largest distance from a hole pixel to the known area.
    pub(crate) fn max_depth(&self) -> u32 {
        self.depth.iter().copied().max().unwrap_or(0)
    }

    /// The largest distance from a known pixel to the hole (0 without a hole).
    pub(crate) fn max_inner(&self) -> u32 {
        self.inner.iter().copied().filter(|&d| d != u32::MAX).max().unwrap_or(0)
    }

    /// The next coarser level (half size, rounding up). A coarse pixel is known only if
    /// every fine pixel under it is, so the coarse hole covers the fine one and coarse
    /// sources never mix in unknown colours.
    pub(crate) fn downsample(&self, radius: usize) -> Level {
        let (cw, ch) = (self.w.div_ceil(2), self.h.div_ceil(2));
        let mut img = vec![0u8; cw * ch * CHANNELS];
        let mut known = vec![false; cw * ch];
        for cy in 0..ch {
            for cx in 0..cw {
                let mut all = [0u32; 3];
                let mut kn = [0u32; 3];
                let (mut n_all, mut n_known) = (0u32, 0u32);
                for fy in 2 * cy..(2 * cy + 2).min(self.h) {
                    for fx in 2 * cx..(2 * cx + 2).min(self.w) {
                        let i = fy * self.w + fx;
                        let px = &self.img[i * CHANNELS..i * CHANNELS + 3];
                        for c in 0..3 {
                            all[c] += u32::from(px[c]);
                            if self.known[i] {
                                kn[c] += u32::from(px[c]);
                            }
                        }
                        n_all += 1;
                        n_known += u32::from(self.known[i]);
                    }
                }
                let ci = cy * cw + cx;
                known[ci] = n_known == n_all;
                let (sum, n) = if n_known > 0 { (kn, n_known) } else { (all, n_all) };
                for c in 0..3 {
                    img[ci * CHANNELS + c] = ((sum[c] + n / 2) / n) as u8;
                }
            }
        }
        Level::assemble(cw, ch, img, known, radius)
    }

    /// Fills the hole by peeling it layer by layer from the known border, each pixel the
    /// mean of its neighbours in earlier layers: a smooth outward continuation of the
    /// border colours that gives the coarsest search something sensible to match.
    pub(crate) fn onion_fill(&mut self) {
        let (w, h) = (self.w, self.h);
        let max = self.max_depth() as usize;
        // Bucket pixels by depth so each layer reads only finished layers, whatever the
        // order inside it.
        let mut order: Vec<Vec<usize>> = vec![Vec::new(); max + 1];
        for (i, &d) in self.depth.iter().enumerate() {
            if d != u32::MAX && d > 0 {
                order[d as usize].push(i);
            }
        }
        for (layer, pixels) in order.iter().enumerate().skip(1) {
            for &i in pixels {
                let (x, y) = (i % w, i / w);
                let mut sum = [0u32; 3];
                let mut n = 0u32;
                for ny in y.saturating_sub(1)..(y + 2).min(h) {
                    for nx in x.saturating_sub(1)..(x + 2).min(w) {
                        let j = ny * w + nx;
                        if (self.depth[j] as usize) < layer {
                            for (c, s) in sum.iter_mut().enumerate() {
                                *s += u32::from(self.img[j * CHANNELS + c]);
                            }
                            n += 1;
                        }
                    }
                }
                for (c, s) in sum.iter().enumerate() {
                    // Every pixel of a layer has a neighbour in the layer before, so n > 0.
                    if let Some(mean) = (s + n / 2).checked_div(n) {
                        self.img[i * CHANNELS + c] = mean as u8;
                    }
                }
            }
        }
    }

    /// Sets every hole pixel to the bilinear interpolation of `coarse`, the level above.
    pub(crate) fn upsample_hole_from(&mut self, coarse: &Level) {
        let (cw, ch) = (coarse.w, coarse.h);
        for y in 0..self.h {
            // Pixel centres: fine y + 0.5 sits at coarse (y + 0.5) / 2.
            let fy = ((y as f32 + 0.5) * 0.5 - 0.5).clamp(0.0, (ch - 1) as f32);
            let y0 = fy as usize; // fy >= 0: truncation is floor
            let y1 = (y0 + 1).min(ch - 1);
            let ty = fy - y0 as f32;
            for x in 0..self.w {
                let i = y * self.w + x;
                if self.known[i] {
                    continue;
                }
                let fx = ((x as f32 + 0.5) * 0.5 - 0.5).clamp(0.0, (cw - 1) as f32);
                let x0 = fx as usize;
                let x1 = (x0 + 1).min(cw - 1);
                let tx = fx - x0 as f32;
                let at = |xx: usize, yy: usize, c: usize| {
                    f32::from(coarse.img[(yy * cw + xx) * CHANNELS + c])
                };
                for c in 0..3 {
                    let top = at(x0, y0, c) * (1.0 - tx) + at(x1, y0, c) * tx;
                    let bottom = at(x0, y1, c) * (1.0 - tx) + at(x1, y1, c) * tx;
                    let v = top * (1.0 - ty) + bottom * ty;
                    self.img[i * CHANNELS + c] = v.round().clamp(0.0, 255.0) as u8;
                }
            }
        }
    }
}

/// Chebyshev dilation of `mask` by `radius`: separable row and column running counts.
pub(crate) fn dilate(mask: &[bool], w: usize, h: usize, radius: usize) -> Vec<bool> {
    if radius == 0 {
        return mask.to_vec();
    }
    let mut rows = vec![false; w * h];
    for y in 0..h {
        let line = &mask[y * w..(y + 1) * w];
        let out = &mut rows[y * w..(y + 1) * w];
        running_any(line.len(), radius, |i| line[i], |i, v| out[i] = v);
    }
    let mut out = vec![false; w * h];
    for x in 0..w {
        running_any(h, radius, |i| rows[i * w + x], |i, v| out[i * w + x] = v);
    }
    out
}

/// Writes, for each `i < n`, whether any of `get(i - radius ..= i + radius)` is true.
fn running_any(
    n: usize,
    radius: usize,
    get: impl Fn(usize) -> bool,
    mut set: impl FnMut(usize, bool),
) {
    let mut count = (0..radius.min(n)).filter(|&i| get(i)).count();
    for i in 0..n {
        if i + radius < n && get(i + radius) {
            count += 1;
        }
        set(i, count > 0);
        if i >= radius && get(i - radius) {
            count -= 1;
        }
    }
}

/// Chessboard distance to the nearest known pixel by a two-pass chamfer; `u32::MAX`
/// everywhere when nothing is known.
fn chessboard_depth(known: &[bool], w: usize, h: usize) -> Vec<u32> {
    let inf = u32::MAX;
    let mut d: Vec<u32> = known.iter().map(|&k| if k { 0 } else { inf }).collect();
    let relax = |d: &mut [u32], i: usize, j: usize| {
        let via = d[j].saturating_add(1);
        if via < d[i] {
            d[i] = via;
        }
    };
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            if x > 0 {
                relax(&mut d, i, i - 1);
            }
            if y > 0 {
                relax(&mut d, i, i - w);
                if x > 0 {
                    relax(&mut d, i, i - w - 1);
                }
                if x + 1 < w {
                    relax(&mut d, i, i - w + 1);
                }
            }
        }
    }
    for y in (0..h).rev() {
        for x in (0..w).rev() {
            let i = y * w + x;
            if x + 1 < w {
                relax(&mut d, i, i + 1);
            }
            if y + 1 < h {
                relax(&mut d, i, i + w);
                if x + 1 < w {
                    relax(&mut d, i, i + w + 1);
                }
                if x > 0 {
                    relax(&mut d, i, i + w - 1);
                }
            }
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dilation_and_depth_agree_with_brute_force() {
        let (w, h) = (9, 7);
        let mut hole = vec![false; w * h];
        hole[3 * w + 4] = true;
        hole[6 * w] = true;
        let dil = dilate(&hole, w, h, 2);
        let known: Vec<bool> = hole.iter().map(|b| !b).collect();
        let none_known = chessboard_depth(&[false; 4], 2, 2);
        assert!(none_known.iter().all(|&d| d == u32::MAX));
        let depth_of_known = chessboard_depth(&known, w, h);
        for y in 0..h {
            for x in 0..w {
                let near = (0..h).any(|yy| {
                    (0..w).any(|xx| hole[yy * w + xx] && x.abs_diff(xx) <= 2 && y.abs_diff(yy) <= 2)
                });
                assert_eq!(dil[y * w + x], near, "({x},{y})");
                assert_eq!(depth_of_known[y * w + x], u32::from(hole[y * w + x]));
            }
        }
    }

    #[test]
    fn coarse_hole_covers_fine_hole() {
        let (w, h) = (7, 5);
        let img = vec![100u8; w * h * CHANNELS];
        let mut known = vec![true; w * h];
        known[2 * w + 3] = false;
        let fine = Level::assemble(w, h, img, known, 1);
        let coarse = fine.downsample(1);
        assert_eq!((coarse.w, coarse.h), (4, 3));
        assert!(!coarse.known[cw_index(1, 1, 4)]);
        assert_eq!(coarse.known.iter().filter(|k| !**k).count(), 1);
        assert!(coarse.img.chunks_exact(CHANNELS).all(|p| p[..3] == [100, 100, 100]));
    }

    fn cw_index(x: usize, y: usize, w: usize) -> usize {
        y * w + x
    }
}
