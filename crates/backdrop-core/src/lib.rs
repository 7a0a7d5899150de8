//! Backdrop's domain core: what a job is, what makes it valid, and what an engine must do.
//!
//! This crate is shared by every surface (command line, native API, vendor surfaces) and
//! every engine. It holds no IO: no HTTP, database, ML or async-runtime crate may be
//! added here (the workspace README states the rule); the only pixel dependency is the
//! `image` crate's in-memory buffer types, used by the engine port.
//!
//! A short tour:
//! - [`spec`]: [`BackgroundSpec`] and [`ExpansionSpec`] (with [`ExpansionRatios`]), the
//!   two jobs, each with a `validate` that returns a typed [`SpecError`].
//! - [`error`]: [`ErrorCode`], the stable machine-readable codes every error maps to.
//! - [`framing`]: [`Framing`], how a background job frames the product: placement on its
//!   visible bounding box, shadow style, floor reflection, plain or transparent backdrop.
//! - [`scene`]: the catalogue of scene templates ([`SceneTemplate`]) and the documented
//!   prompt-word mapping that picks one when only a prompt is given.
//! - [`task`]: [`TaskState`] and [`TaskPayload`], the persisted form of a job.
//! - [`pricing`]: [`PriceTable`], credits per surface.
//! - [`engine`]: the [`Engine`] trait (the port engines implement), its input and output,
//!   progress reporting and cancellation, and [`EngineName`] selection.
//! - [`cutout`]: automatic cut-out: the [`Segmenter`] port, [`CutoutMode`] of background
//!   jobs, the [`CutoutSpec`] job, and when a matte holds no object ([`NoObject`]).

#![deny(missing_docs)]

pub mod cutout;
pub mod engine;
pub mod error;
pub mod framing;
pub mod pricing;
pub mod scene;
pub mod secret;
pub mod spec;
pub mod task;

pub use cutout::{CutoutMode, CutoutSpec, NoObject, Segmenter};
pub use engine::{
    CancelToken, Engine, EngineError, EngineInput, EngineName, EngineOptions, EngineOutput,
    EngineResult, JobKind, Progress, RunControl, StepProgress, DEFAULT_WORKING_BYTES_PER_PIXEL,
};
pub use error::ErrorCode;
pub use framing::{Align, Backdrop, Framing, Padding, Placement, ShadowSpec, ShadowStyle};
pub use pricing::PriceTable;
pub use scene::{SceneChoice, SceneTemplate, SCENES};
pub use secret::Secret;
pub use spec::{
    scheduler_name, BackgroundSpec, ExpansionPixels, ExpansionRatios, ExpansionSpec, LoraRef,
    OutputSize, ReferenceSpec, ResizeMode, SpecError, SCHEDULERS,
};
pub use task::{JobSpec, OutputFormat, TaskPayload, TaskState};
