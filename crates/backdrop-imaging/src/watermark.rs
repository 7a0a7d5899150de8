//! The visible watermark for the watermarked variant.
//!
//! The mark is the word BACKDROP in a built-in 5x7 bitmap font, tiled in staggered rows
//! across the whole image, light text over a darker outline at partial opacity so it
//! shows on both white and black backgrounds. It depends only on the image size, so the
//! same image always gets the same mark. The clean image is never modified: the
//! watermark is always applied to a copy.

use image::RgbImage;

const TEXT: &str = "BACKDROP";
const GLYPH_W: usize = 5;
const GLYPH_H: usize = 7;

/// Rows of a capital letter (and `+`) in the built-in 5x7 font, top to bottom, 5 bits
/// each (bit 4 = leftmost column); blank for other characters. Tools that label images
/// (contact sheets) use the same font.
pub fn glyph(c: char) -> [u8; GLYPH_H] {
    match c {
        'A' => [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        '+' => [0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00],
        _ => [0; GLYPH_H],
    }
}

/// A watermarked copy of `image`.
pub fn watermark(image: &RgbImage) -> RgbImage {
    let (w, h) = (image.width() as usize, image.height() as usize);
    // Text height about 1/30 of the shorter side, at least one font pixel per cell.
    let cell = (w.min(h) / (GLYPH_H * 30)).max(1);
    let text_w = TEXT.len() * (GLYPH_W + 1) * cell;
    let text_h = GLYPH_H * cell;
    let (step_x, step_y) = (text_w + 8 * cell, text_h * 5);
    let ink = rasterize(cell);
    let mut out = image.clone();
    for (row, top) in (0..h).step_by(step_y).enumerate() {
        let shift = if row % 2 == 1 { step_x / 2 } else { 0 };
        let mut left = -(shift as isize);
        while left < w as isize {
            stamp(
                &mut out,
                &ink,
                text_w,
                text_h,
                left,
                top as isize + (step_y - text_h) as isize / 2,
            );
            left += step_x as isize;
        }
    }
    out
}

/// The text as a coverage grid `text_w x text_h`: 2 = letter, 1 = outline, 0 = none.
fn rasterize(cell: usize) -> Vec<u8> {
    let (tw, th) = (TEXT.len() * (GLYPH_W + 1) * cell, GLYPH_H * cell);
    let mut grid = vec![0u8; tw * th];
    for (i, c) in TEXT.chars().enumerate() {
        for (gy, bits) in glyph(c).iter().enumerate() {
            for gx in 0..GLYPH_W {
                if bits & (1 << (GLYPH_W - 1 - gx)) == 0 {
                    continue;
                }
                for dy in 0..cell {
                    for dx in 0..cell {
                        let x = (i * (GLYPH_W + 1) + gx) * cell + dx;
                        grid[(gy * cell + dy) * tw + x] = 2;
                    }
                }
            }
        }
    }
    let letters = grid.clone();
    for y in 0..th {
        for x in 0..tw {
            if letters[y * tw + x] == 0 {
                let near = (y.saturating_sub(1)..(y + 2).min(th)).any(|ny| {
                    (x.saturating_sub(1)..(x + 2).min(tw)).any(|nx| letters[ny * tw + nx] == 2)
                });
                if near {
                    grid[y * tw + x] = 1;
                }
            }
        }
    }
    grid
}

fn stamp(out: &mut RgbImage, ink: &[u8], tw: usize, th: usize, left: isize, top: isize) {
    let (w, h) = (out.width() as isize, out.height() as isize);
    for ty in 0..th {
        let y = top + ty as isize;
        if y < 0 || y >= h {
            continue;
        }
        for tx in 0..tw {
            let x = left + tx as isize;
            if x < 0 || x >= w {
                continue;
            }
            // Letters: 45% toward white; outline: 30% toward black.
            let (target, opacity) = match ink[ty * tw + tx] {
                2 => (255u32, 115u32),
                1 => (0, 77),
                _ => continue,
            };
            let px = out.get_pixel_mut(x as u32, y as u32);
            for c in &mut px.0 {
                *c = ((u32::from(*c) * (255 - opacity) + target * opacity + 127) / 255) as u8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn visible_deterministic_and_leaves_the_source_alone() {
        let clean = RgbImage::from_pixel(400, 300, Rgb([30, 30, 30]));
        let marked = watermark(&clean);
        assert_eq!(marked, watermark(&clean));
        assert_eq!(clean.get_pixel(0, 0).0, [30, 30, 30]);
        let changed = clean.pixels().zip(marked.pixels()).filter(|(a, b)| a != b).count();
        let share = changed as f64 / (400.0 * 300.0);
        assert!(share > 0.02 && share < 0.5, "{share}");
        let white = watermark(&RgbImage::from_pixel(400, 300, Rgb([255, 255, 255])));
        assert!(white.pixels().any(|p| p.0[0] < 200), "outline shows on white");
    }
}
