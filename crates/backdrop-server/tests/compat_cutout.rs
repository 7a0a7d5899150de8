//! The Cutout.pro surface as a Cutout.pro client uses it: the real router on loopback,
//! a plain HTTP client, the vendor's paths, auth and envelope.

mod common;

use backdrop_server::compat::cutout::sign;
use backdrop_server::{now_ms, vendor_keys};
use base64::Engine as _;
use common::{
    b64, cutout_b64, download, download_image, no_rate_limit, ok_json, png, poll_json, send_json,
    serve_png, start, TestServer,
};
use image::{Rgba, RgbaImage};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

async fn paint(
    client: &reqwest::Client,
    url: String,
    key: &str,
    body: Value,
) -> (StatusCode, Value) {
    send_json(client.post(url).header("APIKEY", key).json(&body)).await
}

/// The key's mySubscription answer.
async fn subscription(client: &reqwest::Client, server: &TestServer, key: &str) -> Value {
    ok_json(client.get(server.url("/api/v1/mySubscription")).header("APIKEY", key)).await
}

fn assert_envelope(body: &Value, code: i64) {
    assert_eq!(body["code"], code, "{body}");
    assert!(body["time"].as_i64().expect("time") > 1_600_000_000_000, "{body}");
    assert!(body.get("msg").is_some() && body.get("data").is_some(), "{body}");
}

