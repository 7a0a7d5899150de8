//! Scene looks: what each template is made of, how a seed varies it, and the per-pixel
//! shading that renders it.
//!
//! Every scene is one [`Look`]: a base layout (a seamless sweep, a wall meeting a floor
//! at a horizon, or a free gradient), up to two soft lights, a vignette, an optional
//! surface texture and a fine grain. Scenes differ only in these parameters, so adding a
//! template means adding one arm to [`Look::new`].
//!
//! Coordinates are in *height units* (`x / height`, `y / height`) so a scene looks the
//! same at any resolution and aspect ratio; only the grain is per pixel.

use super::rng::{floor_i32, fract, grain, hash2, hash_unit, RowFbm, RowNoise, SplitMix64};
use super::shadow::{ShadowColumns, ShadowMap};
use image::RgbImage;
use rayon::prelude::*;

/// Red, green, blue in `[0, 1]`, sRGB-encoded. Shading works on the encoded values,
/// where equal steps look about equally different, so gradients and falloffs look even.
pub(crate) type Rgb = [f32; 3];

/// A colour from 8-bit sRGB values.
const fn rgb(r: u8, g: u8, b: u8) -> Rgb {
    [r as f32 / 255.0, g as f32 / 255.0, b as f32 / 255.0]
}

/// The scene templates this engine renders, one per id in `backdrop_core::SCENES`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scene {
    WhiteSeamless,
    LightGreySweep,
    WarmPaper,
    PastelPink,
    PastelBlue,
    PastelMint,
    LavenderHaze,
    SunsetGradient,
    DarkSpotlight,
    StudioFloor,
    SoftVignette,
    Concrete,
    WoodTabletop,
    SunnyYellow,
}

impl Scene {
    /// The scene for a catalogue id; `None` for an id without a renderer.
    pub(crate) fn from_id(id: &str) -> Option<Scene> {
        Some(match id {
            "white-seamless" => Scene::WhiteSeamless,
            "light-grey-sweep" => Scene::LightGreySweep,
            "warm-paper" => Scene::WarmPaper,
            "pastel-pink" => Scene::PastelPink,
            "pastel-blue" => Scene::PastelBlue,
            "pastel-mint" => Scene::PastelMint,
            "lavender-haze" => Scene::LavenderHaze,
            "sunset-gradient" => Scene::SunsetGradient,
            "dark-spotlight" => Scene::DarkSpotlight,
            "studio-floor" => Scene::StudioFloor,
            "soft-vignette" => Scene::SoftVignette,
            "concrete" => Scene::Concrete,
            "wood-tabletop" => Scene::WoodTabletop,
            "sunny-yellow" => Scene::SunnyYellow,
            _ => return None,
        })
    }
}

/// The seed-driven differences between images of one scene. Draw order is fixed, so a
/// seed always yields the same variant; the same seed gives the same light set-up in
/// every scene.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Variant {
    /// Key light across the width, `0..1`; never dead centre so the shadow has a side.
    pub(crate) light_x: f32,
    /// Key light height offset (height units).
    pub(crate) light_y: f32,
    /// Scale of the light's radius.
    pub(crate) light_size: f32,
    /// Offset of the horizon / sweep curve (height units).
    pub(crate) horizon: f32,
    /// Gradient tilt (radians).
    pub(crate) angle: f32,
    /// Hue rotation of the palette (radians).
    pub(crate) hue: f32,
    /// Saturation scale of the palette.
    pub(crate) saturation: f32,
    /// Brightness scale of the palette.
    pub(crate) brightness: f32,
    /// Scale of the grain amplitude.
    pub(crate) grain: f32,
    /// Vignette centre offset across the frame (fraction of the width).
    pub(crate) vignette_x: f32,
    /// Vignette centre offset down the frame (fraction of the height).
    pub(crate) vignette_y: f32,
    /// Seed of the texture noise.
    pub(crate) noise_seed: u32,
    /// Seed of the grain.
    pub(crate) grain_seed: u32,
    /// How far the cast shadow reaches back, relative to the object's height.
    pub(crate) shadow_squash: f32,
    /// Scale of the shadow's darkness.
    pub(crate) shadow_strength: f32,
}

