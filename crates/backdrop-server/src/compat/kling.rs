//! Placeholder: the Kling surface is not served yet.

use crate::{AppState, CallbackRenderer};
use axum::Router;
use std::collections::HashMap;

/// The surface's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
}

/// Registers the Kling callback body.
pub fn register_callbacks(_renderers: &mut HashMap<String, CallbackRenderer>) {}
