//! PicPik GenerateBackgrounds, wire-compatible: a PicPik client works against Backdrop by
//! changing its base URL and its PublicKey / private key pair.
//!
//! This module owns `POST /` (every PicPik call is a JSON body whose `Action` picks the
//! operation), the PicPik signature check, the translation of `GenerateBackgrounds` onto
//! the native [`BackgroundSpec`], the PicPik task details, and the surface's OpenAPI
//! document ([`Document`], `GET /openapi/picpik.json`).
//!
//! # Actions
//! - `GenerateBackgrounds` -> `TaskUID`.
//! - `ListTasksDetails` (`TaskUIDList`, at most [`MAX_TASK_UIDS`]) -> `TaskDetailList[]` of
//!   `{TaskUID, Action, Status, ImgList, Seed, TxtList, ConsumeApiPoint, ErrorCode,
//!   ErrorMassage}` (the vendor's spelling).
//! - `ListRunningTasks` -> `TaskUIDList` of the key's queued and running tasks.
//! - Any other `Action` is answered in the envelope with RetCode 161.
//!
//! # Auth
//! `PublicKey` is the key's vendor access key, the private key its vendor secret key
//! ([`crate::vendor_keys`]). `Signature` is checked with the vendor's algorithm
//! ([`signature`]): every parameter but the signature, keys sorted by byte order,
//! `key + value` concatenated (nested objects and arrays flattened, see
//! [`signature_string`]), the private key appended, SHA-1, lowercase hex. The signature
//! may come as `Signature` (the vendor's signer) or `signature` (some of its samples);
//! both names are left out of the signed string ([`SIGNATURE_FIELDS`]).
//!
//! # Reading the body
//! The signature covers the whole body, so the body is read before anything else: at
//! most the router's `limits.max_body_bytes` (a larger one is RetCode 100 naming the
//! limit, and is never parsed). Parsing the JSON and hashing it (up to 16 base64 images)
//! run on the blocking pool, not on the async threads; the signed string is hashed as
//! it is encoded, never built as one more copy of the body.
//!
//! # Replays and retries
//! A signed body stays valid for ever (PicPik signs no timestamp), so a captured or
//! retried `GenerateBackgrounds` must not make and charge a second task. Its
//! `request_uuid` is the task's idempotency key, per key (the native idempotency
//! mechanism of [`crate::service::submit`], stored with a `picpik:` prefix so it never
//! meets a native `Idempotency-Key`): the same body again answers the same `TaskUID`,
//! charges nothing more and takes no rate-limit token. The same `request_uuid` with a
//! different body is RetCode 230, since answering with another request's task would hide
//! the client's bug. Without a `request_uuid` every call makes a new task; at most
//! [`MAX_REQUEST_UUID_LEN`] characters are kept.
//!
//! # Envelope and codes
//! Every answer is HTTP 200 with `{RetCode, Action, Message, request_uuid}` (the
//! vendor's APIs report failures in `RetCode`, not in the HTTP status); `Action` and
//! `request_uuid` are echoed. The vendor does not publish its code list; these follow the
//! API platform its signature scheme comes from, where one exists:
//!
//! | RetCode | meaning |
//! |---|---|
//! | 0 | success |
//! | 100 | the body is not a JSON object, or is over the size limit |
//! | 160 | `Action` missing |
//! | 161 | `Action` unknown |
//! | 170 | `PublicKey` or `Signature` missing |
//! | 171 | `Signature` does not match |
//! | 172 | `PublicKey` unknown, or its key revoked |
//! | 230 | a parameter missing, of the wrong type or out of range (the message names it), a `request_uuid` reused for a different request, or `Width` x `Height` x the image count over the server's per-task memory limit |
//! | 231 | an image refused: not base64, not a PNG with transparency, too large or small |
//! | 232 | `MainModel.ModelCode` or a `SubModelList` model is not served here |
//! | 233 | a `TaskUID` unknown to this key |
//! | 284 | API points (credits) exhausted |
//! | 290 | submit rate limit (retry after a second) |
//! | 291 | too many images in flight for this key, or the queue is full |
//! | 500 | internal error |
//!
//! # Wire choices
//! - `MainModel.ModelCode`: `PICPIK General` (the vendor's default, also when
//!   `MainModel` is absent) runs Backdrop's default engine: the configured default
//!   diffusion model, or with none configured the weight-free studio engine, so a client
//!   always gets a background. Any other code must be the id of a configured diffusion
//!   model (`GET /v1/models`), which then runs on the diffusion engine; an unknown code
//!   is RetCode 232 naming the codes served.
//! - `SubModelList`: each entry is a LoRA: its `ModelCode` must be listed in the `loras`
//!   of the chosen model (any configured model, for `PICPIK General`), else RetCode 232;
//!   its `InferenceParams.LoraWeight` (default 1) is the LoRA weight. The main model's
//!   own `LoraWeight` is ignored: a main model here is never a LoRA.
//! - `InferenceParams.Steps` 6..=100, default 10 (the vendor's).
//! - `PositivePrompts` (at least one non-empty) and `NegativePrompts` are joined with
//!   `", "` into one prompt each.
//! - `TranslatePrompts` (default true) is accepted and recorded; prompts are used as
//!   given, since Backdrop runs no translation service. `TxtList` reports the prompt
//!   as used, so a client can see that no translation happened.
//! - `Seed` -1..=2147483647; -1 picks a random seed, reported in `Seed` of the details.
//! - `Width` / `Height` 64..=2560; either one alone keeps the foreground's other side;
//!   neither keeps the foreground's size.
//! - `BatchSize` 1..=16 images.
//! - `ImageList`: base64 images (a `data:` prefix is tolerated).
//!   `TransparentForeground.ImageIndex` (or the request example's
//!   `TransparentImageIndexList[0]`, else 0) picks the foreground, a PNG with
//!   transparency; `ResizeMode` (`JustResize`, `CropAndResize`, `ResizeAndFill`, the
//!   default) fits it into the output size.
//! - `BackgroundImage2Image`: `ImageIndex` picks the reference background,
//!   `ReferStrength` 0..=1 (default 0.3) and `ResizeMode` are the native reference
//!   settings. `DeepFusion` is accepted and recorded: Backdrop's engines always blend
//!   the reference into the whole background, so there is no separate pass and no extra
//!   charge.
//! - `UseMainModelVAE` is accepted and recorded; Backdrop's models always decode with
//!   the VAE they were exported with.
//! - `Status` in the details: the vendor's own words ([`STATUS_WORDS`]), the only ones
//!   it publishes (its task-detail API):
//!
//!   | task | `Status` | ended | `ErrorCode` | `ImgList` |
//!   |---|---|---|---|---|
//!   | queued | `Queuing` | no | 0 | `[]` |
//!   | running | `Running` | no | 0 | `[]` |
//!   | succeeded | `Finished` | yes | 0 | signed URLs |
//!   | succeeded, results expired | `Finished` | yes | 0 | `[]` |
//!   | failed | `Error` | yes | 500 | `[]` |
//!   | canceled | `Error` | yes | 499 | `[]` |
//!
//!   Every ended task is `Finished` or `Error` ([`TERMINAL_STATUS_WORDS`]), so a client
//!   that polls until it reads one of them always stops. The failure reason is in
//!   `ErrorMassage`. Signed URLs are kept for the configured result lifetime.
//!   `ConsumeApiPoint` is the credits charged (reserved, while the task runs).
//! - Credits: [`backdrop_core::PriceTable::picpik`] of `BatchSize`.