impl Variant {
    /// The variant of an image seed.
    pub(crate) fn from_seed(seed: u64) -> Self {
        let mut r = SplitMix64::new(seed);
        let side = if r.unit() < 0.5 { -1.0 } else { 1.0 };
        let light_x = 0.5 + side * r.range(0.08, 0.24);
        Variant {
            light_x,
            light_y: r.jitter(0.08),
            light_size: r.range(0.75, 1.3),
            horizon: r.jitter(0.07),
            angle: r.jitter(0.3),
            hue: r.jitter(0.09),
            saturation: r.range(0.85, 1.15),
            brightness: r.range(0.97, 1.03),
            grain: r.range(0.8, 1.3),
            vignette_x: r.jitter(0.08),
            vignette_y: r.jitter(0.06),
            noise_seed: r.next_u32(),
            grain_seed: r.next_u32(),
            shadow_squash: r.range(0.18, 0.32),
            shadow_strength: r.range(0.85, 1.1),
        }
    }

    /// Horizontal reach of the cast shadow per unit of height: away from the light.
    pub(crate) fn shadow_skew(&self) -> f32 {
        (0.5 - self.light_x) * 2.0
    }
}

/// How wall and floor are laid out.
#[derive(Debug, Clone, Copy)]
enum Base {
    /// A paper sweep: the wall curves into the floor over `curve` height units.
    Sweep { curve: f32 },
    /// A wall meeting a floor at a crisp horizon of half-width `edge`, with a darker
    /// crease where they meet (light is occluded in the corner).
    Floor { edge: f32, crease: f32 },
    /// A free gradient through `stops` (top, middle, bottom) tilted by the variant.
    Gradient { stops: [Rgb; 3] },
}

/// A surface pattern multiplied onto (or, for wood, replacing) the base colour.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Texture {
    None,
    /// Horizontal paper fibres and faint mottling.
    Paper,
    /// Multi-octave value noise with pits: mottled concrete.
    Concrete,
    /// Wood boards on the floor, seen in perspective.
    Wood {
        light: Rgb,
        dark: Rgb,
    },
    /// Low-frequency noise that bends the gradient: haze.
    Haze,
}

/// A soft light pool: an ellipse with a rational falloff (no `exp`), `sharp` giving a
/// spotlight's defined rim.
#[derive(Debug, Clone, Copy)]
struct Light {
    x: f32,
    y: f32,
    rx: f32,
    ry: f32,
    gain: f32,
    sharp: bool,
}

impl Light {
    const OFF: Light = Light { x: 0.0, y: 0.0, rx: 1.0, ry: 1.0, gain: 0.0, sharp: false };
}

/// Everything needed to shade one image of one scene.
#[derive(Debug, Clone)]
pub(crate) struct Look {
    base: Base,
    wall_top: Rgb,
    wall_low: Rgb,
    floor_far: Rgb,
    floor_near: Rgb,
    /// Where wall meets floor, in height units from the top.
    horizon: f32,
    lights: [Light; 2],
    /// Light multiplier before the lights add their share.
    lift: f32,
    vignette: f32,
    vignette_centre: (f32, f32),
    /// Gradient direction (sin, cos of the tilt).
    dir: (f32, f32),
    texture: Texture,
    /// Grain amplitude in `[0, 1]` units.
    grain: f32,
    noise_seed: u32,
    grain_seed: u32,
    /// Darkness of the contact shadow at full coverage.
    pub(crate) shadow_strength: f32,
}

/// Shared defaults; each scene overrides what makes it itself.
struct Params {
    base: Base,
    wall_top: Rgb,
    wall_low: Rgb,
    floor_far: Rgb,
    floor_near: Rgb,
    horizon: f32,
    key_gain: f32,
    key_radius: f32,
    pool_gain: f32,
    spotlight: bool,
    vignette: f32,
    texture: Texture,
    grain: f32,
    shadow: f32,
    /// Share of the variant's hue jitter to apply; saturated palettes turn into other
    /// colours (honey into olive, lemon into lime) with much less.
    hue_scale: f32,
}

