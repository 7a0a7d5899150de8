//! The Kling Image Expansion surface as a Kling client uses it: a plain HTTP client, a
//! JWT made here from the key's access key / secret key pair (not with the server's
//! code), the real router on loopback with workers and callback delivery.

mod common;

use backdrop_server::vendor_keys::credentials;
use backdrop_server::{auth, now_ms};
use common::{
    b64, download_image, kling_jwt as jwt, kling_token, no_rate_limit, png, poll_json, send_json,
    serve, start, Deadline, TestServer,
};
use image::{Rgba, RgbaImage};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const EXPAND: &str = "/v1/images/editing/expand";

/// A valid token of key `id`: `exp` = now + 1800, `nbf` = now - 5.
fn token(server: &TestServer, id: i64) -> String {
    kling_token(&server.shared, id)
}

async fn new_key(server: &TestServer, credits: Option<i64>) -> i64 {
    auth::create_key(server.shared.repo.as_ref(), "kling", credits, now_ms())
        .await
        .expect("key")
        .0
        .id
}

fn photo(w: u32, h: u32) -> Vec<u8> {
    png(&RgbaImage::from_fn(w, h, |x, y| {
        Rgba([(x % 256) as u8, (y % 256) as u8, ((x / 7 + y / 5) % 256) as u8, 255])
    }))
}

fn fast(c: &mut backdrop_server::ServiceConfig) {
    no_rate_limit(c);
    c.fetch.allow = vec!["127.0.0.1/32".into()];
}

async fn poll_done(client: &reqwest::Client, server: &TestServer, id: i64, task: &str) -> Value {
    let url = server.url(&format!("{EXPAND}/{task}"));
    let body = poll_json(
        Duration::from_secs(120),
        || client.get(&url).bearer_auth(token(server, id)),
        |body| {
            assert_eq!(body["code"], 0);
            matches!(body["data"]["task_status"].as_str(), Some("succeed" | "failed"))
        },
    )
    .await;
    body["data"].clone()
}

