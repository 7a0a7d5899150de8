//! The native API as a client uses it: the real router served on loopback, a real
//! SQLite database and blob folder in a temp dir, real workers and callback delivery,
//! and a plain HTTP client.

mod common;

use backdrop_server::{auth, callbacks, now_ms};
use base64::Engine as _;
use common::{
    b64, cutout_b64, download, ok_json, photo_png, png, send_json, serve, start, start_with_clock,
};
use image::{Rgba, RgbaImage};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[tokio::test]
async fn submit_poll_download_both_jobs() {
    let server = start(true, |_| {}).await;
    let key = server.key(Some(100)).await;
    let client = reqwest::Client::new();

    let request = json!({"image_base64": cutout_b64(), "prompt": "dark luxury", "n": 2, "seed": 9});
    let (status, accepted) = server.post_json(&client, &key, "/v1/backgrounds", &request).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    assert_eq!(accepted["state"], "queued");
    let task = server.wait_terminal(&client, &key, accepted["id"].as_str().expect("id")).await;
    assert_eq!(task["state"], "succeeded", "{task}");
    assert_eq!(task["engine"], "studio");
    assert_eq!(task["notes"]["scene"], "dark-spotlight");
    assert_eq!(task["images"].as_array().map(Vec::len), Some(2));
    assert_eq!(task["progress"]["percent"], 100);
    for image in task["images"].as_array().expect("images") {
        for field in ["url", "preview_url"] {
            let (headers, bytes) = download(&client, image[field].as_str().expect("url")).await;
            assert_eq!(headers["content-type"], "image/png");
            let decoded = image::load_from_memory(&bytes).expect("an image");
            assert_eq!(decoded.width(), 96);
        }
    }

    // Multipart upload of an expansion with a watermark.
    let form = reqwest::multipart::Form::new()
        .part("image", reqwest::multipart::Part::bytes(photo_png()).file_name("photo.png"))
        .text("left", "0.5")
        .text("up", "0.25")
        .text("n", "1")
        .text("seed", "4")
        .text("watermark", "true");
    let expansion = client.post(server.url("/v1/expansions")).bearer_auth(&key).multipart(form);
    let (status, accepted) = send_json(expansion).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let task = server.wait_terminal(&client, &key, accepted["id"].as_str().expect("id")).await;
    assert_eq!(task["state"], "succeeded", "{task}");
    assert_eq!(task["engine"], "patch");
    assert_eq!((task["width"].as_u64(), task["height"].as_u64()), (Some(96), Some(60)));
    let marked = task["images"][0]["watermarked_url"].as_str().expect("watermarked variant");
    download(&client, marked).await;

    // Credits: 2 + 1 images charged, nothing left reserved.
    let account = server.get_json(&client, &key, "/v1/account").await;
    assert_eq!(account["balance"], 97, "{account}");
}