impl Look {
    /// The look of `scene` in `variant`, for a frame `aspect` (width / height) wide.
    pub(crate) fn new(scene: Scene, variant: &Variant, aspect: f32) -> Look {
        let sweep = Base::Sweep { curve: 0.14 };
        let soft_floor = Base::Floor { edge: 0.012, crease: 0.08 };
        let defaults = Params {
            base: sweep,
            wall_top: rgb(230, 230, 230),
            wall_low: rgb(250, 250, 250),
            floor_far: rgb(253, 253, 253),
            floor_near: rgb(246, 246, 246),
            horizon: 0.62,
            key_gain: 0.18,
            key_radius: 0.55,
            pool_gain: 0.0,
            spotlight: false,
            vignette: 0.06,
            texture: Texture::None,
            grain: 1.2,
            shadow: 0.55,
            hue_scale: 1.0,
        };
        // The pastels: a flat colour wall over a slightly deeper floor, a finer grain
        // and a lighter shadow than the neutrals.
        let pastel = |wall_top, wall_low, floor_far, floor_near| Params {
            wall_top,
            wall_low,
            floor_far,
            floor_near,
            grain: 1.4,
            shadow: 0.45,
            ..defaults
        };
        let p = match scene {
            Scene::WhiteSeamless => Params { key_gain: 0.14, ..defaults },
            Scene::LightGreySweep => Params {
                wall_top: rgb(172, 174, 177),
                wall_low: rgb(212, 213, 215),
                floor_far: rgb(220, 221, 222),
                floor_near: rgb(204, 205, 207),
                key_gain: 0.14,
                shadow: 0.5,
                ..defaults
            },
            Scene::WarmPaper => Params {
                wall_top: rgb(222, 206, 178),
                wall_low: rgb(245, 233, 208),
                floor_far: rgb(247, 237, 214),
                floor_near: rgb(236, 223, 197),
                key_gain: 0.12,
                texture: Texture::Paper,
                grain: 1.8,
                shadow: 0.45,
                ..defaults
            },
            Scene::PastelPink => pastel(
                rgb(236, 194, 202),
                rgb(248, 214, 220),
                rgb(240, 196, 204),
                rgb(228, 180, 190),
            ),
            Scene::PastelBlue => pastel(
                rgb(180, 210, 236),
                rgb(212, 233, 249),
                rgb(210, 231, 248),
                rgb(196, 221, 242),
            ),
            Scene::PastelMint => pastel(
                rgb(186, 226, 206),
                rgb(214, 242, 227),
                rgb(210, 240, 223),
                rgb(196, 230, 212),
            ),
            Scene::LavenderHaze => Params {
                base: Base::Gradient {
                    stops: [rgb(150, 124, 200), rgb(200, 180, 228), rgb(232, 220, 244)],
                },
                key_gain: 0.12,
                key_radius: 0.6,
                vignette: 0.1,
                texture: Texture::Haze,
                grain: 1.5,
                shadow: 0.4,
                ..defaults
            },
            Scene::SunsetGradient => Params {
                base: Base::Gradient {
                    stops: [rgb(246, 178, 84), rgb(246, 140, 112), rgb(255, 212, 178)],
                },
                key_gain: 0.1,
                key_radius: 0.5,
                vignette: 0.08,
                grain: 1.5,
                shadow: 0.4,
                hue_scale: 0.5,
                ..defaults
            },
            Scene::DarkSpotlight => Params {
                wall_top: rgb(18, 18, 20),
                wall_low: rgb(28, 28, 30),
                floor_far: rgb(32, 32, 34),
                floor_near: rgb(22, 22, 24),
                key_gain: 2.4,
                key_radius: 0.3,
                pool_gain: 1.4,
                spotlight: true,
                vignette: 0.25,
                grain: 2.0,
                shadow: 0.6,
                ..defaults
            },
            Scene::StudioFloor => Params {
                base: soft_floor,
                wall_top: rgb(140, 132, 124),
                wall_low: rgb(168, 160, 152),
                floor_far: rgb(212, 204, 194),
                floor_near: rgb(194, 186, 176),
                horizon: 0.6,
                key_gain: 0.16,
                pool_gain: 0.08,
                vignette: 0.1,
                grain: 1.5,
                ..defaults
            },
            Scene::SoftVignette => Params {
                wall_top: rgb(226, 222, 216),
                wall_low: rgb(238, 235, 230),
                floor_far: rgb(240, 237, 232),
                floor_near: rgb(236, 233, 228),
                key_gain: 0.05,
                vignette: 0.5,
                grain: 1.5,
                shadow: 0.45,
                ..defaults
            },
            Scene::Concrete => Params {
                base: Base::Floor { edge: 0.006, crease: 0.14 },
                wall_top: rgb(128, 134, 140),
                wall_low: rgb(158, 163, 168),
                floor_far: rgb(150, 155, 160),
                floor_near: rgb(130, 135, 141),
                horizon: 0.6,
                key_gain: 0.2,
                vignette: 0.15,
                texture: Texture::Concrete,
                grain: 3.0,
                ..defaults
            },
            Scene::WoodTabletop => Params {
                base: Base::Floor { edge: 0.003, crease: 0.06 },
                wall_top: rgb(222, 218, 210),
                wall_low: rgb(240, 237, 230),
                floor_far: rgb(196, 144, 86),
                floor_near: rgb(176, 124, 70),
                horizon: 0.56,
                key_gain: 0.14,
                vignette: 0.1,
                texture: Texture::Wood { light: rgb(212, 158, 94), dark: rgb(140, 88, 42) },
                grain: 1.8,
                hue_scale: 0.35,
                ..defaults
            },
            Scene::SunnyYellow => Params {
                key_gain: 0.12,
                hue_scale: 0.4,
                ..pastel(rgb(250, 212, 50), rgb(255, 232, 90), rgb(255, 228, 84), rgb(248, 214, 66))
            },
        };

        let hue = Variant { hue: variant.hue * p.hue_scale, ..*variant };
        let tint = |c: Rgb| jitter_colour(c, &hue);
        let horizon = p.horizon + variant.horizon;
        let key_radius = p.key_radius * variant.light_size;
        // A spotlight stays behind the product; only its angle of throw varies.
        let light_x =
            if p.spotlight { 0.5 + (variant.light_x - 0.5) * 0.35 } else { variant.light_x };
        let key = Light {
            x: light_x * aspect,
            y: if p.spotlight { horizon - 0.22 } else { horizon - 0.12 } + variant.light_y,
            rx: key_radius,
            ry: key_radius * if p.spotlight { 1.0 } else { 0.8 },
            gain: p.key_gain,
            sharp: p.spotlight,
        };
        // The pool sits on the floor under the key light, flattened by perspective.
        let pool = if p.pool_gain > 0.0 {
            Light {
                x: light_x * aspect,
                y: horizon + 0.14,
                rx: key_radius * 1.3,
                ry: key_radius * 0.3,
                gain: p.pool_gain,
                sharp: p.spotlight,
            }
        } else {
            Light::OFF
        };
        // Bright lights overshoot white on light scenes; pulling the base down by about
        // the lights' mean contribution keeps the overall exposure where the palette says.
        let lift = if p.spotlight { 1.0 } else { 1.0 - 0.45 * p.key_gain };
        let base = match p.base {
            Base::Gradient { stops } => Base::Gradient { stops: stops.map(tint) },
            other => other,
        };
        let texture = match p.texture {
            Texture::Wood { light, dark } => Texture::Wood { light: tint(light), dark: tint(dark) },
            other => other,
        };
        Look {
            base,
            wall_top: tint(p.wall_top),
            wall_low: tint(p.wall_low),
            floor_far: tint(p.floor_far),
            floor_near: tint(p.floor_near),
            horizon,
            lights: [key, pool],
            lift,
            vignette: p.vignette,
            vignette_centre: (0.5 + variant.vignette_x, 0.5 + variant.vignette_y),
            dir: variant.angle.sin_cos(),
            texture,
            grain: p.grain * variant.grain / 255.0,
            noise_seed: variant.noise_seed,
            grain_seed: variant.grain_seed,
            shadow_strength: p.shadow * variant.shadow_strength,
        }
    }

