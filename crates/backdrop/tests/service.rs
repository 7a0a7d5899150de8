//! The task service as an operator runs it: the real `backdrop` binary (`serve`,
//! `worker`, `keys create`), a real database, real HTTP on loopback, temporary data
//! directories. Every child process is SIGKILLed when its handle drops, so a failing test
//! leaves nothing running.
//!
//! - `kill_9_with_tasks_queued_and_running_loses_none_and_repeats_none` (SQLite): the
//!   server is SIGKILLed while one task runs and others wait; after a restart on the same
//!   data directory every task succeeds, none is lost, none is completed twice (one
//!   `charge` per task, balance = start - total price), the one cut off mid-run is
//!   retried once (attempts == 2), tasks finished before the kill are not run again,
//!   and every result downloads from its signed URL.
//! - `two_worker_processes_on_postgres_process_each_task_once`: an API node
//!   (`serve --no-worker`) and two `backdrop worker` processes share one PostgreSQL
//!   schema and one blob directory; 100 tasks each succeed on the first claim, are claimed
//!   by exactly one of the workers (their logs), are charged once, both workers take a
//!   share, and results made by the workers download through the API node. Needs
//!   `BACKDROP_TEST_POSTGRES_URL` (`eval "$(tools/postgres)"`); without it the test
//!   says it was skipped and passes.

mod common;

use common::{base64, example, Api, Setup, POLL};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The tests start several processes each: one at a time keeps their timing honest on
/// small machines.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime")
}

/// One ledger line: task, delta, reason.
type Movement = (Option<String>, i64, String);

/// Checks that every task in `uids` has exactly one `reserve`, one `charge` and no
/// `refund`, and that no other task appears; returns the total reserved (= charged).
fn check_charged_once(ledger: &[Movement], uids: &[String]) -> i64 {
    let mut per_task: HashMap<&str, Vec<(&str, i64)>> = HashMap::new();
    for (task, delta, reason) in ledger {
        if let Some(task) = task {
            per_task.entry(task.as_str()).or_default().push((reason.as_str(), *delta));
        }
    }
    let wanted: HashSet<&str> = uids.iter().map(String::as_str).collect();
    let extra: Vec<_> = per_task.keys().filter(|t| !wanted.contains(*t)).collect();
    assert!(extra.is_empty(), "ledger entries for unknown tasks: {extra:?}");
    let mut total = 0;
    for uid in uids {
        let moves = per_task.get(uid.as_str()).map(Vec::as_slice).unwrap_or_default();
        let count = |reason: &str| moves.iter().filter(|(r, _)| *r == reason).count();
        assert_eq!(count("reserve"), 1, "task {uid}: {moves:?}");
        assert_eq!(count("charge"), 1, "task {uid} charged other than once: {moves:?}");
        assert_eq!(count("refund"), 0, "task {uid}: {moves:?}");
        let reserved: i64 = moves.iter().filter(|(r, _)| *r == "reserve").map(|(_, d)| -d).sum();
        assert!(reserved > 0, "task {uid} reserved nothing: {moves:?}");
        total += reserved;
    }
    total
}

/// The ledger as `GET /v1/account` shows it (its most recent 50 movements).
fn account_ledger(account: &Value) -> Vec<Movement> {
    account["ledger"]
        .as_array()
        .expect("ledger")
        .iter()
        .map(|e| {
            (
                e["task"].as_str().map(str::to_string),
                e["delta"].as_i64().expect("delta"),
                e["reason"].as_str().expect("reason").to_string(),
            )
        })
        .collect()
}

