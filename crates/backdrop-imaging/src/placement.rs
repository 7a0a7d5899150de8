//! Placing a cut-out by its visible bounding box ([`backdrop_core::Placement`]).
//!
//! The box is the smallest rectangle holding every pixel with alpha at least
//! [`VISIBLE_ALPHA`]; fainter pixels outside it are matting haze and are dropped. The
//! box is cut out, resampled once to its target size (premultiplied alpha,
//! Catmull-Rom, see [`crate::canvas`]) and pasted at a whole-pixel position, so its
//! edges land exactly where [`target`] says and nothing is resampled twice. A box that
//! keeps its size is copied, not resampled.

use crate::canvas::resize_premultiplied;
use backdrop_core::framing::VISIBLE_ALPHA;
use backdrop_core::{Placement, SpecError};
use image::{imageops, RgbaImage};

/// A rectangle in pixels; `x` and `y` may be negative for a target shifted off the
/// canvas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    /// Left column.
    pub x: i64,
    /// Top row.
    pub y: i64,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
}

/// The visible bounding box of `image`; the whole image when no pixel reaches
/// [`VISIBLE_ALPHA`].
pub fn visible_bounds(image: &RgbaImage) -> Rect {
    let (w, h) = image.dimensions();
    let (mut x0, mut y0, mut x1, mut y1) = (u32::MAX, u32::MAX, 0, 0);
    for (y, row) in image.rows().enumerate() {
        let y = y as u32;
        for (x, p) in row.enumerate() {
            if p.0[3] >= VISIBLE_ALPHA {
                let x = x as u32;
                x0 = x0.min(x);
                x1 = x1.max(x);
                y0 = y0.min(y);
                y1 = y1.max(y);
            }
        }
    }
    if x0 > x1 {
        return Rect { x: 0, y: 0, width: w, height: h };
    }
    Rect { x: i64::from(x0), y: i64::from(y0), width: x1 - x0 + 1, height: y1 - y0 + 1 }
}

/// Where a visible box of `width x height` goes in a `canvas_width x canvas_height`
/// canvas (see [`backdrop_core::framing`] for the rule).
pub fn target(
    width: u32,
    height: u32,
    canvas_width: u32,
    canvas_height: u32,
    placement: &Placement,
) -> Result<Rect, SpecError> {
    placement.validate()?;
    let [left, top, free_w, free_h] = placement.free_area(canvas_width, canvas_height)?;
    let box_w = (placement.scale * f64::from(canvas_width)).min(free_w);
    let box_h = (placement.scale * f64::from(canvas_height)).min(free_h);
    let (bw, bh) = (f64::from(width.max(1)), f64::from(height.max(1)));
    let s = (box_w / bw).min(box_h / bh);
    // Rounding may not push the touching side past its room.
    let side = |len: f64, room: f64| ((len * s).round().min(room.floor())).max(1.0);
    let (tw, th) = (side(bw, box_w), side(bh, box_h));
    let (ax, ay) = placement.align.anchor();
    let x = (left + (free_w - tw) * ax).round() as i64 + i64::from(placement.offset[0]);
    let y = (top + (free_h - th) * ay).round() as i64 + i64::from(placement.offset[1]);
    Ok(Rect { x, y, width: tw as u32, height: th as u32 })
}

/// The cut-out placed on a transparent `width x height` canvas.
pub fn place(
    cutout: &RgbaImage,
    width: u32,
    height: u32,
    placement: &Placement,
) -> Result<RgbaImage, SpecError> {
    let b = visible_bounds(cutout);
    let t = target(b.width, b.height, width, height, placement)?;
    let product = imageops::crop_imm(cutout, b.x as u32, b.y as u32, b.width, b.height).to_image();
    let product = if (t.width, t.height) == (b.width, b.height) {
        product
    } else {
        resize_premultiplied(&product, t.width, t.height)
    };
    let mut canvas = RgbaImage::new(width, height);
    imageops::replace(&mut canvas, &product, t.x, t.y);
    Ok(canvas)
}

#[cfg(test)]
mod tests {
    use super::*;
    use backdrop_core::{Align, Padding};
    use image::Rgba;

    /// A 30x50 opaque block at (12, 7) in a 60x80 cut-out, with faint haze elsewhere.
    fn cutout() -> RgbaImage {
        RgbaImage::from_fn(60, 80, |x, y| {
            if (12..42).contains(&x) && (7..57).contains(&y) {
                Rgba([200, 40, 10, 255])
            } else if (x + y) % 7 == 0 {
                Rgba([0, 0, 0, VISIBLE_ALPHA - 1])
            } else {
                Rgba([0, 0, 0, 0])
            }
        })
    }

    #[test]
    fn bounds_ignore_haze() {
        assert_eq!(visible_bounds(&cutout()), Rect { x: 12, y: 7, width: 30, height: 50 });
        let empty = RgbaImage::new(9, 4);
        assert_eq!(visible_bounds(&empty), Rect { x: 0, y: 0, width: 9, height: 4 });
    }

    #[test]
    fn scale_padding_and_align_place_the_box() {
        let p = Placement { scale: 0.5, ..Default::default() };
        // 30x50 into 100x100 at half: fits 50 high -> 30x50, centred.
        assert_eq!(target(30, 50, 100, 100, &p), Ok(Rect { x: 35, y: 25, width: 30, height: 50 }));
        let p = Placement {
            padding: Padding([0.1, 0.0, 0.1, 0.0]),
            align: Align::BottomRight,
            offset: [-3, 2],
            ..Default::default()
        };
        // Free area 200x80 from y=10: 30x50 scales by 1.6 to 48x80.
        assert_eq!(target(30, 50, 200, 100, &p), Ok(Rect { x: 149, y: 12, width: 48, height: 80 }));
        let p = Placement { padding: Padding::uniform(60.0), ..Default::default() };
        assert_eq!(
            target(30, 50, 100, 100, &p).map_err(|e| e.code()),
            Err(backdrop_core::ErrorCode::PaddingLeavesNoRoom)
        );
    }

    #[test]
    fn a_box_that_keeps_its_size_is_copied_exactly() {
        let c = cutout();
        let p = Placement { scale: 0.5, align: Align::TopLeft, ..Default::default() };
        let placed = place(&c, 60, 100, &p).expect("placed");
        for y in 0..50 {
            for x in 0..30 {
                assert_eq!(placed.get_pixel(x, y).0, [200, 40, 10, 255]);
            }
        }
        assert_eq!(placed.get_pixel(30, 0).0[3], 0, "haze outside the box is dropped");
    }

    #[test]
    fn a_scaled_box_lands_on_its_target() {
        let placed = place(&cutout(), 256, 256, &Placement::default()).expect("placed");
        let b = visible_bounds(&placed);
        let t = target(30, 50, 256, 256, &Placement::default()).expect("fits");
        assert_eq!((b.x, b.y, b.width, b.height), (t.x, t.y, t.width, t.height));
        assert_eq!(placed.get_pixel(128, 128).0, [200, 40, 10, 255]);
    }
}
