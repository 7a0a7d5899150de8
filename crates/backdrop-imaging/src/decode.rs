//! Decoding input images under hard limits.
//!
//! The order of checks is what makes a decompression bomb harmless: the byte length is
//! checked first, then the format is sniffed from the magic bytes (the file name and any
//! declared content type are ignored), then the header alone is read and the claimed
//! width, height and pixel count are checked, and only then are pixels decoded — with
//! the decoder's own allocation limit set as a second guard. A 100-byte PNG that claims
//! 100000x100000 is refused at the header, before any pixel buffer exists.
//!
//! JPEG EXIF orientation is applied, so a photo comes out the way a viewer shows it.

use backdrop_core::ErrorCode;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbaImage};
use std::fmt;
use std::io::Cursor;

/// Limits checked before and during decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest file in bytes.
    pub max_file_bytes: u64,
    /// Largest width in pixels.
    pub max_width: u32,
    /// Largest height in pixels.
    pub max_height: u32,
    /// Largest width x height.
    pub max_pixels: u64,
    /// Smallest width in pixels.
    pub min_width: u32,
    /// Smallest height in pixels.
    pub min_height: u32,
}

impl Default for DecodeLimits {
    /// 32 MiB, 8192 px per side, 40 megapixels, at least 16 px per side.
    fn default() -> Self {
        DecodeLimits {
            max_file_bytes: 32 * 1024 * 1024,
            max_width: 8192,
            max_height: 8192,
            max_pixels: 40_000_000,
            min_width: 16,
            min_height: 16,
        }
    }
}

/// A supported input format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// PNG.
    Png,
    /// JPEG.
    Jpeg,
    /// WebP.
    WebP,
}

impl InputFormat {
    /// Sniffs the format from the first bytes.
    pub fn sniff(bytes: &[u8]) -> Option<InputFormat> {
        if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(InputFormat::Png)
        } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(InputFormat::Jpeg)
        } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
            Some(InputFormat::WebP)
        } else {
            None
        }
    }

    fn image_format(self) -> ImageFormat {
        match self {
            InputFormat::Png => ImageFormat::Png,
            InputFormat::Jpeg => ImageFormat::Jpeg,
            InputFormat::WebP => ImageFormat::WebP,
        }
    }
}

impl fmt::Display for InputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InputFormat::Png => "PNG",
            InputFormat::Jpeg => "JPEG",
            InputFormat::WebP => "WebP",
        })
    }
}

/// An input image refused. Each variant names the limit.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// The file is too large.
    #[error("file is {size} bytes; the limit is {max} bytes")]
    FileTooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// A side is too long.
    #[error("image is {width}x{height}; the limit is {max_width}x{max_height}")]
    DimensionsTooLarge {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// Largest width.
        max_width: u32,
        /// Largest height.
        max_height: u32,
    },
    /// A side is too short.
    #[error("image is {width}x{height}; each side must be at least {min_width}x{min_height}")]
    DimensionsTooSmall {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// Smallest width.
        min_width: u32,
        /// Smallest height.
        min_height: u32,
    },
    /// Too many pixels.
    #[error("image has {pixels} pixels; the limit is {max}")]
    TooManyPixels {
        /// width x height.
        pixels: u64,
        /// The limit.
        max: u64,
    },
    /// Not PNG, JPEG or WebP.
    #[error("not a PNG, JPEG or WebP image ({found})")]
    UnsupportedFormat {
        /// What the first bytes look like.
        found: String,
    },
    /// Claims a format but does not decode.
    #[error("{format} image is corrupt or truncated: {reason}")]
    Corrupt {
        /// The sniffed format.
        format: InputFormat,
        /// The decoder's words.
        reason: String,
    },
    /// A cut-out without alpha.
    #[error("image has no alpha channel: a background needs a cut-out with a transparent area")]
    NoAlphaChannel,
    /// A cut-out with no transparent pixel.
    #[error("image is fully opaque: a background needs a cut-out with a transparent area")]
    FullyOpaque,
    /// A cut-out with no opaque pixel.
    #[error("image is fully transparent: there is no foreground to keep")]
    FullyTransparent,
    /// A photo in which automatic cut-out found no object.
    #[error(transparent)]
    NoObject(#[from] backdrop_core::NoObject),
}

