//! The Cutout.pro "Background Diffusion" surface: `POST /api/v1/paintAsync` and
//! `GET /api/v1/getPaintResult?taskId=`, translated onto the native task model.
//!
//! This module owns the Cutout.pro wire format: its authentication (header or signed
//! query), its `{code, data, msg, time}` envelope, its error codes and its task view, and
//! the surface's OpenAPI document ([`Document`], `GET /openapi/cutout.json`). Queueing,
//! validation of the image, storage and credits are the service's.
//!
//! # Wire choices
//!
//! - **Auth.** Header `APIKEY: <native key>`. Without the header, the signed form of the
//!   official SDK: query `uid`, `signExpireTime` (unix seconds) and
//!   `sign = sha256_hex(uid + secret_key + signExpireTime)` where `secret_key` is the
//!   key's vendor secret key (the server stores only a hash of the plaintext key, so it
//!   cannot verify a signature made with it). `uid` is the key's numeric id (the official
//!   Java SDK's `uid` is a `Long`; `backdrop keys show ID` prints it, and
//!   `mySubscription` answers it as `userId`) or the key's vendor access key (see
//!   [`crate::vendor_keys`]); `sign` covers the `uid` exactly as sent. A signature whose
//!   `signExpireTime` is in the past, or more than 24 hours ahead, is refused; signatures
//!   are compared in constant time. The header wins when both are sent.
//! - **Balance.** `mySubscription` answers the fields the official SDK reads, mapped from
//!   the key's single balance, which never lapses and is what the vendor calls
//!   pay-as-you-go credits: `imageBalance` = the balance; `monthBalance` 0 and
//!   `monthStartDate` / `monthExpireDate` `null` (Backdrop has no monthly plan);
//!   `videoBalance` 0 (no video service). Also `userId` (the numeric `uid`) and
//!   `apiCredits` (the balance). An unmetered key's `imageBalance` and `apiCredits` are
//!   `null`.
//! - **Submit body.** JSON `imgUrl`, `imgBase64` (a `data:` prefix is accepted) and
//!   `text`. When both images are given `imgBase64` is used (no download needed); the
//!   vendor only says "at least one". Unknown fields are ignored, as the vendor does.
//!   Without `text` the default scene template is used, since `text` is optional.
//! - **Ids.** `data` of the submit answer is the task's numeric id. A result item's `id`
//!   is `task id * 100 + image index` and its `batchId` is the task id.
//! - **Status.** Queued tasks are `3` (waiting) with `waitNumber` = tasks ahead + 1, so
//!   it is above 0 exactly while the task waits; running `0` with `percentage`;
//!   succeeded `1`; failed or canceled `2`. `width`/`height` are the input's size until
//!   the result exists (the output keeps the input's size).
//! - **Input URL.** `url` is a signed URL of the stored input that expires after
//!   [`INPUT_URL_SECS`] seconds; the vendor says it is for logging and short-lived.
//! - **Credits.** By output resolution ([`backdrop_core::PriceTable::cutout`]); the
//!   output keeps the input's size, so the price is known at submit.
//! - **Errors.** The HTTP status is the failure's class (400, 401, 402, 404, 413, 429,
//!   500), and the body is the envelope with a non-zero `code`, `data: null` and `msg`:
//!
//! | code | HTTP | meaning |
//! | --- | --- | --- |
//! | 1001 | 401 | no credentials, or an unknown or revoked key |
//! | 1002 | 401 | signed form: wrong `sign`, unknown `uid`, missing parameter, or `signExpireTime` more than 24 h ahead |
//! | 1003 | 401 | signed form: `signExpireTime` has passed |
//! | 1004 | 429 | more submits per second than the key may make (`Retry-After`) |
//! | 1005 | 402 | not enough credits |
//! | 1006 | 429 | the queue is full or the key has too many images in flight |
//! | 2001 | 400 | malformed body, missing image or missing / non-numeric `taskId` |
//! | 2002 | 400 | `text` or another job parameter is out of range |
//! | 2003 | 400 | `imgUrl` could not be downloaded |
//! | 2004 | 400 | `imgBase64` is not valid base64 |
//! | 2005 | 400 | not a readable PNG, JPEG or WebP image |
//! | 2006 | 400 | the image has no transparent area to fill (or nothing opaque) |
//! | 2007 | 413 | the image or body is too large, or the task over the server's per-task memory limit (`task_too_large`) |
//! | 2008 | 400 | the image is too small |
//! | 3001 | 404 | no such task for this key |
//! | 5000 | 500 | internal error |