#[tokio::test]
async fn paint_async_poll_download() {
    let server = start(true, |_| {}).await;
    let key = server.key(Some(100)).await;
    let client = reqwest::Client::new();

    let (status, body) = paint(
        &client,
        server.url("/api/v1/paintAsync"),
        &key,
        json!({"imgBase64": cutout_b64(), "text": "dark luxury"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_envelope(&body, 0);
    let id = body["data"].as_i64().expect("numeric task id");

    let result = server.url(&format!("/api/v1/getPaintResult?taskId={id}"));
    let done = poll_json(
        Duration::from_secs(60),
        || client.get(&result).header("APIKEY", &key),
        |body| {
            assert_envelope(body, 0);
            let item = &body["data"]["resultList"][0];
            let status = item["status"].as_i64().expect("status");
            assert!([0, 1, 3].contains(&status), "{body}");
            if status == 3 {
                assert!(item["waitNumber"].as_u64().expect("waitNumber") > 0);
            }
            status == 1
        },
    )
    .await;
    let data = &done["data"];
    assert_eq!(data["id"], id);
    assert_eq!(data["text"], "dark luxury");
    assert_eq!(data["quantity"], 1);
    assert!(data["createdAt"].as_i64().expect("createdAt") > 0);
    let item = &data["resultList"][0];
    assert_eq!(item["batchId"], id);
    assert_eq!(item["percentage"], 100);
    assert_eq!(item["waitNumber"], 0);
    assert_eq!((item["width"].as_u64(), item["height"].as_u64()), (Some(96), Some(96)));
    for field in ["result", "preview"] {
        download_image(&client, item[field].as_str().expect("url")).await;
    }
    // The input is kept at a short-lived signed URL.
    let (_, input) = download(&client, data["url"].as_str().expect("url")).await;
    assert_eq!(b64(&input), cutout_b64(), "the input as sent");

    // 96x96 is at most 512x512: 3 credits.
    let body = subscription(&client, &server, &key).await;
    assert_eq!(body["data"]["apiCredits"], 97, "{body}");
}

#[tokio::test]
async fn signed_form_valid_wrong_and_expired() {
    let server = start(false, |_| {}).await;
    let key = server.key(None).await;
    let id = server.shared.repo.key_by_hash(&backdrop_server::auth::hash_key(&key)).await;
    let id = id.expect("db").expect("key").id;
    let creds = vendor_keys::credentials(&server.shared.server_secret, id);
    let client = reqwest::Client::new();
    let body = json!({"imgBase64": cutout_b64(), "text": "pink"});

    let expire = (now_ms() / 1000 + 300).to_string();
    let good = sign(&creds.access_key, &creds.secret_key, &expire);
    let signed = [("uid", creds.access_key.as_str()), ("signExpireTime", &expire), ("sign", &good)];
    let paint = client.post(server.url("/api/v1/paintAsync")).query(&signed);
    let created = ok_json(paint.json(&body)).await;
    assert_envelope(&created, 0);
    let task_id = created["data"].as_i64().expect("id").to_string();
    let result = || client.get(server.url("/api/v1/getPaintResult")).query(&[("taskId", &task_id)]);
    let (_, polled) = send_json(result().query(&signed)).await;
    assert_envelope(&polled, 0);
    assert_eq!(polled["data"]["resultList"][0]["status"], 3, "queued: {polled}");
    assert_eq!(polled["data"]["resultList"][0]["waitNumber"], 1);

    // A wrong sign, a sign made with the plaintext key, an expired time, an unknown uid.
    let wrong = sign(&creds.access_key, "sk-not-it", &expire);
    let with_plain = sign(&creds.access_key, &key, &expire);
    let past = (now_ms() / 1000 - 10).to_string();
    let expired = sign(&creds.access_key, &creds.secret_key, &past);
    let other = vendor_keys::credentials(&server.shared.server_secret, id + 1);
    let far = (now_ms() / 1000 + 366 * 86_400).to_string();
    let forever = sign(&creds.access_key, &creds.secret_key, &far);
    let cases = [
        (creds.access_key.clone(), far, forever, 1002),
        (creds.access_key.clone(), expire.clone(), wrong, 1002),
        (creds.access_key.clone(), expire.clone(), with_plain, 1002),
        (creds.access_key.clone(), past, expired, 1003),
        ("ak1x000000000000".to_string(), expire.clone(), good.clone(), 1002),
        (
            other.access_key.clone(),
            expire.clone(),
            sign(&other.access_key, &creds.secret_key, &expire),
            1002,
        ),
    ];
    for (uid, time, signature, code) in cases {
        let query = [("uid", &uid), ("signExpireTime", &time), ("sign", &signature)];
        let (status, body) = send_json(result().query(&query)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_envelope(&body, code);
    }
    // Partial signed form.
    let (status, body) = send_json(result().query(&[("uid", &creds.access_key)])).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_envelope(&body, 1002);
}

#[tokio::test]
async fn bad_requests_get_cutout_codes() {
    let server = start(false, |c| {
        no_rate_limit(c);
        c.limits.max_body_bytes = 1024 * 1024;
    })
    .await;
    let key = server.key(None).await;
    let poor = server.key(Some(2)).await;
    let other = server.key(None).await;
    let client = reqwest::Client::new();
    let url = server.url("/api/v1/paintAsync");
    let encode = |img: &RgbaImage| b64(&png(img));
    let opaque = encode(&RgbaImage::from_pixel(32, 32, Rgba([1, 2, 3, 255])));
    let clear = encode(&RgbaImage::from_pixel(32, 32, Rgba([0, 0, 0, 0])));
    let tiny =
        encode(&RgbaImage::from_fn(8, 8, |x, _| Rgba([9, 9, 9, if x < 4 { 0 } else { 255 }])));

    // No key, unknown key.
    let (status, body) =
        send_json(client.post(&url).json(&json!({"imgBase64": cutout_b64()}))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_envelope(&body, 1001);
    let (status, body) =
        paint(&client, url.clone(), "bd_wrong", json!({"imgBase64": cutout_b64()})).await;
    assert_eq!((status, body["code"].as_i64()), (StatusCode::UNAUTHORIZED, Some(1001)));

    let cases: Vec<(Value, StatusCode, i64)> = vec![
        (json!({"text": "no image"}), StatusCode::BAD_REQUEST, 2001),
        (json!([1, 2]), StatusCode::BAD_REQUEST, 2001),
        (json!({"imgBase64": 5}), StatusCode::BAD_REQUEST, 2001),
        (
            json!({"imgBase64": cutout_b64(), "text": "x".repeat(5000)}),
            StatusCode::BAD_REQUEST,
            2002,
        ),
        (json!({"imgUrl": "http://127.0.0.1:9/x.png"}), StatusCode::BAD_REQUEST, 2003),
        (json!({"imgUrl": "not a url"}), StatusCode::BAD_REQUEST, 2003),
        (json!({"imgBase64": "%%%not base64%%%"}), StatusCode::BAD_REQUEST, 2004),
        (json!({"imgBase64": "aGVsbG8gd29ybGQ="}), StatusCode::BAD_REQUEST, 2005),
        (json!({"imgBase64": opaque}), StatusCode::BAD_REQUEST, 2006),
        (json!({"imgBase64": clear}), StatusCode::BAD_REQUEST, 2006),
        (json!({"imgBase64": tiny}), StatusCode::BAD_REQUEST, 2008),
        (json!({"imgBase64": "A".repeat(2 * 1024 * 1024)}), StatusCode::PAYLOAD_TOO_LARGE, 2007),
    ];
    for (body, status, code) in cases {
        let (got, answer) = paint(&client, url.clone(), &key, body.clone()).await;
        assert_eq!(got, status, "{answer}");
        assert_envelope(&answer, code);
        assert_eq!(answer["data"], Value::Null);
    }
    // Malformed JSON.
    let malformed =
        client.post(&url).header("APIKEY", &key).header("content-type", "application/json");
    let (status, body) = send_json(malformed.body("{\"imgBase64\": ")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_envelope(&body, 2001);

    // Credits: a 96x96 cut-out costs 3; the key has 2.
    let (status, body) =
        paint(&client, url.clone(), &poor, json!({"imgBase64": cutout_b64()})).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{body}");
    assert_envelope(&body, 1005);

    // Task lookups: missing, non-numeric, unknown, another key's.
    let (_, created) = paint(&client, url.clone(), &key, json!({"imgBase64": cutout_b64()})).await;
    let id = created["data"].as_i64().expect("id");
    for (query, key, status, code) in [
        (String::new(), &key, StatusCode::BAD_REQUEST, 2001),
        ("?taskId=abc".to_string(), &key, StatusCode::BAD_REQUEST, 2001),
        ("?taskId=999999".to_string(), &key, StatusCode::NOT_FOUND, 3001),
        (format!("?taskId={id}"), &other, StatusCode::NOT_FOUND, 3001),
    ] {
        let result = client.get(server.url(&format!("/api/v1/getPaintResult{query}")));
        let (got, body) = send_json(result.header("APIKEY", key)).await;
        assert_eq!(got, status, "{query}");
        assert_envelope(&body, code);
    }
}

#[tokio::test]
async fn rate_limit_and_price_tiers() {
    let server = start(false, |c| {
        c.limits.submits_per_second = 1.0;
        c.limits.submit_burst = 1;
    })
    .await;
    let key = server.key(Some(100)).await;
    let client = reqwest::Client::new();
    let url = server.url("/api/v1/paintAsync");
    // A 600x600 cut-out is in the 512x512..1024x1024 tier: 6 credits.
    let big =
        RgbaImage::from_fn(600, 600, |x, _| Rgba([50, 60, 70, if x < 300 { 0 } else { 255 }]));
    let (status, body) =
        paint(&client, url.clone(), &key, json!({"imgBase64": b64(&png(&big))})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) =
        paint(&client, url.clone(), &key, json!({"imgBase64": cutout_b64()})).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_envelope(&body, 1004);
    let body = subscription(&client, &server, &key).await;
    assert_eq!(body["data"]["apiCredits"], 94, "{body}");
}

#[tokio::test]
async fn img_url_is_downloaded() {
    let server = start(true, |c| c.fetch.allow = vec!["127.0.0.1/32".into()]).await;
    let key = server.key(None).await;
    let client = reqwest::Client::new();
    let bytes = base64::engine::general_purpose::STANDARD.decode(cutout_b64()).expect("b64");
    // No text: the default scene is used.
    let (status, body) = paint(
        &client,
        server.url("/api/v1/paintAsync"),
        &key,
        json!({"imgUrl": serve_png(bytes).await}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = body["data"].as_i64().expect("id");
    let result = server.url(&format!("/api/v1/getPaintResult?taskId={id}"));
    let body = poll_json(
        Duration::from_secs(60),
        || client.get(&result).header("APIKEY", &key),
        |body| {
            let status = &body["data"]["resultList"][0]["status"];
            assert_ne!(status, 2, "{body}");
            status == 1
        },
    )
    .await;
    assert_eq!(body["data"]["text"], Value::Null);
    download(&client, body["data"]["resultList"][0]["result"].as_str().expect("url")).await;
}

#[tokio::test]
async fn the_java_sdk_signs_with_the_numeric_uid_and_reads_its_balance() {
    let server = start(false, |_| {}).await;
    let (key, plaintext) =
        backdrop_server::auth::create_key(server.shared.repo.as_ref(), "sdk", Some(50), now_ms())
            .await
            .expect("key");
    let secret = vendor_keys::credentials(&server.shared.server_secret, key.id).secret_key;
    let client = reqwest::Client::new();
    // As the SDK signs: `uid` is a Long, printed in decimal.
    let uid = key.id.to_string();
    let expire = (now_ms() / 1000 + 300).to_string();
    let signed = |uid: &str, secret: &str| {
        vec![
            ("uid".to_string(), uid.to_string()),
            ("signExpireTime".to_string(), expire.clone()),
            ("sign".to_string(), sign(uid, secret, &expire)),
        ]
    };

    let paint = client.post(server.url("/api/v1/paintAsync")).query(&signed(&uid, &secret));
    let created = ok_json(paint.json(&json!({"imgBase64": cutout_b64(), "text": "pink"}))).await;
    assert_envelope(&created, 0);
    let task_id = created["data"].as_i64().expect("id").to_string();
    let mut query = signed(&uid, &secret);
    query.push(("taskId".into(), task_id));
    let (_, polled) =
        send_json(client.get(server.url("/api/v1/getPaintResult")).query(&query)).await;
    assert_envelope(&polled, 0);

    // mySubscription in the SDK's fields: 3 credits of 50 reserved for the task.
    let subscription_of = |uid: &str, secret: &str| {
        client.get(server.url("/api/v1/mySubscription")).query(&signed(uid, secret))
    };
    let (_, body) = send_json(subscription_of(&uid, &secret)).await;
    assert_envelope(&body, 0);
    let data = &body["data"];
    assert_eq!(data["userId"], key.id, "the uid, as the user learns it: {body}");
    assert_eq!(data["imageBalance"], 47, "{body}");
    assert_eq!(data["apiCredits"], 47, "{body}");
    assert_eq!((&data["monthBalance"], &data["videoBalance"]), (&json!(0), &json!(0)), "{body}");
    for date in ["monthStartDate", "monthExpireDate"] {
        assert!(data.get(date).is_some_and(Value::is_null), "{date}: {body}");
    }
    // With the header too, and for an unmetered key the balance is null.
    let unmetered = server.key(None).await;
    let (_, body) =
        send_json(client.get(server.url("/api/v1/mySubscription")).header("APIKEY", &unmetered))
            .await;
    assert_eq!(body["data"]["imageBalance"], Value::Null, "{body}");
    assert_eq!(body["data"]["monthBalance"], 0, "{body}");

    // Another key's numeric id, a sign made with the plaintext key, a uid of no key.
    let other = (key.id + 1).to_string();
    for (uid, secret) in [
        (other.as_str(), secret.as_str()),
        (uid.as_str(), plaintext.as_str()),
        ("0", secret.as_str()),
    ] {
        let (status, body) = send_json(subscription_of(uid, secret)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uid}");
        assert_envelope(&body, 1002);
    }
}
