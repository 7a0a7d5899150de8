//! Kling Image Expansion, wire-compatible: a Kling client works against Backdrop by
//! changing its base URL and its credentials (an access key / secret key pair, or an API
//! key).
//!
//! This module owns the Kling routes, the Kling JWT check, the translation of a Kling
//! expansion request onto the native [`ExpansionSpec`], the Kling task object (answers,
//! listing and the callback body), the Kling error envelope, and the surface's OpenAPI
//! document ([`Document`], `GET /openapi/kling.json`).
//!
//! # Routes
//! - `POST /v1/images/editing/expand`: create a task.
//! - `GET /v1/images/editing/expand/{id}`: one task, by `task_id` or by the
//!   `external_task_id` given at creation.
//! - `GET /v1/images/editing/expand?pageNum=1&pageSize=30`: the key's Kling tasks, newest
//!   first (`pageNum` 1..=1000, `pageSize` 1..=500, defaults 1 and 30).
//!
//! # Auth
//! Either form of Kling's `Authorization: Bearer <token>`:
//! - a JWT (Kling's access key / secret key form, which third-party clients still use):
//!   HS256, signed with the key's vendor secret key ([`crate::vendor_keys`]); `iss` is
//!   the vendor access key. `exp` is required, `nbf` is checked when present; both are
//!   whole seconds since the epoch (as Kling's sample code makes them) and get
//!   [`CLOCK_LEEWAY_SECS`] of leeway for clock skew. The signature is checked before the
//!   time claims, so an unsigned token learns nothing. Other claims (`aud` included) are
//!   ignored. Decoding and verification are [`jsonwebtoken`]'s.
//! - a plain API key (the form Kling's current documents describe): the Backdrop key
//!   itself, the same one the native API takes, checked the same way. A token without a
//!   `.` is read as a key, since every JWT has two.
//!
//! | failure | HTTP / code |
//! |---|---|
//! | no `Authorization` header, or an empty bearer token | 401 / 1001 |
//! | not a JWT, not HS256, bad signature, no `iss` or no `exp`, `exp` or `nbf` not whole seconds, `exp` more than 24 h ahead | 401 / 1002 |
//! | `nbf` in the future | 401 / 1003 |
//! | `exp` in the past | 401 / 1004 |
//! | `iss` not an access key this server issued, or its key revoked | 401 / 1000 |
//! | an API key that is unknown or revoked | 401 / 1000 |
//!
//! # Envelope and codes
//! Every answer is `{code, message, request_id, data}`; `code` 0 and `message`
//! `SUCCEED` on success. Errors keep the HTTP status and code of Kling's table:
//! 400/1200 for a malformed body (not JSON, a field of the wrong type, a required field
//! missing), 400/1201 for a value out of range (every documented limit below, an unknown
//! `external_task_id` reuse, an image that cannot be read), 404/1203 for a task that does
//! not exist or belongs to another key, 429/1102 when the credits are exhausted,
//! 429/1302 for the submit rate limit, 429/1303 when the key's images in flight (or the
//! queue) are over the limit, 500/5000 for internal errors.
//!
//! # Wire choices
//! - `image`: an `http(s)` URL, or raw base64. A `data:` prefix is refused (400/1201),
//!   as the vendor documents, rather than silently stripped. JPEG and PNG only (WebP is
//!   refused although Backdrop can read it); at most 10 MB; each side at least 300 px;
//!   aspect ratio between 1:2.5 and 2.5:1.
//! - All four `*_expansion_ratio` fields are required (missing: 1200), each in [0, 2],
//!   the new canvas at most 3x the original area; all four 0 is refused (nothing to
//!   expand).
//! - `external_task_id` is unique per key: reusing one is an error (400/1201), never an
//!   idempotent return of the earlier task, because the vendor says it "must be unique"
//!   and a silent return would hide a client bug. It is stored as the task's idempotency
//!   key with a `kling:` prefix, so it never collides with a native `Idempotency-Key`.
//!   Empty strings for `external_task_id`, `callback_url` and `prompt` mean "not given".
//! - Unknown body fields (e.g. `model_name`) are ignored, as the vendor does.
//! - `task_status`: `submitted` (queued), `processing` (running), `succeed`, `failed`
//!   (failed or canceled); `task_status_msg` carries the failure reason.
//! - `task_result.images[].index` is 0-based, as in Kling's answers; `watermark_url` is
//!   there only when `watermark_info.enabled` was true.
//! - Concurrency: a task holds `n` image slots from submit until it ends (the store's
//!   per-key limit of images in flight).
//! - The callback body (POSTed to `callback_url` on every status change) is the task
//!   object as it stood on entering the status, without the envelope; it is signed like
//!   every Backdrop callback (`Backdrop-Signature`, see [`crate::callbacks`]).
//! - Credits: [`backdrop_core::PriceTable::kling`] of `n`, reserved at submit.

