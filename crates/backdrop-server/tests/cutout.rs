//! Automatic cut-out on the native API, and the vendor surfaces keeping their input rules,
//! on the real router with a worker. The segmenter here finds whatever differs from the
//! photo's corner colour, so every expected pixel is known; the real model runs through
//! the binary (crates/backdrop/tests/cutout.rs).

mod common;

use backdrop_core::{CancelToken, EngineError, Segmenter};
use backdrop_engines::Engines;
use backdrop_server::compat::picpik::signature;
use backdrop_server::vendor_keys::credentials;
use backdrop_server::{auth, now_ms};
use common::{b64, no_rate_limit, png, send_json, start_with, TestServer};
use image::{GrayImage, Luma, Rgba, RgbaImage};
use reqwest::multipart::{Form, Part};
use reqwest::StatusCode;
use serde_json::json;
use std::sync::Arc;

/// Object = every pixel whose colour is far from the top-left corner's.
struct KeyColour;

impl Segmenter for KeyColour {
    fn default_model(&self) -> String {
        "key-colour".into()
    }

    fn segment(
        &self,
        photo: &RgbaImage,
        _model: Option<&str>,
        cancel: &CancelToken,
    ) -> Result<GrayImage, EngineError> {
        cancel.check()?;
        let key = photo.get_pixel(0, 0).0;
        Ok(GrayImage::from_fn(photo.width(), photo.height(), |x, y| {
            let p = photo.get_pixel(x, y).0;
            let distance: i32 = (0..3).map(|c| (i32::from(p[c]) - i32::from(key[c])).abs()).sum();
            Luma([if distance > 60 { 255 } else { 0 }])
        }))
    }
}

/// An opaque 300x260 photo: a textured red box on light grey.
fn product_photo() -> RgbaImage {
    RgbaImage::from_fn(300, 260, |x, y| {
        if (80..220).contains(&x) && (60..200).contains(&y) {
            Rgba([200, (x % 50) as u8, (y % 40) as u8, 255])
        } else {
            Rgba([235, 235, 232, 255])
        }
    })
}

async fn server() -> TestServer {
    let engines = Engines::weight_free().with_segmenter(Arc::new(KeyColour));
    start_with(engines, 1, no_rate_limit, |blobs| blobs).await
}

