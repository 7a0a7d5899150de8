//! The PicWish "Generate Background" surface: `POST /api/tasks/visual/background` and
//! `GET /api/tasks/visual/background/{task_id}`, translated onto the native task model.
//!
//! This module owns the PicWish wire format: the `X-API-KEY` header, the form fields, the
//! PicWish input rules, the `{status, message, data}` envelope, the `data.state` code
//! table, the `scene_type` ids and the surface's OpenAPI document ([`Document`],
//! `GET /openapi/picwish.json`). Queueing, decoding, storage and credits are the
//! service's.
//!
//! # Wire choices
//!
//! - **Body.** `multipart/form-data` as documented (`image_file` is always read as bytes,
//!   with or without a file name). `application/x-www-form-urlencoded` and JSON are also
//!   read, since clients that send only `image_url` often post a plain form. Unknown
//!   fields are ignored.
//! - **Fields.** `image_url` xor `image_file`; `prompt` (at most 1024 characters) xor
//!   `scene_type`; `batch_size` 1 or 2 (default 2); `negative_prompt`. The shared
//!   PicWish options are honoured too: `return_type` 1 (URLs, default) or 2 (base64 in
//!   `image_1` / `image_2`), and `sync=1` (wait up to [`SYNC_WAIT_SECS`] seconds and
//!   answer with the query result; a task still running then is answered as it stands).
//!   A key holds at most `[limits] max_key_streams` such waits and event streams at once
//!   (429 beyond, before any task is made).
//! - **Input rules.** PNG only (by its signature), with a transparent area and something
//!   opaque, 256x256 to 4096x4096, at most 20 MB. Output at most 1024x1024 keeping the
//!   aspect ratio: the output size the pipeline composites at, so the product is exact
//!   in the result.
//! - **Task ids** are the native task ids (strings). A task made on another surface or by
//!   another key is answered 404, like an unknown one.
//! - **Errors.** Only the documented HTTP statuses are used: 400 parameters, 401 key
//!   (also a key without credits left: the document's "the service is enabled"), 404,
//!   413 (file bytes, and also a resolution above the limit or a task over the server's
//!   per-task memory limit), 429 (the native per-key
//!   submit rate, 2 per second by default; the queue being full), 500. `status` in the
//!   body equals the HTTP status. Because Backdrop checks the image before it accepts a
//!   task, failures the vendor reports later as a task state are answered at submit:
//!   the error body then also carries `data.state` with that state code (-3 download
//!   failed, -5 too large, -7 invalid image, -17 invalid prompt or scene).
//! - **States.** `0` queued; `2` preparing (running, no progress yet); `4` processing;
//!   `1` done; a failed task carries the specific negative code of its error (-3, -5, -7,
//!   -8 timeout, -2 output failed, -13 canceled, -17, else -1). `state_detail` names it.
//!   Timestamps are unix seconds as strings; `time_elapsed` is milliseconds from start
//!   to end (or to now while running).
//! - **Results.** `image_1` / `image_2` (one per image of the batch) hold a URL or
//!   base64 (`return_type`) while the results live (`results.ttl_secs`); once they
//!   expired the keys stay, with `null`, so a client reading them finds the field and no
//!   image instead of a missing field. A task that did not succeed has no `image_N`.
//! - **scene_type.** Ids [`SCENE_TYPES`] map to Backdrop's scene templates; the list is
//!   served at `GET /api/tasks/visual/background/scene_types`.
//! - **Credits.** [`backdrop_core::PriceTable::picwish`] of `batch_size`.

use crate::auth::authenticate;
use crate::body::SubmitBody;
use crate::error::ApiError;
use crate::service::{
    check_rate, hold_stream, load_image, percent, submit, ImageSource, Submission,
};
use crate::{now_ms, AppState, Shared};
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use backdrop_core::ErrorCode;
use backdrop_core::{
    BackgroundSpec, CutoutMode, JobSpec, OutputSize, TaskPayload, TaskState, SCENES,
};
use backdrop_imaging::DecodeLimits;
use backdrop_store::{StoreError, SurfaceMeta, Task};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use utoipa::ToSchema;

/// Surface name stored on tasks.
pub const SURFACE: &str = "picwish";

