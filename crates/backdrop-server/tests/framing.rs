//! Framing through the native API: placement, shadow styles and shadow-only backdrops on
//! `POST /v1/backgrounds`, served on loopback with a real worker, and the refusals at
//! submit.

mod common;

use backdrop_core::{Align, Padding, Placement};
use backdrop_imaging::placement::place;
use common::{no_rate_limit, png, send_json, start, TestServer};
use image::{Rgba, RgbaImage};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// A 70x110 product: an opaque lamp-like shape (a shade over a stem on a base), its
/// edges soft where the shapes are round.
fn lamp() -> RgbaImage {
    RgbaImage::from_fn(70, 110, |x, y| {
        let (fx, fy) = (f64::from(x) + 0.5, f64::from(y) + 0.5);
        let shade = fy < 50.0 && (fx - 35.0).abs() < 12.0 + fy * 0.45;
        let stem = (50.0..95.0).contains(&fy) && (fx - 35.0).abs() < 4.0;
        let foot = fy >= 95.0 && {
            let (dx, dy) = ((fx - 35.0) / 30.0, (fy - 102.0) / 8.0);
            dx * dx + dy * dy < 1.0
        };
        if shade || stem || foot {
            Rgba([(60 + x * 2) as u8, (200 - y) as u8, ((x + y) % 50 + 120) as u8, 255])
        } else {
            Rgba([0, 0, 0, 0])
        }
    })
}

/// The lamp in differently sized and offset canvases.
fn crops() -> Vec<RgbaImage> {
    [(200, 150, 10, 30), (80, 300, 5, 180), (260, 260, 180, 0)]
        .into_iter()
        .map(|(w, h, x, y)| {
            let mut canvas = RgbaImage::new(w, h);
            image::imageops::replace(&mut canvas, &lamp(), x, y);
            canvas
        })
        .collect()
}

fn b64(img: &RgbaImage) -> String {
    common::b64(&png(img))
}

/// `(left, top, right, bottom)` of the pixels with alpha >= 8, inclusive.
fn visible_box(img: &RgbaImage) -> (f64, f64, f64, f64) {
    let mut b = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
    for (x, y, _) in img.enumerate_pixels().filter(|(_, _, p)| p.0[3] >= 8) {
        let (x, y) = (f64::from(x), f64::from(y));
        b = (b.0.min(x), b.1.min(y), b.2.max(x), b.3.max(y));
    }
    b
}

/// Where the documented rule puts a `bw x bh` box in a `w x h` canvas: `(left, top,
/// right, bottom)`, inclusive, before rounding.
fn rule((bw, bh): (f64, f64), (w, h): (f64, f64), p: &Placement) -> (f64, f64, f64, f64) {
    let [t, r, b, l] = p.padding.0;
    let px = |v: f64, side: f64| if v < 1.0 { v * side } else { v };
    let (t, r, b, l) = (px(t, h), px(r, w), px(b, h), px(l, w));
    let (fw, fh) = (w - l - r, h - t - b);
    let k = ((p.scale * w).min(fw) / bw).min((p.scale * h).min(fh) / bh);
    let (ax, ay) = p.align.anchor();
    let x = l + (fw - bw * k) * ax + f64::from(p.offset[0]);
    let y = t + (fh - bh * k) * ay + f64::from(p.offset[1]);
    (x, y, x + bw * k - 1.0, y + bh * k - 1.0)
}

/// Submits, waits, and downloads the first image.
async fn result(server: &TestServer, key: &str, body: Value) -> (RgbaImage, Value) {
    let client = reqwest::Client::new();
    let id = server.submit(&client, key, "/v1/backgrounds", &body).await;
    server.first_image(&client, key, &id).await
}