use crate::error::ApiError;
use crate::service::{self, check_rate, load_image, signed_url, ImageSource, Submission};
use crate::vendor_keys::{constant_time_eq, credentials, key_id};
use crate::{AppState, Shared};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use backdrop_core::ErrorCode;
use backdrop_core::{
    BackgroundSpec, CutoutMode, EngineName, JobSpec, LoraRef, OutputSize, ReferenceSpec,
    ResizeMode, TaskPayload, TaskState,
};
use backdrop_imaging::decode::InputFormat;
use backdrop_store::{ApiKey, SurfaceMeta, Task, TaskFilter};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha1::{Digest, Sha1};
use std::sync::Arc;
use utoipa::ToSchema;

/// The surface name stored with PicPik tasks.
pub const SURFACE: &str = "picpik";
/// The vendor's default main model.
pub const DEFAULT_MODEL: &str = "PICPIK General";
/// Most task ids one `ListTasksDetails` may ask for.
pub const MAX_TASK_UIDS: usize = 100;
/// Largest `Width` / `Height`.
pub const MAX_SIDE: u32 = 2560;
/// Smallest `Width` / `Height`.
pub const MIN_SIDE: u32 = 64;
/// Longest `request_uuid` kept as an idempotency key (a UUID is 36 characters).
pub const MAX_REQUEST_UUID_LEN: usize = 200;
/// Prefix of the idempotency key under which a `request_uuid` is stored.
const IDEMPOTENCY_PREFIX: &str = "picpik:";

/// The PicPik routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", post(handle))
        // Set here, inside the envelope layer, so a wrong method is answered in it too.
        .method_not_allowed_fallback(crate::api::method_not_allowed)
        .layer(axum::middleware::map_response(crate::api::surface_errors::<PicpikError>))
}

/// A failure in PicPik's envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct PicpikError {
    /// The RetCode.
    pub code: u32,
    /// One sentence.
    pub message: String,
}

impl PicpikError {
    fn new(code: u32, message: impl Into<String>) -> Self {
        PicpikError { code, message: message.into() }
    }

    fn param(message: impl Into<String>) -> Self {
        PicpikError::new(230, message)
    }
}

impl From<ApiError> for PicpikError {
    fn from(e: ApiError) -> Self {
        let code = match e.code {
            ErrorCode::RateLimited => 290,
            ErrorCode::ConcurrencyLimit | ErrorCode::QueueFull => 291,
            ErrorCode::InsufficientCredits => 284,
            // Outside an action: another method than POST, a body of another media type.
            ErrorCode::MethodNotAllowed
            | ErrorCode::InvalidBody
            | ErrorCode::UnsupportedMediaType => 100,
            _ if e.status().is_server_error() => 500,
            // Width, Height and the image count decide a task's size; steps are a
            // parameter too.
            ErrorCode::TaskTooLarge
            | ErrorCode::StepsOutOfRange
            | ErrorCode::GuidanceOutOfRange
            | ErrorCode::UnknownScheduler => 230,
            // What the service refuses at submit is the input image or an engine/model
            // it cannot serve; the parameters were checked here before.
            ErrorCode::UnknownEngine => 232,
            _ => 231,
        };
        PicpikError { code, message: e.message }
    }
}

/// An error outside an action (a method other than POST, a stray rejection) in the
/// envelope, with no `Action` to echo.
impl IntoResponse for PicpikError {
    fn into_response(self) -> Response {
        envelope("", &Value::Null, Err(self))
    }
}

/// The fields a client may carry its signature in: `Signature`, as the vendor's signer
/// sends it, and the lowercase `signature` of some of its samples. Neither is signed.
pub const SIGNATURE_FIELDS: [&str; 2] = ["Signature", "signature"];

/// Where the signed string goes: into text (to show it), or straight into the digest, so
/// a large body is never copied into one more string just to be hashed.
trait Sink {
    fn put(&mut self, text: &str);
}

impl Sink for String {
    fn put(&mut self, text: &str) {
        self.push_str(text);
    }
}

impl Sink for Sha1 {
    fn put(&mut self, text: &str) {
        Digest::update(self, text.as_bytes());
    }
}

fn encode_value(value: &Value, out: &mut impl Sink) {
    match value {
        Value::Null => {}
        Value::Bool(b) => out.put(if *b { "true" } else { "false" }),
        Value::String(s) => out.put(s),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => out.put(&i.to_string()),
            (_, Some(u), _) => out.put(&u.to_string()),
            // A whole float prints as an integer (42.0 -> 42).
            (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 1e15 => {
                out.put(&(f as i64).to_string());
            }
            _ => out.put(&n.to_string()),
        },
        Value::Array(items) => items.iter().for_each(|item| encode_value(item, out)),
        Value::Object(map) => encode_pairs(map, &[], out),
    }
}