/// Longest wait of a `sync=1` request, seconds (the vendor's longest processing time).
pub const SYNC_WAIT_SECS: u64 = 180;

/// Longest prompt, characters.
pub const MAX_PROMPT_CHARS: usize = 1024;

/// `scene_type` ids and the Backdrop scene template each one means. Fixed numbers, so
/// adding a template never renumbers the ones clients already use.
pub const SCENE_TYPES: &[(u32, &str)] = &[
    (101, "white-seamless"),
    (102, "light-grey-sweep"),
    (103, "warm-paper"),
    (104, "pastel-pink"),
    (105, "pastel-blue"),
    (106, "pastel-mint"),
    (107, "lavender-haze"),
    (108, "sunset-gradient"),
    (109, "dark-spotlight"),
    (110, "studio-floor"),
    (111, "soft-vignette"),
    (112, "concrete"),
    (113, "wood-tabletop"),
    (114, "sunny-yellow"),
];

/// The PicWish input limits: at most 20 MB, 256x256 to 4096x4096.
pub fn limits() -> DecodeLimits {
    DecodeLimits {
        max_file_bytes: 20 * 1024 * 1024,
        max_width: 4096,
        max_height: 4096,
        max_pixels: 4096 * 4096,
        min_width: 256,
        min_height: 256,
    }
}

/// The surface's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/tasks/visual/background", post(create))
        .route("/api/tasks/visual/background/scene_types", get(scene_types))
        .route("/api/tasks/visual/background/{task_id}", get(query))
        // Set here, inside the envelope layer, so a wrong method is answered in it too.
        .method_not_allowed_fallback(crate::api::method_not_allowed)
        .layer(axum::middleware::map_response(crate::api::surface_errors::<PicwishError>))
}

/// An error in the PicWish envelope.
#[derive(Debug)]
pub struct PicwishError {
    /// HTTP status (and `status` of the body).
    pub status: StatusCode,
    /// `message`.
    pub message: String,
    /// The task state code the vendor would report for this failure, if any.
    pub state: Option<i64>,
    /// `Retry-After` seconds, for 429.
    pub retry_after: Option<u64>,
}

impl PicwishError {
    fn bad(message: impl Into<String>, state: Option<i64>) -> Self {
        PicwishError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            state,
            retry_after: None,
        }
    }
}

/// The PicWish task state of a native error code (negative), if it has a specific one.
pub fn failed_state(code: ErrorCode) -> i64 {
    match code {
        ErrorCode::InvalidUrl
        | ErrorCode::UrlRefused
        | ErrorCode::DownloadFailed
        | ErrorCode::TooManyRedirects
        | ErrorCode::NotAnImage => -3,
        ErrorCode::FileTooLarge
        | ErrorCode::DimensionsTooLarge
        | ErrorCode::TooManyPixels
        | ErrorCode::DownloadTooLarge
        | ErrorCode::BodyTooLarge
        | ErrorCode::TaskTooLarge => -5,
        ErrorCode::InputUnreadable
        | ErrorCode::UnsupportedFormat
        | ErrorCode::CorruptImage
        | ErrorCode::NoAlphaChannel
        | ErrorCode::FullyOpaque
        | ErrorCode::FullyTransparent
        | ErrorCode::DimensionsTooSmall
        | ErrorCode::InvalidBase64 => -7,
        ErrorCode::PromptTooLong
        | ErrorCode::PromptOrSceneRequired
        | ErrorCode::UnknownScene
        | ErrorCode::NegativePromptTooLong => -17,
        ErrorCode::OutputFailed => -2,
        ErrorCode::Canceled => -13,
        ErrorCode::DownloadTimeout | ErrorCode::RequestTimeout => -8,
        _ => -1,
    }
}