#[tokio::test]
async fn placement_lands_the_box_for_every_crop() {
    let server = start(true, no_rate_limit).await;
    let key = server.key(None).await;
    let cases = [
        (json!({"scale": 0.5}), Placement { scale: 0.5, ..Default::default() }),
        (
            json!({"padding": [0.1, 0, 24, 0], "align": "bottom-left", "offset": [5, -4]}),
            Placement {
                padding: Padding([0.1, 0.0, 24.0, 0.0]),
                align: Align::BottomLeft,
                offset: [5, -4],
                ..Default::default()
            },
        ),
    ];
    let lamp_box = visible_box(&lamp());
    let (bw, bh) = (lamp_box.2 - lamp_box.0 + 1.0, lamp_box.3 - lamp_box.1 + 1.0);
    for (fields, placement) in &cases {
        let want = rule((bw, bh), (320.0, 240.0), placement);
        for (i, crop) in crops().iter().enumerate() {
            let mut body = json!({"image_base64": b64(crop), "width": 320, "height": 240,
                "backdrop": "transparent", "shadow": "none", "preview": false});
            for (k, v) in fields.as_object().expect("object") {
                body[k] = v.clone();
            }
            let (out, _) = result(&server, &key, body).await;
            let got = visible_box(&out);
            let near = |a: f64, b: f64| (a - b).abs() <= 1.0;
            assert!(
                near(got.0, want.0)
                    && near(got.1, want.1)
                    && near(got.2, want.2)
                    && near(got.3, want.3),
                "crop {i} with {fields}: box {got:?}, the rule says {want:?}"
            );
            assert_eq!(out, place(crop, 320, 240, placement).expect("placed"), "crop {i} {fields}");
        }
    }

    // Multipart sends the same fields as text parts.
    let form = reqwest::multipart::Form::new()
        .part("image", reqwest::multipart::Part::bytes(png(&crops()[0])).file_name("c.png"))
        .text("width", "320")
        .text("height", "240")
        .text("padding", "0.1,0,24,0")
        .text("align", "bottom-left")
        .text("offset", "5,-4")
        .text("shadow", "none")
        .text("backdrop", "transparent");
    let client = reqwest::Client::new();
    let submit = client.post(server.url("/v1/backgrounds")).bearer_auth(&key).multipart(form);
    let (status, accepted) = send_json(submit).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let (out, _) = server.first_image(&client, &key, accepted["id"].as_str().expect("id")).await;
    let got = visible_box(&out);
    let want = rule((bw, bh), (320.0, 240.0), &cases[1].1);
    assert!((got.0 - want.0).abs() <= 1.0 && (got.3 - want.3).abs() <= 1.0, "multipart {got:?}");
}

#[tokio::test]
async fn shadows_fall_on_their_side_and_keep_the_product_exact() {
    let server = start(true, no_rate_limit).await;
    let key = server.key(None).await;
    let crop = &crops()[1];
    let placement = Placement {
        scale: 0.5,
        align: Align::Bottom,
        padding: Padding([0.0, 0.0, 0.2, 0.0]),
        offset: [0, 0],
    };
    let product = place(crop, 300, 300, &placement).expect("placed");
    let (left, top, right, base) = visible_box(&product);
    let (centre, tall) = ((left + right) / 2.0, base - top + 1.0);
    let framing = json!({"width": 300, "height": 300, "scale": 0.5, "align": "bottom",
        "padding": "0,0,0.2,0"});
    let with = |extra: Value| {
        let mut body = framing.clone();
        body["image_base64"] = json!(b64(crop));
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        body
    };

    for (direction, toward_right) in [(90, true), (270, false)] {
        let body =
            with(json!({"shadow": "hard", "shadow_direction": direction, "backdrop": "#ffffff"}));
        let (out, _) = result(&server, &key, body).await;
        let (mut l, mut r) = (0.0, 0.0);
        for (x, y, p) in out.enumerate_pixels() {
            let mine = product.get_pixel(x, y);
            if mine.0[3] == 255 {
                assert_eq!(p.0[..3], mine.0[..3], "product pixel ({x},{y})");
            } else if mine.0[3] == 0 && p.0[0] < 255 {
                assert!(f64::from(y) >= base - 0.5 * tall, "({x},{y}) darkened above the floor");
                let d = f64::from(255 - p.0[0]);
                if f64::from(x) < centre - 1.0 {
                    l += d;
                } else if f64::from(x) > centre + 1.0 {
                    r += d;
                }
            }
        }
        let (near, far) = if toward_right { (r, l) } else { (l, r) };
        assert!(near > 2.0 * far, "direction {direction}: toward {near}, away {far}");
    }

    // Shadow only: alpha where the product or its (black) shadow is, nowhere else.
    let (out, task) =
        result(&server, &key, with(json!({"shadow": "soft", "backdrop": "transparent"}))).await;
    assert_eq!(task["notes"]["backdrop"], "transparent: no background generated");
    let mut shadow = 0;
    for (x, y, p) in out.enumerate_pixels() {
        let mine = product.get_pixel(x, y);
        if mine.0[3] == 255 {
            assert_eq!(p, mine);
        } else if mine.0[3] == 0 && p.0[3] > 0 {
            shadow += 1;
            assert_eq!(p.0[..3], [0, 0, 0], "({x},{y})");
            assert!(f64::from(y) >= base - 0.5 * tall, "({x},{y}) has alpha above the floor");
        }
    }
    assert!(shadow > 100, "a soft shadow: {shadow} pixels");

    // On a generated scene the opaque product pixels are the resampled cut-out's.
    let (out, task) = result(
        &server,
        &key,
        with(json!({"scene": "concrete", "shadow": "floating", "reflection": 0.3})),
    )
    .await;
    assert_eq!(task["engine"], "studio");
    for (x, y, p) in product.enumerate_pixels().filter(|(_, _, p)| p.0[3] == 255) {
        assert_eq!(out.get_pixel(x, y).0[..3], p.0[..3], "({x},{y})");
    }
}

