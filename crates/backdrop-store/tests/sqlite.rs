//! The task repository against SQLite: the conformance suite on a fresh file per case,
//! and claims racing from two repositories and from two processes on one file.

mod common;

use backdrop_store::sqlite::SqliteRepo;
use backdrop_store::{conformance, TaskRepo};
use common::{check_each_once, drain, drain_from_two, queue_tasks};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_two_repos_on_one_file_process_each_task_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = url(&dir.path().join("shared.db"));
    queue_tasks(&SqliteRepo::open(&url).await.expect("opens")).await;
    let first: Arc<dyn TaskRepo> = Arc::new(SqliteRepo::open(&url).await.expect("opens"));
    let second: Arc<dyn TaskRepo> = Arc::new(SqliteRepo::open(&url).await.expect("opens"));
    let claims = drain_from_two(first, second).await;
    check_each_once(&SqliteRepo::open(&url).await.expect("opens"), &claims).await;
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
    queue_tasks(&SqliteRepo::open(&url).await.expect("opens")).await;
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
    check_each_once(&SqliteRepo::open(&url).await.expect("opens"), &claims).await;
}