impl InputError {
    /// The stable code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            InputError::FileTooLarge { .. } => ErrorCode::FileTooLarge,
            InputError::DimensionsTooLarge { .. } => ErrorCode::DimensionsTooLarge,
            InputError::DimensionsTooSmall { .. } => ErrorCode::DimensionsTooSmall,
            InputError::TooManyPixels { .. } => ErrorCode::TooManyPixels,
            InputError::UnsupportedFormat { .. } => ErrorCode::UnsupportedFormat,
            InputError::Corrupt { .. } => ErrorCode::CorruptImage,
            InputError::NoAlphaChannel => ErrorCode::NoAlphaChannel,
            InputError::FullyOpaque => ErrorCode::FullyOpaque,
            InputError::FullyTransparent => ErrorCode::FullyTransparent,
            InputError::NoObject(e) => e.code(),
        }
    }
}

/// A decoded input.
#[derive(Debug, Clone)]
pub struct DecodedImage {
    /// The pixels, as 8-bit RGBA (opaque formats get alpha 255).
    pub image: RgbaImage,
    /// The format it came in.
    pub format: InputFormat,
    /// Whether the file carried an alpha channel.
    pub has_alpha: bool,
}

/// Checks the header against `limits`, then decodes. See the module doc for the order.
pub fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<DecodedImage, InputError> {
    let size = bytes.len() as u64;
    if size > limits.max_file_bytes {
        return Err(InputError::FileTooLarge { size, max: limits.max_file_bytes });
    }
    let format = InputFormat::sniff(bytes)
        .ok_or_else(|| InputError::UnsupportedFormat { found: describe_magic(bytes) })?;
    let corrupt = |e: image::ImageError| InputError::Corrupt { format, reason: e.to_string() };

    let reader = ImageReader::with_format(Cursor::new(bytes), format.image_format());
    let mut decoder = reader.into_decoder().map_err(corrupt)?;
    let (width, height) = decoder.dimensions();
    check_dimensions(width, height, limits)?;

    let mut decode_limits = image::Limits::default();
    decode_limits.max_image_width = Some(limits.max_width);
    decode_limits.max_image_height = Some(limits.max_height);
    // Room for the decoded RGBA16 buffer plus the decoder's own working memory.
    decode_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8).saturating_add(64 << 20));
    decoder.set_limits(decode_limits).map_err(corrupt)?;

    let has_alpha = decoder.color_type().has_alpha();
    let orientation = decoder.orientation().ok();
    let mut dynamic = DynamicImage::from_decoder(decoder).map_err(corrupt)?;
    if let Some(orientation) = orientation {
        dynamic.apply_orientation(orientation);
    }
    Ok(DecodedImage { image: dynamic.into_rgba8(), format, has_alpha })
}

/// Checks claimed dimensions against the limits.
pub fn check_dimensions(width: u32, height: u32, limits: &DecodeLimits) -> Result<(), InputError> {
    if width > limits.max_width || height > limits.max_height {
        return Err(InputError::DimensionsTooLarge {
            width,
            height,
            max_width: limits.max_width,
            max_height: limits.max_height,
        });
    }
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_pixels {
        return Err(InputError::TooManyPixels { pixels, max: limits.max_pixels });
    }
    if width < limits.min_width || height < limits.min_height {
        return Err(InputError::DimensionsTooSmall {
            width,
            height,
            min_width: limits.min_width,
            min_height: limits.min_height,
        });
    }
    Ok(())
}

/// Names what the first bytes look like, for the error message.
fn describe_magic(bytes: &[u8]) -> String {
    let known: &[(&[u8], &str)] = &[
        (b"GIF8", "looks like GIF"),
        (b"BM", "looks like BMP"),
        (b"%PDF", "looks like PDF"),
        (b"II*\0", "looks like TIFF"),
        (b"MM\0*", "looks like TIFF"),
        (b"PK\x03\x04", "looks like a ZIP archive"),
        (b"<svg", "looks like SVG"),
        (b"<?xml", "looks like XML/SVG"),
    ];
    if bytes.is_empty() {
        return "the file is empty".into();
    }
    if let Some((_, name)) = known.iter().find(|(magic, _)| bytes.starts_with(magic)) {
        return (*name).into();
    }
    if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        return "looks like HEIC/AVIF/MP4".into();
    }
    if bytes.iter().take(512).all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace()) {
        return "looks like text".into();
    }
    "unrecognised content".into()
}

