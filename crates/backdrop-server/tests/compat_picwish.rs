//! The PicWish surface as a PicWish client uses it: the real router on loopback, a
//! plain HTTP client, the vendor's paths, `X-API-KEY` and envelope.

mod common;

use base64::Engine as _;
use common::{
    cutout, download, download_image, no_rate_limit, ok_json, png, poll_json, send_json, start,
    Deadline,
};
use image::{Rgba, RgbaImage};
use reqwest::multipart::{Form, Part};
use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;

const PATH: &str = "/api/tasks/visual/background";

fn file_form(bytes: Vec<u8>) -> Form {
    Form::new().part("image_file", Part::bytes(bytes).file_name("cutout.png"))
}

async fn create(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    form: Form,
) -> (StatusCode, Value) {
    send_json(client.post(format!("{base}{PATH}")).header("X-API-KEY", key).multipart(form)).await
}

/// Asks for a task as a PicWish client does: the status and the envelope.
async fn query(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    task_id: &str,
) -> (StatusCode, Value) {
    send_json(client.get(format!("{base}{PATH}/{task_id}")).header("X-API-KEY", key)).await
}

async fn poll_done(client: &reqwest::Client, base: &str, key: &str, task_id: &str) -> Value {
    let url = format!("{base}{PATH}/{task_id}");
    let body = poll_json(
        Duration::from_secs(120),
        || client.get(&url).header("X-API-KEY", key),
        |body| {
            assert_eq!(body["status"], 200);
            let state = body["data"]["state"].as_i64().expect("state");
            let done = state == 1 || state < 0;
            assert!(done || [0, 2, 3, 4, 5, 6].contains(&state), "{body}");
            done
        },
    )
    .await;
    body["data"].clone()
}

#[tokio::test]
async fn create_poll_download_two_images() {
    let (server, clock) = common::start_with_clock(true, |_| {}).await;
    let key = server.key(Some(100)).await;
    let client = reqwest::Client::new();

    // The documented flow: a file and a scene_type, default batch_size (2).
    let (status, body) =
        create(&client, &server.base, &key, file_form(cutout(300, 260)).text("scene_type", "105"))
            .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!((body["status"].as_i64(), body["message"].as_str()), (Some(200), Some("success")));
    let task_id = body["data"]["task_id"].as_str().expect("task_id").to_string();
    let data = poll_done(&client, &server.base, &key, &task_id).await;
    assert_eq!(data["state"], 1, "{data}");
    assert_eq!(data["progress"], 100);
    assert_eq!(data["return_type"], 1);
    assert_eq!(data["task_id"], task_id.as_str());
    for field in ["created_at", "processed_at", "completed_at"] {
        let secs: i64 = data[field].as_str().expect(field).parse().expect("unix seconds");
        assert!(secs > 1_600_000_000, "{field}");
    }
    assert!(data["time_elapsed"].as_i64().expect("time_elapsed") >= 0);
    for field in ["image_1", "image_2"] {
        let img = download_image(&client, data[field].as_str().expect(field)).await;
        assert_eq!((img.width(), img.height()), (300, 260));
    }
    assert!(data.get("image_3").is_none());

    // A prompt, one image, base64 results, and an input wider than 1024: the output is
    // scaled to 1024 wide keeping the aspect ratio.
    clock.advance(Duration::from_millis(600));
    let form = file_form(cutout(1100, 550))
        .text("prompt", "a sunny beach")
        .text("batch_size", "1")
        .text("return_type", "2");
    let (status, body) = create(&client, &server.base, &key, form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let data =
        poll_done(&client, &server.base, &key, body["data"]["task_id"].as_str().expect("id")).await;
    assert_eq!(data["state"], 1, "{data}");
    assert_eq!(data["return_type"], 2);
    assert!(data.get("image_2").is_none());
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data["image_1"].as_str().expect("base64"))
        .expect("valid base64");
    let img = image::load_from_memory(&bytes).expect("image");
    assert!(img.width() <= 1024 && img.height() <= 1024);
    assert_eq!((img.width(), img.height()), (1024, 512));

    // sync=1 answers with the finished task.
    clock.advance(Duration::from_millis(600));
    let form = file_form(cutout(256, 256)).text("scene_type", "112").text("sync", "1");
    let (status, body) = create(&client, &server.base, &key, form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["state"], 1, "{body}");
    assert!(
        body["data"]["image_1"].as_str().is_some() && body["data"]["image_2"].as_str().is_some()
    );

    // Credits: 6 (2 images) + 3 (1 image) + 6.
    let account = server.get_json(&client, &key, "/v1/account").await;
    assert_eq!(account["balance"], 85, "{account}");

    // The scene_type list names Backdrop's templates.
    let list = ok_json(client.get(server.url(&format!("{PATH}/scene_types")))).await;
    let list = list["data"].as_array().expect("list");
    assert!(list.iter().any(|s| s["scene_type"] == 105 && s["template"] == "pastel-blue"));
    assert_eq!(list.len(), backdrop_core::SCENES.len());
}

