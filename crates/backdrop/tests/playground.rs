//! The playground page in a real browser: Debian's Chromium, driven through chromedriver
//! with the W3C WebDriver protocol, against a real `backdrop serve` on loopback.
//!
//! - `background_and_expand_in_chromium`: load the page, enter a key (kept in local
//!   storage), upload a cut-out, pick a scene, generate two images and wait until both
//!   result images have loaded; compare, "use this seed"; expand a photo by dragging two
//!   edges of the frame, and check that the size the page announced is the size of the
//!   image that came back; upload a file that is not an image and see the API's message
//!   and code; see the tasks in the history with thumbnails. Every control has a label,
//!   nothing overflows at phone width, and the console holds no error but the one the
//!   bad file's 400 causes. Screenshots of both modes at desktop and phone width go to
//!   `target/playground-screenshots/`.
//! - `a_product_photo_becomes_a_background_in_chromium`: a photo without transparency
//!   dropped in Background mode is cut out by the server (`cutout` defaults to `auto`)
//!   and comes back on a generated background.
//! - `a_queued_task_is_canceled_in_chromium`: on a server with no worker, the page shows
//!   the queue position from the task's event stream, and Cancel cancels the task.
//!
//! Needs chromedriver and Chromium (`apt-get install chromium chromium-driver`; tools/test
//! installs them). Without them each test says so and passes, unless `CI=true`, where it
//! fails.

mod common;
#[path = "playground/webdriver.rs"]
mod webdriver;

use common::{example, Api, Setup};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;
use webdriver::{Browser, Driver, Session, ENTER};

/// One browser at a time: the machines this runs on are small.
static SERIAL: Mutex<()> = Mutex::new(());

const DESKTOP: u32 = 1280;
const PHONE: u32 = 390;
const WAIT: Duration = Duration::from_secs(90);

/// The browser, or `None` (after saying why) when the test should be skipped.
fn browser() -> Option<Browser> {
    match Browser::find() {
        Ok(browser) => Some(browser),
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true and the browser tests cannot run: {why}")
        }
        Err(why) => {
            println!("skipped: {why}");
            eprintln!("skipped: {why}");
            None
        }
    }
}

fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/playground-screenshots");
    std::fs::create_dir_all(&dir).expect("creates the screenshot folder");
    dir
}

/// A server with one key, a browser session on its page, the key entered.
struct Playground {
    session: Session,
    _driver: Driver,
    api: Api,
    server: common::Server,
    setup: Setup,
}

fn open_playground(browser: &Browser, serve_args: &[&str]) -> Playground {
    let setup = Setup::new(
        "",
        &[
            ("BACKDROP_SUBMITS_PER_SECOND", "100"),
            // Workers write progress with each lease renewal (a third of the lease): a
            // short lease makes the steps of a second-long task visible.
            ("BACKDROP_LEASE_MS", "1500"),
            ("BACKDROP_LOG", "info,sqlx=warn"),
        ],
    );
    let data = setup.data_dir();
    let data_arg = data.to_str().expect("utf-8 path").to_string();
    let (_, key) = setup.create_key(1000, &["--data-dir", &data_arg]);
    let mut args = vec!["--data-dir", data_arg.as_str()];
    args.extend_from_slice(serve_args);
    let server = setup.start_server("serve", &args);
    let api = Api::new(&server.base, &key);
    let driver = Driver::start(browser, &setup.dir.path().join("chromedriver.log"));
    let session = driver.session(browser, &setup.dir.path().join("profile"));
    session.goto(&format!("{}/", server.base));
    let title = session.exec("return document.title;", json!([]));
    assert_eq!(title, "Backdrop playground");

    session.send_keys("#api-key", &key);
    session.send_keys("#api-key", ENTER);
    session.wait_until(
        "the key to be accepted",
        "return document.querySelector('#key-status.ok') !== null;",
        WAIT,
    );
    let stored = session.exec("return localStorage.getItem('backdrop.apiKey');", json!([]));
    assert_eq!(stored, key.as_str(), "the key is kept in local storage");
    Playground { session, _driver: driver, api, server, setup }
}