#[tokio::test]
async fn cancel_paging_and_idempotency() {
    let (server, clock) = start_with_clock(false, |_| {}).await;
    let key = server.key(Some(50)).await;
    let client = reqwest::Client::new();
    let mut ids = Vec::new();
    for i in 0..5 {
        let body = json!({"image_base64": cutout_b64(), "scene": "concrete", "seed": i});
        ids.push(server.submit(&client, &key, "/v1/backgrounds", &body).await);
        clock.advance(Duration::from_millis(600)); // stay under 2 submits/s
    }
    // Queue positions follow submission order.
    let last = server.get_json(&client, &key, &format!("/v1/tasks/{}", ids[4])).await;
    assert_eq!(last["queue_position"], 4);

    // Pages of 2, newest first, through the cursor.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/v1/tasks?limit=2&state=queued".to_string();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = server.get_json(&client, &key, &path).await;
        for t in page["tasks"].as_array().expect("tasks") {
            seen.push(t["id"].as_str().expect("id").to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let mut expected = ids.clone();
    expected.reverse();
    assert_eq!(seen, expected);

    // Cancel a queued task: it ends at once and its credit comes back.
    let cancel = || client.delete(server.url(&format!("/v1/tasks/{}", ids[0]))).bearer_auth(&key);
    let canceled = ok_json(cancel()).await;
    assert_eq!(canceled["state"], "canceled");
    let again = cancel().send().await.expect("delete");
    assert_eq!(again.status(), StatusCode::CONFLICT);
    let account = server.get_json(&client, &key, "/v1/account").await;
    assert_eq!(account["balance"], 46, "5 reserved, 1 refunded: {account}");

    // The same Idempotency-Key returns the same task and reserves nothing more.
    let idempotent = || {
        client
            .post(server.url("/v1/backgrounds"))
            .bearer_auth(&key)
            .header("Idempotency-Key", "order-17")
            .json(&json!({"image_base64": cutout_b64(), "prompt": "pink"}))
    };
    clock.advance(Duration::from_millis(600));
    let (status, first) = send_json(idempotent()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    clock.advance(Duration::from_millis(600));
    let second = ok_json(idempotent()).await;
    assert_eq!(first["id"], second["id"]);
    assert_eq!(second["created"], false);
    let account = server.get_json(&client, &key, "/v1/account").await;
    assert_eq!(account["balance"], 45);
}

#[tokio::test]
async fn auth_limits_and_bad_bodies() {
    let (server, clock) = start_with_clock(false, |c| {
        c.limits.max_queued = 2;
        c.limits.max_body_bytes = 256 * 1024;
        c.limits.submits_per_second = 1.0;
        c.limits.submit_burst = 1;
    })
    .await;
    let key = server.key(None).await;
    let other = server.key(None).await;
    let client = reqwest::Client::new();
    let body = json!({"image_base64": cutout_b64(), "prompt": "white"});

    let submit = || client.post(server.url("/v1/backgrounds"));
    let (status, err) = send_json(submit().json(&body)).await;
    assert_eq!((status, err["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")));
    let (status, _) = send_json(submit().header("X-API-Key", "bd_wrong").json(&body)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let id = server.submit(&client, &key, "/v1/backgrounds", &body).await;
    // Another key may not see it.
    let (status, err) =
        send_json(client.get(server.url(&format!("/v1/tasks/{id}"))).bearer_auth(&other)).await;
    assert_eq!((status, err["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")));

    // Rate: 1 per second with a burst of 1.
    let r = submit().bearer_auth(&key).json(&body).send().await.expect("post");
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(r.json::<Value>().await.expect("json")["code"], "rate_limited");

    // Queue: at most 2 waiting for the studio engine (no worker runs here).
    server.submit(&client, &other, "/v1/backgrounds", &body).await;
    clock.advance(Duration::from_millis(1100));
    let (status, err) = server.post_json(&client, &other, "/v1/backgrounds", &body).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{err}");
    assert_eq!(err["code"], "queue_full");

    // 413, 400 malformed JSON, 415 wrong type, 400 validation with the core's code.
    clock.advance(Duration::from_millis(1100));
    let big = json!({"image_base64": "A".repeat(400 * 1024), "prompt": "x"});
    let (status, err) = server.post_json(&client, &key, "/v1/backgrounds", &big).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("body_too_large"))
    );
    // The key and its rate are checked from the headers, before the body is read: every
    // submit, malformed or not, takes a token.
    let typed = |kind: &str, body: &'static str| {
        submit().bearer_auth(&key).header("content-type", kind).body(body)
    };
    clock.advance(Duration::from_millis(1100));
    let (status, err) = send_json(typed("application/json", "{\"prompt\": ")).await;
    assert_eq!((status, err["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_json")));
    clock.advance(Duration::from_millis(1100));
    let r = typed("text/plain", "hi").send().await.expect("post");
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    clock.advance(Duration::from_millis(1100));
    let (status, err) = server
        .post_json(&client, &key, "/v1/expansions", &json!({"image_base64": "x", "left": 2.5}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["code"], "ratio_out_of_range");
    clock.advance(Duration::from_millis(1100));
    let request = json!({"image_base64": cutout_b64(), "prompt": "x", "n": 17});
    let (status, err) = server.post_json(&client, &key, "/v1/backgrounds", &request).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("image_count_out_of_range"))
    );
    let opaque = b64(&png(&RgbaImage::from_pixel(32, 32, Rgba([1, 2, 3, 255]))));
    clock.advance(Duration::from_millis(1100));
    let request = json!({"image_base64": opaque, "prompt": "x"});
    let (status, err) = server.post_json(&client, &key, "/v1/backgrounds", &request).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("fully_opaque")),
        "{err}"
    );
    let r = client.get(server.url("/v1/nowhere")).send().await.expect("get");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn credits_are_refused_when_exhausted() {
    let server = start(false, |_| {}).await;
    let key = server.key(Some(1)).await;
    let client = reqwest::Client::new();
    let request = json!({"image_base64": cutout_b64(), "prompt": "x", "n": 2});
    let (status, err) = server.post_json(&client, &key, "/v1/backgrounds", &request).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(err["code"], "insufficient_credits");
    assert!(err["message"]
        .as_str()
        .expect("message")
        .contains("costs 2 credits; the balance is 1"));
}

