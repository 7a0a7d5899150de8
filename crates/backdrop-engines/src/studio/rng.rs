//! Deterministic per-pixel randomness: stateless hashes for grain and value noise (the
//! seeded generator for per-image choices is the crate's [`SplitMix64`]).
//!
//! Per-pixel values are pure functions of `(x, y, seed)` rather than draws from a
//! stream, so rows can be rendered in any order on any number of threads and still give
//! the same bytes.

pub(crate) use crate::rng::SplitMix64;

/// A well-mixed 32-bit hash of a lattice point and a seed.
#[inline(always)]
pub(crate) fn hash2(x: i32, y: i32, seed: u32) -> u32 {
    let mut h = (x as u32).wrapping_mul(0x8DA6_B343)
        ^ (y as u32).wrapping_mul(0xD816_3841)
        ^ seed.wrapping_mul(0xCB1A_B31F);
    // lowbias32 finaliser: cheap, and without it neighbouring lattice points correlate.
    h ^= h >> 16;
    h = h.wrapping_mul(0x7FEB_352D);
    h ^= h >> 15;
    h = h.wrapping_mul(0x846C_A68B);
    h ^ (h >> 16)
}

/// Uniform in `[0, 1)` from a hash.
#[inline(always)]
pub(crate) fn hash_unit(x: i32, y: i32, seed: u32) -> f32 {
    (hash2(x, y, seed) >> 8) as f32 * (1.0 / (1u32 << 24) as f32)
}

/// Uniform in `[-1, 1)` from a hash: per-pixel grain.
#[inline(always)]
pub(crate) fn grain(x: i32, y: i32, seed: u32) -> f32 {
    hash_unit(x, y, seed) * 2.0 - 1.0
}

/// `x.floor() as i32` without the library call that `floor` compiles to on baseline
/// x86-64 (no SSE4.1), which costs more than the rest of a noise lookup.
#[inline(always)]
pub(crate) fn floor_i32(x: f32) -> i32 {
    let i = x as i32;
    i - i32::from((i as f32) > x)
}

/// `x - x.floor()`, see [`floor_i32`].
#[inline(always)]
pub(crate) fn fract(x: f32) -> f32 {
    x - floor_i32(x) as f32
}

/// Value noise at one point, for tests.
#[cfg(test)]
pub(crate) fn value_noise(x: f32, y: f32, seed: u32) -> f32 {
    RowNoise::new(y, seed).at(x)
}

/// Smooth 2-D value noise in `[0, 1]` along one row (fixed `y`): hashed lattice values,
/// interpolated with a smoothstep so there are no creases along cell edges. Coordinates
/// are in cells.
///
/// A cell spans many pixels, so the four lattice hashes are computed once per cell
/// instead of once per pixel; that makes low-frequency noise almost free. The value at
/// a point does not depend on which points were visited before.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RowNoise {
    yi: i32,
    sy: f32,
    seed: u32,
    xi: i32,
    left: f32,
    right: f32,
}

impl RowNoise {
    /// A sampler for the row at `y` (in cells).
    #[inline(always)]
    pub(crate) fn new(y: f32, seed: u32) -> Self {
        let yi = floor_i32(y);
        let ty = y - yi as f32;
        RowNoise { yi, sy: ty * ty * (3.0 - 2.0 * ty), seed, xi: i32::MIN, left: 0.0, right: 0.0 }
    }

    /// The noise at `x` (in cells) on this row.
    #[inline(always)]
    pub(crate) fn at(&mut self, x: f32) -> f32 {
        let xi = floor_i32(x);
        if xi != self.xi {
            let (yi, seed, sy) = (self.yi, self.seed, self.sy);
            let a = hash_unit(xi, yi, seed);
            let b = hash_unit(xi.wrapping_add(1), yi, seed);
            let c = hash_unit(xi, yi.wrapping_add(1), seed);
            let d = hash_unit(xi.wrapping_add(1), yi.wrapping_add(1), seed);
            self.xi = xi;
            self.left = a + (c - a) * sy;
            self.right = b + (d - b) * sy;
        }
        let tx = x - xi as f32;
        let sx = tx * tx * (3.0 - 2.0 * tx);
        self.left + (self.right - self.left) * sx
    }
}

/// Fractal value noise in `[0, 1]` along one row: `N` octaves, each about twice the
/// frequency and half the weight of the one before.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RowFbm<const N: usize> {
    octaves: [RowNoise; N],
}

/// Frequency step between octaves; not exactly 2 so lattice lines of different
/// octaves do not coincide.
const LACUNARITY: f32 = 2.03;

impl<const N: usize> RowFbm<N> {
    /// A sampler for the row at `y` (in cells of the first octave).
    #[inline(always)]
    pub(crate) fn new(y: f32, seed: u32) -> Self {
        let mut freq = 1.0;
        let octaves = std::array::from_fn(|i| {
            let noise = RowNoise::new(y * freq, seed.wrapping_add(i as u32 * 0x9E37));
            freq *= LACUNARITY;
            noise
        });
        RowFbm { octaves }
    }

    /// The noise at `x` (in cells of the first octave).
    #[inline(always)]
    pub(crate) fn at(&mut self, x: f32) -> f32 {
        let (mut sum, mut weight, mut total, mut freq) = (0.0, 1.0, 0.0, 1.0);
        for octave in &mut self.octaves {
            sum += weight * octave.at(x * freq);
            total += weight;
            weight *= 0.5;
            freq *= LACUNARITY;
        }
        sum / total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_floor_matches_floor() {
        for x in [-2.5f32, -1.0, -0.25, 0.0, 0.3, 1.0, 7.99, 1e6, -1e6] {
            assert_eq!(floor_i32(x), x.floor() as i32, "{x}");
            assert_eq!(fract(x), x - x.floor(), "{x}");
        }
    }

    #[test]
    fn row_samplers_match_point_lookups_in_any_order() {
        let mut row = RowNoise::new(3.7, 11);
        for x in [0.1f32, 0.5, 2.2, 1.9, -3.4, 2.2] {
            assert_eq!(row.at(x), value_noise(x, 3.7, 11));
        }
        let mut a = RowFbm::<3>::new(1.3, 5);
        let forward: Vec<f32> = (0..50).map(|i| a.at(i as f32 * 0.37)).collect();
        let mut b = RowFbm::<3>::new(1.3, 5);
        let backward: Vec<f32> = (0..50).rev().map(|i| b.at(i as f32 * 0.37)).collect();
        assert!(forward.iter().eq(backward.iter().rev()));
    }

    #[test]
    fn value_noise_is_bounded_and_continuous() {
        let mut last = value_noise(0.0, 0.3, 7);
        for i in 1..2000 {
            let v = value_noise(i as f32 * 0.01, 0.3, 7);
            assert!((0.0..=1.0).contains(&v));
            assert!((v - last).abs() < 0.05, "jump at {i}");
            last = v;
        }
    }
}
