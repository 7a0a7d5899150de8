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
//! Every worker also returns lapsed leases to the queue (`requeue_expired`), so tasks of
//! a killed process are picked up by whoever is alive, up to the retry limit.

use crate::service::task_folder;
use crate::{now_ms, Shared};
use backdrop_core::{CancelToken, JobSpec, StepProgress};
use backdrop_engines::pipeline::{
    cut_out, encode_cutout, render, run_background, run_expansion, BackgroundJob, ExpansionJob,
    JobError, JobOutput, RenderOptions, RenderedImage, Timings,
};
use backdrop_imaging::mask::{DEFAULT_BACKGROUND_GROW, DEFAULT_EXPANSION_GROW};
use backdrop_imaging::{decode, DecodeLimits};
use backdrop_store::{Lease, ResultImage, Task, TaskProgress, TaskResult};
use image::imageops::FilterType;
use image::GenericImageView;
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

/// What a run produced, ready to store.
struct Made {
    output: JobOutput,
    rendered: Vec<RenderedImage>,
    /// Width and height of the results.
    size: (u32, u32),
}

async fn process(shared: &Arc<Shared>, worker: &str, device: &Device, task: Task) {
    let started = Instant::now();
    let uid = task.uid.clone();
    tracing::info!(task = %uid, engine = %task.engine, attempt = task.attempts, "running");
    let cancel = CancelToken::new();
    let progress: Arc<Mutex<Option<TaskProgress>>> = Arc::new(Mutex::new(None));
    let (done_tx, done_rx) = watch::channel(false);
    let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let heartbeat = tokio::spawn(heartbeat_loop(
        Arc::clone(shared),
        uid.clone(),
        worker.to_string(),
        Arc::clone(&progress),
        cancel.clone(),
        Arc::clone(&lost),
        done_rx,
    ));

    let outcome = run_task(shared, device, &task, cancel.clone(), Arc::clone(&progress)).await;
    let lease_lost = || lost.load(std::sync::atomic::Ordering::SeqCst);
    // The results are stored while the lease is still renewed: uploading many large
    // images can take longer than a lease.
    let stored = match outcome {
        Ok(_) if lease_lost() => None,
        Ok(made) => {
            Some(store_results(shared, &task, made).await.map_err(|e| ("output_failed", e)))
        }
        Err(e) => Some(Err((e.code().as_str(), e.to_string()))),
    };
    let _ = done_tx.send(true);
    let _ = heartbeat.await;
    let Some(stored) = stored.filter(|_| !lease_lost()) else {
        tracing::warn!(task = %uid, "lease lost; dropping this attempt's work");
        return;
    };
    let seconds = started.elapsed().as_secs_f64();
    let engine = task.engine.as_str();
    match stored {
        Ok(result) => {
            let steps = task_steps(&progress);
            shared.metrics.engine_steps(engine, steps, result.engine_ms / 1000.0);
            let expires_at = now_ms() + shared.config.results.ttl_secs * 1000;
            match shared.repo.complete(&uid, worker, result, expires_at, now_ms()).await {
                Ok(true) => shared.metrics.task_finished(engine, "succeeded", seconds),
                Ok(false) => {
                    tracing::warn!(task = %uid, "lease lost before completion; result discarded")
                }
                Err(e) => tracing::error!(task = %uid, "cannot complete: {e}"),
            }
        }
        Err((code, message)) => fail(shared, worker, &uid, engine, code, &message, seconds).await,
    }
}

