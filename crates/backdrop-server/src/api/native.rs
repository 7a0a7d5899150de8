//! The native v1 API.
//!
//! Submit (`POST /v1/backgrounds`, `POST /v1/expansions`, `POST /v1/cutouts`) with JSON (images as
//! `image_url` or `image_base64`) or multipart (`image` file part, other fields as text
//! parts of the same names); the answer is 202 with the task id and its status URL once
//! the task is committed. `Idempotency-Key` (or `client_task_id`) makes a retried submit
//! return the same task. Poll `GET /v1/tasks/{id}`, follow `GET /v1/tasks/{id}/events`
//! (server-sent events), list with `GET /v1/tasks`, cancel with `DELETE /v1/tasks/{id}`.
//! Timestamps are milliseconds since the Unix epoch.

use crate::auth::authenticate;
use crate::body::{FormFields, SubmitBody};
use crate::error::ApiError;
use crate::service::{
    self, announced_images, check_rate, load_image, owned_task, percent, signed_url, ImageSource,
    Submission,
};
use crate::{AppState, Shared};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use backdrop_core::framing::{parse_offset, FramingRequest};
use backdrop_core::{
    BackgroundSpec, CutoutSpec, EngineName, ErrorCode, ExpansionRatios, ExpansionSpec, Framing,
    JobKind, JobSpec, LoraRef, OutputFormat, OutputSize, Padding, ReferenceSpec, ResizeMode,
    TaskPayload, TaskState, SCENES,
};
use backdrop_store::{Task, TaskFilter};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::convert::Infallible;
use std::time::Duration;
use utoipa::ToSchema;

/// The native routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/backgrounds", post(submit_background))
        .route("/v1/expansions", post(submit_expansion))
        .route("/v1/cutouts", post(submit_cutout))
        .route("/v1/tasks", get(list_tasks))
        .route("/v1/tasks/{id}", get(get_task).delete(cancel_task))
        .route("/v1/tasks/{id}/events", get(task_events))
        .route("/v1/tasks/{id}/callbacks", get(task_callbacks))
        .route("/v1/scenes", get(scenes))
        .route("/v1/scenes/{id}/thumbnail", get(scene_thumbnail))
        .route("/v1/models", get(models))
        .route("/v1/account", get(account))
}

/// `POST /v1/backgrounds`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackgroundRequest {
    /// Cut-out (PNG/WebP with alpha) to fetch.
    pub image_url: Option<String>,
    /// Cut-out as base64.
    pub image_base64: Option<String>,
    /// What the background should show.
    pub prompt: Option<String>,
    /// A scene template id (`GET /v1/scenes`).
    pub scene: Option<String>,
    /// What to avoid.
    pub negative_prompt: Option<String>,
    /// Images, 1..=16 (default 1).
    pub n: Option<u32>,
    /// Seed of the first image; random when omitted (and reported).
    pub seed: Option<u64>,
    /// Output width (with `height`); default: the input's.
    pub width: Option<u32>,
    /// Output height.
    pub height: Option<u32>,
    /// `just-resize`, `crop-and-resize` or `resize-and-fill` (default).
    pub resize_mode: Option<String>,
    /// Denoising steps (diffusion).
    pub steps: Option<u32>,
    /// Model id (diffusion).
    pub model: Option<String>,
    /// LoRAs with weights (diffusion).
    #[schema(value_type = Option<Vec<LoraWeight>>)]
    pub loras: Option<Vec<LoraRef>>,
    /// Reference background to fetch.
    pub reference_image_url: Option<String>,
    /// Reference background as base64.
    pub reference_image_base64: Option<String>,
    /// How strongly the reference shapes the result, 0..=1 (default 0.5).
    pub reference_strength: Option<f32>,
    /// Engine: `auto` (default), `studio`, `patch`, `diffusion`.
    pub engine: Option<String>,
    /// Mask growth into the cut-out's edge, px.
    pub mask_grow: Option<u32>,
    /// `png` (default), `jpg`, `webp`.
    pub format: Option<String>,
    /// Also make a preview (default true).
    pub preview: Option<bool>,
    /// Also make a watermarked variant.
    pub watermark: Option<bool>,
    /// Guidance scale (diffusion).
    pub guidance: Option<f32>,
    /// Scheduler (diffusion).
    pub scheduler: Option<String>,
    /// POSTed on every state change.
    pub callback_url: Option<String>,
    /// Your id for the task; a resubmit with the same id returns the same task.
    pub client_task_id: Option<String>,
    // --- framing (placement, shadow, reflection, backdrop) ---
    /// Fit the product's visible bounding box inside this fraction of the canvas width
    /// and height, (0, 1]; any placement field turns placement on.
    pub scale: Option<f64>,
    /// Free space around the box: one number or `[top, right, bottom, left]` (or the
    /// text `"t,r,b,l"`); below 1 a fraction of that side, else pixels.
    #[schema(schema_with = padding_schema)]
    pub padding: Option<Value>,
    /// `center` (default), `top`, `bottom`, `left`, `right`, `top-left`, `top-right`,
    /// `bottom-left`, `bottom-right`.
    pub align: Option<String>,
    /// A final shift in pixels: `[x, y]` (or the text `"x,y"`).
    #[schema(schema_with = offset_schema)]
    pub offset: Option<Value>,
    /// `none`, `contact`, `soft`, `hard` or `floating`; default: the engine's own.
    pub shadow: Option<String>,
    /// Where the shadow falls, degrees clockwise: 0 back, 90 right, 180 front, 270 left.
    pub shadow_direction: Option<f32>,
    /// Shadow darkness, 0..=1.
    pub shadow_opacity: Option<f32>,
    /// Shadow blur, 0..=1.
    pub shadow_softness: Option<f32>,
    /// Floor reflection opacity, 0..=1 (0, the default, is off).
    pub reflection: Option<f32>,
    /// `transparent` or `#RRGGBB` skips generation (product and shadow only).
    pub backdrop: Option<String>,
    /// `auto` (default: cut a photo without transparency out first), `always`, `never`.
    pub cutout: Option<String>,
}

/// A LoRA of `loras` (the schema of [`LoraRef`]).
#[derive(Debug, ToSchema)]
pub struct LoraWeight {
    /// The LoRA's name, as `GET /v1/models` lists it.
    pub name: String,
    /// Its weight.
    pub weight: f32,
}

