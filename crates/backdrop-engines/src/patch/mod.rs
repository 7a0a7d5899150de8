//! `patch`: PatchMatch completion (placeholder until implemented).

use backdrop_core::{CancelToken, Engine, EngineError, EngineInput, EngineOutput, Progress};

/// The patch engine.
#[derive(Debug, Default)]
pub struct PatchEngine;

impl Engine for PatchEngine {
    fn name(&self) -> &'static str {
        "patch"
    }

    fn generate(
        &self,
        _input: &EngineInput<'_>,
        _progress: &dyn Progress,
        _cancel: &CancelToken,
    ) -> Result<EngineOutput, EngineError> {
        Err(EngineError::Failed { engine: "patch", reason: "not implemented".into() })
    }
}
