//! HTTP routes: the native v1 API, signed files, health, metrics, the OpenAPI
//! documents and the playground page. Vendor surfaces add their own routers beside these.

pub mod files;
pub mod native;
pub mod openapi;
pub mod playground;

use crate::error::ApiError;
use crate::AppState;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use backdrop_core::ErrorCode;

/// The service's router.
pub fn router(state: AppState) -> Router {
    let limit = state.config.limits.max_body_bytes;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi::document))
        .route("/openapi/{file}", get(openapi::surface_document))
        .route("/files/{*key}", get(files::serve))
        .merge(native::routes().layer(axum::middleware::map_response(json_errors)))
        .merge(playground::routes())
        .merge(crate::compat::routes())
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(state.clone(), time_limit))
        .with_state(state)
}

/// Bounds how long a request may take until its response starts, body upload included,
/// so a client trickling its body cannot hold a connection (and a handler) for ever.
/// Streaming bodies (event streams, downloads) are not cut: the limit ends when the
/// response head is ready.
pub async fn time_limit(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let secs = state.config.server.request_timeout_secs;
    match tokio::time::timeout(std::time::Duration::from_secs(secs), next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            ErrorCode::RequestTimeout,
            format!("the request did not complete within {secs} s"),
        )
        .into_response(),
    }
}

/// 405 for a route that exists with other methods.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(ErrorCode::MethodNotAllowed, "method not allowed on this route")
}

/// The native API answers every error as `{code, message}`. Axum's extractors answer
/// some on their own in plain text (a path segment or a query such as `limit=-5` that
/// does not parse, a body of the wrong media type); this rewrites those, keeping the
/// status and the extractor's explanation as the message.
async fn json_errors(response: Response) -> Response {
    match stray_error(response).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

/// A vendor surface answers every error in its own envelope: errors made outside its
/// handlers (extractor rejections, the method-not-allowed fallback, native errors) are
/// re-answered through the surface's `From<ApiError>`.
pub async fn surface_errors<E>(response: Response) -> Response
where
    E: From<ApiError> + IntoResponse,
{
    if let Some(error) = response.extensions().get::<ApiError>().cloned() {
        return E::from(error).into_response();
    }
    match stray_error(response).await {
        Ok(response) => response,
        Err(error) => E::from(error).into_response(),
    }
}

/// `Err` with the error a plain-text error response stands for; any other response
/// unchanged.
async fn stray_error(response: Response) -> Result<Response, ApiError> {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json || !(status.is_client_error() || status.is_server_error()) {
        return Ok(response);
    }
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    // Extractor messages are one short line; anything longer is cut, not buffered.
    let bytes = axum::body::to_bytes(response.into_body(), 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes).trim().to_string();
    let code = match status {
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::BodyTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
        s if s.is_server_error() => ErrorCode::Internal,
        _ => ErrorCode::InvalidParameter,
    };
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("request refused").to_string()
    } else {
        text
    };
    Err(ApiError { retry_after, ..ApiError::new(code, message) })
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", operation_id = "health",
    responses((status = 200, description = "The process is up.", body = Health)),
    tag = "service"
)]
async fn healthz() -> axum::Json<Health> {
    axum::Json(Health { status: "ok".to_string() })
}

/// `GET /healthz`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
}

/// `GET /readyz` when every dependency answers.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// `ready`.
    pub status: String,
    /// `ok`.
    pub database: String,
    /// `ok`.
    pub storage: String,
}

/// `GET /readyz` when a dependency does not answer: an error body that also names each
/// dependency's state.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct NotReady {
    /// `not_ready`.
    pub code: String,
    /// Which dependencies are unavailable.
    pub message: String,
    /// `not_ready`.
    pub status: String,
    /// `ok` or `unavailable`.
    pub database: String,
    /// `ok` or `unavailable`.
    pub storage: String,
}

/// Readiness: each dependency as `ok` or `unavailable`. Error texts stay in the log:
/// they can name hosts, paths and users.
#[utoipa::path(get, path = "/readyz", operation_id = "readiness",
    responses(
        (status = 200, description = "The database and the blob store answer.", body = Readiness),
        (status = 503, description = "`not_ready`: a dependency does not answer.", body = NotReady),
    ),
    tag = "service"
)]
async fn readyz(State(state): State<AppState>) -> Response {
    let (database, storage) = tokio::join!(state.repo.ping(), state.blobs.reachable());
    let word = |name: &str, result: Result<(), backdrop_store::StoreError>| match result {
        Ok(()) => "ok",
        Err(e) => {
            tracing::warn!("readiness: {name}: {}", crate::redact_url(&e.to_string()));
            "unavailable"
        }
    };
    let (database, storage) = (word("database", database), word("storage", storage));
    if database == "ok" && storage == "ok" {
        return axum::Json(Readiness {
            status: "ready".to_string(),
            database: database.to_string(),
            storage: storage.to_string(),
        })
        .into_response();
    }
    let down: Vec<&str> = [("database", database), ("storage", storage)]
        .iter()
        .filter(|(_, w)| *w != "ok")
        .map(|(n, _)| *n)
        .collect();
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(NotReady {
            code: "not_ready".to_string(),
            message: format!("not ready: {} unavailable", down.join(" and ")),
            status: "not_ready".to_string(),
            database: database.to_string(),
            storage: storage.to_string(),
        }),
    )
        .into_response()
}

/// Prometheus metrics: submits, finished tasks, queue depths, durations.
#[utoipa::path(get, path = "/metrics",
    responses(
        (status = 200, description = "The Prometheus text format, version 0.0.4.",
            content_type = "text/plain; version=0.0.4", body = String),
        (status = 500, description = "The queue depths could not be read.", body = native::ErrorBody),
    ),
    tag = "service"
)]
async fn metrics(State(state): State<AppState>) -> Response {
    let depths: Vec<(String, u64)> = match state.repo.queue_depths().await {
        Ok(depths) => {
            depths.into_iter().map(|(engine, n)| (engine.as_str().to_string(), n)).collect()
        }
        Err(e) => return ApiError::internal(e).into_response(),
    };
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render(&depths))
        .into_response()
}
