//! The OpenAPI documents, through the real router on loopback:
//!
//! - `every_document_is_valid_openapi`: `/openapi.json` and `/openapi/{surface}.json` of
//!   each vendor surface pass a standard validator (openapi-spec-validator), describe
//!   every route, and an unknown surface is a native 404. The documents are also written
//!   to `target/openapi/` for reading.
//! - `answers_conform_to_their_documents`: real answers of every route of the native API
//!   and of each surface (successes, envelopes and errors, on a server with a worker) are
//!   checked against the response schemas their document gives, so neither the native
//!   views nor the vendor schema types can drift from what the handlers send.
//! - `a_generated_client_submits_polls_and_downloads`: a client generated from the native
//!   document by openapi-python-client submits `examples/bottle-cutout.png` to the studio
//!   engine, polls the task until it succeeds and downloads the result.
//!
//! The Python side lives in `tools/openapi/` and runs in the venv that `tools/test`
//! makes (`.venv-openapi`, named by `BACKDROP_TEST_OPENAPI_PYTHON`). Without it each test
//! says so and passes, unless `CI=true`, where it fails.

mod common;

use backdrop_server::compat::picpik;
use backdrop_server::vendor_keys::credentials;
use backdrop_server::{auth, now_ms};
use common::{b64, cutout, ok_json, photo_png, png, start, Deadline, TestServer};
use image::{Rgba, RgbaImage};
use reqwest::multipart::{Form, Part};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The vendor surfaces that have a document.
const SURFACES: [&str; 4] = ["cutout", "picwish", "picpik", "kling"];

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The venv's python with the checker and the generator, or `None` (after saying why)
/// when the test should be skipped.
fn openapi_python() -> Option<PathBuf> {
    let python = std::env::var("BACKDROP_TEST_OPENAPI_PYTHON")
        .ok()
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv-openapi/bin/python"));
    let usable = Command::new(&python)
        .args(["-c", "import openapi_spec_validator, openapi_python_client, jsonschema, httpx"])
        .output()
        .map(|out| out.status.success())
        .unwrap_or(false);
    if usable {
        return Some(python);
    }
    let why = format!(
        "no python with openapi-spec-validator and openapi-python-client at {} \
         (run tools/test, or set BACKDROP_TEST_OPENAPI_PYTHON)",
        python.display()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true and the OpenAPI checks cannot run: {why}");
    }
    println!("skipped: {why}");
    eprintln!("skipped: {why}");
    None
}

/// Runs a script of `tools/openapi/`; panics with its output when it fails.
fn run_tool(python: &Path, script: &str, args: &[&str]) -> String {
    let out = Command::new(python)
        .arg(repo_root().join("tools/openapi").join(script))
        .args(args)
        .output()
        .expect("runs the python tool");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{script} {args:?} failed:\n{stdout}\n{stderr}");
    stdout
}

/// The documented `(method, path)` pairs of a document.
fn operations(document: &Value) -> Vec<String> {
    let mut found = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            found.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    found.sort();
    found
}