/// `padding`: one number, four numbers, or their text.
fn padding_schema() -> utoipa::openapi::Schema {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Type};
    OneOfBuilder::new()
        .description(Some(
            "Free space around the product's box: one number for every side, \
             `[top, right, bottom, left]`, or the text `\"t,r,b,l\"`; below 1 a fraction of \
             that side, else pixels.",
        ))
        .item(ObjectBuilder::new().schema_type(Type::Number))
        .item(
            ArrayBuilder::new()
                .items(ObjectBuilder::new().schema_type(Type::Number))
                .min_items(Some(4))
                .max_items(Some(4)),
        )
        .item(ObjectBuilder::new().schema_type(Type::String))
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .build()
        .into()
}

/// `offset`: two whole numbers, or their text.
fn offset_schema() -> utoipa::openapi::Schema {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Type};
    OneOfBuilder::new()
        .description(Some("A final shift in pixels: `[x, y]` or the text `\"x,y\"`."))
        .item(
            ArrayBuilder::new()
                .items(ObjectBuilder::new().schema_type(Type::Integer))
                .min_items(Some(2))
                .max_items(Some(2)),
        )
        .item(ObjectBuilder::new().schema_type(Type::String))
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .build()
        .into()
}

/// `POST /v1/backgrounds` as `multipart/form-data`: the fields of [`BackgroundRequest`]
/// as text parts (`STRING_FIELDS` says which stay text), the images as file parts.
pub struct BackgroundForm;

impl utoipa::PartialSchema for BackgroundForm {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        crate::api::openapi::multipart_form::<BackgroundRequest>(
            "`POST /v1/backgrounds` as `multipart/form-data`: the JSON fields as text parts \
             (numbers, booleans and `loras` as their JSON text; `padding` and `offset` in \
             their text forms `\"t,r,b,l\"` and `\"x,y\"`), the images as file parts.",
            &[
                (
                    "image",
                    "The cut-out (or a photo to cut out first), instead of `image_url` or \
                     `image_base64`.",
                ),
                (
                    "reference_image",
                    "The reference background, instead of `reference_image_url` or \
                     `reference_image_base64`.",
                ),
            ],
        )
    }
}

impl ToSchema for BackgroundForm {}

/// `POST /v1/expansions` as `multipart/form-data`: the fields of [`ExpansionRequest`]
/// as text parts, the photo as the file part `image`.
pub struct ExpansionForm;

impl utoipa::PartialSchema for ExpansionForm {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        crate::api::openapi::multipart_form::<ExpansionRequest>(
            "`POST /v1/expansions` as `multipart/form-data`: the JSON fields as text parts, \
             the photo as the file part `image`.",
            &[("image", "The photo, instead of `image_url` or `image_base64`.")],
        )
    }
}

impl ToSchema for ExpansionForm {}

/// `POST /v1/expansions`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpansionRequest {
    /// Photo to fetch.
    pub image_url: Option<String>,
    /// Photo as base64.
    pub image_base64: Option<String>,
    /// New area above, fraction of the height, 0..=2.
    pub up: Option<f64>,
    /// New area below, fraction of the height, 0..=2.
    pub down: Option<f64>,
    /// New area to the left, fraction of the width, 0..=2.
    pub left: Option<f64>,
    /// New area to the right, fraction of the width, 0..=2.
    pub right: Option<f64>,
    /// What the new area should show.
    pub prompt: Option<String>,
    /// Images, 1..=9 (default 1).
    pub n: Option<u32>,
    /// Seed of the first image.
    pub seed: Option<u64>,
    /// Engine: `auto` (default), `patch`, `studio`, `diffusion`.
    pub engine: Option<String>,
    /// Overlap into the original, px.
    pub mask_grow: Option<u32>,
    /// `png` (default), `jpg`, `webp`.
    pub format: Option<String>,
    /// Also make a preview (default true).
    pub preview: Option<bool>,
    /// Also make a watermarked variant.
    pub watermark: Option<bool>,
    /// POSTed on every state change.
    pub callback_url: Option<String>,
    /// Your id for the task.
    pub client_task_id: Option<String>,
}

/// The answer to a submit.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    /// Task id.
    pub id: String,
    /// `queued` (or the current state of an idempotent resubmit).
    pub state: String,
    /// Where to poll.
    pub status_url: String,
    /// False when an earlier task with the same idempotency key was returned.
    pub created: bool,
}

/// The error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable code.
    #[schema(value_type = String, example = "unknown_scene")]
    pub code: ErrorCode,
    /// One sentence.
    pub message: String,
}

/// A task as the native API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskView {
    /// Task id.
    pub id: String,
    /// `background`, `expansion` or `cutout`.
    pub kind: String,
    /// `queued`, `running`, `succeeded`, `failed`, `canceled`.
    pub state: String,
    /// Engine that runs it.
    pub engine: String,
    /// Images asked for.
    pub n: u32,
    /// Tasks ahead of this one while queued.
    pub queue_position: Option<u64>,
    /// Progress.
    pub progress: ProgressView,
    /// Seed of the first image.
    pub seed: Option<u64>,
    /// Times a worker picked it up.
    pub attempts: u32,
    /// Submitted at (ms).
    pub created_at: i64,
    /// First started at (ms).
    pub started_at: Option<i64>,
    /// Ended at (ms).
    pub finished_at: Option<i64>,
    /// Results and their URLs expire at (ms).
    pub expires_at: Option<i64>,
    /// Width of the results.
    pub width: Option<u32>,
    /// Height of the results.
    pub height: Option<u32>,
    /// Results.
    pub images: Vec<ImageView>,
    /// Whether the results were swept after expiry.
    pub expired: bool,
    /// Engine notes (scene picked and why...).
    #[schema(value_type = Object)]
    pub notes: Map<String, Value>,
    /// Set when failed or canceled.
    pub error: Option<ErrorBody>,
}

/// Progress of a task.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProgressView {
    /// 0..=100.
    pub percent: u32,
    /// Current step.
    pub step: u32,
    /// Steps per image.
    pub steps: u32,
}

/// One result.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImageView {
    /// 1-based.
    pub index: u32,
    /// Seed of this image.
    pub seed: u64,
    /// Signed URL of the image.
    pub url: Option<String>,
    /// Signed URL of the preview.
    pub preview_url: Option<String>,
    /// Signed URL of the watermarked variant.
    pub watermarked_url: Option<String>,
}