impl From<ApiError> for PicwishError {
    fn from(e: ApiError) -> Self {
        let code = e.code;
        let (status, state) = match code {
            ErrorCode::Unauthorized | ErrorCode::InsufficientCredits => {
                (StatusCode::UNAUTHORIZED, None)
            }
            ErrorCode::RateLimited
            | ErrorCode::QueueFull
            | ErrorCode::ConcurrencyLimit
            | ErrorCode::TooManyStreams => (StatusCode::TOO_MANY_REQUESTS, None),
            ErrorCode::NotFound | ErrorCode::Forbidden => (StatusCode::NOT_FOUND, None),
            ErrorCode::Internal => (StatusCode::INTERNAL_SERVER_ERROR, None),
            _ if e.status().is_server_error() => (StatusCode::INTERNAL_SERVER_ERROR, None),
            _ => match failed_state(code) {
                -5 => (StatusCode::PAYLOAD_TOO_LARGE, Some(-5)),
                -1 => (StatusCode::BAD_REQUEST, None),
                state => (StatusCode::BAD_REQUEST, Some(state)),
            },
        };
        PicwishError { status, message: e.message, state, retry_after: e.retry_after }
    }
}

impl IntoResponse for PicwishError {
    fn into_response(self) -> Response {
        let mut body = json!({"status": self.status.as_u16(), "message": self.message});
        if let Some(state) = self.state {
            body["data"] = json!({"state": state, "state_detail": state_detail(state)});
        }
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}

/// The words of a state code.
pub fn state_detail(state: i64) -> &'static str {
    match state {
        -17 => "invalid prompt",
        -16 => "prohibited content (third-party review)",
        -15 => "insufficient resources",
        -14 => "input image content does not meet the requirements",
        -13 => "canceled",
        -11 => "empty result",
        -10 => "prohibited content (internal review)",
        -9 => "internal loop processing failed",
        -8 => "timeout",
        -7 => "invalid image file",
        -5 => "image exceeds the size limit",
        -3 => "image download failed",
        -2 => "result upload failed",
        -1 => "failed",
        0 => "queued",
        1 => "success",
        2 => "preparing",
        3 => "waiting",
        4 => "processing",
        5 => "publishing result",
        6 => "processing (loop)",
        _ => "unknown",
    }
}

fn success(data: Value) -> Response {
    axum::Json(json!({"status": 200, "message": "success", "data": data})).into_response()
}

/// What a create task keeps: how its result is answered (`return_type`) and the scene
/// type it asked for.
#[derive(Debug, Serialize, Deserialize)]
#[serde(default)]
struct CreateMeta {
    return_type: i64,
    scene_type: Option<i64>,
}

impl Default for CreateMeta {
    fn default() -> Self {
        // The vendor's default: a URL to the result.
        CreateMeta { return_type: 1, scene_type: None }
    }
}

/// The fields of a create request.
#[derive(Debug, Default)]
struct Fields {
    text: HashMap<String, String>,
    file: Option<Bytes>,
}

/// The fields of a create request, from a multipart or url-encoded form or a JSON object
/// (whose values are taken as text, as a form would send them).
async fn read_fields(req: Request) -> Result<Fields, PicwishError> {
    match SubmitBody::read(req, &["image_file"]).await? {
        SubmitBody::Form(mut form) => {
            Ok(Fields { file: form.take_file("image_file"), text: form.text.into_iter().collect() })
        }
        SubmitBody::Json(body) => {
            let value: Map<String, Value> = serde_json::from_slice(&body)
                .map_err(|e| PicwishError::bad(format!("malformed JSON: {e}"), None))?;
            let text = value
                .into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| match v {
                    Value::String(s) => (k, s),
                    other => (k, other.to_string()),
                })
                .collect();
            Ok(Fields { text, file: None })
        }
    }
}

fn int_field(fields: &Fields, name: &str) -> Result<Option<i64>, PicwishError> {
    match fields.text.get(name).map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| PicwishError::bad(format!("{name} must be an integer"), None)),
    }
}

fn scene_of(scene_type: i64) -> Option<&'static str> {
    SCENE_TYPES.iter().find(|(id, _)| i64::from(*id) == scene_type).map(|(_, scene)| *scene)
}

