//! Encoding results: PNG, JPEG or WebP.
//!
//! PNG and WebP are lossless (the `image` crate writes lossless WebP only), so a
//! protected region stays bit-identical in those formats; JPEG (quality
//! [`JPEG_QUALITY`]) is lossy by nature and documented as such. Encoders are
//! deterministic: the same pixels always give the same bytes.

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::codecs::webp::WebPEncoder;
use image::{DynamicImage, ExtendedColorType, ImageEncoder, RgbImage, RgbaImage};

/// JPEG quality used for results.
pub const JPEG_QUALITY: u8 = 92;

pub use backdrop_core::OutputFormat;

/// Encodes an RGB image. Fails only if the encoder does (e.g. WebP larger than 16383
/// pixels on a side).
pub fn encode(image: &RgbImage, format: OutputFormat) -> Result<Vec<u8>, image::ImageError> {
    let (w, h) = image.dimensions();
    encode_raw(image.as_raw(), w, h, ExtendedColorType::Rgb8, format)
}

/// Encodes an RGB image as [`encode`] does, or an RGBA one with its alpha (PNG, WebP;
/// JPEG has no alpha, so an RGBA image is flattened to its colour channels there). Other
/// layouts are converted to RGB.
pub fn encode_image(
    image: &DynamicImage,
    format: OutputFormat,
) -> Result<Vec<u8>, image::ImageError> {
    match image {
        DynamicImage::ImageRgb8(rgb) => encode(rgb, format),
        DynamicImage::ImageRgba8(rgba) if format != OutputFormat::Jpeg => {
            let (w, h) = rgba.dimensions();
            encode_raw(rgba.as_raw(), w, h, ExtendedColorType::Rgba8, format)
        }
        other => encode(&other.to_rgb8(), format),
    }
}

fn encode_raw(
    raw: &[u8],
    w: u32,
    h: u32,
    colour: ExtendedColorType,
    format: OutputFormat,
) -> Result<Vec<u8>, image::ImageError> {
    let mut out = Vec::new();
    match format {
        // Fast compression: results are large photos where the default level costs
        // several times the time for a few percent of size.
        OutputFormat::Png => {
            PngEncoder::new_with_quality(&mut out, CompressionType::Fast, FilterType::Adaptive)
                .write_image(raw, w, h, colour)?
        }
        OutputFormat::Jpeg => {
            JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY).write_image(raw, w, h, colour)?
        }
        OutputFormat::WebP => WebPEncoder::new_lossless(&mut out).write_image(raw, w, h, colour)?,
    }
    Ok(out)
}

/// Encodes a transparent cut-out as PNG, the format every consumer reads with alpha.
pub fn encode_cutout(image: &RgbaImage) -> Result<Vec<u8>, image::ImageError> {
    let (w, h) = image.dimensions();
    encode_raw(image.as_raw(), w, h, ExtendedColorType::Rgba8, OutputFormat::Png)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lossless_formats_round_trip_and_are_deterministic() {
        let img = RgbImage::from_fn(33, 17, |x, y| {
            image::Rgb([x as u8 * 7, y as u8 * 13, (x ^ y) as u8])
        });
        for format in [OutputFormat::Png, OutputFormat::WebP] {
            let a = encode(&img, format).expect("encode");
            assert_eq!(a, encode(&img, format).expect("encode"));
            let back = image::load_from_memory(&a).expect("decode").to_rgb8();
            assert_eq!(back, img, "{format}");
        }
        let jpg = encode(&img, OutputFormat::Jpeg).expect("encode");
        assert_eq!(&jpg[..2], &[0xFF, 0xD8]);
    }

    #[test]
    fn rgba_keeps_its_alpha_in_lossless_formats() {
        let img = image::RgbaImage::from_fn(9, 5, |x, y| {
            image::Rgba([x as u8, y as u8, 3, x as u8 * 20])
        });
        let dynamic = DynamicImage::ImageRgba8(img.clone());
        for format in [OutputFormat::Png, OutputFormat::WebP] {
            let bytes = encode_image(&dynamic, format).expect("encode");
            assert_eq!(image::load_from_memory(&bytes).expect("decode").to_rgba8(), img);
        }
        let jpg = encode_image(&dynamic, OutputFormat::Jpeg).expect("encode");
        assert_eq!(&jpg[..2], &[0xFF, 0xD8]);
    }
}
