//! Generated hostile inputs against every request parser and image decoder.
//!
//! Each parser gets [`cases`] inputs (10,000 by default; `BACKDROP_FUZZ_CASES` for a
//! longer run, `BACKDROP_FUZZ_SEED` to vary them): valid requests mutated at the JSON
//! level (a field replaced by a value of another type, an extreme number, a long or odd
//! string, deep nesting; a field dropped or added) and at the byte level (bytes flipped,
//! cut, spliced). Every request goes through the real router with a valid key, so the
//! mutants reach the parsers rather than stopping at authentication (PicPik bodies are
//! re-signed after a JSON-level mutation, Kling gets a fresh JWT). Each answer must be
//! below 500 and in its surface's error shape; the image decoders must return, not panic.
//!
//! Long run: `BACKDROP_FUZZ_CASES=200000 cargo test --release -p backdrop-server --test fuzz`.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use backdrop_imaging::{decode, DecodeLimits};
use backdrop_server::compat::picpik::signature;
use backdrop_server::vendor_keys::credentials;
use backdrop_server::{auth, now_ms, Shared};
use base64::Engine as _;
use common::{cutout_b64, kling_token, photo_png, png, start};
use image::{Rgba, RgbaImage};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::sync::Arc;
use tower::ServiceExt;

/// Inputs per parser.
fn cases() -> usize {
    std::env::var("BACKDROP_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000)
}

fn rng(salt: u64) -> StdRng {
    let seed = std::env::var("BACKDROP_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(7);
    StdRng::seed_from_u64(seed ^ salt)
}

/// A value chosen to upset a parser.
fn odd_value(rng: &mut StdRng) -> Value {
    match rng.gen_range(0..18) {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(-1),
        3 => json!(0),
        4 => json!(1e308),
        5 => json!(-1e308),
        6 => json!(u64::MAX),
        7 => json!(i64::MIN),
        8 => json!(rng.gen::<f64>() * 20.0 - 5.0),
        9 => json!(""),
        10 => json!("x".repeat(rng.gen_range(1..20_000))),
        11 => json!("\u{0}\u{202e}ünï\u{1F600}\\\"'<>"),
        12 => json!([]),
        13 => json!({}),
        14 => json!([odd_scalar(rng), odd_scalar(rng)]),
        15 => json!({"a": odd_scalar(rng)}),
        16 => {
            let depth = rng.gen_range(10..300);
            serde_json::from_str(&format!("{}{}", "[".repeat(depth), "]".repeat(depth)))
                .unwrap_or(Value::Null)
        }
        _ => json!(rng.gen_range(-100_000i64..100_000).to_string()),
    }
}

fn odd_scalar(rng: &mut StdRng) -> Value {
    match rng.gen_range(0..4) {
        0 => json!(rng.gen::<i32>()),
        1 => json!("data:image/png;base64,AAAA"),
        2 => json!("http://127.0.0.1:1/x.png"),
        _ => Value::Null,
    }
}

/// A JSON-level mutant of `seed`: one to three edits anywhere in the tree.
fn mutate_json(seed: &Value, rng: &mut StdRng) -> Value {
    let mut value = seed.clone();
    for _ in 0..rng.gen_range(1..=3) {
        edit(&mut value, rng, 0);
    }
    value
}

fn edit(value: &mut Value, rng: &mut StdRng, depth: usize) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            let keys: Vec<String> = map.keys().cloned().collect();
            let key = keys[rng.gen_range(0..keys.len())].clone();
            match rng.gen_range(0..10) {
                0 => {
                    map.remove(&key);
                }
                1 => {
                    map.insert(format!("unknown_{}", rng.gen::<u16>()), odd_value(rng));
                }
                2..=4 if depth < 4 => edit(map.get_mut(&key).expect("key"), rng, depth + 1),
                _ => {
                    map.insert(key, odd_value(rng));
                }
            }
        }
        Value::Array(items) if !items.is_empty() && rng.gen_bool(0.5) => {
            let i = rng.gen_range(0..items.len());
            edit(&mut items[i], rng, depth + 1);
        }
        other => *other = odd_value(rng),
    }
}

