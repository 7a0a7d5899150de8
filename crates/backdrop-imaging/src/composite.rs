//! Restoring the protected pixels after an engine ran, and hiding the seam.
//!
//! The final image is `canvas * alpha + generated * (1 - alpha)` per pixel, so every
//! pixel the canvas holds at alpha 255 comes back bit-identical whatever the engine did,
//! and a cut-out's soft edge is rebuilt from its own alpha.
//!
//! An expansion also gets its seam harmonized ([`Seam::Harmonize`]): the engine repainted
//! the overlap band inside the original (the grown mask), so along that band we know how
//! far the generated colours drift from the real ones. That difference is spread outward
//! by normalized convolution and added to the generated side, fading linearly to nothing
//! over `feather` pixels. Only pixels outside the protected region change, so the
//! original stays exact; the tone shift a seam would show is carried smoothly away.

use crate::blur::gaussian_approx;
use crate::mask::distance_to;
use image::{GrayImage, Rgb, RgbImage, RgbaImage};

/// How the generated side meets the protected region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seam {
    /// Alpha blending only (backgrounds: the background must not take the product's
    /// colours).
    AlphaOnly,
    /// Alpha blending plus colour harmonization over a band `feather` pixels wide.
    Harmonize {
        /// Width of the band on the generated side, in pixels.
        feather: u32,
    },
}

/// A feather width suited to an original of this size: 1/12 of its shorter side, kept
/// within 8..=64 pixels.
pub fn default_feather(width: u32, height: u32) -> u32 {
    (width.min(height) / 12).clamp(8, 64)
}

/// Composites `canvas` over `generated` (see the module doc). All three images must have
/// the same size; a generated image of another size is a programming error upstream and
/// is resized defensively rather than panicking.
pub fn composite(
    canvas: &RgbaImage,
    generated: &RgbImage,
    mask: &GrayImage,
    seam: Seam,
) -> RgbImage {
    let (w, h) = canvas.dimensions();
    let mut generated = if generated.dimensions() == (w, h) {
        generated.clone()
    } else {
        image::imageops::resize(generated, w, h, image::imageops::FilterType::Triangle)
    };
    if let Seam::Harmonize { feather } = seam {
        if feather > 0 && mask.dimensions() == (w, h) {
            harmonize(canvas, &mut generated, mask, feather);
        }
    }
    RgbImage::from_fn(w, h, |x, y| {
        let [cr, cg, cb, a] = canvas.get_pixel(x, y).0;
        match a {
            255 => Rgb([cr, cg, cb]),
            0 => *generated.get_pixel(x, y),
            a => {
                let [gr, gg, gb] = generated.get_pixel(x, y).0;
                let (a, inv) = (u32::from(a), 255 - u32::from(a));
                let mix =
                    |c: u8, g: u8| ((u32::from(c) * a + u32::from(g) * inv + 127) / 255) as u8;
                Rgb([mix(cr, gr), mix(cg, gg), mix(cb, gb)])
            }
        }
    })
}

fn harmonize(canvas: &RgbaImage, generated: &mut RgbImage, mask: &GrayImage, feather: u32) {
    let (w, h) = (canvas.width() as usize, canvas.height() as usize);
    let n = w * h;
    let protected: Vec<bool> = canvas.pixels().map(|p| p.0[3] == 255).collect();
    let mut weight = vec![0.0f32; n];
    let mut diff = [vec![0.0f32; n], vec![0.0f32; n], vec![0.0f32; n]];
    let mut any = false;
    for (i, ((c, g), m)) in canvas.pixels().zip(generated.pixels()).zip(mask.pixels()).enumerate() {
        if protected[i] && m.0[0] > 0 {
            any = true;
            weight[i] = 1.0;
            for (plane, (cv, gv)) in diff.iter_mut().zip(c.0.iter().zip(g.0)) {
                plane[i] = f32::from(*cv) - f32::from(gv);
            }
        }
    }
    if !any {
        return;
    }
    let sigma = (feather as f32 / 2.0).max(1.0);
    gaussian_approx(&mut weight, w, h, sigma);
    for plane in &mut diff {
        gaussian_approx(plane, w, h, sigma);
    }
    let distance = distance_to(&protected, w, h);
    let reach = feather as f32;
    for (i, px) in generated.pixels_mut().enumerate() {
        if protected[i] || distance[i] > reach || weight[i] < 1e-3 {
            continue;
        }
        let fade = 1.0 - distance[i] / reach;
        for (value, plane) in px.0.iter_mut().zip(&diff) {
            let shift = plane[i] / weight[i] * fade;
            *value = (f32::from(*value) + shift).round().clamp(0.0, 255.0) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Luma, Rgba};

    #[test]
    fn opaque_pixels_come_back_exactly_and_edges_blend() {
        let canvas = RgbaImage::from_fn(8, 1, |x, _| {
            Rgba([100, 150, 200, [255, 128, 0, 255, 0, 1, 254, 255][x as usize]])
        });
        let generated = RgbImage::from_pixel(8, 1, Rgb([0, 0, 0]));
        let mask = GrayImage::from_pixel(8, 1, Luma([255]));
        let out = composite(&canvas, &generated, &mask, Seam::AlphaOnly);
        assert_eq!(out.get_pixel(0, 0).0, [100, 150, 200]);
        assert_eq!(out.get_pixel(1, 0).0, [50, 75, 100]);
        assert_eq!(out.get_pixel(2, 0).0, [0, 0, 0]);
        assert_eq!(out.get_pixel(7, 0).0, [100, 150, 200]);
    }

    #[test]
    fn harmonization_removes_a_tone_step_without_touching_the_original() {
        // Original on the left (value 120), generated border on the right drawn 30 too dark.
        let (w, h) = (64u32, 16u32);
        let canvas = RgbaImage::from_fn(w, h, |x, _| {
            if x < 32 {
                Rgba([120, 120, 120, 255])
            } else {
                Rgba([0, 0, 0, 0])
            }
        });
        let mask = GrayImage::from_fn(w, h, |x, _| Luma([if x >= 28 { 255 } else { 0 }]));
        let generated = RgbImage::from_pixel(w, h, Rgb([90, 90, 90]));
        let plain = composite(&canvas, &generated, &mask, Seam::AlphaOnly);
        let smooth = composite(&canvas, &generated, &mask, Seam::Harmonize { feather: 16 });
        for x in 0..32 {
            assert_eq!(smooth.get_pixel(x, 8).0, [120; 3], "original changed at x={x}");
        }
        let step = |img: &RgbImage| {
            i32::from(img.get_pixel(31, 8).0[0]) - i32::from(img.get_pixel(32, 8).0[0])
        };
        assert_eq!(step(&plain), 30);
        assert!(step(&smooth).abs() <= 3, "seam step {}", step(&smooth));
        assert_eq!(smooth.get_pixel(60, 8).0, [90; 3], "beyond the feather nothing changes");
    }
}
