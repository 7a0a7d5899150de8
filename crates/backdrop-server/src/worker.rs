//! The processing loop.
//!
//! A worker claims the oldest queued task whose engine it runs, holding a lease it
//! renews at a third of the lease length (sending progress with each renewal) until the
//! task is completed or failed, result uploads included. The engine runs on a dedicated
//! OS thread per device, never on the async runtime. The result files are stored first
//! and the task is completed only while the lease is still held, so a worker that lost its lease (it stalled, and another claimed the task)
//! cannot finish it a second time. A cancel seen on renewal stops the engine at its next
//! step.
//!
//! The engine hands its images over as it makes them (a batch at a time, one image at a
//! time on large canvases; see [`backdrop_engines::pipeline`]): the device thread
//! encodes each and passes the files through a one-slot channel to the task's async
//! side, which stores them in order while the engine makes the next. A slow store
//! therefore holds the engine back instead of letting finished images pile up, so what
//! a task holds does not grow with `n`.
//!
//! Every worker also returns lapsed leases to the queue (`requeue_expired`), so tasks of
//! a killed process are picked up by whoever is alive, up to the retry limit.

use crate::service::task_folder;
use crate::{now_ms, Shared};
use backdrop_core::{CancelToken, ErrorCode, JobSpec, StepProgress};
use backdrop_engines::pipeline::{
    cut_out, encode_cutout, render, stream_background, stream_expansion, BackgroundJob,
    ExpansionJob, JobError, RenderOptions, RenderedImage, ResultFile, RunReport, Timings,
};
use backdrop_imaging::mask::{DEFAULT_BACKGROUND_GROW, DEFAULT_EXPANSION_GROW};
use backdrop_imaging::{decode, DecodeLimits};
use backdrop_store::{Lease, ResultImage, Task, TaskProgress, TaskResult};
use image::imageops::FilterType;
use image::{DynamicImage, GenericImageView};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Runs closures on one dedicated OS thread: the "device" an engine runs on.
#[derive(Debug, Clone)]
pub struct Device {
    jobs: std::sync::mpsc::Sender<Box<dyn FnOnce() + Send>>,
}

impl Device {
    /// Starts the device thread.
    pub fn start(name: String) -> std::io::Result<Device> {
        let (jobs, receiver) = std::sync::mpsc::channel::<Box<dyn FnOnce() + Send>>();
        std::thread::Builder::new().name(name).spawn(move || {
            for job in receiver {
                // A panic in one engine run must fail that task only, not stop the
                // device for every later task; the dropped result sender tells the
                // waiting task it ended without an answer.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            }
        })?;
        Ok(Device { jobs })
    }

    /// Runs `f` on the device and waits (asynchronously) for its result.
    pub async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Option<R> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Box<dyn FnOnce() + Send> = Box::new(move || {
            let _ = tx.send(f());
        });
        self.jobs.send(job).ok()?;
        rx.await.ok()
    }
}

/// Runs `devices` claim loops until `shutdown` turns true.
pub async fn run(
    shared: Arc<Shared>,
    worker_id: String,
    devices: usize,
    shutdown: watch::Receiver<bool>,
) {
    let mut loops = Vec::new();
    for index in 0..devices.max(1) {
        let device = match Device::start(format!("engine-{index}")) {
            Ok(device) => device,
            Err(e) => {
                tracing::error!("cannot start engine thread: {e}");
                continue;
            }
        };
        let id = format!("{worker_id}/{index}");
        loops.push(tokio::spawn(claim_loop(Arc::clone(&shared), id, device, shutdown.clone())));
    }
    for handle in loops {
        let _ = handle.await;
    }
}

async fn claim_loop(
    shared: Arc<Shared>,
    worker: String,
    device: Device,
    mut shutdown: watch::Receiver<bool>,
) {
    let poll = Duration::from_millis(shared.config.queue.poll_ms.max(10));
    let engines = shared.engines.available();
    let mut last_requeue = Instant::now() - Duration::from_secs(3600);
    while !*shutdown.borrow() {
        if last_requeue.elapsed() >= poll * 5 {
            last_requeue = Instant::now();
            match shared.repo.requeue_expired(shared.config.queue.max_attempts, now_ms()).await {
                Ok((requeued, failed)) if requeued + failed > 0 => {
                    tracing::warn!(
                        "lapsed leases: {requeued} task(s) requeued, {failed} failed after retries"
                    )
                }
                Ok(_) => {}
                Err(e) => tracing::error!("requeue failed: {e}"),
            }
        }
        let claimed =
            shared.repo.claim(&worker, &engines, shared.config.queue.lease_ms, now_ms()).await;
        match claimed {
            Ok(Some(task)) => process(&shared, &worker, &device, task).await,
            Ok(None) => {
                tokio::select! {
                    _ = tokio::time::sleep(poll) => {}
                    _ = shutdown.changed() => {}
                }
            }
            Err(e) => {
                tracing::error!("claim failed: {e}");
                tokio::time::sleep(poll * 5).await;
            }
        }
    }
}