use crate::auth::authenticate;
use crate::error::ApiError;
use crate::service::{
    check_rate, load_image, percent, signed_url, submit, ImageSource, Submission,
};
use crate::vendor_keys::{constant_time_eq, credentials, key_id, MAX_SIGNATURE_LIFETIME_SECS};
use crate::{now_ms, AppState, Shared};
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use backdrop_core::scene::DEFAULT_SCENE;
use backdrop_core::ErrorCode;
use backdrop_core::{BackgroundSpec, CutoutMode, JobSpec, TaskPayload, TaskState};
use backdrop_store::{ApiKey, SurfaceMeta, Task};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use utoipa::ToSchema;

/// Surface name stored on tasks.
pub const SURFACE: &str = "cutout";

/// Lifetime of the signed URL of the input image, seconds.
pub const INPUT_URL_SECS: i64 = 600;

/// The surface's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/paintAsync", post(paint_async))
        .route("/api/v1/getPaintResult", get(get_paint_result))
        .route("/api/v1/mySubscription", get(my_subscription))
        // Set here, inside the envelope layer, so a wrong method is answered in it too.
        .method_not_allowed_fallback(crate::api::method_not_allowed)
        .layer(axum::middleware::map_response(crate::api::surface_errors::<CutoutError>))
}

/// An error in the Cutout.pro envelope.
#[derive(Debug)]
pub struct CutoutError {
    /// HTTP status.
    pub status: StatusCode,
    /// Envelope `code` (non-zero).
    pub code: i64,
    /// Envelope `msg`.
    pub msg: String,
    /// `Retry-After` seconds, for 429.
    pub retry_after: Option<u64>,
}

impl CutoutError {
    fn new(status: StatusCode, code: i64, msg: impl Into<String>) -> Self {
        CutoutError { status, code, msg: msg.into(), retry_after: None }
    }
}

/// The Cutout.pro code of a native error code, and the HTTP status to send it with.
fn map_code(code: ErrorCode) -> (StatusCode, i64) {
    match code {
        ErrorCode::Unauthorized => (StatusCode::UNAUTHORIZED, 1001),
        ErrorCode::RateLimited => (StatusCode::TOO_MANY_REQUESTS, 1004),
        ErrorCode::InsufficientCredits => (StatusCode::PAYMENT_REQUIRED, 1005),
        ErrorCode::QueueFull | ErrorCode::ConcurrencyLimit => (StatusCode::TOO_MANY_REQUESTS, 1006),
        ErrorCode::ImageRequired
        | ErrorCode::InvalidJson
        | ErrorCode::InvalidBody
        | ErrorCode::InvalidParameter
        | ErrorCode::UnsupportedMediaType => (StatusCode::BAD_REQUEST, 2001),
        ErrorCode::InvalidUrl | ErrorCode::UrlRefused | ErrorCode::DownloadFailed | ErrorCode::TooManyRedirects
        | ErrorCode::DownloadTimeout | ErrorCode::NotAnImage => (StatusCode::BAD_REQUEST, 2003),
        ErrorCode::InvalidBase64 => (StatusCode::BAD_REQUEST, 2004),
        ErrorCode::InputUnreadable | ErrorCode::UnsupportedFormat | ErrorCode::CorruptImage => {
            (StatusCode::BAD_REQUEST, 2005)
        }
        ErrorCode::NoAlphaChannel | ErrorCode::FullyOpaque | ErrorCode::FullyTransparent => {
            (StatusCode::BAD_REQUEST, 2006)
        }
        ErrorCode::FileTooLarge
        | ErrorCode::DimensionsTooLarge
        | ErrorCode::TooManyPixels
        | ErrorCode::BodyTooLarge
        | ErrorCode::DownloadTooLarge
        // The output keeps the input's size: only a larger image makes a larger task.
        | ErrorCode::TaskTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, 2007),
        ErrorCode::DimensionsTooSmall => (StatusCode::BAD_REQUEST, 2008),
        ErrorCode::NotFound | ErrorCode::Forbidden => (StatusCode::NOT_FOUND, 3001),
        ErrorCode::Internal => (StatusCode::INTERNAL_SERVER_ERROR, 5000),
        _ if code.http_status() >= 500 => (StatusCode::INTERNAL_SERVER_ERROR, 5000),
        // Every other native code is a job parameter the core refused.
        _ => (StatusCode::BAD_REQUEST, 2002),
    }
}

