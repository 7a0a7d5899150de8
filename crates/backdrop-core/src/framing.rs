//! How the product is framed in a background job's output: where it sits (placement on
//! its visible bounding box), the shadow it casts, a floor reflection, and what it
//! stands on (a generated backdrop, a plain colour, or nothing).
//!
//! [`Framing`] is plain data on [`crate::BackgroundSpec`]; every part defaults to
//! today's behaviour, so a spec written before these controls existed parses and runs
//! as it always did.
//!
//! # Placement
//! Measured on the product's visible bounding box (the pixels whose alpha is at least
//! [`VISIBLE_ALPHA`]), never on the input canvas, so differently cropped cut-outs of a
//! catalogue land at the same scale and margin:
//! - the free area is the canvas minus `padding` (each side: a value below 1 is a
//!   fraction of the canvas side it runs along, top and bottom of the height, left and
//!   right of the width; 1 or more is pixels);
//! - the box is scaled, keeping its aspect ratio, to fit inside
//!   `scale x width` by `scale x height` and inside the free area, touching one of them;
//! - `align` puts it in the free area (centred on the axes it does not name);
//! - `offset` then moves it by whole pixels (it may leave the canvas; what leaves is cut).
//!
//! # Shadow
//! [`ShadowStyle`]: `contact` (a tight dark line where the product meets the floor),
//! `soft` (a diffuse pool leaning away from the light), `hard` (a crisp cast shadow),
//! `floating` (the product hovers over a detached blurred footprint), or `none`.
//! `direction` is where the shadow falls on the floor, in degrees clockwise: 0 straight
//! back toward the wall, 90 to the right, 180 toward the camera, 270 to the left.
//! `opacity` scales its darkness and `softness` its blur, both in [0, 1]. A spec with no
//! shadow keeps each engine's own (the studio engine's contact shadow, none elsewhere).
//!
//! # Backdrop
//! [`Backdrop::Generate`] runs the engine as usual; [`Backdrop::Colour`] and
//! [`Backdrop::Transparent`] skip generation and give the product with its shadow (and
//! reflection) on a plain colour, or alone in a PNG/WebP whose alpha holds only them.

use crate::spec::{OutputSize, SpecError, MAX_OUTPUT_SIDE};
use crate::task::OutputFormat;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Pixels with alpha below this are matting haze, not product: they do not count toward
/// the visible bounding box.
pub const VISIBLE_ALPHA: u8 = 8;

/// Framing controls of a background job (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Framing {
    /// Placement on the visible bounding box; `None` fits the whole input by the
    /// spec's resize mode, as before.
    pub placement: Option<Placement>,
    /// The shadow; `None` keeps the engine's own.
    pub shadow: Option<ShadowSpec>,
    /// Opacity of a mirrored floor reflection, in [0, 1]; 0 is off.
    pub reflection: f32,
    /// What the product stands on.
    pub backdrop: Backdrop,
}

impl Framing {
    /// Checks every value; with an explicit output `size`, also that padding leaves
    /// room. Without one, [`Framing::check_canvas`] does that once the input's size is
    /// known.
    pub fn validate(&self, size: Option<OutputSize>) -> Result<(), SpecError> {
        if let Some(p) = &self.placement {
            p.validate()?;
            if let Some(size) = size {
                p.free_area(size.width, size.height)?;
            }
        }
        if let Some(s) = &self.shadow {
            s.validate()?;
        }
        if !(0.0..=1.0).contains(&self.reflection) {
            return Err(SpecError::ReflectionOutOfRange { got: self.reflection });
        }
        Ok(())
    }

    /// Checks that padding leaves room in a canvas of this size.
    pub fn check_canvas(&self, width: u32, height: u32) -> Result<(), SpecError> {
        match &self.placement {
            Some(p) => p.free_area(width, height).map(|_| ()),
            None => Ok(()),
        }
    }

    /// Checks that the output format can carry this backdrop (a transparent one needs
    /// an alpha channel: PNG or WebP).
    pub fn check_format(&self, format: OutputFormat) -> Result<(), SpecError> {
        if self.backdrop == Backdrop::Transparent && format == OutputFormat::Jpeg {
            return Err(SpecError::InvalidBackdrop {
                reason: "a transparent backdrop needs png or webp output; jpg has no alpha".into(),
            });
        }
        Ok(())
    }

    /// Whether the pipeline, not the engine, draws the shadow and reflection.
    pub fn has_floor_effects(&self) -> bool {
        self.shadow.is_some() || self.reflection > 0.0 || self.backdrop != Backdrop::Generate
    }
}