/// What a run produced, its files stored.
struct Made {
    report: RunReport,
    images: Vec<ResultImage>,
    /// Width and height of the results.
    size: (u32, u32),
}

/// Why an attempt produced no result: the task's error code and message.
struct Failure {
    code: ErrorCode,
    message: String,
}

impl From<JobError> for Failure {
    fn from(e: JobError) -> Self {
        Failure { code: e.code(), message: e.to_string() }
    }
}

async fn process(shared: &Arc<Shared>, worker: &str, device: &Device, task: Task) {
    let started = Instant::now();
    let uid = task.uid.clone();
    tracing::info!(task = %uid, engine = %task.engine, attempt = task.attempts, "running");
    let cancel = CancelToken::new();
    let progress: Arc<Mutex<Option<TaskProgress>>> = Arc::new(Mutex::new(None));
    let (done_tx, done_rx) = watch::channel(false);
    let lost = Arc::new(AtomicBool::new(false));
    let heartbeat = tokio::spawn(heartbeat_loop(
        Arc::clone(shared),
        uid.clone(),
        worker.to_string(),
        Arc::clone(&progress),
        cancel.clone(),
        Arc::clone(&lost),
        done_rx,
    ));

    // The results are stored while the lease is still renewed: uploading many large
    // images can take longer than a lease.
    let outcome = run_task(shared, device, &task, cancel, Arc::clone(&progress), &lost).await;
    let _ = done_tx.send(true);
    let _ = heartbeat.await;
    if lost.load(Ordering::SeqCst) {
        tracing::warn!(task = %uid, "lease lost; dropping this attempt's work");
        return;
    }
    let seconds = started.elapsed().as_secs_f64();
    let engine = task.engine.as_str();
    match outcome {
        Ok(made) => {
            let steps = task_steps(&progress);
            shared.metrics.engine_steps(engine, steps, made.report.timings.engine_ms / 1000.0);
            let (width, height) = made.size;
            let result = TaskResult {
                engine: made.report.engine.as_str().to_string(),
                seed: made.report.seed,
                width,
                height,
                images: made.images,
                notes: made.report.notes,
                engine_ms: made.report.timings.engine_ms,
            };
            let expires_at = now_ms() + shared.config.results.ttl_secs * 1000;
            match shared.repo.complete(&uid, worker, result, expires_at, now_ms()).await {
                Ok(true) => shared.metrics.task_finished(engine, "succeeded", seconds),
                Ok(false) => {
                    tracing::warn!(task = %uid, "lease lost before completion; result discarded")
                }
                Err(e) => tracing::error!(task = %uid, "cannot complete: {e}"),
            }
        }
        Err(failure) => {
            fail(shared, worker, &uid, engine, failure.code, &failure.message, seconds).await
        }
    }
}

async fn fail(
    shared: &Shared,
    worker: &str,
    uid: &str,
    engine: &str,
    code: ErrorCode,
    message: &str,
    seconds: f64,
) {
    let outcome = if code == ErrorCode::Canceled { "canceled" } else { "failed" };
    tracing::info!(task = %uid, code = code.as_str(), "{outcome}: {message}");
    match shared.repo.fail(uid, worker, code, message, now_ms()).await {
        Ok(true) => shared.metrics.task_finished(engine, outcome, seconds),
        Ok(false) => tracing::warn!(task = %uid, "lease lost before failing"),
        Err(e) => tracing::error!(task = %uid, "cannot record failure: {e}"),
    }
}

fn task_steps(progress: &Mutex<Option<TaskProgress>>) -> u64 {
    progress.lock().ok().and_then(|p| *p).map_or(0, |p| u64::from(p.steps.max(1)))
}