impl From<ApiError> for CutoutError {
    fn from(e: ApiError) -> Self {
        let (status, code) = map_code(e.code);
        CutoutError { status, code, msg: e.message, retry_after: e.retry_after }
    }
}

impl IntoResponse for CutoutError {
    fn into_response(self) -> Response {
        let body = json!({"code": self.code, "data": null, "msg": self.msg, "time": now_ms()});
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}

fn ok(data: Value) -> Response {
    axum::Json(json!({"code": 0, "data": data, "msg": null, "time": now_ms()})).into_response()
}

/// `sha256_hex(uid + secret_key + signExpireTime)`: the signature of the signed form.
pub fn sign(uid: &str, secret_key: &str, expire_time: &str) -> String {
    hex::encode(Sha256::digest(format!("{uid}{secret_key}{expire_time}").as_bytes()))
}

/// The key id a signed form's `uid` names: the key's numeric id (what the official SDK
/// sends, a `Long`), or its vendor access key. Either way the signature must be made
/// with the key's secret key, so a guessed id gains nothing.
fn uid_key_id(server_secret: &[u8], uid: &str) -> Option<i64> {
    if !uid.is_empty() && uid.bytes().all(|b| b.is_ascii_digit()) {
        return uid.parse().ok().filter(|id| *id > 0);
    }
    key_id(server_secret, uid)
}

/// The key a request carries: header `APIKEY`, else the signed query form.
async fn cutout_key(
    shared: &Shared,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
) -> Result<ApiKey, CutoutError> {
    if let Some(plain) = headers.get("apikey").and_then(|v| v.to_str().ok()) {
        // The native check, fed the header under the name it reads.
        let mut native = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(plain.trim()) {
            native.insert("x-api-key", value);
        }
        return Ok(authenticate(shared.repo.as_ref(), &native).await?);
    }
    let bad_sign = |msg: &str| CutoutError::new(StatusCode::UNAUTHORIZED, 1002, msg);
    let (uid, expire, given) = match (query.get("uid"), query.get("signExpireTime"), query.get("sign"))
    {
        (None, None, None) => {
            return Err(CutoutError::new(
                StatusCode::UNAUTHORIZED,
                1001,
                "send the API key in the APIKEY header, or sign the request (uid, signExpireTime, sign)",
            ))
        }
        (Some(uid), Some(expire), Some(sign)) => (uid, expire, sign),
        _ => return Err(bad_sign("the signed form needs uid, signExpireTime and sign")),
    };
    let expire_secs: i64 =
        expire.trim().parse().map_err(|_| bad_sign("signExpireTime must be unix seconds"))?;
    let id = uid_key_id(&shared.server_secret, uid).ok_or_else(|| bad_sign("unknown uid"))?;
    let secret = credentials(&shared.server_secret, id).secret_key;
    let expected = sign(uid, &secret, expire);
    if !constant_time_eq(expected.as_bytes(), given.trim().to_ascii_lowercase().as_bytes()) {
        return Err(bad_sign("the sign does not match"));
    }
    let now = now_ms() / 1000;
    if expire_secs < now {
        return Err(CutoutError::new(StatusCode::UNAUTHORIZED, 1003, "the signature has expired"));
    }
    if expire_secs > now + MAX_SIGNATURE_LIFETIME_SECS {
        return Err(bad_sign("signExpireTime may be at most 24 hours ahead"));
    }
    match shared.repo.key(id).await.map_err(ApiError::from)? {
        Some(key) if key.revoked_at.is_none() => Ok(key),
        _ => Err(CutoutError::new(StatusCode::UNAUTHORIZED, 1001, "the API key is revoked")),
    }
}

/// The `paintAsync` body. Parsed straight into these fields (unknown ones skipped without
/// being built), so a large body costs its bytes and no more.
#[derive(Deserialize, ToSchema)]
struct PaintBody {
    /// URL of the cut-out (a PNG or WebP with transparency).
    #[serde(rename = "imgUrl", default)]
    img_url: Option<String>,
    /// The cut-out as base64 (a `data:` prefix is accepted); used when both are given.
    #[serde(rename = "imgBase64", default)]
    img_base64: Option<String>,
    /// What the background should show; without it the default scene template is used.
    #[serde(default)]
    text: Option<String>,
}

/// A text field: absent, null and blank all mean "not given".
fn text_field(value: Option<String>) -> Option<String> {
    value.filter(|s| !s.trim().is_empty())
}

/// Create a background task from a cut-out.
#[utoipa::path(post, path = "/api/v1/paintAsync", operation_id = "paintAsync",
    request_body(content = PaintBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The task is queued; `data` is its id.", body = PaintAccepted),
        (status = 400, description = "Codes 2001-2006 and 2008: the body, the image or a parameter is refused.", body = CutoutFailure),
        (status = 401, description = "Codes 1001-1003: no credentials, or bad ones.", body = CutoutFailure),
        (status = 402, description = "Code 1005: not enough credits.", body = CutoutFailure),
        (status = 413, description = "Code 2007: the image or the body is too large.", body = CutoutFailure),
        (status = 429, description = "Codes 1004 and 1006: the submit rate, or the queue.", body = CutoutFailure,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
        (status = 500, description = "Code 5000.", body = CutoutFailure),
    ),
    security(("APIKEY" = []), ("uid" = [], "signExpireTime" = [], "sign" = []))
)]
async fn paint_async(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
) -> Result<Response, CutoutError> {
    // The key and the rate come from the headers and the query: a request without a
    // valid key is refused before its body is read.
    let key = cutout_key(&state, &headers, &query).await?;
    check_rate(&state, &key.id.to_string())?;
    let body = crate::body::read_bytes(request).await?;
    let body: PaintBody = crate::api::native::parse_json_body(body)
        .await
        .map_err(|e| CutoutError::new(StatusCode::BAD_REQUEST, 2001, e.message))?;
    let img_url = text_field(body.img_url);
    let img_base64 = text_field(body.img_base64);
    let text = text_field(body.text);
    let source = match (img_base64, img_url) {
        (Some(b64), _) => ImageSource::Base64(b64),
        (None, Some(url)) => ImageSource::Url(url),
        (None, None) => {
            return Err(CutoutError::new(
                StatusCode::BAD_REQUEST,
                2001,
                "at least one of imgUrl and imgBase64 must have a value",
            ))
        }
    };
    let spec = BackgroundSpec {
        scene: text.is_none().then(|| DEFAULT_SCENE.to_string()),
        prompt: text.clone(),
        n: 1,
        // The surface documents transparent PNG input; photos stay refused.
        cutout: CutoutMode::Never,
        ..BackgroundSpec::default()
    };
    let payload = TaskPayload::new(JobSpec::Background(spec));
    // Refuse a bad prompt before downloading anything.
    payload.validate().map_err(ApiError::from)?;
    let input = load_image(&state, source, "image").await?;
    let (width, height) = crate::service::image_dimensions(&input).unwrap_or((0, 0));
    let credits = state.config.prices.cutout(width, height, 1);
    let created = submit(
        &state,
        Submission {
            surface_meta: SurfaceMeta::new(&PaintMeta { text, width, height }),
            ..Submission::new(SURFACE, key, payload, input, credits)
        },
    )
    .await?;
    Ok(ok(json!(created.task.id)))
}