/// Framing as a surface receives it: every control optional, names as text. Surfaces
/// fill it from their flags or fields and call [`FramingRequest::framing`], so every
/// surface reads the controls the same way.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FramingRequest<'a> {
    /// `scale`.
    pub scale: Option<f64>,
    /// `padding`.
    pub padding: Option<Padding>,
    /// `align`, by name.
    pub align: Option<&'a str>,
    /// `offset`, `[x, y]`.
    pub offset: Option<[i32; 2]>,
    /// `shadow`, the style's name.
    pub shadow: Option<&'a str>,
    /// `shadow_direction`.
    pub shadow_direction: Option<f32>,
    /// `shadow_opacity`.
    pub shadow_opacity: Option<f32>,
    /// `shadow_softness`.
    pub shadow_softness: Option<f32>,
    /// `reflection`.
    pub reflection: Option<f32>,
    /// `backdrop`: `generate`, `transparent` or `#RRGGBB`.
    pub backdrop: Option<&'a str>,
}

impl FramingRequest<'_> {
    /// The controls as a [`Framing`]. Any placement control turns placement on (the
    /// others take their defaults); shadow knobs without a style apply to `contact`.
    /// Names are checked here; ranges by [`Framing::validate`].
    pub fn framing(&self) -> Result<Framing, SpecError> {
        let placed = self.scale.is_some()
            || self.padding.is_some()
            || self.align.is_some()
            || self.offset.is_some();
        let placement = if placed {
            Some(Placement {
                scale: self.scale.unwrap_or(1.0),
                padding: self.padding.unwrap_or_default(),
                align: self.align.map(str::parse).transpose()?.unwrap_or_default(),
                offset: self.offset.unwrap_or_default(),
            })
        } else {
            None
        };
        let knobs = [self.shadow_direction, self.shadow_opacity, self.shadow_softness];
        let shadow = if self.shadow.is_some() || knobs.iter().any(Option::is_some) {
            Some(ShadowSpec {
                style: self.shadow.map(str::parse).transpose()?.unwrap_or(ShadowStyle::Contact),
                direction: self.shadow_direction,
                opacity: self.shadow_opacity,
                softness: self.shadow_softness,
            })
        } else {
            None
        };
        Ok(Framing {
            placement,
            shadow,
            reflection: self.reflection.unwrap_or(0.0),
            backdrop: self.backdrop.map(str::parse).transpose()?.unwrap_or_default(),
        })
    }
}

/// Where the product's visible bounding box goes (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Placement {
    /// The box fits inside `scale` of the canvas width and height; in (0, 1].
    pub scale: f64,
    /// Free space kept between the box and each canvas edge.
    pub padding: Padding,
    /// Where the box sits in the free area.
    pub align: Align,
    /// A final shift in pixels, `[x, y]` (right and down are positive).
    pub offset: [i32; 2],
}

impl Default for Placement {
    fn default() -> Self {
        Placement { scale: 1.0, padding: Padding::default(), align: Align::Center, offset: [0, 0] }
    }
}

impl Placement {
    /// Checks the values that do not depend on the canvas.
    pub fn validate(&self) -> Result<(), SpecError> {
        // Written so that NaN fails too.
        if !(self.scale > 0.0 && self.scale <= 1.0) {
            return Err(SpecError::ScaleOutOfRange { got: self.scale });
        }
        self.padding.validate()?;
        let max = MAX_OUTPUT_SIDE as i32;
        if self.offset.iter().any(|v| v.abs() > max) {
            return Err(SpecError::InvalidOffset {
                reason: format!(
                    "each offset must be between -{max} and {max} pixels; got {},{}",
                    self.offset[0], self.offset[1]
                ),
            });
        }
        Ok(())
    }

    /// The free area `(left, top, width, height)` in pixels of a `width x height`
    /// canvas, refused when padding leaves less than a pixel.
    pub fn free_area(&self, width: u32, height: u32) -> Result<[f64; 4], SpecError> {
        let [top, right, bottom, left] = self.padding.pixels(width, height);
        let (w, h) = (f64::from(width) - left - right, f64::from(height) - top - bottom);
        if w < 1.0 || h < 1.0 {
            return Err(SpecError::PaddingLeavesNoRoom {
                padding: self.padding.to_string(),
                width,
                height,
            });
        }
        Ok([left, top, w, h])
    }
}

/// Padding per side, `top, right, bottom, left`: values below 1 are fractions of the
/// canvas side, others pixels.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Padding(pub [f64; 4]);

impl Padding {
    /// The same padding on every side.
    pub fn uniform(value: f64) -> Padding {
        Padding([value; 4])
    }