async fn fail(
    shared: &Shared,
    worker: &str,
    uid: &str,
    engine: &str,
    code: &str,
    message: &str,
    seconds: f64,
) {
    let outcome = if code == "canceled" { "canceled" } else { "failed" };
    tracing::info!(task = %uid, code, "{outcome}: {message}");
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

async fn run_task(
    shared: &Arc<Shared>,
    device: &Device,
    task: &Task,
    cancel: CancelToken,
    progress: Arc<Mutex<Option<TaskProgress>>>,
) -> Result<Made, JobError> {
    let input = shared
        .blobs
        .get(&task.input_blob)
        .await
        .map_err(|e| JobError::Encode(format!("input: {e}")))?;
    let reference = match &task.reference_blob {
        Some(key) => Some(
            shared.blobs.get(key).await.map_err(|e| JobError::Encode(format!("reference: {e}")))?,
        ),
        None => None,
    };
    let payload = task.payload.clone();
    let engines = shared.engines.clone();
    let engine = task.engine;
    let limits = DecodeLimits::default();
    let run = move || -> Result<Made, JobError> {
        let report = |p: StepProgress| {
            if let Ok(mut slot) = progress.lock() {
                *slot = Some(TaskProgress { fraction: p.fraction(), step: p.step, steps: p.steps });
            }
        };
        let decoded = decode(&input, &DecodeLimits { min_width: 1, min_height: 1, ..limits })?;
        let options = payload.engine_options();
        let mut output = match &payload.job {
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
                run_background(&engines, &job, &report, &cancel)?
            }
            JobSpec::Expansion(spec) => {
                let job = ExpansionJob {
                    photo: &decoded,
                    spec,
                    mask_grow: payload.mask_grow.unwrap_or(DEFAULT_EXPANSION_GROW),
                    engine,
                    options,
                };
                run_expansion(&engines, &job, &report, &cancel)?
            }
            JobSpec::Cutout(spec) => {
                let cut = cut_out(&engines, &decoded, spec.model.as_deref(), &cancel)?;
                report(StepProgress { image: 0, images: 1, step: 1, steps: 1 });
                let main = encode_cutout(&cut.image.image)?;
                let size = cut.image.image.dimensions();
                let output = JobOutput {
                    engine,
                    seed: 0,
                    images: Vec::new(),
                    notes: vec![("model".into(), cut.model)],
                    timings: Timings { engine_ms: cut.segment_ms, ..Timings::default() },
                };
                let rendered = vec![RenderedImage { main, preview: None, watermarked: None }];
                return Ok(Made { output, rendered, size });
            }
        };
        if let Some(max) = payload.max_output_side {
            for image in &mut output.images {
                let (w, h) = image.dimensions();
                if w.max(h) > max {
                    let scale = f64::from(max) / f64::from(w.max(h));
                    let (nw, nh) = (
                        ((f64::from(w) * scale).round() as u32).max(1),
                        ((f64::from(h) * scale).round() as u32).max(1),
                    );
                    *image = image.resize_exact(nw, nh, FilterType::Lanczos3);
                }
            }
        }
        let rendered = render(
            &output.images,
            RenderOptions {
                format: payload.format,
                preview_side: payload.preview_side,
                watermark: payload.watermark,
            },
        )?;
        let size = output.images.first().map_or((0, 0), |img| img.dimensions());
        Ok(Made { output, rendered, size })
    };
    device.run(run).await.unwrap_or_else(|| {
        Err(JobError::Encode("the engine stopped unexpectedly on this task".into()))
    })
}

async fn store_results(shared: &Shared, task: &Task, made: Made) -> Result<TaskResult, String> {
    let ext = task.payload.format.extension();
    let mut images = Vec::new();
    for (i, rendered) in made.rendered.into_iter().enumerate() {
        let index = i as u32 + 1;
        let base = format!("{}/{index}", task_folder(&task.uid));
        let blob = format!("{base}.{ext}");
        shared.blobs.put(&blob, rendered.main.into()).await.map_err(|e| e.to_string())?;
        let preview_blob = match rendered.preview {
            Some(bytes) => {
                let key = format!("{base}.preview.{ext}");
                shared.blobs.put(&key, bytes.into()).await.map_err(|e| e.to_string())?;
                Some(key)
            }
            None => None,
        };
        let watermarked_blob = match rendered.watermarked {
            Some(bytes) => {
                let key = format!("{base}.watermarked.{ext}");
                shared.blobs.put(&key, bytes.into()).await.map_err(|e| e.to_string())?;
                Some(key)
            }
            None => None,
        };
        images.push(ResultImage {
            index,
            seed: made.output.seed.wrapping_add(u64::from(index - 1)),
            blob,
            preview_blob,
            watermarked_blob,
        });
    }
    let (width, height) = made.size;
    Ok(TaskResult {
        engine: made.output.engine.as_str().to_string(),
        seed: made.output.seed,
        width,
        height,
        images,
        notes: made.output.notes,
        engine_ms: made.output.timings.engine_ms,
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