use crate::auth::hash_key;
use crate::error::ApiError;
use crate::service::{
    self, announced_images, check_rate, load_image, signed_url, ImageSource, Submission,
};
use crate::vendor_keys::{credentials, key_id, MAX_SIGNATURE_LIFETIME_SECS};
use crate::{now_ms, AppState, CallbackRenderer, Shared};
use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use backdrop_core::ErrorCode;
use backdrop_core::{ExpansionRatios, ExpansionSpec, JobSpec, TaskPayload, TaskState};
use backdrop_imaging::decode::InputFormat;
use backdrop_imaging::DecodeLimits;
use backdrop_store::{ApiKey, SurfaceMeta, Task, TaskFilter};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use utoipa::ToSchema;

/// The surface name stored with Kling tasks (and the callback renderer's name).
pub const SURFACE: &str = "kling";
/// Seconds of clock skew allowed on `exp` and `nbf`.
pub const CLOCK_LEEWAY_SECS: i64 = 5;
/// Largest input file (the vendor's 10 MB).
pub const MAX_IMAGE_BYTES: u64 = 10 * 1024 * 1024;
/// Smallest input side in pixels.
pub const MIN_IMAGE_SIDE: u32 = 300;
/// Largest aspect ratio either way (2.5:1 or 1:2.5).
pub const MAX_ASPECT: f64 = 2.5;
/// Longest `external_task_id` accepted.
const MAX_EXTERNAL_ID_LEN: usize = 200;
/// Prefix of the idempotency key under which an `external_task_id` is stored.
const EXTERNAL_PREFIX: &str = "kling:";

/// The Kling routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/images/editing/expand", get(list).post(create))
        .route("/v1/images/editing/expand/{id}", get(query))
        // Set here, inside the envelope layer, so a wrong method is answered in it too.
        .method_not_allowed_fallback(crate::api::method_not_allowed)
        .layer(axum::middleware::map_response(crate::api::surface_errors::<KlingError>))
}

/// Registers the Kling callback body under [`SURFACE`].
pub fn register_callbacks(renderers: &mut HashMap<String, CallbackRenderer>) {
    renderers.insert(SURFACE.to_string(), Arc::new(callback_body));
}

/// An error in Kling's envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct KlingError {
    /// HTTP status.
    pub status: StatusCode,
    /// Kling's numeric code.
    pub code: u32,
    /// One sentence.
    pub message: String,
    /// Seconds to wait, on 429.
    pub retry_after: Option<u64>,
}

impl KlingError {
    fn new(status: StatusCode, code: u32, message: impl Into<String>) -> Self {
        KlingError { status, code, message: message.into(), retry_after: None }
    }

    fn auth(code: u32, message: impl Into<String>) -> Self {
        KlingError::new(StatusCode::UNAUTHORIZED, code, message)
    }

    fn params(message: impl Into<String>) -> Self {
        KlingError::new(StatusCode::BAD_REQUEST, 1200, message)
    }

    fn value(message: impl Into<String>) -> Self {
        KlingError::new(StatusCode::BAD_REQUEST, 1201, message)
    }

    fn missing(message: impl Into<String>) -> Self {
        KlingError::new(StatusCode::NOT_FOUND, 1203, message)
    }
}