#[tokio::test]
async fn create_poll_download_list_and_callback() {
    let server = start(true, fast).await;
    let id = new_key(&server, Some(100)).await;
    let client = reqwest::Client::new();

    // A callback receiver on loopback.
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = Arc::clone(&received);
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let sink = Arc::clone(&sink);
            async move {
                sink.lock().expect("lock").push(serde_json::from_str(&body).expect("json body"));
                "ok"
            }
        }),
    );
    let hook = format!("http://{}/hook", serve(receiver).await);

    let (status, body) =
        send_json(client.post(server.url(EXPAND)).bearer_auth(token(&server, id)).json(&json!({
            "image": b64(&photo(320, 300)),
            "up_expansion_ratio": 0.1,
            "down_expansion_ratio": 0.0,
            "left_expansion_ratio": 0.2,
            "right_expansion_ratio": 0.0,
            "prompt": "more of the same wall",
            "n": 2,
            "watermark_info": {"enabled": true},
            "callback_url": hook,
            "external_task_id": "order-1",
        })))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["code"], 0);
    assert_eq!(body["message"], "SUCCEED");
    assert!(body["request_id"].as_str().is_some_and(|r| !r.is_empty()));
    let data = &body["data"];
    assert_eq!(data["task_status"], "submitted");
    assert_eq!(data["task_info"]["external_task_id"], "order-1");
    assert!(data["created_at"].as_i64().is_some_and(|t| t > 1_600_000_000_000), "ms: {data}");
    let task_id = data["task_id"].as_str().expect("task_id").to_string();

    let done = poll_done(&client, &server, id, &task_id).await;
    assert_eq!(done["task_status"], "succeed", "{done}");
    assert_eq!(done["task_status_msg"], "");
    assert!(done["updated_at"].as_i64() >= done["created_at"].as_i64());
    let images = done["task_result"]["images"].as_array().expect("images").clone();
    assert_eq!(images.len(), 2);
    for (i, img) in images.iter().enumerate() {
        assert_eq!(img["index"], i as u64);
        for field in ["url", "watermark_url"] {
            let decoded = download_image(&client, img[field].as_str().expect("url")).await;
            // 320 + 0.2 * 320 wide, 300 + 0.1 * 300 high.
            assert_eq!((decoded.width(), decoded.height()), (384, 330));
        }
    }

    // The same task by its external_task_id.
    let (status, by_external) = send_json(
        client.get(server.url(&format!("{EXPAND}/order-1"))).bearer_auth(token(&server, id)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(by_external["data"]["task_id"], task_id.as_str());

    // The external_task_id is unique per key: a second use is refused...
    let (status, dup) =
        send_json(client.post(server.url(EXPAND)).bearer_auth(token(&server, id)).json(&json!({
            "image": b64(&photo(300, 300)),
            "up_expansion_ratio": 0.1, "down_expansion_ratio": 0, "left_expansion_ratio": 0,
            "right_expansion_ratio": 0, "external_task_id": "order-1",
        })))
        .await;
    assert_eq!((status, dup["code"].as_u64()), (StatusCode::BAD_REQUEST, Some(1201)), "{dup}");
    // ...but another key may use it, and cannot see the first key's task.
    let other = new_key(&server, None).await;
    let (status, missing) = send_json(
        client.get(server.url(&format!("{EXPAND}/{task_id}"))).bearer_auth(token(&server, other)),
    )
    .await;
    assert_eq!((status, missing["code"].as_u64()), (StatusCode::NOT_FOUND, Some(1203)));
    let (status, theirs) = send_json(
        client.post(server.url(EXPAND)).bearer_auth(token(&server, other)).json(&json!({
            "image": b64(&photo(300, 300)),
            "up_expansion_ratio": 0.1, "down_expansion_ratio": 0, "left_expansion_ratio": 0,
            "right_expansion_ratio": 0, "external_task_id": "order-1",
        })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{theirs}");

    // The list, paged.
    let (status, page) = send_json(
        client
            .get(server.url(&format!("{EXPAND}?pageNum=1&pageSize=500")))
            .bearer_auth(token(&server, id)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let tasks = page["data"].as_array().expect("list");
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0]["task_id"], task_id.as_str());
    let (_, empty) = send_json(
        client
            .get(server.url(&format!("{EXPAND}?pageNum=2&pageSize=1")))
            .bearer_auth(token(&server, id)),
    )
    .await;
    assert_eq!(empty["data"], json!([]));

    // The callback body: every status change, Kling's shape.
    let deadline = Deadline::after(Duration::from_secs(30));
    loop {
        let got = received.lock().expect("lock").clone();
        if got.iter().any(|b| b["task_status"] == "succeed") {
            let statuses: Vec<&str> =
                got.iter().filter_map(|b| b["task_status"].as_str()).collect();
            assert!(statuses.contains(&"submitted"), "{statuses:?}");
            assert!(statuses.contains(&"processing"), "{statuses:?}");
            let last = got.iter().find(|b| b["task_status"] == "succeed").expect("succeed");
            assert_eq!(last["task_id"], task_id.as_str());
            assert_eq!(last["task_info"]["external_task_id"], "order-1");
            assert_eq!(last["task_result"]["images"].as_array().map(Vec::len), Some(2));
            assert!(last["created_at"].is_i64() && last["updated_at"].is_i64());
            break;
        }
        deadline.again(format!("no succeed callback: {got:?}")).await;
    }

    // Credits: 2 images at the Kling price.
    let key = server.shared.repo.key(id).await.expect("repo").expect("key");
    assert_eq!(key.balance, Some(98));
}

#[tokio::test]
async fn auth_failures_have_their_codes() {
    let server = start(false, fast).await;
    let id = new_key(&server, None).await;
    let pair = credentials(&server.shared.server_secret, id);
    let client = reqwest::Client::new();
    let now = now_ms() / 1000;
    let list = server.url(EXPAND);
    let code = |(status, body): (StatusCode, Value)| (status.as_u16(), body["code"].as_u64());

    assert_eq!(code(send_json(client.get(&list)).await), (401, Some(1001)));
    assert_eq!(
        code(send_json(client.get(&list).header("Authorization", "Bearer ")).await),
        (401, Some(1001))
    );
    assert_eq!(
        code(send_json(client.get(&list).bearer_auth("not.a-jwt")).await),
        (401, Some(1002))
    );
    let wrong_secret =
        jwt(&json!({"iss": pair.access_key, "exp": now + 60, "nbf": now - 5}), "sk-guess");
    assert_eq!(
        code(send_json(client.get(&list).bearer_auth(wrong_secret)).await),
        (401, Some(1002))
    );
    let expired =
        jwt(&json!({"iss": pair.access_key, "exp": now - 60, "nbf": now - 120}), &pair.secret_key);
    assert_eq!(code(send_json(client.get(&list).bearer_auth(expired)).await), (401, Some(1004)));
    let early =
        jwt(&json!({"iss": pair.access_key, "exp": now + 1800, "nbf": now + 60}), &pair.secret_key);
    assert_eq!(code(send_json(client.get(&list).bearer_auth(early)).await), (401, Some(1003)));
    // A token that would stay valid for a year is refused; one for the next 23 hours works.
    let forever =
        jwt(&json!({"iss": pair.access_key, "exp": now + 365 * 86_400}), &pair.secret_key);
    assert_eq!(code(send_json(client.get(&list).bearer_auth(forever)).await), (401, Some(1002)));
    let day = jwt(&json!({"iss": pair.access_key, "exp": now + 23 * 3600}), &pair.secret_key);
    assert_eq!(code(send_json(client.get(&list).bearer_auth(day)).await), (200, Some(0)));
    let no_exp = jwt(&json!({"iss": pair.access_key, "nbf": now - 5}), &pair.secret_key);
    assert_eq!(code(send_json(client.get(&list).bearer_auth(no_exp)).await), (401, Some(1002)));
    let stranger = jwt(&json!({"iss": "ak999x000000000000", "exp": now + 60}), "x");
    assert_eq!(code(send_json(client.get(&list).bearer_auth(stranger)).await), (401, Some(1000)));
    // Within the leeway a slightly early nbf is fine.
    let skewed =
        jwt(&json!({"iss": pair.access_key, "exp": now + 60, "nbf": now + 2}), &pair.secret_key);
    assert_eq!(code(send_json(client.get(&list).bearer_auth(skewed)).await), (200, Some(0)));
    // A revoked key's pair stops working.
    server.shared.repo.revoke_key(id, now_ms()).await.expect("revoke");
    assert_eq!(
        code(send_json(client.get(&list).bearer_auth(token(&server, id))).await),
        (401, Some(1000))
    );
}

#[tokio::test]
async fn bad_requests_have_kling_codes() {
    let server = start(false, fast).await;
    let id = new_key(&server, Some(3)).await;
    let client = reqwest::Client::new();
    let ok_image = b64(&photo(300, 300));
    let base = json!({
        "image": ok_image,
        "up_expansion_ratio": 0.1, "down_expansion_ratio": 0.1,
        "left_expansion_ratio": 0.1, "right_expansion_ratio": 0.1,
    });
    let with = |patch: Value| {
        let mut body = base.clone();
        for (k, v) in patch.as_object().expect("object") {
            if v.is_null() {
                body.as_object_mut().expect("object").remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        body
    };
    let mut jpeg = Vec::new();
    image::DynamicImage::ImageRgba8(RgbaImage::from_pixel(300, 300, Rgba([9, 9, 9, 255])))
        .to_rgb8()
        .write_to(&mut std::io::Cursor::new(&mut jpeg), image::ImageFormat::Jpeg)
        .expect("jpeg");
    let mut webp = Vec::new();
    RgbaImage::from_pixel(300, 300, Rgba([9, 9, 9, 255]))
        .write_to(&mut std::io::Cursor::new(&mut webp), image::ImageFormat::WebP)
        .expect("webp");
    // Noise does not compress: a PNG over 10 MB.
    let mut state = 1u32;
    let noise = png(&RgbaImage::from_fn(1900, 1500, |_, _| {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let b = state.to_le_bytes();
        Rgba([b[0], b[1], b[2], b[3]])
    }));
    assert!(noise.len() > 10 * 1024 * 1024, "{}", noise.len());

    let cases: Vec<(&str, Value, u16, u64)> = vec![
        ("missing ratio", with(json!({"left_expansion_ratio": null})), 400, 1200),
        ("ratio above 2", with(json!({"left_expansion_ratio": 2.1})), 400, 1201),
        ("negative ratio", with(json!({"up_expansion_ratio": -0.1})), 400, 1201),
        (
            "area over 3x",
            with(json!({"left_expansion_ratio": 1, "right_expansion_ratio": 1})),
            400,
            1201,
        ),
        ("prompt over 2500", with(json!({"prompt": "x".repeat(2501)})), 400, 1201),
        ("n = 0", with(json!({"n": 0})), 400, 1201),
        ("n = 10", with(json!({"n": 10})), 400, 1201),
        ("n not a number", with(json!({"n": "two"})), 400, 1200),
        ("no image", with(json!({"image": null})), 400, 1200),
        (
            "data: prefix",
            with(json!({"image": format!("data:image/png;base64,{ok_image}")})),
            400,
            1201,
        ),
        ("not base64", with(json!({"image": "@@@"})), 400, 1201),
        ("webp", with(json!({"image": b64(&webp)})), 400, 1201),
        ("under 300 px", with(json!({"image": b64(&photo(299, 400))})), 400, 1201),
        ("aspect over 2.5", with(json!({"image": b64(&photo(760, 300))})), 400, 1201),
        ("over 10 MB", with(json!({"image": b64(&noise)})), 400, 1201),
        ("bad callback", with(json!({"callback_url": "ftp://x"})), 400, 1201),
        ("credits exhausted", with(json!({"n": 4})), 429, 1102),
        ("not an object", json!([1, 2]), 400, 1200),
    ];
    for (what, body, status, code) in cases {
        let (got, answer) =
            send_json(client.post(server.url(EXPAND)).bearer_auth(token(&server, id)).json(&body))
                .await;
        assert_eq!(
            (got.as_u16(), answer["code"].as_u64()),
            (status, Some(code)),
            "{what}: {answer}"
        );
        assert!(answer["request_id"].is_string(), "{what}");
        assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}");
    }
    // jpg is accepted (and the 3 credits left are enough for it).
    let (status, body) = send_json(
        client
            .post(server.url(EXPAND))
            .bearer_auth(token(&server, id))
            .json(&with(json!({"image": b64(&jpeg)}))),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Malformed JSON, an unknown task, and bad pages.
    let (status, body) = send_json(
        client
            .post(server.url(EXPAND))
            .bearer_auth(token(&server, id))
            .header("content-type", "application/json")
            .body("{"),
    )
    .await;
    assert_eq!((status.as_u16(), body["code"].as_u64()), (400, Some(1200)));
    for page in ["pageNum=0", "pageNum=1001", "pageSize=0", "pageSize=501", "pageSize=x"] {
        let (status, body) = send_json(
            client.get(server.url(&format!("{EXPAND}?{page}"))).bearer_auth(token(&server, id)),
        )
        .await;
        assert_eq!((status.as_u16(), body["code"].as_u64()), (400, Some(1201)), "{page}");
    }
    let (status, body) = send_json(
        client.get(server.url(&format!("{EXPAND}/nope"))).bearer_auth(token(&server, id)),
    )
    .await;
    assert_eq!((status.as_u16(), body["code"].as_u64()), (404, Some(1203)));
}

#[tokio::test]
async fn rate_and_concurrency_limits_have_kling_codes() {
    let server = start(false, |c| {
        c.limits.submits_per_second = 0.01;
        c.limits.submit_burst = 2;
        c.limits.max_key_images = 3;
    })
    .await;
    let id = new_key(&server, None).await;
    let client = reqwest::Client::new();
    let body = |n: u32| {
        json!({
            "image": b64(&photo(300, 300)), "n": n,
            "up_expansion_ratio": 0.1, "down_expansion_ratio": 0, "left_expansion_ratio": 0,
            "right_expansion_ratio": 0,
        })
    };
    let post = |n: u32| {
        let client = client.clone();
        let url = server.url(EXPAND);
        let token = token(&server, id);
        async move { send_json(client.post(url).bearer_auth(token).json(&body(n))).await }
    };
    let (status, first) = post(2).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    // 2 images in flight, 2 more would pass the limit of 3.
    let (status, over) = post(2).await;
    assert_eq!((status.as_u16(), over["code"].as_u64()), (429, Some(1303)), "{over}");
    let (status, rate) = post(1).await;
    assert_eq!((status.as_u16(), rate["code"].as_u64()), (429, Some(1302)), "{rate}");
}

#[tokio::test]
async fn image_by_url_is_fetched() {
    let server = start(true, fast).await;
    let id = new_key(&server, None).await;
    let client = reqwest::Client::new();
    let bytes = photo(300, 320);
    let app = axum::Router::new().route(
        "/photo.png",
        axum::routing::get(move || {
            let bytes = bytes.clone();
            async move { bytes }
        }),
    );
    let base = format!("http://{}", serve(app).await);
    let body = |url: String| {
        json!({"image": url, "up_expansion_ratio": 0, "down_expansion_ratio": 0.1,
               "left_expansion_ratio": 0, "right_expansion_ratio": 0})
    };
    let (status, created) = send_json(
        client
            .post(server.url(EXPAND))
            .bearer_auth(token(&server, id))
            .json(&body(format!("{base}/photo.png"))),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    // No external_task_id given: an empty string, as Kling answers, not null.
    assert_eq!(created["data"]["task_info"]["external_task_id"], "", "{created}");
    let task = created["data"]["task_id"].as_str().expect("task_id").to_string();
    let done = poll_done(&client, &server, id, &task).await;
    assert_eq!(done["task_status"], "succeed", "{done}");
    assert_eq!(done["task_info"]["external_task_id"], "", "{done}");
    assert!(done["task_result"]["images"][0].get("watermark_url").is_none());
    // A URL that does not answer with an image is a bad value.
    let (status, err) = send_json(
        client
            .post(server.url(EXPAND))
            .bearer_auth(token(&server, id))
            .json(&body(format!("{base}/missing.png"))),
    )
    .await;
    assert_eq!((status.as_u16(), err["code"].as_u64()), (400, Some(1201)), "{err}");
}

#[tokio::test]
async fn a_plain_api_key_authenticates_beside_the_jwt() {
    let server = start(false, fast).await;
    let (key, plaintext) =
        auth::create_key(server.shared.repo.as_ref(), "kling", Some(10), now_ms())
            .await
            .expect("key");
    let client = reqwest::Client::new();
    let code = |(status, body): (StatusCode, Value)| (status.as_u16(), body["code"].as_u64());
    let body = json!({
        "image": b64(&photo(300, 300)), "up_expansion_ratio": 0.1, "down_expansion_ratio": 0,
        "left_expansion_ratio": 0, "right_expansion_ratio": 0, "external_task_id": "plain-1",
    });

    // `Authorization: Bearer <API key>`, as Kling's current documents send it.
    let (status, created) =
        send_json(client.post(server.url(EXPAND)).bearer_auth(&plaintext).json(&body)).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(created["code"], 0);
    let task = created["data"]["task_id"].as_str().expect("task_id").to_string();
    for id in [task.as_str(), "plain-1"] {
        let path = format!("{EXPAND}/{id}");
        let (status, found) =
            send_json(client.get(server.url(&path)).bearer_auth(&plaintext)).await;
        assert_eq!((status, &found["data"]["task_id"]), (StatusCode::OK, &json!(task)), "{found}");
    }
    // The JWT of the same key sees the same task.
    let (status, listed) =
        send_json(client.get(server.url(EXPAND)).bearer_auth(token(&server, key.id))).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed["data"][0]["task_id"], task.as_str());
    let after = server.shared.repo.key(key.id).await.expect("repo").expect("key");
    assert_eq!(after.balance, Some(9), "charged to the key");

    // An unknown key, and a revoked one, are refused in Kling's envelope.
    let list = server.url(EXPAND);
    let unknown = send_json(client.get(&list).bearer_auth("bd_notakeyofthisserver")).await;
    assert!(unknown.1["request_id"].is_string(), "{}", unknown.1);
    assert_eq!(code(unknown), (401, Some(1000)));
    server.shared.repo.revoke_key(key.id, now_ms()).await.expect("revoke");
    assert_eq!(code(send_json(client.get(&list).bearer_auth(&plaintext)).await), (401, Some(1000)));
    assert_eq!(
        code(send_json(client.get(&list).bearer_auth(token(&server, key.id))).await),
        (401, Some(1000))
    );
}