    /// Renders the look at `width x height`, darkened by `shadow` where there is one.
    /// Rows are independent, so the result does not depend on how rayon splits them.
    pub(crate) fn render(&self, width: u32, height: u32, shadow: Option<&ShadowMap>) -> RgbImage {
        let mut image = RgbImage::new(width, height);
        let (w, h) = (width as usize, height as usize);
        if w == 0 || h == 0 {
            return image;
        }
        let columns = Columns::new(self, w, h);
        let shadow = shadow.map(|s| (s, s.columns()));
        image.par_chunks_mut(w * 3).enumerate().for_each_init(
            || Scratch { light: vec![0.0; w], coarse: Vec::with_capacity(w / COARSE + 2) },
            |scratch, (y, row)| self.render_row(&columns, y, h, row, scratch, shadow.as_ref()),
        );
        image
    }

    /// Shades row `y` into `row`.
    ///
    /// The work is split into passes over the row so the smooth parts (lights,
    /// vignette) run as plain loops the compiler vectorises, and the texture and colour
    /// passes are specialised per scene instead of branching per pixel.
    fn render_row(
        &self,
        cols: &Columns,
        y: usize,
        h: usize,
        row: &mut [u8],
        scratch: &mut Scratch,
        shadow: Option<&(&ShadowMap, ShadowColumns)>,
    ) {
        let Scratch { light, coarse } = scratch;
        let (w, inv_h) = (light.len(), 1.0 / h as f32);
        let v = (y as f32 + 0.5) * inv_h;
        let (wall, floor, t, row_mult) = self.row_base(v);

        light.fill(self.lift);
        for (l, dx) in self.lights.iter().zip(&cols.light_dx) {
            if l.gain != 0.0 {
                let d = (v - l.y) / l.ry;
                add_light(light, dx, d * d, l.gain, l.sharp);
            }
        }
        let vy = v - self.vignette_centre.1;
        let vig_dy = 2.0 * vy * vy;
        for (m, vx) in light.iter_mut().zip(&cols.vig_dx) {
            let r2 = vx + vig_dy;
            *m *= (1.0 - self.vignette * r2 * r2) * row_mult;
        }
        if let Some((map, scols)) = shadow {
            map.darken_row(scols, y, light);
        }

        let px = &cols.px[..];
        let grain = Grain { amp: self.grain, seed: self.grain_seed, y: y as i32 };
        match (self.row_texture(v, t), self.base) {
            (RowTexture::Haze { mut bend, mut glow }, Base::Gradient { stops }) => {
                sample_coarse(coarse, w, inv_h, |p| 1.0 + 0.06 * (glow.at(p * 1.6) - 0.5));
                scale_by_coarse(light, coarse);
                sample_coarse(coarse, w, inv_h, |p| 0.24 * (bend.at(p * 2.2) - 0.5));
                let base = 0.5 + (v - 0.5) * self.dir.1;
                write_row(row, light, grain, |x| {
                    (gradient(&stops, base + cols.grad[x] + coarse_at(coarse, x)), 1.0)
                });
            }
            (_, Base::Gradient { stops }) => {
                let base = 0.5 + (v - 0.5) * self.dir.1;
                write_row(row, light, grain, |x| (gradient(&stops, base + cols.grad[x]), 1.0));
            }
            (RowTexture::Wood(mut wood), _) => {
                let centre = cols.centre;
                sample_coarse(coarse, w, inv_h, |p| wood.warp(p - centre));
                write_row(row, light, grain, |x| {
                    (mix(wall, wood.at(px[x] - centre, coarse_at(coarse, x)), t), 1.0)
                });
            }
            (RowTexture::Paper { mut fibre, mut mottle }, _) => {
                sample_coarse(coarse, w, inv_h, |p| 1.0 + 0.03 * (mottle.at(p * 7.0) - 0.5));
                scale_by_coarse(light, coarse);
                let c = mix(wall, floor, t);
                write_row(row, light, grain, |x| (c, 1.0 + 0.035 * (fibre.at(px[x] * 60.0) - 0.5)));
            }
            (RowTexture::Concrete { mut mottle, mut fine, mut pits }, _) => {
                sample_coarse(coarse, w, inv_h, |p| 1.0 + 0.32 * (mottle.at(p * 4.0) - 0.5));
                scale_by_coarse(light, coarse);
                let c = mix(wall, floor, t);
                write_row(row, light, grain, |x| {
                    let p = px[x];
                    (c, (1.0 + 0.07 * (fine.at(p * 90.0) - 0.5)) * pits.at(p))
                });
            }
            _ => {
                let c = mix(wall, floor, t);
                write_row(row, light, grain, |_| (c, 1.0));
            }
        }
    }

