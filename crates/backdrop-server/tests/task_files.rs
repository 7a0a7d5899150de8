//! A task's files against a blob store that misbehaves on purpose: writes of results that
//! fail, deletes that fail, uploads slower than a lease. The real router on loopback, a
//! real SQLite file and blob folder underneath, real workers and the real sweeper.

mod common;

use async_trait::async_trait;
use backdrop_server::service::task_folder;
use backdrop_server::sweeper::sweep_once;
use backdrop_store::StoreError;
use common::{cutout_b64, poll_json, start_with, TestServer};
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the blob store gets wrong, changed by a test as it goes.
#[derive(Debug, Default)]
struct Faults {
    /// Every write of a result file (not the input a submit stores) first waits this long.
    result_put_delay_ms: AtomicU64,
    /// Writes of keys ending with this fail.
    failing_put_suffix: Mutex<Option<String>>,
    /// The next this many deletes fail.
    failing_deletes: AtomicUsize,
    /// While set, writes of keys ending with this wait until [`Faults::release`].
    held_put_suffix: Mutex<Option<String>>,
    released: tokio::sync::Notify,
}

impl Faults {
    fn hold_puts(&self, suffix: &str) {
        *self.held_put_suffix.lock().expect("faults") = Some(suffix.into());
    }

    fn release(&self) {
        *self.held_put_suffix.lock().expect("faults") = None;
        self.released.notify_waiters();
    }

    async fn wait_while_held(&self, key: &str) {
        loop {
            // Registered before the check, so a release in between is not missed.
            let released = self.released.notified();
            let held = self.held_put_suffix.lock().expect("faults").clone();
            if !held.is_some_and(|suffix| key.ends_with(&suffix)) {
                return;
            }
            released.await;
        }
    }
}

/// The configured store with [`Faults`] in front of it.
#[derive(Debug)]
struct Faulty {
    inner: Arc<dyn ObjectStore>,
    faults: Arc<Faults>,
}

impl fmt::Display for Faulty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Faulty({})", self.inner)
    }
}

fn injected(op: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: "Faulty",
        source: format!("injected {op} failure").into(),
    }
}

