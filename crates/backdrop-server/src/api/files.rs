//! Serving result files at signed, expiring URLs: `GET /files/KEY?exp=..&sig=..`.
//!
//! No API key is needed (the URL is the credential); a bad signature answers 403, an
//! expired one 410, and neither ever returns the file.

use crate::error::ApiError;
use crate::{now_ms, AppState};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use backdrop_core::ErrorCode;
use backdrop_store::blob::SignatureError;
use serde::Deserialize;

/// The signature query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Signature {
    /// Expiry, unix seconds.
    #[param(required = true)]
    exp: Option<i64>,
    /// HMAC of the key and the expiry.
    #[param(required = true)]
    sig: Option<String>,
}

/// `GET /files/{*key}`: a result file, at the signed URL a task view gives (use it as it
/// is; the key contains slashes).
#[utoipa::path(get, path = "/files/{key}",
    operation_id = "download_file",
    summary = "A result file, at the signed URL a task view gives.",
    params(("key" = String, Path, description = "The file's key, as in the signed URL."), Signature),
    responses(
        (status = 200, description = "The file.", content(
            (crate::api::openapi::Binary = "image/png"),
            (crate::api::openapi::Binary = "image/jpeg"),
            (crate::api::openapi::Binary = "image/webp"),
        )),
        (status = 403, description = "Not signed, or a bad signature.", body = crate::api::native::ErrorBody),
        (status = 404, description = "No such file (swept after expiry).", body = crate::api::native::ErrorBody),
        (status = 410, description = "`link_expired`: the URL has expired.", body = crate::api::native::ErrorBody),
    ),
    tag = "files"
)]
pub async fn serve(
    State(state): State<AppState>,
    Path(key): Path<String>,
    Query(q): Query<Signature>,
) -> Response {
    let (Some(exp), Some(sig)) = (q.exp, q.sig) else {
        return ApiError::forbidden("this URL is not signed").into_response();
    };
    match state.signer.verify(&key, exp, &sig, now_ms() / 1000) {
        Ok(()) => {}
        Err(SignatureError::Invalid) => {
            return ApiError::forbidden("invalid signature").into_response()
        }
        Err(SignatureError::Expired) => {
            return ApiError::new(ErrorCode::LinkExpired, "this link has expired").into_response()
        }
    }
    match state.blobs.get(&key).await {
        Ok(bytes) => {
            let mime = match key.rsplit('.').next() {
                Some("png") => "image/png",
                Some("jpg") => "image/jpeg",
                Some("webp") => "image/webp",
                _ => "application/octet-stream",
            };
            ([(header::CONTENT_TYPE, mime), (header::CACHE_CONTROL, "private, max-age=300")], bytes)
                .into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}
