//! The canvas each job hands an engine.
//!
//! A canvas is RGBA at output size: known pixels carry their alpha, pixels to generate
//! have alpha 0. The same canvas later drives the exact composite
//! ([`crate::composite`]): alpha 255 means "this pixel is the input's, restore it".
//!
//! - Background: the cut-out, fitted to the output size by its [`ResizeMode`]. At the
//!   input's own size the cut-out is copied untouched; when it is scaled, scaling happens
//!   on premultiplied alpha so transparent pixels do not bleed dark fringes into the edge.
//! - Expansion: the photo placed at `(left, up)` in a transparent canvas, its alpha
//!   forced to 255 (the whole original rectangle is protected, as the user sent it).

use backdrop_core::{ExpansionPixels, OutputSize, ResizeMode};
use image::imageops::{self, FilterType};
use image::{ImageBuffer, Rgba, RgbaImage};

/// The cut-out fitted to `size` (its own size when `None`).
pub fn background_canvas(
    cutout: &RgbaImage,
    size: Option<OutputSize>,
    mode: ResizeMode,
) -> RgbaImage {
    let (w, h) = cutout.dimensions();
    let Some(size) = size.filter(|s| (s.width, s.height) != (w, h)) else {
        return cutout.clone();
    };
    let (out_w, out_h) = (size.width, size.height);
    match mode {
        ResizeMode::JustResize => resize_premultiplied(cutout, out_w, out_h),
        ResizeMode::CropAndResize => {
            let scale = f64::max(f64::from(out_w) / f64::from(w), f64::from(out_h) / f64::from(h));
            let (sw, sh) = scaled(w, h, scale, out_w, out_h, u32::max);
            let scaled = resize_premultiplied(cutout, sw, sh);
            imageops::crop_imm(&scaled, (sw - out_w) / 2, (sh - out_h) / 2, out_w, out_h).to_image()
        }
        ResizeMode::ResizeAndFill => {
            let scale = f64::min(f64::from(out_w) / f64::from(w), f64::from(out_h) / f64::from(h));
            let (sw, sh) = scaled(w, h, scale, out_w, out_h, u32::min);
            let scaled = resize_premultiplied(cutout, sw, sh);
            let mut canvas = RgbaImage::new(out_w, out_h);
            let (x, y) = ((out_w - sw) / 2, (out_h - sh) / 2);
            imageops::replace(&mut canvas, &scaled, i64::from(x), i64::from(y));
            canvas
        }
    }
}

/// Size after scaling by `scale`, clamped with `bound` (`max` when covering, `min` when
/// fitting) against the output so rounding never leaves a gap or an overflow on the side
/// that fits exactly.
fn scaled(
    w: u32,
    h: u32,
    scale: f64,
    out_w: u32,
    out_h: u32,
    bound: fn(u32, u32) -> u32,
) -> (u32, u32) {
    let sw = ((f64::from(w) * scale).round() as u32).max(1);
    let sh = ((f64::from(h) * scale).round() as u32).max(1);
    (bound(sw, out_w), bound(sh, out_h))
}

/// Resizes with Catmull-Rom on premultiplied alpha.
pub(crate) fn resize_premultiplied(image: &RgbaImage, width: u32, height: u32) -> RgbaImage {
    let premultiplied: ImageBuffer<Rgba<f32>, Vec<f32>> =
        ImageBuffer::from_fn(image.width(), image.height(), |x, y| {
            let [r, g, b, a] = image.get_pixel(x, y).0;
            // The resizer clamps f32 samples to [0, 1], so colours are scaled to that range.
            let a = f32::from(a) / 255.0;
            let c = |v: u8| f32::from(v) / 255.0 * a;
            Rgba([c(r), c(g), c(b), a])
        });
    let resized = imageops::resize(&premultiplied, width, height, FilterType::CatmullRom);
    RgbaImage::from_fn(width, height, |x, y| {
        let [r, g, b, a] = resized.get_pixel(x, y).0;
        let a = a.clamp(0.0, 1.0);
        let alpha = (a * 255.0).round() as u8;
        // A pixel too faint to keep any alpha is empty, colour included.
        if alpha == 0 {
            return Rgba([0, 0, 0, 0]);
        }
        let channel = |c: f32| (c / a * 255.0).round().clamp(0.0, 255.0) as u8;
        Rgba([channel(r), channel(g), channel(b), alpha])
    })
}

