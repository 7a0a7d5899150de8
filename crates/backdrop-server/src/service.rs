//! What every API surface does, in domain terms.
//!
//! A surface parses its own wire format, then calls [`submit`] with a
//! [`TaskPayload`] and the input bytes; everything that must hold for every surface
//! (rate limit, full validation before queueing, the task's estimated memory within
//! `[limits] max_task_memory_bytes`, the input stored, the task and its credit
//! reservation committed before the answer) happens here once.

use crate::error::ApiError;
use crate::{now_ms, Shared};
use backdrop_core::ErrorCode;
use backdrop_core::{CutoutMode, EngineName, JobSpec, TaskPayload, TaskState};
use backdrop_engines::pipeline::{peak_memory, random_seed};
use backdrop_imaging::decode::check_cutout;
use backdrop_imaging::matte::has_transparency;
use backdrop_imaging::{decode, DecodeLimits};
use backdrop_store::{ApiKey, Created, NewTask, SubmitLimits, Task};
use base64::Engine as _;
use bytes::Bytes;

/// Where an input image comes from.
#[derive(Debug, Clone)]
pub enum ImageSource {
    /// An http(s) URL, fetched under the fetch policy.
    Url(String),
    /// Base64 text (standard alphabet; a `data:` prefix is accepted and removed).
    Base64(String),
    /// Raw bytes (multipart upload).
    Bytes(Bytes),
}

/// Loads an input image's bytes. `what` names the field in error messages.
pub async fn load_image(
    shared: &Shared,
    source: ImageSource,
    what: &str,
) -> Result<Bytes, ApiError> {
    match source {
        ImageSource::Url(url) => Ok(Bytes::from(shared.fetcher.fetch(&url).await?.bytes)),
        ImageSource::Bytes(bytes) => Ok(bytes),
        ImageSource::Base64(text) => {
            let text = text.trim();
            let payload = match text.strip_prefix("data:") {
                Some(rest) => rest.split_once(',').map_or(rest, |(_, data)| data),
                None => text,
            };
            let max = DecodeLimits::default().max_file_bytes;
            if payload.len() as u64 > max / 3 * 4 + 4 {
                return Err(ApiError::too_large(format!("{what} is larger than {max} bytes")));
            }
            let cleaned: String = payload.chars().filter(|c| !c.is_ascii_whitespace()).collect();
            base64::engine::general_purpose::STANDARD
                .decode(cleaned.as_bytes())
                .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(cleaned.as_bytes()))
                .map(Bytes::from)
                .map_err(|e| {
                    ApiError::new(
                        ErrorCode::InvalidBase64,
                        format!("{what} is not valid base64: {e}"),
                    )
                })
        }
    }
}

/// A task to submit, as a surface built it.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The owner.
    pub key: ApiKey,
    /// The job and output options.
    pub payload: TaskPayload,
    /// Input image bytes.
    pub input: Bytes,
    /// Reference image bytes.
    pub reference: Option<Bytes>,
    /// Idempotency key / client task id.
    pub idempotency_key: Option<String>,
    /// Surface name.
    pub surface: &'static str,
    /// Surface fields.
    pub surface_meta: backdrop_store::SurfaceMeta,
    /// Callback URL.
    pub callback_url: Option<String>,
    /// Credits to reserve.
    pub credits: i64,
    /// Decode limits of this surface (vendors document their own).
    pub limits: DecodeLimits,
}

impl Submission {
    /// `input` for `key` from `surface`, costing `credits`, with nothing else set: no
    /// reference, idempotency key, surface fields or callback, and the default decode
    /// limits. Surfaces set the rest with struct update syntax.
    pub fn new(
        surface: &'static str,
        key: ApiKey,
        payload: TaskPayload,
        input: Bytes,
        credits: i64,
    ) -> Self {
        Submission {
            key,
            payload,
            input,
            reference: None,
            idempotency_key: None,
            surface,
            surface_meta: backdrop_store::SurfaceMeta::default(),
            callback_url: None,
            credits,
            limits: DecodeLimits::default(),
        }
    }
}

/// Takes a submit token for the key: 429 `rate_limited` with `Retry-After` when it has
/// none left.
pub fn check_rate(shared: &Shared, bucket: &str) -> Result<(), ApiError> {
    shared.limiter.check(bucket).map_err(|wait| {
        ApiError::too_many(
            ErrorCode::RateLimited,
            format!(
                "more than {} submits per second for this key; retry in {wait} s",
                shared.config.limits.submits_per_second
            ),
            wait,
        )
    })
}

