//! One error shape for every native route: `{"code": "...", "message": "..."}` with the
//! right HTTP status (and `Retry-After` on 429).
//!
//! Every error carries one [`ErrorCode`], whose HTTP status the code itself names; the
//! vendor surfaces re-answer the same error in their own envelopes by matching on it.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use backdrop_core::{ErrorCode, SpecError};
use backdrop_engines::pipeline::JobError;
use backdrop_imaging::InputError;
use backdrop_store::StoreError;

/// An error answered to a client: a code (which decides the HTTP status), one sentence,
/// and for 429 how long to wait.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// Stable machine-readable code.
    pub code: ErrorCode,
    /// One human sentence.
    pub message: String,
    /// Seconds to wait, for 429.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with a code and message; the status is the code's.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError { code, message: message.into(), retry_after: None }
    }

    /// The HTTP status of the code.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// 401: no key or an unknown/revoked key.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::Unauthorized, message)
    }

    /// 403: the key may not see this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::Forbidden, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::NotFound, message)
    }

    /// 429 with a wait.
    pub fn too_many(code: ErrorCode, message: impl Into<String>, retry_after: u64) -> Self {
        ApiError { retry_after: Some(retry_after.max(1)), ..ApiError::new(code, message) }
    }

    /// 413.
    pub fn too_large(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::BodyTooLarge, message)
    }

    /// A body extractor's rejection: too large, of the wrong media type, or unreadable.
    pub fn body_rejection(status: StatusCode, message: String) -> Self {
        match status {
            StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::too_large("the request body is larger than the limit")
            }
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                ApiError::new(ErrorCode::UnsupportedMediaType, message)
            }
            _ => ApiError::new(ErrorCode::InvalidBody, message),
        }
    }

    /// 500; the detail is logged, not shown.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!("internal error: {detail}");
        ApiError::new(ErrorCode::Internal, "internal error; it has been logged")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"code": self.code, "message": self.message});
        let mut response = (self.status(), axum::Json(body)).into_response();
        // Kept beside the body so a vendor surface can re-answer an error made outside its
        // handlers (an extractor, a fallback) in its own envelope.
        response.extensions_mut().insert(self.clone());
        if let Some(seconds) = self.retry_after {
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}

impl From<SpecError> for ApiError {
    fn from(e: SpecError) -> Self {
        ApiError::new(e.code(), e.to_string())
    }
}

impl From<InputError> for ApiError {
    fn from(e: InputError) -> Self {
        ApiError::new(e.code(), e.to_string())
    }
}

impl From<JobError> for ApiError {
    fn from(e: JobError) -> Self {
        ApiError::new(e.code(), e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::QueueFull { .. } => {
                ApiError::too_many(ErrorCode::QueueFull, e.to_string(), 5)
            }
            StoreError::ConcurrencyLimit { .. } => {
                ApiError::too_many(ErrorCode::ConcurrencyLimit, e.to_string(), 5)
            }
            StoreError::InsufficientCredits { .. } => {
                ApiError::new(ErrorCode::InsufficientCredits, e.to_string())
            }
            StoreError::BlobNotFound(_) => ApiError::not_found("no such file"),
            _ => ApiError::internal(e),
        }
    }
}

impl From<backdrop_fetch::FetchError> for ApiError {
    fn from(e: backdrop_fetch::FetchError) -> Self {
        ApiError::new(e.code(), e.to_string())
    }
}