fn encode_pairs(map: &Map<String, Value>, skip: &[&str], out: &mut impl Sink) {
    let mut keys: Vec<&String> = map.keys().filter(|k| !skip.contains(&k.as_str())).collect();
    // Byte order, as the vendor's samples sort.
    keys.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    for k in keys {
        out.put(k);
        encode_value(&map[k], out);
    }
}

/// The string the vendor signs: every parameter but the signature ([`SIGNATURE_FIELDS`]),
/// sorted, `key + value`, then the private key. Booleans are `true`/`false`, whole floats
/// print as integers, arrays concatenate their elements' encodings, objects their own
/// sorted pairs (recursively), and null is empty (its key stays).
pub fn signature_string(params: &Map<String, Value>, private_key: &str) -> String {
    let mut out = String::new();
    encode_pairs(params, &SIGNATURE_FIELDS, &mut out);
    out.put(private_key);
    out
}

/// The `Signature` of `params` under `private_key`: lowercase hex SHA-1 of
/// [`signature_string`], hashed as it is encoded.
pub fn signature(params: &Map<String, Value>, private_key: &str) -> String {
    let mut digest = Sha1::new();
    encode_pairs(params, &SIGNATURE_FIELDS, &mut digest);
    digest.put(private_key);
    hex::encode(digest.finalize())
}

fn envelope(
    action: &str,
    request_uuid: &Value,
    result: Result<Map<String, Value>, PicpikError>,
) -> Response {
    let mut body = Map::new();
    body.insert("Action".into(), Value::String(action.to_string()));
    match result {
        Ok(fields) => {
            body.insert("RetCode".into(), json!(0));
            body.insert("Message".into(), json!(""));
            body.extend(fields);
        }
        Err(e) => {
            body.insert("RetCode".into(), json!(e.code));
            body.insert("Message".into(), json!(e.message));
        }
    }
    body.insert("request_uuid".into(), request_uuid.clone());
    axum::Json(Value::Object(body)).into_response()
}

/// Every PicPik call: the body's `Action` picks the operation.
#[utoipa::path(post, path = "/", operation_id = "call",
    request_body(content = PicpikCall, content_type = "application/json"),
    responses(
        (status = 200, description = "Every answer, success or failure: `RetCode` 0 is success.", body = PicpikAnswer),
    )
)]
async fn handle(State(state): State<AppState>, request: axum::extract::Request) -> Response {
    // The router's body limit (`limits.max_body_bytes`) bounds what is read here, so
    // nothing larger is ever parsed or hashed.
    let body = match crate::body::read_bytes(request).await {
        Ok(body) => body,
        Err(e) => {
            let message = if e.code == ErrorCode::BodyTooLarge {
                format!(
                    "the body is larger than the limit of {} bytes",
                    state.config.limits.max_body_bytes
                )
            } else {
                format!("the body cannot be read: {}", e.message)
            };
            return envelope("", &Value::Null, Err(PicpikError::new(100, message)));
        }
    };
    // Parsing and hashing a body of many base64 images is CPU work: off the async threads.
    let shared = Arc::clone(&state);
    let read = tokio::task::spawn_blocking(move || read_body(&shared.server_secret, &body)).await;
    let Body { params, signed } = match read {
        Ok(Ok(body)) => body,
        Ok(Err(e)) => return envelope("", &Value::Null, Err(e)),
        Err(e) => return envelope("", &Value::Null, Err(ApiError::internal(e).into())),
    };
    let action = params.get("Action").and_then(Value::as_str).unwrap_or("").to_string();
    let request_uuid = params.get("request_uuid").cloned().unwrap_or(Value::String(String::new()));
    let result = dispatch(&state, &action, &params, signed).await;
    envelope(&action, &request_uuid, result)
}

/// What the body's credentials say, before the key is looked up: the key its `PublicKey`
/// was issued for, whether the signature is that key's, and the signature expected.
#[derive(Debug)]
struct Signed {
    key_id: i64,
    matches: bool,
    signature: String,
}

/// A body as a JSON object, and what its credentials say.
struct Body {
    params: Map<String, Value>,
    signed: Result<Signed, PicpikError>,
}

/// The body as a JSON object, and its credentials checked against the key pair the
/// `PublicKey` names (RetCode 170 or 172 when they are missing or not this server's).
/// A body that is not a JSON object is RetCode 100.
fn read_body(server_secret: &[u8], body: &[u8]) -> Result<Body, PicpikError> {
    let params = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => map,
        _ => return Err(PicpikError::new(100, "the body must be a JSON object")),
    };
    let signed = verify(server_secret, &params);
    Ok(Body { params, signed })
}

fn verify(server_secret: &[u8], params: &Map<String, Value>) -> Result<Signed, PicpikError> {
    let public = params.get("PublicKey").and_then(Value::as_str).filter(|s| !s.is_empty());
    let given = SIGNATURE_FIELDS
        .iter()
        .find_map(|name| params.get(*name).and_then(Value::as_str).filter(|s| !s.is_empty()));
    let (Some(public), Some(given)) = (public, given) else {
        return Err(PicpikError::new(170, "PublicKey and Signature are required"));
    };
    let key_id = key_id(server_secret, public).ok_or_else(unknown_key)?;
    let signature = signature(params, &credentials(server_secret, key_id).secret_key);
    let matches = constant_time_eq(given.to_ascii_lowercase().as_bytes(), signature.as_bytes());
    Ok(Signed { key_id, matches, signature })
}

fn unknown_key() -> PicpikError {
    PicpikError::new(172, "PublicKey is unknown or revoked")
}

async fn dispatch(
    state: &Shared,
    action: &str,
    params: &Map<String, Value>,
    signed: Result<Signed, PicpikError>,
) -> Result<Map<String, Value>, PicpikError> {
    let signed = signed?;
    let key = state
        .repo
        .key(signed.key_id)
        .await
        .map_err(|e| PicpikError::from(ApiError::from(e)))?
        .filter(|k| k.revoked_at.is_none())
        .ok_or_else(unknown_key)?;
    if !signed.matches {
        return Err(PicpikError::new(171, "Signature does not match"));
    }
    match action {
        "" => Err(PicpikError::new(160, "Action is missing")),
        "GenerateBackgrounds" => generate(state, key, params, &signed.signature).await,
        "ListTasksDetails" => details(state, &key, params).await,
        "ListRunningTasks" => running(state, &key).await,
        other => Err(PicpikError::new(161, format!("Action '{other}' does not exist here"))),
    }
}

