//! Wire-compatible surfaces of four commercial APIs, each a thin translation onto the
//! native task model ([`crate::service`]): same queue, engines, storage and credits.
//!
//! - [`cutout`]: Cutout.pro Background Diffusion (`/api/v1/paintAsync`, `/api/v1/getPaintResult`).
//! - [`picwish`]: PicWish Generate Background (`/api/tasks/visual/background`).
//! - [`picpik`]: PicPik GenerateBackgrounds (`POST /` with an `Action`).
//! - [`kling`]: Kling Image Expansion (`/v1/images/editing/expand`).
//!
//! Each module's doc says what is supported, what differs from the vendor and why; each
//! module's `Document` is its OpenAPI description, served at `/openapi/{surface}.json`
//! ([`crate::api::openapi`]).

pub mod cutout;
pub mod kling;
pub mod picpik;
pub mod picwish;

use crate::{AppState, CallbackRenderer};
use axum::Router;
use std::collections::HashMap;

/// Every surface's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(cutout::routes())
        .merge(picwish::routes())
        .merge(picpik::routes())
        .merge(kling::routes())
}

/// Registers the callback bodies of the surfaces that send callbacks.
pub fn register_callbacks(renderers: &mut HashMap<String, CallbackRenderer>) {
    kling::register_callbacks(renderers);
}