    /// Checks each side is a finite, non-negative number.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.0.iter().any(|v| !v.is_finite() || *v < 0.0) {
            return Err(SpecError::InvalidPadding {
                reason: format!("each side must be 0 or more; got {self}"),
            });
        }
        Ok(())
    }

    /// Pixels per side `[top, right, bottom, left]` on a `width x height` canvas.
    pub fn pixels(&self, width: u32, height: u32) -> [f64; 4] {
        let [t, r, b, l] = self.0;
        let side = |v: f64, len: u32| if v < 1.0 { v * f64::from(len) } else { v };
        [side(t, height), side(r, width), side(b, height), side(l, width)]
    }
}

impl FromStr for Padding {
    type Err = SpecError;
    /// `P` or `TOP,RIGHT,BOTTOM,LEFT`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || SpecError::InvalidPadding {
            reason: format!("'{s}' is not one number or four (top,right,bottom,left)"),
        };
        let values: Vec<f64> = s
            .split(',')
            .map(|v| v.trim().parse::<f64>())
            .collect::<Result<_, _>>()
            .map_err(|_| bad())?;
        let padding = match values[..] {
            [v] => Padding::uniform(v),
            [t, r, b, l] => Padding([t, r, b, l]),
            _ => return Err(bad()),
        };
        padding.validate()?;
        Ok(padding)
    }
}

impl fmt::Display for Padding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [t, r, b, l] = self.0;
        write!(f, "{t},{r},{b},{l}")
    }
}

/// Parses `X,Y` pixel offsets.
pub fn parse_offset(s: &str) -> Result<[i32; 2], SpecError> {
    let bad = || SpecError::InvalidOffset { reason: format!("'{s}' is not X,Y in whole pixels") };
    let (x, y) = s.split_once(',').ok_or_else(bad)?;
    Ok([x.trim().parse().map_err(|_| bad())?, y.trim().parse().map_err(|_| bad())?])
}

/// Where the bounding box sits in the free area.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Align {
    /// Centred both ways.
    #[default]
    Center,
    /// Against the top, centred across.
    Top,
    /// Against the bottom (standing on the floor), centred across.
    Bottom,
    /// Against the left, centred down.
    Left,
    /// Against the right, centred down.
    Right,
    /// Top-left corner.
    TopLeft,
    /// Top-right corner.
    TopRight,
    /// Bottom-left corner.
    BottomLeft,
    /// Bottom-right corner.
    BottomRight,
}

impl Align {
    /// The accepted names.
    pub const NAMES: &'static [&'static str] = &[
        "center",
        "top",
        "bottom",
        "left",
        "right",
        "top-left",
        "top-right",
        "bottom-left",
        "bottom-right",
    ];
    const ALL: [Align; 9] = [
        Align::Center,
        Align::Top,
        Align::Bottom,
        Align::Left,
        Align::Right,
        Align::TopLeft,
        Align::TopRight,
        Align::BottomLeft,
        Align::BottomRight,
    ];

    /// Where the box goes along each axis, `(x, y)`: 0 against the start (left, top),
    /// 0.5 centred, 1 against the end.
    pub fn anchor(self) -> (f64, f64) {
        match self {
            Align::Center => (0.5, 0.5),
            Align::Top => (0.5, 0.0),
            Align::Bottom => (0.5, 1.0),
            Align::Left => (0.0, 0.5),
            Align::Right => (1.0, 0.5),
            Align::TopLeft => (0.0, 0.0),
            Align::TopRight => (1.0, 0.0),
            Align::BottomLeft => (0.0, 1.0),
            Align::BottomRight => (1.0, 1.0),
        }
    }
}

impl FromStr for Align {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let folded = s.trim().to_ascii_lowercase().replace('_', "-");
        let folded = if folded == "centre" { "center".to_string() } else { folded };
        Align::NAMES
            .iter()
            .position(|n| *n == folded)
            .map(|i| Align::ALL[i])
            .ok_or_else(|| SpecError::UnknownAlign { got: s.to_string() })
    }
}

/// A shadow style (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShadowStyle {
    /// No shadow.
    None,
    /// A tight dark line where the product meets the floor.
    Contact,
    /// A diffuse pool leaning away from the light.
    Soft,
    /// A crisp cast shadow.
    Hard,
    /// A detached, blurred footprint under a hovering product.
    Floating,
}

impl ShadowStyle {
    /// The accepted names.
    pub const NAMES: &'static [&'static str] = &["none", "contact", "soft", "hard", "floating"];
    const ALL: [ShadowStyle; 5] = [
        ShadowStyle::None,
        ShadowStyle::Contact,
        ShadowStyle::Soft,
        ShadowStyle::Hard,
        ShadowStyle::Floating,
    ];

    /// The style's name.
    pub fn as_str(self) -> &'static str {
        ShadowStyle::NAMES[ShadowStyle::ALL.iter().position(|s| *s == self).unwrap_or(0)]
    }
}