async fn heartbeat_loop(
    shared: Arc<Shared>,
    uid: String,
    worker: String,
    progress: Arc<Mutex<Option<TaskProgress>>>,
    cancel: CancelToken,
    lost: Arc<std::sync::atomic::AtomicBool>,
    mut done: watch::Receiver<bool>,
) {
    let lease = shared.config.queue.lease_ms;
    // Renew well before the lease lapses, and often enough for live progress.
    let every = Duration::from_millis((lease / 3).clamp(50, 1000) as u64);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = done.changed() => return,
        }
        let current = progress.lock().ok().and_then(|p| *p);
        match shared.repo.heartbeat(&uid, &worker, lease, current, now_ms()).await {
            Ok(Lease::Held { cancel_requested }) => {
                if cancel_requested {
                    cancel.cancel();
                }
            }
            Ok(Lease::Lost) => {
                lost.store(true, std::sync::atomic::Ordering::SeqCst);
                cancel.cancel();
                return;
            }
            Err(e) => tracing::error!(task = %uid, "heartbeat failed: {e}"),
        }
    }
}

/// One encoded result on its way from the device thread to storage.
struct Encoded {
    /// 1-based.
    index: u32,
    files: RenderedImage,
}

/// What the device thread reports once the run is over.
struct Ran {
    report: RunReport,
    size: (u32, u32),
}

/// Runs the task's job on `device` and stores each result as it arrives.
async fn run_task(
    shared: &Arc<Shared>,
    device: &Device,
    task: &Task,
    cancel: CancelToken,
    progress: Arc<Mutex<Option<TaskProgress>>>,
    lost: &AtomicBool,
) -> Result<Made, Failure> {
    let input = shared
        .blobs
        .get(&task.input_blob)
        .await
        .map_err(|e| storage_failure(&task.uid, "the input image could not be read", e))?;
    let reference =
        match &task.reference_blob {
            Some(key) => Some(shared.blobs.get(key).await.map_err(|e| {
                storage_failure(&task.uid, "the reference image could not be read", e)
            })?),
            None => None,
        };
    let payload = task.payload.clone();
    let engines = shared.engines.clone();
    let engine = task.engine;
    let limits = DecodeLimits::default();
    // One slot: while one result is being stored the next may wait; the device blocks on
    // the hand-over after that until there is room.
    let (files, mut arriving) = tokio::sync::mpsc::channel::<Encoded>(1);
    let stop = cancel.clone();
    let run = move || -> Result<Ran, JobError> {
        let on_step = |p: StepProgress| {
            if let Ok(mut slot) = progress.lock() {
                *slot = Some(TaskProgress { fraction: p.fraction(), step: p.step, steps: p.steps });
            }
        };
        let send = |encoded: Encoded| {
            // Closed only when storing failed; that failure is the task's.
            files.blocking_send(encoded).map_err(|_| JobError::Encode("storage stopped".into()))
        };
        let decoded = decode(&input, &DecodeLimits { min_width: 1, min_height: 1, ..limits })?;
        let options = payload.engine_options();
        let render_options = RenderOptions {
            format: payload.format,
            preview_side: payload.preview_side,
            watermark: payload.watermark,
        };
        let mut size = (0, 0);
        let mut sink = |first: u32, images: Vec<DynamicImage>| -> Result<(), JobError> {
            let images: Vec<DynamicImage> = match payload.max_output_side {
                Some(max) => images.into_iter().map(|image| fit_within(image, max)).collect(),
                None => images,
            };
            if let Some(image) = images.first() {
                size = image.dimensions();
            }
            let rendered = render(&images, render_options)?;
            drop(images);
            for (i, files) in (first + 1..).zip(rendered) {
                send(Encoded { index: i, files })?;
            }
            Ok(())
        };
        let report = match &payload.job {
            JobSpec::Background(spec) => {
                let reference = match &reference {
                    Some(bytes) => Some(decode(bytes, &limits)?.image),
                    None => None,
                };
                let job = BackgroundJob {
                    cutout: &decoded,
                    spec,
                    reference: reference.as_ref(),
                    mask_grow: payload.mask_grow.unwrap_or(DEFAULT_BACKGROUND_GROW),
                    engine,
                    options,
                };
                stream_background(&engines, &job, &on_step, &cancel, &mut sink)?
            }
            JobSpec::Expansion(spec) => {
                let job = ExpansionJob {
                    photo: &decoded,
                    spec,
                    mask_grow: payload.mask_grow.unwrap_or(DEFAULT_EXPANSION_GROW),
                    engine,
                    options,
                };
                stream_expansion(&engines, &job, &on_step, &cancel, &mut sink)?
            }
            JobSpec::Cutout(spec) => {
                let cut = cut_out(&engines, &decoded, spec.model.as_deref(), &cancel)?;
                on_step(StepProgress { image: 0, images: 1, step: 1, steps: 1 });
                let main = encode_cutout(&cut.image.image)?;
                size = cut.image.image.dimensions();
                send(Encoded {
                    index: 1,
                    files: RenderedImage { main, preview: None, watermarked: None },
                })?;
                RunReport {
                    engine,
                    seed: 0,
                    notes: vec![("model".into(), cut.model)],
                    timings: Timings { engine_ms: cut.segment_ms, ..Timings::default() },
                }
            }
        };
        Ok(Ran { report, size })
    };
    let store = async move {
        let mut images = Vec::new();
        while let Some(encoded) = arriving.recv().await {
            // Another worker owns the task now; its files are its own to write.
            if lost.load(Ordering::SeqCst) {
                return Err("the lease was lost".to_string());
            }
            match store_image(shared, task, encoded).await {
                Ok(image) => images.push(image),
                Err(e) => {
                    // Nothing more can be stored: stop the engine at its next step.
                    stop.cancel();
                    return Err(e);
                }
            }
        }
        Ok(images)
    };
    let (ran, stored) = tokio::join!(device.run(run), store);
    // A storage failure closes the channel, which then fails the run too: report the
    // storage failure, the cause.
    let mut images =
        stored.map_err(|message| Failure { code: ErrorCode::OutputFailed, message })?;
    let ran = ran.unwrap_or_else(|| {
        Err(JobError::Encode("the engine stopped unexpectedly on this task".into()))
    })?;
    for image in &mut images {
        image.seed = ran.report.seed.wrapping_add(u64::from(image.index - 1));
    }
    Ok(Made { report: ran.report, images, size: ran.size })
}