/// A byte-level mutant: flips, cuts, splices and inserted junk.
fn mutate_bytes(seed: &[u8], rng: &mut StdRng) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for _ in 0..rng.gen_range(1..=4) {
        if bytes.is_empty() {
            bytes.push(rng.gen());
            continue;
        }
        let at = rng.gen_range(0..bytes.len());
        match rng.gen_range(0..5) {
            0 => bytes[at] ^= 1 << rng.gen_range(0..8),
            1 => bytes[at] = rng.gen(),
            2 => bytes.truncate(at),
            3 => {
                let junk: Vec<u8> = (0..rng.gen_range(1..16)).map(|_| rng.gen()).collect();
                bytes.splice(at..at, junk);
            }
            _ => {
                let end = (at + rng.gen_range(1..64)).min(bytes.len());
                let copy = bytes[at..end].to_vec();
                let to = rng.gen_range(0..bytes.len());
                bytes.splice(to..to, copy);
            }
        }
    }
    bytes
}

/// One surface: where its requests go, how they authenticate and what its errors look like.
struct Surface {
    name: &'static str,
    path: &'static str,
    content_type: String,
    headers: Vec<(&'static str, String)>,
    /// The answer's kind (its code) when it is in this surface's shape, or what is wrong.
    shape: fn(StatusCode, &Value) -> Result<String, String>,
}

fn native_shape(status: StatusCode, body: &Value) -> Result<String, String> {
    if status.is_success() {
        return body["id"].as_str().map(|_| "accepted".into()).ok_or("success without id".into());
    }
    match (body["code"].as_str(), body["message"].as_str()) {
        (Some(code), Some(_)) if !code.is_empty() => Ok(code.to_string()),
        _ => Err("not {code, message}".into()),
    }
}

fn cutout_shape(status: StatusCode, body: &Value) -> Result<String, String> {
    let code = body["code"].as_i64().ok_or("no numeric code")?;
    if body.get("msg").is_none() || body.get("data").is_none() || body["time"].as_i64().is_none() {
        return Err("not {code, data, msg, time}".into());
    }
    if status.is_success() != (code == 0) {
        return Err(format!("code {code} with HTTP {status}"));
    }
    Ok(code.to_string())
}

fn picwish_shape(status: StatusCode, body: &Value) -> Result<String, String> {
    let code = body["status"].as_u64().ok_or("no numeric status")?;
    if code != u64::from(status.as_u16()) {
        return Err(format!("status {code} with HTTP {status}"));
    }
    if !status.is_success() && body["message"].as_str().is_none() {
        return Err("no message".into());
    }
    Ok(format!("{code}/{}", body["data"]["state"]))
}

fn picpik_shape(status: StatusCode, body: &Value) -> Result<String, String> {
    if status != StatusCode::OK {
        return Err(format!("PicPik answers 200 with a RetCode, not {status}"));
    }
    let code = body["RetCode"].as_i64().ok_or("no RetCode")?;
    body["Message"].as_str().ok_or("no Message")?;
    Ok(code.to_string())
}

fn kling_shape(status: StatusCode, body: &Value) -> Result<String, String> {
    let code = body["code"].as_i64().ok_or("no numeric code")?;
    if body["message"].as_str().is_none() || body.get("request_id").is_none() {
        return Err("not {code, message, request_id}".into());
    }
    if status.is_success() != (code == 0) {
        return Err(format!("code {code} with HTTP {status}"));
    }
    Ok(code.to_string())
}

async fn send(shared: &Arc<Shared>, surface: &Surface, body: Vec<u8>) -> (StatusCode, Value) {
    let mut request = Request::post(surface.path).header("content-type", &surface.content_type);
    for (name, value) in &surface.headers {
        request = request.header(*name, value);
    }
    let request = request.body(Body::from(body)).expect("request");
    let response =
        backdrop_server::router(Arc::clone(shared)).oneshot(request).await.expect("infallible");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 26).await.expect("body");
    let value = serde_json::from_slice(&bytes).unwrap_or_else(
        |_| json!({"not_json": String::from_utf8_lossy(&bytes[..bytes.len().min(200)])}),
    );
    (status, value)
}