impl FromStr for ShadowStyle {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let folded = s.trim().to_ascii_lowercase();
        ShadowStyle::NAMES
            .iter()
            .position(|n| *n == folded)
            .map(|i| ShadowStyle::ALL[i])
            .ok_or_else(|| SpecError::UnknownShadowStyle { got: s.to_string() })
    }
}

/// A shadow: a style and its optional knobs (each style has its own defaults).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ShadowSpec {
    /// The style.
    pub style: ShadowStyle,
    /// Where it falls on the floor, degrees clockwise from straight back.
    pub direction: Option<f32>,
    /// Darkness scale in [0, 1].
    pub opacity: Option<f32>,
    /// Blur scale in [0, 1].
    pub softness: Option<f32>,
}

impl ShadowSpec {
    /// A style with its defaults.
    pub fn style(style: ShadowStyle) -> ShadowSpec {
        ShadowSpec { style, direction: None, opacity: None, softness: None }
    }

    /// Checks the knobs.
    pub fn validate(&self) -> Result<(), SpecError> {
        if let Some(d) = self.direction {
            if !d.is_finite() || d.abs() > 360.0 {
                return Err(SpecError::ShadowOutOfRange {
                    what: "direction",
                    range: "-360..=360 degrees",
                    got: d,
                });
            }
        }
        for (what, v) in [("opacity", self.opacity), ("softness", self.softness)] {
            if let Some(v) = v {
                if !(0.0..=1.0).contains(&v) {
                    return Err(SpecError::ShadowOutOfRange { what, range: "0..=1", got: v });
                }
            }
        }
        Ok(())
    }

    /// The knobs with the style's defaults filled in: `(direction in degrees, opacity,
    /// softness)`.
    pub fn resolved(&self) -> (f32, f32, f32) {
        let (direction, opacity, softness) = match self.style {
            ShadowStyle::None => (0.0, 0.0, 0.0),
            ShadowStyle::Contact => (0.0, 0.7, 0.3),
            ShadowStyle::Soft => (30.0, 0.45, 0.7),
            ShadowStyle::Hard => (45.0, 0.55, 0.1),
            ShadowStyle::Floating => (0.0, 0.4, 0.4),
        };
        (
            self.direction.unwrap_or(direction),
            self.opacity.unwrap_or(opacity),
            self.softness.unwrap_or(softness),
        )
    }
}

/// What the product stands on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backdrop {
    /// A generated background (the engine runs).
    #[default]
    Generate,
    /// Nothing: the output's alpha holds only product, shadow and reflection.
    Transparent,
    /// A plain colour, RGB.
    Colour([u8; 3]),
}