    /// The texture samplers for the row at `v`, where `t` of the row is floor.
    fn row_texture(&self, v: f32, t: f32) -> RowTexture {
        let seed = self.noise_seed;
        match self.texture {
            Texture::None => RowTexture::None,
            Texture::Paper => RowTexture::Paper {
                // Fibres: cells four times wider than tall, so the grain runs sideways.
                fibre: RowNoise::new(v * 260.0, seed),
                mottle: RowNoise::new(v * 7.0, seed ^ 0x5bd1),
            },
            Texture::Concrete => {
                // The floor's pattern is squashed vertically so it reads as receding, and
                // offset so it does not continue the wall's.
                let ty = if t > 0.5 { self.horizon + (v - self.horizon) * 2.4 + 17.0 } else { v };
                RowTexture::Concrete {
                    mottle: RowFbm::new(ty * 4.0, seed),
                    fine: RowNoise::new(ty * 90.0, seed ^ 0x1f3d),
                    pits: PitRow::new(ty, seed ^ 0x7a11),
                }
            }
            Texture::Haze => RowTexture::Haze {
                bend: RowFbm::new(v * 2.2, seed),
                glow: RowNoise::new(v * 1.6, seed ^ 0x2c9b),
            },
            Texture::Wood { light, dark } if t > 0.0 => {
                RowTexture::Wood(WoodRow::new(light, dark, v - self.horizon, seed))
            }
            Texture::Wood { .. } => RowTexture::None,
        }
    }

