//! PyTorch's CPU random generator, reproduced so that a seed gives the same numbers as
//! `torch.Generator("cpu").manual_seed(seed)` followed by `torch.randn(shape)` in f32.
//!
//! This module owns the Mersenne Twister state and the two code paths of PyTorch's CPU
//! `normal_` kernel, which differ by tensor size:
//! - 16 elements or more (contiguous f32): fill with 24-bit uniforms, then Box-Muller in
//!   blocks of 16 (the first 8 values pair with the next 8); a tail that is not a full
//!   block recomputes the last 16 values from fresh uniforms.
//! - under 16 elements: one double-precision Box-Muller draw per element from 53-bit
//!   uniforms, whose second value is cached in the generator and returned by the next
//!   scalar draw.
//!
//! The diffusion pipeline draws in diffusers' order (see `pipeline.rs`), so a user's
//! diffusers result for a seed is reproduced here.

const N: usize = 624;
const M: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER_MASK: u32 = 0x8000_0000;
const LOWER_MASK: u32 = 0x7fff_ffff;

/// The 32-bit Mersenne Twister as PyTorch seeds and advances it.
#[derive(Clone)]
struct Mt19937 {
    state: Box<[u32; N]>,
    index: usize,
}

impl Mt19937 {
    fn new(seed: u32) -> Self {
        let mut state = Box::new([0u32; N]);
        state[0] = seed;
        for j in 1..N {
            let prev = state[j - 1];
            state[j] = 1_812_433_253u32.wrapping_mul(prev ^ (prev >> 30)).wrapping_add(j as u32);
        }
        Mt19937 { state, index: N }
    }

    fn twist(&mut self) {
        for i in 0..N {
            let y = (self.state[i] & UPPER_MASK) | (self.state[(i + 1) % N] & LOWER_MASK);
            let mut next = self.state[(i + M) % N] ^ (y >> 1);
            if y & 1 != 0 {
                next ^= MATRIX_A;
            }
            self.state[i] = next;
        }
        self.index = 0;
    }

    fn next_u32(&mut self) -> u32 {
        if self.index >= N {
            self.twist();
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        y
    }
}

/// A PyTorch CPU generator: `torch.Generator("cpu").manual_seed(seed)`.
#[derive(Clone)]
pub struct TorchGenerator {
    mt: Mt19937,
    cached_normal: Option<f64>,
}

impl std::fmt::Debug for TorchGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TorchGenerator").field("index", &self.mt.index).finish()
    }
}

impl TorchGenerator {
    /// A generator seeded like `manual_seed(seed)`; PyTorch keeps the low 32 bits.
    pub fn new(seed: u64) -> Self {
        TorchGenerator { mt: Mt19937::new(seed as u32), cached_normal: None }
    }

    /// A uniform f32 in [0, 1) from 24 random bits, as `uniform_real_distribution<float>`.
    fn uniform_f32(&mut self) -> f32 {
        let bits = self.mt.next_u32() & ((1 << 24) - 1);
        bits as f32 * (1.0 / (1u32 << 24) as f32)
    }

    /// A uniform f64 in [0, 1) from 53 bits of a 64-bit draw (high word first).
    fn uniform_f64(&mut self) -> f64 {
        let hi = u64::from(self.mt.next_u32());
        let lo = u64::from(self.mt.next_u32());
        let bits = ((hi << 32) | lo) & ((1u64 << 53) - 1);
        bits as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// One standard normal from the scalar path (double precision, cached pair).
    fn normal_f64(&mut self) -> f64 {
        if let Some(cached) = self.cached_normal.take() {
            return cached;
        }
        let u1 = self.uniform_f64();
        let u2 = self.uniform_f64();
        let radius = (-2.0 * (-u2).ln_1p()).sqrt();
        let theta = 2.0 * std::f64::consts::PI * u1;
        self.cached_normal = Some(radius * theta.sin());
        radius * theta.cos()
    }

    /// `torch.randn(len)` in f32: the same values for any shape with `len` elements.
    pub fn randn(&mut self, len: usize) -> Vec<f32> {
        if len < 16 {
            return (0..len).map(|_| self.normal_f64() as f32).collect();
        }
        let mut data: Vec<f32> = (0..len).map(|_| self.uniform_f32()).collect();
        for start in (0..len - 15).step_by(16) {
            box_muller_16(&mut data[start..start + 16]);
        }
        if len % 16 != 0 {
            let tail = &mut data[len - 16..];
            for value in tail.iter_mut() {
                *value = self.uniform_f32();
            }
            box_muller_16(tail);
        }
        data
    }
}

/// Turns 16 uniforms into 16 normals: value `j` pairs with value `j + 8`.
fn box_muller_16(block: &mut [f32]) {
    for j in 0..8 {
        let u1 = 1.0 - block[j];
        let u2 = block[j + 8];
        let radius = (-2.0 * u1.ln()).sqrt();
        let theta = 2.0 * std::f32::consts::PI * u2;
        block[j] = radius * theta.cos();
        block[j + 8] = radius * theta.sin();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mersenne_twister_matches_the_reference_sequence() {
        // The C++ standard requires the 10000th output of mt19937 seeded 5489.
        let mut mt = Mt19937::new(5489);
        let mut last = 0;
        for _ in 0..10_000 {
            last = mt.next_u32();
        }
        assert_eq!(last, 4_123_659_995);
    }

    #[test]
    fn scalar_path_caches_the_second_value() {
        let mut a = TorchGenerator::new(7);
        let two = a.randn(2);
        let mut b = TorchGenerator::new(7);
        let first = b.randn(1);
        let second = b.randn(1);
        assert_eq!(two, vec![first[0], second[0]]);
    }
}