/// Checks that a cut-out has alpha with both a transparent and an opaque part: some
/// pixel with alpha < 255 (to generate) and some with alpha > 0 (to keep).
pub fn check_cutout(decoded: &DecodedImage) -> Result<(), InputError> {
    if !decoded.has_alpha {
        return Err(InputError::NoAlphaChannel);
    }
    let alphas = || decoded.image.pixels().map(|p| p.0[3]);
    if alphas().all(|a| a == 255) {
        return Err(InputError::FullyOpaque);
    }
    if alphas().all(|a| a == 0) {
        return Err(InputError::FullyTransparent);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageEncoder, Rgba};

    fn png(img: &RgbaImage) -> Vec<u8> {
        let mut out = Vec::new();
        image::codecs::png::PngEncoder::new(&mut out)
            .write_image(img.as_raw(), img.width(), img.height(), image::ExtendedColorType::Rgba8)
            .expect("encode");
        out
    }

    /// A valid PNG whose IHDR claims `w` x `h` (CRC fixed up), with no pixel data.
    fn bomb_header(w: u32, h: u32) -> Vec<u8> {
        let mut bytes = png(&RgbaImage::new(1, 1));
        bytes[16..20].copy_from_slice(&w.to_be_bytes());
        bytes[20..24].copy_from_slice(&h.to_be_bytes());
        let crc = crc32fast::hash(&bytes[12..29]);
        bytes[29..33].copy_from_slice(&crc.to_be_bytes());
        bytes
    }

    #[test]
    fn bomb_header_is_refused_before_decoding() {
        let bytes = bomb_header(100_000, 100_000);
        assert!(bytes.len() < 200);
        let err = decode(&bytes, &DecodeLimits::default()).expect_err("refused");
        assert_eq!(err.code(), ErrorCode::DimensionsTooLarge);
        let err = decode(&bomb_header(8000, 8000), &DecodeLimits::default()).expect_err("refused");
        assert_eq!(err.code(), ErrorCode::TooManyPixels);
    }

    #[test]
    fn limits_name_their_numbers() {
        let bytes = png(&RgbaImage::new(8, 8));
        let err = decode(&bytes, &DecodeLimits::default()).expect_err("too small");
        assert_eq!(err.to_string(), "image is 8x8; each side must be at least 16x16");
        let limits = DecodeLimits { max_file_bytes: 10, ..Default::default() };
        let err = decode(&bytes, &limits).expect_err("too big");
        assert_eq!(err.code(), ErrorCode::FileTooLarge);
    }

    #[test]
    fn truncated_and_foreign_files_are_refused() {
        let mut img = RgbaImage::new(64, 64);
        img.put_pixel(3, 3, Rgba([1, 2, 3, 255]));
        let bytes = png(&img);
        let err = decode(&bytes[..bytes.len() / 2], &DecodeLimits::default()).expect_err("cut");
        assert_eq!(err.code(), ErrorCode::CorruptImage);
        let err = decode(b"GIF89a......", &DecodeLimits::default()).expect_err("gif");
        assert_eq!(err.to_string(), "not a PNG, JPEG or WebP image (looks like GIF)");
        assert_eq!(err.code(), ErrorCode::UnsupportedFormat);
    }

    #[test]
    fn cutout_checks() {
        let limits = DecodeLimits::default();
        let mut img = RgbaImage::from_pixel(32, 32, Rgba([9, 9, 9, 255]));
        let opaque = decode(&png(&img), &limits).expect("decodes");
        assert_eq!(check_cutout(&opaque), Err(InputError::FullyOpaque));
        img.put_pixel(0, 0, Rgba([0, 0, 0, 0]));
        let ok = decode(&png(&img), &limits).expect("decodes");
        assert_eq!(check_cutout(&ok), Ok(()));
        let clear = decode(&png(&RgbaImage::new(32, 32)), &limits).expect("decodes");
        assert_eq!(check_cutout(&clear), Err(InputError::FullyTransparent));
        let rgb = image::RgbImage::new(32, 32);
        let jpg = crate::encode(&rgb, crate::OutputFormat::Jpeg).expect("encode");
        let decoded = decode(&jpg, &limits).expect("decodes");
        assert_eq!(decoded.format, InputFormat::Jpeg);
        assert_eq!(check_cutout(&decoded), Err(InputError::NoAlphaChannel));
    }
}
