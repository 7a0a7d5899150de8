//! A task's life and its stored payload, shared by the store, the workers and every API
//! surface.
//!
//! ```text
//! queued -> running -> succeeded | failed | canceled
//!    ^         |
//!    +---------+  (lease lapsed: back to the queue, up to a retry limit)
//! ```
//!
//! [`TaskPayload`] is what a submit persists: the validated job spec plus the output
//! options. It is typed (a tagged enum), so a worker never parses ad-hoc JSON. Vendor
//! surfaces keep their own extra fields beside it in the store, never in here.

use crate::cutout::CutoutSpec;
use crate::engine::{EngineName, EngineOptions, JobKind};
use crate::spec::{BackgroundSpec, ExpansionSpec, SpecError};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting for a worker.
    Queued,
    /// A worker holds it.
    Running,
    /// Done; results are stored.
    Succeeded,
    /// Failed with an error code.
    Failed,
    /// Canceled by its owner.
    Canceled,
}

impl TaskState {
    /// Every state.
    pub const ALL: [TaskState; 5] = [
        TaskState::Queued,
        TaskState::Running,
        TaskState::Succeeded,
        TaskState::Failed,
        TaskState::Canceled,
    ];

    /// The state as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::Running => "running",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::Canceled => "canceled",
        }
    }

    /// Whether the task can change no more.
    pub fn is_terminal(self) -> bool {
        matches!(self, TaskState::Succeeded | TaskState::Failed | TaskState::Canceled)
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskState::ALL.into_iter().find(|state| state.as_str() == s).ok_or_else(|| {
            format!("unknown state '{s}' (expected queued, running, succeeded, failed or canceled)")
        })
    }
}

/// An image file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputFormat {
    /// Lossless PNG.
    #[default]
    Png,
    /// JPEG (lossy).
    Jpeg,
    /// Lossless WebP.
    #[serde(rename = "webp")]
    WebP,
}

impl OutputFormat {
    /// The file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Png => "png",
            OutputFormat::Jpeg => "jpg",
            OutputFormat::WebP => "webp",
        }
    }

    /// The MIME type.
    pub fn mime(self) -> &'static str {
        match self {
            OutputFormat::Png => "image/png",
            OutputFormat::Jpeg => "image/jpeg",
            OutputFormat::WebP => "image/webp",
        }
    }
}

impl fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.extension())
    }
}

impl FromStr for OutputFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "png" => Ok(OutputFormat::Png),
            "jpg" | "jpeg" => Ok(OutputFormat::Jpeg),
            "webp" => Ok(OutputFormat::WebP),
            _ => Err(format!("unknown format '{s}' (expected png, jpg or webp)")),
        }
    }
}

/// The job of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobSpec {
    /// A background job.
    Background(BackgroundSpec),
    /// An expansion job.
    Expansion(ExpansionSpec),
    /// A cut-out job.
    Cutout(CutoutSpec),
}

impl JobSpec {
    /// Which job.
    pub fn kind(&self) -> JobKind {
        match self {
            JobSpec::Background(_) => JobKind::Background,
            JobSpec::Expansion(_) => JobKind::Expansion,
            JobSpec::Cutout(_) => JobKind::Cutout,
        }
    }

    /// How many images.
    pub fn n(&self) -> u32 {
        match self {
            JobSpec::Background(s) => s.n,
            JobSpec::Expansion(s) => s.n,
            JobSpec::Cutout(_) => 1,
        }
    }

    /// The seed, if one was given.
    pub fn seed(&self) -> Option<u64> {
        match self {
            JobSpec::Background(s) => s.seed,
            JobSpec::Expansion(s) => s.seed,
            JobSpec::Cutout(_) => None,
        }
    }

    /// Checks every limit of the spec.
    pub fn validate(&self) -> Result<(), SpecError> {
        match self {
            JobSpec::Background(s) => s.validate(),
            JobSpec::Expansion(s) => s.validate(),
            JobSpec::Cutout(s) => s.validate(),
        }
    }
}

/// Everything a worker needs besides the input images: persisted at submit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskPayload {
    /// The job.
    pub job: JobSpec,
    /// The engine as requested (`auto` allowed; resolved by the worker's engine set).
    pub engine: EngineName,
    /// Mask growth in pixels; `None` for the job's default.
    pub mask_grow: Option<u32>,
    /// Result file format.
    pub format: OutputFormat,
    /// Longest side of the preview, if one is wanted.
    pub preview_side: Option<u32>,
    /// Also store a watermarked variant.
    pub watermark: bool,
    /// Classifier-free guidance scale (diffusion).
    pub guidance: Option<f32>,
    /// Scheduler name (diffusion).
    pub scheduler: Option<String>,
    /// Largest output side; results larger than this are scaled down keeping the aspect
    /// ratio. Tasks stored by earlier versions carry it (PicWish's 1024 cap); surfaces now
    /// set the spec's output size instead, so the product is composited at the delivered
    /// size rather than resampled after.
    pub max_output_side: Option<u32>,
}

impl TaskPayload {
    /// A payload with default output options.
    pub fn new(job: JobSpec) -> Self {
        let watermark = matches!(&job, JobSpec::Expansion(s) if s.watermark);
        TaskPayload {
            job,
            engine: EngineName::Auto,
            mask_grow: None,
            format: OutputFormat::Png,
            preview_side: Some(512),
            watermark,
            guidance: None,
            scheduler: None,
            max_output_side: None,
        }
    }

    /// The engine settings the task carries beside its spec (the spec's own steps,
    /// model and LoRAs are merged in by the pipeline).
    pub fn engine_options(&self) -> EngineOptions {
        EngineOptions {
            guidance: self.guidance,
            scheduler: self.scheduler.clone(),
            ..EngineOptions::default()
        }
    }

    /// Checks the spec and the engine settings: what is refused at submit, on every
    /// surface, rather than failed when the task runs.
    pub fn validate(&self) -> Result<(), SpecError> {
        self.job.validate()?;
        self.engine_options().validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_know_when_they_end() {
        for state in TaskState::ALL {
            assert_eq!(state.as_str().parse::<TaskState>(), Ok(state));
        }
        assert!(TaskState::Canceled.is_terminal() && !TaskState::Running.is_terminal());
        assert!("done".parse::<TaskState>().is_err());
    }

    #[test]
    fn payload_is_tagged_json() {
        let payload = TaskPayload::new(JobSpec::Expansion(ExpansionSpec {
            watermark: true,
            ..Default::default()
        }));
        let text = serde_json::to_string(&payload).expect("serializes");
        assert!(text.contains(r#""kind":"expansion""#), "{text}");
        assert!(payload.watermark);
        let back: TaskPayload = serde_json::from_str(&text).expect("parses");
        assert_eq!(back, payload);
    }
}