/// Width and height from an image's header, without decoding its pixels: the one
/// dimension probe the surfaces share.
pub fn image_dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .ok()?
        .into_dimensions()
        .ok()
}

/// Takes one of the key's long-lived request slots (an event stream or a synchronous
/// wait), held until the returned guard drops; 429 `too_many_streams` at the cap.
pub fn hold_stream(
    shared: &Shared,
    key_id: &str,
) -> Result<crate::ratelimit::StreamSlot, ApiError> {
    shared.streams.take(key_id).ok_or_else(|| {
        ApiError::too_many(
            ErrorCode::TooManyStreams,
            format!(
                "this key already holds {} event streams or synchronous waits; close one first",
                shared.streams.cap()
            ),
            1,
        )
    })
}

/// Validates, stores and queues a task. The task is committed before this returns.
pub async fn submit(shared: &Shared, mut sub: Submission) -> Result<Created, ApiError> {
    if let Some(idem) = &sub.idempotency_key {
        if let Some(task) = shared.repo.task_by_idempotency_key(sub.key.id, idem).await? {
            return Ok(Created { task, created: false });
        }
    }
    sub.payload.validate()?;
    if let Some(url) = &sub.callback_url {
        check_callback_url(url)?;
    }
    // Decoding proves the input meets every limit before anything is queued; it is CPU
    // work, so it runs off the async threads.
    let job = sub.payload.job.clone();
    let input = sub.input.clone();
    let limits = sub.limits;
    let segmenter = shared.engines.has_segmenter();
    if matches!(&job, JobSpec::Background(spec) if spec.cutout == CutoutMode::Always) {
        shared.engines.segmenter().map_err(|e| ApiError::new(e.code(), e.to_string()))?;
    }
    // The input's size and the canvas's (the results') come back for the memory check.
    let (input_size, canvas) = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let decoded = decode(&input, &limits)?;
        let size = decoded.image.dimensions();
        let canvas = match &job {
            // A photo is accepted when it will be cut out (automatic cut-out, a segmenter
            // present); anything else must be a transparent cut-out, as before.
            JobSpec::Background(spec) => {
                let cut = spec.cutout.segments(has_transparency(&decoded.image));
                if !(cut && segmenter) {
                    check_cutout(&decoded)?;
                }
                spec.size.map_or(size, |s| (s.width, s.height))
            }
            JobSpec::Expansion(spec) => {
                let pixels = spec.ratios.pixels(size.0, size.1)?;
                (pixels.canvas_width, pixels.canvas_height)
            }
            JobSpec::Cutout(_) => size,
        };
        Ok((size, canvas))
    })
    .await
    .map_err(ApiError::internal)??;
    if let Some(reference) = &sub.reference {
        let reference = reference.clone();
        tokio::task::spawn_blocking(move || {
            decode(&reference, &DecodeLimits::default()).map(|_| ())
        })
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| ApiError::new(e.code(), format!("reference image: {e}")))?;
    }
    let kind = sub.payload.job.kind();
    let engine = shared
        .engines
        .resolve(sub.payload.engine, kind)
        .map_err(|e| ApiError::new(e.code(), e.to_string()))?;
    let n = sub.payload.job.n();
    let needed = peak_memory(&shared.engines, engine, kind, input_size, canvas, n);
    check_memory(shared, needed, engine, canvas, n)?;
    // Fix the seed now so a retried attempt (after a crash) makes the same images.
    match &mut sub.payload.job {
        JobSpec::Background(spec) => spec.seed = Some(spec.seed.unwrap_or_else(random_seed)),
        JobSpec::Expansion(spec) => spec.seed = Some(spec.seed.unwrap_or_else(random_seed)),
        JobSpec::Cutout(_) => {}
    }
    let uid = uuid::Uuid::new_v4().simple().to_string();
    let input_blob = format!("{}/input", task_folder(&uid));
    shared.blobs.put(&input_blob, sub.input.clone()).await?;
    let reference_blob = match &sub.reference {
        Some(bytes) => {
            let key = format!("{}/reference", task_folder(&uid));
            shared.blobs.put(&key, bytes.clone()).await?;
            Some(key)
        }
        None => None,
    };
    let new = NewTask {
        uid,
        key_id: sub.key.id,
        engine,
        payload: sub.payload,
        input_blob: input_blob.clone(),
        reference_blob: reference_blob.clone(),
        idempotency_key: sub.idempotency_key,
        surface: sub.surface.to_string(),
        surface_meta: sub.surface_meta,
        callback_url: sub.callback_url,
        credits: sub.credits,
    };
    let limits = SubmitLimits {
        max_queued: shared.config.limits.max_queued,
        max_key_images: shared.config.limits.max_key_images,
    };
    let created = match shared.repo.create_task(new, limits, now_ms()).await {
        Ok(created) => created,
        Err(e) => {
            // The task was refused: its input must not linger.
            let _ = shared.blobs.delete(&input_blob).await;
            if let Some(key) = reference_blob {
                let _ = shared.blobs.delete(&key).await;
            }
            let error = ApiError::from(e);
            shared.metrics.submit(sub.surface, error.code.as_str());
            return Err(error);
        }
    };
    if !created.created {
        let _ = shared.blobs.delete(&input_blob).await;
    }
    shared.metrics.submit(sub.surface, "accepted");
    Ok(created)
}

