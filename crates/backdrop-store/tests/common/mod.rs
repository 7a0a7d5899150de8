//! What the SQLite and PostgreSQL tests share: a queue of tasks drained by racing workers,
//! and the check that each task was processed exactly once.

use backdrop_core::{BackgroundSpec, EngineName, JobSpec, TaskPayload, TaskState};
use backdrop_store::{NewKey, NewTask, ResultImage, SubmitLimits, TaskRepo, TaskResult};
use std::collections::HashMap;
use std::sync::Arc;

/// The clock of these tests.
pub const T0: i64 = 1_700_000_000_000;

/// Tasks queued by [`queue_tasks`].
pub const TASKS: usize = 100;

/// Queues `TASKS` tasks (with callback URLs) in an empty repository.
pub async fn queue_tasks(repo: &dyn TaskRepo) {
    let key = repo
        .create_key(
            NewKey {
                name: "load".into(),
                hash: "f".repeat(64),
                prefix: "bd_load".into(),
                balance: None,
            },
            T0,
        )
        .await
        .expect("creates a key");
    let limits = SubmitLimits { max_queued: 1_000, max_key_images: 1_000 };
    for i in 0..TASKS {
        let payload = TaskPayload::new(JobSpec::Background(BackgroundSpec {
            prompt: Some("white studio".into()),
            ..Default::default()
        }));
        let new = NewTask {
            uid: format!("task-{i:03}"),
            key_id: key.id,
            engine: EngineName::Studio,
            payload,
            input_blob: format!("inputs/{i}.png"),
            reference_blob: None,
            idempotency_key: None,
            surface: "native".into(),
            surface_meta: backdrop_store::SurfaceMeta::default(),
            callback_url: Some("http://receiver.test/hook".into()),
            credits: 0,
        };
        repo.create_task(new, limits, T0).await.expect("queues");
    }
}

fn one_image() -> TaskResult {
    TaskResult {
        engine: "studio".into(),
        seed: 1,
        width: 8,
        height: 8,
        images: vec![ResultImage {
            index: 1,
            seed: 1,
            blob: "results/x.png".into(),
            preview_blob: None,
            watermarked_blob: None,
        }],
        notes: vec![],
        engine_ms: 1.0,
    }
}

/// Claims and completes until the queue is empty; returns the uids this worker finished.
pub async fn drain(repo: Arc<dyn TaskRepo>, worker: String) -> Vec<String> {
    let mut done = Vec::new();
    while let Some(task) =
        repo.claim(&worker, &[EngineName::Studio], 60_000, T0 + 1).await.expect("claims")
    {
        let completed = repo
            .complete(&task.uid, &worker, one_image(), T0 + 3_600_000, T0 + 2)
            .await
            .expect("completes");
        assert!(completed, "{worker} holds the lease of {} it just claimed", task.uid);
        done.push(task.uid);
    }
    done
}

/// Drains the queue with eight workers, half on `first` and half on `second` (two
/// independent pools, as two processes would have); returns `(task uid, worker)` for
/// every task a worker finished.
pub async fn drain_from_two(
    first: Arc<dyn TaskRepo>,
    second: Arc<dyn TaskRepo>,
) -> Vec<(String, String)> {
    let mut workers = Vec::new();
    for i in 0..8 {
        let repo = if i % 2 == 0 { first.clone() } else { second.clone() };
        let name = format!("repo{}-worker{i}", i % 2);
        workers.push(tokio::spawn(async move {
            let done = drain(repo, name.clone()).await;
            done.into_iter().map(|uid| (uid, name.clone())).collect::<Vec<_>>()
        }));
    }
    let mut claims = Vec::new();
    for w in workers {
        claims.extend(w.await.expect("a worker finished"));
    }
    claims
}

/// Checks that every task was processed by exactly one worker and is stored as such:
/// `claims` are `(task uid, worker)` for every task a worker finished.
pub async fn check_each_once(repo: &dyn TaskRepo, claims: &[(String, String)]) {
    let mut by_task: HashMap<&str, Vec<&str>> = HashMap::new();
    for (uid, worker) in claims {
        by_task.entry(uid).or_default().push(worker);
    }
    let twice: Vec<_> = by_task.iter().filter(|(_, w)| w.len() > 1).collect();
    assert!(twice.is_empty(), "tasks claimed more than once: {twice:?}");
    assert_eq!(by_task.len(), TASKS, "every task was claimed");
    for (uid, workers) in by_task {
        let task = repo.task(uid).await.expect("reads").expect("exists");
        assert_eq!(task.state, TaskState::Succeeded);
        assert_eq!((task.attempts, task.lease_owner.as_deref()), (1, Some(workers[0])));
    }
}