impl FromStr for Backdrop {
    type Err = SpecError;
    /// `generate`, `transparent` or `#RRGGBB`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        match t.to_ascii_lowercase().as_str() {
            "generate" => return Ok(Backdrop::Generate),
            "transparent" => return Ok(Backdrop::Transparent),
            _ => {}
        }
        let bad = || SpecError::InvalidBackdrop {
            reason: format!("'{s}' is not transparent, generate or a colour #RRGGBB"),
        };
        let hex = t.strip_prefix('#').ok_or_else(bad)?;
        if hex.len() != 6 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| bad());
        Ok(Backdrop::Colour([byte(0)?, byte(2)?, byte(4)?]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    fn code<T: fmt::Debug>(r: Result<T, SpecError>) -> ErrorCode {
        r.expect_err("refused").code()
    }

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!("0.1".parse::<Padding>(), Ok(Padding::uniform(0.1)));
        assert_eq!("10, 0.05,20,0".parse::<Padding>(), Ok(Padding([10.0, 0.05, 20.0, 0.0])));
        assert_eq!(code("1,2".parse::<Padding>()), ErrorCode::InvalidPadding);
        assert_eq!(code("-0.1".parse::<Padding>()), ErrorCode::InvalidPadding);
        assert_eq!(parse_offset("-12,7"), Ok([-12, 7]));
        assert_eq!(code(parse_offset("3")), ErrorCode::InvalidOffset);
        assert_eq!("bottom-left".parse::<Align>(), Ok(Align::BottomLeft));
        assert_eq!("Centre".parse::<Align>(), Ok(Align::Center));
        assert_eq!(code("middle".parse::<Align>()), ErrorCode::UnknownAlign);
        assert_eq!("Floating".parse::<ShadowStyle>(), Ok(ShadowStyle::Floating));
        assert_eq!(code("dramatic".parse::<ShadowStyle>()), ErrorCode::UnknownShadowStyle);
        assert_eq!("#ff8000".parse::<Backdrop>(), Ok(Backdrop::Colour([255, 128, 0])));
        assert_eq!("transparent".parse::<Backdrop>(), Ok(Backdrop::Transparent));
        for bad in ["ff8000", "#ff80", "#gg0000", "blue"] {
            assert_eq!(code(bad.parse::<Backdrop>()), ErrorCode::InvalidBackdrop, "{bad}");
        }
        for style in ShadowStyle::ALL {
            assert_eq!(style.as_str().parse::<ShadowStyle>(), Ok(style));
        }
    }

    #[test]
    fn limits_have_their_codes() {
        let placed = |p: Placement| Framing { placement: Some(p), ..Default::default() };
        let size = Some(OutputSize { width: 200, height: 100 });
        for scale in [0.0, -0.5, 1.01, f64::NAN] {
            let f = placed(Placement { scale, ..Default::default() });
            assert_eq!(code(f.validate(size)), ErrorCode::ScaleOutOfRange, "{scale}");
        }
        let f = placed(Placement { padding: Padding::uniform(0.5), ..Default::default() });
        assert_eq!(code(f.validate(size)), ErrorCode::PaddingLeavesNoRoom);
        let f =
            placed(Placement { padding: Padding([0.0, 120.0, 0.0, 80.0]), ..Default::default() });
        assert_eq!(code(f.validate(size)), ErrorCode::PaddingLeavesNoRoom);
        assert_eq!(f.validate(None), Ok(()), "pixels are checked once the canvas is known");
        assert_eq!(code(f.check_canvas(200, 100)), ErrorCode::PaddingLeavesNoRoom);
        assert_eq!(f.check_canvas(201, 100), Ok(()));
        let f =
            placed(Placement { padding: Padding([0.2, 0.49, 0.2, 0.49]), ..Default::default() });
        assert_eq!(f.validate(size), Ok(()));
        let f = Framing {
            shadow: Some(ShadowSpec { opacity: Some(1.5), ..ShadowSpec::style(ShadowStyle::Hard) }),
            ..Default::default()
        };
        assert_eq!(code(f.validate(None)), ErrorCode::ShadowOutOfRange);
        let f = Framing { reflection: f32::NAN, ..Default::default() };
        assert_eq!(code(f.validate(None)), ErrorCode::ReflectionOutOfRange);
        let f = Framing { backdrop: Backdrop::Transparent, ..Default::default() };
        assert_eq!(code(f.check_format(OutputFormat::Jpeg)), ErrorCode::InvalidBackdrop);
        assert_eq!(f.check_format(OutputFormat::WebP), Ok(()));
    }

    #[test]
    fn a_background_spec_stored_before_framing_parses_and_behaves_as_before() {
        let spec = crate::spec::stored_before_framing();
        assert_eq!(spec.framing, Framing::default());
        assert_eq!(spec.validate(), Ok(()));
        let text = serde_json::to_string(&spec).expect("serializes");
        assert_eq!(serde_json::from_str::<crate::BackgroundSpec>(&text).expect("parses"), spec);
    }

    #[test]
    fn surfaces_read_the_controls_the_same_way() {
        let f = FramingRequest {
            align: Some("bottom"),
            shadow_opacity: Some(0.3),
            ..Default::default()
        }
        .framing()
        .expect("valid");
        assert_eq!(f.placement, Some(Placement { align: Align::Bottom, ..Default::default() }));
        assert_eq!(f.shadow.map(|s| (s.style, s.opacity)), Some((ShadowStyle::Contact, Some(0.3))));
        assert_eq!(FramingRequest::default().framing(), Ok(Framing::default()));
        let code = |r: FramingRequest<'_>| r.framing().expect_err("refused").code();
        assert_eq!(
            code(FramingRequest { shadow: Some("x"), ..Default::default() }),
            ErrorCode::UnknownShadowStyle
        );
        assert_eq!(
            code(FramingRequest { backdrop: Some("#1"), ..Default::default() }),
            ErrorCode::InvalidBackdrop
        );
    }

    #[test]
    fn an_old_spec_without_framing_parses_to_the_defaults() {
        let f: Framing = serde_json::from_str("{}").expect("parses");
        assert_eq!(f, Framing::default());
        assert!(!f.has_floor_effects());
        let p: Placement = serde_json::from_str(r#"{"scale":0.5}"#).expect("parses");
        assert_eq!(p, Placement { scale: 0.5, ..Default::default() });
    }
}