#[async_trait]
impl ObjectStore for Faulty {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let key = location.as_ref();
        self.faults.wait_while_held(key).await;
        if !key.ends_with("/input") && !key.ends_with("/reference") {
            let delay = self.faults.result_put_delay_ms.load(Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let failing = self.faults.failing_put_suffix.lock().expect("faults").clone();
        if failing.is_some_and(|suffix| key.ends_with(&suffix)) {
            return Err(injected("put"));
        }
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn delete(&self, location: &Path) -> object_store::Result<()> {
        let failing = &self.faults.failing_deletes;
        if failing.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Err(injected("delete"));
        }
        self.inner.delete(location).await
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy(&self, from: &Path, to: &Path) -> object_store::Result<()> {
        self.inner.copy(from, to).await
    }

    async fn copy_if_not_exists(&self, from: &Path, to: &Path) -> object_store::Result<()> {
        self.inner.copy_if_not_exists(from, to).await
    }
}

/// A server whose blob store has `faults`, running `devices` worker loops.
async fn faulty_server(
    devices: usize,
    faults: &Arc<Faults>,
    adjust: impl FnOnce(&mut backdrop_server::ServiceConfig),
) -> TestServer {
    let faults = Arc::clone(faults);
    start_with(backdrop_engines::Engines::weight_free(), devices, adjust, move |blobs| {
        blobs.wrapped(|inner| Arc::new(Faulty { inner, faults }))
    })
    .await
}

/// Submits a background job of `n` images; returns its id.
async fn submit(server: &TestServer, client: &reqwest::Client, key: &str, n: u32) -> String {
    submit_job(server, client, key, json!({"n": n})).await
}

/// Submits a background job with `fields` added; returns its id.
async fn submit_job(
    server: &TestServer,
    client: &reqwest::Client,
    key: &str,
    fields: Value,
) -> String {
    let mut job = json!({"image_base64": cutout_b64(), "scene": "concrete", "seed": 3});
    if let (Some(job), Some(fields)) = (job.as_object_mut(), fields.as_object()) {
        job.extend(fields.clone());
    }
    server.submit(client, key, "/v1/backgrounds", &job).await
}

async fn view(server: &TestServer, client: &reqwest::Client, key: &str, id: &str) -> Value {
    server.get_json(client, key, &format!("/v1/tasks/{id}")).await
}

async fn exists(server: &TestServer, key: &str) -> bool {
    match server.shared.blobs.get(key).await {
        Ok(_) => true,
        Err(StoreError::BlobNotFound(_)) => false,
        Err(e) => panic!("reading {key}: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canceled_tasks_input_is_swept_and_a_failed_delete_is_retried() {
    let faults = Arc::new(Faults::default());
    let server = faulty_server(0, &faults, |_| {}).await;
    let key = server.key(None).await;
    let client = reqwest::Client::new();
    let id = submit(&server, &client, &key, 1).await;
    let input = format!("{}/input", task_folder(&id));
    let response =
        client.delete(server.url(&format!("/v1/tasks/{id}"))).bearer_auth(&key).send().await;
    assert_eq!(response.expect("cancel").status(), StatusCode::OK);
    let canceled = view(&server, &client, &key, &id).await;
    assert_eq!(canceled["state"], "canceled");
    assert_eq!(canceled["expires_at"], canceled["finished_at"], "due as it ends: {canceled}");
    assert!(exists(&server, &input).await);

    faults.failing_deletes.store(1, Ordering::SeqCst);
    assert_eq!(sweep_once(&server.shared).await, 0, "a delete failed: nothing is marked");
    assert!(exists(&server, &input).await);
    assert_eq!(view(&server, &client, &key, &id).await["expired"], false);

    assert_eq!(sweep_once(&server.shared).await, 1, "the next sweep tries again");
    assert!(!exists(&server, &input).await, "the input is deleted");
    assert_eq!(view(&server, &client, &key, &id).await["expired"], true);
    assert_eq!(sweep_once(&server.shared).await, 0, "once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_tasks_input_and_partial_results_are_swept() {
    let faults = Arc::new(Faults::default());
    *faults.failing_put_suffix.lock().expect("faults") = Some("/2.png".into());
    let server = faulty_server(1, &faults, |_| {}).await;
    let key = server.key(None).await;
    let client = reqwest::Client::new();
    let id = submit(&server, &client, &key, 2).await;
    let task = server.wait_terminal(&client, &key, &id).await;
    assert_eq!(
        (&task["state"], &task["error"]["code"]),
        (&json!("failed"), &json!("output_failed"))
    );
    // The client learns what failed, not the store's own text (paths, buckets, endpoints).
    let message = task["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("the result could not be stored"), "{message}");
    assert!(!message.contains(&id) && !message.contains(".png"), "a blob path leaks: {message}");
    let folder = task_folder(&id);
    let (input, partial) = (format!("{folder}/input"), format!("{folder}/1.png"));
    assert!(exists(&server, &partial).await, "the first image was stored before the second failed");
    assert!(exists(&server, &input).await);

    assert_eq!(sweep_once(&server.shared).await, 1);
    assert!(!exists(&server, &input).await, "the input is deleted");
    assert!(!exists(&server, &partial).await, "the partial result is deleted");
    assert_eq!(server.shared.blobs.delete_folder(&folder).await.expect("lists"), 0, "nothing left");
    assert_eq!(view(&server, &client, &key, &id).await["expired"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_upload_slower_than_the_lease_keeps_the_task() {
    const LEASE_MS: u64 = 500;
    let faults = Arc::new(Faults::default());
    // Each result file takes more than two leases to store. Two devices: while one
    // uploads, the other's claim loop requeues lapsed leases, as another node would.
    faults.result_put_delay_ms.store(LEASE_MS * 5 / 2, Ordering::SeqCst);
    let server = faulty_server(2, &faults, |c| c.queue.lease_ms = LEASE_MS as i64).await;
    let key = server.key(None).await;
    let client = reqwest::Client::new();
    let id = submit(&server, &client, &key, 1).await;
    let task = server.wait_terminal(&client, &key, &id).await;
    assert_eq!(task["state"], "succeeded", "{task}");
    assert_eq!(task["attempts"], 1, "the lease held through the upload: {task}");
    assert_eq!(task["images"].as_array().map(Vec::len), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_are_stored_while_the_engine_makes_the_next() {
    // 2400 x 2400 px images are made one at a time. While the first result's upload is
    // held, the engine may make the image being stored, one waiting for the store, and
    // one more blocked on handing it over: 3 of 5, never all of them.
    let faults = Arc::new(Faults::default());
    faults.hold_puts("/1.png");
    let server = faulty_server(1, &faults, |_| {}).await;
    let key = server.key(None).await;
    let client = reqwest::Client::new();
    let id =
        submit_job(&server, &client, &key, json!({"n": 5, "width": 2400, "height": 2400})).await;
    let percent = |task: &Value| task["progress"]["percent"].as_u64().unwrap_or(0);
    // The engine has started.
    let task_url = server.url(&format!("/v1/tasks/{id}"));
    let started = || client.get(&task_url).bearer_auth(&key);
    poll_json(Duration::from_secs(60), started, |task| percent(task) >= 40).await;
    // Time to run ahead, if it could (progress reaches the API with each lease renewal).
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let held = view(&server, &client, &key, &id).await;
    assert_eq!(held["state"], "running", "{held}");
    assert!(percent(&held) <= 60, "the engine ran ahead of storage: {held}");
    assert!(!exists(&server, &format!("{}/5.png", task_folder(&id))).await);

    faults.release();
    let task = server.wait_terminal(&client, &key, &id).await;
    assert_eq!(task["state"], "succeeded", "{task}");
    let images = task["images"].as_array().expect("images");
    assert_eq!(images.len(), 5);
    for (i, image) in images.iter().enumerate() {
        assert_eq!(image["seed"], 3 + i as u64, "{image}");
        assert!(exists(&server, &format!("{}/{}.png", task_folder(&id), i + 1)).await);
    }
}
