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

/// The `[storage]`/`[database]` block of the README's Scale-out section, as a newcomer
/// copies it, with only the values that name this machine's servers replaced. A key
/// the test does not know, or one it expects and the block lacks, fails the test: the
/// block must work with exactly the options it shows.
fn readme_scale_out_block(values: &[(&str, &str)]) -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("reads README.md");
    let section = &readme[readme.find("### Scale-out").expect("a Scale-out section")..];
    let start = section.find("```toml\n").expect("a toml block in Scale-out") + "```toml\n".len();
    let block = &section[start..start + section[start..].find("```").expect("block end")];
    let mut replaced = HashSet::new();
    let lines: Vec<String> = block
        .lines()
        .map(|line| {
            let Some((key, _)) = line.split_once(" = ") else { return line.to_string() };
            match values.iter().find(|(k, _)| *k == key.trim()) {
                Some((k, v)) => {
                    replaced.insert(*k);
                    format!("{key} = \"{v}\"")
                }
                None => line.to_string(),
            }
        })
        .collect();
    for (k, _) in values {
        assert!(replaced.contains(k), "the README's Scale-out block has no `{k}`:\n{block}");
    }
    lines.join("\n") + "\n"
}

/// The PostgreSQL admin URL and the S3 values of `tools/test`'s servers; `None` (and a
/// line saying the test is skipped) without them.
fn scale_out_servers() -> Option<(String, [(String, String); 4])> {
    let servers = postgres_and_s3();
    if servers.is_none() {
        println!("skipped: needs BACKDROP_TEST_POSTGRES_URL and BACKDROP_TEST_S3_* (tools/test)");
    }
    servers
}

fn postgres_and_s3() -> Option<(String, [(String, String); 4])> {
    let var = |n: &str| std::env::var(n).ok().filter(|v| !v.trim().is_empty());
    let admin_url = var("BACKDROP_TEST_POSTGRES_URL")?;
    Some((
        admin_url,
        [
            ("endpoint".into(), var("BACKDROP_TEST_S3_ENDPOINT")?),
            ("bucket".into(), var("BACKDROP_TEST_S3_BUCKET")?),
            ("access_key_id".into(), var("BACKDROP_TEST_S3_ACCESS_KEY_ID")?),
            ("secret_access_key".into(), var("BACKDROP_TEST_S3_SECRET_ACCESS_KEY")?),
        ],
    ))
}

/// The README's scale-out configuration as written (PostgreSQL, an S3-compatible server
/// at a plain-HTTP endpoint, a shared secret), one API node and two workers: every task
/// succeeds once and its result downloads through the API node.
#[test]
fn the_readme_scale_out_block_works_as_written() {
    let Some((admin_url, s3)) = scale_out_servers() else { return };
    let _serial = serial();
    let schema = Schema::create(&admin_url);
    let mut values: Vec<(&str, &str)> = s3.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    values.push(("url", &schema.url));
    let setup = Setup::new(
        &readme_scale_out_block(&values),
        &[("BACKDROP_SUBMITS_PER_SECOND", "1000"), ("BACKDROP_LOG", "info,sqlx=warn")],
    );
    let (_, key) = setup.create_key(1000, &[]);
    let node = setup.start_server("api", &["--no-worker"]);
    let mut workers = [setup.spawn("worker-a", &["worker"]), setup.spawn("worker-b", &["worker"])];
    for worker in &mut workers {
        worker.wait_stdout("backdrop worker for", Duration::from_secs(60));
        assert!(!worker.stdout().contains(&schema.url), "the database password is printed");
    }
    let api = Api::new(&node.base, &key);
    let cutout = base64(&std::fs::read(example("bottle-cutout.png")).expect("example cut-out"));
    let uids: Vec<String> = (0..6)
        .map(|seed| {
            let body = json!({
                "image_base64": cutout, "prompt": "on slate", "engine": "studio",
                "n": 1, "seed": seed, "width": 96, "height": 96, "preview": false,
            });
            api.submit("/v1/backgrounds", &body)
        })
        .collect();
    let views = api.wait_terminal(&uids, Duration::from_secs(120));
    for uid in &uids {
        assert_eq!(views[uid]["state"], "succeeded", "task {uid}: {}", views[uid]);
        assert_eq!(views[uid]["attempts"], 1, "task {uid}: {}", views[uid]);
    }
    let claims: usize = workers.iter().map(|w| w.claims(&uids).len()).sum();
    assert_eq!(claims, uids.len(), "each task is claimed once by one worker");
    // Result URLs carry the README's public URL; the same path and signature work
    // through the API node.
    let url = views[&uids[0]]["images"][0]["url"].as_str().expect("a signed URL");
    let path = url.strip_prefix("https://backdrop.example.com").expect("the configured public URL");
    assert_eq!(api.download_image(&format!("{}{path}", node.base)), (96, 96));
    let ready = api.get_ok("/readyz");
    assert_eq!((ready["database"].as_str(), ready["storage"].as_str()), (Some("ok"), Some("ok")));
}

