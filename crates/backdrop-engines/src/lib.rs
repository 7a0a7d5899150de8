//! Backdrop's engines: implementations of [`backdrop_core::Engine`], the set a process
//! runs with, and the job pipeline around them.
//!
//! - [`studio`]: parametric studio backdrops with a contact shadow; no weights,
//!   milliseconds. The default for backgrounds on a machine with no model.
//! - [`patch`]: multi-scale PatchMatch image completion; no weights. The default for
//!   expansions on a machine with no model.
//! - [`Engines`]: the engines one process offers. The weight-free ones are always there;
//!   a diffusion engine (its own crate, heavy dependencies) is added by the binary when a
//!   model is configured, which is also what makes `auto` pick it.
//! - [`pipeline`]: one job from decoded input to encoded files, shared by every surface,
//!   including the automatic cut-out of photos by the set's [`Segmenter`].

#![deny(missing_docs)]

mod framing;
pub mod patch;
pub mod pipeline;
mod rng;
pub mod studio;

use backdrop_core::{Engine, EngineError, EngineName, JobKind, Segmenter};
use std::sync::Arc;

/// The engines a process offers.
#[derive(Clone)]
pub struct Engines {
    studio: Arc<dyn Engine>,
    patch: Arc<dyn Engine>,
    diffusion: Option<Arc<dyn Engine>>,
    /// Whether `auto` picks the diffusion engine (a default model is configured).
    diffusion_auto: bool,
    /// Salient-object segmentation for cut-outs, when a model is available.
    segmenter: Option<Arc<dyn Segmenter>>,
}

impl std::fmt::Debug for Engines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engines")
            .field("diffusion", &self.diffusion.is_some())
            .field("segmenter", &self.segmenter.is_some())
            .finish()
    }
}

impl Default for Engines {
    fn default() -> Self {
        Engines::weight_free()
    }
}

impl Engines {
    /// Only the engines that need no weights.
    pub fn weight_free() -> Self {
        Engines {
            studio: Arc::new(studio::StudioEngine::default()),
            patch: Arc::new(patch::PatchEngine::default()),
            diffusion: None,
            diffusion_auto: false,
            segmenter: None,
        }
    }

    /// Adds a diffusion engine (with a configured model); `auto` then picks it.
    pub fn with_diffusion(mut self, engine: Arc<dyn Engine>) -> Self {
        self.diffusion = Some(engine);
        self.diffusion_auto = true;
        self
    }

    /// Adds a diffusion engine that runs only when named (`diffusion`): models are
    /// configured but none is the default, so `auto` keeps the weight-free engines.
    pub fn with_named_diffusion(mut self, engine: Arc<dyn Engine>) -> Self {
        self.diffusion = Some(engine);
        self.diffusion_auto = false;
        self
    }

    /// Adds salient-object segmentation: cut-out tasks, and backgrounds from photos.
    pub fn with_segmenter(mut self, segmenter: Arc<dyn Segmenter>) -> Self {
        self.segmenter = Some(segmenter);
        self
    }

    /// The segmenter, or why there is none.
    pub fn segmenter(&self) -> Result<Arc<dyn Segmenter>, EngineError> {
        self.segmenter.clone().ok_or_else(|| EngineError::Unsupported {
            engine: "segment",
            reason: "no segmentation model is available for automatic cut-out (see the \
                     README's Cut-out section)"
                .into(),
        })
    }

    /// Whether a segmenter is configured.
    pub fn has_segmenter(&self) -> bool {
        self.segmenter.is_some()
    }

    /// The concrete engine name a task of `kind` asking for `name` runs on (what it is
    /// queued and claimed under); refuses a name that cannot serve the job.
    pub fn resolve(&self, name: EngineName, kind: JobKind) -> Result<EngineName, EngineError> {
        match (kind, name) {
            (JobKind::Cutout, EngineName::Auto | EngineName::Segment) => {
                self.segmenter().map(|_| EngineName::Segment)
            }
            (JobKind::Cutout, other) => Err(EngineError::Unsupported {
                engine: other.as_str(),
                reason: "cut-outs run on the segment engine".into(),
            }),
            _ => self.get(name, kind).map(|(resolved, _)| resolved),
        }
    }

    /// Whether a diffusion engine is configured.
    pub fn has_diffusion(&self) -> bool {
        self.diffusion.is_some()
    }

    /// The concrete engines this set can run (what a worker claims tasks for).
    pub fn available(&self) -> Vec<EngineName> {
        let mut names = vec![EngineName::Studio, EngineName::Patch];
        if self.has_diffusion() {
            names.push(EngineName::Diffusion);
        }
        if self.has_segmenter() {
            names.push(EngineName::Segment);
        }
        names
    }

    /// The engine for a name and a job: `auto` resolved (see [`EngineName::resolve`]),
    /// with the concrete name that will run.
    pub fn get(
        &self,
        name: EngineName,
        kind: JobKind,
    ) -> Result<(EngineName, Arc<dyn Engine>), EngineError> {
        let resolved = name.resolve(kind, self.has_diffusion() && self.diffusion_auto);
        let engine = match resolved {
            EngineName::Studio => Arc::clone(&self.studio),
            EngineName::Patch => Arc::clone(&self.patch),
            EngineName::Diffusion => {
                self.diffusion.clone().ok_or_else(|| EngineError::Unsupported {
                    engine: "diffusion",
                    reason: "no diffusion model is configured (see the README's Models section)"
                        .into(),
                })?
            }
            EngineName::Auto => {
                return Err(EngineError::Unsupported {
                    engine: "auto",
                    reason: "auto did not resolve".into(),
                })
            }
            EngineName::Segment => {
                return Err(EngineError::Unsupported {
                    engine: "segment",
                    reason: "the segment engine only cuts out (POST /v1/cutouts, `backdrop \
                             cutout`); it does not generate"
                        .into(),
                })
            }
        };
        Ok((resolved, engine))
    }
}
