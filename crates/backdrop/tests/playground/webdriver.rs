//! A small W3C WebDriver client: JSON over HTTP to a chromedriver child process, enough
//! to drive the playground like a user (navigate, find, click, type, upload, drag,
//! run scripts, screenshots, the browser's console log).

use base64::Engine as _;
use reqwest::blocking::Client;
use serde_json::{json, Value};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The key W3C WebDriver names an element reference by.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The Enter key, for `send_keys`.
pub const ENTER: &str = "\u{E007}";

/// Where the browser and its driver are; from `BACKDROP_TEST_CHROMEDRIVER` and
/// `BACKDROP_TEST_CHROMIUM`, else Debian's paths.
pub struct Browser {
    /// chromedriver.
    pub driver: PathBuf,
    /// Chromium.
    pub chromium: PathBuf,
}

impl Browser {
    /// The installed browser, or why there is none.
    pub fn find() -> Result<Browser, String> {
        let path = |var: &str, default: &str| {
            PathBuf::from(
                std::env::var(var).ok().filter(|v| !v.is_empty()).unwrap_or(default.into()),
            )
        };
        let driver = path("BACKDROP_TEST_CHROMEDRIVER", "/usr/bin/chromedriver");
        let chromium = path("BACKDROP_TEST_CHROMIUM", "/usr/bin/chromium");
        for (what, path) in [("chromedriver", &driver), ("Chromium", &chromium)] {
            if !path.is_file() {
                return Err(format!(
                    "{what} not found at {} (apt-get install chromium chromium-driver, or run tools/test)",
                    path.display()
                ));
            }
        }
        Ok(Browser { driver, chromium })
    }
}

/// A running chromedriver, killed when dropped.
pub struct Driver {
    child: Child,
    base: String,
    http: Client,
}

impl Driver {
    /// Starts chromedriver on a free loopback port, logging to `log`, and waits until its
    /// `/status` says it is ready.
    pub fn start(browser: &Browser, log: &Path) -> Driver {
        let port = super::common::free_port();
        let child = Command::new(&browser.driver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(File::create(log).expect("driver log"))
            .stderr(Stdio::inherit())
            .spawn()
            .expect("chromedriver starts");
        let http = Client::builder().timeout(Duration::from_secs(120)).build().expect("client");
        let mut driver = Driver { child, base: format!("http://127.0.0.1:{port}"), http };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = driver.child.try_wait() {
                panic!("chromedriver exited ({status}); see {}", log.display());
            }
            let ready = driver
                .http
                .get(format!("{}/status", driver.base))
                .send()
                .ok()
                .and_then(|r| r.json::<Value>().ok())
                .is_some_and(|v| v["value"]["ready"] == true);
            if ready {
                return driver;
            }
            assert!(Instant::now() < deadline, "chromedriver not ready; see {}", log.display());
            std::thread::sleep(super::common::POLL);
        }
    }

    /// A new headless Chromium session with a fresh profile in `profile`, recording the
    /// browser's console log.
    pub fn session(&self, browser: &Browser, profile: &Path) -> Session {
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,900",
        ]
        .iter()
        .map(|a| a.to_string())
        .chain([format!("--user-data-dir={}", profile.display())])
        .collect::<Vec<_>>();
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": browser.chromium, "args": args},
            "goog:loggingPrefs": {"browser": "ALL"},
            "timeouts": {"script": 60_000, "pageLoad": 60_000, "implicit": 0},
        }}});
        let answer = call(&self.http, "POST", &format!("{}/session", self.base), &capabilities)
            .unwrap_or_else(|e| panic!("no browser session: {e}"));
        let id = answer["sessionId"].as_str().expect("a session id").to_string();
        Session { http: self.http.clone(), url: format!("{}/session/{id}", self.base) }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One WebDriver command; the answer's `value`, or the driver's error.
fn call(http: &Client, method: &str, url: &str, body: &Value) -> Result<Value, String> {
    let request = match method {
        "GET" => http.get(url),
        "DELETE" => http.delete(url),
        _ => http.post(url).json(body),
    };
    let response = request.send().map_err(|e| format!("{method} {url}: {e}"))?;
    let status = response.status();
    let answer: Value = response.json().map_err(|e| format!("{method} {url}: {e}"))?;
    if status.is_success() {
        Ok(answer["value"].clone())
    } else {
        Err(format!("{method} {url}: {status} {}", answer["value"]))
    }
}

/// A browser session, ended when dropped.
pub struct Session {
    http: Client,
    url: String,
}

/// An element reference.
#[derive(Clone)]
pub struct Element(String);

impl Session {
    fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        call(&self.http, method, &format!("{}{path}", self.url), &body)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Opens `url` and waits for the load event.
    pub fn goto(&self, url: &str) {
        self.cmd("POST", "/url", json!({"url": url}));
    }

