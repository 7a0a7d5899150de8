//! The playground: a page at `/` for trying both jobs in a browser.
//!
//! The page is a client of the public native API and nothing else: it sends the API key
//! the user types (kept in the browser's local storage) as `Authorization: Bearer` on
//! every call, follows `GET /v1/tasks/{id}/events` with a streaming `fetch` (an
//! `EventSource` cannot send that header), and shows results from their signed URLs.
//! Whatever it can do, a script can.
//!
//! Its files (plain HTML, CSS and JavaScript, no build step) are compiled into the binary,
//! so the page works offline and needs nothing beside the server. The HTML is never
//! cached without revalidation and names the scripts and styles with a content hash
//! (`?v=HASH`), so those are cached for a year and a new binary is picked up at once.
//! Every answer carries a strict Content-Security-Policy: same-origin scripts, styles
//! and API calls only; images also from the result URLs, which may live on another
//! origin (a public URL or an object store).

use axum::extract::{Path, Query};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

use crate::error::ApiError;
use crate::AppState;

/// The page; `{{version}}` is replaced by [`version`].
const INDEX_HTML: &str = include_str!("playground/index.html");

/// The files the page loads, by name: content type and bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("playground.css", "text/css; charset=utf-8", include_bytes!("playground/playground.css")),
    ("playground.js", "text/javascript; charset=utf-8", include_bytes!("playground/playground.js")),
    ("icon.svg", "image/svg+xml", include_bytes!("playground/icon.svg")),
];

/// What the page may load. `img-src` admits any http(s) origin because signed result
/// URLs carry the public URL or an object store's host; `blob:` shows the user's own
/// file before it is sent.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' blob: data: http: https:; connect-src 'self'; \
    manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The playground's routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/", get(page)).route("/playground/{file}", get(asset))
}

/// A short hash of every asset: changes whenever any of them does.
pub fn version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        let mut hash = Sha256::new();
        for (name, _, bytes) in ASSETS {
            hash.update(name.as_bytes());
            hash.update(bytes);
        }
        hex::encode(&hash.finalize()[..6])
    })
}

fn rendered_page() -> &'static str {
    static PAGE: OnceLock<String> = OnceLock::new();
    PAGE.get_or_init(|| INDEX_HTML.replace("{{version}}", version()))
}

/// Headers every playground answer carries.
fn security_headers(headers: &mut HeaderMap) {
    headers
        .insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Result URLs are credentials; never leak them in a Referer.
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
}

/// Answers 304 when the client's `If-None-Match` names `etag`, else the body.
fn respond(
    request: &HeaderMap,
    etag: String,
    content_type: &'static str,
    cache: &'static str,
    body: Vec<u8>,
) -> Response {
    let etag = format!("\"{etag}\"");
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag));
    let mut response =
        if fresh { StatusCode::NOT_MODIFIED.into_response() } else { body.into_response() };
    let headers = response.headers_mut();
    if !fresh {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    security_headers(headers);
    response
}

/// The playground page.
#[utoipa::path(get, path = "/", operation_id = "playground_page",
    responses(
        (status = 200, description = "The page.", content_type = "text/html; charset=utf-8", body = String),
        (status = 304, description = "The page has not changed (`If-None-Match`)."),
    ),
    tag = "playground"
)]
async fn page(request: HeaderMap) -> Response {
    respond(
        &request,
        version().to_string(),
        "text/html; charset=utf-8",
        "no-cache",
        rendered_page().as_bytes().to_vec(),
    )
}

/// The asset query: the version the page asked for.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct AssetQuery {
    /// The version the page names; with the current one the answer may be kept for good.
    v: Option<String>,
}

/// A script, style or icon of the page.
#[utoipa::path(get, path = "/playground/{file}", operation_id = "playground_asset",
    params(("file" = String, Path, description = "`playground.css`, `playground.js` or `icon.svg`."), AssetQuery),
    responses(
        (status = 200, description = "The file.", content(
            (String = "text/css; charset=utf-8"),
            (String = "text/javascript; charset=utf-8"),
            (String = "image/svg+xml"),
        )),
        (status = 304, description = "The file has not changed (`If-None-Match`)."),
        (status = 404, description = "No such file.", body = crate::api::native::ErrorBody),
    ),
    tag = "playground"
)]
async fn asset(
    request: HeaderMap,
    Path(file): Path<String>,
    Query(query): Query<AssetQuery>,
) -> Response {
    let Some((_, content_type, bytes)) = ASSETS.iter().find(|(name, _, _)| *name == file) else {
        return ApiError::not_found(format!("no playground file '{file}'")).into_response();
    };
    // Only a URL naming the current version may be kept for good; any other answer
    // must be revalidated, or an old page could pin a stale script.
    let cache = if query.v.as_deref() == Some(version()) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    respond(&request, version().to_string(), content_type, cache, bytes.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_every_script_and_style_with_the_version() {
        let page = rendered_page();
        assert!(!page.contains("{{version}}"));
        for name in ["playground.css", "playground.js", "icon.svg"] {
            assert!(
                page.contains(&format!("playground/{name}?v={}", version())),
                "{name} is not linked with the version"
            );
        }
        // No inline script or style: the policy would block them.
        assert!(
            !page.contains("<script>") && !page.contains("<style") && !page.contains(" style=")
        );
    }
}