#[tokio::test]
async fn every_document_is_valid_openapi() {
    let server = start(false, |_| {}).await;
    let client = reqwest::Client::new();
    let dir = repo_root().join("target/openapi");
    std::fs::create_dir_all(&dir).expect("creates target/openapi");

    let native = ok_json(client.get(server.url("/openapi.json"))).await;
    let mut expected = vec![
        "DELETE /v1/tasks/{id}",
        "GET /",
        "GET /files/{key}",
        "GET /healthz",
        "GET /metrics",
        "GET /openapi.json",
        "GET /openapi/{surface}.json",
        "GET /playground/{file}",
        "GET /readyz",
        "GET /v1/account",
        "GET /v1/models",
        "GET /v1/scenes",
        "GET /v1/scenes/{id}/thumbnail",
        "GET /v1/tasks",
        "GET /v1/tasks/{id}",
        "GET /v1/tasks/{id}/callbacks",
        "GET /v1/tasks/{id}/events",
        "POST /v1/backgrounds",
        "POST /v1/cutouts",
        "POST /v1/expansions",
    ];
    expected.sort();
    assert_eq!(operations(&native), expected);
    let schemes = &native["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer", "{schemes}");
    assert_eq!(schemes["api_key"]["name"], "X-API-Key", "{schemes}");
    let submit = &native["paths"]["/v1/backgrounds"]["post"];
    let form = &submit["requestBody"]["content"]["multipart/form-data"]["schema"];
    assert!(form.is_object(), "the multipart form is documented: {submit}");
    assert_eq!(
        submit["responses"]["400"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ErrorBody"
    );
    let parameter = &native["paths"]["/openapi/{surface}.json"]["get"]["parameters"][0]["schema"];
    assert_eq!(parameter["$ref"], "#/components/schemas/Surface");
    let surfaces = &native["components"]["schemas"]["Surface"];
    std::fs::write(dir.join("native.json"), serde_json::to_vec_pretty(&native).expect("json"))
        .expect("writes the document");

    let mut vendor_operations = Vec::new();
    for surface in SURFACES {
        let response =
            client.get(server.url(&format!("/openapi/{surface}.json"))).send().await.expect("get");
        assert_eq!(response.status(), StatusCode::OK, "{surface}");
        assert_eq!(response.headers()["content-type"], "application/json");
        let document: Value = response.json().await.expect("json");
        assert!(document["info"]["title"].as_str().is_some_and(|t| t.starts_with("Backdrop: ")));
        vendor_operations
            .extend(operations(&document).into_iter().map(|op| format!("{surface} {op}")));
        std::fs::write(
            dir.join(format!("{surface}.json")),
            serde_json::to_vec_pretty(&document).expect("json"),
        )
        .expect("writes the document");
    }
    assert_eq!(
        vendor_operations,
        [
            "cutout GET /api/v1/getPaintResult",
            "cutout GET /api/v1/mySubscription",
            "cutout POST /api/v1/paintAsync",
            "picwish GET /api/tasks/visual/background/scene_types",
            "picwish GET /api/tasks/visual/background/{task_id}",
            "picwish POST /api/tasks/visual/background",
            "picpik POST /",
            "kling GET /v1/images/editing/expand",
            "kling GET /v1/images/editing/expand/{id}",
            "kling POST /v1/images/editing/expand",
        ]
    );
    // The surface parameter lists exactly the surfaces served.
    let mut listed: Vec<&str> = surfaces["enum"]
        .as_array()
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_else(|| panic!("the Surface schema is an enum: {surfaces}"));
    listed.sort();
    let mut served = SURFACES.to_vec();
    served.sort();
    assert_eq!(listed, served);

    for missing in ["/openapi/nowhere.json", "/openapi/kling", "/openapi/.json"] {
        let response = client.get(server.url(missing)).send().await.expect("get");
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{missing}");
        let body: Value = response.json().await.expect("a native error body");
        assert_eq!(body["code"], "not_found", "{body}");
        assert!(body["message"].as_str().is_some_and(|m| m.contains("kling.json")), "{body}");
    }

    let Some(python) = openapi_python() else { return };
    for name in ["native"].into_iter().chain(SURFACES) {
        let path = dir.join(format!("{name}.json"));
        let out = run_tool(&python, "check.py", &[path.to_str().expect("utf-8 path")]);
        assert!(out.contains("valid OpenAPI 3.1"), "{out}");
    }
}

/// Answers the server really gave, as `tools/openapi/check.py` reads them.
#[derive(Default)]
struct Answers(Vec<Value>);

impl Answers {
    /// Sends `request` and records its answer under the documented path template `path`;
    /// the status and the body (null when it is not JSON).
    async fn send(&mut self, path: &str, request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let (client, request) = request.build_split();
        let request = request.expect("a request");
        let method = request.method().as_str().to_lowercase();
        let response = client.execute(request).await.expect("send");
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let mut answer = json!({
            "method": method, "path": path, "status": status.as_u16(), "content_type": content_type,
        });
        let mut body = Value::Null;
        if content_type.starts_with("application/json") {
            body = response.json().await.expect("a JSON body");
            answer["body"] = body.clone();
        }
        self.0.push(answer);
        (status, body)
    }

    /// Sends what `make` builds until `done` holds for the JSON body, recording every
    /// answer; the last body.
    async fn poll(
        &mut self,
        path: &str,
        make: impl Fn() -> reqwest::RequestBuilder,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Deadline::after(Duration::from_secs(120));
        loop {
            let (status, body) = self.send(path, make()).await;
            assert_eq!(status, StatusCode::OK, "{path}: {body}");
            if done(&body) {
                return body;
            }
            deadline.again(format!("{path} did not finish: {body}")).await;
        }
    }

    /// Checks the answers against `document` (fetched from the server) with check.py.
    async fn check(&self, python: &Path, server: &TestServer, document: &str) {
        let client = reqwest::Client::new();
        let doc = ok_json(client.get(server.url(document))).await;
        let dir = tempfile::tempdir().expect("tmp");
        let doc_path = dir.path().join("document.json");
        let answers_path = dir.path().join("answers.json");
        std::fs::write(&doc_path, serde_json::to_vec(&doc).expect("json")).expect("write");
        std::fs::write(&answers_path, serde_json::to_vec(&self.0).expect("json")).expect("write");
        let out = run_tool(
            python,
            "check.py",
            &[
                doc_path.to_str().expect("utf-8"),
                "--answers",
                answers_path.to_str().expect("utf-8"),
            ],
        );
        assert!(out.contains(&format!("{} answers conform", self.0.len())), "{document}: {out}");
    }
}

/// The native API: every route, successes and errors.
async fn native_answers(server: &TestServer) -> Answers {
    let client = reqwest::Client::new();
    let url = |path: &str| server.url(path);
    let key = server.key(None).await;
    let other = server.key(None).await;
    let mut a = Answers::default();

    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json", "/"] {
        let (status, _) = a.send(path, client.get(url(path))).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    assert_eq!(
        a.send("/openapi/{surface}.json", client.get(url("/openapi/kling.json"))).await.0,
        StatusCode::OK
    );
    assert_eq!(
        a.send("/openapi/{surface}.json", client.get(url("/openapi/x.json"))).await.0,
        StatusCode::NOT_FOUND
    );
    let css = url("/playground/playground.css");
    assert_eq!(a.send("/playground/{file}", client.get(css)).await.0, StatusCode::OK);
    let missing = url("/playground/missing.css");
    assert_eq!(a.send("/playground/{file}", client.get(missing)).await.0, StatusCode::NOT_FOUND);
    assert_eq!(a.send("/v1/scenes", client.get(url("/v1/scenes"))).await.0, StatusCode::OK);
    let thumbnail = "/v1/scenes/{id}/thumbnail";
    let found = client.get(url("/v1/scenes/warm-paper/thumbnail"));
    assert_eq!(a.send(thumbnail, found).await.0, StatusCode::OK);
    let unknown = client.get(url("/v1/scenes/nowhere/thumbnail"));
    assert_eq!(a.send(thumbnail, unknown).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        a.send("/v1/models", client.get(url("/v1/models")).bearer_auth(&key)).await.0,
        StatusCode::OK
    );
    assert_eq!(
        a.send("/v1/models", client.get(url("/v1/models"))).await.0,
        StatusCode::UNAUTHORIZED
    );
    let account = client.get(url("/v1/account")).header("X-API-Key", &key);
    assert_eq!(a.send("/v1/account", account).await.0, StatusCode::OK);

    // Submits: JSON and multipart, an idempotent retry, and refusals.
    let background = json!({
        "image_base64": common::cutout_b64(), "scene": "warm-paper", "engine": "studio", "n": 2,
        "client_task_id": "conformance", "callback_url": "http://127.0.0.1:9/hook",
    });
    let submit = || client.post(url("/v1/backgrounds")).bearer_auth(&key).json(&background);
    let (status, accepted) = a.send("/v1/backgrounds", submit()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    assert_eq!(a.send("/v1/backgrounds", submit()).await.0, StatusCode::OK);
    let id = accepted["id"].as_str().expect("id").to_string();
    let malformed = client
        .post(url("/v1/backgrounds"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body("{");
    assert_eq!(a.send("/v1/backgrounds", malformed).await.0, StatusCode::BAD_REQUEST);
    let text = client
        .post(url("/v1/backgrounds"))
        .bearer_auth(&key)
        .header("content-type", "text/plain")
        .body("hi");
    assert_eq!(a.send("/v1/backgrounds", text).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let anonymous = client.post(url("/v1/backgrounds")).json(&background);
    assert_eq!(a.send("/v1/backgrounds", anonymous).await.0, StatusCode::UNAUTHORIZED);
    let form = Form::new()
        .part("image", Part::bytes(photo_png()).file_name("photo.png"))
        .text("right", "0.5")
        .text("prompt", "more of the same");
    let expansion = client.post(url("/v1/expansions")).bearer_auth(&key).multipart(form);
    let (status, expanding) = a.send("/v1/expansions", expansion).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{expanding}");
    let no_image = client.post(url("/v1/cutouts")).bearer_auth(&key).json(&json!({}));
    let (status, refused) = a.send("/v1/cutouts", no_image).await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("image_required"))
    );

    // The tasks: followed, listed, their files, their callbacks.
    let task_url = url(&format!("/v1/tasks/{id}"));
    let task = a
        .poll(
            "/v1/tasks/{id}",
            || client.get(&task_url).bearer_auth(&key),
            |t| matches!(t["state"].as_str(), Some("succeeded" | "failed" | "canceled")),
        )
        .await;
    assert_eq!(task["state"], "succeeded", "{task}");
    let expansion_url = url(&format!("/v1/tasks/{}", expanding["id"].as_str().expect("id")));
    a.poll(
        "/v1/tasks/{id}",
        || client.get(&expansion_url).bearer_auth(&key),
        |t| t["state"] == "succeeded",
    )
    .await;
    assert_eq!(
        a.send("/v1/tasks/{id}", client.get(&task_url).bearer_auth(&other)).await.0,
        StatusCode::FORBIDDEN
    );
    let nowhere = client.get(url("/v1/tasks/nowhere")).bearer_auth(&key);
    assert_eq!(a.send("/v1/tasks/{id}", nowhere).await.0, StatusCode::NOT_FOUND);
    let events = client.get(url(&format!("/v1/tasks/{id}/events"))).bearer_auth(&key);
    assert_eq!(a.send("/v1/tasks/{id}/events", events).await.0, StatusCode::OK);
    let callbacks = client.get(url(&format!("/v1/tasks/{id}/callbacks"))).bearer_auth(&key);
    let (status, log) = a.send("/v1/tasks/{id}/callbacks", callbacks).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(log["callback_url"], "http://127.0.0.1:9/hook");
    let page = client.get(url("/v1/tasks?limit=1")).bearer_auth(&key);
    let (status, page) = a.send("/v1/tasks", page).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page["next_cursor"].is_string(), "{page}");
    let bad_limit = client.get(url("/v1/tasks?limit=0")).bearer_auth(&key);
    assert_eq!(a.send("/v1/tasks", bad_limit).await.0, StatusCode::BAD_REQUEST);
    let cancel = client.delete(&task_url).bearer_auth(&key);
    assert_eq!(a.send("/v1/tasks/{id}", cancel).await.0, StatusCode::CONFLICT);
    let file = task["images"][0]["url"].as_str().expect("a signed URL").to_string();
    let (status, _) = a.send("/files/{key}", client.get(&file)).await;
    assert_eq!(status, StatusCode::OK);
    let tampered = file.replace("sig=", "sig=0");
    assert_eq!(a.send("/files/{key}", client.get(tampered)).await.0, StatusCode::FORBIDDEN);
    a
}

/// Cutout.pro: submit, poll, balance, refusals.
async fn cutout_answers(server: &TestServer) -> Answers {
    let client = reqwest::Client::new();
    let key = server.key(Some(100)).await;
    let mut a = Answers::default();
    let paint = server.url("/api/v1/paintAsync");
    let body = json!({"imgBase64": common::cutout_b64(), "text": "warm paper"});
    let (status, accepted) =
        a.send("/api/v1/paintAsync", client.post(&paint).header("APIKEY", &key).json(&body)).await;
    assert_eq!((status, accepted["code"].as_i64()), (StatusCode::OK, Some(0)), "{accepted}");
    let anonymous = client.post(&paint).json(&body);
    assert_eq!(a.send("/api/v1/paintAsync", anonymous).await.0, StatusCode::UNAUTHORIZED);
    let empty = client.post(&paint).header("APIKEY", &key).json(&json!({}));
    assert_eq!(a.send("/api/v1/paintAsync", empty).await.0, StatusCode::BAD_REQUEST);
    let result = server.url(&format!("/api/v1/getPaintResult?taskId={}", accepted["data"]));
    let done = a
        .poll(
            "/api/v1/getPaintResult",
            || client.get(&result).header("APIKEY", &key),
            |r| {
                r["data"]["resultList"][0]["status"] != 3
                    && r["data"]["resultList"][0]["status"] != 0
            },
        )
        .await;
    assert_eq!(done["data"]["resultList"][0]["status"], 1, "{done}");
    let unknown =
        client.get(server.url("/api/v1/getPaintResult?taskId=999999")).header("APIKEY", &key);
    assert_eq!(a.send("/api/v1/getPaintResult", unknown).await.0, StatusCode::NOT_FOUND);
    let balance = client.get(server.url("/api/v1/mySubscription")).header("APIKEY", &key);
    assert_eq!(a.send("/api/v1/mySubscription", balance).await.0, StatusCode::OK);
    a
}

/// PicWish: submit (and a synchronous one), poll, scene types, refusals.
async fn picwish_answers(server: &TestServer) -> Answers {
    const PATH: &str = "/api/tasks/visual/background";
    let client = reqwest::Client::new();
    let key = server.key(None).await;
    let mut a = Answers::default();
    let form = |extra: &[(&'static str, &'static str)]| {
        extra.iter().fold(
            Form::new()
                .part("image_file", Part::bytes(cutout(256, 256)).file_name("cutout.png"))
                .text("batch_size", "1"),
            |form, (k, v)| form.text(*k, *v),
        )
    };
    let create =
        |form: Form| client.post(server.url(PATH)).header("X-API-KEY", &key).multipart(form);
    let (status, created) = a.send(PATH, create(form(&[("prompt", "warm paper")]))).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let (status, waited) =
        a.send(PATH, create(form(&[("scene_type", "103"), ("sync", "1")]))).await;
    assert_eq!((status, waited["data"]["state"].as_i64()), (StatusCode::OK, Some(1)), "{waited}");
    let both = form(&[("prompt", "warm paper"), ("scene_type", "103")]);
    let (status, refused) = a.send(PATH, create(both)).await;
    assert_eq!((status, refused["data"]["state"].as_i64()), (StatusCode::BAD_REQUEST, Some(-17)));
    let anonymous = client.post(server.url(PATH)).multipart(form(&[("prompt", "x")]));
    assert_eq!(a.send(PATH, anonymous).await.0, StatusCode::UNAUTHORIZED);
    let task_path = "/api/tasks/visual/background/{task_id}";
    let task = server.url(&format!("{PATH}/{}", created["data"]["task_id"].as_str().expect("id")));
    let done = a
        .poll(
            task_path,
            || client.get(&task).header("X-API-KEY", &key),
            |t| t["data"]["state"].as_i64().is_some_and(|s| s == 1 || s < 0),
        )
        .await;
    assert_eq!(done["data"]["state"], 1, "{done}");
    let unknown = client.get(server.url(&format!("{PATH}/nowhere"))).header("X-API-KEY", &key);
    assert_eq!(a.send(task_path, unknown).await.0, StatusCode::NOT_FOUND);
    let scene_types = "/api/tasks/visual/background/scene_types";
    assert_eq!(a.send(scene_types, client.get(server.url(scene_types))).await.0, StatusCode::OK);
    a
}

/// PicPik: every action, a bad signature and a body that is not JSON.
async fn picpik_answers(server: &TestServer) -> Answers {
    let client = reqwest::Client::new();
    let key = auth::create_key(server.shared.repo.as_ref(), "picpik", None, now_ms())
        .await
        .expect("key")
        .0;
    let pair = credentials(&server.shared.server_secret, key.id);
    let signed = |mut params: Value| {
        params["PublicKey"] = json!(pair.access_key);
        let signature = picpik::signature(params.as_object().expect("object"), &pair.secret_key);
        params["Signature"] = json!(signature);
        client.post(server.url("/")).json(&params)
    };
    let mut a = Answers::default();
    let generate = json!({
        "Action": "GenerateBackgrounds",
        "request_uuid": "conformance",
        "MainModel": {"ModelCode": "PICPIK General", "InferenceParams": {"Steps": 10}},
        "PositivePrompts": ["warm paper"],
        "ImageList": [common::cutout_b64()],
        "TransparentForeground": {"ImageIndex": 0, "ResizeMode": "ResizeAndFill"},
    });
    let (_, created) = a.send("/", signed(generate.clone())).await;
    assert_eq!(created["RetCode"], 0, "{created}");
    let uid = created["TaskUID"].as_str().expect("TaskUID").to_string();
    let details = json!({"Action": "ListTasksDetails", "TaskUIDList": [uid]});
    let done = a
        .poll(
            "/",
            || signed(details.clone()),
            |d| matches!(d["TaskDetailList"][0]["Status"].as_str(), Some("Finished" | "Error")),
        )
        .await;
    assert_eq!(done["TaskDetailList"][0]["Status"], "Finished", "{done}");
    let (_, running) = a.send("/", signed(json!({"Action": "ListRunningTasks"}))).await;
    assert_eq!(running["RetCode"], 0, "{running}");
    let mut forged = generate.clone();
    forged["PublicKey"] = json!(pair.access_key);
    forged["Signature"] = json!("0".repeat(40));
    let (_, refused) = a.send("/", client.post(server.url("/")).json(&forged)).await;
    assert_eq!(refused["RetCode"], 171, "{refused}");
    let (_, unreadable) = a.send("/", client.post(server.url("/")).body("not json")).await;
    assert_eq!(
        (unreadable["RetCode"].as_i64(), &unreadable["request_uuid"]),
        (Some(100), &Value::Null)
    );
    a
}

/// Kling: create, poll, list, refusals.
async fn kling_answers(server: &TestServer) -> Answers {
    const EXPAND: &str = "/v1/images/editing/expand";
    let client = reqwest::Client::new();
    let key = server.key(None).await;
    let mut a = Answers::default();
    let photo = png(&RgbaImage::from_fn(320, 320, |x, y| {
        Rgba([(x % 256) as u8, (y % 256) as u8, 90, 255])
    }));
    let body = json!({
        "image": b64(&photo), "up_expansion_ratio": 0.1, "down_expansion_ratio": 0.1,
        "left_expansion_ratio": 0.2, "right_expansion_ratio": 0.2, "external_task_id": "conformance",
    });
    let (status, created) =
        a.send(EXPAND, client.post(server.url(EXPAND)).bearer_auth(&key).json(&body)).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let (status, _) = a.send(EXPAND, client.post(server.url(EXPAND)).json(&body)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) =
        a.send(EXPAND, client.post(server.url(EXPAND)).bearer_auth(&key).json(&json!({}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let one = "/v1/images/editing/expand/{id}";
    let task =
        server.url(&format!("{EXPAND}/{}", created["data"]["task_id"].as_str().expect("task_id")));
    let done = a
        .poll(
            one,
            || client.get(&task).bearer_auth(&key),
            |t| matches!(t["data"]["task_status"].as_str(), Some("succeed" | "failed")),
        )
        .await;
    assert_eq!(done["data"]["task_status"], "succeed", "{done}");
    let unknown = client.get(server.url(&format!("{EXPAND}/nowhere"))).bearer_auth(&key);
    assert_eq!(a.send(one, unknown).await.0, StatusCode::NOT_FOUND);
    let list = client.get(server.url(&format!("{EXPAND}?pageNum=1&pageSize=10"))).bearer_auth(&key);
    assert_eq!(a.send(EXPAND, list).await.0, StatusCode::OK);
    let bad_page = client.get(server.url(&format!("{EXPAND}?pageSize=0"))).bearer_auth(&key);
    assert_eq!(a.send(EXPAND, bad_page).await.0, StatusCode::BAD_REQUEST);
    a
}

#[tokio::test]
async fn answers_conform_to_their_documents() {
    let Some(python) = openapi_python() else { return };
    let server = start(true, common::no_rate_limit).await;
    native_answers(&server).await.check(&python, &server, "/openapi.json").await;
    cutout_answers(&server).await.check(&python, &server, "/openapi/cutout.json").await;
    picwish_answers(&server).await.check(&python, &server, "/openapi/picwish.json").await;
    picpik_answers(&server).await.check(&python, &server, "/openapi/picpik.json").await;
    kling_answers(&server).await.check(&python, &server, "/openapi/kling.json").await;
}

#[tokio::test]
async fn a_generated_client_submits_polls_and_downloads() {
    let Some(python) = openapi_python() else { return };
    let server = start(true, |_| {}).await;
    let key = server.key(None).await;
    let document = ok_json(reqwest::Client::new().get(server.url("/openapi.json"))).await;
    let dir = tempfile::tempdir().expect("tmp");
    let document_path = dir.path().join("native.json");
    std::fs::write(&document_path, serde_json::to_vec(&document).expect("json")).expect("write");
    let image = repo_root().join("examples/bottle-cutout.png");
    let result = dir.path().join("result");
    let work = dir.path().join("client");
    let args = [
        "--document".to_string(),
        document_path.display().to_string(),
        "--base-url".to_string(),
        server.base.clone(),
        "--key".to_string(),
        key,
        "--image".to_string(),
        image.display().to_string(),
        "--out".to_string(),
        result.display().to_string(),
        "--work".to_string(),
        work.display().to_string(),
    ];
    // The script calls the server this runtime serves: run it off the runtime.
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_tool(&python, "client_roundtrip.py", &args)
    })
    .await
    .expect("the client ran");
    let summary: Value = serde_json::from_str(out.trim()).expect("a JSON summary line");
    assert_eq!(summary["state"], "succeeded", "{summary}");

    // The downloaded bytes are the result: a PNG the size of the input.
    let input = image::open(&image).expect("the example decodes");
    let bytes = std::fs::read(&result).expect("the result was written");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG: {summary}");
    let output =
        image::load_from_memory_with_format(&bytes, image::ImageFormat::Png).expect("decodes");
    assert_eq!((output.width(), output.height()), (input.width(), input.height()));
    assert_eq!((summary["width"].as_u64(), summary["height"].as_u64()), (Some(640), Some(640)));
    // The generated client covers the whole API, not only what this test calls.
    for module in [
        "tasks/cancel_task.py",
        "tasks/list_tasks.py",
        "catalog/list_scenes.py",
        "account/get_account.py",
    ] {
        assert!(
            work.join("backdrop_client/api").join(module).is_file(),
            "{module} was not generated"
        );
    }
}