/// A page of tasks.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskPage {
    /// Tasks, newest first.
    pub tasks: Vec<TaskView>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

/// The caller's key, authenticated and rate-checked from the headers alone. Submit
/// handlers take it before [`SubmitBody`], so a request without a valid key is refused
/// before a byte of its body is read: what an unauthenticated client can make the
/// server hold is one request head.
pub struct SubmitKey(pub backdrop_store::ApiKey);

impl FromRequestParts<AppState> for SubmitKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let key = authenticate(state.repo.as_ref(), &parts.headers).await?;
        check_rate(state, &key.id.to_string())?;
        Ok(SubmitKey(key))
    }
}

/// A task of the caller's key, by the path's `{id}`: what every per-task route starts
/// from. The path is read first (400 `invalid_parameter` when it does not parse), then the
/// key (401), then the task (404 when there is none, 403 when it is another key's).
pub struct KeyTask {
    /// The caller's key.
    pub key: backdrop_store::ApiKey,
    /// The task.
    pub task: Task,
}

impl FromRequestParts<AppState> for KeyTask {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::new(ErrorCode::InvalidParameter, e.body_text()))?;
        let key = authenticate(state.repo.as_ref(), &parts.headers).await?;
        let task = owned_task(state, &key, &id).await?;
        Ok(KeyTask { key, task })
    }
}

/// The path of a per-task route, for the OpenAPI document.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct TaskPath {
    /// Task id.
    id: String,
}

/// The errors every per-task route may answer, for the OpenAPI document.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
enum TaskErrors {
    /// No key, or an unknown or revoked key.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The task belongs to another key.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// No such task.
    #[response(status = 404)]
    NotFound(ErrorBody),
}

/// What a native submit handler takes: the request's body, read by the shared reader with
/// `image` and `reference_image` as file fields.
impl<S: Send + Sync> FromRequest<S> for SubmitBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        SubmitBody::read(req, &["image", "reference_image"]).await
    }
}

/// The typed request of a submit body and the files it uploaded: JSON parsed straight
/// into `T`; form text fields become JSON values (numbers and booleans where they parse,
/// except [`STRING_FIELDS`]) and then `T`.
async fn parse_submit<T: serde::de::DeserializeOwned + Send + 'static>(
    body: SubmitBody,
) -> Result<(T, FormFields), ApiError> {
    match body {
        SubmitBody::Json(body) => Ok((parse_json_body(body).await?, FormFields::default())),
        SubmitBody::Form(mut form) => {
            let fields: Map<String, Value> = std::mem::take(&mut form.text)
                .into_iter()
                .map(|(name, text)| {
                    let value = if STRING_FIELDS.contains(&name.as_str()) {
                        Value::String(text)
                    } else {
                        serde_json::from_str(&text).unwrap_or(Value::String(text))
                    };
                    (name, value)
                })
                .collect();
            let req = serde_json::from_value(Value::Object(fields))
                .map_err(|e| ApiError::new(ErrorCode::InvalidParameter, e.to_string()))?;
            Ok((req, form))
        }
    }
}

/// Bodies up to this size are parsed on the async thread; larger ones (tens of MB of
/// base64 take tens of milliseconds) on the blocking pool, so they do not stall it.
const INLINE_PARSE_BYTES: usize = 256 * 1024;

/// [`parse_json`], off the async threads when the body is large: what every JSON
/// submit body (native, Cutout.pro, Kling) is read with.
pub async fn parse_json_body<T: serde::de::DeserializeOwned + Send + 'static>(
    body: Bytes,
) -> Result<T, ApiError> {
    if body.len() <= INLINE_PARSE_BYTES {
        return parse_json(&body);
    }
    tokio::task::spawn_blocking(move || parse_json(&body)).await.map_err(ApiError::internal)?
}

/// Parses a JSON body into `T`: a body that is not JSON, or not an object, is
/// `invalid_json`; a field of the wrong type or an unknown field is `invalid_parameter`.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some() && first != Some(&b'{') {
        // Tell "not an object" apart from "not JSON" the way a client would.
        return Err(match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
            Ok(_) => ApiError::new(ErrorCode::InvalidJson, "the body must be a JSON object"),
            Err(e) => ApiError::new(ErrorCode::InvalidJson, format!("malformed JSON: {e}")),
        });
    }
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => {
            ApiError::new(ErrorCode::InvalidParameter, e.to_string())
        }
        _ => ApiError::new(ErrorCode::InvalidJson, format!("malformed JSON: {e}")),
    })
}

/// Fields of multipart requests that stay strings even when they look like numbers.
const STRING_FIELDS: &[&str] = &[
    "image_url",
    "image_base64",
    "prompt",
    "scene",
    "negative_prompt",
    "resize_mode",
    "model",
    "reference_image_url",
    "reference_image_base64",
    "engine",
    "format",
    "scheduler",
    "callback_url",
    "client_task_id",
    "padding",
    "offset",
    "align",
    "shadow",
    "backdrop",
    "cutout",
];

fn parse_opt<T: std::str::FromStr<Err = String>>(
    value: Option<&str>,
    code: ErrorCode,
) -> Result<Option<T>, ApiError> {
    value.map(|v| v.parse::<T>().map_err(|e| ApiError::new(code, e))).transpose()
}

/// The photo of an expansion or cut-out submit: exactly one of its three forms.
fn photo_source(
    url: Option<String>,
    base64: Option<String>,
    files: &mut FormFields,
) -> Result<ImageSource, ApiError> {
    image_source(url, base64, files.take_file("image"), "image")?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::ImageRequired,
            "send the photo as image_url, image_base64 or an 'image' file part",
        )
    })
}

fn image_source(
    url: Option<String>,
    base64: Option<String>,
    file: Option<Bytes>,
    what: &str,
) -> Result<Option<ImageSource>, ApiError> {
    match (url, base64, file) {
        (None, None, None) => Ok(None),
        (Some(url), None, None) => Ok(Some(ImageSource::Url(url))),
        (None, Some(b64), None) => Ok(Some(ImageSource::Base64(b64))),
        (None, None, Some(bytes)) => Ok(Some(ImageSource::Bytes(bytes))),
        _ => Err(ApiError::new(
            ErrorCode::InvalidParameter,
            format!("give the {what} once: as a URL, as base64 or as a file"),
        )),
    }
}

