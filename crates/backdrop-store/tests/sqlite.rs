//! The task repository against SQLite: the conformance suite on a fresh file per case,
//! and claims racing from two repositories and from two processes on one file.

use backdrop_core::{BackgroundSpec, EngineName, JobSpec, TaskPayload};
use backdrop_store::sqlite::SqliteRepo;
use backdrop_store::{
    conformance, NewKey, NewTask, ResultImage, SubmitLimits, TaskRepo, TaskResult,
};
use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

const T0: i64 = 1_700_000_000_000;
const TASKS: usize = 100;

fn url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_conformance() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut case = 0;
    conformance::run_all(|| {
        case += 1;
        let url = url(&dir.path().join(format!("case-{case}.db")));
        async move {
            Arc::new(SqliteRepo::open(&url).await.expect("opens a fresh file")) as Arc<dyn TaskRepo>
        }
    })
    .await;
}

/// Fills a fresh file with `TASKS` queued tasks.
async fn queue_tasks(url: &str) {
    let repo = SqliteRepo::open(url).await.expect("opens");
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
            surface_meta: serde_json::json!({}),
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
async fn drain(repo: Arc<dyn TaskRepo>, worker: String) -> Vec<String> {
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

/// Checks that every task was processed by exactly one worker and is stored as such.
async fn check_each_once(url: &str, claims: &[(String, String)]) {
    let mut by_task: HashMap<&str, Vec<&str>> = HashMap::new();
    for (uid, worker) in claims {
        by_task.entry(uid).or_default().push(worker);
    }
    let twice: Vec<_> = by_task.iter().filter(|(_, w)| w.len() > 1).collect();
    assert!(twice.is_empty(), "tasks claimed more than once: {twice:?}");
    assert_eq!(by_task.len(), TASKS, "every task was claimed");
    let repo = SqliteRepo::open(url).await.expect("opens");
    for (uid, workers) in by_task {
        let task = repo.task(uid).await.expect("reads").expect("exists");
        assert_eq!(task.state, backdrop_core::TaskState::Succeeded);
        assert_eq!((task.attempts, task.lease_owner.as_deref()), (1, Some(workers[0])));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_two_repos_on_one_file_process_each_task_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = url(&dir.path().join("shared.db"));
    queue_tasks(&url).await;
    // Two independent repositories (two pools, as two processes would have).
    let first: Arc<dyn TaskRepo> = Arc::new(SqliteRepo::open(&url).await.expect("opens"));
    let second: Arc<dyn TaskRepo> = Arc::new(SqliteRepo::open(&url).await.expect("opens"));
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
    check_each_once(&url, &claims).await;
}

/// Run by `sqlite_two_processes_process_each_task_once` as a child process: drains the
/// queue of the file named in the environment with three workers and prints what each
/// finished. Without that environment it does nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claimer_process() {
    let (Ok(url), Ok(process)) =
        (std::env::var("BACKDROP_CLAIMER_DB"), std::env::var("BACKDROP_CLAIMER_NAME"))
    else {
        return;
    };
    let repo: Arc<dyn TaskRepo> = Arc::new(SqliteRepo::open(&url).await.expect("opens"));
    let mut workers = Vec::new();
    for i in 0..3 {
        let worker = format!("{process}-worker{i}");
        let repo = repo.clone();
        workers.push(tokio::spawn(async move { (drain(repo, worker.clone()).await, worker) }));
    }
    for w in workers {
        let (done, worker) = w.await.expect("a worker finished");
        for uid in done {
            // On a line of its own: the test harness may have written to the current one.
            println!("\nfinished {uid} by {worker}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_two_processes_process_each_task_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = url(&dir.path().join("shared.db"));
    queue_tasks(&url).await;
    let exe = std::env::current_exe().expect("the test binary");
    let children: Vec<_> = ["proc-a", "proc-b"]
        .iter()
        .map(|name| {
            let child = Command::new(&exe)
                .args(["--exact", "claimer_process", "--nocapture", "--test-threads=1"])
                .env("BACKDROP_CLAIMER_DB", &url)
                .env("BACKDROP_CLAIMER_NAME", name)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("starts a claimer process");
            (name.to_string(), child)
        })
        .collect();
    let mut claims = Vec::new();
    for (name, child) in children {
        let out = tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .expect("joins")
            .expect("the claimer process ran");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{name} failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let before = claims.len();
        for line in stdout.lines() {
            if let Some((uid, worker)) =
                line.strip_prefix("finished ").and_then(|rest| rest.split_once(" by "))
            {
                claims.push((uid.to_string(), worker.to_string()));
            }
        }
        println!("{name} finished {} task(s)", claims.len() - before);
    }
    check_each_once(&url, &claims).await;
}