impl From<ApiError> for KlingError {
    fn from(e: ApiError) -> Self {
        let (status, code) = match (e.status(), e.code) {
            (_, ErrorCode::RateLimited) => (StatusCode::TOO_MANY_REQUESTS, 1302),
            (_, ErrorCode::ConcurrencyLimit | ErrorCode::QueueFull) => {
                (StatusCode::TOO_MANY_REQUESTS, 1303)
            }
            (_, ErrorCode::InsufficientCredits) => (StatusCode::TOO_MANY_REQUESTS, 1102),
            (StatusCode::UNAUTHORIZED, _) => (StatusCode::UNAUTHORIZED, 1000),
            (StatusCode::NOT_FOUND | StatusCode::FORBIDDEN, _) => (StatusCode::NOT_FOUND, 1203),
            (s, _) if s.is_server_error() => (StatusCode::INTERNAL_SERVER_ERROR, 5000),
            // Every other refusal of a submit is a value the vendor would call invalid
            // (too large a file included: Kling answers 400, not 413).
            _ => (StatusCode::BAD_REQUEST, 1201),
        };
        KlingError { status, code, message: e.message, retry_after: e.retry_after }
    }
}

impl IntoResponse for KlingError {
    fn into_response(self) -> Response {
        let body = json!({
            "code": self.code,
            "message": self.message,
            "request_id": request_id(),
            "data": Value::Null,
        });
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}

fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn success(data: Value) -> Response {
    axum::Json(json!({"code": 0, "message": "SUCCEED", "request_id": request_id(), "data": data}))
        .into_response()
}

/// The claims of a Kling JWT; [`jsonwebtoken`] checks the time claims as it decodes.
#[derive(Debug, Deserialize)]
struct KlingClaims {
    iss: Option<String>,
    exp: Option<u64>,
    /// Typed so that an `nbf` that is not whole seconds is refused rather than ignored.
    #[allow(dead_code)]
    nbf: Option<u64>,
}

/// The errors every Kling route may answer, for the OpenAPI document.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
enum KlingErrors {
    /// Codes 1000-1004: no token, or a bad or expired one.
    #[response(status = 401)]
    Unauthorized(KlingFailure),
    /// Code 5000.
    #[response(status = 500)]
    Internal(KlingFailure),
}

/// The caller's key, for the routes that read tasks: rejected in Kling's envelope.
struct KlingKey(ApiKey);

impl FromRequestParts<AppState> for KlingKey {
    type Rejection = KlingError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, KlingError> {
        authenticate(state, &parts.headers).await.map(KlingKey)
    }
}

/// Checks the bearer token (a JWT, or a plain API key) and returns the key it
/// authenticates.
async fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<ApiKey, KlingError> {
    let value = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
    // HTTP trims trailing blanks, so `Bearer ` with no token arrives as `Bearer`.
    let value = value.trim();
    let token = match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ if value.eq_ignore_ascii_case("bearer") => "",
        _ => value,
    };
    if token.is_empty() {
        return Err(KlingError::auth(1001, "Authorization is empty"));
    }
    if !token.contains('.') {
        // Not a JWT (those always have dots; Backdrop keys never do): an API key, checked
        // as the native API checks it.
        return match shared.repo.key_by_hash(&hash_key(token)).await {
            Ok(Some(key)) => Ok(key),
            Ok(None) => Err(KlingError::auth(1000, "Authentication failed: unknown API key")),
            Err(e) => Err(ApiError::from(e).into()),
        };
    }
    let header = jsonwebtoken::decode_header(token).map_err(jwt_error)?;
    if header.alg != Algorithm::HS256 {
        return Err(jwt_error(ErrorKind::InvalidAlgorithm.into()));
    }
    // The secret depends on the issuer, so `iss` is read before the signature can be
    // checked; nothing else is trusted until it is.
    let iss = jsonwebtoken::decode::<KlingClaims>(token, &DecodingKey::from_secret(&[]), &{
        let mut unverified = validation(&["iss"]);
        unverified.insecure_disable_signature_validation();
        unverified.validate_exp = false;
        unverified.validate_nbf = false;
        unverified
    })
    .map_err(jwt_error)?
    .claims
    .iss
    .unwrap_or_default();
    let unknown = || KlingError::auth(1000, "Authentication failed: unknown access key");
    let id = key_id(&shared.server_secret, &iss).ok_or_else(unknown)?;
    let key = shared
        .repo
        .key(id)
        .await
        .map_err(|e| KlingError::from(ApiError::from(e)))?
        .filter(|k| k.revoked_at.is_none())
        .ok_or_else(unknown)?;
    let secret = credentials(&shared.server_secret, id).secret_key;
    // The signature (compared in constant time) is checked before the time claims.
    let claims = jsonwebtoken::decode::<KlingClaims>(
        token,
        &DecodingKey::from_secret(secret.as_bytes()),
        &validation(&["iss", "exp"]),
    )
    .map_err(jwt_error)?
    .claims;
    let now = now_ms() / 1000;
    let latest = now + MAX_SIGNATURE_LIFETIME_SECS + CLOCK_LEEWAY_SECS;
    if claims.exp.is_some_and(|exp| exp > u64::try_from(latest).unwrap_or(0)) {
        return Err(KlingError::auth(
            1002,
            "Authorization is invalid: exp may be at most 24 hours ahead",
        ));
    }
    Ok(key)
}

