//! The conformance suite every [`crate::TaskRepo`] implementation must pass.
//!
//! Each case is a public async function taking a fresh, empty repository and panicking
//! on the first broken promise of the trait's contract; [`cases`] lists them all and
//! [`run_all`] runs every case against repositories from a factory, reporting each by
//! name. The integration tests of this crate run it against SQLite and PostgreSQL; a new
//! backend passes when `run_all` does.
//!
//! The cases move the clock themselves (every time is an argument), so none of them
//! sleeps. Lease expiries follow the database's own clock instead: a case lets a lease
//! lapse by granting or renewing it for 0 ms, and checks an expiry against this process's
//! clock, give or take [`CLOCK_SKEW`].

use crate::{
    ApiKey, DeliveryAttempt, Lease, NewKey, NewTask, OutboxEntry, ResultImage, StoreError,
    SubmitLimits, SurfaceMeta, Task, TaskFilter, TaskProgress, TaskRepo, TaskResult,
};
use backdrop_core::{
    BackgroundSpec, EngineName, ErrorCode, ExpansionSpec, JobKind, JobSpec, TaskPayload, TaskState,
};
use futures::future::BoxFuture;
use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::Arc;

/// The start of every case's clock.
const T0: i64 = 1_700_000_000_000;

/// The lease most cases claim with.
const LEASE: i64 = 30_000;

/// How far apart the database's clock and this process's may be (the suite runs against
/// databases on the same machine).
pub const CLOCK_SKEW: i64 = 1_000;

/// Limits no case reaches unless it means to.
const OPEN: SubmitLimits = SubmitLimits { max_queued: 10_000, max_key_images: 10_000 };

/// One named case of the suite.
#[derive(Clone, Copy)]
pub struct Case {
    /// The case's function name.
    pub name: &'static str,
    /// Runs the case against a fresh repository.
    pub run: fn(Arc<dyn TaskRepo>) -> BoxFuture<'static, ()>,
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Case").field("name", &self.name).finish()
    }
}

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        /// Every case of the suite, in the order [`run_all`] runs them.
        pub fn cases() -> Vec<Case> {
            vec![$(Case { name: stringify!($name), run: |repo| Box::pin($name(repo)) }),*]
        }
    };
}

cases!(
    create_and_read,
    idempotent_create,
    queue_limit,
    concurrency_limit,
    insufficient_credits,
    queue_positions_and_depths,
    claim_order_and_engines,
    concurrent_claims_are_exclusive,
    heartbeat_and_lost_lease,
    complete_and_fail_need_the_lease,
    cancel_queued_and_running,
    requeue_expired_and_retry_limit,
    credits_and_ledger,
    expiry_on_every_end_state,
    keys,
    outbox_per_state_change,
    due_callbacks_are_leased,
    record_delivery_and_log,
    list_paging_and_filters,
);