/// Sends `cases()` mutants of `seed` to `surface`; `sign` re-authenticates a JSON mutant.
async fn fuzz_json(
    shared: &Arc<Shared>,
    surface: Surface,
    seed: Value,
    salt: u64,
    sign: impl Fn(&mut Value),
) {
    let mut rng = rng(salt);
    let seed_bytes = serde_json::to_vec(&seed).expect("seed");
    let mut statuses = std::collections::BTreeMap::new();
    let started = std::time::Instant::now();
    for case in 0..cases() {
        let body = if rng.gen_bool(0.6) {
            let mut mutant = mutate_json(&seed, &mut rng);
            sign(&mut mutant);
            serde_json::to_vec(&mutant).expect("mutant")
        } else {
            mutate_bytes(&seed_bytes, &mut rng)
        };
        let (status, answer) = send(shared, &surface, body.clone()).await;
        assert!(
            !status.is_server_error(),
            "{} case {case}: {status} {answer} for {}",
            surface.name,
            String::from_utf8_lossy(&body[..body.len().min(300)])
        );
        match (surface.shape)(status, &answer) {
            Ok(kind) => *statuses.entry(format!("{} {kind}", status.as_u16())).or_insert(0u32) += 1,
            Err(why) => panic!("{} case {case}: {why}: {status} {answer}", surface.name),
        }
    }
    eprintln!(
        "{}: {} inputs in {:.1?}, answers {statuses:?}",
        surface.name,
        cases(),
        started.elapsed()
    );
    // The mutants must reach past authentication and the envelope, not all bounce off one
    // check: more than one kind of answer.
    assert!(statuses.len() > 1, "{}: every answer was the same: {statuses:?}", surface.name);
}

fn fast(c: &mut backdrop_server::ServiceConfig) {
    c.limits.submits_per_second = 1_000_000.0;
    c.limits.submit_burst = 1_000_000;
    c.limits.max_queued = 1_000_000;
    c.limits.max_key_images = 1_000_000;
    // A mutant that names a reachable URL must not stall the run.
    c.fetch.timeout_secs = 2;
    c.fetch.allow = vec!["127.0.0.1/32".into()];
}

async fn key_id(shared: &Shared) -> (i64, String) {
    let (key, plain) =
        auth::create_key(shared.repo.as_ref(), "fuzz", None, now_ms()).await.expect("key");
    (key.id, plain)
}

#[tokio::test]
async fn native_json_bodies() {
    let server = start(false, fast).await;
    let (_, key) = key_id(&server.shared).await;
    let auth = vec![("authorization", format!("Bearer {key}"))];
    let background = json!({
        "image_base64": cutout_b64(), "prompt": "bottle on paper", "n": 1, "engine": "studio",
        "width": 256, "height": 256, "scale": 0.7, "padding": [0, 0, 0.1, 0], "shadow": "soft",
        "format": "png", "seed": 3, "callback_url": "https://example.com/hook"
    });
    let surface = Surface {
        name: "native backgrounds",
        path: "/v1/backgrounds",
        content_type: "application/json".into(),
        headers: auth.clone(),
        shape: native_shape,
    };
    fuzz_json(&server.shared, surface, background, 1, |_| {}).await;
    let b64 = base64::engine::general_purpose::STANDARD.encode(photo_png());
    let expansion = json!({
        "image_base64": b64, "up": 0.2, "down": 0.1, "left": 0.3, "right": 0, "n": 1,
        "engine": "patch", "format": "jpeg"
    });
    let surface = Surface {
        name: "native expansions",
        path: "/v1/expansions",
        content_type: "application/json".into(),
        headers: auth,
        shape: native_shape,
    };
    fuzz_json(&server.shared, surface, expansion, 2, |_| {}).await;
}

