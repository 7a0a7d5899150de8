//! Backdrop's pixel pipeline.
//!
//! - [`decode`]: PNG, JPEG and WebP in, with hard limits checked from the header before
//!   any pixel is decoded ([`DecodeLimits`]).
//! - [`canvas`]: the canvas each job hands an engine: a cut-out placed by its resize mode,
//!   or a photo placed inside its expansion border.
//! - [`placement`]: a cut-out placed by its visible bounding box (scale, padding, align,
//!   offset), resampled once.
//! - [`mask`]: the area to generate, grown into the protected edge.
//! - [`composite`]: the protected pixels restored exactly after the engine ran, with the
//!   seam harmonized on the generated side only.
//! - [`encode`], [`preview`], [`watermark`]: what is written out.
//! - [`blur`]: fast separable blurs shared by the steps above and by engines.
//! - [`matte`]: a segmentation mask refined to the photo's size along its edges (guided
//!   filter), and the transparent cut-out made from it.
//!
//! Every refusal is an [`InputError`] naming the limit, with a stable
//! [`backdrop_core::ErrorCode`].

#![deny(missing_docs)]

pub mod blur;
pub mod canvas;
pub mod composite;
pub mod decode;
pub mod encode;
pub mod mask;
pub mod matte;
pub mod placement;
pub mod preview;
pub mod watermark;

pub use composite::Seam;
pub use decode::{decode, DecodeLimits, DecodedImage, InputError, InputFormat};
pub use encode::{encode, encode_image, OutputFormat};