/// Create a background task (or, with `sync=1`, wait for it).
#[utoipa::path(post, path = "/api/tasks/visual/background", operation_id = "create_background_task",
    request_body(content(
        (CreateForm = "multipart/form-data"),
        (CreateRequest = "application/x-www-form-urlencoded"),
        (CreateRequest = "application/json"),
    )),
    responses(
        (status = 200, description = "The task id; with `sync=1` the task as the query answers it.", body = CreateAnswer),
        (status = 400, description = "A field or the image is refused; `data.state` names the vendor's failure state when it has one.", body = PicwishFailure),
        (status = 401, description = "No key, an unknown key, or no credits left.", body = PicwishFailure),
        (status = 413, description = "The image or the body is too large (`data.state` -5).", body = PicwishFailure),
        (status = 429, description = "The submit rate, the queue, or too many `sync=1` waits.", body = PicwishFailure,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
        (status = 500, description = "Internal error.", body = PicwishFailure),
    ),
    security(("X-API-KEY" = []))
)]
async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, PicwishError> {
    let key = authenticate(state.repo.as_ref(), &headers).await?;
    check_rate(&state, &key.id.to_string())?;
    let mut fields = read_fields(req).await?;
    let text =
        |name: &str| fields.text.get(name).map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let image_url = text("image_url");
    let prompt = text("prompt");
    let negative_prompt = text("negative_prompt");
    let batch_size = int_field(&fields, "batch_size")?.unwrap_or(2);
    if !(1..=2).contains(&batch_size) {
        return Err(PicwishError::bad("batch_size must be 1 or 2", None));
    }
    let scene_type = int_field(&fields, "scene_type")?;
    let return_type = int_field(&fields, "return_type")?.unwrap_or(1);
    if !(1..=2).contains(&return_type) {
        return Err(PicwishError::bad("return_type must be 1 (URL) or 2 (base64)", None));
    }
    let sync = match int_field(&fields, "sync")?.unwrap_or(0) {
        0 => false,
        1 => true,
        _ => return Err(PicwishError::bad("sync must be 0 or 1", None)),
    };
    // A synchronous wait polls the database until the task ends: it takes one of the
    // key's stream slots, before any task is made.
    let _wait_slot = sync.then(|| hold_stream(&state, &key.id.to_string())).transpose()?;
    let scene = match (&prompt, scene_type) {
        (Some(_), Some(_)) => {
            return Err(PicwishError::bad("use either prompt or scene_type, not both", Some(-17)))
        }
        (None, None) => {
            return Err(PicwishError::bad("a prompt or a scene_type is required", Some(-17)))
        }
        (Some(p), None) if p.chars().count() > MAX_PROMPT_CHARS => {
            return Err(PicwishError::bad(
                format!("prompt is longer than {MAX_PROMPT_CHARS} characters"),
                Some(-17),
            ))
        }
        (Some(_), None) => None,
        (None, Some(id)) => Some(scene_of(id).ok_or_else(|| {
            PicwishError::bad(
                format!("unknown scene_type {id}; see /api/tasks/visual/background/scene_types"),
                Some(-17),
            )
        })?),
    };
    let source = match (image_url, fields.file.take()) {
        (Some(_), Some(_)) => {
            return Err(PicwishError::bad("send image_url or image_file, not both", None))
        }
        (None, None) => return Err(PicwishError::bad("image_url or image_file is required", None)),
        (Some(url), None) => ImageSource::Url(url),
        (None, Some(bytes)) => ImageSource::Bytes(bytes),
    };
    let mut spec = BackgroundSpec {
        prompt,
        scene: scene.map(str::to_string),
        negative_prompt,
        n: batch_size as u32,
        // The surface documents transparent PNG input; photos stay refused.
        cutout: CutoutMode::Never,
        ..BackgroundSpec::default()
    };
    TaskPayload::new(JobSpec::Background(spec.clone())).validate().map_err(ApiError::from)?;
    let input = load_image(&state, source, "image").await?;
    if input.len() as u64 > limits().max_file_bytes {
        return Err(PicwishError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: "the image is larger than 20 MB".into(),
            state: Some(-5),
            retry_after: None,
        });
    }
    if !input.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Err(PicwishError::bad("the image must be a PNG with transparency", Some(-7)));
    }
    // Results are at most 1024x1024 keeping the aspect ratio: that is the output size
    // the pipeline composites at, so the product is exact at the delivered size (scaling
    // the finished image would resample the product a second time).
    spec.size = crate::service::image_dimensions(&input)
        .and_then(|(w, h)| fit_within(w, h, MAX_OUTPUT_SIDE));
    let payload = TaskPayload::new(JobSpec::Background(spec));
    let credits = state.config.prices.picwish(batch_size as u32);
    let created = submit(
        &state,
        Submission {
            surface_meta: SurfaceMeta::new(&CreateMeta { return_type, scene_type }),
            limits: limits(),
            ..Submission::new(SURFACE, key.clone(), payload, input, credits)
        },
    )
    .await?;
    let task = created.task;
    if !sync {
        return Ok(success(json!({"task_id": task.uid})));
    }
    let deadline = Instant::now() + Duration::from_secs(SYNC_WAIT_SECS);
    let mut task = task;
    while !task.state.is_terminal() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        task = state.repo.task(&task.uid).await.map_err(ApiError::from)?.unwrap_or(task);
    }
    Ok(success(task_data(&state, &task).await?))
}