#[tokio::test]
async fn native_multipart_bodies() {
    let server = start(false, fast).await;
    let (_, key) = key_id(&server.shared).await;
    let boundary = "fuzzboundary7MA4YWxkTrZu0gW";
    let mut rng = rng(3);
    let cutout = png(&RgbaImage::from_fn(32, 32, |x, _| {
        Rgba([200, 10, 10, if x > 8 && x < 24 { 255 } else { 0 }])
    }));
    let names = ["prompt", "n", "scene", "width", "height", "engine", "format", "scale", "seed"];
    let mut statuses = std::collections::BTreeSet::new();
    for case in 0..cases() {
        let mut body = Vec::new();
        for _ in 0..rng.gen_range(0..5) {
            let name = names[rng.gen_range(0..names.len())];
            let value = odd_value(&mut rng).to_string();
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                    .as_bytes(),
            );
        }
        if rng.gen_bool(0.7) {
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"c.png\"\r\nContent-Type: image/png\r\n\r\n")
                    .as_bytes(),
            );
            body.extend_from_slice(&cutout);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        if rng.gen_bool(0.5) {
            body = mutate_bytes(&body, &mut rng);
        }
        let surface = Surface {
            name: "native multipart",
            path: "/v1/backgrounds",
            content_type: format!("multipart/form-data; boundary={boundary}"),
            headers: vec![("authorization", format!("Bearer {key}"))],
            shape: native_shape,
        };
        let (status, answer) = send(&server.shared, &surface, body).await;
        assert!(!status.is_server_error(), "case {case}: {status} {answer}");
        let kind = native_shape(status, &answer)
            .unwrap_or_else(|why| panic!("case {case}: {why}: {answer}"));
        statuses.insert(kind);
    }
    assert!(statuses.len() > 1, "every answer was the same: {statuses:?}");
}

#[tokio::test]
async fn vendor_bodies() {
    let server = start(false, fast).await;
    let (id, key) = key_id(&server.shared).await;
    let shared = &server.shared;

    let cutout = Surface {
        name: "cutout.pro",
        path: "/api/v1/paintAsync",
        content_type: "application/json".into(),
        headers: vec![("APIKEY", key.clone())],
        shape: cutout_shape,
    };
    let seed = json!({"imgBase64": cutout_b64(), "text": "on a wooden table"});
    fuzz_json(shared, cutout, seed, 4, |_| {}).await;

    let picwish = Surface {
        name: "picwish",
        path: "/api/tasks/visual/background",
        content_type: "application/json".into(),
        headers: vec![("X-API-KEY", key.clone())],
        shape: picwish_shape,
    };
    let big_cutout = png(&RgbaImage::from_fn(256, 256, |x, y| {
        let inside = (x as i32 - 128).pow(2) + (y as i32 - 128).pow(2) < 80 * 80;
        Rgba([30, 120, 200, if inside { 255 } else { 0 }])
    }));
    // PicWish reads JSON bodies too; its image then comes by URL, from loopback here.
    let url = common::serve_png(big_cutout).await;
    let seed = json!({"image_url": url, "prompt": "marble", "batch_size": 1,
        "return_type": 1, "negative_prompt": "blur"});
    fuzz_json(shared, picwish, seed, 5, |_| {}).await;

    let pair = credentials(&shared.server_secret, id);
    let picpik = Surface {
        name: "picpik",
        path: "/",
        content_type: "application/json".into(),
        headers: Vec::new(),
        shape: picpik_shape,
    };
    let seed = json!({
        "Action": "GenerateBackgrounds",
        "request_uuid": "5ae03609-451b-44d7-a351-c72904df881b",
        "MainModel": {"ModelCode": "PICPIK General", "InferenceParams": {"Steps": 10}},
        "PositivePrompts": ["blue sky"], "NegativePrompts": [], "TranslatePrompts": false,
        "ImageList": [cutout_b64()], "PublicKey": pair.access_key,
    });
    let private = pair.secret_key.clone();
    fuzz_json(shared, picpik, seed, 6, move |params| {
        if let Value::Object(map) = params {
            map.remove("Signature");
            let signed = signature(map, &private);
            map.insert("Signature".into(), json!(signed));
        }
    })
    .await;

    let kling = Surface {
        name: "kling",
        path: "/v1/images/editing/expand",
        content_type: "application/json".into(),
        headers: vec![("authorization", format!("Bearer {}", kling_token(shared, id)))],
        shape: kling_shape,
    };
    let photo = png(&RgbaImage::from_fn(320, 320, |x, y| Rgba([x as u8, y as u8, 90, 255])));
    let seed = json!({
        "image": base64::engine::general_purpose::STANDARD.encode(photo),
        "up_expansion_ratio": 0.1, "down_expansion_ratio": 0.1, "left_expansion_ratio": 0.2,
        "right_expansion_ratio": 0, "n": 1, "prompt": "more sky", "external_task_id": "fuzz-1"
    });
    fuzz_json(shared, kling, seed, 7, |_| {}).await;
}