/// What a `paintAsync` task keeps for its result: the prompt it echoes and the input's
/// size, reported before the result exists.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct PaintMeta {
    text: Option<String>,
    width: u32,
    height: u32,
}

fn status_of(task: &Task) -> i64 {
    match task.state {
        TaskState::Queued => 3,
        TaskState::Running => 0,
        TaskState::Succeeded => 1,
        TaskState::Failed | TaskState::Canceled => 2,
    }
}

async fn paint_view(shared: &Shared, task: &Task) -> Result<Value, ApiError> {
    let wait_number = if task.state == TaskState::Queued {
        shared.repo.queue_position(&task.uid).await?.map_or(1, |p| p + 1)
    } else {
        0
    };
    let meta: PaintMeta = task.surface_meta.read();
    let (width, height) = match &task.result {
        Some(r) => (r.width, r.height),
        None => (meta.width, meta.height),
    };
    let status = status_of(task);
    let items: Vec<Value> = (1..=task.n())
        .map(|index| {
            let image = task
                .result
                .as_ref()
                .filter(|_| task.state == TaskState::Succeeded)
                .and_then(|r| r.images.iter().find(|i| i.index == index));
            json!({
                "id": task.id * 100 + i64::from(index),
                "batchId": task.id,
                "status": status,
                "result": image.and_then(|i| signed_url(shared, task, &i.blob)),
                "preview": image
                    .and_then(|i| i.preview_blob.as_deref())
                    .and_then(|b| signed_url(shared, task, b)),
                "width": width,
                "height": height,
                "waitNumber": wait_number,
                "percentage": percent(task),
            })
        })
        .collect();
    let input_url = format!(
        "{}/files/{}?{}",
        shared.public_url(),
        task.input_blob,
        shared.signer.sign(&task.input_blob, now_ms() / 1000 + INPUT_URL_SECS)
    );
    Ok(json!({
        "id": task.id,
        "createdAt": task.created_at,
        "url": input_url,
        "text": meta.text,
        "quantity": task.n(),
        "resultList": items,
    }))
}

