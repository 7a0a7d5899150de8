//! Previews: a smaller copy for listings and quick looks.

use image::imageops::{self, FilterType};
use image::{DynamicImage, ImageBuffer, Pixel, RgbImage};

/// Default longest side of a preview, in pixels.
pub const DEFAULT_PREVIEW_SIDE: u32 = 512;

/// A copy whose longest side is at most `longest` pixels, aspect ratio kept. An image
/// already that small is returned as is.
pub fn preview(image: &RgbImage, longest: u32) -> RgbImage {
    shrink(image, longest)
}

/// [`preview`] of an RGB or RGBA image, keeping its layout (others become RGB).
pub fn preview_image(image: &DynamicImage, longest: u32) -> DynamicImage {
    match image {
        DynamicImage::ImageRgba8(rgba) => DynamicImage::ImageRgba8(shrink(rgba, longest)),
        DynamicImage::ImageRgb8(rgb) => DynamicImage::ImageRgb8(shrink(rgb, longest)),
        other => DynamicImage::ImageRgb8(shrink(&other.to_rgb8(), longest)),
    }
}

fn shrink<P: Pixel<Subpixel = u8> + 'static>(
    image: &ImageBuffer<P, Vec<u8>>,
    longest: u32,
) -> ImageBuffer<P, Vec<u8>> {
    let (w, h) = image.dimensions();
    let longest = longest.max(1);
    if w.max(h) <= longest {
        return image.clone();
    }
    let scale = f64::from(longest) / f64::from(w.max(h));
    let pw = ((f64::from(w) * scale).round() as u32).clamp(1, longest);
    let ph = ((f64::from(h) * scale).round() as u32).clamp(1, longest);
    imageops::resize(image, pw, ph, FilterType::Triangle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_aspect_and_bounds() {
        let img = RgbImage::new(1200, 300);
        assert_eq!(preview(&img, 512).dimensions(), (512, 128));
        assert_eq!(preview(&RgbImage::new(100, 50), 512).dimensions(), (100, 50));
    }
}