/// What every native submit answers, for the OpenAPI document (the handlers build the
/// answers themselves).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
enum SubmitResponses {
    /// The task is committed and queued.
    #[response(status = 202, headers(("Location" = String, description = "The task's status URL.")))]
    Queued(Accepted),
    /// An earlier task with the same idempotency key, as it stands.
    #[response(status = 200, headers(("Location" = String, description = "The task's status URL.")))]
    Existing(Accepted),
    /// A field, the image or the body is refused; `code` says which.
    #[response(status = 400)]
    Refused(ErrorBody),
    /// No key, or an unknown or revoked key.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// `insufficient_credits`: the key's balance does not cover the price.
    #[response(status = 402)]
    InsufficientCredits(ErrorBody),
    /// The body or the image is too large.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// A body that is neither JSON nor a form.
    #[response(status = 415)]
    UnsupportedMediaType(ErrorBody),
    /// `rate_limited`, `concurrency_limit` or `queue_full`.
    #[response(status = 429, headers(("Retry-After" = u64, description = "Seconds to wait.")))]
    TooMany(ErrorBody),
}

/// The headers every native submit reads besides the key.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
struct SubmitHeaders {
    /// 1-255 characters; a retry with the same key returns the same task (like
    /// `client_task_id`).
    #[param(rename = "Idempotency-Key")]
    idempotency_key: Option<String>,
}

fn idempotency(
    headers: &HeaderMap,
    client_task_id: Option<String>,
) -> Result<Option<String>, ApiError> {
    let header = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_string);
    let key = header.or(client_task_id);
    if let Some(k) = &key {
        if k.is_empty() || k.len() > 255 {
            return Err(ApiError::new(
                ErrorCode::InvalidIdempotencyKey,
                "the idempotency key must be 1-255 characters",
            ));
        }
    }
    Ok(key)
}

/// Submit a background: the cut-out (or a photo to cut out first) on a generated background.
#[utoipa::path(post, path = "/v1/backgrounds",
    request_body(content(
        (BackgroundRequest = "application/json"),
        (BackgroundForm = "multipart/form-data"),
    )),
    responses(SubmitResponses),
    params(SubmitHeaders),
    security(("bearer" = []), ("api_key" = [])),
    tag = "tasks"
)]
async fn submit_background(
    State(state): State<AppState>,
    headers: HeaderMap,
    SubmitKey(key): SubmitKey,
    body: SubmitBody,
) -> Result<Response, ApiError> {
    let (req, mut files) = parse_submit::<BackgroundRequest>(body).await?;
    let size = match (req.width, req.height) {
        (Some(width), Some(height)) => Some(OutputSize { width, height }),
        (None, None) => None,
        _ => {
            return Err(ApiError::new(
                ErrorCode::InvalidParameter,
                "give both width and height, or neither",
            ))
        }
    };
    let resize_mode: ResizeMode =
        parse_opt(req.resize_mode.as_deref(), ErrorCode::InvalidParameter)?.unwrap_or_default();
    let framing = framing(&req)?;
    let reference_source = image_source(
        req.reference_image_url,
        req.reference_image_base64,
        files.take_file("reference_image"),
        "reference image",
    )?;
    let spec = BackgroundSpec {
        prompt: req.prompt,
        scene: req.scene,
        negative_prompt: req.negative_prompt,
        n: req.n.unwrap_or(1),
        seed: req.seed,
        size,
        resize_mode,
        steps: req.steps,
        model: req.model,
        loras: req.loras.unwrap_or_default(),
        reference: reference_source.as_ref().map(|_| ReferenceSpec {
            strength: req.reference_strength.unwrap_or(0.5),
            resize_mode: ResizeMode::CropAndResize,
        }),
        framing,
        cutout: parse_opt(req.cutout.as_deref(), ErrorCode::InvalidParameter)?.unwrap_or_default(),
    };
    let mut payload = TaskPayload::new(JobSpec::Background(spec));
    output_settings(
        &mut payload,
        req.engine.as_deref(),
        req.format.as_deref(),
        req.mask_grow,
        req.preview,
    )?;
    payload.watermark = req.watermark.unwrap_or(false);
    payload.guidance = req.guidance;
    payload.scheduler = req.scheduler;
    let idempotency_key = idempotency(&headers, req.client_task_id)?;
    let source = image_source(req.image_url, req.image_base64, files.take_file("image"), "image")?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::ImageRequired,
                "send the cut-out as image_url, image_base64 or an 'image' file part",
            )
        })?;
    // Validate the spec before downloading anything.
    payload.validate()?;
    if let JobSpec::Background(spec) = &payload.job {
        spec.framing.check_format(payload.format)?;
    }
    let input = load_image(&state, source, "image").await?;
    check_padding_room(&payload.job, &input)?;
    let reference = match reference_source {
        Some(source) => Some(load_image(&state, source, "reference image").await?),
        None => None,
    };
    let credits = state.config.prices.native(payload.job.n());
    submit(&state, key, payload, input, reference, idempotency_key, req.callback_url, credits).await
}

/// The framing fields of a background request.
fn framing(req: &BackgroundRequest) -> Result<Framing, ApiError> {
    let padding = match &req.padding {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(Padding::uniform(n.as_f64().unwrap_or(f64::NAN))),
        Some(Value::String(text)) => Some(text.parse::<Padding>()?),
        Some(Value::Array(values)) => {
            let sides: Option<Vec<f64>> = values.iter().map(Value::as_f64).collect();
            match sides.as_deref() {
                Some(&[t, r, b, l]) => Some(Padding([t, r, b, l])),
                _ => return Err(bad_padding()),
            }
        }
        Some(_) => return Err(bad_padding()),
    };
    let offset = match &req.offset {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(parse_offset(text)?),
        Some(Value::Array(values)) => {
            let xy: Option<Vec<i32>> =
                values.iter().map(|v| v.as_i64().and_then(|v| i32::try_from(v).ok())).collect();
            match xy.as_deref() {
                Some(&[x, y]) => Some([x, y]),
                _ => return Err(bad_offset()),
            }
        }
        Some(_) => return Err(bad_offset()),
    };
    Ok(FramingRequest {
        scale: req.scale,
        padding,
        align: req.align.as_deref(),
        offset,
        shadow: req.shadow.as_deref(),
        shadow_direction: req.shadow_direction,
        shadow_opacity: req.shadow_opacity,
        shadow_softness: req.shadow_softness,
        reflection: req.reflection,
        backdrop: req.backdrop.as_deref(),
    }
    .framing()?)
}