/// The state and results of a task.
#[utoipa::path(get, path = "/api/v1/getPaintResult", operation_id = "getPaintResult",
    params(("taskId" = i64, Query, description = "The id `paintAsync` answered.")),
    responses(
        (status = 200, description = "The task.", body = PaintResultAnswer),
        (status = 400, description = "Code 2001: `taskId` missing or not a number.", body = CutoutFailure),
        (status = 401, description = "Codes 1001-1003: no credentials, or bad ones.", body = CutoutFailure),
        (status = 404, description = "Code 3001: no such task for this key.", body = CutoutFailure),
        (status = 500, description = "Code 5000.", body = CutoutFailure),
    ),
    security(("APIKEY" = []), ("uid" = [], "signExpireTime" = [], "sign" = []))
)]
async fn get_paint_result(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, CutoutError> {
    let key = cutout_key(&state, &headers, &query).await?;
    let id: i64 = query.get("taskId").and_then(|t| t.trim().parse().ok()).ok_or_else(|| {
        CutoutError::new(StatusCode::BAD_REQUEST, 2001, "taskId must be the numeric task id")
    })?;
    let not_found = || CutoutError::new(StatusCode::NOT_FOUND, 3001, format!("no task {id}"));
    let task = state.repo.task_by_id(id).await.map_err(ApiError::from)?.ok_or_else(not_found)?;
    if task.key_id != key.id || task.surface != SURFACE {
        return Err(not_found());
    }
    Ok(ok(paint_view(&state, &task).await?))
}

/// `GET /api/v1/mySubscription`: the key's balance, in the fields the official SDK reads
/// and in Backdrop's own (see the module doc for the mapping).
#[utoipa::path(get, path = "/api/v1/mySubscription",
    operation_id = "mySubscription",
    summary = "The key's balance, in the fields the official SDK reads.",
    responses(
        (status = 200, description = "The key's balance.", body = SubscriptionAnswer),
        (status = 401, description = "Codes 1001-1003: no credentials, or bad ones.", body = CutoutFailure),
        (status = 500, description = "Code 5000.", body = CutoutFailure),
    ),
    security(("APIKEY" = []), ("uid" = [], "signExpireTime" = [], "sign" = []))
)]
async fn my_subscription(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, CutoutError> {
    let key = cutout_key(&state, &headers, &query).await?;
    Ok(ok(subscription(&key)))
}

/// The `mySubscription` data of a key. A Backdrop key has one balance that does not lapse,
/// which is what the vendor calls pay-as-you-go credits (`imageBalance`); there is no
/// monthly plan (`monthBalance` 0, no dates) and no video service (`videoBalance` 0).
fn subscription(key: &ApiKey) -> Value {
    json!({
        "userId": key.id,
        "apiCredits": key.balance,
        "monthBalance": 0,
        "imageBalance": key.balance,
        "videoBalance": 0,
        "monthStartDate": null,
        "monthExpireDate": null,
    })
}

/// The surface's OpenAPI document (`GET /openapi/cutout.json`). The handlers build their
/// answers as JSON; the types below describe them for the document, and the suite checks
/// real answers against it.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Backdrop: Cutout.pro Background Diffusion",
        description = "Cutout.pro's `paintAsync` / `getPaintResult` / `mySubscription`, wire-compatible. \
            Every answer is the envelope `{code, data, msg, time}`: `code` 0 with `data` on success, \
            a non-zero `code` with `data: null` and `msg` on failure, with the HTTP status of the \
            failure's class. Authenticate with the `APIKEY` header, or sign the query: `uid`, \
            `signExpireTime` (unix seconds, at most 24 h ahead) and \
            `sign = sha256_hex(uid + secret_key + signExpireTime)`."
    ),
    paths(paint_async, get_paint_result, my_subscription),
    components(schemas(
        PaintBody,
        PaintAccepted,
        PaintResultAnswer,
        PaintResult,
        PaintItem,
        SubscriptionAnswer,
        Subscription,
        CutoutFailure
    )),
    modifiers(&Security)
)]
pub struct Document;