    /// The element `css` matches; panics if none does.
    pub fn find(&self, css: &str) -> Element {
        let value = self.cmd("POST", "/element", json!({"using": "css selector", "value": css}));
        Element(value[ELEMENT].as_str().expect("an element").to_string())
    }

    /// Clicks the element `css` matches (scrolled into view, as a user would).
    pub fn click(&self, css: &str) {
        let Element(id) = self.find(css);
        self.cmd("POST", &format!("/element/{id}/click"), json!({}));
    }

    /// Types `text` into the element `css` matches.
    pub fn send_keys(&self, css: &str, text: &str) {
        let Element(id) = self.find(css);
        self.cmd("POST", &format!("/element/{id}/value"), json!({"text": text}));
    }

    /// Chooses the file at `path` in the file input `css` (chromedriver wants a canonical
    /// path).
    pub fn upload(&self, css: &str, path: &Path) {
        let path = path.canonicalize().unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        self.send_keys(css, path.to_str().expect("a UTF-8 path"));
    }

    /// Empties a text field.
    pub fn clear(&self, css: &str) {
        let Element(id) = self.find(css);
        self.cmd("POST", &format!("/element/{id}/clear"), json!({}));
    }

    /// Empties a field and types `text` into it.
    pub fn fill(&self, css: &str, text: &str) {
        self.clear(css);
        self.send_keys(css, text);
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value.
    pub fn exec(&self, script: &str, args: Value) -> Value {
        self.cmd("POST", "/execute/sync", json!({"script": script, "args": args}))
    }

    /// Runs `script` until it returns something truthy; returns that. Panics after
    /// `within` with `what` and the page's status line.
    pub fn wait_until(&self, what: &str, script: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let value = self.exec(script, json!([]));
            let truthy = match &value {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return value;
            }
            if Instant::now() >= deadline {
                let status = self.exec(
                    "const s = document.querySelector('#run-status'); const e = document.querySelector('#run-error');\
                     return (s ? s.textContent : '') + ' | ' + (e ? e.textContent : '');",
                    json!([]),
                );
                panic!("timed out waiting for {what}; the page says: {status}");
            }
            std::thread::sleep(super::common::POLL);
        }
    }

    /// Drags from the centre of the element `css` by `(dx, dy)` CSS pixels with a mouse,
    /// in several moves, as a hand would.
    pub fn drag(&self, css: &str, dx: i64, dy: i64) {
        let Element(id) = self.find(css);
        let origin = json!({ELEMENT: id});
        let mut actions = vec![
            json!({"type": "pointerMove", "duration": 0, "origin": origin, "x": 0, "y": 0}),
            json!({"type": "pointerDown", "button": 0}),
        ];
        for i in 1..=5 {
            actions.push(json!({"type": "pointerMove", "duration": 30, "origin": "pointer",
                                "x": dx / 5 + if i == 5 { dx % 5 } else { 0 },
                                "y": dy / 5 + if i == 5 { dy % 5 } else { 0 }}));
        }
        actions.push(json!({"type": "pointerUp", "button": 0}));
        self.cmd(
            "POST",
            "/actions",
            json!({"actions": [{"type": "pointer", "id": "mouse",
                                "parameters": {"pointerType": "mouse"}, "actions": actions}]}),
        );
        self.cmd("DELETE", "/actions", json!({}));
    }

    /// Sets the window's outer size in CSS pixels.
    pub fn set_window(&self, width: u32, height: u32) {
        self.cmd("POST", "/window/rect", json!({"width": width, "height": height}));
    }

    /// The viewport's width in CSS pixels.
    pub fn viewport_width(&self) -> u64 {
        self.exec("return window.innerWidth;", json!([])).as_u64().expect("a width")
    }

    /// A screenshot of the whole page at `width` CSS pixels, written to `path` (Chrome's
    /// DevTools capture through chromedriver, which sees beyond the viewport).
    pub fn screenshot(&self, width: u32, path: &Path) {
        self.set_window(width, 900);
        let height = self
            .exec("window.scrollTo(0, 0); return document.documentElement.scrollHeight;", json!([]))
            .as_u64()
            .expect("page height");
        let shot = self.cmd(
            "POST",
            "/goog/cdp/execute",
            json!({"cmd": "Page.captureScreenshot", "params": {
                "format": "png", "captureBeyondViewport": true,
                "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
            }}),
        );
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("base64 PNG"))
            .expect("the screenshot decodes");
        std::fs::write(path, bytes).expect("writes the screenshot");
    }

    /// The browser's console log since the last call (chromedriver's log endpoint).
    pub fn browser_log(&self) -> Vec<Value> {
        self.cmd("POST", "/se/log", json!({"type": "browser"}))
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = call(&self.http, "DELETE", &self.url, &json!({}));
    }
}