fn bad_padding() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidPadding,
        "padding must be a number, [top, right, bottom, left] or \"t,r,b,l\"",
    )
}

fn bad_offset() -> ApiError {
    ApiError::new(ErrorCode::InvalidOffset, "offset must be [x, y] in whole pixels or \"x,y\"")
}

/// Pixel padding on a job that keeps the input's size can only be checked against the
/// input: read its dimensions from the header so the submit is refused, not the task.
fn check_padding_room(job: &JobSpec, input: &Bytes) -> Result<(), ApiError> {
    let JobSpec::Background(spec) = job else { return Ok(()) };
    if spec.size.is_some() || spec.framing.placement.is_none() {
        return Ok(());
    }
    let dimensions = image::ImageReader::new(std::io::Cursor::new(input))
        .with_guessed_format()
        .ok()
        .and_then(|r| r.into_dimensions().ok());
    match dimensions {
        Some((w, h)) => Ok(spec.framing.check_canvas(w, h)?),
        // An unreadable image is refused with its own code when it is decoded.
        None => Ok(()),
    }
}

/// Submit an expansion: the photo extended beyond its edges.
#[utoipa::path(post, path = "/v1/expansions",
    request_body(content(
        (ExpansionRequest = "application/json"),
        (ExpansionForm = "multipart/form-data"),
    )),
    responses(SubmitResponses),
    params(SubmitHeaders),
    security(("bearer" = []), ("api_key" = [])),
    tag = "tasks"
)]
async fn submit_expansion(
    State(state): State<AppState>,
    headers: HeaderMap,
    SubmitKey(key): SubmitKey,
    body: SubmitBody,
) -> Result<Response, ApiError> {
    let (req, mut files) = parse_submit::<ExpansionRequest>(body).await?;
    let spec = ExpansionSpec {
        ratios: ExpansionRatios {
            up: req.up.unwrap_or(0.0),
            down: req.down.unwrap_or(0.0),
            left: req.left.unwrap_or(0.0),
            right: req.right.unwrap_or(0.0),
        },
        prompt: req.prompt,
        n: req.n.unwrap_or(1),
        seed: req.seed,
        watermark: req.watermark.unwrap_or(false),
    };
    let mut payload = TaskPayload::new(JobSpec::Expansion(spec));
    output_settings(
        &mut payload,
        req.engine.as_deref(),
        req.format.as_deref(),
        req.mask_grow,
        req.preview,
    )?;
    let photo = PhotoFields {
        image_url: req.image_url,
        image_base64: req.image_base64,
        callback_url: req.callback_url,
        client_task_id: req.client_task_id,
    };
    submit_photo(&state, key, &headers, payload, photo, &mut files).await
}

/// The output settings background and expansion requests share: the engine and the
/// format as given, the mask growth and whether to make a preview.
fn output_settings(
    payload: &mut TaskPayload,
    engine: Option<&str>,
    format: Option<&str>,
    mask_grow: Option<u32>,
    preview: Option<bool>,
) -> Result<(), ApiError> {
    payload.engine = parse_opt::<EngineName>(engine, ErrorCode::UnknownEngine)?.unwrap_or_default();
    payload.format =
        parse_opt::<OutputFormat>(format, ErrorCode::InvalidParameter)?.unwrap_or_default();
    payload.mask_grow = mask_grow;
    payload.preview_side = preview.unwrap_or(true).then_some(512);
    Ok(())
}

/// The fields expansion and cut-out requests share: the photo (or the `image` file part)
/// and where the task's news goes.
struct PhotoFields {
    image_url: Option<String>,
    image_base64: Option<String>,
    callback_url: Option<String>,
    client_task_id: Option<String>,
}

/// The end of an expansion or cut-out submit: the idempotency key, the photo, every
/// check before the download, then the task.
async fn submit_photo(
    state: &Shared,
    key: backdrop_store::ApiKey,
    headers: &HeaderMap,
    payload: TaskPayload,
    photo: PhotoFields,
    files: &mut FormFields,
) -> Result<Response, ApiError> {
    let idempotency_key = idempotency(headers, photo.client_task_id)?;
    let source = photo_source(photo.image_url, photo.image_base64, files)?;
    payload.validate()?;
    let input = load_image(state, source, "image").await?;
    let credits = state.config.prices.native(payload.job.n());
    submit(state, key, payload, input, None, idempotency_key, photo.callback_url, credits).await
}

/// `POST /v1/cutouts`: a photo in, the product as a transparent PNG of the same size.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CutoutRequest {
    /// Photo to fetch.
    pub image_url: Option<String>,
    /// Photo as base64.
    pub image_base64: Option<String>,
    /// Segmentation model id (a `[segmentation.models]` entry); default: the configured
    /// default model.
    pub model: Option<String>,
    /// POSTed on every state change.
    pub callback_url: Option<String>,
    /// Your id for the task.
    pub client_task_id: Option<String>,
}

/// `POST /v1/cutouts` as `multipart/form-data`: the fields of [`CutoutRequest`] as text
/// parts, the photo as the file part `image`.
pub struct CutoutForm;

impl utoipa::PartialSchema for CutoutForm {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        crate::api::openapi::multipart_form::<CutoutRequest>(
            "`POST /v1/cutouts` as `multipart/form-data`: the JSON fields as text parts, the \
             photo as the file part `image`.",
            &[("image", "The photo, instead of `image_url` or `image_base64`.")],
        )
    }
}

impl ToSchema for CutoutForm {}

