//! The PicPik surface as a PicPik client uses it: a plain HTTP client posting signed JSON
//! to `/`, the real router on loopback with workers.

mod common;

use backdrop_core::EngineName;
use backdrop_server::compat::picpik::{signature, STATUS_WORDS, TERMINAL_STATUS_WORDS};
use backdrop_server::vendor_keys::credentials;
use backdrop_server::{auth, now_ms};
use backdrop_store::{ResultImage, TaskResult};
use common::{
    b64, cutout_b64, download_image, no_rate_limit, ok_json, png, poll_json, start, TestServer,
};
use image::{Rgba, RgbaImage};
use serde_json::{json, Value};
use std::time::Duration;

struct Client {
    http: reqwest::Client,
    url: String,
    id: i64,
    public: String,
    private: String,
}

impl Client {
    async fn new(server: &TestServer, credits: Option<i64>) -> Client {
        let key = auth::create_key(server.shared.repo.as_ref(), "picpik", credits, now_ms())
            .await
            .expect("key")
            .0;
        let pair = credentials(&server.shared.server_secret, key.id);
        Client {
            http: reqwest::Client::new(),
            url: server.url("/"),
            id: key.id,
            public: pair.access_key,
            private: pair.secret_key,
        }
    }

    /// `params` signed as the vendor's SDK signs them, ready to post.
    fn signed(&self, mut params: Value) -> reqwest::RequestBuilder {
        params["PublicKey"] = json!(self.public);
        let sig = signature(params.as_object().expect("object"), &self.private);
        params["Signature"] = json!(sig);
        self.http.post(&self.url).json(&params)
    }

    /// Signs and posts `params` as the vendor's SDK does; PicPik answers 200 with a RetCode.
    async fn call(&self, params: Value) -> Value {
        ok_json(self.signed(params)).await
    }

    async fn raw(&self, params: &Value) -> Value {
        ok_json(self.http.post(&self.url).json(params)).await
    }
}

fn backdrop_photo() -> String {
    b64(&png(&RgbaImage::from_fn(80, 60, |x, y| Rgba([(x * 3) as u8, 90, (y * 4) as u8, 255]))))
}

fn generate(extra: Value) -> Value {
    let mut params = json!({
        "Action": "GenerateBackgrounds",
        "request_uuid": "5ae03609-451b-44d7-a351-c72904df881b",
        "MainModel": {"ModelCode": "PICPIK General", "InferenceParams": {"Steps": 10}},
        "PositivePrompts": ["blue sky", "white cloud"],
        "NegativePrompts": [],
        "TranslatePrompts": false,
        "ImageList": [cutout_b64()],
    });
    for (k, v) in extra.as_object().expect("object") {
        if v.is_null() {
            params.as_object_mut().expect("object").remove(k);
        } else {
            params[k] = v.clone();
        }
    }
    params
}

#[tokio::test]
async fn generate_poll_download() {
    let server = start(true, no_rate_limit).await;
    let client = Client::new(&server, Some(100)).await;
    let answer = client
        .call(generate(json!({
            "Seed": 42,
            "Width": 128,
            "Height": 96,
            "BatchSize": 2,
            "UseMainModelVAE": true,
            "ImageList": [cutout_b64(), backdrop_photo()],
            "TransparentForeground": {"ImageIndex": 0, "ResizeMode": "ResizeAndFill"},
            "BackgroundImage2Image": {
                "ImageIndex": 1, "ReferStrength": 0.3, "ResizeMode": "ResizeAndFill",
                "DeepFusion": false,
            },
        })))
        .await;
    assert_eq!(answer["RetCode"], 0, "{answer}");
    assert_eq!(answer["Action"], "GenerateBackgrounds");
    assert_eq!(answer["Message"], "");
    assert_eq!(answer["request_uuid"], "5ae03609-451b-44d7-a351-c72904df881b");
    let uid = answer["TaskUID"].as_str().expect("TaskUID").to_string();

    // Running tasks list it until it ends.
    let running = client.call(json!({"Action": "ListRunningTasks"})).await;
    assert_eq!(running["RetCode"], 0, "{running}");
    assert!(running["TaskUIDList"].is_array());

    let details = json!({"Action": "ListTasksDetails", "TaskUIDList": [uid]});
    let answer = poll_json(
        Duration::from_secs(60),
        || client.signed(details.clone()),
        |answer| {
            assert_eq!(answer["RetCode"], 0, "{answer}");
            let detail = &answer["TaskDetailList"][0];
            assert_eq!(detail["TaskUID"], uid.as_str());
            matches!(detail["Status"].as_str(), Some("Finished" | "Error"))
        },
    )
    .await;
    let detail = &answer["TaskDetailList"][0];
    assert_eq!(detail["Status"], "Finished", "{detail}");
    assert_eq!(detail["Action"], "GenerateBackgrounds");
    assert_eq!(detail["Seed"], 42);
    assert_eq!(detail["ErrorCode"], 0);
    assert_eq!(detail["ErrorMassage"], "");
    assert_eq!(detail["ConsumeApiPoint"], 2);
    assert_eq!(detail["TxtList"], json!(["blue sky, white cloud"]));
    let urls = detail["ImgList"].as_array().expect("ImgList");
    assert_eq!(urls.len(), 2);
    for url in urls {
        let img = download_image(&client.http, url.as_str().expect("url")).await;
        assert_eq!((img.width(), img.height()), (128, 96));
    }
    let running = client.call(json!({"Action": "ListRunningTasks"})).await;
    assert_eq!(running["TaskUIDList"], json!([]));
}

