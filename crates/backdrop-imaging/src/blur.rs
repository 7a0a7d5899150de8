//! Separable box blurs on single-channel `f32` planes.
//!
//! Three passes of a box blur approximate a Gaussian closely and cost O(1) per pixel
//! whatever the radius; everything that needs a soft edge (shadows, feathering, seam
//! harmonization) uses [`gaussian_approx`]. Edges are handled by clamping to the border
//! pixel, so a blurred constant plane stays exactly constant.

/// Blurs `plane` (row-major, `width * height`) in place with one horizontal and one
/// vertical box of half-width `radius`.
pub fn box_blur(plane: &mut [f32], width: usize, height: usize, radius: usize) {
    if radius == 0 || width == 0 || height == 0 {
        return;
    }
    debug_assert_eq!(plane.len(), width * height);
    let mut line = vec![0.0f32; width.max(height)];
    for row in plane.chunks_exact_mut(width) {
        blur_line(row, &mut line[..width], radius);
        row.copy_from_slice(&line[..width]);
    }
    let mut column = vec![0.0f32; height];
    for x in 0..width {
        for (y, value) in column.iter_mut().enumerate() {
            *value = plane[y * width + x];
        }
        blur_line(&column, &mut line[..height], radius);
        for (y, value) in line[..height].iter().enumerate() {
            plane[y * width + x] = *value;
        }
    }
}

/// Three box passes whose combined spread approximates a Gaussian of standard deviation
/// `sigma` (pixels).
pub fn gaussian_approx(plane: &mut [f32], width: usize, height: usize, sigma: f32) {
    // Written so NaN also returns.
    if sigma.is_nan() || sigma <= 0.0 {
        return;
    }
    // Variance of a box of half-width r is ((2r+1)^2 - 1) / 12; three passes add up.
    let r = (((4.0 * sigma * sigma + 1.0).sqrt() - 1.0) / 2.0).round().max(1.0) as usize;
    for _ in 0..3 {
        box_blur(plane, width, height, r);
    }
}

/// One running-sum box pass over `src` into `dst`, clamping reads to the ends.
fn blur_line(src: &[f32], dst: &mut [f32], radius: usize) {
    let n = src.len();
    let last = n - 1;
    let at = |i: isize| src[i.clamp(0, last as isize) as usize];
    let r = radius as isize;
    let norm = 1.0 / (2 * radius + 1) as f32;
    let mut sum: f32 = (-r..=r).map(at).sum();
    for (i, out) in dst.iter_mut().enumerate() {
        *out = sum * norm;
        let i = i as isize;
        sum += at(i + r + 1) - at(i - r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_plane_stays_constant() {
        let mut plane = vec![0.5f32; 7 * 5];
        gaussian_approx(&mut plane, 7, 5, 3.0);
        assert!(plane.iter().all(|v| (v - 0.5).abs() < 1e-5));
    }

    #[test]
    fn impulse_spreads_and_keeps_mass_away_from_edges() {
        let (w, h) = (41, 41);
        let mut plane = vec![0.0f32; w * h];
        plane[20 * w + 20] = 1.0;
        box_blur(&mut plane, w, h, 2);
        let total: f32 = plane.iter().sum();
        assert!((total - 1.0).abs() < 1e-4);
        assert!((plane[20 * w + 20] - 1.0 / 25.0).abs() < 1e-6);
        assert_eq!(plane[20 * w + 23], 0.0);
    }
}