#[tokio::test]
async fn a_cutout_task_returns_the_transparent_png_and_backgrounds_take_photos() {
    let server = server().await;
    let key = server.key(None).await;
    let client = reqwest::Client::new();
    let photo = product_photo();

    let body = json!({"image_base64": b64(&png(&photo))});
    let id = server.submit(&client, &key, "/v1/cutouts", &body).await;
    let (cut, task) = server.first_image(&client, &key, &id).await;
    assert_eq!((task["kind"].as_str(), task["engine"].as_str()), (Some("cutout"), Some("segment")));
    assert_eq!(task["notes"]["model"], "key-colour");
    assert_eq!(cut.dimensions(), photo.dimensions());
    for ((x, y, c), p) in cut.enumerate_pixels().zip(photo.pixels()) {
        let inside = (80..220).contains(&x) && (60..200).contains(&y);
        assert_eq!(c.0[3], if inside { 255 } else { 0 }, "({x}, {y})");
        assert_eq!(c.0[..3], p.0[..3]);
    }
    let listed = server.get_json(&client, &key, "/v1/tasks?kind=cutout").await;
    assert_eq!(listed["tasks"].as_array().map(Vec::len), Some(1), "{listed}");

    // A background from the photo (cutout defaults to auto): the product comes back exact.
    let body = json!({"image_base64": b64(&png(&photo)), "scene": "white-seamless", "seed": 5});
    let id = server.submit(&client, &key, "/v1/backgrounds", &body).await;
    let (result, task) = server.first_image(&client, &key, &id).await;
    assert_eq!(task["notes"]["cutout"], "key-colour", "{task}");
    for (x, y, p) in photo.enumerate_pixels() {
        if (80..220).contains(&x) && (60..200).contains(&y) {
            assert_eq!(result.get_pixel(x, y).0[..3], p.0[..3], "({x}, {y})");
        }
    }

    // `never` keeps the old rule; a bad mode is refused at submit.
    for (mode, code) in [("never", "fully_opaque"), ("sometimes", "invalid_parameter")] {
        let (status, body) = server.post_json(&client, &key, "/v1/backgrounds", &json!({"image_base64": b64(&png(&photo)), "scene": "white-seamless", "cutout": mode}))
        .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{body}"
        );
    }
    // A cut-out task takes no generation options.
    let request = json!({"image_base64": b64(&png(&photo)), "prompt": "x"});
    let (status, body) = server.post_json(&client, &key, "/v1/cutouts", &request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn a_photo_without_an_object_fails_with_no_object_found() {
    let server = server().await;
    let key = server.key(None).await;
    let client = reqwest::Client::new();
    let plain = png(&RgbaImage::from_pixel(200, 150, Rgba([240, 240, 240, 255])));
    for (path, extra) in
        [("/v1/cutouts", json!({})), ("/v1/backgrounds", json!({"scene": "white-seamless"}))]
    {
        let mut body = json!({"image_base64": b64(&plain)});
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        let id = server.submit(&client, &key, path, &body).await;
        let task = server.wait_terminal(&client, &key, &id).await;
        assert_eq!(task["state"], "failed", "{task}");
        assert_eq!(task["error"]["code"], "no_object_found", "{task}");
        let message = task["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("no object found"), "{message}");
    }
}

#[tokio::test]
async fn vendor_surfaces_still_require_transparent_cutouts() {
    let server = server().await;
    let key = server.key(None).await;
    let client = reqwest::Client::new();
    let photo = png(&product_photo());

    // Cutout.pro: code 2006, whatever extra field is sent.
    for body in
        [json!({"imgBase64": b64(&photo)}), json!({"imgBase64": b64(&photo), "cutout": "auto"})]
    {
        let paint = client.post(server.url("/api/v1/paintAsync")).header("APIKEY", &key);
        let (status, answer) = send_json(paint.json(&body)).await;
        assert_eq!((status, &answer["code"]), (StatusCode::BAD_REQUEST, &json!(2006)), "{answer}");
    }

    // PicWish: status 400, state -7, also with a `cutout` field.
    for form in [
        Form::new().text("scene_type", "101"),
        Form::new().text("scene_type", "101").text("cutout", "always"),
    ] {
        let form = form.part("image_file", Part::bytes(photo.clone()).file_name("photo.png"));
        let create = client.post(server.url("/api/tasks/visual/background"));
        let (status, answer) = send_json(create.header("X-API-KEY", &key).multipart(form)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_eq!(answer["data"]["state"], -7, "{answer}");
    }

    // PicPik: RetCode 231 for the foreground image.
    let id = auth::create_key(server.shared.repo.as_ref(), "picpik", None, now_ms())
        .await
        .expect("key")
        .0
        .id;
    let pair = credentials(&server.shared.server_secret, id);
    let mut params = json!({
        "Action": "GenerateBackgrounds",
        "request_uuid": "5ae03609-451b-44d7-a351-c72904df881b",
        "MainModel": {"ModelCode": "PICPIK General", "InferenceParams": {"Steps": 10}},
        "PositivePrompts": ["blue sky"],
        "NegativePrompts": [],
        "TranslatePrompts": false,
        "ImageList": [b64(&photo)],
        "PublicKey": pair.access_key,
    });
    params["Signature"] = json!(signature(params.as_object().expect("object"), &pair.secret_key));
    let (_, answer) = send_json(client.post(server.url("/")).json(&params)).await;
    assert_eq!(answer["RetCode"], 231, "{answer}");
}