#[tokio::test]
async fn bad_requests_have_ret_codes() {
    let server = start(false, no_rate_limit).await;
    let client = Client::new(&server, Some(1)).await;
    let opaque = b64(&png(&RgbaImage::from_pixel(64, 64, Rgba([1, 2, 3, 255]))));
    let cases: Vec<(&str, Value, u64)> = vec![
        ("Steps 5", json!({"MainModel": {"InferenceParams": {"Steps": 5}}}), 230),
        ("Steps 101", json!({"MainModel": {"InferenceParams": {"Steps": 101}}}), 230),
        ("Seed -2", json!({"Seed": -2}), 230),
        ("Seed too large", json!({"Seed": 2_147_483_648_i64}), 230),
        ("Width 63", json!({"Width": 63}), 230),
        ("Height 2561", json!({"Height": 2561}), 230),
        ("BatchSize 0", json!({"BatchSize": 0}), 230),
        ("BatchSize 17", json!({"BatchSize": 17}), 230),
        ("Seed a string", json!({"Seed": "7"}), 230),
        ("no prompts", json!({"PositivePrompts": []}), 230),
        ("no images", json!({"ImageList": []}), 230),
        ("foreground index", json!({"TransparentForeground": {"ImageIndex": 3}}), 230),
        ("bad ResizeMode", json!({"TransparentForeground": {"ResizeMode": "Stretch"}}), 230),
        (
            "ReferStrength 1.5",
            json!({"ImageList": [cutout_b64(), backdrop_photo()],
                   "BackgroundImage2Image": {"ImageIndex": 1, "ReferStrength": 1.5}}),
            230,
        ),
        ("reference index", json!({"BackgroundImage2Image": {"ImageIndex": 1}}), 230),
        ("unknown model", json!({"MainModel": {"ModelCode": "PICPIK Anime"}}), 232),
        ("unknown LoRA", json!({"SubModelList": [{"ModelCode": "film-grain"}]}), 232),
        ("not base64", json!({"ImageList": ["@@@"]}), 231),
        ("opaque foreground", json!({"ImageList": [opaque]}), 231),
        ("jpeg foreground", json!({"ImageList": [b64(&[0xFF, 0xD8, 0xFF, 0])]}), 231),
        ("points exhausted", json!({"BatchSize": 2}), 284),
    ];
    for (what, extra, code) in cases {
        let answer = client.call(generate(extra)).await;
        assert_eq!(answer["RetCode"].as_u64(), Some(code), "{what}: {answer}");
        assert_eq!(answer["Action"], "GenerateBackgrounds", "{what}");
        assert_eq!(answer["request_uuid"], "5ae03609-451b-44d7-a351-c72904df881b", "{what}");
        assert!(answer["Message"].as_str().is_some_and(|m| !m.is_empty()), "{what}");
    }

    // Auth and envelope failures.
    let mut tampered = generate(json!({"PublicKey": client.public}));
    tampered["Signature"] = json!(signature(tampered.as_object().expect("o"), &client.private));
    tampered["Seed"] = json!(7);
    assert_eq!(client.raw(&tampered).await["RetCode"], 171);
    let mut wrong_key = generate(json!({"PublicKey": client.public}));
    wrong_key["Signature"] = json!(signature(wrong_key.as_object().expect("o"), "guess"));
    assert_eq!(client.raw(&wrong_key).await["RetCode"], 171);
    assert_eq!(client.raw(&generate(json!({"PublicKey": client.public}))).await["RetCode"], 170);
    let mut stranger = generate(json!({"PublicKey": "ak999x000000000000"}));
    stranger["Signature"] = json!(signature(stranger.as_object().expect("o"), "x"));
    assert_eq!(client.raw(&stranger).await["RetCode"], 172);
    let unknown = client.call(json!({"Action": "ListModels", "request_uuid": "u-1"})).await;
    assert_eq!(
        (unknown["RetCode"].as_u64(), unknown["Action"].as_str(), unknown["request_uuid"].as_str()),
        (Some(161), Some("ListModels"), Some("u-1"))
    );
    assert_eq!(client.call(json!({"Foo": 1})).await["RetCode"], 160);
    let unreadable = ok_json(client.http.post(&client.url).body("not json")).await;
    assert_eq!(unreadable["RetCode"], 100);
    let details = client.call(json!({"Action": "ListTasksDetails", "TaskUIDList": ["nope"]})).await;
    assert_eq!(details["RetCode"], 233);
    let details = client.call(json!({"Action": "ListTasksDetails", "TaskUIDList": []})).await;
    assert_eq!(details["RetCode"], 230);

    // Nothing was charged for any refusal.
    let ok = client.call(generate(json!({}))).await;
    assert_eq!(ok["RetCode"], 0, "{ok}");
}