/// Largest side of a result.
const MAX_OUTPUT_SIDE: u32 = 1024;

/// The output size of a `w`x`h` cut-out whose longer side is over `max`: scaled to `max`
/// keeping the aspect ratio; `None` when it fits already (the output keeps its size).
fn fit_within(w: u32, h: u32, max: u32) -> Option<OutputSize> {
    if w.max(h) <= max {
        return None;
    }
    let scale = f64::from(max) / f64::from(w.max(h));
    let side = |v: u32| ((f64::from(v) * scale).round() as u32).clamp(1, max);
    Some(OutputSize { width: side(w), height: side(h) })
}

/// The PicWish state code of a task.
pub fn task_state(task: &Task) -> i64 {
    match task.state {
        TaskState::Queued => 0,
        TaskState::Running if task.progress.fraction <= 0.0 => 2,
        TaskState::Running => 4,
        TaskState::Succeeded => 1,
        TaskState::Canceled => -13,
        TaskState::Failed => failed_state(task.error_code.unwrap_or(ErrorCode::EngineFailed)),
    }
}

fn secs(ms: i64) -> String {
    (ms / 1000).to_string()
}

async fn task_data(shared: &Shared, task: &Task) -> Result<Value, PicwishError> {
    let return_type = task.surface_meta.read::<CreateMeta>().return_type;
    let state = task_state(task);
    let mut data = json!({
        "task_id": task.uid,
        "state": state,
        "state_detail": state_detail(state),
        "progress": percent(task),
        "return_type": return_type,
        "created_at": secs(task.created_at),
    });
    if let Some(started) = task.started_at {
        data["processed_at"] = json!(secs(started));
        data["time_elapsed"] = json!(task.finished_at.unwrap_or_else(now_ms) - started);
    }
    if let Some(finished) = task.finished_at {
        data["completed_at"] = json!(secs(finished));
    }
    if let (TaskState::Failed, Some(msg)) = (task.state, &task.error_message) {
        data["state_detail"] = json!(format!("{}: {msg}", state_detail(state)));
    }
    if let Some(result) = task.result.as_ref().filter(|_| task.state == TaskState::Succeeded) {
        // Once the results expired each `image_N` stays, as null: a client that reads
        // `data.image_1` finds the field and no image, rather than a missing field.
        for image in &result.images {
            let value = if task.result_expired {
                Value::Null
            } else if return_type == 2 {
                match shared.blobs.get(&image.blob).await {
                    Ok(bytes) => json!(base64::engine::general_purpose::STANDARD.encode(&bytes)),
                    // Swept between reading the task and reading the file.
                    Err(StoreError::BlobNotFound(_)) => Value::Null,
                    Err(e) => return Err(ApiError::from(e).into()),
                }
            } else {
                crate::service::signed_url(shared, task, &image.blob)
                    .map_or(Value::Null, Value::from)
            };
            data[format!("image_{}", image.index)] = value;
        }
    }
    Ok(data)
}