    /// Wall colour, floor colour, how much of the floor shows and a light factor, for
    /// the row at `v`.
    fn row_base(&self, v: f32) -> (Rgb, Rgb, f32, f32) {
        let h0 = self.horizon;
        let wall = mix(self.wall_top, self.wall_low, (v / h0).clamp(0.0, 1.0));
        let floor =
            mix(self.floor_far, self.floor_near, ((v - h0) / (1.0 - h0).max(0.05)).clamp(0.0, 1.0));
        match self.base {
            Base::Sweep { curve } => (wall, floor, smoothstep(h0 - curve, h0 + curve, v), 1.0),
            Base::Floor { edge, crease } => {
                let d = (v - h0) / 0.02;
                (wall, floor, smoothstep(h0 - edge, h0 + edge, v), 1.0 - crease / (1.0 + d * d))
            }
            Base::Gradient { .. } => (wall, floor, 0.0, 1.0),
        }
    }
}

/// Adds a light with falloff `1 / (1 + q)` (or `1 / (1 + q^2)` when `sharp`), where
/// `q` is the squared elliptical distance, split into per-column `dx` and the row's `dy`.
#[inline(always)]
fn add_light(light: &mut [f32], dx: &[f32], dy: f32, gain: f32, sharp: bool) {
    if sharp {
        for (m, dx) in light.iter_mut().zip(dx) {
            let q = dx + dy;
            *m += gain / (1.0 + q * q);
        }
    } else {
        for (m, dx) in light.iter_mut().zip(dx) {
            *m += gain / (1.0 + (dx + dy));
        }
    }
}

/// Per-worker buffers, reused from row to row.
struct Scratch {
    /// Light factor per column.
    light: Vec<f32>,
    /// Samples of a slowly varying term, every [`COARSE`] columns.
    coarse: Vec<f32>,
}

/// Spacing of samples for terms that vary slowly along a row. Their features are at
/// least about 60 pixels wide at 1024 high, so linear interpolation over 8 pixels is
/// off by a small fraction of a level, and the noise is evaluated an eighth as often.
const COARSE: usize = 8;

/// Fills `buf` with `f(x)` at every [`COARSE`]-th column of a row `w` wide, `x` in
/// height units, plus one sample past the end so every column has two neighbours.
#[inline(always)]
fn sample_coarse(buf: &mut Vec<f32>, w: usize, inv_h: f32, mut f: impl FnMut(f32) -> f32) {
    buf.clear();
    buf.extend((0..=w / COARSE + 1).map(|k| f(((k * COARSE) as f32 + 0.5) * inv_h)));
}

/// The coarse samples interpolated at column `x`.
#[inline(always)]
fn coarse_at(buf: &[f32], x: usize) -> f32 {
    let (k, r) = (x / COARSE, x % COARSE);
    let a = buf[k];
    a + (buf[k + 1] - a) * (r as f32 * (1.0 / COARSE as f32))
}

/// Multiplies each column's light by the interpolated coarse samples.
fn scale_by_coarse(light: &mut [f32], buf: &[f32]) {
    for (x, m) in light.iter_mut().enumerate() {
        *m *= coarse_at(buf, x);
    }
}

/// Per-pixel grain of one row.
#[derive(Clone, Copy)]
struct Grain {
    amp: f32,
    seed: u32,
    y: i32,
}

