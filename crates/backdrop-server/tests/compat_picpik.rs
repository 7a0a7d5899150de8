//! The PicPik surface as a PicPik client uses it: a plain HTTP client posting signed JSON
//! to `/`, the real router on loopback with workers.

mod common;

use backdrop_server::compat::picpik::signature;
use backdrop_server::vendor_keys::credentials;
use backdrop_server::{auth, now_ms};
use base64::Engine as _;
use common::{cutout_b64, png, start, TestServer};
use image::{Rgba, RgbaImage};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

struct Client {
    http: reqwest::Client,
    url: String,
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
            public: pair.access_key,
            private: pair.secret_key,
        }
    }

    /// Signs and posts `params` as the vendor's SDK does.
    async fn call(&self, mut params: Value) -> Value {
        params["PublicKey"] = json!(self.public);
        let sig = signature(params.as_object().expect("object"), &self.private);
        params["Signature"] = json!(sig);
        self.raw(&params).await
    }

    async fn raw(&self, params: &Value) -> Value {
        let response = self.http.post(&self.url).json(params).send().await.expect("post");
        assert_eq!(response.status(), StatusCode::OK, "PicPik answers 200 with a RetCode");
        response.json().await.expect("json")
    }
}

fn fast(c: &mut backdrop_server::ServiceConfig) {
    c.limits.submits_per_second = 1000.0;
    c.limits.submit_burst = 1000;
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
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
    let server = start(true, fast).await;
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

    let deadline = Instant::now() + Duration::from_secs(60);
    let detail = loop {
        let answer = client.call(json!({"Action": "ListTasksDetails", "TaskUIDList": [uid]})).await;
        assert_eq!(answer["RetCode"], 0, "{answer}");
        let detail = answer["TaskDetailList"][0].clone();
        assert_eq!(detail["TaskUID"], uid.as_str());
        if matches!(detail["Status"].as_str(), Some("Success" | "Failed")) {
            break detail;
        }
        assert!(Instant::now() < deadline, "not done: {detail}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(detail["Status"], "Success", "{detail}");
    assert_eq!(detail["Action"], "GenerateBackgrounds");
    assert_eq!(detail["Seed"], 42);
    assert_eq!(detail["ErrorCode"], 0);
    assert_eq!(detail["ErrorMassage"], "");
    assert_eq!(detail["ConsumeApiPoint"], 2);
    assert_eq!(detail["TxtList"], json!(["blue sky, white cloud"]));
    let urls = detail["ImgList"].as_array().expect("ImgList");
    assert_eq!(urls.len(), 2);
    for url in urls {
        let response = client.http.get(url.as_str().expect("url")).send().await.expect("get");
        assert_eq!(response.status(), StatusCode::OK);
        let img = image::load_from_memory(&response.bytes().await.expect("bytes")).expect("image");
        assert_eq!((img.width(), img.height()), (128, 96));
    }
    let running = client.call(json!({"Action": "ListRunningTasks"})).await;
    assert_eq!(running["TaskUIDList"], json!([]));
}

#[tokio::test]
async fn bad_requests_have_ret_codes() {
    let server = start(false, fast).await;
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
    let response = client.http.post(&client.url).body("not json").send().await.expect("post");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.expect("json")["RetCode"], 100);
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
    assert_eq!(client.call(generate(json!({}))).await["RetCode"], 0);
    assert_eq!(client.call(generate(json!({}))).await["RetCode"], 290);
}

#[tokio::test]
async fn a_task_over_the_memory_budget_has_the_parameter_ret_code() {
    let server = start(false, |c| {
        fast(c);
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