#[tokio::test]
async fn a_task_over_the_memory_budget_is_refused_at_submit() {
    // 1024 x 1024 images: nine share a batch, so sixteen of them need more than the
    // budget and two do not.
    let server = start(true, |c| c.limits.max_task_memory_bytes = 128 * 1024 * 1024).await;
    let key = server.key(Some(100)).await;
    let client = reqwest::Client::new();
    let job = |n: u32| json!({"image_base64": cutout_b64(), "scene": "concrete", "width": 1024, "height": 1024, "n": n});
    let (status, err) = server.post_json(&client, &key, "/v1/backgrounds", &job(16)).await;
    assert_eq!((status, err["code"].as_str()), (StatusCode::BAD_REQUEST, Some("task_too_large")));
    let message = err["message"].as_str().expect("message");
    assert!(
        message.contains("128.0 MiB") && message.contains("max_task_memory_bytes"),
        "the message names the limit: {message}"
    );
    // Refused before anything exists: no task, no credits reserved.
    let listed = server.get_json(&client, &key, "/v1/tasks").await;
    assert_eq!(listed["tasks"].as_array().map(Vec::len), Some(0), "{listed}");
    let before = server.get_json(&client, &key, "/v1/account").await;
    assert_eq!(before["balance"], 100, "{before}");
    let ledger = before["ledger"].as_array().expect("ledger");
    assert!(ledger.iter().all(|e| e["task"].is_null()), "only the grant: {before}");

    // Under the budget, the same image is accepted and made.
    let id = server.submit(&client, &key, "/v1/backgrounds", &job(2)).await;
    let task = server.wait_terminal(&client, &key, &id).await;
    assert_eq!(task["state"], "succeeded", "{task}");
    assert_eq!(task["images"].as_array().map(Vec::len), Some(2));
    assert_eq!(server.get_json(&client, &key, "/v1/account").await["balance"], 98);
}