/// Submit a cut-out: the product of a photo as a transparent PNG.
#[utoipa::path(post, path = "/v1/cutouts",
    request_body(content(
        (CutoutRequest = "application/json"),
        (CutoutForm = "multipart/form-data"),
    )),
    responses(SubmitResponses),
    params(SubmitHeaders),
    security(("bearer" = []), ("api_key" = [])),
    tag = "tasks"
)]
async fn submit_cutout(
    State(state): State<AppState>,
    headers: HeaderMap,
    SubmitKey(key): SubmitKey,
    body: SubmitBody,
) -> Result<Response, ApiError> {
    let (req, mut files) = parse_submit::<CutoutRequest>(body).await?;
    let mut payload = TaskPayload::new(JobSpec::Cutout(CutoutSpec { model: req.model }));
    // The result is a transparent PNG; previews and watermarks are for backgrounds.
    payload.format = OutputFormat::Png;
    payload.preview_side = None;
    let photo = PhotoFields {
        image_url: req.image_url,
        image_base64: req.image_base64,
        callback_url: req.callback_url,
        client_task_id: req.client_task_id,
    };
    submit_photo(&state, key, &headers, payload, photo, &mut files).await
}

#[allow(clippy::too_many_arguments)]
async fn submit(
    state: &Shared,
    key: backdrop_store::ApiKey,
    payload: TaskPayload,
    input: Bytes,
    reference: Option<Bytes>,
    idempotency_key: Option<String>,
    callback_url: Option<String>,
    credits: i64,
) -> Result<Response, ApiError> {
    let created = service::submit(
        state,
        Submission {
            reference,
            idempotency_key,
            callback_url,
            ..Submission::new("native", key, payload, input, credits)
        },
    )
    .await?;
    let task = created.task;
    let status_url = format!("{}/v1/tasks/{}", state.public_url(), task.uid);
    let status = if created.created { StatusCode::ACCEPTED } else { StatusCode::OK };
    let body = Accepted {
        id: task.uid,
        state: task.state.to_string(),
        status_url: status_url.clone(),
        created: created.created,
    };
    Ok((status, [(header::LOCATION, status_url)], axum::Json(body)).into_response())
}

/// The native view of a task.
pub async fn task_view(state: &Shared, task: &Task) -> Result<TaskView, ApiError> {
    let queue_position = if task.state == TaskState::Queued {
        state.repo.queue_position(&task.uid).await?
    } else {
        None
    };
    let images = task
        .result
        .as_ref()
        .map(|r| {
            r.images
                .iter()
                .map(|img| ImageView {
                    index: img.index,
                    seed: img.seed,
                    url: signed_url(state, task, &img.blob),
                    preview_url: img
                        .preview_blob
                        .as_deref()
                        .and_then(|b| signed_url(state, task, b)),
                    watermarked_url: img
                        .watermarked_blob
                        .as_deref()
                        .and_then(|b| signed_url(state, task, b)),
                })
                .collect()
        })
        .unwrap_or_default();
    let notes = task
        .result
        .as_ref()
        .map(|r| r.notes.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect())
        .unwrap_or_default();
    Ok(TaskView {
        id: task.uid.clone(),
        kind: task.kind().to_string(),
        state: task.state.to_string(),
        engine: task.engine.to_string(),
        n: task.n(),
        queue_position,
        progress: ProgressView {
            percent: percent(task),
            step: task.progress.step,
            steps: task.progress.steps,
        },
        seed: task.result.as_ref().map(|r| r.seed).or(task.payload.job.seed()),
        attempts: task.attempts,
        created_at: task.created_at,
        started_at: task.started_at,
        finished_at: task.finished_at,
        expires_at: task.expires_at,
        width: task.result.as_ref().map(|r| r.width),
        height: task.result.as_ref().map(|r| r.height),
        images,
        expired: task.result_expired,
        notes,
        error: task.error_code.map(|code| ErrorBody {
            code,
            message: task.error_message.clone().unwrap_or_default(),
        }),
    })
}

/// The native callback body: the task view as it stood when it entered `state`.
pub fn callback_body(state: &Shared, task: &Task, entered: TaskState) -> String {
    let images: Vec<Value> = announced_images(task, entered)
        .iter()
        .map(|img| json!({"index": img.index, "seed": img.seed, "url": signed_url(state, task, &img.blob)}))
        .collect();
    json!({
        "id": task.uid,
        "kind": task.kind().to_string(),
        "state": entered.as_str(),
        "engine": task.engine.as_str(),
        "images": images,
        "error": task.error_code.filter(|_| entered.is_terminal()).map(|code| json!({"code": code, "message": task.error_message})),
        "created_at": task.created_at,
    })
    .to_string()
}

/// A task: state, queue position, progress, seed, timings, signed result URLs, error.
#[utoipa::path(get, path = "/v1/tasks/{id}",
    responses(
        (status = 200, description = "The task.", body = TaskView),
        TaskErrors,
    ),
    params(TaskPath),
    security(("bearer" = []), ("api_key" = [])),
    tag = "tasks"
)]
async fn get_task(
    State(state): State<AppState>,
    KeyTask { task, .. }: KeyTask,
) -> Result<axum::Json<TaskView>, ApiError> {
    Ok(axum::Json(task_view(&state, &task).await?))
}

/// Cancel a task: a queued one at once, a running one at its next step.
#[utoipa::path(delete, path = "/v1/tasks/{id}",
    responses(
        (status = 200, description = "The task, canceled (or being canceled).", body = TaskView),
        TaskErrors,
        (status = 409, description = "`task_finished`: the task has already ended.", body = ErrorBody),
    ),
    params(TaskPath),
    security(("bearer" = []), ("api_key" = [])),
    tag = "tasks"
)]
async fn cancel_task(
    State(state): State<AppState>,
    KeyTask { task, .. }: KeyTask,
) -> Result<axum::Json<TaskView>, ApiError> {
    if task.state.is_terminal() {
        return Err(ApiError::new(
            ErrorCode::TaskFinished,
            format!("the task is already {}", task.state),
        ));
    }
    let id = task.uid;
    let task = state
        .repo
        .cancel(&id, crate::now_ms())
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no task '{id}'")))?;
    Ok(axum::Json(task_view(&state, &task).await?))
}

/// Query of `GET /v1/tasks`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// Only this state.
    pub state: Option<String>,
    /// Only `background`, `expansion` or `cutout`.
    pub kind: Option<String>,
    /// Page size, 1..=100 (default 20).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// The key's tasks, newest first, a page at a time.
