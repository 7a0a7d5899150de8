//! Automatic cut-out: finding the product in a photo.
//!
//! A [`Segmenter`] (the port a salient-object segmentation engine implements) turns a
//! photo into an alpha matte at the photo's size. Two things use it:
//! - the cut-out job ([`CutoutSpec`]): the photo comes back as a transparent PNG;
//! - a background job whose input has no transparent pixels ([`CutoutMode`]): the photo
//!   is cut out first, then the background is generated around the product.
//!
//! Whether a matte found anything is decided here, once, for every segmenter
//! ([`check_matte`]): a matte that covers almost nothing or almost everything is
//! [`NoObject`], with its own error code, rather than an empty or untouched background.

use crate::engine::{CancelToken, EngineError};
use crate::error::ErrorCode;
use crate::spec::SpecError;
use image::{GrayImage, RgbaImage};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// When a background job cuts its input out first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CutoutMode {
    /// Only when the input has no transparent pixel (a photo); a cut-out is used as it is.
    #[default]
    Auto,
    /// Always segment, even an input with transparency (its alpha is kept where the
    /// matte is more transparent).
    Always,
    /// Never: the input must be a transparent cut-out.
    Never,
}

impl CutoutMode {
    /// Every name, as accepted by [`FromStr`].
    pub const NAMES: &'static [&'static str] = &["auto", "always", "never"];

    /// The name as users write it.
    pub fn as_str(self) -> &'static str {
        match self {
            CutoutMode::Auto => "auto",
            CutoutMode::Always => "always",
            CutoutMode::Never => "never",
        }
    }

    /// Whether an input is segmented before the background job: `has_transparency` says
    /// whether any of its pixels has alpha below 255.
    pub fn segments(self, has_transparency: bool) -> bool {
        match self {
            CutoutMode::Auto => !has_transparency,
            CutoutMode::Always => true,
            CutoutMode::Never => false,
        }
    }
}

impl fmt::Display for CutoutMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CutoutMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(CutoutMode::Auto),
            "always" => Ok(CutoutMode::Always),
            "never" => Ok(CutoutMode::Never),
            _ => Err(format!(
                "unknown cutout mode '{s}' (expected one of {})",
                CutoutMode::NAMES.join(", ")
            )),
        }
    }
}

/// A cut-out job: the photo back as a transparent PNG of the same size.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CutoutSpec {
    /// Segmentation model id; `None` uses the default model.
    #[serde(default)]
    pub model: Option<String>,
}

impl CutoutSpec {
    /// Checks the model id.
    pub fn validate(&self) -> Result<(), SpecError> {
        crate::spec::check_model_id(self.model.as_deref())
    }
}

/// Salient-object segmentation: the port a segmentation engine implements.
pub trait Segmenter: Send + Sync {
    /// The default model's id, for notes and listings.
    fn default_model(&self) -> String;

    /// The alpha matte of the most salient object, at the photo's size: 255 object, 0
    /// background, soft values on the edge. The photo's alpha channel is ignored. `model`
    /// picks a configured model (`None`: the default). Checks `cancel` between stages.
    fn segment(
        &self,
        photo: &RgbaImage,
        model: Option<&str>,
        cancel: &CancelToken,
    ) -> Result<GrayImage, EngineError>;
}

/// Least share of the photo a found object covers (alpha at least half).
pub const MIN_OBJECT_COVERAGE: f64 = 0.005;
/// Largest share: a matte covering more than this is "everything", not an object.
pub const MAX_OBJECT_COVERAGE: f64 = 0.98;

/// Segmentation found no object to cut out.
#[derive(Debug, Clone, PartialEq)]
pub struct NoObject {
    /// Share of the photo the matte covers (alpha at least half), 0..=1.
    pub coverage: f64,
}

impl fmt::Display for NoObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let percent = self.coverage * 100.0;
        if self.coverage < MIN_OBJECT_COVERAGE {
            write!(
                f,
                "no object found in the photo: the segmentation mask covers {percent:.2}% of it \
                 (at least {}% is needed); send a photo with a clear product, or a transparent \
                 cut-out",
                MIN_OBJECT_COVERAGE * 100.0
            )
        } else {
            write!(
                f,
                "no object found in the photo: the segmentation mask covers {percent:.2}% of it, \
                 which is the whole picture (at most {}%); send a photo with background around \
                 the product, or a transparent cut-out",
                MAX_OBJECT_COVERAGE * 100.0
            )
        }
    }
}

impl std::error::Error for NoObject {}

impl NoObject {
    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::NoObjectFound
    }
}

/// Share of pixels whose alpha is at least half.
pub fn coverage(matte: &GrayImage) -> f64 {
    let total = u64::from(matte.width()) * u64::from(matte.height());
    if total == 0 {
        return 0.0;
    }
    let covered = matte.as_raw().iter().filter(|&&a| a >= 128).count() as u64;
    covered as f64 / total as f64
}

/// Accepts a matte that holds an object: neither (almost) empty nor (almost) everything.
pub fn check_matte(matte: &GrayImage) -> Result<(), NoObject> {
    let coverage = coverage(matte);
    if (MIN_OBJECT_COVERAGE..=MAX_OBJECT_COVERAGE).contains(&coverage) {
        Ok(())
    } else {
        Err(NoObject { coverage })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Luma;

    #[test]
    fn auto_segments_only_photos() {
        assert!(CutoutMode::Auto.segments(false));
        assert!(!CutoutMode::Auto.segments(true));
        assert!(CutoutMode::Always.segments(true));
        assert!(!CutoutMode::Never.segments(false));
        for name in CutoutMode::NAMES {
            assert_eq!(name.parse::<CutoutMode>().map(|m| m.as_str()), Ok(*name));
        }
        assert!("sometimes".parse::<CutoutMode>().is_err());
    }

    #[test]
    fn stored_background_specs_without_the_field_read_as_auto() {
        assert_eq!(crate::spec::stored_before_framing().cutout, CutoutMode::Auto);
        let job = crate::JobSpec::Cutout(CutoutSpec { model: Some("u2netp".into()) });
        let text = serde_json::to_string(&job).expect("serializes");
        assert!(text.contains(r#""kind":"cutout""#), "{text}");
        assert_eq!(serde_json::from_str::<crate::JobSpec>(&text).expect("parses"), job);
        assert_eq!(job.kind().to_string(), "cutout");
        let bad = CutoutSpec { model: Some("../x".into()) };
        assert_eq!(bad.validate().map_err(|e| e.code()), Err(ErrorCode::InvalidModelId));
    }

    #[test]
    fn empty_and_full_mattes_are_no_object() {
        let empty = GrayImage::new(100, 100);
        let err = check_matte(&empty).expect_err("empty");
        assert_eq!(err.code(), ErrorCode::NoObjectFound);
        assert!(err.to_string().contains("covers 0.00%"), "{err}");
        let full = GrayImage::from_pixel(100, 100, Luma([255]));
        assert!(check_matte(&full).expect_err("full").to_string().contains("whole picture"));
        let mut object = GrayImage::new(100, 100);
        for y in 20..80 {
            for x in 30..70 {
                object.put_pixel(x, y, Luma([255]));
            }
        }
        assert_eq!(check_matte(&object), Ok(()));
        assert!((coverage(&object) - 0.24).abs() < 1e-9);
    }
}
