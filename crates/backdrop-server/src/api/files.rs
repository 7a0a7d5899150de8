//! Serving result files at signed, expiring URLs: `GET /files/KEY?exp=..&sig=..`.
//!
//! No API key is needed (the URL is the credential); a bad signature answers 403, an
//! expired one 410, and neither ever returns the file.

use crate::error::ApiError;
use crate::{now_ms, AppState};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use backdrop_store::blob::SignatureError;
use serde::Deserialize;

/// The signature query.
#[derive(Debug, Deserialize)]
pub struct Signature {
    exp: Option<i64>,
    sig: Option<String>,
}

/// `GET /files/{*key}`.
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
            return ApiError::new(StatusCode::GONE, "link_expired", "this link has expired")
                .into_response()
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