#[utoipa::path(get, path = "/v1/tasks",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of tasks.", body = TaskPage),
        (status = 400, description = "A query parameter is refused.", body = ErrorBody),
        (status = 401, description = "No key, or an unknown or revoked key.", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = [])),
    tag = "tasks"
)]
async fn list_tasks(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<axum::Json<TaskPage>, ApiError> {
    let key = authenticate(state.repo.as_ref(), &headers).await?;
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::new(ErrorCode::InvalidParameter, "limit must be between 1 and 100"));
    }
    let filter = TaskFilter {
        state: parse_opt::<TaskState>(q.state.as_deref(), ErrorCode::InvalidParameter)?,
        kind: match q.kind.as_deref() {
            None => None,
            Some("background") => Some(JobKind::Background),
            Some("expansion") => Some(JobKind::Expansion),
            Some("cutout") => Some(JobKind::Cutout),
            Some(other) => {
                return Err(ApiError::new(
                    ErrorCode::InvalidParameter,
                    format!("unknown kind '{other}' (expected background, expansion or cutout)"),
                ))
            }
        },
        surface: None,
        before: q
            .cursor
            .as_deref()
            .map(|c| {
                c.parse::<i64>().map_err(|_| {
                    ApiError::new(ErrorCode::InvalidCursor, "the cursor is not one this API gave")
                })
            })
            .transpose()?,
        limit: limit + 1,
        offset: 0,
    };
    let mut tasks = state.repo.list_tasks(key.id, &filter).await?;
    let next_cursor = if tasks.len() > limit as usize {
        tasks.truncate(limit as usize);
        tasks.last().map(|t| t.id.to_string())
    } else {
        None
    };
    let mut views = Vec::with_capacity(tasks.len());
    for task in &tasks {
        views.push(task_view(&state, task).await?);
    }
    Ok(axum::Json(TaskPage { tasks: views, next_cursor }))
}

/// The task as server-sent events until it ends: an event `progress` with the task view
/// (a [`TaskView`] as JSON) whenever it changes, then one `done` when it has ended.
#[utoipa::path(get, path = "/v1/tasks/{id}/events",
    responses(
        (status = 200, description = "`event: progress` for each change and `event: done` for the end; `data` is the task view as JSON (the `TaskView` schema).",
            content_type = "text/event-stream", body = String),
        TaskErrors,
        (status = 429, description = "`too_many_streams`: the key holds as many event streams as it may.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
    params(TaskPath),
    security(("bearer" = []), ("api_key" = [])),
    tag = "tasks"
)]
async fn task_events(
    State(state): State<AppState>,
    KeyTask { key, task }: KeyTask,
) -> Result<Response, ApiError> {
    let id = task.uid;
    // The slot lives in the stream's state: it comes back when the stream ends or the
    // client goes away.
    let slot = service::hold_stream(&state, &key.id.to_string())?;
    // Poll the shared database rather than in-process state, so the events are right
    // whichever node or worker runs the task.
    let stream = futures::stream::unfold(
        (state, id, None::<String>, false, slot),
        |(state, id, last, done, slot)| async move {
            if done {
                return None;
            }
            loop {
                let task = match state.repo.task(&id).await {
                    Ok(Some(task)) => task,
                    _ => return None,
                };
                let view = match task_view(&state, &task).await {
                    Ok(view) => view,
                    Err(_) => return None,
                };
                let text = serde_json::to_string(&view).unwrap_or_default();
                if last.as_deref() != Some(text.as_str()) {
                    let terminal = task.state.is_terminal();
                    let event = Event::default()
                        .event(if terminal { "done" } else { "progress" })
                        .data(text.clone());
                    return Some((
                        Ok::<Event, Infallible>(event),
                        (state, id, Some(text), terminal, slot),
                    ));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

/// The task's callback deliveries.
#[utoipa::path(get, path = "/v1/tasks/{id}/callbacks",
    responses(
        (status = 200, description = "The callback URL and every delivery attempt.", body = CallbackLog),
        TaskErrors,
    ),
    params(TaskPath),
    security(("bearer" = []), ("api_key" = [])),
    tag = "tasks"
)]
async fn task_callbacks(
    State(state): State<AppState>,
    KeyTask { task, .. }: KeyTask,
) -> Result<axum::Json<CallbackLog>, ApiError> {
    let log = state.repo.deliveries(&task.uid).await?;
    let deliveries = log
        .into_iter()
        .map(|d| DeliveryView {
            state: d.state.as_str().to_string(),
            url: d.url,
            attempt: d.attempt,
            status: d.status,
            error: d.error,
            delivered: d.delivered,
            at: d.at,
        })
        .collect();
    Ok(axum::Json(CallbackLog { callback_url: task.callback_url, deliveries }))
}

/// `GET /v1/tasks/{id}/callbacks`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallbackLog {
    /// Where the task's callbacks go; null when it has none.
    pub callback_url: Option<String>,
    /// Every delivery attempt.
    pub deliveries: Vec<DeliveryView>,
}

/// One callback delivery attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    /// The state change announced.
    pub state: String,
    /// Where it was POSTed.
    pub url: String,
    /// 1-based attempt number.
    pub attempt: u32,
    /// The receiver's HTTP status; null when no answer came.
    pub status: Option<u16>,
    /// What went wrong; null when delivered.
    pub error: Option<String>,
    /// Whether this attempt delivered it.
    pub delivered: bool,
    /// When (ms).
    pub at: i64,
}

/// The scene templates.
#[utoipa::path(get, path = "/v1/scenes", operation_id = "list_scenes",
    responses((status = 200, description = "Every scene template.", body = SceneList)),
    tag = "catalog"
)]
async fn scenes() -> axum::Json<SceneList> {
    let scenes = SCENES
        .iter()
        .map(|s| SceneView {
            id: s.id.to_string(),
            name: s.name.to_string(),
            description: s.description.to_string(),
            keywords: s.keywords.iter().map(|k| k.to_string()).collect(),
            thumbnail_url: format!("/v1/scenes/{}/thumbnail", s.id),
        })
        .collect();
    axum::Json(SceneList { scenes })
}

/// `GET /v1/scenes`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SceneList {
    /// The templates.
    pub scenes: Vec<SceneView>,
}

/// A scene template: pass its `id` as `scene`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SceneView {
    /// Id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// One sentence.
    pub description: String,
    /// Words of a prompt that pick this scene.
    pub keywords: Vec<String>,
    /// Path of its thumbnail.
    pub thumbnail_url: String,
}

/// Side lengths of a scene thumbnail (4:3, what a picker shows).
const THUMBNAIL_SIZE: (u32, u32) = (192, 144);