/// The header key and the signed query.
struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
        let schemes = [
            (
                "APIKEY",
                ApiKey::Header(ApiKeyValue::with_description(
                    "APIKEY",
                    "A Backdrop API key; wins when the query is signed too.",
                )),
            ),
            (
                "uid",
                ApiKey::Query(ApiKeyValue::with_description(
                    "uid",
                    "Signed form: the key's numeric id, or its vendor access key.",
                )),
            ),
            (
                "signExpireTime",
                ApiKey::Query(ApiKeyValue::with_description(
                    "signExpireTime",
                    "Signed form: when the signature expires, unix seconds (at most 24 h ahead).",
                )),
            ),
            (
                "sign",
                ApiKey::Query(ApiKeyValue::with_description(
                    "sign",
                    "Signed form: sha256_hex(uid + secret_key + signExpireTime).",
                )),
            ),
        ];
        for (name, key) in schemes {
            crate::api::openapi::add_security_scheme(openapi, name, SecurityScheme::ApiKey(key));
        }
    }
}

/// `paintAsync` answered: the envelope with the task's id.
#[derive(ToSchema)]
pub struct PaintAccepted {
    /// 0.
    pub code: i64,
    /// The task's numeric id (`taskId` of `getPaintResult`).
    pub data: i64,
    /// null.
    pub msg: Option<String>,
    /// Server time (ms).
    pub time: i64,
}

/// `getPaintResult` answered: the envelope with the task.
#[derive(ToSchema)]
pub struct PaintResultAnswer {
    /// 0.
    pub code: i64,
    /// The task.
    pub data: PaintResult,
    /// null.
    pub msg: Option<String>,
    /// Server time (ms).
    pub time: i64,
}

