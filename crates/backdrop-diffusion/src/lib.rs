//! Backdrop's engines on ONNX Runtime: Stable Diffusion inpainting, with everything around
//! the networks in Rust, reproducing diffusers' results for the same model, prompt and
//! seed; and, beside it on the same runtime and model store, salient-object segmentation
//! for automatic cut-outs ([`segment`]).
//!
//! A short tour:
//! - [`DiffusionEngine`] (in [`engine`]) implements [`backdrop_core::Engine`] for
//!   backgrounds and expansions: model choice, pixel budget, canvas preparation
//!   (expansion pre-fill by the `patch` engine), padding to the VAE scale.
//! - [`inpaint`] is the denoising loop with diffusers' inpainting semantics.
//! - [`model`] opens the ONNX folder layout; [`runtime`] finds and configures ONNX
//!   Runtime; [`hub`] finds models locally, in the Hugging Face cache, or downloads them.
//! - [`tiles`] decodes in overlapping tiles, as diffusers' VAE tiling does.
//! - [`tokenizer`] is the CLIP tokenizer; [`scheduler`] holds DDIM, Euler ancestral,
//!   DPM-Solver++ 2M (Karras) and LCM; [`rng`] reproduces PyTorch's CPU generator.
//! - [`DiffusionConfig`] (in [`config`]) is the `[diffusion]` configuration section.
//! - [`segment`] is the segmentation engine ([`segment::OnnxSegmenter`]) and its
//!   `[segmentation]` section.

#![deny(missing_docs)]

pub mod config;
pub mod engine;
pub mod hub;
pub mod inpaint;
pub mod model;
mod native;
pub mod rng;
pub mod runtime;
pub mod scheduler;
pub mod segment;
pub mod tiles;
pub mod tokenizer;

pub use config::{DiffusionConfig, ModelEntry};
pub use engine::DiffusionEngine;

use backdrop_core::EngineError;

/// Why the diffusion engine could not run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DiffusionError {
    /// The configuration is invalid.
    #[error("diffusion configuration: {0}")]
    Config(String),
    /// ONNX Runtime is missing, too old, or failed to load.
    #[error("{0}")]
    Runtime(String),
    /// A model folder is missing, incomplete or not understood.
    #[error("{0}")]
    Model(String),
    /// The request cannot be served (unknown model or scheduler, over budget, ...).
    #[error("{0}")]
    Unsupported(String),
    /// A network or a step failed.
    #[error("{0}")]
    Failed(String),
    /// The run was canceled.
    #[error("canceled")]
    Canceled,
}

impl From<EngineError> for DiffusionError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Canceled => DiffusionError::Canceled,
            other => DiffusionError::Failed(other.to_string()),
        }
    }
}