/// A typed read of an optional field, with RetCode 230 naming it when its type is wrong.
fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).filter(|v| !v.is_null())
}

fn int_field(
    obj: &Map<String, Value>,
    name: &str,
    min: i64,
    max: i64,
) -> Result<Option<i64>, PicpikError> {
    match field(obj, name) {
        None => Ok(None),
        Some(v) => {
            let n = v
                .as_i64()
                .or_else(|| {
                    v.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 1e15).map(|f| f as i64)
                })
                .ok_or_else(|| PicpikError::param(format!("{name} must be an integer")))?;
            if (min..=max).contains(&n) {
                Ok(Some(n))
            } else {
                Err(PicpikError::param(format!("{name} must be between {min} and {max}; got {n}")))
            }
        }
    }
}

fn bool_field(obj: &Map<String, Value>, name: &str) -> Result<Option<bool>, PicpikError> {
    field(obj, name)
        .map(|v| v.as_bool().ok_or_else(|| PicpikError::param(format!("{name} must be a boolean"))))
        .transpose()
}

fn str_field<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, PicpikError> {
    field(obj, name)
        .map(|v| v.as_str().ok_or_else(|| PicpikError::param(format!("{name} must be a string"))))
        .transpose()
}

fn obj_field<'a>(
    obj: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a Map<String, Value>>, PicpikError> {
    field(obj, name)
        .map(|v| {
            v.as_object().ok_or_else(|| PicpikError::param(format!("{name} must be an object")))
        })
        .transpose()
}

fn list_field<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<&'a [Value], PicpikError> {
    match field(obj, name) {
        None => Ok(&[]),
        Some(v) => v
            .as_array()
            .map(Vec::as_slice)
            .ok_or_else(|| PicpikError::param(format!("{name} must be an array"))),
    }
}

fn strings(obj: &Map<String, Value>, name: &str) -> Result<Vec<String>, PicpikError> {
    list_field(obj, name)?
        .iter()
        .map(|v| {
            v.as_str()
                .map(|s| s.trim().to_string())
                .ok_or_else(|| PicpikError::param(format!("{name} must be an array of strings")))
        })
        .filter(|s| !matches!(s, Ok(s) if s.is_empty()))
        .collect()
}

fn resize_mode(obj: &Map<String, Value>, what: &str) -> Result<ResizeMode, PicpikError> {
    match str_field(obj, "ResizeMode")? {
        None | Some("") => Ok(ResizeMode::ResizeAndFill),
        Some(text) => {
            text.parse().map_err(|e: String| PicpikError::param(format!("{what}.ResizeMode: {e}")))
        }
    }
}

/// Model id, engine, LoRAs and steps.
type Models = (Option<String>, EngineName, Vec<LoraRef>, Option<u32>);

/// The model id, engine, LoRAs and steps a `MainModel` and `SubModelList` resolve to.
fn resolve_models(state: &Shared, params: &Map<String, Value>) -> Result<Models, PicpikError> {
    let main = obj_field(params, "MainModel")?;
    let code = main.map(|m| str_field(m, "ModelCode")).transpose()?.flatten().map(str::trim);
    let inference = main.map(|m| obj_field(m, "InferenceParams")).transpose()?.flatten();
    let steps =
        inference.map(|i| int_field(i, "Steps", 6, 100)).transpose()?.flatten().unwrap_or(10);
    let id_of = |m: &Value| m.get("id").and_then(Value::as_str).map(str::to_string);
    let served: Vec<String> = state.models.iter().filter_map(id_of).collect();
    let (model, engine, chosen): (Option<String>, EngineName, Vec<&Value>) = match code {
        None | Some("") => (None, EngineName::Auto, state.models.iter().collect()),
        Some(c) if c.eq_ignore_ascii_case(DEFAULT_MODEL) => {
            (None, EngineName::Auto, state.models.iter().collect())
        }
        Some(c) => match state.models.iter().find(|m| id_of(m).as_deref() == Some(c)) {
            Some(m) => (Some(c.to_string()), EngineName::Diffusion, vec![m]),
            None => {
                let mut names = vec![DEFAULT_MODEL.to_string()];
                names.extend(served);
                return Err(PicpikError::new(
                    232,
                    format!(
                        "MainModel.ModelCode '{c}' is not served here; available: {}",
                        names.join(", ")
                    ),
                ));
            }
        },
    };
    let lora_names = |m: &Value| -> Vec<String> {
        m.get("loras")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|l| l.as_str().or_else(|| l.get("name").and_then(Value::as_str)))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let available: Vec<String> = chosen.iter().flat_map(|m| lora_names(m)).collect();
    let mut loras = Vec::new();
    for (i, sub) in list_field(params, "SubModelList")?.iter().enumerate() {
        let sub = sub
            .as_object()
            .ok_or_else(|| PicpikError::param(format!("SubModelList[{i}] must be an object")))?;
        let name =
            str_field(sub, "ModelCode")?.map(str::trim).filter(|s| !s.is_empty()).ok_or_else(
                || PicpikError::param(format!("SubModelList[{i}].ModelCode is required")),
            )?;
        if !available.iter().any(|a| a == name) {
            return Err(PicpikError::new(
                232,
                format!(
                    "SubModelList model '{name}' is not served here; LoRAs available: {}",
                    if available.is_empty() { "none".to_string() } else { available.join(", ") }
                ),
            ));
        }
        let weight = match obj_field(sub, "InferenceParams")?.and_then(|p| field(p, "LoraWeight")) {
            None => 1.0,
            Some(v) => v.as_f64().ok_or_else(|| {
                PicpikError::param(format!(
                    "SubModelList[{i}].InferenceParams.LoraWeight must be a number"
                ))
            })? as f32,
        };
        loras.push(LoraRef { name: name.to_string(), weight });
    }
    Ok((model, engine, loras, Some(steps as u32)))
}

