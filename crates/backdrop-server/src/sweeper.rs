//! Deletes the files of ended tasks whose time is up.
//!
//! Every `sweep_secs`, ended tasks whose `expires_at` passed have their files deleted —
//! input, reference, results, previews, watermarked variants, and whatever an attempt
//! left in the task's folder (results of an attempt that failed or lost its lease) — and
//! only then are marked expired in the database (their status then shows no URLs). A
//! task whose files could not all be deleted stays due and is tried again at the next
//! sweep. A succeeded task is due when its results' lifetime ends; a failed or canceled
//! one as soon as it ends. Signed URLs of expired results already answer 410 by their own
//! expiry; the sweep frees the space.

use crate::service::task_folder;
use crate::{now_ms, Shared};
use backdrop_store::{StoreError, Task};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Tasks read from the database at a time.
const BATCH: u32 = 100;

/// Sweeps once; returns how many tasks' files were removed.
pub async fn sweep_once(shared: &Shared) -> usize {
    let now = now_ms();
    let mut removed = 0;
    let mut after = 0;
    loop {
        let tasks = match shared.repo.due_for_expiry(now, after, BATCH).await {
            Ok(tasks) => tasks,
            Err(e) => {
                tracing::error!("sweep failed: {e}");
                return removed;
            }
        };
        let Some(last) = tasks.last() else { return removed };
        after = last.id;
        for task in &tasks {
            if let Err(e) = delete_files(shared, task).await {
                tracing::warn!(task = %task.uid, "files not deleted, tried again next sweep: {e}");
                continue;
            }
            match shared.repo.mark_expired(task.id, now).await {
                Ok(_) => removed += 1,
                Err(e) => tracing::error!(task = %task.uid, "cannot mark expired: {e}"),
            }
        }
    }
}

/// Deletes every file of `task`: those its record names (wherever they are), then all
/// left in its folder.
async fn delete_files(shared: &Shared, task: &Task) -> Result<(), StoreError> {
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
        shared.blobs.delete(&key).await?;
    }
    shared.blobs.delete_folder(&task_folder(&task.uid)).await?;
    Ok(())
}

/// Sweeps every `sweep_secs` until `shutdown` turns true.
pub async fn run(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let every = Duration::from_secs(shared.config.results.sweep_secs.max(1));
    while !*shutdown.borrow() {
        let removed = sweep_once(&shared).await;
        if removed > 0 {
            tracing::info!("swept the files of {removed} ended task(s)");
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => {}
        }
    }
}
