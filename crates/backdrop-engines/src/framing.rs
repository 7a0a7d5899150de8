//! The floor effects a job's [`Framing`] asks for, drawn by the pipeline for every
//! engine: a styled shadow and a mirrored reflection on the generated background, or on
//! a plain colour or nothing when the backdrop is not generated.
//!
//! Both lie on the floor plane the product stands on (its lowest visible row) and are
//! drawn on the background before the exact composite puts the product back, so the
//! product's own pixels are never touched. The shadow is the studio engine's
//! ([`crate::studio`]), computed at a quarter of the resolution and sampled bilinearly.
//!
//! The reflection mirrors the placed product about its lowest visible row, fading
//! linearly to nothing over [`REFLECTION_REACH`] of the product's height, and is laid
//! over the floor at the requested opacity times the product's alpha.

use crate::studio::shadow::{Cutout, ShadowMap};
use backdrop_core::framing::VISIBLE_ALPHA;
use backdrop_core::{Backdrop, Framing, ShadowSpec, ShadowStyle};
use image::{DynamicImage, Rgb, RgbImage, Rgba, RgbaImage};
use rayon::prelude::*;

/// How far down the reflection reaches, as a fraction of the product's height.
pub const REFLECTION_REACH: f32 = 0.35;

/// The shadow and reflection of one placed product, ready to draw on any number of
/// images of its canvas's size.
pub(crate) struct FloorEffects<'a> {
    canvas: &'a RgbaImage,
    shadow: Option<ShadowMap>,
    reflection: Option<Reflection>,
}

/// Where the reflection starts and how far it reaches, in full-resolution rows.
#[derive(Debug, Clone, Copy)]
struct Reflection {
    opacity: f32,
    base: usize,
    reach: usize,
}