#[test]
fn image_decoders() {
    let limits = DecodeLimits::default();
    let img = RgbaImage::from_fn(48, 40, |x, y| Rgba([(x * 5) as u8, (y * 6) as u8, 77, 200]));
    let rgb = image::DynamicImage::ImageRgba8(img.clone()).to_rgb8();
    let mut jpeg = Vec::new();
    rgb.write_to(&mut std::io::Cursor::new(&mut jpeg), image::ImageFormat::Jpeg).expect("jpeg");
    let mut webp = Vec::new();
    image::DynamicImage::ImageRgba8(img.clone())
        .write_to(&mut std::io::Cursor::new(&mut webp), image::ImageFormat::WebP)
        .expect("webp");
    for (salt, (name, seed)) in
        [("png", png(&img)), ("jpeg", jpeg), ("webp", webp)].into_iter().enumerate()
    {
        assert!(decode(&seed, &limits).is_ok(), "the {name} seed decodes");
        let mut rng = rng(100 + salt as u64);
        let mut refused = 0;
        for _ in 0..cases() {
            let mutant = mutate_bytes(&seed, &mut rng);
            // A panic fails the test; an error is the expected answer to most mutants.
            if decode(&mutant, &limits).is_err() {
                refused += 1;
            }
        }
        assert!(refused > 0, "{name}: no mutant was refused");
    }
}

#[tokio::test]
async fn stray_errors_are_in_each_surfaces_envelope() {
    let server = start(false, fast).await;
    let (id, key) = key_id(&server.shared).await;
    let bearer = format!("Bearer {key}");
    let kling = format!("Bearer {}", kling_token(&server.shared, id));
    type Shape = fn(StatusCode, &Value) -> Result<String, String>;
    // Requests no handler sees: wrong methods, undecodable path segments and queries.
    let cases: Vec<(&str, &str, (&str, &str), Shape)> = vec![
        ("GET", "/v1/tasks/%FF", ("authorization", &bearer), native_shape),
        ("PUT", "/v1/backgrounds", ("authorization", &bearer), native_shape),
        ("GET", "/v1/tasks?limit=-5", ("authorization", &bearer), native_shape),
        ("PUT", "/api/v1/paintAsync", ("APIKEY", &key), cutout_shape),
        ("GET", "/api/v1/getPaintResult?taskId=%FF%FE", ("APIKEY", &key), cutout_shape),
        ("DELETE", "/api/tasks/visual/background", ("X-API-KEY", &key), picwish_shape),
        ("GET", "/api/tasks/visual/background/%FF", ("X-API-KEY", &key), picwish_shape),
        ("PUT", "/", ("x-none", ""), picpik_shape),
        ("DELETE", "/v1/images/editing/expand/abc", ("authorization", &kling), kling_shape),
        ("GET", "/v1/images/editing/expand/%FF", ("authorization", &kling), kling_shape),
        ("GET", "/v1/images/editing/expand?pageNum=%FF", ("authorization", &kling), kling_shape),
    ];
    for (method, path, (name, value), shape) in cases {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(name, value)
            .body(Body::empty())
            .expect("request");
        let response = backdrop_server::router(Arc::clone(&server.shared))
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
        let answer: Value = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            panic!("{method} {path}: not JSON: {}", String::from_utf8_lossy(&bytes))
        });
        if let Err(why) = shape(status, &answer) {
            panic!("{method} {path}: {why}: {status} {answer}");
        }
    }
}