#[tokio::test]
async fn rate_limit_has_its_ret_code() {
    let server = start(false, |c| {
        c.limits.submits_per_second = 0.01;
        c.limits.submit_burst = 1;
    })
    .await;
    let client = Client::new(&server, None).await;
    assert_eq!(client.call(generate(json!({"request_uuid": "first"}))).await["RetCode"], 0);
    assert_eq!(client.call(generate(json!({"request_uuid": "second"}))).await["RetCode"], 290);
}

#[tokio::test]
async fn a_lowercase_signature_field_is_accepted_and_never_signed() {
    let server = start(false, no_rate_limit).await;
    let client = Client::new(&server, None).await;
    let mut params = json!({"Action": "ListRunningTasks", "PublicKey": client.public});
    let sig = signature(params.as_object().expect("object"), &client.private);
    params["signature"] = json!(sig);
    let answer = client.raw(&params).await;
    assert_eq!(answer["RetCode"], 0, "{answer}");
    assert_eq!(answer["TaskUIDList"], json!([]));

    // Either name, it is checked: a wrong one is refused.
    params["signature"] = json!(signature(params.as_object().expect("object"), "guess"));
    assert_eq!(client.raw(&params).await["RetCode"], 171);
    // Both names at once: `Signature` is the one checked, and neither is signed.
    params["Signature"] = json!(sig);
    params["signature"] = json!("anything");
    assert_eq!(client.raw(&params).await["RetCode"], 0);
}

#[tokio::test]
async fn a_replayed_body_returns_its_task_and_charges_once() {
    // One submit per 100 s: a replay that made a new task would also hit the rate limit.
    let server = start(false, |c| {
        c.limits.submits_per_second = 0.01;
        c.limits.submit_burst = 1;
    })
    .await;
    let client = Client::new(&server, Some(10)).await;
    let mut body = generate(json!({"request_uuid": "6f1c2b1e-replayed", "BatchSize": 2}));
    body["PublicKey"] = json!(client.public);
    body["Signature"] = json!(signature(body.as_object().expect("object"), &client.private));

    let first = client.raw(&body).await;
    assert_eq!(first["RetCode"], 0, "{first}");
    let uid = first["TaskUID"].as_str().expect("TaskUID").to_string();
    for _ in 0..3 {
        let again = client.raw(&body).await;
        assert_eq!(again["RetCode"], 0, "{again}");
        assert_eq!(again["TaskUID"], uid.as_str(), "the same task");
        assert_eq!(again["request_uuid"], "6f1c2b1e-replayed");
    }
    let key = server.shared.repo.key(client.id).await.expect("repo").expect("key");
    assert_eq!(key.balance, Some(8), "2 images reserved once");
    let filter = backdrop_store::TaskFilter { limit: 100, ..Default::default() };
    let tasks = server.shared.repo.list_tasks(client.id, &filter).await.expect("list");
    assert_eq!(tasks.len(), 1, "one task");

    // The same request_uuid on a different request is the client's bug, not a replay.
    let other = client.call(generate(json!({"request_uuid": "6f1c2b1e-replayed"}))).await;
    assert_eq!(other["RetCode"], 230, "{other}");
    assert!(other["Message"].as_str().expect("Message").contains("request_uuid"), "{other}");
    // Another key may use the same request_uuid for its own task.
    let stranger = Client::new(&server, None).await;
    let theirs = stranger.call(generate(json!({"request_uuid": "6f1c2b1e-replayed"}))).await;
    assert_eq!(theirs["RetCode"], 0, "{theirs}");
    assert_ne!(theirs["TaskUID"], uid.as_str());
}