/// HS256 only, `required` claims present, `exp` and (when present) `nbf` checked with
/// [`CLOCK_LEEWAY_SECS`] of leeway; `aud` is not Kling's and is ignored.
fn validation(required: &[&str]) -> Validation {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_required_spec_claims(required);
    validation.leeway = CLOCK_LEEWAY_SECS.unsigned_abs();
    validation.validate_nbf = true;
    validation.validate_aud = false;
    validation
}

/// A refused JWT in Kling's codes: 1003 not yet valid, 1004 expired, else 1002.
fn jwt_error(e: jsonwebtoken::errors::Error) -> KlingError {
    let why = match e.kind() {
        ErrorKind::ImmatureSignature => {
            return KlingError::auth(1003, "Authorization is not yet valid (nbf)")
        }
        ErrorKind::ExpiredSignature => {
            return KlingError::auth(1004, "Authorization has expired (exp)")
        }
        ErrorKind::InvalidToken => "not a JWT".to_string(),
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            "only HS256 is accepted".to_string()
        }
        ErrorKind::InvalidSignature => "signature does not match".to_string(),
        ErrorKind::MissingRequiredClaim(claim) => format!("no {claim} claim"),
        ErrorKind::Base64(_) | ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
            "unreadable JWT".to_string()
        }
        _ => e.to_string(),
    };
    KlingError::auth(1002, format!("Authorization is invalid: {why}"))
}

/// `POST /v1/images/editing/expand`.
#[derive(Debug, Deserialize, ToSchema)]
struct ExpandRequest {
    /// The photo: an `http(s)` URL or raw base64 (no `data:` prefix); JPEG or PNG, at most
    /// 10 MB, each side at least 300 px, aspect ratio between 1:2.5 and 2.5:1.
    #[schema(required = true)]
    image: Option<String>,
    /// New area above, a fraction of the height, 0..=2.
    #[schema(required = true, minimum = 0, maximum = 2)]
    up_expansion_ratio: Option<f64>,
    /// New area below, a fraction of the height, 0..=2.
    #[schema(required = true, minimum = 0, maximum = 2)]
    down_expansion_ratio: Option<f64>,
    /// New area to the left, a fraction of the width, 0..=2.
    #[schema(required = true, minimum = 0, maximum = 2)]
    left_expansion_ratio: Option<f64>,
    /// New area to the right, a fraction of the width, 0..=2.
    #[schema(required = true, minimum = 0, maximum = 2)]
    right_expansion_ratio: Option<f64>,
    /// What the new area should show.
    prompt: Option<String>,
    /// Images (default 1).
    n: Option<u32>,
    /// Also make a watermarked variant.
    watermark_info: Option<WatermarkInfo>,
    /// POSTed the task object on every status change.
    callback_url: Option<String>,
    /// Your id for the task, unique per key; the task can be queried by it.
    external_task_id: Option<String>,
}