#[tokio::test]
async fn bad_framing_is_refused_at_submit() {
    let server = start(false, no_rate_limit).await;
    let key = server.key(None).await;
    let client = reqwest::Client::new();
    let cases = [
        (json!({"scale": 0}), "scale_out_of_range"),
        (json!({"scale": 1.5}), "scale_out_of_range"),
        (json!({"width": 200, "height": 200, "padding": 0.5}), "padding_leaves_no_room"),
        // The 200x150 input itself leaves no room once 80 + 80 pixels are taken.
        (json!({"padding": [80, 0, 80, 0]}), "padding_leaves_no_room"),
        (json!({"padding": [1, 2]}), "invalid_padding"),
        (json!({"padding": -0.1}), "invalid_padding"),
        (json!({"offset": "a,b"}), "invalid_offset"),
        (json!({"align": "middle"}), "unknown_align"),
        (json!({"shadow": "dramatic"}), "unknown_shadow_style"),
        (json!({"shadow": "soft", "shadow_opacity": 2}), "shadow_out_of_range"),
        (json!({"shadow_direction": 400}), "shadow_out_of_range"),
        (json!({"reflection": -1}), "reflection_out_of_range"),
        (json!({"backdrop": "#12345"}), "invalid_backdrop"),
        (json!({"backdrop": "transparent", "format": "jpg"}), "invalid_backdrop"),
    ];
    for (fields, code) in cases {
        let mut body = json!({"image_base64": b64(&crops()[0]), "prompt": "x"});
        for (k, v) in fields.as_object().expect("object") {
            body[k] = v.clone();
        }
        let (status, error) = server.post_json(&client, &key, "/v1/backgrounds", &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{fields}: {error}");
        assert_eq!(error["code"], code, "{fields}: {error}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{error}");
    }
    let page = server.get_json(&client, &key, "/v1/tasks").await;
    assert_eq!(page["tasks"].as_array().map(Vec::len), Some(0), "nothing was queued: {page}");
}

/// The README's framing request body, as a client would send it.
#[tokio::test]
async fn the_readme_framing_body_is_accepted() {
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"),
    )
    .expect("README");
    let block = readme
        .split("```json\n")
        .skip(1)
        .filter_map(|rest| rest.split("\n```").next())
        .find(|b| b.contains("\"shadow\""))
        .expect("a framing JSON block in the README");
    let mut body: Value = serde_json::from_str(block).expect("the block is JSON");
    body["image_base64"] = json!(b64(&crops()[0]));
    let server = start(true, |_| {}).await;
    let key = server.key(None).await;
    let (out, task) = result(&server, &key, body).await;
    assert_eq!(out.dimensions(), (1000, 1000), "{task}");
}