#[tokio::test]
async fn every_status_word_and_ended_tasks_are_terminal() {
    let server = start(false, no_rate_limit).await;
    let client = Client::new(&server, None).await;
    let repo = &server.shared.repo;
    let engines = [EngineName::Studio, EngineName::Patch, EngineName::Diffusion];
    let submit = |uuid: &'static str| {
        let client = &client;
        async move {
            let answer = client.call(generate(json!({"request_uuid": uuid}))).await;
            assert_eq!(answer["RetCode"], 0, "{answer}");
            answer["TaskUID"].as_str().expect("TaskUID").to_string()
        }
    };
    let detail = |uid: String| {
        let client = &client;
        async move {
            let answer =
                client.call(json!({"Action": "ListTasksDetails", "TaskUIDList": [uid]})).await;
            assert_eq!(answer["RetCode"], 0, "{answer}");
            answer["TaskDetailList"][0].clone()
        }
    };
    let words = |d: &Value| {
        (d["Status"].as_str().map(str::to_string), d["ErrorCode"].as_i64(), d["ImgList"].clone())
    };
    let none = json!([]);

    // Queued, running, then failed.
    let failing = submit("status-failed").await;
    assert_eq!(
        words(&detail(failing.clone()).await),
        (Some("Queuing".into()), Some(0), none.clone())
    );
    let claimed = repo.claim("w", &engines, 60_000, now_ms()).await.expect("claim").expect("task");
    assert_eq!(claimed.uid, failing);
    assert_eq!(
        words(&detail(failing.clone()).await),
        (Some("Running".into()), Some(0), none.clone())
    );
    assert!(repo
        .fail(&failing, "w", backdrop_core::ErrorCode::EngineFailed, "boom", now_ms())
        .await
        .expect("fail"));
    let failed = detail(failing).await;
    assert_eq!(words(&failed), (Some("Error".into()), Some(500), none.clone()));
    assert_eq!(failed["ErrorMassage"], "boom");

    // Canceled while queued.
    let canceling = submit("status-canceled").await;
    repo.cancel(&canceling, now_ms()).await.expect("cancel").expect("task");
    assert_eq!(words(&detail(canceling).await), (Some("Error".into()), Some(499), none.clone()));

    // Succeeded, then its results expire.
    let succeeding = submit("status-finished").await;
    let claimed = repo.claim("w", &engines, 60_000, now_ms()).await.expect("claim").expect("task");
    assert_eq!(claimed.uid, succeeding);
    let result = TaskResult {
        engine: "studio".into(),
        seed: 7,
        width: 96,
        height: 96,
        images: vec![ResultImage {
            index: 1,
            seed: 7,
            blob: format!("tasks/{succeeding}/1.png"),
            preview_blob: None,
            watermarked_blob: None,
        }],
        notes: Vec::new(),
        engine_ms: 1.0,
    };
    let now = now_ms();
    assert!(repo.complete(&succeeding, "w", result, now, now).await.expect("complete"));
    let (status, code, images) = words(&detail(succeeding.clone()).await);
    assert_eq!((status.as_deref(), code), (Some("Finished"), Some(0)));
    assert_eq!(images.as_array().map(Vec::len), Some(1), "{images}");
    let id = repo.task(&succeeding).await.expect("task").expect("task").id;
    assert!(repo.mark_expired(id, now + 1).await.expect("expire"));
    assert_eq!(words(&detail(succeeding).await), (Some("Finished".into()), Some(0), none));

    // Every word given is documented, and only ended tasks have a terminal word.
    for word in ["Queuing", "Running"] {
        assert!(STATUS_WORDS.contains(&word) && !TERMINAL_STATUS_WORDS.contains(&word));
    }
    for word in ["Finished", "Error"] {
        assert!(STATUS_WORDS.contains(&word) && TERMINAL_STATUS_WORDS.contains(&word));
    }
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_in_the_envelope() {
    let server = start(false, |c| c.limits.max_body_bytes = 64 * 1024).await;
    let client = Client::new(&server, None).await;
    let large = generate(json!({"ImageList": [b64(&vec![7u8; 128 * 1024])]}));
    let answer = client.call(large).await;
    assert_eq!(answer["RetCode"], 100, "{answer}");
    let message = answer["Message"].as_str().expect("Message");
    assert!(message.contains("larger than the limit of 65536 bytes"), "{message}");
    // Under the limit the same call is read, signed and answered.
    assert_eq!(client.call(generate(json!({}))).await["RetCode"], 0);
}

#[tokio::test]
async fn a_task_over_the_memory_budget_has_the_parameter_ret_code() {
    let server = start(false, |c| {
        no_rate_limit(c);
        c.limits.max_task_memory_bytes = 64 * 1024 * 1024;
    })
    .await;
    let client = Client::new(&server, Some(10)).await;
    let answer =
        client.call(generate(json!({"Width": 2048, "Height": 2048, "BatchSize": 4}))).await;
    assert_eq!(answer["RetCode"], 230, "{answer}");
    let message = answer["Message"].as_str().expect("message");
    assert!(message.contains("64.0 MiB") && message.contains("max_task_memory_bytes"), "{message}");
    // A smaller size under the same budget is accepted.
    assert_eq!(client.call(generate(json!({"BatchSize": 4}))).await["RetCode"], 0);
}