#[tokio::test]
async fn bad_requests_get_picwish_statuses_and_states() {
    let server = start(false, no_rate_limit).await;
    let key = server.key(None).await;
    let poor = server.key(Some(1)).await;
    let other = server.key(None).await;
    let client = reqwest::Client::new();
    let base = server.base.clone();
    let good = || cutout(300, 260);
    let mut jpeg = Vec::new();
    image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(300, 300, image::Rgb([1, 2, 3])))
        .write_to(&mut std::io::Cursor::new(&mut jpeg), image::ImageFormat::Jpeg)
        .expect("jpeg");
    let opaque = png(&RgbaImage::from_pixel(300, 300, Rgba([1, 2, 3, 255])));
    let mut huge = b"\x89PNG\r\n\x1a\n".to_vec();
    huge.resize(21 * 1024 * 1024, 0);

    // Auth.
    let anonymous = client.post(format!("{base}{PATH}"));
    let (status, body) =
        send_json(anonymous.multipart(file_form(good()).text("scene_type", "101"))).await;
    assert_eq!((status, body["status"].as_i64()), (StatusCode::UNAUTHORIZED, Some(401)));
    let (status, body) =
        create(&client, &base, "bd_wrong", file_form(good()).text("scene_type", "101")).await;
    assert_eq!((status, body["status"].as_i64()), (StatusCode::UNAUTHORIZED, Some(401)));

    let cases: Vec<(&str, Form, StatusCode, Option<i64>)> = vec![
        ("no image", Form::new().text("scene_type", "101"), StatusCode::BAD_REQUEST, None),
        (
            "both images",
            file_form(good())
                .text("image_url", "https://example.com/a.png")
                .text("scene_type", "101"),
            StatusCode::BAD_REQUEST,
            None,
        ),
        (
            "batch_size 3",
            file_form(good()).text("scene_type", "101").text("batch_size", "3"),
            StatusCode::BAD_REQUEST,
            None,
        ),
        (
            "batch_size 0",
            file_form(good()).text("scene_type", "101").text("batch_size", "0"),
            StatusCode::BAD_REQUEST,
            None,
        ),
        (
            "batch_size text",
            file_form(good()).text("scene_type", "101").text("batch_size", "two"),
            StatusCode::BAD_REQUEST,
            None,
        ),
        (
            "return_type 3",
            file_form(good()).text("scene_type", "101").text("return_type", "3"),
            StatusCode::BAD_REQUEST,
            None,
        ),
        ("no prompt or scene", file_form(good()), StatusCode::BAD_REQUEST, Some(-17)),
        (
            "prompt and scene",
            file_form(good()).text("scene_type", "101").text("prompt", "x"),
            StatusCode::BAD_REQUEST,
            Some(-17),
        ),
        (
            "prompt too long",
            file_form(good()).text("prompt", "x".repeat(1025)),
            StatusCode::BAD_REQUEST,
            Some(-17),
        ),
        (
            "unknown scene",
            file_form(good()).text("scene_type", "999"),
            StatusCode::BAD_REQUEST,
            Some(-17),
        ),
        ("jpeg", file_form(jpeg).text("scene_type", "101"), StatusCode::BAD_REQUEST, Some(-7)),
        (
            "opaque png",
            file_form(opaque).text("scene_type", "101"),
            StatusCode::BAD_REQUEST,
            Some(-7),
        ),
        (
            "not an image",
            file_form(b"\x89PNG\r\n\x1a\nnot really".to_vec()).text("scene_type", "101"),
            StatusCode::BAD_REQUEST,
            Some(-7),
        ),
        (
            "under 256",
            file_form(cutout(255, 300)).text("scene_type", "101"),
            StatusCode::BAD_REQUEST,
            Some(-7),
        ),
        (
            "over 4096",
            file_form(cutout(4100, 256)).text("scene_type", "101"),
            StatusCode::PAYLOAD_TOO_LARGE,
            Some(-5),
        ),
        (
            "over 20 MB",
            file_form(huge).text("scene_type", "101"),
            StatusCode::PAYLOAD_TOO_LARGE,
            Some(-5),
        ),
        (
            "download fails",
            Form::new()
                .text("image_url", "http://127.0.0.1:9/cutout.png")
                .text("scene_type", "101"),
            StatusCode::BAD_REQUEST,
            Some(-3),
        ),
    ];
    for (what, form, status, state) in cases {
        let (got, body) = create(&client, &base, &key, form).await;
        assert_eq!(got, status, "{what}: {body}");
        assert_eq!(body["status"].as_u64(), Some(u64::from(status.as_u16())), "{what}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}");
        assert_eq!(body["data"]["state"].as_i64(), state, "{what}: {body}");
    }

    // Neither multipart nor a form.
    let keyed = || client.post(format!("{base}{PATH}")).header("X-API-KEY", &key);
    let r = keyed().header("content-type", "text/plain").body("hello").send().await.expect("post");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // No credits left: 401 (the service is not enabled for the key).
    let (status, body) =
        create(&client, &base, &poor, file_form(good()).text("scene_type", "101")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    // A url-encoded form is read too (its download is refused here: loopback).
    let form = [("image_url", "http://127.0.0.1:9/a.png"), ("prompt", "a beach")];
    let (status, body) = send_json(keyed().form(&form)).await;
    assert_eq!((status, body["data"]["state"].as_i64()), (StatusCode::BAD_REQUEST, Some(-3)));

    // Queries: unknown id, another key's task, no key.
    let (status, body) =
        create(&client, &base, &key, file_form(good()).text("scene_type", "101")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let task_id = body["data"]["task_id"].as_str().expect("id").to_string();
    let (_, queued) = query(&client, &base, &key, &task_id).await;
    assert_eq!(queued["data"]["state"], 0, "{queued}");
    assert_eq!(queued["data"]["progress"], 0);
    for (id, key, status) in [
        ("nope", key.as_str(), StatusCode::NOT_FOUND),
        (task_id.as_str(), other.as_str(), StatusCode::NOT_FOUND),
        (task_id.as_str(), "", StatusCode::UNAUTHORIZED),
    ] {
        let (got, body) = query(&client, &base, key, id).await;
        assert_eq!(got, status);
        assert_eq!(body["status"], status.as_u16());
    }
}

#[tokio::test]
async fn qps_limit_is_429() {
    let server = start(false, |_| {}).await;
    let key = server.key(None).await;
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let (status, body) = create(
            &client,
            &server.base,
            &key,
            file_form(cutout(256, 256)).text("scene_type", "101"),
        )
        .await;
        assert_eq!(body["status"], status.as_u16());
        statuses.push(status);
    }
    assert_eq!(&statuses[..2], &[StatusCode::OK, StatusCode::OK], "default QPS 2");
    assert!(statuses[2..].contains(&StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
}

#[tokio::test]
async fn sync_waits_are_capped_per_key() {
    // No worker: a sync=1 request waits for as long as the test lets it.
    let server = start(false, |c| {
        c.limits.max_key_streams = 1;
        no_rate_limit(c);
    })
    .await;
    let key = server.key(None).await;
    let client = reqwest::Client::new();
    let waiting = {
        let (client, base, key) = (client.clone(), server.base.clone(), key.clone());
        tokio::spawn(async move {
            let form = file_form(cutout(256, 256)).text("scene_type", "101").text("sync", "1");
            create(&client, &base, &key, form).await
        })
    };
    // Wait until the first request holds its slot (its task exists).
    let deadline = Deadline::after(Duration::from_secs(10));
    let id = key_id(&server, &key).await;
    while server.shared.streams.held(&id) == 0 {
        deadline.again("the sync=1 request never started waiting").await;
    }
    let form = file_form(cutout(256, 256)).text("scene_type", "101").text("sync", "1");
    let (status, body) = create(&client, &server.base, &key, form).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["status"], 429, "{body}");
    // Asynchronous submits are not waits: still accepted.
    let (status, _) =
        create(&client, &server.base, &key, file_form(cutout(256, 256)).text("scene_type", "101"))
            .await;
    assert_eq!(status, StatusCode::OK);
    waiting.abort();
}

async fn key_id(server: &common::TestServer, key: &str) -> String {
    let hash = backdrop_server::auth::hash_key(key);
    let found = server.shared.repo.key_by_hash(&hash).await.expect("lookup").expect("key");
    found.id.to_string()
}

#[tokio::test]
async fn image_url_in_a_plain_form() {
    let server = start(true, |c| c.fetch.allow = vec!["127.0.0.1/32".into()]).await;
    let key = server.key(None).await;
    let client = reqwest::Client::new();
    let url = common::serve_png(cutout(280, 300)).await;
    let form = [("image_url", url.as_str()), ("prompt", "a marble table"), ("batch_size", "1")];
    let body = ok_json(client.post(server.url(PATH)).header("X-API-KEY", &key).form(&form)).await;
    let data =
        poll_done(&client, &server.base, &key, body["data"]["task_id"].as_str().expect("id")).await;
    assert_eq!(data["state"], 1, "{data}");
    download(&client, data["image_1"].as_str().expect("url")).await;
    assert!(data.get("image_2").is_none());
}

#[tokio::test]
async fn expired_results_keep_their_image_keys_as_null() {
    // Results live 0 s: due for the sweep as soon as they are made.
    let server = start(true, |c| {
        c.results.ttl_secs = 0;
        no_rate_limit(c);
    })
    .await;
    let key = server.key(None).await;
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for return_type in ["1", "2"] {
        let form =
            file_form(cutout(256, 256)).text("scene_type", "101").text("return_type", return_type);
        let (status, body) = create(&client, &server.base, &key, form).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let task_id = body["data"]["task_id"].as_str().expect("task_id").to_string();
        let data = poll_done(&client, &server.base, &key, &task_id).await;
        assert_eq!(data["state"], 1, "{data}");
        assert!(data["image_1"].is_string() && data["image_2"].is_string(), "{data}");
        tasks.push(task_id);
    }

    assert_eq!(backdrop_server::sweeper::sweep_once(&server.shared).await, 2);
    for task_id in &tasks {
        let (status, body) = query(&client, &server.base, &key, task_id).await;
        assert_eq!(status, StatusCode::OK);
        let data = &body["data"];
        assert_eq!(data["state"], 1, "still done: {body}");
        for field in ["image_1", "image_2"] {
            assert!(data.get(field).is_some_and(Value::is_null), "{field}: {body}");
        }
        assert!(data.get("image_3").is_none(), "{body}");
    }
}

#[tokio::test]
async fn a_large_cutout_is_composited_at_the_delivered_size() {
    let server = start(true, |_| {}).await;
    let key = server.key(None).await;
    let client = reqwest::Client::new();
    // A textured product: resampling the finished image would change its pixels.
    let source = RgbaImage::from_fn(1600, 1200, |x, y| {
        let (dx, dy) = (x as f32 - 800.0, y as f32 - 600.0);
        if dx * dx / (500.0 * 500.0) + dy * dy / (400.0 * 400.0) < 1.0 {
            Rgba([(x * 7 % 256) as u8, (y * 13 % 256) as u8, ((x ^ y) % 256) as u8, 255])
        } else {
            Rgba([0, 0, 0, 0])
        }
    });
    let form = file_form(png(&source))
        .text("prompt", "a marble counter")
        .text("batch_size", "1")
        .text("return_type", "2");
    let (status, body) = create(&client, &server.base, &key, form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let task_id = body["data"]["task_id"].as_str().expect("id");
    let data = poll_done(&client, &server.base, &key, task_id).await;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data["image_1"].as_str().expect("base64"))
        .expect("valid base64");
    let result = image::load_from_memory(&bytes).expect("image").to_rgba8();
    assert_eq!(result.dimensions(), (1024, 768), "at most 1024, aspect kept");
    // The product is the cut-out resampled once, to the delivered size, and composited
    // exactly: every fully opaque pixel of it is in the result unchanged.
    let size = backdrop_core::OutputSize { width: 1024, height: 768 };
    let expected = backdrop_imaging::canvas::background_canvas(
        &source,
        Some(size),
        backdrop_core::ResizeMode::default(),
    );
    let mut opaque = 0;
    for (x, y, pixel) in expected.enumerate_pixels().filter(|(_, _, p)| p[3] == 255) {
        opaque += 1;
        assert_eq!(result.get_pixel(x, y).0[..3], pixel.0[..3], "product pixel ({x}, {y})");
    }
    assert!(opaque > 200_000, "{opaque} opaque pixels");
}