#[tokio::test]
async fn signed_urls_refuse_tampering_and_expiry() {
    let server = start(true, |_| {}).await;
    let key = server.key(None).await;
    let client = reqwest::Client::new();
    let body = json!({"image_base64": cutout_b64(), "scene": "pastel-mint"});
    let id = server.submit(&client, &key, "/v1/backgrounds", &body).await;
    let task = server.wait_terminal(&client, &key, &id).await;
    let url = task["images"][0]["url"].as_str().expect("url").to_string();
    assert_eq!(client.get(&url).send().await.expect("get").status(), StatusCode::OK);

    let tampered_sig = format!("{}0", &url[..url.len() - 1]).replace("sig=", "sig=f");
    assert_eq!(
        client.get(&tampered_sig).send().await.expect("get").status(),
        StatusCode::FORBIDDEN
    );
    let other_file = url.replace("/1.png", "/1.preview.png");
    assert_eq!(client.get(&other_file).send().await.expect("get").status(), StatusCode::FORBIDDEN);
    let later = url.replacen("exp=", "exp=9", 1);
    assert_eq!(client.get(&later).send().await.expect("get").status(), StatusCode::FORBIDDEN);
    let unsigned = url.split('?').next().expect("path").to_string();
    assert_eq!(client.get(&unsigned).send().await.expect("get").status(), StatusCode::FORBIDDEN);

    // A correctly signed URL whose expiry has passed is gone, and shows no file.
    let blob = url.split("/files/").nth(1).and_then(|s| s.split('?').next()).expect("blob key");
    let past = now_ms() / 1000 - 10;
    let expired = format!("{}/files/{blob}?{}", server.base, server.shared.signer.sign(blob, past));
    let r = client.get(&expired).send().await.expect("get");
    assert_eq!(r.status(), StatusCode::GONE);
    assert_eq!(r.json::<Value>().await.expect("json")["code"], "link_expired");
}

/// A loopback HTTP fixture: serves a PNG at /cutout.png and redirects /to?u=URL.
async fn fixture_server() -> String {
    use axum::extract::Query;
    use axum::response::{IntoResponse, Redirect};
    use std::collections::HashMap;
    let bytes = base64::engine::general_purpose::STANDARD.decode(cutout_b64()).expect("b64");
    let app = axum::Router::new()
        .route(
            "/cutout.png",
            axum::routing::get(move || async move { bytes.clone().into_response() }),
        )
        .route(
            "/to",
            axum::routing::get(|Query(q): Query<HashMap<String, String>>| async move {
                Redirect::temporary(&q["u"])
            }),
        );
    format!("http://{}", serve(app).await)
}