fn image_at(images: &[Value], index: i64, what: &str) -> Result<String, PicpikError> {
    usize::try_from(index)
        .ok()
        .and_then(|i| images.get(i))
        .ok_or_else(|| {
            PicpikError::param(format!(
                "{what}.ImageIndex {index} is not an index of ImageList ({} images)",
                images.len()
            ))
        })?
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| PicpikError::param("ImageList must be an array of base64 strings"))
}

/// The idempotency key a `request_uuid` is stored under (prefixed, so it never collides
/// with a native `Idempotency-Key`); `None` when the request carries no `request_uuid`.
/// What a `GenerateBackgrounds` task keeps: the request's uuid and signature (to tell a
/// replay from a reused uuid), the prompt it echoes, and the options it was asked with.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct GenerateMeta {
    request_uuid: Option<String>,
    signature: String,
    model_code: String,
    prompt: String,
    translate_prompts: bool,
    use_main_model_vae: bool,
    deep_fusion: bool,
}

fn idempotency_key(params: &Map<String, Value>) -> Result<Option<String>, PicpikError> {
    match str_field(params, "request_uuid")?.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(uuid) if uuid.len() > MAX_REQUEST_UUID_LEN => Err(PicpikError::param(format!(
            "request_uuid is longer than {MAX_REQUEST_UUID_LEN} characters"
        ))),
        Some(uuid) => Ok(Some(format!("{IDEMPOTENCY_PREFIX}{uuid}"))),
    }
}

/// The answer to a `GenerateBackgrounds` whose `request_uuid` already made `task`: the
/// same `TaskUID` when the body is the same (a replay or a retry), RetCode 230 when the
/// uuid was reused for a different request, which is a client bug to surface, not to
/// answer with someone else's task.
fn replayed(task: &Task, signature: &str) -> Result<Map<String, Value>, PicpikError> {
    let same_body =
        task.surface == SURFACE && task.surface_meta.read::<GenerateMeta>().signature == signature;
    if !same_body {
        let uuid = task.idempotency_key.as_deref().unwrap_or_default();
        let uuid = uuid.strip_prefix(IDEMPOTENCY_PREFIX).unwrap_or(uuid);
        return Err(PicpikError::param(format!(
            "request_uuid '{uuid}' was already used by a different request of this key"
        )));
    }
    let mut out = Map::new();
    out.insert("TaskUID".into(), Value::String(task.uid.clone()));
    Ok(out)
}

async fn generate(
    state: &Shared,
    key: ApiKey,
    params: &Map<String, Value>,
    signature: &str,
) -> Result<Map<String, Value>, PicpikError> {
    let idempotency_key = idempotency_key(params)?;
    if let Some(idem) = &idempotency_key {
        // A replay is answered before the rate limit and before any image is decoded.
        if let Some(task) =
            state.repo.task_by_idempotency_key(key.id, idem).await.map_err(ApiError::from)?
        {
            return replayed(&task, signature);
        }
    }
    check_rate(state, &key.id.to_string())?;
    let (model, engine, loras, steps) = resolve_models(state, params)?;
    let positive = strings(params, "PositivePrompts")?;
    if positive.is_empty() {
        return Err(PicpikError::param("PositivePrompts needs at least one prompt"));
    }
    let negative = strings(params, "NegativePrompts")?;
    let translate = bool_field(params, "TranslatePrompts")?.unwrap_or(true);
    let use_vae = bool_field(params, "UseMainModelVAE")?.unwrap_or(false);
    let seed = int_field(params, "Seed", -1, 2_147_483_647)?.unwrap_or(-1);
    let width = int_field(params, "Width", i64::from(MIN_SIDE), i64::from(MAX_SIDE))?;
    let height = int_field(params, "Height", i64::from(MIN_SIDE), i64::from(MAX_SIDE))?;
    let batch = int_field(params, "BatchSize", 1, 16)?.unwrap_or(1);
    let images = list_field(params, "ImageList")?;
    if images.is_empty() {
        return Err(PicpikError::param("ImageList needs the foreground image"));
    }
    let foreground = obj_field(params, "TransparentForeground")?;
    let fg_index =
        match foreground.map(|f| int_field(f, "ImageIndex", 0, i64::MAX)).transpose()?.flatten() {
            Some(i) => i,
            None => list_field(params, "TransparentImageIndexList")?
                .first()
                .and_then(Value::as_i64)
                .unwrap_or(0),
        };
    let fg_mode = foreground
        .map(|f| resize_mode(f, "TransparentForeground"))
        .transpose()?
        .unwrap_or_default();
    let fg_text = image_at(images, fg_index, "TransparentForeground")?;
    let i2i = obj_field(params, "BackgroundImage2Image")?;
    let (reference, deep_fusion, ref_text) = match i2i {
        None => (None, false, None),
        Some(r) => {
            let index = int_field(r, "ImageIndex", 0, i64::MAX)?.ok_or_else(|| {
                PicpikError::param("BackgroundImage2Image.ImageIndex is required")
            })?;
            let strength = match field(r, "ReferStrength") {
                None => 0.3,
                Some(v) => v.as_f64().ok_or_else(|| {
                    PicpikError::param("BackgroundImage2Image.ReferStrength must be a number")
                })?,
            };
            if !(0.0..=1.0).contains(&strength) {
                return Err(PicpikError::param(format!(
                    "BackgroundImage2Image.ReferStrength must be between 0 and 1; got {strength}"
                )));
            }
            let mode = resize_mode(r, "BackgroundImage2Image")?;
            let fusion = bool_field(r, "DeepFusion")?.unwrap_or(false);
            let text = image_at(images, index, "BackgroundImage2Image")?;
            (
                Some(ReferenceSpec { strength: strength as f32, resize_mode: mode }),
                fusion,
                Some(text),
            )
        }
    };
    let input = load_image(state, ImageSource::Base64(fg_text), "ImageList foreground").await?;
    if InputFormat::sniff(&input) != Some(InputFormat::Png) {
        return Err(PicpikError::new(
            231,
            "the foreground image must be a PNG with a transparent background",
        ));
    }
    let size = if width.is_some() || height.is_some() {
        let (fw, fh) = crate::service::image_dimensions(&input)
            .ok_or_else(|| PicpikError::new(231, "the foreground image cannot be read"))?;
        Some(OutputSize {
            width: width.map_or(fw, |w| w as u32),
            height: height.map_or(fh, |h| h as u32),
        })
    } else {
        None
    };
    let reference_bytes = match ref_text {
        Some(text) => {
            Some(load_image(state, ImageSource::Base64(text), "ImageList reference").await?)
        }
        None => None,
    };
    let prompt = positive.join(", ");
    let spec = BackgroundSpec {
        prompt: Some(prompt.clone()),
        scene: None,
        negative_prompt: (!negative.is_empty()).then(|| negative.join(", ")),
        n: batch as u32,
        seed: u64::try_from(seed).ok(),
        size,
        resize_mode: fg_mode,
        steps,
        model: model.clone(),
        loras,
        reference,
        // PicPik carries no placement or shadow fields: `Width`/`Height`/`ResizeMode`
        // map onto size and resize mode, and the product keeps the engine's shadow.
        framing: Default::default(),
        // The surface documents transparent PNG input; photos stay refused.
        cutout: CutoutMode::Never,
    };
    let mut payload = TaskPayload::new(JobSpec::Background(spec));
    payload.engine = engine;
    payload.validate().map_err(|e| PicpikError::param(e.to_string()))?;
    let credits = state.config.prices.picpik(batch as u32);
    let created = service::submit(
        state,
        Submission {
            reference: reference_bytes,
            idempotency_key,
            surface_meta: SurfaceMeta::new(&GenerateMeta {
                request_uuid: str_field(params, "request_uuid")?.map(str::to_string),
                signature: signature.to_string(),
                model_code: model.as_deref().unwrap_or(DEFAULT_MODEL).to_string(),
                prompt: prompt.clone(),
                translate_prompts: translate,
                use_main_model_vae: use_vae,
                deep_fusion,
            }),
            ..Submission::new(SURFACE, key, payload, input, credits)
        },
    )
    .await?;
    if !created.created {
        // The same request_uuid raced this one in; the service returned its task.
        return replayed(&created.task, signature);
    }
    let mut out = Map::new();
    out.insert("TaskUID".into(), Value::String(created.task.uid));
    Ok(out)
}