/// Runs every case, each against a new repository from `fresh`, in a task of its own so
/// one failure does not hide the others; panics at the end naming every failed case.
/// Needs a Tokio runtime (a multi-threaded one exercises the concurrency cases best).
pub async fn run_all<F, Fut>(mut fresh: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Arc<dyn TaskRepo>>,
{
    let mut failed = Vec::new();
    for case in cases() {
        let repo = fresh().await;
        match tokio::spawn((case.run)(repo)).await {
            Ok(()) => println!("conformance: {} ... ok", case.name),
            Err(e) => {
                let why = match e.try_into_panic() {
                    Ok(panic) => panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "panicked".into()),
                    Err(e) => e.to_string(),
                };
                println!("conformance: {} ... FAILED: {why}", case.name);
                failed.push(format!("{}: {why}", case.name));
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{} conformance case(s) failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

// --- fixtures ---

fn background(n: u32) -> TaskPayload {
    TaskPayload::new(JobSpec::Background(BackgroundSpec {
        prompt: Some("a wooden table in soft light".into()),
        n,
        seed: Some(7),
        ..Default::default()
    }))
}

fn expansion(n: u32) -> TaskPayload {
    TaskPayload::new(JobSpec::Expansion(ExpansionSpec { n, seed: Some(11), ..Default::default() }))
}

fn task(uid: &str, key_id: i64, engine: EngineName, payload: TaskPayload, credits: i64) -> NewTask {
    NewTask {
        uid: uid.into(),
        key_id,
        engine,
        payload,
        input_blob: format!("inputs/{uid}.png"),
        reference_blob: None,
        idempotency_key: None,
        surface: "native".into(),
        surface_meta: SurfaceMeta::default(),
        callback_url: None,
        credits,
    }
}

fn with_callback(mut new: NewTask) -> NewTask {
    new.callback_url = Some(format!("http://receiver.test/hooks/{}", new.uid));
    new
}

fn result_of(images: usize) -> TaskResult {
    TaskResult {
        engine: "studio".into(),
        seed: 7,
        width: 64,
        height: 48,
        images: (0..images)
            .map(|i| ResultImage {
                index: i as u32 + 1,
                seed: 7 + i as u64,
                blob: format!("results/img-{i}.png"),
                preview_blob: Some(format!("results/img-{i}.preview.jpg")),
                watermarked_blob: None,
            })
            .collect(),
        notes: vec![("scene".into(), "studio-white".into())],
        engine_ms: 12.5,
    }
}

async fn new_key(repo: &dyn TaskRepo, name: &str, balance: Option<i64>) -> ApiKey {
    let new = NewKey {
        name: name.into(),
        hash: format!("{name:0>64}"),
        prefix: format!("bd_{}", &name[..name.len().min(4)]),
        balance,
    };
    repo.create_key(new, T0).await.expect("creates a key")
}

async fn create(repo: &dyn TaskRepo, new: NewTask, now: i64) -> Task {
    let created = repo.create_task(new, OPEN, now).await.expect("creates a task");
    assert!(created.created, "a new task is reported as created");
    created.task
}

async fn get(repo: &dyn TaskRepo, uid: &str) -> Task {
    repo.task(uid).await.expect("reads a task").unwrap_or_else(|| panic!("task {uid} exists"))
}

/// Claims for `worker` and checks that the task claimed is `uid`.
/// Milliseconds since the Unix epoch by this process's clock.
fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Checks that `t`'s lease lapses `lease` ms after a moment between `before` and now.
fn assert_lease(t: &Task, before: i64, lease: i64) {
    let after = wall_ms();
    let at = t.lease_expires_at.expect("a lease");
    assert!(
        at >= before + lease - CLOCK_SKEW && at <= after + lease + CLOCK_SKEW,
        "{}: the lease lapses at {at}, not {lease} ms after a moment in {before}..={after}",
        t.uid
    );
}

async fn claim_exact(
    repo: &dyn TaskRepo,
    uid: &str,
    engine: EngineName,
    worker: &str,
    now: i64,
) -> Task {
    let task = repo
        .claim(worker, &[engine], LEASE, now)
        .await
        .expect("claims")
        .unwrap_or_else(|| panic!("{worker} finds {uid} to claim"));
    assert_eq!(task.uid, uid, "the oldest queued task is claimed");
    task
}

async fn balance(repo: &dyn TaskRepo, key_id: i64) -> Option<i64> {
    repo.key(key_id).await.expect("reads a key").expect("the key exists").balance
}

/// Every pending outbox entry (at a far-future time), grouped by task, oldest first.
async fn outbox_by_task(repo: &dyn TaskRepo) -> BTreeMap<String, Vec<OutboxEntry>> {
    let due = repo.due_callbacks(T0 + 1_000_000_000, 1, 10_000).await.expect("reads the outbox");
    let mut map: BTreeMap<String, Vec<OutboxEntry>> = BTreeMap::new();
    for entry in due {
        map.entry(entry.task_uid.clone()).or_default().push(entry);
    }
    map
}

fn states(entries: Option<&Vec<OutboxEntry>>) -> Vec<TaskState> {
    entries.map(|e| e.iter().map(|e| e.state).collect()).unwrap_or_default()
}

// --- cases ---

/// A created task reads back field for field by uid, id and idempotency key; ids ascend;
/// an unknown key is refused.
pub async fn create_and_read(repo: Arc<dyn TaskRepo>) {
    let repo = &*repo;
    let key = new_key(repo, "reader", None).await;
    let other = new_key(repo, "other", None).await;
    let mut new = task("t-read", key.id, EngineName::Studio, background(2), 5);
    new.reference_blob = Some("inputs/ref.png".into());
    new.idempotency_key = Some("client-1".into());
    new.surface = "cutout".into();
    new.surface_meta =
        SurfaceMeta::new(&serde_json::json!({"return_type": 2, "nested": {"list": [1, 2]}}));
    new.callback_url = Some("http://receiver.test/hook".into());
    let created = repo.create_task(new.clone(), OPEN, T0).await.expect("creates");
    assert!(created.created);
    let t = created.task.clone();
    assert_eq!(t.uid, "t-read");
    assert_eq!(t.key_id, key.id);
    assert_eq!(t.engine, EngineName::Studio);
    assert_eq!(t.payload, new.payload);
    assert_eq!(t.kind(), JobKind::Background);
    assert_eq!(t.n(), 2);
    assert_eq!(t.input_blob, "inputs/t-read.png");
    assert_eq!(t.reference_blob.as_deref(), Some("inputs/ref.png"));
    assert_eq!(t.idempotency_key.as_deref(), Some("client-1"));
    assert_eq!(t.surface, "cutout");
    assert_eq!(t.surface_meta, new.surface_meta);
    assert_eq!(t.callback_url, new.callback_url);
    assert_eq!(t.state, TaskState::Queued);
    assert_eq!(t.progress, TaskProgress::default());
    assert_eq!(t.attempts, 0);
    assert_eq!((t.lease_owner.clone(), t.lease_expires_at), (None, None));
    assert!(!t.cancel_requested && !t.result_expired);
    assert_eq!(t.result, None);
    assert_eq!((t.error_code, t.error_message.clone()), (None, None));
    assert_eq!(t.credits_reserved, 0, "an unmetered key reserves nothing");
    assert_eq!(t.credits_charged, 0);
    assert_eq!((t.created_at, t.updated_at), (T0, T0));
    assert_eq!((t.started_at, t.finished_at, t.expires_at), (None, None, None));

    assert_eq!(repo.task("t-read").await.expect("reads"), Some(t.clone()));
    assert_eq!(repo.task_by_id(t.id).await.expect("reads"), Some(t.clone()));
    assert_eq!(
        repo.task_by_idempotency_key(key.id, "client-1").await.expect("reads"),
        Some(t.clone())
    );
    assert_eq!(repo.task_by_idempotency_key(other.id, "client-1").await.expect("reads"), None);
    assert_eq!(repo.task_by_idempotency_key(key.id, "client-2").await.expect("reads"), None);
    assert_eq!(repo.task("nope").await.expect("reads"), None);
    assert_eq!(repo.task_by_id(t.id + 1000).await.expect("reads"), None);

    let second =
        create(repo, task("t-read-2", key.id, EngineName::Patch, expansion(1), 0), T0 + 1).await;
    assert!(second.id > t.id, "ids ascend with submission");
    assert_eq!(second.kind(), JobKind::Expansion);

    match repo
        .create_task(task("t-nokey", 987_654, EngineName::Studio, background(1), 0), OPEN, T0)
        .await
    {
        Err(StoreError::NoSuchKey(987_654)) => {}
        other => panic!("a task of an unknown key is refused with NoSuchKey, got {other:?}"),
    }
    assert_eq!(repo.task("t-nokey").await.expect("reads"), None);
    repo.ping().await.expect("the database answers");
}

/// The same `(key, idempotency key)` returns the stored task without reserving again,
/// also when the duplicates race; other keys and tasks without a key are independent.
pub async fn idempotent_create(repo: Arc<dyn TaskRepo>) {
    let key = new_key(&*repo, "idem", Some(100)).await;
    let other = new_key(&*repo, "idem-other", Some(100)).await;
    let mut first = task("t-1", key.id, EngineName::Studio, background(1), 3);
    first.idempotency_key = Some("same".into());
    let a = repo.create_task(first.clone(), OPEN, T0).await.expect("creates");
    assert!(a.created);
    let mut again = first.clone();
    again.uid = "t-1-retry".into();
    let b = repo.create_task(again, OPEN, T0 + 5).await.expect("answers the retry");
    assert!(!b.created, "a retried submit is not a new task");
    assert_eq!(b.task, a.task);
    assert_eq!(repo.task("t-1-retry").await.expect("reads"), None);
    assert_eq!(balance(&*repo, key.id).await, Some(97), "reserved once");

    let mut theirs = first.clone();
    theirs.uid = "t-1-other-key".into();
    theirs.key_id = other.id;
    assert!(
        repo.create_task(theirs, OPEN, T0).await.expect("creates").created,
        "keys are independent"
    );
    create(&*repo, task("t-no-idem-1", key.id, EngineName::Studio, background(1), 0), T0).await;
    create(&*repo, task("t-no-idem-2", key.id, EngineName::Studio, background(1), 0), T0).await;

    // Eight submits with one idempotency key at once: one task, one reservation.
    let mut racers = Vec::new();
    for i in 0..8 {
        let repo = repo.clone();
        let mut new = task(&format!("t-race-{i}"), key.id, EngineName::Studio, background(1), 2);
        new.idempotency_key = Some("race".into());
        racers.push(tokio::spawn(async move { repo.create_task(new, OPEN, T0 + 10).await }));
    }
    let mut created = 0;
    let mut uids = HashSet::new();
    for racer in racers {
        let answer = racer.await.expect("joins").expect("every duplicate is answered");
        created += usize::from(answer.created);
        uids.insert(answer.task.uid);
    }
    assert_eq!((created, uids.len()), (1, 1), "exactly one of the racing submits creates");
    assert_eq!(balance(&*repo, key.id).await, Some(95));
    let reserves = repo
        .ledger(key.id)
        .await
        .expect("reads")
        .into_iter()
        .filter(|e| e.reason == "reserve")
        .count();
    assert_eq!(reserves, 2);
}

/// `max_queued` counts the queued tasks of the submit's engine only.
pub async fn queue_limit(repo: Arc<dyn TaskRepo>) {
    let repo = &*repo;
    let key = new_key(repo, "queue", None).await;
    let limits = SubmitLimits { max_queued: 2, max_key_images: 100 };
    for uid in ["s-1", "s-2"] {
        repo.create_task(task(uid, key.id, EngineName::Studio, background(1), 0), limits, T0)
            .await
            .expect("room in the queue");
    }
    match repo
        .create_task(task("s-3", key.id, EngineName::Studio, background(1), 0), limits, T0)
        .await
    {
        Err(StoreError::QueueFull { engine: EngineName::Studio, max: 2 }) => {}
        other => panic!("a full queue refuses with QueueFull, got {other:?}"),
    }
    assert_eq!(repo.task("s-3").await.expect("reads"), None, "a refused submit stores nothing");
    repo.create_task(task("p-1", key.id, EngineName::Patch, expansion(1), 0), limits, T0)
        .await
        .expect("another engine's queue has room");
    claim_exact(repo, "s-1", EngineName::Studio, "w", T0).await;
    repo.create_task(task("s-3", key.id, EngineName::Studio, background(1), 0), limits, T0)
        .await
        .expect("a claimed task leaves the queue");
}

/// `max_key_images` sums `n` over the key's queued and running tasks.
pub async fn concurrency_limit(repo: Arc<dyn TaskRepo>) {
    let repo = &*repo;
    let a = new_key(repo, "conc-a", None).await;
    let b = new_key(repo, "conc-b", None).await;
    let limits = SubmitLimits { max_queued: 100, max_key_images: 4 };
    let submit = |uid: &'static str, key: i64, n: u32| async move {
        repo.create_task(task(uid, key, EngineName::Studio, background(n), 0), limits, T0).await
    };
    submit("a-3", a.id, 3).await.expect("3 of 4");
    match submit("a-2", a.id, 2).await {
        Err(StoreError::ConcurrencyLimit { active: 3, max: 4 }) => {}
        other => panic!("3 + 2 images is over 4, got {other:?}"),
    }
    submit("a-1", a.id, 1).await.expect("3 + 1 is at the limit");
    submit("b-4", b.id, 4).await.expect("another key counts its own images");
    claim_exact(repo, "a-3", EngineName::Studio, "w", T0).await;
    match submit("a-1b", a.id, 1).await {
        Err(StoreError::ConcurrencyLimit { active: 4, max: 4 }) => {}
        other => panic!("running tasks count too, got {other:?}"),
    }
    assert!(repo.complete("a-3", "w", result_of(3), T0 + 100, T0 + 1).await.expect("completes"));
    submit("a-3b", a.id, 3).await.expect("a finished task frees its images");
}

/// A metered key's balance must cover the price; unmetered keys are never refused.
pub async fn insufficient_credits(repo: Arc<dyn TaskRepo>) {
    let repo = &*repo;
    let key = new_key(repo, "poor", Some(5)).await;
    let t = create(repo, task("c-1", key.id, EngineName::Studio, background(1), 3), T0).await;
    assert_eq!(t.credits_reserved, 3);
    assert_eq!(balance(repo, key.id).await, Some(2));
    match repo
        .create_task(task("c-2", key.id, EngineName::Studio, background(1), 3), OPEN, T0)
        .await
    {
        Err(StoreError::InsufficientCredits { needed: 3, balance: 2 }) => {}
        other => panic!("2 credits do not pay for 3, got {other:?}"),
    }
    assert_eq!(repo.task("c-2").await.expect("reads"), None);
    assert_eq!(balance(repo, key.id).await, Some(2), "a refused submit reserves nothing");
    assert_eq!(repo.ledger(key.id).await.expect("reads").len(), 2, "grant and one reserve");
    create(repo, task("c-3", key.id, EngineName::Studio, background(1), 2), T0).await;
    assert_eq!(balance(repo, key.id).await, Some(0));
    create(repo, task("c-free", key.id, EngineName::Studio, background(1), 0), T0).await;

    let rich = new_key(repo, "unmetered", None).await;
    let t =
        create(repo, task("c-4", rich.id, EngineName::Studio, background(1), 1_000_000), T0).await;
    assert_eq!(t.credits_reserved, 0);
    assert_eq!(balance(repo, rich.id).await, None, "still unmetered");
    assert!(repo.ledger(rich.id).await.expect("reads").is_empty());
}

/// Positions count earlier queued tasks of the same engine; depths count per engine.
pub async fn queue_positions_and_depths(repo: Arc<dyn TaskRepo>) {
    let repo = &*repo;
    let key = new_key(repo, "pos", None).await;
    for (i, uid) in ["s-1", "p-1", "s-2", "s-3", "p-2"].iter().enumerate() {
        let (engine, payload) = if uid.starts_with('s') {
            (EngineName::Studio, background(1))
        } else {
            (EngineName::Patch, expansion(1))
        };
        create(repo, task(uid, key.id, engine, payload, 0), T0 + i as i64).await;
    }
    let position =
        |uid: &'static str| async move { repo.queue_position(uid).await.expect("reads") };
    assert_eq!(position("s-1").await, Some(0));
    assert_eq!(position("s-2").await, Some(1));
    assert_eq!(position("s-3").await, Some(2));
    assert_eq!(position("p-1").await, Some(0));
    assert_eq!(position("p-2").await, Some(1));
    assert_eq!(position("missing").await, None);
    let depths: BTreeMap<_, _> = repo.queue_depths().await.expect("reads").into_iter().collect();
    assert_eq!(depths.get(&EngineName::Studio), Some(&3));
    assert_eq!(depths.get(&EngineName::Patch), Some(&2));
    assert_eq!(depths.get(&EngineName::Diffusion).copied().unwrap_or(0), 0);

    claim_exact(repo, "s-1", EngineName::Studio, "w", T0 + 10).await;
    assert_eq!(position("s-1").await, None, "a running task has no position");
    assert_eq!(position("s-2").await, Some(0));
    repo.cancel("s-2", T0 + 11).await.expect("cancels");
    assert_eq!(position("s-2").await, None);
    assert_eq!(position("s-3").await, Some(0));
    let depths: BTreeMap<_, _> = repo.queue_depths().await.expect("reads").into_iter().collect();
    assert_eq!(depths.get(&EngineName::Studio), Some(&1));
    assert_eq!(depths.get(&EngineName::Patch), Some(&2));
}

/// Claims take the oldest queued task of the worker's engines and set the lease.
pub async fn claim_order_and_engines(repo: Arc<dyn TaskRepo>) {
    let repo = &*repo;
    let key = new_key(repo, "claims", None).await;
    create(repo, task("a", key.id, EngineName::Studio, background(1), 0), T0).await;
    create(repo, task("b", key.id, EngineName::Patch, expansion(1), 0), T0 + 1).await;
    create(repo, task("c", key.id, EngineName::Studio, background(1), 0), T0 + 2).await;

    assert_eq!(repo.claim("w", &[], LEASE, T0).await.expect("claims"), None, "no engines, no task");
    assert_eq!(repo.claim("w", &[EngineName::Diffusion], LEASE, T0).await.expect("claims"), None);
    let b = repo.claim("w1", &[EngineName::Patch], LEASE, T0 + 10).await.expect("claims");
    assert_eq!(b.map(|t| t.uid), Some("b".into()));
    let before = wall_ms();
    let a = repo
        .claim("w1", &[EngineName::Studio, EngineName::Patch], 5_000, T0 + 20)
        .await
        .expect("claims")
        .expect("a is queued");
    assert_eq!(a.uid, "a", "oldest first");
    assert_eq!(a.state, TaskState::Running);
    assert_eq!(a.lease_owner.as_deref(), Some("w1"));
    assert_lease(&a, before, 5_000);
    assert_eq!(a.attempts, 1);
    assert_eq!((a.started_at, a.updated_at), (Some(T0 + 20), T0 + 20));
    assert_eq!(get(repo, "a").await, a, "the claim returns the stored task");
    claim_exact(repo, "c", EngineName::Studio, "w2", T0 + 30).await;
    assert_eq!(
        repo.claim("w2", &[EngineName::Studio, EngineName::Patch], LEASE, T0 + 40)
            .await
            .expect("claims"),
        None
    );
}

/// Many claimers at once never get the same task, and together they get them all.
pub async fn concurrent_claims_are_exclusive(repo: Arc<dyn TaskRepo>) {
    let key = new_key(&*repo, "race", None).await;
    const TASKS: usize = 60;
    for i in 0..TASKS {
        let (engine, payload) = if i % 3 == 0 {
            (EngineName::Patch, expansion(1))
        } else {
            (EngineName::Studio, background(1))
        };
        create(&*repo, task(&format!("r-{i:03}"), key.id, engine, payload, 0), T0).await;
    }
    let mut workers = Vec::new();
    for w in 0..8 {
        let repo = repo.clone();
        workers.push(tokio::spawn(async move {
            let worker = format!("worker-{w}");
            let mut got = Vec::new();
            while let Some(t) = repo
                .claim(&worker, &[EngineName::Studio, EngineName::Patch], LEASE, T0 + 1)
                .await
                .expect("claims")
            {
                assert_eq!(t.lease_owner.as_deref(), Some(worker.as_str()));
                got.push((t.uid, worker.clone()));
            }
            got
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.expect("a claimer finished"));
    }
    let unique: HashSet<_> = all.iter().map(|(uid, _)| uid.clone()).collect();
    assert_eq!(all.len(), TASKS, "every task claimed once, none twice");
    assert_eq!(unique.len(), TASKS);
    for (uid, worker) in &all {
        let t = get(&*repo, uid).await;
        assert_eq!(
            (t.state, t.lease_owner.as_deref(), t.attempts),
            (TaskState::Running, Some(worker.as_str()), 1)
        );
    }
}

/// Heartbeats renew the lease and store progress for the lease holder only.
pub async fn heartbeat_and_lost_lease(repo: Arc<dyn TaskRepo>) {
    let repo = &*repo;
    let key = new_key(repo, "beat", None).await;
    create(repo, task("h", key.id, EngineName::Studio, background(1), 0), T0).await;
    // A lease of 0 ms lapses at once, unless renewed.
    repo.claim("w1", &[EngineName::Studio], 0, T0).await.expect("claims").expect("h");
    let progress = TaskProgress { fraction: 0.5, step: 5, steps: 10 };
    let before = wall_ms();
    let lease = repo.heartbeat("h", "w1", LEASE, Some(progress), T0 + 500).await.expect("beats");
    assert_eq!(lease, Lease::Held { cancel_requested: false });
    let t = get(repo, "h").await;
    assert_eq!((t.progress, t.updated_at), (progress, T0 + 500));
    assert_lease(&t, before, LEASE);
    assert_eq!(repo.requeue_expired(3, T0 + 550).await.expect("sweeps"), (0, 0), "renewed");
    repo.heartbeat("h", "w1", LEASE, None, T0 + 600).await.expect("beats");
    let t = get(repo, "h").await;
    assert_eq!(t.progress, progress, "no progress keeps the last");
    assert_eq!(repo.heartbeat("h", "w2", 1_000, None, T0 + 600).await.expect("beats"), Lease::Lost);
    assert_eq!(
        repo.heartbeat("nope", "w1", 1_000, None, T0 + 600).await.expect("beats"),
        Lease::Lost
    );

    // The lease lapses, the sweep requeues it and another worker claims it.
    repo.heartbeat("h", "w1", 0, None, T0 + 1_500).await.expect("beats");
    assert_eq!(repo.requeue_expired(3, T0 + 1_600).await.expect("sweeps"), (1, 0));
    assert_eq!(
        repo.heartbeat("h", "w1", 1_000, None, T0 + 1_700).await.expect("beats"),
        Lease::Lost
    );
    let again = repo
        .claim("w2", &[EngineName::Studio], 1_000, T0 + 1_800)
        .await
        .expect("claims")
        .expect("h again");
    assert_eq!(
        (again.attempts, again.started_at),
        (2, Some(T0)),
        "attempts count; the first start stays"
    );
    assert_eq!(again.progress, TaskProgress::default(), "a new attempt starts from zero");
    assert_eq!(
        repo.heartbeat("h", "w1", 1_000, None, T0 + 1_900).await.expect("beats"),
        Lease::Lost
    );
    assert_eq!(
        repo.heartbeat("h", "w2", 1_000, None, T0 + 1_900).await.expect("beats"),
        Lease::Held { cancel_requested: false }
    );
    assert!(!repo
        .complete("h", "w1", result_of(1), T0 + 10_000, T0 + 2_000)
        .await
        .expect("answers"));
    assert!(!repo
        .fail("h", "w1", ErrorCode::EngineFailed, "late", T0 + 2_000)
        .await
        .expect("answers"));
    let t = get(repo, "h").await;
    assert_eq!(
        (t.state, t.lease_owner.as_deref()),
        (TaskState::Running, Some("w2")),
        "the old worker changed nothing"
    );
    assert!(repo
        .complete("h", "w2", result_of(1), T0 + 10_000, T0 + 2_000)
        .await
        .expect("completes"));
    assert_eq!(
        repo.heartbeat("h", "w2", 1_000, None, T0 + 2_100).await.expect("beats"),
        Lease::Lost,
        "an ended task has no lease"
    );
}

/// Only the lease holder ends a task, once; failing with `canceled` cancels.
pub async fn complete_and_fail_need_the_lease(repo: Arc<dyn TaskRepo>) {
    let repo = &*repo;
    let key = new_key(repo, "ends", Some(100)).await;
    create(repo, task("ok", key.id, EngineName::Studio, background(2), 4), T0).await;
    create(repo, task("bad", key.id, EngineName::Studio, background(1), 2), T0).await;
    create(repo, task("stop", key.id, EngineName::Studio, background(1), 2), T0).await;
    create(repo, task("idle", key.id, EngineName::Patch, expansion(1), 0), T0).await;

    assert!(
        !repo.complete("idle", "w1", result_of(1), T0 + 9, T0 + 1).await.expect("answers"),
        "a queued task has no lease to end"
    );
    assert!(!repo.fail("idle", "w1", ErrorCode::EngineFailed, "y", T0 + 1).await.expect("answers"));
    assert_eq!(get(repo, "idle").await.state, TaskState::Queued);

    claim_exact(repo, "ok", EngineName::Studio, "w1", T0 + 1).await;
    assert!(!repo
        .complete("ok", "w2", result_of(2), T0 + 3_600_000, T0 + 2)
        .await
        .expect("answers"));
    let t = get(repo, "ok").await;
    assert_eq!(
        (t.state, t.result.clone()),
        (TaskState::Running, None),
        "a wrong worker changes nothing"
    );
    let result = result_of(2);
    assert!(repo
        .complete("ok", "w1", result.clone(), T0 + 3_600_000, T0 + 3)
        .await
        .expect("completes"));
    let t = get(repo, "ok").await;
    assert_eq!(t.state, TaskState::Succeeded);
    assert_eq!(t.result, Some(result));
    assert_eq!(
        (t.expires_at, t.finished_at, t.updated_at),
        (Some(T0 + 3_600_000), Some(T0 + 3), T0 + 3)
    );
    assert_eq!(t.progress.fraction, 1.0);
    assert_eq!((t.credits_reserved, t.credits_charged), (4, 4));
    assert_eq!(t.lease_expires_at, None);
    assert!(
        !repo.complete("ok", "w1", result_of(2), T0 + 3_600_000, T0 + 4).await.expect("answers"),
        "never twice"
    );
    assert!(!repo
        .fail("ok", "w1", ErrorCode::EngineFailed, "late", T0 + 4)
        .await
        .expect("answers"));
    assert_eq!(get(repo, "ok").await, t, "a second end changes nothing");

    claim_exact(repo, "bad", EngineName::Studio, "w1", T0 + 5).await;
    assert!(!repo
        .fail("bad", "w2", ErrorCode::EngineFailed, "boom", T0 + 6)
        .await
        .expect("answers"));
    assert!(repo.fail("bad", "w1", ErrorCode::EngineFailed, "boom", T0 + 7).await.expect("fails"));
    let t = get(repo, "bad").await;
    assert_eq!(t.state, TaskState::Failed);
    assert_eq!(
        (t.error_code, t.error_message.as_deref()),
        (Some(ErrorCode::EngineFailed), Some("boom"))
    );
    assert_eq!((t.finished_at, t.credits_charged, t.result.clone()), (Some(T0 + 7), 0, None));

    claim_exact(repo, "stop", EngineName::Studio, "w1", T0 + 8).await;
    assert!(repo
        .fail("stop", "w1", ErrorCode::Canceled, "stopped at step 3", T0 + 9)
        .await
        .expect("ends"));
    assert_eq!(get(repo, "stop").await.state, TaskState::Canceled);
    assert_eq!(balance(repo, key.id).await, Some(96), "only the succeeded task kept its credits");
}

/// A queued task is canceled at once; a running one is flagged for its worker.
pub async fn cancel_queued_and_running(repo: Arc<dyn TaskRepo>) {
    let repo = &*repo;
    let key = new_key(repo, "cancel", Some(10)).await;
    create(repo, task("q", key.id, EngineName::Studio, background(1), 3), T0).await;
    create(repo, task("r", key.id, EngineName::Patch, expansion(1), 2), T0).await;
    create(repo, task("s", key.id, EngineName::Diffusion, background(1), 1), T0).await;
    assert_eq!(balance(repo, key.id).await, Some(4));

    let q = repo.cancel("q", T0 + 1).await.expect("cancels").expect("q exists");
    assert_eq!((q.state, q.finished_at, q.updated_at), (TaskState::Canceled, Some(T0 + 1), T0 + 1));
    assert_eq!(balance(repo, key.id).await, Some(7), "the queued task's credits came back");
    let again = repo.cancel("q", T0 + 2).await.expect("cancels").expect("q exists");
    assert_eq!(again, q, "a terminal task is returned unchanged");
    assert_eq!(
        repo.claim("w", &[EngineName::Studio], LEASE, T0 + 3).await.expect("claims"),
        None,
        "a canceled task is not claimed"
    );

    claim_exact(repo, "r", EngineName::Patch, "w1", T0 + 3).await;
    let r = repo.cancel("r", T0 + 4).await.expect("cancels").expect("r exists");
    assert_eq!((r.state, r.cancel_requested, r.updated_at), (TaskState::Running, true, T0 + 4));
    assert_eq!(
        repo.heartbeat("r", "w1", LEASE, None, T0 + 5).await.expect("beats"),
        Lease::Held { cancel_requested: true }
    );
    assert!(repo
        .fail("r", "w1", ErrorCode::Canceled, "canceled by its owner", T0 + 6)
        .await
        .expect("ends"));
    let r = get(repo, "r").await;
    assert_eq!((r.state, r.finished_at), (TaskState::Canceled, Some(T0 + 6)));
    assert_eq!(balance(repo, key.id).await, Some(9));

    claim_exact(repo, "s", EngineName::Diffusion, "w1", T0 + 7).await;
    assert!(repo.complete("s", "w1", result_of(1), T0 + 99_999, T0 + 8).await.expect("completes"));
    let s = repo.cancel("s", T0 + 9).await.expect("cancels").expect("s exists");
    assert_eq!((s.state, s.cancel_requested), (TaskState::Succeeded, false));
    assert_eq!(repo.cancel("missing", T0).await.expect("answers"), None);
    assert_eq!(balance(repo, key.id).await, Some(9));
}

/// Lapsed leases go back to the queue until the retry limit, then fail with
/// `retries_exhausted`; a lapsed task whose cancel was requested is canceled.
pub async fn requeue_expired_and_retry_limit(repo: Arc<dyn TaskRepo>) {
    let repo = &*repo;
    let key = new_key(repo, "lapse", Some(10)).await;
    create(repo, task("a", key.id, EngineName::Studio, background(1), 2), T0).await;
    create(repo, task("b", key.id, EngineName::Patch, expansion(1), 1), T0).await;
    create(repo, task("c", key.id, EngineName::Diffusion, background(1), 3), T0).await;
    repo.claim("w1", &[EngineName::Studio], LEASE, T0).await.expect("claims").expect("a");

    assert_eq!(
        repo.requeue_expired(2, T0 + 999).await.expect("sweeps"),
        (0, 0),
        "a live lease stays"
    );
    repo.heartbeat("a", "w1", 0, None, T0 + 1_000).await.expect("beats");
    assert_eq!(repo.requeue_expired(2, T0 + 1_000).await.expect("sweeps"), (1, 0));
    let a = get(repo, "a").await;
    assert_eq!(
        (a.state, a.lease_owner.clone(), a.lease_expires_at),
        (TaskState::Queued, None, None)
    );
    assert_eq!((a.attempts, a.started_at), (1, Some(T0)));
    assert_eq!(repo.queue_position("a").await.expect("reads"), Some(0));

    repo.claim("w2", &[EngineName::Studio], 0, T0 + 2_000).await.expect("claims").expect("a again");
    repo.claim("w3", &[EngineName::Patch], 0, T0 + 2_000).await.expect("claims").expect("b");
    repo.heartbeat("b", "w3", LEASE, None, T0 + 2_900).await.expect("beats");
    assert_eq!(
        repo.requeue_expired(2, T0 + 3_000).await.expect("sweeps"),
        (0, 1),
        "a used its 2 attempts; b is alive"
    );
    let a = get(repo, "a").await;
    assert_eq!(a.state, TaskState::Failed);
    assert_eq!(a.error_code, Some(ErrorCode::RetriesExhausted));
    assert_eq!(a.finished_at, Some(T0 + 3_000));
    assert_eq!(get(repo, "b").await.state, TaskState::Running);
    assert_eq!(balance(repo, key.id).await, Some(6), "a's 2 credits came back");
    assert_eq!(
        repo.claim("w", &[EngineName::Studio], 1_000, T0 + 3_001).await.expect("claims"),
        None
    );

    repo.claim("w4", &[EngineName::Diffusion], 0, T0 + 4_000).await.expect("claims").expect("c");
    repo.cancel("c", T0 + 4_100).await.expect("cancels");
    repo.heartbeat("b", "w3", 0, None, T0 + 4_200).await.expect("beats");
    assert_eq!(
        repo.requeue_expired(5, T0 + 5_000).await.expect("sweeps"),
        (1, 1),
        "b lapsed; c ends"
    );
    assert_eq!(get(repo, "c").await.state, TaskState::Canceled, "a requested cancel is honoured");
    assert_eq!(get(repo, "b").await.state, TaskState::Queued, "b had attempts left");
    assert_eq!(balance(repo, key.id).await, Some(9));
}

/// Reserve at submit, charge the images made, refund the rest; every movement is a
/// ledger entry and the entries add up to the balance.
pub async fn credits_and_ledger(repo: Arc<dyn TaskRepo>) {
    let repo = &*repo;
    let key = new_key(repo, "ledger", Some(100)).await;
    create(repo, task("three", key.id, EngineName::Studio, background(3), 9), T0 + 1).await;
    create(repo, task("two", key.id, EngineName::Studio, background(2), 4), T0 + 2).await;
    create(repo, task("gone", key.id, EngineName::Studio, background(1), 5), T0 + 3).await;
    create(repo, task("full", key.id, EngineName::Studio, background(2), 4), T0 + 4).await;
    assert_eq!(balance(repo, key.id).await, Some(78));

    claim_exact(repo, "three", EngineName::Studio, "w", T0 + 10).await;
    assert!(repo
        .complete("three", "w", result_of(2), T0 + 99_999, T0 + 11)
        .await
        .expect("completes"));
    let t = get(repo, "three").await;
    assert_eq!((t.credits_reserved, t.credits_charged), (9, 6), "2 of 3 images: 6 of 9 credits");
    assert_eq!(balance(repo, key.id).await, Some(81));

    claim_exact(repo, "two", EngineName::Studio, "w", T0 + 12).await;
    assert!(repo.fail("two", "w", ErrorCode::EngineFailed, "boom", T0 + 13).await.expect("fails"));
    assert_eq!(balance(repo, key.id).await, Some(85));
    repo.cancel("gone", T0 + 14).await.expect("cancels");
    assert_eq!(balance(repo, key.id).await, Some(90));
    claim_exact(repo, "full", EngineName::Studio, "w", T0 + 15).await;
    assert!(repo
        .complete("full", "w", result_of(2), T0 + 99_999, T0 + 16)
        .await
        .expect("completes"));
    assert_eq!(get(repo, "full").await.credits_charged, 4);
    assert_eq!(balance(repo, key.id).await, Some(90));

    let entries = repo.ledger(key.id).await.expect("reads");
    let rows: Vec<(Option<&str>, &str, i64, i64)> = entries
        .iter()
        .map(|e| (e.task_uid.as_deref(), e.reason.as_str(), e.delta, e.created_at))
        .collect();
    assert_eq!(
        rows,
        vec![
            (None, "grant", 100, T0),
            (Some("three"), "reserve", -9, T0 + 1),
            (Some("two"), "reserve", -4, T0 + 2),
            (Some("gone"), "reserve", -5, T0 + 3),
            (Some("full"), "reserve", -4, T0 + 4),
            (Some("three"), "charge", 0, T0 + 11),
            (Some("three"), "refund", 3, T0 + 11),
            (Some("two"), "refund", 4, T0 + 13),
            (Some("gone"), "refund", 5, T0 + 14),
            (Some("full"), "charge", 0, T0 + 16),
        ]
    );
    assert!(entries.windows(2).all(|w| w[0].id < w[1].id), "oldest first");
    assert!(entries.iter().all(|e| e.key_id == key.id));
    assert_eq!(
        entries.iter().map(|e| e.delta).sum::<i64>(),
        90,
        "the ledger adds up to the balance"
    );

    let topped = repo.credit_key(key.id, 10, "top up", T0 + 20).await.expect("credits");
    assert_eq!(topped.balance, Some(100));
    let last = repo.ledger(key.id).await.expect("reads").pop().expect("an entry");
    assert_eq!(
        (last.reason.as_str(), last.delta, last.note.as_str(), last.task_uid),
        ("grant", 10, "top up", None)
    );
}

/// Every ended task's files come due: a succeeded task's at the `expires_at` it was given,
/// a failed or canceled one's as it ends, however it ends. Due tasks are listed in id
/// order, `limit` at a time after a cursor, and stay listed until marked, once.
pub async fn expiry_on_every_end_state(repo: Arc<dyn TaskRepo>) {
    let repo = &*repo;
    let key = new_key(repo, "expiry", None).await;
    let key_id = key.id;
    let finish = |uid: &'static str, expires_at: i64| async move {
        create(repo, task(uid, key_id, EngineName::Studio, background(1), 0), T0).await;
        claim_exact(repo, uid, EngineName::Studio, "w", T0).await;
        assert!(repo
            .complete(uid, "w", result_of(1), expires_at, T0 + 1)
            .await
            .expect("completes"));
    };
    finish("a", T0 + 1_000).await;
    finish("b", T0 + 2_000).await;
    create(repo, task("failed", key_id, EngineName::Studio, background(1), 0), T0).await;
    claim_exact(repo, "failed", EngineName::Studio, "w", T0).await;
    repo.fail("failed", "w", ErrorCode::EngineFailed, "boom", T0 + 1).await.expect("fails");
    create(repo, task("canceled", key_id, EngineName::Studio, background(1), 0), T0).await;
    repo.cancel("canceled", T0 + 2).await.expect("cancels");
    create(repo, task("stopped", key_id, EngineName::Studio, background(1), 0), T0).await;
    claim_exact(repo, "stopped", EngineName::Studio, "w", T0).await;
    repo.cancel("stopped", T0 + 3).await.expect("requests the cancel");
    repo.fail("stopped", "w", ErrorCode::Canceled, "stopped", T0 + 4).await.expect("ends");
    create(repo, task("lapsed", key_id, EngineName::Studio, background(1), 0), T0).await;
    // A lease of 0 lapses at once: the worker died, and its one attempt was the last.
    repo.claim("w", &[EngineName::Studio], 0, T0).await.expect("claims").expect("lapsed");
    assert_eq!(repo.requeue_expired(1, T0 + 5).await.expect("sweeps"), (0, 1));
    create(repo, task("queued", key_id, EngineName::Patch, expansion(1), 0), T0).await;

    let uids = |tasks: &[Task]| tasks.iter().map(|t| t.uid.clone()).collect::<Vec<_>>();
    let mut ends = Vec::new();
    for uid in ["failed", "canceled", "stopped", "lapsed", "queued"] {
        let t = get(repo, uid).await;
        ends.push((uid, t.state, t.expires_at));
    }
    use TaskState::*;
    assert_eq!(
        ends,
        vec![
            ("failed", Failed, Some(T0 + 1)),
            ("canceled", Canceled, Some(T0 + 2)),
            ("stopped", Canceled, Some(T0 + 4)),
            ("lapsed", Failed, Some(T0 + 5)),
            ("queued", Queued, None),
        ],
        "a task that did not succeed is due as it ends"
    );

    let due = repo.due_for_expiry(T0 + 4, 0, 10).await.expect("lists");
    assert_eq!(uids(&due), vec!["failed", "canceled", "stopped"]);
    assert_eq!(
        uids(&repo.due_for_expiry(T0 + 4, 0, 10).await.expect("lists")),
        uids(&due),
        "listing marks nothing: a task stays due until its files are gone"
    );

    let all = T0 + 1_000_000;
    let first = repo.due_for_expiry(all, 0, 2).await.expect("lists");
    assert_eq!(uids(&first), vec!["a", "b"], "limit, in id order");
    assert!(first[0].result.is_some(), "a due task still names its blobs");
    let next = repo.due_for_expiry(all, first[1].id, 2).await.expect("lists");
    assert_eq!(uids(&next), vec!["failed", "canceled"], "after the cursor");
    let last = repo.due_for_expiry(all, next[1].id, 2).await.expect("lists");
    assert_eq!(uids(&last), vec!["stopped", "lapsed"]);
    assert!(repo.due_for_expiry(all, last[1].id, 2).await.expect("lists").is_empty());

    let a = get(repo, "a").await;
    assert!(!repo.mark_expired(a.id, T0 + 999).await.expect("answers"), "not due yet");
    assert!(repo.mark_expired(a.id, T0 + 1_000).await.expect("marks"));
    assert!(!repo.mark_expired(a.id, T0 + 1_001).await.expect("answers"), "once");
    let a = get(repo, "a").await;
    assert_eq!((a.result_expired, a.updated_at), (true, T0 + 1_000));
    let failed = get(repo, "failed").await;
    assert!(repo.mark_expired(failed.id, T0 + 6).await.expect("marks"));
    assert!(get(repo, "failed").await.result_expired);
    let queued = get(repo, "queued").await;
    assert!(
        !repo.mark_expired(queued.id, all).await.expect("answers"),
        "a queued task keeps its files"
    );
    assert_eq!(
        uids(&repo.due_for_expiry(all, 0, 10).await.expect("lists")),
        vec!["b", "canceled", "stopped", "lapsed"],
        "marked tasks are no longer due"
    );
}

/// Keys: stored by hash, found while active, revoked, credited.
pub async fn keys(repo: Arc<dyn TaskRepo>) {
    let repo = &*repo;
    let alpha = new_key(repo, "alpha", None).await;
    assert_eq!(
        (alpha.name.as_str(), alpha.prefix.as_str(), alpha.hash.len()),
        ("alpha", "bd_alph", 64)
    );
    assert_eq!((alpha.balance, alpha.created_at, alpha.revoked_at), (None, T0, None));
    let beta = new_key(repo, "beta", Some(50)).await;
    assert_eq!(beta.balance, Some(50));
    assert!(beta.id != alpha.id);
    let grants = repo.ledger(beta.id).await.expect("reads");
    assert_eq!(
        grants.iter().map(|e| (e.reason.as_str(), e.delta)).collect::<Vec<_>>(),
        vec![("grant", 50)]
    );
    assert!(repo.ledger(alpha.id).await.expect("reads").is_empty());

    assert_eq!(repo.key_by_hash(&alpha.hash).await.expect("reads"), Some(alpha.clone()));
    assert_eq!(repo.key_by_hash("0".repeat(64).as_str()).await.expect("reads"), None);
    assert_eq!(repo.key(beta.id).await.expect("reads"), Some(beta.clone()));
    assert_eq!(repo.key(beta.id + 1000).await.expect("reads"), None);
    assert_eq!(repo.list_keys().await.expect("lists"), vec![alpha.clone(), beta.clone()]);
    let duplicate = NewKey {
        name: "again".into(),
        hash: alpha.hash.clone(),
        prefix: "x".into(),
        balance: None,
    };
    assert!(repo.create_key(duplicate, T0).await.is_err(), "hashes are unique");

    assert!(repo.revoke_key(alpha.id, T0 + 5).await.expect("revokes"));
    assert_eq!(
        repo.key_by_hash(&alpha.hash).await.expect("reads"),
        None,
        "a revoked key does not authenticate"
    );
    assert_eq!(repo.key(alpha.id).await.expect("reads").and_then(|k| k.revoked_at), Some(T0 + 5));
    assert!(!repo.revoke_key(alpha.id + 1000, T0).await.expect("answers"));
    assert_eq!(repo.list_keys().await.expect("lists").len(), 2);

    let metered = repo.credit_key(alpha.id, 20, "first credits", T0 + 6).await.expect("credits");
    assert_eq!(metered.balance, Some(20), "an unmetered key becomes metered");
    let less = repo.credit_key(beta.id, -15, "correction", T0 + 7).await.expect("credits");
    assert_eq!(less.balance, Some(35));
    match repo.credit_key(beta.id + 1000, 5, "x", T0).await {
        Err(StoreError::NoSuchKey(id)) => assert_eq!(id, beta.id + 1000),
        other => panic!("crediting an unknown key is NoSuchKey, got {other:?}"),
    }
    let entries = repo.ledger(alpha.id).await.expect("reads");
    assert_eq!(
        entries
            .iter()
            .map(|e| (e.reason.as_str(), e.delta, e.note.as_str(), e.created_at))
            .collect::<Vec<_>>(),
        vec![("grant", 20, "first credits", T0 + 6)]
    );
}

/// Every state change of a task with a callback URL lands in the outbox, in order; tasks
/// without one leave no entries.
pub async fn outbox_per_state_change(repo: Arc<dyn TaskRepo>) {
    let repo = &*repo;
    let key = new_key(repo, "hooks", None).await;
    let studio = |uid: &str| with_callback(task(uid, key.id, EngineName::Studio, background(1), 0));

    create(repo, studio("done"), T0).await;
    claim_exact(repo, "done", EngineName::Studio, "w", T0 + 1).await;
    repo.complete("done", "w", result_of(1), T0 + 99_999, T0 + 2).await.expect("completes");

    create(repo, task("silent", key.id, EngineName::Studio, background(1), 0), T0 + 3).await;
    claim_exact(repo, "silent", EngineName::Studio, "w", T0 + 3).await;
    repo.fail("silent", "w", ErrorCode::EngineFailed, "boom", T0 + 3).await.expect("fails");

    create(repo, studio("broke"), T0 + 4).await;
    claim_exact(repo, "broke", EngineName::Studio, "w", T0 + 4).await;
    repo.fail("broke", "w", ErrorCode::EngineFailed, "boom", T0 + 5).await.expect("fails");

    create(repo, studio("dropped"), T0 + 6).await;
    repo.cancel("dropped", T0 + 7).await.expect("cancels");

    create(repo, studio("stopped"), T0 + 8).await;
    claim_exact(repo, "stopped", EngineName::Studio, "w", T0 + 8).await;
    repo.cancel("stopped", T0 + 9).await.expect("requests the cancel");
    repo.fail("stopped", "w", ErrorCode::Canceled, "canceled", T0 + 10).await.expect("ends");

    create(repo, studio("lapsed"), T0 + 11).await;
    repo.claim("w", &[EngineName::Studio], 0, T0 + 11).await.expect("claims").expect("lapsed");
    repo.requeue_expired(5, T0 + 100).await.expect("sweeps");

    let outbox = outbox_by_task(repo).await;
    use TaskState::*;
    assert_eq!(states(outbox.get("done")), vec![Queued, Running, Succeeded]);
    assert_eq!(states(outbox.get("silent")), vec![], "no callback URL, no entries");
    assert_eq!(states(outbox.get("broke")), vec![Queued, Running, Failed]);
    assert_eq!(states(outbox.get("dropped")), vec![Queued, Canceled]);
    assert_eq!(
        states(outbox.get("stopped")),
        vec![Queued, Running, Canceled],
        "a cancel request is no state change"
    );
    assert_eq!(
        states(outbox.get("lapsed")),
        vec![Queued, Running, Queued],
        "a requeue is a state change"
    );
    let done = &outbox["done"];
    assert!(done.iter().all(|e| e.url == "http://receiver.test/hooks/done"
        && e.body.is_none()
        && e.attempts == 0));
    assert_eq!(done.iter().map(|e| e.created_at).collect::<Vec<_>>(), vec![T0, T0 + 1, T0 + 2]);
}

/// Due entries are leased for `lease_ms`: another poll does not get them meanwhile, and
/// concurrent polls split them.
pub async fn due_callbacks_are_leased(repo: Arc<dyn TaskRepo>) {
    let key = new_key(&*repo, "due", None).await;
    for i in 0..3 {
        let uid = format!("d-{i}");
        create(
            &*repo,
            with_callback(task(&uid, key.id, EngineName::Studio, background(1), 0)),
            T0 + i,
        )
        .await;
    }
    let uids =
        |entries: Vec<OutboxEntry>| entries.into_iter().map(|e| e.task_uid).collect::<Vec<_>>();
    assert_eq!(
        uids(repo.due_callbacks(T0, 1_000, 10).await.expect("polls")),
        vec!["d-0"],
        "only what is due"
    );
    assert_eq!(
        uids(repo.due_callbacks(T0 + 2, 1_000, 10).await.expect("polls")),
        vec!["d-1", "d-2"],
        "d-0 is leased"
    );
    assert!(repo.due_callbacks(T0 + 2, 1_000, 10).await.expect("polls").is_empty());
    assert_eq!(
        uids(repo.due_callbacks(T0 + 1_000, 1_000, 10).await.expect("polls")),
        vec!["d-0"],
        "a lapsed lease is due again"
    );
    assert_eq!(
        uids(repo.due_callbacks(T0 + 5_000, 1_000, 2).await.expect("polls")),
        vec!["d-0", "d-1"],
        "limit, oldest first"
    );
    assert_eq!(uids(repo.due_callbacks(T0 + 5_000, 1_000, 2).await.expect("polls")), vec!["d-2"]);

    let mut pollers = Vec::new();
    for _ in 0..6 {
        let repo = repo.clone();
        pollers.push(tokio::spawn(async move { repo.due_callbacks(T0 + 10_000, 1_000, 1).await }));
    }
    let mut got = Vec::new();
    for p in pollers {
        got.extend(p.await.expect("joins").expect("polls").into_iter().map(|e| e.id));
    }
    got.sort_unstable();
    let before = got.len();
    got.dedup();
    assert_eq!(
        (before, got.len()),
        (3, 3),
        "concurrent polls share the due entries without overlap"
    );
}

/// Delivery attempts: retry later with the same body, delivered, or failed for good; the
/// delivery log keeps every attempt.
pub async fn record_delivery_and_log(repo: Arc<dyn TaskRepo>) {
    let repo = &*repo;
    let key = new_key(repo, "deliver", None).await;
    let new = with_callback(task("cb", key.id, EngineName::Studio, background(1), 0));
    let url = new.callback_url.clone().expect("a callback URL");
    create(repo, new, T0).await;
    create(repo, task("quiet", key.id, EngineName::Patch, expansion(1), 0), T0).await;

    let first = repo.due_callbacks(T0, 1_000, 10).await.expect("polls");
    assert_eq!(first.len(), 1);
    let entry = first[0].id;
    let body = r#"{"id":"cb","state":"queued"}"#;
    let refused =
        DeliveryAttempt { status: Some(500), error: Some("HTTP 500".into()), delivered: false };
    repo.record_delivery(entry, body, refused, Some(T0 + 1_000), T0 + 10).await.expect("records");
    assert!(
        repo.due_callbacks(T0 + 999, 1_000, 10).await.expect("polls").is_empty(),
        "not before the retry time"
    );
    let retry = repo.due_callbacks(T0 + 1_000, 1_000, 10).await.expect("polls");
    assert_eq!(retry.len(), 1);
    assert_eq!((retry[0].id, retry[0].body.as_deref(), retry[0].attempts), (entry, Some(body), 1));
    let down = DeliveryAttempt {
        status: None,
        error: Some("connection refused".into()),
        delivered: false,
    };
    repo.record_delivery(entry, body, down, Some(T0 + 3_000), T0 + 1_010).await.expect("records");
    let retry = repo.due_callbacks(T0 + 3_000, 1_000, 10).await.expect("polls");
    assert_eq!((retry.len(), retry[0].attempts), (1, 2));
    let ok = DeliveryAttempt { status: Some(200), error: None, delivered: true };
    repo.record_delivery(entry, body, ok, None, T0 + 3_010).await.expect("records");
    assert!(
        repo.due_callbacks(T0 + 1_000_000, 1_000, 10).await.expect("polls").is_empty(),
        "delivered is done"
    );

    claim_exact(repo, "cb", EngineName::Studio, "w", T0 + 4_000).await;
    let running = repo.due_callbacks(T0 + 4_000, 1_000, 10).await.expect("polls");
    assert_eq!(running.iter().map(|e| e.state).collect::<Vec<_>>(), vec![TaskState::Running]);
    let gone =
        DeliveryAttempt { status: Some(404), error: Some("HTTP 404".into()), delivered: false };
    repo.record_delivery(running[0].id, "{}", gone, None, T0 + 4_010).await.expect("records");
    assert!(
        repo.due_callbacks(T0 + 1_000_000, 1_000, 10).await.expect("polls").is_empty(),
        "failed is done"
    );

    let log = repo.deliveries("cb").await.expect("reads");
    let lines: Vec<_> = log
        .iter()
        .map(|d| (d.entry_id, d.state, d.attempt, d.status, d.error.as_deref(), d.delivered, d.at))
        .collect();
    use TaskState::*;
    assert_eq!(
        lines,
        vec![
            (entry, Queued, 1, Some(500), Some("HTTP 500"), false, T0 + 10),
            (entry, Queued, 2, None, Some("connection refused"), false, T0 + 1_010),
            (entry, Queued, 3, Some(200), None, true, T0 + 3_010),
            (running[0].id, Running, 1, Some(404), Some("HTTP 404"), false, T0 + 4_010),
        ]
    );
    assert!(log.iter().all(|d| d.url == url));
    assert!(repo.deliveries("quiet").await.expect("reads").is_empty());
    assert!(
        repo.record_delivery(
            entry + 1_000,
            "{}",
            DeliveryAttempt { status: None, error: None, delivered: true },
            None,
            T0
        )
        .await
        .is_err(),
        "an unknown entry is an error"
    );
}

/// Listing: the key's own tasks, newest first, paged by cursor or offset, filtered.
pub async fn list_paging_and_filters(repo: Arc<dyn TaskRepo>) {
    let repo = &*repo;
    let key = new_key(repo, "lister", None).await;
    let other = new_key(repo, "stranger", None).await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let (engine, payload) = if i % 2 == 0 {
            (EngineName::Studio, background(1))
        } else {
            (EngineName::Patch, expansion(1))
        };
        let mut new = task(&format!("l-{i}"), key.id, engine, payload, 0);
        if i % 3 == 0 {
            new.surface = "cutout".into();
        }
        ids.push(create(repo, new, T0 + i).await.id);
        create(
            repo,
            task(&format!("x-{i}"), other.id, EngineName::Studio, background(1), 0),
            T0 + i,
        )
        .await;
    }
    claim_exact(repo, "l-0", EngineName::Studio, "w", T0 + 10).await; // running
    repo.cancel("l-1", T0 + 11).await.expect("cancels"); // canceled
    let key_id = key.id;
    let list = |filter: TaskFilter| async move {
        repo.list_tasks(key_id, &filter)
            .await
            .expect("lists")
            .into_iter()
            .map(|t| t.uid)
            .collect::<Vec<_>>()
    };
    let page = |limit: u32| TaskFilter { limit, ..Default::default() };

    assert_eq!(list(page(3)).await, vec!["l-6", "l-5", "l-4"], "newest first");
    assert_eq!(
        list(TaskFilter { before: Some(ids[4]), ..page(3) }).await,
        vec!["l-3", "l-2", "l-1"]
    );
    assert_eq!(list(TaskFilter { before: Some(ids[1]), ..page(3) }).await, vec!["l-0"]);
    assert_eq!(list(TaskFilter { before: Some(ids[0]), ..page(3) }).await, Vec::<String>::new());
    assert_eq!(list(TaskFilter { offset: 2, ..page(2) }).await, vec!["l-4", "l-3"]);
    assert_eq!(list(page(100)).await.len(), 7, "only the key's own tasks");

    let queued = TaskFilter { state: Some(TaskState::Queued), ..page(100) };
    assert_eq!(list(queued.clone()).await, vec!["l-6", "l-5", "l-4", "l-3", "l-2"]);
    assert_eq!(
        list(TaskFilter { state: Some(TaskState::Running), ..page(100) }).await,
        vec!["l-0"]
    );
    assert_eq!(
        list(TaskFilter { state: Some(TaskState::Canceled), ..page(100) }).await,
        vec!["l-1"]
    );
    assert_eq!(
        list(TaskFilter { kind: Some(JobKind::Expansion), ..page(100) }).await,
        vec!["l-5", "l-3", "l-1"]
    );
    assert_eq!(
        list(TaskFilter { surface: Some("cutout".into()), ..page(100) }).await,
        vec!["l-6", "l-3", "l-0"]
    );
    assert_eq!(
        list(TaskFilter { kind: Some(JobKind::Background), before: Some(ids[6]), ..queued }).await,
        vec!["l-4", "l-2"],
        "filters and cursor combine"
    );
    let theirs = repo.list_tasks(other.id, &page(100)).await.expect("lists");
    assert!(theirs.len() == 7 && theirs.iter().all(|t| t.key_id == other.id));
}
