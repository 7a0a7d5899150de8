//! `studio`: parametric studio backdrops (placeholder until implemented).

use backdrop_core::{CancelToken, Engine, EngineError, EngineInput, EngineOutput, Progress};

/// The studio engine.
#[derive(Debug, Default)]
pub struct StudioEngine;

impl Engine for StudioEngine {
    fn name(&self) -> &'static str {
        "studio"
    }

    fn generate(
        &self,
        _input: &EngineInput<'_>,
        _progress: &dyn Progress,
        _cancel: &CancelToken,
    ) -> Result<EngineOutput, EngineError> {
        Err(EngineError::Failed { engine: "studio", reason: "not implemented".into() })
    }
}