/// PicPik's word for a state: the vendor's own words (its task-detail API publishes
/// `Queuing`, `Running`, `Finished`, `Error`). Every ended state is `Finished` or
/// `Error`, so a client that polls until it sees one of those always stops.
pub fn status_name(state: TaskState) -> &'static str {
    match state {
        TaskState::Queued => "Queuing",
        TaskState::Running => "Running",
        TaskState::Succeeded => "Finished",
        TaskState::Failed | TaskState::Canceled => "Error",
    }
}

/// Every `Status` word [`status_name`] gives, and the ones that mean the task ended.
pub const STATUS_WORDS: [&str; 4] = ["Queuing", "Running", "Finished", "Error"];
/// The `Status` words of an ended task.
pub const TERMINAL_STATUS_WORDS: [&str; 2] = ["Finished", "Error"];

fn detail(state: &Shared, task: &Task) -> Value {
    let images: Vec<Value> = task
        .result
        .as_ref()
        .filter(|_| task.state == TaskState::Succeeded)
        .map(|r| {
            r.images
                .iter()
                .filter_map(|img| signed_url(state, task, &img.blob))
                .map(Value::String)
                .collect()
        })
        .unwrap_or_default();
    let seed = task.result.as_ref().map(|r| r.seed).or(task.payload.job.seed());
    let prompt = task.surface_meta.read::<GenerateMeta>().prompt;
    let error_code = match task.state {
        TaskState::Failed => 500,
        TaskState::Canceled => 499,
        _ => 0,
    };
    let points =
        if task.state.is_terminal() { task.credits_charged } else { task.credits_reserved };
    json!({
        "TaskUID": task.uid,
        "Action": "GenerateBackgrounds",
        "Status": status_name(task.state),
        "ImgList": images,
        "Seed": seed,
        "TxtList": [prompt],
        "ConsumeApiPoint": points,
        "ErrorCode": error_code,
        "ErrorMassage": task.error_message.clone().unwrap_or_default(),
    })
}

async fn details(
    state: &Shared,
    key: &ApiKey,
    params: &Map<String, Value>,
) -> Result<Map<String, Value>, PicpikError> {
    let uids = strings(params, "TaskUIDList")?;
    if uids.is_empty() || uids.len() > MAX_TASK_UIDS {
        return Err(PicpikError::param(format!("TaskUIDList needs 1 to {MAX_TASK_UIDS} task ids")));
    }
    let mut list = Vec::with_capacity(uids.len());
    for uid in &uids {
        let task = state
            .repo
            .task(uid)
            .await
            .map_err(ApiError::from)?
            .filter(|t| t.key_id == key.id && t.surface == SURFACE)
            .ok_or_else(|| PicpikError::new(233, format!("TaskUID '{uid}' does not exist")))?;
        list.push(detail(state, &task));
    }
    let mut out = Map::new();
    out.insert("TaskDetailList".into(), Value::Array(list));
    Ok(out)
}

async fn running(state: &Shared, key: &ApiKey) -> Result<Map<String, Value>, PicpikError> {
    let mut uids = Vec::new();
    for task_state in [TaskState::Running, TaskState::Queued] {
        let filter = TaskFilter {
            state: Some(task_state),
            surface: Some(SURFACE.to_string()),
            limit: 1000,
            ..TaskFilter::default()
        };
        let tasks = state.repo.list_tasks(key.id, &filter).await.map_err(ApiError::from)?;
        uids.extend(tasks.into_iter().map(|t| Value::String(t.uid)));
    }
    let mut out = Map::new();
    out.insert("TaskUIDList".into(), Value::Array(uids));
    Ok(out)
}