#[tokio::test]
async fn input_urls_refuse_internal_destinations() {
    let fixture = fixture_server().await;
    let port = fixture.rsplit(':').next().expect("port").to_string();
    let strict = start(false, |c| {
        c.limits.submits_per_second = 100.0;
        c.limits.submit_burst = 100;
    })
    .await;
    let key = strict.key(None).await;
    let client = reqwest::Client::new();
    for url in [
        format!("http://127.0.0.1:{port}/cutout.png"),
        "http://10.1.2.3/cutout.png".to_string(),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        format!("http://[::1]:{port}/cutout.png"),
        format!("http://localhost:{port}/cutout.png"),
    ] {
        let (status, err) = strict
            .post_json(&client, &key, "/v1/backgrounds", &json!({"image_url": url, "prompt": "x"}))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {err}");
        assert_eq!(err["code"], "url_refused", "{url}: {err}");
    }

    // With the fixture allowed, the image is fetched; a redirect from it to an internal
    // address is still refused.
    let allowed = start(false, |c| {
        c.fetch.allow = vec!["127.0.0.1/32".into()];
        c.limits.submits_per_second = 100.0;
        c.limits.submit_burst = 100;
    })
    .await;
    let key = allowed.key(None).await;
    let request = json!({"image_url": format!("{fixture}/cutout.png"), "prompt": "x"});
    let (status, body) = allowed.post_json(&client, &key, "/v1/backgrounds", &request).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    for target in
        ["http://169.254.169.254/latest/meta-data/", "http://10.0.0.7/x.png", "http://[::1]/x.png"]
    {
        let url = format!("{fixture}/to?u={target}");
        let (status, err) = allowed
            .post_json(&client, &key, "/v1/backgrounds", &json!({"image_url": url, "prompt": "x"}))
            .await;
        assert_eq!(
            (status, err["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("url_refused")),
            "{target}: {err}"
        );
    }
}

#[tokio::test]
async fn callbacks_are_retried_until_delivered_and_signed() {
    use axum::http::HeaderMap;
    let calls: Arc<Mutex<Vec<(u16, String, String)>>> = Arc::new(Mutex::new(Vec::new()));
    let failures_left = Arc::new(Mutex::new(2u32));
    let (c2, f2) = (Arc::clone(&calls), Arc::clone(&failures_left));
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let (calls, failures_left) = (Arc::clone(&c2), Arc::clone(&f2));
            async move {
                let mut left = failures_left.lock().expect("lock");
                let status = if *left > 0 {
                    *left -= 1;
                    500
                } else {
                    200
                };
                let signature = headers
                    .get("backdrop-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                calls.lock().expect("lock").push((status, signature, body));
                axum::http::StatusCode::from_u16(status).expect("status")
            }
        }),
    );
    let hook = format!("http://{}/hook", serve(receiver).await);

    let server = start(true, |c| c.fetch.allow = vec!["127.0.0.1/32".into()]).await;
    let key = server.key(None).await;
    let client = reqwest::Client::new();
    let body = json!({"image_base64": cutout_b64(), "prompt": "x", "callback_url": hook});
    let id = server.submit(&client, &key, "/v1/backgrounds", &body).await;
    let task = server.wait_terminal(&client, &key, &id).await;
    assert_eq!(task["state"], "succeeded");

    // Every state change is delivered, the first after two failures.
    let log = server
        .wait_deliveries(&client, &key, &id, Duration::from_secs(30), |deliveries| {
            let delivered: Vec<&str> = deliveries
                .iter()
                .filter(|d| d["delivered"] == true)
                .filter_map(|d| d["state"].as_str())
                .collect();
            ["queued", "running", "succeeded"].iter().all(|s| delivered.contains(s))
        })
        .await;
    let failed = log.iter().filter(|d| d["delivered"] == false && d["status"] == 500).count();
    assert_eq!(failed, 2, "{log:?}");
    let calls = calls.lock().expect("lock").clone();
    // Retries resend the same body (one body per state change); every request is signed
    // with the key's hash.
    let mut bodies_by_state: std::collections::HashMap<String, Vec<String>> = Default::default();
    for (_, _, body) in &calls {
        let state = serde_json::from_str::<Value>(body).expect("json")["state"]
            .as_str()
            .expect("state")
            .to_string();
        bodies_by_state.entry(state).or_default().push(body.clone());
    }
    assert_eq!(calls.len(), 5, "3 state changes, 2 failed attempts");
    for bodies in bodies_by_state.values() {
        assert!(bodies.iter().all(|b| b == &bodies[0]), "{bodies:?}");
    }
    let secret = auth::hash_key(&key);
    for (_, signature, body) in &calls {
        let t: i64 = signature
            .split(',')
            .next()
            .and_then(|p| p.strip_prefix("t="))
            .and_then(|t| t.parse().ok())
            .expect("t");
        assert_eq!(signature, &callbacks::sign(&secret, t, body));
    }
    let last: Value = serde_json::from_str(&bodies_by_state["succeeded"][0]).expect("json body");
    assert_eq!(last["state"], "succeeded");
    assert!(last["images"][0]["url"].is_string());
}

