//! Deletes results whose time is up.
//!
//! Every `sweep_secs`, finished tasks whose `expires_at` passed are marked expired in the
//! database (their status then shows no URLs) and their blobs — input, results, previews,
//! watermarked variants — are deleted. Signed URLs of expired results already answer 410
//! by their own expiry; the sweep frees the space.

use crate::{now_ms, Shared};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Sweeps once; returns how many tasks' results were removed.
pub async fn sweep_once(shared: &Shared) -> usize {
    let mut removed = 0;
    loop {
        let tasks = match shared.repo.expire_results(now_ms(), 100).await {
            Ok(tasks) => tasks,
            Err(e) => {
                tracing::error!("sweep failed: {e}");
                return removed;
            }
        };
        if tasks.is_empty() {
            return removed;
        }
        for task in &tasks {
            let mut keys = vec![task.input_blob.clone()];
            keys.extend(task.reference_blob.clone());
            if let Some(result) = &task.result {
                for image in &result.images {
                    keys.push(image.blob.clone());
                    keys.extend(image.preview_blob.clone());
                    keys.extend(image.watermarked_blob.clone());
                }
            }
            for key in keys {
                if let Err(e) = shared.blobs.delete(&key).await {
                    tracing::warn!("cannot delete {key}: {e}");
                }
            }
        }
        removed += tasks.len();
    }
}

/// Sweeps every `sweep_secs` until `shutdown` turns true.
pub async fn run(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let every = Duration::from_secs(shared.config.results.sweep_secs.max(1));
    while !*shutdown.borrow() {
        let removed = sweep_once(&shared).await;
        if removed > 0 {
            tracing::info!("swept the results of {removed} expired task(s)");
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => {}
        }
    }
}