/// The final pass of a row: `surface(x)` gives the colour and a texture factor, which
/// are lit by `light[x]`, grained and quantised.
#[inline(always)]
fn write_row(
    row: &mut [u8],
    light: &[f32],
    g: Grain,
    mut surface: impl FnMut(usize) -> (Rgb, f32),
) {
    for (x, (out, m)) in row.chunks_exact_mut(3).zip(light).enumerate() {
        let (c, k) = surface(x);
        let m = m * k;
        let noise = g.amp * grain(x as i32, g.y, g.seed);
        for (o, c) in out.iter_mut().zip(c) {
            *o = ((c * m + noise) * 255.0 + 0.5).clamp(0.0, 255.0) as u8;
        }
    }
}

/// Per-column terms, computed once per image instead of once per pixel.
struct Columns {
    px: Vec<f32>,
    /// Horizontal centre of the frame, height units.
    centre: f32,
    light_dx: [Vec<f32>; 2],
    vig_dx: Vec<f32>,
    grad: Vec<f32>,
}

impl Columns {
    fn new(look: &Look, w: usize, h: usize) -> Columns {
        let hf = h as f32;
        let px: Vec<f32> = (0..w).map(|x| (x as f32 + 0.5) / hf).collect();
        let aspect = w as f32 / hf;
        let light_dx = look.lights.map(|l| {
            px.iter()
                .map(|&p| {
                    let d = (p - l.x) / l.rx;
                    d * d
                })
                .collect()
        });
        let vig_dx = px
            .iter()
            .map(|&p| {
                let d = p / aspect - look.vignette_centre.0;
                2.0 * d * d
            })
            .collect();
        // Tilt around the frame centre, normalised by the width so a wide frame does not
        // run through the whole gradient sideways.
        let grad = px.iter().map(|&p| (p / aspect - 0.5) * look.dir.0).collect();
        Columns { px, centre: aspect * 0.5, light_dx, vig_dx, grad }
    }
}

/// A texture's state along one row.
enum RowTexture {
    None,
    Paper { fibre: RowNoise, mottle: RowNoise },
    Concrete { mottle: RowFbm<3>, fine: RowNoise, pits: PitRow },
    Haze { bend: RowFbm<2>, glow: RowNoise },
    Wood(WoodRow),
}

/// One row of a wood tabletop in perspective. Depth is constant along a row, so the
/// board, its tint, the seam and the detail fade are worked out once per row.
struct WoodRow {
    light: Rgb,
    dark: Rgb,
    /// Lateral floor units per height unit on screen at this depth.
    lateral_scale: f32,
    rings: f32,
    tint: f32,
    contrast: f32,
    seam: f32,
    warp: RowNoise,
    streak: RowNoise,
}