/// `GET /v1/scenes/{id}/thumbnail`: the scene as the `studio` engine renders it with no
/// product (seed 1), as a small JPEG. The images depend only on the binary, so they are
/// rendered once per process and may be cached by clients for a day.
#[utoipa::path(get, path = "/v1/scenes/{id}/thumbnail",
    summary = "A scene as the `studio` engine renders it with no product, as a small JPEG.",
    params(("id" = String, Path, description = "Scene id.")),
    responses(
        (status = 200, description = "A 192x144 JPEG of the scene; cacheable for a day.",
            content_type = "image/jpeg", body = inline(crate::api::openapi::Binary)),
        (status = 404, description = "No such scene.", body = ErrorBody),
    ),
    tag = "catalog"
)]
async fn scene_thumbnail(Path(id): Path<String>) -> Result<Response, ApiError> {
    let index = SCENES
        .iter()
        .position(|s| s.id == id)
        .ok_or_else(|| ApiError::not_found(format!("no scene '{id}' (see GET /v1/scenes)")))?;
    static RENDERED: std::sync::OnceLock<Vec<Bytes>> = std::sync::OnceLock::new();
    let rendered = match RENDERED.get() {
        Some(all) => all,
        None => {
            let all = tokio::task::spawn_blocking(render_scene_thumbnails)
                .await
                .map_err(ApiError::internal)??;
            RENDERED.get_or_init(|| all)
        }
    };
    Ok((
        [(header::CONTENT_TYPE, "image/jpeg"), (header::CACHE_CONTROL, "public, max-age=86400")],
        rendered[index].clone(),
    )
        .into_response())
}

fn render_scene_thumbnails() -> Result<Vec<Bytes>, ApiError> {
    use backdrop_core::{CancelToken, Engine, EngineInput, EngineOptions, RunControl};
    let (width, height) = THUMBNAIL_SIZE;
    let canvas = image::RgbaImage::new(width, height);
    let mask = image::GrayImage::from_pixel(width, height, image::Luma([255]));
    let options = EngineOptions { no_shadow: true, ..EngineOptions::default() };
    let engine = backdrop_engines::studio::StudioEngine::default();
    SCENES
        .iter()
        .map(|scene| {
            let input = EngineInput {
                scene: Some(scene.id),
                seed: 1,
                ..EngineInput::new(JobKind::Background, &canvas, &mask, &options)
            };
            let out = engine
                .generate(&input, RunControl::new(&(), &CancelToken::default()))
                .map_err(|e| ApiError::internal(format!("scene {} thumbnail: {e}", scene.id)))?;
            let image = out.images.first().ok_or_else(|| {
                ApiError::internal(format!("scene {} thumbnail: no image", scene.id))
            })?;
            backdrop_imaging::encode::encode(image, OutputFormat::Jpeg)
                .map(Bytes::from)
                .map_err(|e| ApiError::internal(format!("scene {} thumbnail: {e}", scene.id)))
        })
        .collect()
}

/// The engines this server runs and its configured diffusion models.
#[utoipa::path(get, path = "/v1/models", operation_id = "list_models",
    responses(
        (status = 200, description = "Engines and models.", body = ModelList),
        (status = 401, description = "No key, or an unknown or revoked key.", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = [])),
    tag = "catalog"
)]
async fn models(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<axum::Json<ModelList>, ApiError> {
    authenticate(state.repo.as_ref(), &headers).await?;
    let engines = state.engines.available().iter().map(|e| e.as_str().to_string()).collect();
    Ok(axum::Json(ModelList { engines, models: state.models.clone() }))
}

/// `GET /v1/models`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelList {
    /// Engines that can run here (`engine` of a submit).
    pub engines: Vec<String>,
    /// Configured diffusion models (`model` of a submit), as the binary lists them.
    #[schema(value_type = Vec<ModelInfo>)]
    pub models: Vec<Value>,
}

/// A configured diffusion model, as `backdrop serve` lists it.
#[derive(Debug, ToSchema)]
pub struct ModelInfo {
    /// Model id.
    pub id: String,
    /// Whether it is the default model.
    pub default: bool,
    /// Free text from the configuration.
    pub description: Option<String>,
    /// Default denoising steps.
    pub steps: Option<u32>,
    /// Default guidance scale.
    pub guidance: Option<f32>,
    /// Default scheduler.
    pub scheduler: Option<String>,
    /// LoRAs that may be applied to it.
    #[schema(value_type = Vec<Object>)]
    pub loras: Vec<Value>,
}

/// The key's balance and its most recent credit movements.
#[utoipa::path(get, path = "/v1/account", operation_id = "get_account",
    responses(
        (status = 200, description = "The key, its balance and its latest 50 ledger entries.", body = AccountView),
        (status = 401, description = "No key, or an unknown or revoked key.", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = [])),
    tag = "account"
)]
async fn account(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<axum::Json<AccountView>, ApiError> {
    let key = authenticate(state.repo.as_ref(), &headers).await?;
    let ledger = state.repo.ledger(key.id).await?;
    let recent = ledger
        .into_iter()
        .rev()
        .take(50)
        .map(|e| LedgerView {
            task: e.task_uid,
            delta: e.delta,
            reason: e.reason,
            note: e.note,
            at: e.created_at,
        })
        .collect();
    Ok(axum::Json(AccountView {
        key: KeyView { id: key.id, name: key.name, prefix: key.prefix },
        balance: key.balance,
        ledger: recent,
    }))
}

/// `GET /v1/account`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountView {
    /// The key that asked.
    pub key: KeyView,
    /// Credits left; null for an unmetered key.
    pub balance: Option<i64>,
    /// The latest 50 credit movements, newest first.
    pub ledger: Vec<LedgerView>,
}

/// An API key, as its owner may see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    /// Numeric id.
    pub id: i64,
    /// Label.
    pub name: String,
    /// First characters of the key.
    pub prefix: String,
}

/// A credit movement.
#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerView {
    /// The task it belongs to, if any.
    pub task: Option<String>,
    /// Change of the balance (negative: reserved or spent).
    pub delta: i64,
    /// `reserve`, `charge`, `refund` or `grant`.
    pub reason: String,
    /// Free text.
    pub note: String,
    /// When (ms).
    pub at: i64,
}