/// The surface's OpenAPI document (`GET /openapi/picpik.json`). The handler reads the body
/// as a JSON object (its signature covers every field) and answers JSON built by hand; the
/// types below describe both for the document, and the suite checks real answers against
/// it.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Backdrop: PicPik GenerateBackgrounds",
        description = "PicPik's API, wire-compatible: every call is `POST /` with a JSON body whose \
            `Action` picks the operation. Every body carries `PublicKey` (the key's vendor access \
            key) and `Signature`: the lowercase hex SHA-1 of every other parameter, keys sorted by \
            byte order, `key + value` concatenated (nested objects and arrays flattened), with the \
            vendor secret key appended. Every answer is HTTP 200 with `RetCode` (0: success), \
            `Message`, and `Action` and `request_uuid` echoed."
    ),
    paths(handle),
    components(schemas(
        PicpikCall,
        GenerateBackgrounds,
        MainModel,
        InferenceParams,
        SubModel,
        LoraParams,
        TransparentForeground,
        BackgroundImage2Image,
        PicpikResizeMode,
        ListTasksDetails,
        ListRunningTasks,
        PicpikAnswer,
        TaskDetail,
        PicpikStatus
    ))
)]
pub struct Document;

/// A PicPik call: `Action` names the operation.
#[derive(Deserialize, ToSchema)]
#[serde(tag = "Action")]
pub enum PicpikCall {
    /// Create a task.
    GenerateBackgrounds(Box<GenerateBackgrounds>),
    /// Tasks by id.
    ListTasksDetails(ListTasksDetails),
    /// The key's queued and running tasks.
    ListRunningTasks(ListRunningTasks),
}

/// `GenerateBackgrounds`: a background for a transparent foreground.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct GenerateBackgrounds {
    /// The key's vendor access key.
    pub public_key: String,
    /// The request's signature (also accepted as `signature`).
    pub signature: String,
    /// Idempotency key: the same body again answers the same `TaskUID`.
    #[serde(rename = "request_uuid")]
    #[schema(max_length = 200)]
    pub request_uuid: Option<String>,
    /// The main model; default `PICPIK General`.
    pub main_model: Option<MainModel>,
    /// LoRAs of the main model.
    pub sub_model_list: Option<Vec<SubModel>>,
    /// Prompts, joined with `", "`; at least one non-empty.
    pub positive_prompts: Vec<String>,
    /// What to avoid, joined with `", "`.
    pub negative_prompts: Option<Vec<String>>,
    /// Accepted and recorded; prompts are used as given.
    pub translate_prompts: Option<bool>,
    /// Accepted and recorded.
    #[serde(rename = "UseMainModelVAE")]
    pub use_main_model_vae: Option<bool>,
    /// -1 (default) picks a random seed.
    #[schema(minimum = -1, maximum = 2147483647)]
    pub seed: Option<i64>,
    /// Output width; alone, the foreground's height is kept.
    #[schema(minimum = 64, maximum = 2560)]
    pub width: Option<u32>,
    /// Output height; alone, the foreground's width is kept.
    #[schema(minimum = 64, maximum = 2560)]
    pub height: Option<u32>,
    /// Images, 1..=16 (default 1).
    #[schema(minimum = 1, maximum = 16)]
    pub batch_size: Option<u32>,
    /// Base64 images (a `data:` prefix is tolerated): the foreground, and maybe a reference.
    pub image_list: Vec<String>,
    /// Which image is the foreground (a PNG with transparency) and how it fits.
    pub transparent_foreground: Option<TransparentForeground>,
    /// The request example's form of the foreground's index: its first entry.
    pub transparent_image_index_list: Option<Vec<u32>>,
    /// A reference background from `ImageList`.
    #[serde(rename = "BackgroundImage2Image")]
    pub background_image2_image: Option<BackgroundImage2Image>,
}

/// `MainModel`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct MainModel {
    /// `PICPIK General` (Backdrop's default engine) or a configured diffusion model id.
    pub model_code: Option<String>,
    /// Its settings.
    pub inference_params: Option<InferenceParams>,
}

/// `MainModel.InferenceParams`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct InferenceParams {
    /// Denoising steps, 6..=100 (default 10).
    #[schema(minimum = 6, maximum = 100)]
    pub steps: Option<u32>,
    /// Ignored: a main model here is never a LoRA.
    pub lora_weight: Option<f64>,
}

/// A LoRA of `SubModelList`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct SubModel {
    /// A LoRA listed for the chosen model.
    pub model_code: String,
    /// Its weight.
    pub inference_params: Option<LoraParams>,
}

/// `SubModelList[].InferenceParams`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct LoraParams {
    /// The LoRA's weight (default 1).
    pub lora_weight: Option<f64>,
}

/// `TransparentForeground`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct TransparentForeground {
    /// Index in `ImageList` (default 0).
    pub image_index: Option<u32>,
    /// How the foreground fits the output size.
    pub resize_mode: Option<PicpikResizeMode>,
}

/// `BackgroundImage2Image`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct BackgroundImage2Image {
    /// Index of the reference in `ImageList`.
    pub image_index: u32,
    /// How strongly the reference shapes the background, 0..=1 (default 0.3).
    #[schema(minimum = 0, maximum = 1)]
    pub refer_strength: Option<f64>,
    /// How the reference fits the output size.
    pub resize_mode: Option<PicpikResizeMode>,
    /// Accepted and recorded: the reference is always blended into the whole background.
    pub deep_fusion: Option<bool>,
}

/// How an image fits the output size.
#[derive(Deserialize, ToSchema)]
pub enum PicpikResizeMode {
    /// Stretch to the size.
    JustResize,
    /// Fill the size, cropping the overflow.
    CropAndResize,
    /// Fit inside the size (the default).
    ResizeAndFill,
}

/// `ListTasksDetails`: tasks by id.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ListTasksDetails {
    /// The key's vendor access key.
    pub public_key: String,
    /// The request's signature.
    pub signature: String,
    /// Echoed.
    #[serde(rename = "request_uuid")]
    pub request_uuid: Option<String>,
    /// 1 to 100 task ids of this key.
    #[serde(rename = "TaskUIDList")]
    #[schema(min_items = 1, max_items = 100)]
    pub task_uid_list: Vec<String>,
}

/// `ListRunningTasks`: the key's queued and running tasks.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ListRunningTasks {
    /// The key's vendor access key.
    pub public_key: String,
    /// The request's signature.
    pub signature: String,
    /// Echoed.
    #[serde(rename = "request_uuid")]
    pub request_uuid: Option<String>,
}