/// A task as `getPaintResult` shows it.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct PaintResult {
    /// Task id.
    pub id: i64,
    /// Submitted at (ms).
    pub created_at: i64,
    /// Signed URL of the input image; expires after ten minutes.
    pub url: String,
    /// The `text` given; null without one.
    pub text: Option<String>,
    /// Images asked for.
    pub quantity: u32,
    /// One item per image.
    pub result_list: Vec<PaintItem>,
}

/// One image of a task.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct PaintItem {
    /// Task id * 100 + image index.
    pub id: i64,
    /// Task id.
    pub batch_id: i64,
    /// 3 waiting, 0 running, 1 succeeded, 2 failed or canceled.
    #[schema(minimum = 0, maximum = 3)]
    pub status: i64,
    /// Signed URL of the image, once it exists.
    pub result: Option<String>,
    /// Signed URL of its preview, once it exists.
    pub preview: Option<String>,
    /// Width: the result's, else the input's.
    pub width: u64,
    /// Height: the result's, else the input's.
    pub height: u64,
    /// Tasks ahead + 1 while waiting, else 0.
    pub wait_number: u64,
    /// Progress, 0..=100.
    pub percentage: u32,
}

/// `mySubscription` answered: the envelope with the balance.
#[derive(ToSchema)]
pub struct SubscriptionAnswer {
    /// 0.
    pub code: i64,
    /// The balance.
    pub data: Subscription,
    /// null.
    pub msg: Option<String>,
    /// Server time (ms).
    pub time: i64,
}

/// The key's balance in the fields the official SDK reads (see the module doc).
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct Subscription {
    /// The key's numeric id (`uid` of the signed form).
    pub user_id: i64,
    /// The balance; null for an unmetered key.
    pub api_credits: Option<i64>,
    /// 0: there is no monthly plan.
    pub month_balance: i64,
    /// The balance (pay-as-you-go credits); null for an unmetered key.
    pub image_balance: Option<i64>,
    /// 0: there is no video service.
    pub video_balance: i64,
    /// null.
    #[schema(schema_with = crate::api::openapi::null_schema)]
    pub month_start_date: (),
    /// null.
    #[schema(schema_with = crate::api::openapi::null_schema)]
    pub month_expire_date: (),
}

/// A failure: a non-zero `code` (see the module doc's table), `data: null` and `msg`.
#[derive(ToSchema)]
pub struct CutoutFailure {
    /// The failure's code.
    pub code: i64,
    /// null.
    #[schema(schema_with = crate::api::openapi::null_schema)]
    pub data: (),
    /// One sentence.
    pub msg: String,
    /// Server time (ms).
    pub time: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_is_sha256_of_the_concatenation() {
        // sha256("abc"), the FIPS 180-2 example.
        assert_eq!(
            sign("a", "b", "c"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_uid_is_a_numeric_key_id_or_an_access_key() {
        let secret = b"server";
        assert_eq!(uid_key_id(secret, "42"), Some(42));
        let pair = credentials(secret, 42);
        assert_eq!(uid_key_id(secret, &pair.access_key), Some(42));
        for bad in ["", "0", "-42", "+42", "4 2", "42x", "99999999999999999999", "ak42x0"] {
            assert_eq!(uid_key_id(secret, bad), None, "{bad:?}");
        }
    }

    #[test]
    fn native_codes_map_to_cutout_codes() {
        assert_eq!(map_code(ErrorCode::Unauthorized).1, 1001);
        assert_eq!(map_code(ErrorCode::Forbidden), (StatusCode::NOT_FOUND, 3001));
        assert_eq!(map_code(ErrorCode::PromptTooLong).1, 2002);
        assert_eq!(map_code(ErrorCode::TaskTooLarge), (StatusCode::PAYLOAD_TOO_LARGE, 2007));
        assert_eq!(map_code(ErrorCode::EngineFailed).1, 5000);
        assert_eq!(map_code(ErrorCode::OutputFailed).1, 5000);
    }
}