/// `watermark_info`.
#[derive(Debug, Deserialize, ToSchema)]
struct WatermarkInfo {
    /// Also make a watermarked variant (`watermark_url`).
    enabled: Option<bool>,
}

/// What an expansion task keeps: the client's own id for it.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct ExpandMeta {
    external_task_id: Option<String>,
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

/// Create an expansion task.
#[utoipa::path(post, path = "/v1/images/editing/expand", operation_id = "create_expansion_task",
    request_body(content = ExpandRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The new task.", body = TaskAnswer),
        (status = 400, description = "Code 1200: a malformed body; 1201: a value out of range, a reused `external_task_id`, an unreadable image.", body = KlingFailure),
        KlingErrors,
        (status = 429, description = "Code 1102: no credits; 1302: the submit rate; 1303: images in flight or the queue.", body = KlingFailure,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
    security(("bearer" = []))
)]
async fn create(State(state): State<AppState>, headers: HeaderMap, request: Request) -> Response {
    match create_task(&state, &headers, request).await {
        Ok(data) => success(data),
        Err(e) => e.into_response(),
    }
}

async fn create_task(
    state: &AppState,
    headers: &HeaderMap,
    request: Request,
) -> Result<Value, KlingError> {
    // The key and the rate come from the headers: a request without a valid key is
    // refused before its body is read.
    let key = authenticate(state, headers).await?;
    check_rate(state, &key.id.to_string())?;
    let body = crate::body::read_bytes(request).await?;
    // Straight into the typed request: no JSON tree of a large body.
    let req: ExpandRequest = crate::api::native::parse_json_body(body).await.map_err(|e| {
        if e.code == ErrorCode::InvalidParameter {
            KlingError::params(format!("invalid parameter: {}", e.message))
        } else {
            KlingError::params(e.message)
        }
    })?;
    let ratio = |value: Option<f64>, name: &str| {
        value.ok_or_else(|| KlingError::params(format!("{name} is required")))
    };
    let ratios = ExpansionRatios {
        up: ratio(req.up_expansion_ratio, "up_expansion_ratio")?,
        down: ratio(req.down_expansion_ratio, "down_expansion_ratio")?,
        left: ratio(req.left_expansion_ratio, "left_expansion_ratio")?,
        right: ratio(req.right_expansion_ratio, "right_expansion_ratio")?,
    };
    let watermark = req.watermark_info.and_then(|w| w.enabled).unwrap_or(false);
    let spec = ExpansionSpec {
        ratios,
        prompt: non_empty(req.prompt),
        n: req.n.unwrap_or(1),
        seed: None,
        watermark,
    };
    let payload = TaskPayload::new(JobSpec::Expansion(spec));
    payload.validate().map_err(|e| KlingError::from(ApiError::from(e)))?;
    let callback_url = non_empty(req.callback_url);
    if let Some(url) = &callback_url {
        service::check_callback_url(url)?;
    }
    let external = non_empty(req.external_task_id);
    let idempotency_key = match &external {
        Some(id) if id.len() > MAX_EXTERNAL_ID_LEN => {
            return Err(KlingError::value(format!(
                "external_task_id is longer than {MAX_EXTERNAL_ID_LEN} characters"
            )))
        }
        Some(id) => {
            let stored = format!("{EXTERNAL_PREFIX}{id}");
            if state
                .repo
                .task_by_idempotency_key(key.id, &stored)
                .await
                .map_err(ApiError::from)?
                .is_some()
            {
                return Err(duplicate(id));
            }
            Some(stored)
        }
        None => None,
    };
    let image = non_empty(req.image).ok_or_else(|| KlingError::params("image is required"))?;
    let image = image.trim().to_string();
    let source = if image.starts_with("http://") || image.starts_with("https://") {
        ImageSource::Url(image)
    } else if image.starts_with("data:") {
        return Err(KlingError::value("image: send the raw base64 string without a data: prefix"));
    } else {
        ImageSource::Base64(image)
    };
    let input = load_image(state, source, "image").await?;
    check_image(&input)?;
    let credits = state.config.prices.kling(payload.job.n());
    let created = service::submit(
        state,
        Submission {
            idempotency_key,
            surface_meta: SurfaceMeta::new(&ExpandMeta { external_task_id: external.clone() }),
            callback_url,
            limits: DecodeLimits {
                max_file_bytes: MAX_IMAGE_BYTES,
                min_width: MIN_IMAGE_SIDE,
                min_height: MIN_IMAGE_SIDE,
                ..DecodeLimits::default()
            },
            ..Submission::new(SURFACE, key, payload, input, credits)
        },
    )
    .await?;
    if !created.created {
        // Two submits with the same external_task_id raced; the other one won.
        return Err(duplicate(external.as_deref().unwrap_or_default()));
    }
    Ok(task_object(state, &created.task, created.task.state))
}