/// `image` scaled down to at most `max` pixels on its longer side.
fn fit_within(image: DynamicImage, max: u32) -> DynamicImage {
    let (w, h) = image.dimensions();
    if w.max(h) <= max {
        return image;
    }
    let scale = f64::from(max) / f64::from(w.max(h));
    let (nw, nh) = (
        ((f64::from(w) * scale).round() as u32).max(1),
        ((f64::from(h) * scale).round() as u32).max(1),
    );
    image.resize_exact(nw, nh, FilterType::Lanczos3)
}

/// A storage error as the task's client sees it: what failed, never the store's own
/// text (it names blob paths, buckets and endpoints), which goes to the log instead.
fn storage_failure(uid: &str, what: &'static str, e: impl std::fmt::Display) -> JobError {
    tracing::error!(task = %uid, "{what}: {e}");
    JobError::Encode(what.into())
}

/// Stores one result's files under the task's folder.
async fn store_image(
    shared: &Shared,
    task: &Task,
    encoded: Encoded,
) -> Result<ResultImage, String> {
    let index = encoded.index;
    let stem = format!("{}/{index}", task_folder(&task.uid));
    let failed = |e: backdrop_store::StoreError| {
        storage_failure(&task.uid, "the result could not be stored", e).to_string()
    };
    let (mut blob, mut preview_blob, mut watermarked_blob) = (String::new(), None, None);
    for (file, key, bytes) in encoded.files.into_files(&stem, task.payload.format) {
        shared.blobs.put(&key, bytes.into()).await.map_err(failed)?;
        match file {
            ResultFile::Main => blob = key,
            ResultFile::Preview => preview_blob = Some(key),
            ResultFile::Watermarked => watermarked_blob = Some(key),
        }
    }
    Ok(ResultImage {
        index,
        // Known once the run reports its first seed.
        seed: 0,
        blob,
        preview_blob,
        watermarked_blob,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_run_fails_alone_and_the_device_keeps_working() {
        let device = Device::start("test-device".into()).expect("thread");
        let panicked: Option<u32> = device.run(|| panic!("engine bug")).await;
        assert_eq!(panicked, None);
        assert_eq!(device.run(|| 41 + 1).await, Some(42));
    }
}
