//! Backdrop's engines: implementations of [`backdrop_core::Engine`].
//!
//! - [`studio`]: parametric studio backdrops with a contact shadow; no weights,
//!   milliseconds. The default for backgrounds on a machine with no model.
//! - [`patch`]: multi-scale PatchMatch image completion; no weights. The default for
//!   expansions on a machine with no model.
//!
//! - [`pipeline`]: one job from decoded input to encoded files, shared by every surface.
//!
//! [`build`] turns an [`EngineName`] into an engine; `auto` must be resolved first
//! ([`EngineName::resolve`]).

#![deny(missing_docs)]

pub mod patch;
pub mod pipeline;
pub mod studio;

use backdrop_core::{Engine, EngineError, EngineName};

/// The engine for a concrete name. `Auto` and engines not built into this binary are
/// refused with [`EngineError::Unsupported`].
pub fn build(name: EngineName) -> Result<Box<dyn Engine>, EngineError> {
    match name {
        EngineName::Studio => Ok(Box::new(studio::StudioEngine::default())),
        EngineName::Patch => Ok(Box::new(patch::PatchEngine::default())),
        EngineName::Auto => Err(EngineError::Unsupported {
            engine: "auto",
            reason: "resolve 'auto' to a concrete engine first".into(),
        }),
        EngineName::Diffusion => Err(EngineError::Unsupported {
            engine: "diffusion",
            reason: "no diffusion model is configured in this build".into(),
        }),
    }
}