fn duplicate(id: &str) -> KlingError {
    KlingError::value(format!(
        "external_task_id '{id}' is already used by another task of this key"
    ))
}

/// The vendor's input rules that the native decode limits do not express: the format
/// list, the size, the short side and the aspect ratio, read from the header only.
fn check_image(bytes: &[u8]) -> Result<(), KlingError> {
    if bytes.len() as u64 > MAX_IMAGE_BYTES {
        return Err(KlingError::value(format!(
            "image is {} bytes; the limit is 10MB ({MAX_IMAGE_BYTES} bytes)",
            bytes.len()
        )));
    }
    match InputFormat::sniff(bytes) {
        Some(InputFormat::Png | InputFormat::Jpeg) => {}
        _ => return Err(KlingError::value("image format must be .jpg / .jpeg / .png")),
    }
    let (w, h) = crate::service::image_dimensions(bytes)
        .ok_or_else(|| KlingError::value("image cannot be read"))?;
    if w < MIN_IMAGE_SIDE || h < MIN_IMAGE_SIDE {
        return Err(KlingError::value(format!(
            "image is {w}x{h}; width and height must be at least {MIN_IMAGE_SIDE}px"
        )));
    }
    let aspect = f64::from(w.max(h)) / f64::from(w.min(h));
    if aspect > MAX_ASPECT + 1e-9 {
        return Err(KlingError::value(format!(
            "image is {w}x{h}; the aspect ratio must be between 1:2.5 and 2.5:1"
        )));
    }
    Ok(())
}

/// Kling's name of a state.
pub fn status_name(state: TaskState) -> &'static str {
    match state {
        TaskState::Queued => "submitted",
        TaskState::Running => "processing",
        TaskState::Succeeded => "succeed",
        TaskState::Failed | TaskState::Canceled => "failed",
    }
}

/// The task's `external_task_id`; `""` when none was given, as Kling's own answers
/// have it (clients that read it as a string would fail on `null`).
fn external_id(task: &Task) -> Value {
    Value::String(task.surface_meta.read::<ExpandMeta>().external_task_id.unwrap_or_default())
}

/// The Kling task object of `task` as it stood on entering `entered`.
fn task_object(state: &Shared, task: &Task, entered: TaskState) -> Value {
    let images: Vec<Value> = announced_images(task, entered)
        .iter()
        .map(|img| {
            let mut item = json!({
                "index": img.index.saturating_sub(1),
                "url": signed_url(state, task, &img.blob),
            });
            if let Some(url) =
                img.watermarked_blob.as_deref().and_then(|b| signed_url(state, task, b))
            {
                item["watermark_url"] = Value::String(url);
            }
            item
        })
        .collect();
    let message = match entered {
        TaskState::Failed => task.error_message.clone().unwrap_or_else(|| "failed".into()),
        TaskState::Canceled => "canceled".into(),
        _ => String::new(),
    };
    json!({
        "task_id": task.uid,
        "task_status": status_name(entered),
        "task_status_msg": message,
        "task_info": {"external_task_id": external_id(task)},
        "task_result": {"images": images},
        "created_at": task.created_at,
        "updated_at": task.updated_at,
    })
}

/// The Kling callback body: the task object, without the envelope.
pub fn callback_body(state: &Shared, task: &Task, entered: TaskState) -> String {
    task_object(state, task, entered).to_string()
}