/// A task's state and results.
#[utoipa::path(get, path = "/api/tasks/visual/background/{task_id}",
    operation_id = "get_background_task",
    params(("task_id" = String, Path, description = "The id the create request answered.")),
    responses(
        (status = 200, description = "The task.", body = TaskAnswer),
        (status = 401, description = "No key, or an unknown key.", body = PicwishFailure),
        (status = 404, description = "No such task for this key.", body = PicwishFailure),
        (status = 500, description = "Internal error.", body = PicwishFailure),
    ),
    security(("X-API-KEY" = []))
)]
async fn query(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(task_id): Path<String>,
) -> Result<Response, PicwishError> {
    let key = authenticate(state.repo.as_ref(), &headers).await?;
    let not_found = || PicwishError {
        status: StatusCode::NOT_FOUND,
        message: format!("no task '{task_id}'"),
        state: None,
        retry_after: None,
    };
    let task = state.repo.task(&task_id).await.map_err(ApiError::from)?.ok_or_else(not_found)?;
    if task.key_id != key.id || task.surface != SURFACE {
        return Err(not_found());
    }
    Ok(success(task_data(&state, &task).await?))
}

/// `GET /api/tasks/visual/background/scene_types`: the `scene_type` ids and their
/// templates.
#[utoipa::path(get, path = "/api/tasks/visual/background/scene_types",
    operation_id = "list_scene_types",
    summary = "The `scene_type` ids and the templates they mean.",
    responses((status = 200, description = "Every `scene_type`.", body = SceneTypesAnswer))
)]
async fn scene_types() -> Response {
    let list: Vec<Value> = SCENE_TYPES
        .iter()
        .filter_map(|(id, scene)| {
            SCENES.iter().find(|s| s.id == *scene).map(|s| {
                json!({"scene_type": id, "template": s.id, "name": s.name, "description": s.description})
            })
        })
        .collect();
    success(json!(list))
}

/// The surface's OpenAPI document (`GET /openapi/picwish.json`). The handlers read form
/// fields and answer JSON built by hand; the types below describe both for the document,
/// and the suite checks real answers against it.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Backdrop: PicWish Generate Background",
        description = "PicWish's Generate Background task API, wire-compatible. Send the key in \
            `X-API-KEY`. Every answer is `{status, message, data}` with `status` equal to the HTTP \
            status; a failure that the vendor reports as a task state carries it in \
            `data.state` and `data.state_detail`."
    ),
    paths(create, query, scene_types),
    components(schemas(
        CreateRequest,
        CreateForm,
        CreateAnswer,
        CreateData,
        Created,
        TaskAnswer,
        PicwishTask,
        SceneTypesAnswer,
        SceneType,
        PicwishFailure,
        FailureState
    )),
    modifiers(&Security)
)]
pub struct Document;

/// The `X-API-KEY` header.
struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
        crate::api::openapi::add_security_scheme(
            openapi,
            "X-API-KEY",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-KEY",
                "A Backdrop API key.",
            ))),
        );
    }
}

/// The fields of a create request: form fields (multipart or url-encoded), or a JSON
/// object of the same names (numbers as numbers or text).
#[derive(ToSchema)]
pub struct CreateRequest {
    /// URL of the cut-out; give it or `image_file`.
    pub image_url: Option<String>,
    /// What the background should show, at most 1024 characters; give it or `scene_type`.
    pub prompt: Option<String>,
    /// A scene template id (`GET /api/tasks/visual/background/scene_types`).
    pub scene_type: Option<i64>,
    /// Images, 1 or 2 (default 2).
    #[schema(minimum = 1, maximum = 2)]
    pub batch_size: Option<i64>,
    /// What to avoid.
    pub negative_prompt: Option<String>,
    /// 1: results as URLs (default); 2: as base64.
    #[schema(minimum = 1, maximum = 2)]
    pub return_type: Option<i64>,
    /// 1: wait for the task (at most 180 s) and answer it as the query does; 0 (default):
    /// answer its id at once.
    #[schema(minimum = 0, maximum = 1)]
    pub sync: Option<i64>,
}

/// A create request as `multipart/form-data`: the fields of [`CreateRequest`] and the
/// cut-out as the file part `image_file`.
pub struct CreateForm;

impl utoipa::PartialSchema for CreateForm {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        crate::api::openapi::multipart_form::<CreateRequest>(
            "A create request as `multipart/form-data`: the fields as text parts, the cut-out \
             as the file part `image_file`.",
            &[(
                "image_file",
                "The cut-out: a PNG with transparency, 256x256 to 4096x4096, at most 20 MB.",
            )],
        )
    }
}