#[test]
fn kill_9_with_tasks_queued_and_running_loses_none_and_repeats_none() {
    let _serial = serial();
    const START: i64 = 1000;
    const TASKS: usize = 8;
    let setup = Setup::new(
        "[limits]\nsubmit_burst = 20\n",
        &[
            ("BACKDROP_LEASE_MS", "2000"),
            ("BACKDROP_SUBMITS_PER_SECOND", "50"),
            ("BACKDROP_LOG", "info,sqlx=warn"),
        ],
    );
    let data = setup.data_dir();
    let data_arg = data.to_str().expect("utf-8 path");
    let (_, key) = setup.create_key(START, &["--data-dir", data_arg]);
    let mut first = setup.start_server("serve-first", &["--data-dir", data_arg]);
    let api = Api::new(&first.base, &key);

    // Patch-engine expansions of a photo: long enough (about a second each here) that
    // one runs while the rest wait.
    let photo = base64(&std::fs::read(example("coffee.jpg")).expect("example photo"));
    let mut uids = Vec::new();
    for seed in 0..TASKS {
        let body = json!({
            "image_base64": photo, "engine": "patch", "n": 1, "seed": seed,
            "up": 0.35, "down": 0.35, "left": 0.35, "right": 0.35,
        });
        uids.push(api.submit("/v1/expansions", &body));
    }

    // SIGKILL as soon as a task is running.
    let deadline = Instant::now() + Duration::from_secs(60);
    'watch: loop {
        for uid in &uids {
            if api.get_ok(&format!("/v1/tasks/{uid}"))["state"] == "running" {
                break 'watch;
            }
        }
        assert!(Instant::now() < deadline, "no task started running");
        std::thread::sleep(POLL);
    }
    first.proc.kill_9();

    // What the database held at the moment of death (no process is running now).
    let db = format!("sqlite://{}", data.join("backdrop.db").display());
    let at_kill: HashMap<String, String> = runtime().block_on(async {
        let repo = backdrop_store::open(&db).await.expect("opens the database");
        let mut states = HashMap::new();
        for uid in &uids {
            let task = repo.task(uid).await.expect("reads").expect("every task was committed");
            states.insert(uid.clone(), task.state.to_string());
        }
        states
    });
    let with_state =
        |s: &str| -> Vec<String> { uids.iter().filter(|u| at_kill[*u] == s).cloned().collect() };
    let (running, queued, finished) =
        (with_state("running"), with_state("queued"), with_state("succeeded"));
    assert!(!running.is_empty() && !queued.is_empty(), "states at the kill: {at_kill:?}");
    assert_eq!(running.len() + queued.len() + finished.len(), TASKS, "{at_kill:?}");

    println!(
        "at the kill: {} running, {} queued, {} succeeded",
        running.len(),
        queued.len(),
        finished.len()
    );

    let restart = Instant::now();
    let second = setup.start_server("serve-second", &["--data-dir", data_arg]);
    let api = Api::new(&second.base, &key);
    let views = api.wait_terminal(&uids, Duration::from_secs(120));
    println!("all {TASKS} tasks terminal {:?} after the restart", restart.elapsed());

    // None lost: the listing holds exactly the submitted tasks, all succeeded.
    let listed = api.get_ok("/v1/tasks?limit=100");
    let listed: HashSet<String> = listed["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(listed, uids.iter().cloned().collect::<HashSet<_>>());
    for uid in &uids {
        let view = &views[uid];
        assert_eq!(view["state"], "succeeded", "task {uid}: {view}");
        // The task cut off mid-run was claimed again once; the others only once.
        let attempts = if running.contains(uid) { 2 } else { 1 };
        assert_eq!(view["attempts"], attempts, "task {uid} (at the kill: {})", at_kill[uid]);
    }
    // Tasks that had finished before the kill were not run again after the restart.
    let rerun = second.proc.claims(&finished);
    assert!(rerun.is_empty(), "finished tasks ran again: {rerun:?}");
    let restarted = second.proc.claims(&uids);
    assert_eq!(restarted.len(), running.len() + queued.len(), "{restarted:?}");

    // None done twice: one charge per task; the balance paid for each task once.
    let account = api.get_ok("/v1/account");
    let total = check_charged_once(&account_ledger(&account), &uids);
    assert_eq!(account["balance"], START - total, "{account}");

    // The results download from their signed URLs.
    for uid in &uids {
        let view = &views[uid];
        let images = view["images"].as_array().expect("images");
        assert_eq!(images.len(), 1, "{view}");
        let url = images[0]["url"].as_str().expect("a signed URL");
        let size = api.download_image(url);
        assert_eq!(
            (u64::from(size.0), u64::from(size.1)),
            (view["width"].as_u64().expect("width"), view["height"].as_u64().expect("height"))
        );
        assert!(size.0 > 600 && size.1 > 400, "expanded: {size:?}");
    }
}

/// A PostgreSQL schema of its own for one test, dropped (with everything in it) on drop.
struct Schema {
    admin_url: String,
    name: String,
    /// A URL whose connections work in the schema.
    url: String,
}

impl Schema {
    fn create(admin_url: &str) -> Schema {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let name = format!("bdservice_{}_{nanos}", std::process::id());
        runtime().block_on(async {
            let pool = sqlx::PgPool::connect(admin_url).await.expect("connects to PostgreSQL");
            sqlx::query(&format!("CREATE SCHEMA {name}"))
                .execute(&pool)
                .await
                .expect("creates a schema");
            pool.close().await;
        });
        let sep = if admin_url.contains('?') { '&' } else { '?' };
        let url = format!("{admin_url}{sep}options[search_path]={name}");
        Schema { admin_url: admin_url.to_string(), name, url }
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let dropped = runtime().block_on(async {
            let pool = sqlx::PgPool::connect(&self.admin_url).await?;
            sqlx::query(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name))
                .execute(&pool)
                .await?;
            pool.close().await;
            Ok::<(), sqlx::Error>(())
        });
        if let Err(e) = dropped {
            eprintln!("could not drop schema {}: {e}", self.name);
        }
    }
}