/// Waits until `css` matches `count` images that have all loaded; returns their natural
/// sizes.
fn wait_images(session: &Session, css: &str, count: usize) -> Vec<(u64, u64)> {
    let script = format!(
        "const imgs = [...document.querySelectorAll({css:?})];\
         if (imgs.length !== {count} || !imgs.every(i => i.complete && i.naturalWidth > 0)) return null;\
         return imgs.map(i => [i.naturalWidth, i.naturalHeight]);"
    );
    let sizes = session.wait_until(&format!("{count} loaded image(s) at {css}"), &script, WAIT);
    sizes
        .as_array()
        .expect("sizes")
        .iter()
        .map(|s| (s[0].as_u64().expect("width"), s[1].as_u64().expect("height")))
        .collect()
}

/// Presses Generate and waits until the task has succeeded and its `count` result images
/// have loaded; returns their natural sizes.
fn generate(session: &Session, count: usize) -> Vec<(u64, u64)> {
    session.click("#generate");
    session.wait_until(
        "the task to succeed",
        "return document.querySelector('#run-status').dataset.state === 'succeeded';",
        WAIT,
    );
    wait_images(session, "#results img.after", count)
}

fn text(session: &Session, css: &str) -> String {
    session
        .exec("return document.querySelector(arguments[0]).textContent;", json!([css]))
        .as_str()
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Records every text `#run-status` shows from now on into `window.statuses`.
fn record_statuses(session: &Session) {
    session.exec(
        "window.statuses = [];\
         new MutationObserver(() => window.statuses.push(document.querySelector('#run-status').textContent))\
           .observe(document.querySelector('#run-status'), {childList: true, characterData: true, subtree: true});",
        json!([]),
    );
}

fn statuses(session: &Session) -> Vec<String> {
    let seen = session.exec("return window.statuses;", json!([]));
    seen.as_array()
        .expect("statuses")
        .iter()
        .map(|s| s.as_str().unwrap_or_default().to_string())
        .collect()
}

/// Console entries at level SEVERE, as `(source, message)`.
fn console_errors(session: &Session) -> Vec<(String, String)> {
    session
        .browser_log()
        .into_iter()
        .filter(|e| e["level"] == "SEVERE")
        .map(|e| {
            (
                e["source"].as_str().unwrap_or_default().to_string(),
                e["message"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Every visible control has an accessible name.
fn unlabelled_controls(session: &Session) -> Value {
    session.exec(
        "const named = (el) => (el.labels && [...el.labels].some(l => l.textContent.trim()))\
           || el.getAttribute('aria-label') || el.getAttribute('aria-labelledby')\
           || (el.tagName === 'BUTTON' && el.textContent.trim()) || el.title;\
         return [...document.querySelectorAll('input, select, textarea, button, [role=slider], [role=tab]')]\
           .filter(el => !named(el)).map(el => el.outerHTML.slice(0, 120));",
        json!([]),
    )
}

/// Whether the page is wider than the viewport (a phone would scroll sideways).
fn overflows(session: &Session) -> bool {
    session.exec("return document.documentElement.scrollWidth > window.innerWidth + 1;", json!([]))
        == true
}

#[test]
fn background_and_expand_in_chromium() {
    let Some(browser) = browser() else { return };
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let shots = screenshot_dir();
    let pg = open_playground(&browser, &[]);
    let s = &pg.session;

    // The scene picker shows a rendered thumbnail of every scene.
    let scenes = pg.api.get_ok("/v1/scenes");
    let scene_count = scenes["scenes"].as_array().expect("scenes").len();
    wait_images(s, "#scene-list img", scene_count);

    // Background: a cut-out, a prompt, a scene, two images from seed 42.
    let cutout = example("bottle-cutout.png");
    s.upload("#bg-file", &cutout);
    let preview = wait_images(s, "#bg-preview", 1);
    assert_eq!(preview, [(640, 640)]);
    s.send_keys("#bg-prompt", "bottle on warm paper");
    s.click("label[data-scene='warm-paper'] .scene-card");
    s.click("#panel-background details summary");
    s.fill("#bg-n", "2");
    s.fill("#bg-seed", "42");
    s.fill("#bg-width", "480");
    s.fill("#bg-height", "360");
    s.click("#bg-engine option[value='studio']");
    let unlabelled = unlabelled_controls(s);
    assert_eq!(unlabelled, json!([]), "controls without a label");
    record_statuses(s);
    let sizes = generate(s, 2);
    assert_eq!(sizes, [(480, 360), (480, 360)]);
    let done = text(s, "#run-status");
    assert!(done.starts_with("Done"), "{done}");
    let seen = statuses(s);
    assert!(seen.iter().any(|t| t.starts_with("Task ")), "{seen:?}");

    // Each result shows its seed, a download link to the signed URL and a comparison.
    let seeds: Vec<String> =
        (1..=2).map(|i| text(s, &format!("#results .result:nth-child({i}) .seed"))).collect();
    assert_eq!(seeds, ["Seed 42", "Seed 43"]);
    let link = s.exec(
        "const a = document.querySelector('#results .result a[download]');\
         const img = document.querySelector('#results .result img.after');\
         return [a.href === img.src, a.getAttribute('download'), img.src.includes('/files/') && img.src.includes('sig=')];",
        json!([]),
    );
    assert_eq!(link[0], true, "{link}");
    assert!(link[1].as_str().is_some_and(|d| d.ends_with("-1.png")), "{link}");
    assert_eq!(link[2], true, "results load from signed URLs: {link}");
    s.send_keys("#results .result:nth-child(1) input[type=range]", "\u{E012}\u{E012}\u{E012}");
    let split = s.exec(
        "return document.querySelector('#results .result .compare').style.getPropertyValue('--split');",
        json!([]),
    );
    assert_eq!(split, "47%", "the comparison slider moves with the keyboard");
    s.click("#results .result:nth-child(2) .use-seed");
    let seed = s.exec("return document.querySelector('#bg-seed').value;", json!([]));
    assert_eq!(seed, "43");

    s.screenshot(DESKTOP, &shots.join("background-desktop.png"));
    s.set_window(PHONE, 900);
    assert!(s.viewport_width() <= u64::from(PHONE), "viewport {}", s.viewport_width());
    assert!(!overflows(s), "the background page scrolls sideways at phone width");
    s.screenshot(PHONE, &shots.join("background-phone.png"));
    s.set_window(DESKTOP, 900);

    // Expand: drag the right edge out and the top edge up.
    s.click("#tab-expand");
    let photo = example("coffee.jpg");
    s.upload("#ex-file", &photo);
    wait_images(s, "#ex-photo", 1);
    s.wait_until("the frame", "return !document.querySelector('#ex-frame').hidden;", WAIT);
    s.drag(".handle.right", 60, 0);
    s.drag(".handle.up", 0, -40);
    // The edges are sliders for the keyboard too: one step down.
    s.send_keys(".handle.down", "\u{E013}");
    let ratio = |side: &str| -> f64 {
        let v = s.exec(&format!("return document.querySelector('#ex-{side}').value;"), json!([]));
        v.as_str().and_then(|t| t.parse().ok()).unwrap_or_else(|| panic!("ratio {side}: {v}"))
    };
    let (up, down, left, right) = (ratio("up"), ratio("down"), ratio("left"), ratio("right"));
    assert!(right > 0.1 && up > 0.1, "dragged ratios: up {up}, right {right}");
    assert_eq!(down, 0.05, "one arrow key step");
    assert_eq!(left, 0.0, "an untouched edge stays at 0");
    let announced = text(s, "#ex-result-size");
    s.fill("#ex-n", "3");
    s.click("#ex-engine option[value='patch']");
    record_statuses(s);
    let sizes = generate(s, 3);
    assert_eq!(
        announced,
        format!("{} × {} px", sizes[0].0, sizes[0].1),
        "the size announced while dragging is the size that came back"
    );
    // The photo is 600 x 400; each new strip is its ratio of the side, rounded.
    let strip = |ratio: f64, side: f64| (ratio * side).round() as u64;
    assert_eq!(sizes[0], (600 + strip(right, 600.0), 400 + strip(up, 400.0) + strip(down, 400.0)));
    let seen = statuses(s);
    assert!(
        seen.iter().any(|t| t.starts_with("Running on patch · step ")),
        "per-step progress from the event stream: {seen:?}"
    );
    s.screenshot(DESKTOP, &shots.join("expand-desktop.png"));
    s.set_window(PHONE, 900);
    assert!(!overflows(s), "the expand page scrolls sideways at phone width");
    s.screenshot(PHONE, &shots.join("expand-phone.png"));
    s.set_window(DESKTOP, 900);

    // A file that is not an image: the API's message and code, as the API gives them.
    let bad = pg.setup.dir.path().join("not-an-image.png");
    std::fs::write(&bad, b"these bytes are not a picture").expect("writes the bad file");
    let expected = {
        let form = reqwest::blocking::multipart::Form::new()
            .text("prompt", "bottle on warm paper")
            .file("image", &bad)
            .expect("multipart");
        let response = pg
            .api
            .http
            .post(format!("{}/v1/backgrounds", pg.server.base))
            .bearer_auth(&pg.api.key)
            .multipart(form)
            .send()
            .expect("submit");
        assert_eq!(response.status(), 400);
        response.json::<Value>().expect("error body")
    };
    s.click("#tab-background");
    s.upload("#bg-file", &bad);
    s.click("#generate");
    s.wait_until("the error", "return !document.querySelector('#run-error').hidden;", WAIT);
    assert_eq!(text(s, "#run-error .code"), expected["code"].as_str().expect("code"));
    assert_eq!(text(s, "#run-error .message"), expected["message"].as_str().expect("message"));
    s.screenshot(PHONE, &shots.join("error-phone.png"));

    // The history lists the key's tasks with thumbnails of their results.
    s.exec("document.querySelector('#history').scrollIntoView();", json!([]));
    let listed = pg.api.get_ok("/v1/tasks");
    assert_eq!(listed["tasks"].as_array().expect("tasks").len(), 2, "{listed}");
    wait_images(s, "#history .history-item img.thumb", 2);

    // No console errors but the network error of the refused bad file.
    let errors = console_errors(s);
    let unexpected: Vec<_> = errors
        .iter()
        .filter(|(source, message)| {
            !(source == "network" && message.contains("/v1/backgrounds") && message.contains("400"))
        })
        .collect();
    assert!(unexpected.is_empty(), "console errors: {unexpected:?}");
    assert_eq!(errors.len(), 1, "the bad file's 400 is logged once: {errors:?}");
}

#[test]
fn a_queued_task_is_canceled_in_chromium() {
    let Some(browser) = browser() else { return };
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let shots = screenshot_dir();
    // No worker: tasks wait in the queue until they are canceled.
    let pg = open_playground(&browser, &["--no-worker"]);
    let s = &pg.session;
    let cutout_b64 = common::base64(&std::fs::read(example("bottle-cutout.png")).expect("cut-out"));
    for _ in 0..2 {
        pg.api.submit("/v1/backgrounds", &json!({"image_base64": cutout_b64, "scene": "concrete"}));
    }

    s.upload("#bg-file", &example("bottle-cutout.png"));
    wait_images(s, "#bg-preview", 1);
    s.send_keys("#bg-prompt", "on concrete");
    s.click("#generate");
    s.wait_until(
        "the queue position",
        "return document.querySelector('#run-status').textContent === 'Queued · 2 ahead.';",
        WAIT,
    );
    s.screenshot(DESKTOP, &shots.join("queued-desktop.png"));
    s.click("#cancel");
    s.wait_until(
        "the task to be canceled",
        "return document.querySelector('#run-status').textContent === 'Canceled.';",
        WAIT,
    );
    let newest = &pg.api.get_ok("/v1/tasks?limit=1")["tasks"][0];
    assert_eq!(newest["state"], "canceled", "{newest}");
    s.wait_until(
        "the canceled task in the history",
        "return document.querySelector('#history .history-item .state.canceled') !== null;",
        WAIT,
    );
    let errors = console_errors(s);
    assert!(errors.is_empty(), "console errors: {errors:?}");
}

#[test]
fn a_product_photo_becomes_a_background_in_chromium() {
    let Some(browser) = browser() else { return };
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let pg = open_playground(&browser, &[]);
    let s = &pg.session;
    s.upload("#bg-file", &example("coffee.jpg"));
    assert_eq!(wait_images(s, "#bg-preview", 1), [(600, 400)]);
    s.send_keys("#bg-prompt", "cup on pastel pink");
    s.click("#panel-background details summary");
    s.fill("#bg-n", "1");
    s.click("#bg-engine option[value='studio']");
    assert_eq!(generate(s, 1), [(600, 400)]);
    let tasks = pg.api.get_ok("/v1/tasks");
    let id = tasks["tasks"][0]["id"].as_str().expect("the task's id").to_string();
    let task = pg.api.get_ok(&format!("/v1/tasks/{id}"));
    assert_eq!(task["state"], "succeeded", "{task}");
    assert!(task.to_string().contains("u2netp"), "the photo was cut out: {task}");
    assert!(console_errors(s).is_empty(), "console errors: {:?}", console_errors(s));
}