#[tokio::test]
async fn health_metrics_openapi_scenes_and_events() {
    let server = start(true, |_| {}).await;
    let client = reqwest::Client::new();
    assert_eq!(
        client.get(server.url("/healthz")).send().await.expect("get").status(),
        StatusCode::OK
    );
    assert_eq!(
        client.get(server.url("/readyz")).send().await.expect("get").status(),
        StatusCode::OK
    );
    let spec = ok_json(client.get(server.url("/openapi.json"))).await;
    assert!(spec["paths"]["/v1/backgrounds"]["post"].is_object(), "{spec}");
    assert!(spec["components"]["schemas"]["TaskView"].is_object());
    let scenes = ok_json(client.get(server.url("/v1/scenes"))).await;
    assert!(scenes["scenes"].as_array().map_or(0, Vec::len) >= 12);

    let key = server.key(None).await;
    let body = json!({"image_base64": b64(&photo_png()), "right": 0.5});
    let id = server.submit(&client, &key, "/v1/expansions", &body).await;
    let events = client
        .get(server.url(&format!("/v1/tasks/{id}/events")))
        .bearer_auth(&key)
        .send()
        .await
        .expect("sse");
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let text = tokio::time::timeout(Duration::from_secs(60), events.text())
        .await
        .expect("stream ends")
        .expect("text");
    assert!(text.contains("event: done"), "{text}");
    assert!(text.contains("\"state\":\"succeeded\""), "{text}");

    let metrics =
        client.get(server.url("/metrics")).send().await.expect("get").text().await.expect("text");
    assert!(
        metrics.contains("backdrop_tasks_finished_total{engine=\"patch\",outcome=\"succeeded\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("backdrop_submits_total{surface=\"native\",result=\"accepted\"} 1"),
        "{metrics}"
    );
}

/// Readiness names each dependency and keeps error details (paths, hosts) to the log.
#[tokio::test]
async fn readiness_reports_each_dependency_without_its_error_text() {
    let server = start(false, |_| {}).await;
    let client = reqwest::Client::new();
    let ready = ok_json(client.get(server.url("/readyz"))).await;
    assert_eq!((ready["database"].as_str(), ready["storage"].as_str()), (Some("ok"), Some("ok")));

    // The blob folder replaced by a file: the store can no longer answer.
    let blobs = server.shared.config.server.data_dir.join("blobs");
    std::fs::remove_dir_all(&blobs).expect("removes the blob folder");
    std::fs::write(&blobs, b"not a folder").expect("a file in its place");
    let resp = client.get(server.url("/readyz")).send().await.expect("get");
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = resp.text().await.expect("body");
    let ready: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(ready["code"], "not_ready");
    assert_eq!(
        (ready["database"].as_str(), ready["storage"].as_str()),
        (Some("ok"), Some("unavailable"))
    );
    let data_dir = server.shared.config.server.data_dir.to_string_lossy().to_string();
    assert!(!body.contains(&data_dir) && !body.contains("blobs"), "leaks details: {body}");
}

#[tokio::test]
async fn the_playground_is_served_with_its_policy_and_caching() {
    let server = start(false, |_| {}).await;
    let client = reqwest::Client::new();

    let page = client.get(server.url("/")).send().await.expect("get /");
    assert_eq!(page.status(), StatusCode::OK);
    let headers = page.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["cache-control"], "no-cache");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    let policy = headers["content-security-policy"].to_str().expect("ascii");
    assert!(policy.contains("script-src 'self'") && policy.contains("connect-src 'self'"));
    assert!(!policy.contains("unsafe-inline"), "{policy}");
    let html = page.text().await.expect("html");
    assert!(html.contains("<label for=\"api-key\">API key</label>"), "{html}");

    // Assets are linked by content hash; that URL may be cached for good.
    let script = html
        .split('"')
        .find(|part| part.starts_with("playground/playground.js?v="))
        .expect("the script is linked with its version")
        .to_string();
    let js = client.get(server.url(&format!("/{script}"))).send().await.expect("get script");
    assert_eq!(js.status(), StatusCode::OK);
    assert_eq!(js.headers()["content-type"], "text/javascript; charset=utf-8");
    assert_eq!(js.headers()["cache-control"], "public, max-age=31536000, immutable");
    let etag = js.headers()["etag"].clone();
    let stale =
        client.get(server.url("/playground/playground.js?v=old")).send().await.expect("get");
    assert_eq!(stale.headers()["cache-control"], "no-cache");
    let again = client
        .get(server.url(&format!("/{script}")))
        .header("if-none-match", etag)
        .send()
        .await
        .expect("revalidate");
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert!(again.bytes().await.expect("body").is_empty());
    for (path, kind) in [
        ("/playground/playground.css", "text/css; charset=utf-8"),
        ("/playground/icon.svg", "image/svg+xml"),
    ] {
        let response = client.get(server.url(path)).send().await.expect("get");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(response.headers()["content-type"], kind, "{path}");
    }
    let missing = client.get(server.url("/playground/nope.js")).send().await.expect("get");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let body: Value = missing.json().await.expect("json");
    assert_eq!(body["code"], "not_found");

    // Every scene has a thumbnail the studio engine renders; each looks different.
    let scenes = ok_json(client.get(server.url("/v1/scenes"))).await;
    let mut seen = std::collections::HashSet::new();
    for scene in scenes["scenes"].as_array().expect("scenes") {
        let url = scene["thumbnail_url"].as_str().expect("a thumbnail URL");
        let response = client.get(server.url(url)).send().await.expect("get thumbnail");
        assert_eq!(response.status(), StatusCode::OK, "{url}");
        assert_eq!(response.headers()["content-type"], "image/jpeg");
        assert_eq!(response.headers()["cache-control"], "public, max-age=86400");
        let bytes = response.bytes().await.expect("bytes");
        let thumb = image::load_from_memory(&bytes).expect("a JPEG");
        assert_eq!((thumb.width(), thumb.height()), (192, 144));
        assert!(seen.insert(bytes), "{url} looks like another scene");
    }
    let unknown = client.get(server.url("/v1/scenes/nope/thumbnail")).send().await.expect("get");
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
}