/// Refuses a task whose estimated peak memory, `needed` bytes (from [`peak_memory`]), is
/// over `[limits] max_task_memory_bytes`: 400 `task_too_large`, naming the estimate and
/// the limit with the task's engine, canvas size and `n`. Runs before anything is stored
/// or reserved.
pub fn check_memory(
    shared: &Shared,
    needed: u64,
    engine: EngineName,
    canvas: (u32, u32),
    n: u32,
) -> Result<(), ApiError> {
    let limit = shared.config.limits.max_task_memory_bytes;
    if needed <= limit {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorCode::TaskTooLarge,
        format!(
            "this task would need about {} of memory ({}x{} px, n = {n}, engine {}), over \
             this server's per-task limit of {} ([limits] max_task_memory_bytes); ask for \
             a smaller size or fewer images",
            human_bytes(needed),
            canvas.0,
            canvas.1,
            engine.as_str(),
            human_bytes(limit)
        ),
    ))
}

/// `bytes` in MiB or GiB with one decimal, for messages.
fn human_bytes(bytes: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    let mib = bytes as f64 / MIB;
    if mib >= 1024.0 {
        format!("{:.1} GiB", mib / 1024.0)
    } else {
        format!("{mib:.1} MiB")
    }
}

/// The folder every file of a task is stored under: its input and reference at submit,
/// its results by the worker; the sweeper deletes all of it.
pub fn task_folder(uid: &str) -> String {
    format!("tasks/{uid}")
}

/// A callback URL must be absolute http(s); where it points is checked at delivery.
pub fn check_callback_url(url: &str) -> Result<(), ApiError> {
    match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        _ => Err(ApiError::new(
            ErrorCode::InvalidCallbackUrl,
            format!("callback URL '{url}' is not an absolute http(s) URL"),
        )),
    }
}

/// A task the key may see: 404 when there is none, 403 when it is another key's.
pub async fn owned_task(shared: &Shared, key: &ApiKey, uid: &str) -> Result<Task, ApiError> {
    let task = shared
        .repo
        .task(uid)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no task '{uid}'")))?;
    if task.key_id != key.id {
        return Err(ApiError::forbidden("this task belongs to another key"));
    }
    Ok(task)
}

/// A signed, expiring URL for a blob of a task (`None` once the results expired).
pub fn signed_url(shared: &Shared, task: &Task, blob: &str) -> Option<String> {
    if task.result_expired {
        return None;
    }
    let expires_at =
        task.expires_at.map_or(now_ms() / 1000 + shared.config.results.ttl_secs, |ms| ms / 1000);
    Some(format!("{}/files/{blob}?{}", shared.public_url(), shared.signer.sign(blob, expires_at)))
}

/// The images a callback for entering `entered` announces: the results on success, none
/// before (a task's result is stored as it succeeds, so earlier callbacks have none).
pub fn announced_images(task: &Task, entered: TaskState) -> &[backdrop_store::ResultImage] {
    match &task.result {
        Some(result) if entered == TaskState::Succeeded => &result.images,
        _ => &[],
    }
}

/// Percent done, 0..=100.
pub fn percent(task: &Task) -> u32 {
    match task.state {
        TaskState::Succeeded => 100,
        TaskState::Queued => 0,
        _ => (task.progress.fraction * 100.0).floor().clamp(0.0, 100.0) as u32,
    }
}