/// Every answer: the envelope, and on success the action's own field.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct PicpikAnswer {
    /// 0 on success; see the module doc's table.
    pub ret_code: u32,
    /// The request's `Action`, echoed (empty when the body could not be read).
    pub action: String,
    /// Empty on success, else one sentence.
    pub message: String,
    /// The request's `request_uuid`, echoed as sent (`""` without one, null when the body
    /// could not be read).
    #[serde(rename = "request_uuid")]
    #[schema(schema_with = crate::api::openapi::any_schema)]
    pub request_uuid: Value,
    /// `GenerateBackgrounds`: the new task's id.
    #[serde(rename = "TaskUID")]
    pub task_uid: Option<String>,
    /// `ListTasksDetails`: the tasks, in the order asked.
    pub task_detail_list: Option<Vec<TaskDetail>>,
    /// `ListRunningTasks`: ids of the running and queued tasks.
    #[serde(rename = "TaskUIDList")]
    pub task_uid_list: Option<Vec<String>>,
}

/// A task as `ListTasksDetails` shows it.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct TaskDetail {
    /// Task id.
    #[serde(rename = "TaskUID")]
    pub task_uid: String,
    /// `GenerateBackgrounds`.
    pub action: String,
    /// The state in the vendor's words.
    pub status: PicpikStatus,
    /// Signed URLs of the results (empty until succeeded, and once expired).
    pub img_list: Vec<String>,
    /// Seed of the first image.
    pub seed: Option<u64>,
    /// The prompt as used.
    pub txt_list: Vec<String>,
    /// Credits charged (reserved, while the task runs).
    pub consume_api_point: i64,
    /// 0; 500 failed; 499 canceled.
    pub error_code: u32,
    /// The failure's reason (the vendor's spelling).
    pub error_massage: String,
}

/// `Status` of a task: `Finished` and `Error` mean it has ended.
#[derive(Deserialize, ToSchema)]
pub enum PicpikStatus {
    /// Waiting in the queue.
    Queuing,
    /// Running.
    Running,
    /// Succeeded.
    Finished,
    /// Failed or canceled.
    Error,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn submit_refusals_map_to_retcodes() {
        let code = |e: ApiError| PicpikError::from(e).code;
        assert_eq!(code(ApiError::new(ErrorCode::TaskTooLarge, "x")), 230);
        assert_eq!(code(ApiError::new(ErrorCode::NoAlphaChannel, "x")), 231);
        assert_eq!(code(ApiError::too_many(ErrorCode::RateLimited, "x", 1)), 290);
        assert_eq!(code(ApiError::internal("x")), 500);
    }

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn the_published_signature_examples() {
        let list = map(json!({"Action": "ListModels", "PublicKey": "abcdefg"}));
        assert_eq!(signature_string(&list, "123456"), "ActionListModelsPublicKeyabcdefg123456");
        assert_eq!(signature(&list, "123456"), "4a20bc1141494035f6aaaad13224c94c5a8bc3a5");
        let app = map(
            json!({"Action": "StartPicpikApp", "AppId": "your_app_id", "PublicKey": "abcdefg"}),
        );
        assert_eq!(signature(&app, "123456"), "c5e65ad1936ff695436917bf807d2281db33e7a3");
        // The Signature itself is never signed.
        let mut signed = list.clone();
        signed.insert("Signature".into(), json!("4a20bc1141494035f6aaaad13224c94c5a8bc3a5"));
        assert_eq!(signature(&signed, "123456"), "4a20bc1141494035f6aaaad13224c94c5a8bc3a5");
    }

    #[test]
    fn nested_values_flatten_as_documented() {
        let params = map(json!({
            "b": [1, "x", true],
            "a": {"z": 42.0, "y": null, "x": [{"k": 0.3}]},
            "c": "",
            "B": false,
        }));
        assert_eq!(signature_string(&params, "P"), "Bfalseaxk0.3yz42b1xtruecP");
    }

    #[test]
    fn sha1_known_answers() {
        let sha1 = |data: &[u8]| hex::encode(Sha1::digest(data));
        assert_eq!(sha1(b""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(sha1(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
        let long = "a".repeat(1000);
        assert_eq!(sha1(long.as_bytes()), "291e9a6c66994949b57ba5e650361e98fc36b1ba");
    }

    #[test]
    fn the_signature_hashes_exactly_the_signed_string() {
        let params = map(json!({
            "b": [1, "x", true],
            "a": {"z": 42.0, "y": null, "x": [{"k": 0.3}]},
            "Signature": "given",
            "signature": "given too",
        }));
        let text = signature_string(&params, "P");
        assert_eq!(text, "axk0.3yz42b1xtrueP", "neither signature field is signed");
        assert_eq!(signature(&params, "P"), hex::encode(Sha1::digest(text.as_bytes())));
    }

    #[test]
    fn every_state_has_a_documented_word_and_ended_ones_a_terminal_word() {
        for state in [
            TaskState::Queued,
            TaskState::Running,
            TaskState::Succeeded,
            TaskState::Failed,
            TaskState::Canceled,
        ] {
            let word = status_name(state);
            assert!(STATUS_WORDS.contains(&word), "{state:?} -> {word}");
            assert_eq!(TERMINAL_STATUS_WORDS.contains(&word), state.is_terminal(), "{state:?}");
        }
    }

    #[test]
    fn the_documented_status_words_are_the_ones_sent() {
        let schema =
            serde_json::to_value(<PicpikStatus as utoipa::PartialSchema>::schema()).expect("json");
        assert_eq!(schema["enum"], json!(STATUS_WORDS));
    }

    #[test]
    fn api_errors_map_to_ret_codes() {
        let code = |e: ApiError| PicpikError::from(e).code;
        assert_eq!(code(ApiError::too_many(ErrorCode::RateLimited, "x", 1)), 290);
        assert_eq!(code(ApiError::too_many(ErrorCode::QueueFull, "x", 1)), 291);
        assert_eq!(code(ApiError::new(ErrorCode::InsufficientCredits, "x")), 284);
        assert_eq!(code(ApiError::new(ErrorCode::FullyOpaque, "x")), 231);
        assert_eq!(code(ApiError::internal("x")), 500);
    }
}