/// A node whose blob store or database does not work stops at start with one line that
/// names the dependency, instead of answering every submit with 500.
#[test]
fn misconfigured_stores_stop_serve_and_worker_at_start() {
    let Some((admin_url, s3)) = scale_out_servers() else { return };
    let _serial = serial();
    let schema = Schema::create(&admin_url);
    let bad_password = {
        let url = reqwest::Url::parse(&schema.url).expect("a URL");
        let mut url = url.clone();
        url.set_password(Some("wrong-password-123")).expect("sets the password");
        url.to_string()
    };
    let mut values: Vec<(&str, &str)> = s3.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let cases: [(&str, &str, &str); 2] =
        [("bucket", "no-such-bucket-for-backdrop", "storage"), ("url", &bad_password, "database")];
    values.push(("url", &schema.url));
    for (field, value, names) in cases {
        let mut broken = values.clone();
        broken.retain(|(k, _)| *k != field);
        broken.push((field, value));
        let setup = Setup::new(&readme_scale_out_block(&broken), &[]);
        for args in [&["serve", "--bind", "127.0.0.1:0", "--no-worker"][..], &["worker"][..]] {
            let mut proc = setup.spawn(&format!("{}-{field}", args[0]), args);
            let status = proc.wait_exit(Duration::from_secs(60));
            assert!(!status.success(), "{args:?} with a bad {field} started");
            let stderr = proc.stderr();
            let line = stderr.lines().find(|l| l.starts_with("error: ")).expect("an error line");
            assert!(line.contains(names), "{args:?}, bad {field}: '{line}'");
            assert!(!stderr.contains("wrong-password-123"), "a password is printed: {stderr}");
        }
    }
}

/// The data directory, its database and the server secret are the owner's alone; the
/// secret survives restarts and a damaged one stops the server instead of being
/// replaced; a configured secret shorter than 32 bytes is refused.
#[test]
#[cfg(unix)]
fn the_data_directory_and_the_secret_are_private_and_never_silently_replaced() {
    use std::os::unix::fs::PermissionsExt;
    let _serial = serial();
    let setup = Setup::new("", &[]);
    let data = setup.data_dir();
    let data_arg = data.to_str().expect("utf-8 path");
    setup.create_key(10, &["--data-dir", data_arg]);
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("exists").permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700, "data directory");
    assert_eq!(mode(&data.join("secret")), 0o600, "secret");
    assert_eq!(mode(&data.join("backdrop.db")), 0o600, "database");
    let secret = std::fs::read_to_string(data.join("secret")).expect("secret");
    assert!(secret.trim().len() >= 32);

    // A restart keeps the secret.
    setup.create_key(10, &["--data-dir", data_arg]);
    assert_eq!(std::fs::read_to_string(data.join("secret")).expect("secret"), secret);

    // A truncated secret stops the server with a line naming it; the file is kept.
    std::fs::write(data.join("secret"), "short").expect("damages the secret");
    let mut serve =
        setup.spawn("serve-damaged", &["serve", "--bind", "127.0.0.1:0", "--data-dir", data_arg]);
    assert!(!serve.wait_exit(Duration::from_secs(30)).success());
    assert!(serve.stderr().contains("server secret"), "{}", serve.stderr());
    assert_eq!(std::fs::read_to_string(data.join("secret")).expect("kept"), "short");

    // An unreadable secret (here a folder in its place) is an error, not a new secret.
    std::fs::remove_file(data.join("secret")).expect("removes");
    std::fs::create_dir(data.join("secret")).expect("a folder in its place");
    let mut serve = setup
        .spawn("serve-unreadable", &["serve", "--bind", "127.0.0.1:0", "--data-dir", data_arg]);
    assert!(!serve.wait_exit(Duration::from_secs(30)).success());
    assert!(serve.stderr().contains("cannot read the server secret"), "{}", serve.stderr());

    // A configured secret must be long enough.
    let short = Setup::new("[server]\nsecret = \"too-short\"\n", &[]);
    let mut serve = short.spawn("serve-short", &["serve", "--bind", "127.0.0.1:0"]);
    assert!(!serve.wait_exit(Duration::from_secs(30)).success());
    assert!(serve.stderr().contains("at least 32"), "{}", serve.stderr());
}