impl ToSchema for CreateForm {}

/// A create request answered.
#[derive(ToSchema)]
pub struct CreateAnswer {
    /// 200.
    pub status: u16,
    /// `success`.
    pub message: String,
    /// The task id, or with `sync=1` the task.
    pub data: CreateData,
}

/// What a create request answers in `data`.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum CreateData {
    /// Without `sync=1`.
    Created(Created),
    /// With `sync=1`: the task as it stands when it ended or the wait did.
    Task(PicwishTask),
}

/// The id of a new task.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Created {
    /// Task id.
    pub task_id: String,
}

/// A query answered.
#[derive(ToSchema)]
pub struct TaskAnswer {
    /// 200.
    pub status: u16,
    /// `success`.
    pub message: String,
    /// The task.
    pub data: PicwishTask,
}

/// A task as PicWish shows it.
#[derive(Deserialize, ToSchema)]
pub struct PicwishTask {
    /// Task id.
    pub task_id: String,
    /// 0 queued, 2 preparing, 4 processing, 1 done; negative: failed (see `state_detail`).
    pub state: i64,
    /// The state in words (and the failure's reason).
    pub state_detail: String,
    /// Progress, 0..=100.
    pub progress: u32,
    /// 1: `image_N` are URLs; 2: base64.
    pub return_type: i64,
    /// Submitted at, unix seconds as text.
    pub created_at: String,
    /// Started at, unix seconds as text; absent until started.
    pub processed_at: Option<String>,
    /// Milliseconds from start to end (or to now); absent until started.
    pub time_elapsed: Option<i64>,
    /// Ended at, unix seconds as text; absent until ended.
    pub completed_at: Option<String>,
    /// The first image (URL or base64) once succeeded; null once the results expired.
    pub image_1: Option<String>,
    /// The second image, with `batch_size` 2.
    pub image_2: Option<String>,
}

/// The scene types answered.
#[derive(ToSchema)]
pub struct SceneTypesAnswer {
    /// 200.
    pub status: u16,
    /// `success`.
    pub message: String,
    /// Every `scene_type`.
    pub data: Vec<SceneType>,
}

/// A `scene_type` and the template it means.
#[derive(ToSchema)]
pub struct SceneType {
    /// The id to send.
    pub scene_type: u32,
    /// Backdrop's template id.
    pub template: String,
    /// Display name.
    pub name: String,
    /// One sentence.
    pub description: String,
}

/// A failure: `status` is the HTTP status.
#[derive(ToSchema)]
pub struct PicwishFailure {
    /// The HTTP status.
    pub status: u16,
    /// One sentence.
    pub message: String,
    /// The task state the vendor would report for this failure, when it has one.
    pub data: Option<FailureState>,
}

/// The vendor's task state of a failure refused at submit.
#[derive(ToSchema)]
pub struct FailureState {
    /// -3 download failed, -5 too large, -7 invalid image, -17 invalid prompt or scene.
    pub state: i64,
    /// The state in words.
    pub state_detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_errors_map_to_the_vendor_state_codes() {
        for (code, state) in [
            ("download_failed", -3),
            ("url_refused", -3),
            ("file_too_large", -5),
            ("dimensions_too_large", -5),
            ("task_too_large", -5),
            ("corrupt_image", -7),
            ("no_alpha_channel", -7),
            ("download_timeout", -8),
            ("output_failed", -2),
            ("canceled", -13),
            ("prompt_too_long", -17),
            ("unknown_scene", -17),
            ("engine_failed", -1),
        ] {
            assert_eq!(failed_state(ErrorCode::parse(code).expect("a code")), state, "{code}");
            assert_ne!(state_detail(state), "unknown");
        }
    }

    #[test]
    fn every_scene_type_names_a_template() {
        for (id, scene) in SCENE_TYPES {
            assert!(SCENES.iter().any(|s| s.id == *scene), "{id} -> {scene}");
        }
        assert_eq!(scene_of(105), Some("pastel-blue"));
        assert_eq!(scene_of(100), None);
    }
}
