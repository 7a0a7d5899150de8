//! The area an engine must generate.
//!
//! The mask is 255 wherever the canvas is not fully opaque (alpha < 255), grown by
//! `grow` pixels into the opaque area. Growing means an engine repaints a thin band
//! inside the protected edge: for a cut-out that stops a model from extending the
//! product's outline (the composite restores the edge from the input's alpha), and for an
//! expansion it is the overlap the seam is harmonized over.
//!
//! Defaults: [`DEFAULT_BACKGROUND_GROW`] px for backgrounds, [`DEFAULT_EXPANSION_GROW`] px
//! for expansions; 0 disables growing. Distances are chamfer (3-4) distances, within 8%
//! of Euclidean, so the band is round rather than square at corners.

use image::{GrayImage, Luma, RgbaImage};

/// Default growth of a background mask into the cut-out's edge, in pixels.
pub const DEFAULT_BACKGROUND_GROW: u32 = 3;
/// Default overlap of an expansion mask into the original photo, in pixels.
pub const DEFAULT_EXPANSION_GROW: u32 = 8;

/// The generation mask of a canvas (see the module doc).
pub fn generation_mask(canvas: &RgbaImage, grow: u32) -> GrayImage {
    let (w, h) = canvas.dimensions();
    let open: Vec<bool> = canvas.pixels().map(|p| p.0[3] < 255).collect();
    let dist = if grow == 0 { None } else { Some(distance_to(&open, w as usize, h as usize)) };
    let limit = grow as f32 + 0.5;
    GrayImage::from_fn(w, h, |x, y| {
        let i = y as usize * w as usize + x as usize;
        let inside = open[i] || dist.as_ref().is_some_and(|d| d[i] <= limit);
        Luma([if inside { 255 } else { 0 }])
    })
}

/// For every pixel, the chamfer distance in pixels to the nearest pixel where `target`
/// is true (0 on the targets themselves; `f32::INFINITY` everywhere if there is none).
pub fn distance_to(target: &[bool], width: usize, height: usize) -> Vec<f32> {
    const STRAIGHT: u32 = 3;
    const DIAGONAL: u32 = 4;
    const FAR: u32 = u32::MAX / 2;
    let mut d: Vec<u32> = target.iter().map(|&t| if t { 0 } else { FAR }).collect();
    for y in 0..height {
        for x in 0..width {
            let i = y * width + x;
            let mut best = d[i];
            if x > 0 {
                best = best.min(d[i - 1] + STRAIGHT);
            }
            if y > 0 {
                let up = i - width;
                best = best.min(d[up] + STRAIGHT);
                if x > 0 {
                    best = best.min(d[up - 1] + DIAGONAL);
                }
                if x + 1 < width {
                    best = best.min(d[up + 1] + DIAGONAL);
                }
            }
            d[i] = best;
        }
    }
    for y in (0..height).rev() {
        for x in (0..width).rev() {
            let i = y * width + x;
            let mut best = d[i];
            if x + 1 < width {
                best = best.min(d[i + 1] + STRAIGHT);
            }
            if y + 1 < height {
                let down = i + width;
                best = best.min(d[down] + STRAIGHT);
                if x + 1 < width {
                    best = best.min(d[down + 1] + DIAGONAL);
                }
                if x > 0 {
                    best = best.min(d[down - 1] + DIAGONAL);
                }
            }
            d[i] = best;
        }
    }
    d.into_iter()
        .map(|v| if v >= FAR { f32::INFINITY } else { v as f32 / STRAIGHT as f32 })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgba;

    #[test]
    fn grows_into_the_opaque_area_by_the_given_width() {
        // Left half transparent, right half opaque.
        let canvas =
            RgbaImage::from_fn(20, 5, |x, _| Rgba([0, 0, 0, if x < 10 { 0 } else { 255 }]));
        let row = |m: &GrayImage| (0..20).map(|x| m.get_pixel(x, 2).0[0]).collect::<Vec<_>>();
        let none = generation_mask(&canvas, 0);
        assert_eq!(row(&none).iter().filter(|v| **v == 255).count(), 10);
        let grown = generation_mask(&canvas, 3);
        assert_eq!(row(&grown).iter().filter(|v| **v == 255).count(), 13);
        assert_eq!(grown.get_pixel(13, 2).0[0], 0);
    }

    #[test]
    fn semi_transparent_edge_is_generated() {
        let mut canvas = RgbaImage::from_pixel(4, 4, Rgba([1, 1, 1, 255]));
        canvas.put_pixel(1, 1, Rgba([1, 1, 1, 128]));
        assert_eq!(generation_mask(&canvas, 0).get_pixel(1, 1).0[0], 255);
        assert_eq!(generation_mask(&canvas, 0).get_pixel(2, 2).0[0], 0);
    }

    #[test]
    fn distance_is_near_euclidean() {
        let (w, h) = (30, 30);
        let mut target = vec![false; w * h];
        target[0] = true;
        let d = distance_to(&target, w, h);
        assert_eq!(d[10], 10.0);
        let diag = d[20 * w + 20];
        assert!((diag - 28.28).abs() / 28.28 < 0.08, "{diag}");
        assert!(distance_to(&[false; 4], 2, 2).iter().all(|v| v.is_infinite()));
    }
}