/// One task, by `task_id` or by the `external_task_id` given at creation.
#[utoipa::path(get, path = "/v1/images/editing/expand/{id}", operation_id = "get_expansion_task",
    params(("id" = String, Path, description = "`task_id`, or the `external_task_id`.")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The task.", body = TaskAnswer),
        (status = 404, description = "Code 1203: no such task for this key.", body = KlingFailure),
        KlingErrors,
    )
)]
async fn query(
    State(state): State<AppState>,
    Path(id): Path<String>,
    KlingKey(key): KlingKey,
) -> Result<Response, KlingError> {
    let found = async {
        let by_uid = state.repo.task(&id).await.map_err(ApiError::from)?;
        let task = match by_uid.filter(|t| t.key_id == key.id && t.surface == SURFACE) {
            Some(task) => Some(task),
            None => state
                .repo
                .task_by_idempotency_key(key.id, &format!("{EXTERNAL_PREFIX}{id}"))
                .await
                .map_err(ApiError::from)?,
        };
        let task = task.ok_or_else(|| KlingError::missing(format!("no task '{id}'")))?;
        Ok::<_, KlingError>(task_object(&state, &task, task.state))
    };
    found.await.map(success)
}

/// The key's Kling tasks, newest first.
#[utoipa::path(get, path = "/v1/images/editing/expand", operation_id = "list_expansion_tasks",
    params(
        ("pageNum" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Page, 1..=1000 (default 1)."),
        ("pageSize" = Option<u32>, Query, minimum = 1, maximum = 500, description = "Tasks per page, 1..=500 (default 30)."),
    ),
    responses(
        (status = 200, description = "A page of tasks.", body = ListAnswer),
        (status = 400, description = "Code 1201: `pageNum` or `pageSize` out of range.", body = KlingFailure),
        KlingErrors,
    ),
    security(("bearer" = []))
)]
async fn list(
    State(state): State<AppState>,
    KlingKey(key): KlingKey,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, KlingError> {
    let page = async {
        let number = |name: &str, default: u32, max: u32| -> Result<u32, KlingError> {
            match q.get(name) {
                None => Ok(default),
                Some(text) => {
                    text.trim().parse::<u32>().ok().filter(|v| (1..=max).contains(v)).ok_or_else(
                        || KlingError::value(format!("{name} must be an integer in [1, {max}]")),
                    )
                }
            }
        };
        let page_num = number("pageNum", 1, 1000)?;
        let page_size = number("pageSize", 30, 500)?;
        let filter = TaskFilter {
            surface: Some(SURFACE.to_string()),
            limit: page_size,
            offset: (page_num - 1) * page_size,
            ..TaskFilter::default()
        };
        let tasks = state.repo.list_tasks(key.id, &filter).await.map_err(ApiError::from)?;
        Ok::<_, KlingError>(Value::Array(
            tasks.iter().map(|t| task_object(&state, t, t.state)).collect(),
        ))
    };
    page.await.map(success)
}

/// The surface's OpenAPI document (`GET /openapi/kling.json`). The handlers answer JSON
/// built by hand; the types below describe it for the document, and the suite checks real
/// answers against it.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Backdrop: Kling Image Expansion",
        description = "Kling's image expansion API, wire-compatible. Authenticate with \
            `Authorization: Bearer TOKEN`: an HS256 JWT signed with the key's vendor secret key \
            (`iss` the vendor access key, `exp` required), or a plain Backdrop API key. Every \
            answer is `{code, message, request_id, data}`: `code` 0 and `message` `SUCCEED` on \
            success, Kling's HTTP status and code on failure. A task with `callback_url` gets the \
            task object POSTed on every status change, signed with `Backdrop-Signature`."
    ),
    paths(create, list, query),
    components(schemas(
        ExpandRequest,
        WatermarkInfo,
        TaskAnswer,
        ListAnswer,
        KlingTask,
        KlingStatus,
        TaskInfo,
        TaskResult,
        KlingImage,
        KlingFailure
    )),
    modifiers(&Security)
)]
pub struct Document;

/// The bearer token.
struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        crate::api::openapi::add_security_scheme(
            openapi,
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An HS256 JWT (`iss`: the vendor access key, `exp` at most 24 h ahead, \
                         optional `nbf`) signed with the vendor secret key, or a plain API key.",
                    ))
                    .build(),
            ),
        );
    }
}