/// The photo placed inside its expansion border.
pub fn expansion_canvas(photo: &RgbaImage, px: &ExpansionPixels) -> RgbaImage {
    let mut canvas = RgbaImage::new(px.canvas_width, px.canvas_height);
    for (x, y, p) in photo.enumerate_pixels() {
        let [r, g, b, _] = p.0;
        canvas.put_pixel(x + px.left, y + px.up, Rgba([r, g, b, 255]));
    }
    canvas
}

#[cfg(test)]
mod tests {
    use super::*;
    use backdrop_core::ExpansionRatios;

    fn cutout() -> RgbaImage {
        RgbaImage::from_fn(40, 20, |x, _| {
            if (10..30).contains(&x) {
                Rgba([200, 50, 20, 255])
            } else {
                Rgba([0, 0, 0, 0])
            }
        })
    }

    #[test]
    fn own_size_is_untouched() {
        let c = cutout();
        for mode in [ResizeMode::JustResize, ResizeMode::CropAndResize, ResizeMode::ResizeAndFill] {
            assert_eq!(background_canvas(&c, Some(OutputSize { width: 40, height: 20 }), mode), c);
        }
    }

    #[test]
    fn modes_fit_as_named() {
        let c = cutout();
        let size = Some(OutputSize { width: 80, height: 80 });
        let just = background_canvas(&c, size, ResizeMode::JustResize);
        assert_eq!(just.dimensions(), (80, 80));
        assert_eq!(just.get_pixel(40, 0).0[3], 255, "stretched to the top");
        let fill = background_canvas(&c, size, ResizeMode::ResizeAndFill);
        assert_eq!(fill.dimensions(), (80, 80));
        assert_eq!(fill.get_pixel(40, 5).0[3], 0, "letterboxed margin is transparent");
        assert_eq!(fill.get_pixel(40, 40).0, [200, 50, 20, 255]);
        let crop = background_canvas(&c, size, ResizeMode::CropAndResize);
        assert_eq!(crop.dimensions(), (80, 80));
        assert_eq!(crop.get_pixel(40, 0).0[3], 255, "covering crop keeps the middle");
        assert_eq!(crop.get_pixel(3, 40).0[3], 255, "the transparent sides are cropped off");
    }

    #[test]
    fn no_dark_fringe_when_scaling() {
        let c = cutout();
        let up = background_canvas(
            &c,
            Some(OutputSize { width: 120, height: 60 }),
            ResizeMode::JustResize,
        );
        for p in up.pixels().filter(|p| p.0[3] > 0) {
            assert!(p.0[0] > 150, "edge pixel {p:?} darkened by transparent black");
        }
    }

    #[test]
    fn expansion_places_the_photo_exactly() {
        let photo = RgbaImage::from_fn(10, 6, |x, y| Rgba([x as u8, y as u8, 7, 128]));
        let ratios = ExpansionRatios { up: 0.5, down: 0.0, left: 0.2, right: 1.0 };
        let px = ratios.pixels(10, 6).expect("fits");
        let canvas = expansion_canvas(&photo, &px);
        assert_eq!(canvas.dimensions(), (22, 9));
        assert_eq!(canvas.get_pixel(2, 3).0, [0, 0, 7, 255]);
        assert_eq!(canvas.get_pixel(11, 8).0, [9, 5, 7, 255]);
        assert_eq!(canvas.get_pixel(0, 0).0[3], 0);
    }
}