/// What axum's extractors refuse on their own (a query or path segment that does not
/// parse) still answers in the native API's `{code, message}` shape.
#[tokio::test]
async fn extractor_rejections_answer_in_the_error_shape() {
    let server = start(false, |_| {}).await;
    let key = server.key(None).await;
    let client = reqwest::Client::new();
    for path in
        ["/v1/tasks?limit=-5", "/v1/tasks?limit=many", "/v1/tasks/%FF%FE", "/v1/tasks/%FF/events"]
    {
        let resp = client.get(server.url(path)).bearer_auth(&key).send().await.expect("get");
        let status = resp.status();
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = resp.text().await.expect("body");
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert!(content_type.starts_with("application/json"), "{path}: {content_type} {body}");
        let error: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(error["code"], "invalid_parameter", "{path}: {body}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{path}: {body}");
    }
}

#[tokio::test]
async fn engine_settings_are_refused_at_submit_not_at_run() {
    let server = start(true, |c| {
        c.limits.submits_per_second = 100.0;
        c.limits.submit_burst = 100;
    })
    .await;
    let key = server.key(Some(10)).await;
    let client = reqwest::Client::new();
    let cases = [
        (json!({"guidance": 100.0}), "guidance_out_of_range"),
        (json!({"guidance": -1}), "guidance_out_of_range"),
        (json!({"scheduler": "pndm"}), "unknown_scheduler"),
        (json!({"steps": 151}), "steps_out_of_range"),
        (json!({"steps": 0}), "steps_out_of_range"),
    ];
    for (extra, code) in cases {
        let mut body = json!({"image_base64": cutout_b64(), "prompt": "white", "engine": "studio"});
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        let (status, err) = server.post_json(&client, &key, "/v1/backgrounds", &body).await;
        assert_eq!(
            (status, err["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{extra}"
        );
    }
    let listed = server.get_json(&client, &key, "/v1/tasks").await;
    assert_eq!(listed["tasks"].as_array().map(Vec::len), Some(0), "no task was made: {listed}");
    let account = server.get_json(&client, &key, "/v1/account").await;
    assert_eq!(account["balance"], 10, "nothing was reserved: {account}");
    // The names the engine accepts pass, in any case and spelling.
    let body = json!({"image_base64": cutout_b64(), "prompt": "white", "engine": "studio",
        "scheduler": "DPM++2M_Karras", "guidance": 7.5, "steps": 30});
    let id = server.submit(&client, &key, "/v1/backgrounds", &body).await;
    let task = server.wait_terminal(&client, &key, &id).await;
    assert_eq!(task["state"], "succeeded", "{task}");
}