impl WoodRow {
    /// The row `below` height units under the horizon.
    fn new(light: Rgb, dark: Rgb, below: f32, seed: u32) -> WoodRow {
        let d = below.max(0.0);
        // Depth grows toward the horizon like a plane seen from slightly above.
        let z = 0.1 / (d + 0.03);
        let zb = z * 2.2;
        let board = floor_i32(zb);
        let bf = zb - board as f32;
        let bh = hash2(board, 0, seed ^ 0x3c6e);
        // Detail finer than a pixel near the horizon would alias into noise; fade it.
        let contrast = smoothstep(0.0, 0.14, d);
        let seam_dist = bf.min(1.0 - bf);
        WoodRow {
            light,
            dark,
            lateral_scale: z * 10.0,
            rings: z * 18.0 + (bh & 0xff) as f32 * 0.01,
            tint: ((bh >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 0.16,
            contrast,
            seam: 1.0 - 0.45 * contrast * (1.0 - smoothstep(0.0, 0.012, seam_dist)),
            // Each board has its own figure.
            warp: RowNoise::new(z * 4.0, seed ^ 0x55aa ^ bh),
            streak: RowNoise::new(z * 40.0, seed ^ 0x77d1),
        }
    }

    /// The slow wobble of the grain at `lateral` height units from the centre line.
    #[inline(always)]
    fn warp(&mut self, lateral: f32) -> f32 {
        self.warp.at(lateral * self.lateral_scale * 0.35)
    }

    /// The wood colour at `lateral` height units from the centre line, given its warp.
    #[inline(always)]
    fn at(&mut self, lateral: f32, warp: f32) -> Rgb {
        let fx = lateral * self.lateral_scale;
        let rings = fract(self.rings + warp * 2.5);
        let line = smoothstep(0.55, 1.0, (rings * 2.0 - 1.0).abs());
        let streak = self.streak.at(fx * 2.0);
        let k = 0.3 + (0.45 * line + 0.3 * (streak - 0.5) + self.tint) * self.contrast;
        let c = mix(self.light, self.dark, k.clamp(0.0, 1.0));
        c.map(|v| v * self.seam)
    }
}

/// Air holes in cast concrete along one row: at most one small round pit per cell of a
/// coarse grid, placed away from the cell's edges so no neighbour is ever needed.
struct PitRow {
    cy: i32,
    fy: f32,
    seed: u32,
    cx: i32,
    /// Centre and inverse squared radius of the current cell's pit; `inv_r2` 0 for none.
    centre: (f32, f32),
    inv_r2: f32,
    /// How much light the current pit swallows.
    depth: f32,
}

impl PitRow {
    const CELLS: f32 = 28.0;

    fn new(v: f32, seed: u32) -> PitRow {
        let y = v * Self::CELLS;
        let cy = floor_i32(y);
        PitRow {
            cy,
            fy: y - cy as f32,
            seed,
            cx: i32::MIN,
            centre: (0.0, 0.0),
            inv_r2: 0.0,
            depth: 0.0,
        }
    }

    /// The light factor at `px` (1 outside a pit).
    #[inline(always)]
    fn at(&mut self, px: f32) -> f32 {
        let x = px * Self::CELLS;
        let cx = floor_i32(x);
        if cx != self.cx {
            self.cx = cx;
            let h = hash2(cx, self.cy, self.seed);
            self.inv_r2 = 0.0;
            if h & 0xff < 56 {
                self.centre = (
                    0.25 + 0.5 * ((h >> 8) & 0xff) as f32 / 255.0,
                    0.25 + 0.5 * ((h >> 16) & 0xff) as f32 / 255.0,
                );
                let r = 0.05 + 0.13 * hash_unit(cx, self.cy, self.seed ^ 0x2e4f);
                self.inv_r2 = 1.0 / (r * r);
                self.depth = 0.12 + 0.2 * ((h >> 24) as f32 / 255.0);
            }
        }
        if self.inv_r2 == 0.0 {
            return 1.0;
        }
        let (dx, dy) = (x - cx as f32 - self.centre.0, self.fy - self.centre.1);
        let q = (dx * dx + dy * dy) * self.inv_r2;
        1.0 - self.depth * (1.0 - smoothstep(0.5, 1.0, q))
    }
}

/// Piecewise-linear gradient through three stops at 0, 0.5 and 1.
#[inline]
fn gradient(stops: &[Rgb; 3], t: f32) -> Rgb {
    let t = t.clamp(0.0, 1.0);
    if t < 0.5 {
        mix(stops[0], stops[1], smoothstep(0.0, 1.0, t * 2.0))
    } else {
        mix(stops[1], stops[2], smoothstep(0.0, 1.0, t * 2.0 - 1.0))
    }
}

#[inline(always)]
fn mix(a: Rgb, b: Rgb, t: f32) -> Rgb {
    [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t]
}

#[inline(always)]
pub(crate) fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// Rotates the hue and scales saturation and brightness in YIQ space, where hue is an
/// angle and luma stays put, so a jittered palette keeps its lightness.
fn jitter_colour(c: Rgb, v: &Variant) -> Rgb {
    let y = 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2];
    let i = 0.596 * c[0] - 0.274 * c[1] - 0.322 * c[2];
    let q = 0.211 * c[0] - 0.523 * c[1] + 0.312 * c[2];
    let (s, co) = v.hue.sin_cos();
    let (i, q) = ((i * co - q * s) * v.saturation, (i * s + q * co) * v.saturation);
    let y = y * v.brightness;
    [
        (y + 0.956 * i + 0.621 * q).clamp(0.0, 1.0),
        (y - 0.272 * i - 0.647 * q).clamp(0.0, 1.0),
        (y - 1.106 * i + 1.703 * q).clamp(0.0, 1.0),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalogue_id_has_a_renderer() {
        for s in backdrop_core::SCENES {
            assert!(Scene::from_id(s.id).is_some(), "no renderer for {}", s.id);
        }
    }

    #[test]
    fn palette_jitter_keeps_lightness() {
        let mut v = Variant::from_seed(3);
        v.hue = 0.07;
        v.brightness = 1.0;
        let c = rgb(200, 120, 80);
        let j = jitter_colour(c, &v);
        let luma = |c: Rgb| 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2];
        assert!((luma(c) - luma(j)).abs() < 0.01);
        assert!(j != c);
    }
}