/// One task answered.
#[derive(ToSchema)]
pub struct TaskAnswer {
    /// 0.
    pub code: u32,
    /// `SUCCEED`.
    pub message: String,
    /// A fresh id of this answer.
    pub request_id: String,
    /// The task.
    pub data: KlingTask,
}

/// A page of tasks answered.
#[derive(ToSchema)]
pub struct ListAnswer {
    /// 0.
    pub code: u32,
    /// `SUCCEED`.
    pub message: String,
    /// A fresh id of this answer.
    pub request_id: String,
    /// The tasks, newest first.
    pub data: Vec<KlingTask>,
}

/// The Kling task object (also the callback body).
#[derive(ToSchema)]
pub struct KlingTask {
    /// Task id.
    pub task_id: String,
    /// The status.
    pub task_status: KlingStatus,
    /// Why it failed; empty otherwise.
    pub task_status_msg: String,
    /// What was given at creation.
    pub task_info: TaskInfo,
    /// The results.
    pub task_result: TaskResult,
    /// Submitted at (ms).
    pub created_at: i64,
    /// Last changed at (ms).
    pub updated_at: i64,
}

/// `task_status`.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum KlingStatus {
    /// Queued.
    Submitted,
    /// Running.
    Processing,
    /// Succeeded.
    Succeed,
    /// Failed or canceled.
    Failed,
}

/// `task_info`.
#[derive(ToSchema)]
pub struct TaskInfo {
    /// The `external_task_id` given; `""` without one.
    pub external_task_id: String,
}

/// `task_result`.
#[derive(ToSchema)]
pub struct TaskResult {
    /// The images, once succeeded.
    pub images: Vec<KlingImage>,
}

/// One result image.
#[derive(ToSchema)]
pub struct KlingImage {
    /// 0-based.
    pub index: u32,
    /// Signed URL of the image.
    pub url: Option<String>,
    /// Signed URL of the watermarked variant, when `watermark_info.enabled` was true.
    pub watermark_url: Option<String>,
}

/// A failure: Kling's code, `data: null`.
#[derive(ToSchema)]
pub struct KlingFailure {
    /// Kling's code (see the module doc).
    pub code: u32,
    /// One sentence.
    pub message: String,
    /// A fresh id of this answer.
    pub request_id: String,
    /// null.
    #[schema(schema_with = crate::api::openapi::null_schema)]
    pub data: (),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_have_kling_names() {
        assert_eq!(status_name(TaskState::Queued), "submitted");
        assert_eq!(status_name(TaskState::Running), "processing");
        assert_eq!(status_name(TaskState::Succeeded), "succeed");
        assert_eq!(status_name(TaskState::Canceled), "failed");
    }

    #[test]
    fn the_documented_statuses_are_the_ones_sent() {
        let schema =
            serde_json::to_value(<KlingStatus as utoipa::PartialSchema>::schema()).expect("json");
        let mut sent: Vec<&str> = [
            TaskState::Queued,
            TaskState::Running,
            TaskState::Succeeded,
            TaskState::Failed,
            TaskState::Canceled,
        ]
        .map(status_name)
        .to_vec();
        sent.dedup();
        assert_eq!(schema["enum"], json!(sent));
    }

    #[test]
    fn api_errors_map_to_kling_codes() {
        let code = |e: ApiError| KlingError::from(e).code;
        assert_eq!(code(ApiError::too_many(ErrorCode::RateLimited, "x", 1)), 1302);
        assert_eq!(code(ApiError::too_many(ErrorCode::ConcurrencyLimit, "x", 1)), 1303);
        assert_eq!(code(ApiError::new(ErrorCode::InsufficientCredits, "x")), 1102);
        assert_eq!(code(ApiError::too_large("x")), 1201);
        assert_eq!(code(ApiError::new(ErrorCode::TaskTooLarge, "x")), 1201);
        assert_eq!(code(ApiError::not_found("x")), 1203);
        assert_eq!(code(ApiError::internal("x")), 5000);
    }
}