impl<'a> FloorEffects<'a> {
    /// The effects of `framing` for the product placed in `canvas`. A spec without a
    /// shadow gets a contact shadow when the backdrop is not generated (there is no
    /// engine to cast one) and none otherwise (the engine casts its own).
    pub(crate) fn new(canvas: &'a RgbaImage, framing: &Framing) -> FloorEffects<'a> {
        let spec = framing.shadow.or_else(|| {
            (framing.backdrop != Backdrop::Generate)
                .then(|| ShadowSpec::style(ShadowStyle::Contact))
        });
        let shadow = spec
            .filter(|s| s.style != ShadowStyle::None)
            .and_then(|s| Cutout::from_canvas(canvas).map(|c| c.styled(&s)));
        let reflection = (framing.reflection > 0.0).then(|| visible_rows(canvas)).flatten().map(
            |(top, base)| Reflection {
                opacity: framing.reflection,
                base,
                reach: (((base - top + 1) as f32 * REFLECTION_REACH).round() as usize).max(1),
            },
        );
        FloorEffects { canvas, shadow, reflection }
    }

    /// Darkens `image` by the shadow and lays the reflection over it.
    pub(crate) fn draw(&self, image: &mut RgbImage) {
        let w = image.width() as usize;
        let cols = self.shadow.as_ref().map(ShadowMap::columns);
        image.par_chunks_mut(w * 3).enumerate().for_each(|(y, row)| {
            if let (Some(map), Some(cols)) = (&self.shadow, &cols) {
                let mut light = vec![1.0f32; w];
                map.darken_row(cols, y, &mut light);
                for (px, l) in row.chunks_exact_mut(3).zip(&light) {
                    for c in px {
                        *c = (f32::from(*c) * l).round() as u8;
                    }
                }
            }
            self.reflect_row(y, |x, colour, k| {
                let px = &mut row[x * 3..x * 3 + 3];
                for (c, r) in px.iter_mut().zip(colour) {
                    *c = (f32::from(*c) * (1.0 - k) + f32::from(r) * k).round() as u8;
                }
            });
        });
    }

    /// The product, its shadow and its reflection on `backdrop` (not
    /// [`Backdrop::Generate`]): RGB on a colour, RGBA on nothing.
    pub(crate) fn backdrop(&self, backdrop: Backdrop) -> DynamicImage {
        let (w, h) = self.canvas.dimensions();
        match backdrop {
            Backdrop::Colour(c) => {
                let mut floor = RgbImage::from_pixel(w, h, Rgb(c));
                self.draw(&mut floor);
                DynamicImage::ImageRgb8(floor)
            }
            Backdrop::Transparent | Backdrop::Generate => {
                DynamicImage::ImageRgba8(self.transparent())
            }
        }
    }

    /// Shadow as black at its darkness, reflection over it, product over both.
    fn transparent(&self) -> RgbaImage {
        let (w, h) = self.canvas.dimensions();
        let mut out = RgbaImage::new(w, h);
        let cols = self.shadow.as_ref().map(ShadowMap::columns);
        let wu = w as usize;
        out.par_chunks_mut(wu * 4).enumerate().for_each(|(y, row)| {
            if let (Some(map), Some(cols)) = (&self.shadow, &cols) {
                let mut light = vec![1.0f32; wu];
                map.darken_row(cols, y, &mut light);
                for (px, l) in row.chunks_exact_mut(4).zip(&light) {
                    px[3] = ((1.0 - l) * 255.0).round() as u8;
                }
            }
            self.reflect_row(y, |x, colour, k| {
                let px: &mut [u8] = &mut row[x * 4..x * 4 + 4];
                over(px, [colour[0], colour[1], colour[2]], k);
            });
            let src = &self.canvas.as_raw()[y * wu * 4..(y + 1) * wu * 4];
            for (px, p) in row.chunks_exact_mut(4).zip(src.chunks_exact(4)) {
                match p[3] {
                    0 => {}
                    255 => px.copy_from_slice(p),
                    a => over(px, [p[0], p[1], p[2]], f32::from(a) / 255.0),
                }
            }
        });
        out
    }

    /// Calls `blend(x, colour, weight)` for each reflected pixel of row `y`.
    fn reflect_row(&self, y: usize, mut blend: impl FnMut(usize, [u8; 3], f32)) {
        let Some(r) = self.reflection else { return };
        if y <= r.base || y > r.base + r.reach || y > 2 * r.base + 1 {
            return;
        }
        let d = y - r.base;
        let source = r.base + 1 - d;
        let fade = r.opacity * (1.0 - d as f32 / (r.reach + 1) as f32);
        let w = self.canvas.width();
        for x in 0..w {
            let Rgba([cr, cg, cb, a]) = *self.canvas.get_pixel(x, source as u32);
            if a > 0 {
                blend(x as usize, [cr, cg, cb], fade * f32::from(a) / 255.0);
            }
        }
    }
}

/// `colour` at `weight` over the straight-alpha pixel `px`.
fn over(px: &mut [u8], colour: [u8; 3], weight: f32) {
    let below = f32::from(px[3]) / 255.0;
    let alpha = weight + below * (1.0 - weight);
    if alpha <= 0.0 {
        return;
    }
    for (c, s) in px[..3].iter_mut().zip(colour) {
        let v = (f32::from(s) * weight + f32::from(*c) * below * (1.0 - weight)) / alpha;
        *c = v.round().clamp(0.0, 255.0) as u8;
    }
    px[3] = (alpha * 255.0).round().clamp(0.0, 255.0) as u8;
}

/// The first and last rows holding a visible pixel.
fn visible_rows(canvas: &RgbaImage) -> Option<(usize, usize)> {
    let visible = |row: &[u8]| row.chunks_exact(4).any(|p| p[3] >= VISIBLE_ALPHA);
    let stride = canvas.width() as usize * 4;
    let rows: Vec<&[u8]> = canvas.as_raw().chunks_exact(stride).collect();
    let top = rows.iter().position(|r| visible(r))?;
    let base = rows.iter().rposition(|r| visible(r))?;
    Some((top, base))
}
