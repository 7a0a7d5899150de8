//! The OpenAPI document, generated from the handlers' and types' annotations.

use super::native;
use utoipa::OpenApi;

/// The native API's OpenAPI description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Backdrop",
        description = "Background generation and image expansion as asynchronous tasks."
    ),
    paths(
        native::submit_background,
        native::submit_expansion,
        native::submit_cutout,
        native::get_task,
        native::cancel_task,
        native::list_tasks
    ),
    components(schemas(
        native::BackgroundRequest,
        native::ExpansionRequest,
        native::CutoutRequest,
        native::Accepted,
        native::ErrorBody,
        native::TaskView,
        native::ProgressView,
        native::ImageView,
        native::TaskPage
    ))
)]
pub struct ApiDoc;

/// `GET /openapi.json`.
pub async fn document() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}
