//! Placeholder: the picwish surface is not served yet.

use crate::AppState;
use axum::Router;

/// The surface's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
}
