//! Previews: a smaller copy for listings and quick looks.

use image::imageops::{self, FilterType};
use image::RgbImage;

/// Default longest side of a preview, in pixels.
pub const DEFAULT_PREVIEW_SIDE: u32 = 512;

/// A copy whose longest side is at most `longest` pixels, aspect ratio kept. An image
/// already that small is returned as is.
pub fn preview(image: &RgbImage, longest: u32) -> RgbImage {
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