#[test]
fn two_worker_processes_on_postgres_process_each_task_once() {
    let Some(admin_url) =
        std::env::var("BACKDROP_TEST_POSTGRES_URL").ok().filter(|u| !u.trim().is_empty())
    else {
        println!("skipped: BACKDROP_TEST_POSTGRES_URL not set (eval \"$(tools/postgres)\")");
        eprintln!("skipped: BACKDROP_TEST_POSTGRES_URL not set (eval \"$(tools/postgres)\")");
        return;
    };
    let _serial = serial();
    const START: i64 = 10_000;
    const TASKS: usize = 100;
    // Declared before the processes so it is dropped after they are killed.
    let schema = Schema::create(&admin_url);
    let setup = Setup::new(
        // 100 tasks may wait at once.
        "[limits]\nsubmit_burst = 100\nmax_key_images = 1000\n",
        &[
            ("BACKDROP_SECRET", "service-test-secret-0123456789abcdef0123456789abcdef"),
            ("BACKDROP_SUBMITS_PER_SECOND", "1000"),
            ("BACKDROP_LOG", "info,sqlx=warn"),
        ],
    );
    let data = setup.data_dir();
    let data_arg = data.to_str().expect("utf-8 path");
    let shared = ["--data-dir", data_arg, "--database-url", schema.url.as_str()];
    let (key_id, key) = setup.create_key(START, &shared);

    let mut api_args = vec!["--no-worker"];
    api_args.extend_from_slice(&shared);
    let node = setup.start_server("api", &api_args);
    let mut worker_args = vec!["worker"];
    worker_args.extend_from_slice(&shared);
    let mut workers =
        [setup.spawn("worker-a", &worker_args), setup.spawn("worker-b", &worker_args)];
    for worker in &mut workers {
        worker.wait_stdout("backdrop worker for", Duration::from_secs(60));
    }
    assert_ne!(workers[0].id(), workers[1].id());

    let api = Api::new(&node.base, &key);
    let cutout = base64(&std::fs::read(example("bottle-cutout.png")).expect("example cut-out"));
    let mut uids = Vec::new();
    for seed in 0..TASKS {
        let body = json!({
            "image_base64": cutout, "prompt": "on a marble counter", "engine": "studio",
            "n": 1, "seed": seed,
            "width": 128, "height": 128, "preview": false,
        });
        uids.push(api.submit("/v1/backgrounds", &body));
    }
    let views = api.wait_terminal(&uids, Duration::from_secs(120));
    for uid in &uids {
        let view = &views[uid];
        assert_eq!(view["state"], "succeeded", "task {uid}: {view}");
        assert_eq!(view["attempts"], 1, "task {uid} was claimed more than once: {view}");
    }

    // Each task was claimed by exactly one worker, and both took a share.
    let claims: Vec<Vec<String>> = workers.iter().map(|w| w.claims(&uids)).collect();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (which, list) in claims.iter().enumerate() {
        for uid in list {
            if let Some(other) = seen.insert(uid.as_str(), which) {
                panic!("task {uid} claimed by worker {other} and worker {which}");
            }
        }
    }
    assert_eq!(seen.len(), TASKS, "claims: {} + {}", claims[0].len(), claims[1].len());
    assert!(
        claims.iter().all(|c| !c.is_empty()),
        "one worker did everything: {} + {}",
        claims[0].len(),
        claims[1].len()
    );
    assert!(node.proc.claims(&uids).is_empty(), "the API node ran tasks");
    println!("worker claims: {} + {}", claims[0].len(), claims[1].len());

    // One charge per task, read from the database (the API shows the latest 50 only).
    let (ledger, balance) = runtime().block_on(async {
        let repo = backdrop_store::open(&schema.url).await.expect("opens the schema");
        let ledger = repo.ledger(key_id).await.expect("ledger");
        let key = repo.key(key_id).await.expect("reads the key").expect("the key");
        (ledger, key.balance)
    });
    let ledger: Vec<Movement> =
        ledger.into_iter().map(|e| (e.task_uid, e.delta, e.reason)).collect();
    let total = check_charged_once(&ledger, &uids);
    assert_eq!(balance, Some(START - total));
    assert_eq!(api.get_ok("/v1/account")["balance"], START - total);

    // Results written by the workers are served by the API node (shared blobs, secret).
    for uid in uids.iter().step_by(20) {
        let url = views[uid]["images"][0]["url"].as_str().expect("a signed URL");
        assert_eq!(api.download_image(url), (128, 128));
    }
}
