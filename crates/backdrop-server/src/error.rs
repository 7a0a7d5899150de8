//! One error shape for every native route: `{"code": "...", "message": "..."}` with the
//! right HTTP status (and `Retry-After` on 429).
//!
//! Domain errors keep their stable codes ([`backdrop_core::ErrorCode`]); the status is
//! chosen here, the one place that knows about HTTP.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use backdrop_core::SpecError;
use backdrop_engines::pipeline::JobError;
use backdrop_imaging::InputError;
use backdrop_store::StoreError;
use std::borrow::Cow;

/// An error answered to a client.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: Cow<'static, str>,
    /// One human sentence.
    pub message: String,
    /// Seconds to wait, for 429.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        ApiError { status, code: code.into(), message: message.into(), retry_after: None }
    }

    /// 400 with a code.
    pub fn bad_request(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401: no key or an unknown/revoked key.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403: the key may not see this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 429 with a wait.
    pub fn too_many(
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
        retry_after: u64,
    ) -> Self {
        ApiError {
            retry_after: Some(retry_after.max(1)),
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, message)
        }
    }

    /// 413.
    pub fn too_large(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", message)
    }

    /// 500; the detail is logged, not shown.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!("internal error: {detail}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; it has been logged",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"code": self.code, "message": self.message});
        let mut response = (self.status, axum::Json(body)).into_response();
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
        ApiError::bad_request(e.code().as_str(), e.to_string())
    }
}

impl From<InputError> for ApiError {
    fn from(e: InputError) -> Self {
        let status = match e {
            InputError::FileTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, e.code().as_str(), e.to_string())
    }
}

impl From<JobError> for ApiError {
    fn from(e: JobError) -> Self {
        match e {
            JobError::Spec(e) => e.into(),
            JobError::Input(e) => e.into(),
            other => ApiError::bad_request(other.code().as_str(), other.to_string()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::QueueFull { .. } => ApiError::too_many("queue_full", e.to_string(), 5),
            StoreError::ConcurrencyLimit { .. } => {
                ApiError::too_many("concurrency_limit", e.to_string(), 5)
            }
            StoreError::InsufficientCredits { .. } => {
                ApiError::new(StatusCode::PAYMENT_REQUIRED, "insufficient_credits", e.to_string())
            }
            StoreError::BlobNotFound(_) => ApiError::not_found("no such file"),
            _ => ApiError::internal(e),
        }
    }
}

impl From<backdrop_fetch::FetchError> for ApiError {
    fn from(e: backdrop_fetch::FetchError) -> Self {
        ApiError::bad_request(e.code(), e.to_string())
    }
}
