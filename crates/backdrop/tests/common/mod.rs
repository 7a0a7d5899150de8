//! Helpers for driving the real `backdrop` binary as a service: child processes that are
//! killed when dropped, loopback ports, readiness polling, keys and a small API client.

#![allow(dead_code)]

use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde_json::Value;
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_backdrop");

/// Between two polls of something that is expected to change.
pub const POLL: Duration = Duration::from_millis(50);

/// The repository's example inputs.
pub fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples").join(name)
}

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(TABLE[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A port that was free a moment ago (the server may still lose a race for it; starting
/// retries with another).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds an ephemeral port");
    listener.local_addr().expect("local address").port()
}

/// One test's environment: a temporary folder holding the configuration file, the
/// children's logs and (usually) the data directory, and the variables every child gets.
pub struct Setup {
    /// Temporary folder, deleted on drop.
    pub dir: TempDir,
    /// The configuration file passed with `--config`.
    pub config: PathBuf,
    /// Variables set for every child (on top of an environment without `BACKDROP_*`).
    pub env: Vec<(String, String)>,
}

impl Setup {
    /// A folder with `config` as the configuration file.
    pub fn new(config: &str, env: &[(&str, &str)]) -> Setup {
        let dir = TempDir::new().expect("temporary folder");
        let path = dir.path().join("backdrop.toml");
        std::fs::write(&path, config).expect("writes the configuration");
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Setup { dir, config: path, env }
    }

    /// The data directory inside the folder.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A command for the binary, isolated from the caller's `BACKDROP_*` variables and
    /// working directory.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("BACKDROP_") {
                cmd.env_remove(name);
            }
        }
        cmd.current_dir(self.dir.path())
            .env("NO_COLOR", "1")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .arg("--config")
            .arg(&self.config)
            .args(args);
        cmd
    }

    /// Starts a long-running child; its stdout and stderr go to `NAME.out` / `NAME.err`.
    pub fn spawn(&self, name: &str, args: &[&str]) -> Proc {
        let out = self.dir.path().join(format!("{name}.out"));
        let err = self.dir.path().join(format!("{name}.err"));
        let child = self
            .command(args)
            .stdin(Stdio::null())
            .stdout(File::create(&out).expect("stdout file"))
            .stderr(File::create(&err).expect("stderr file"))
            .spawn()
            .expect("the binary starts");
        Proc { name: name.to_string(), child, out, err }
    }

    /// `backdrop keys create`: the key's id and plaintext.
    pub fn create_key(&self, credits: i64, service_args: &[&str]) -> (i64, String) {
        let credits = credits.to_string();
        let mut args = vec!["keys", "create", "--name", "test", "--credits", &credits];
        args.extend_from_slice(service_args);
        let out = self.command(&args).output().expect("keys create runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "keys create failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut lines = stdout.lines();
        let first = lines.next().expect("a first line");
        let id = first
            .strip_prefix("created key ")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("no key id in '{first}'"));
        let plaintext = lines.next().expect("the key on the second line").trim().to_string();
        (id, plaintext)
    }

    /// Starts `backdrop serve` on a free loopback port (retrying another port if the first
    /// was taken meanwhile) and waits until `/readyz` answers 200.
    pub fn start_server(&self, name: &str, args: &[&str]) -> Server {
        let mut last = String::new();
        for attempt in 0..5 {
            let port = free_port();
            let bind = format!("127.0.0.1:{port}");
            let mut full = vec!["serve", "--bind", &bind];
            full.extend_from_slice(args);
            let mut proc = self.spawn(&format!("{name}-{attempt}"), &full);
            let base = format!("http://{bind}");
            match wait_ready(&mut proc, &base, Duration::from_secs(60)) {
                Ok(()) => return Server { proc, base },
                Err(e) if e.contains("cannot listen") => last = e,
                Err(e) => panic!("{name} did not become ready: {e}"),
            }
        }
        panic!("{name} found no free port: {last}");
    }
}

/// A child process, killed (SIGKILL) and reaped when dropped.
pub struct Proc {
    /// Label.
    pub name: String,
    child: std::process::Child,
    out: PathBuf,
    err: PathBuf,
}

impl Proc {
    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL on unix: no shutdown code runs.
    pub fn kill_9(&mut self) {
        self.child.kill().expect("kills the child");
        self.child.wait().expect("reaps the child");
    }

    /// The exit status if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits for the process to exit by itself; panics if it is still running after
    /// `within`.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} still runs after {within:?}: {}",
                self.name,
                self.stderr()
            );
            std::thread::sleep(POLL);
        }
    }

    /// What it printed on stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// What it logged on stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Task ids of the worker's "running" log lines, one per claim, in order.
    pub fn claims(&self, uids: &[String]) -> Vec<String> {
        let mut claimed = Vec::new();
        for line in self.stderr().lines().filter(|l| l.contains(" running ")) {
            if let Some(uid) = uids.iter().find(|uid| line.contains(uid.as_str())) {
                claimed.push(uid.clone());
            }
        }
        claimed
    }

    /// Waits until stdout contains `text`.
    pub fn wait_stdout(&mut self, text: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.stdout().contains(text) {
            if let Some(status) = self.exited() {
                panic!(
                    "{} exited ({status}) before printing '{text}': {}",
                    self.name,
                    self.stderr()
                );
            }
            assert!(Instant::now() < deadline, "{} did not print '{text}' in time", self.name);
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `backdrop serve`.
pub struct Server {
    /// The process.
    pub proc: Proc,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

fn wait_ready(proc: &mut Proc, base: &str, within: Duration) -> Result<(), String> {
    let http = Client::builder().timeout(Duration::from_secs(2)).build().expect("client");
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = proc.exited() {
            return Err(format!("exited with {status}: {}", proc.stderr()));
        }
        if let Ok(resp) = http.get(format!("{base}/readyz")).send() {
            if resp.status() == StatusCode::OK {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            return Err(format!("no 200 from {base}/readyz in {within:?}: {}", proc.stderr()));
        }
        std::thread::sleep(POLL);
    }
}

/// The native API with one key.
pub struct Api {
    /// HTTP client (keep-alive).
    pub http: Client,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The key's plaintext.
    pub key: String,
}

impl Api {
    /// A client for `base` using `key`.
    pub fn new(base: &str, key: &str) -> Api {
        let http = Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
        Api { http, base: base.to_string(), key: key.to_string() }
    }

    /// GET a JSON route.
    pub fn get(&self, path: &str) -> (StatusCode, Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .send()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = resp.status();
        (status, resp.json().unwrap_or(Value::Null))
    }

    /// GET a route that must answer 200.
    pub fn get_ok(&self, path: &str) -> Value {
        let (status, body) = self.get(path);
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        body
    }

    /// POSTs a submit, waiting out 429 (rate limit) for up to 30 s; returns the task id.
    pub fn submit(&self, path: &str, body: &Value) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let resp = self
                .http
                .post(format!("{}{path}", self.base))
                .bearer_auth(&self.key)
                .json(body)
                .send()
                .unwrap_or_else(|e| panic!("POST {path}: {e}"));
            let status = resp.status();
            let answer: Value = resp.json().unwrap_or(Value::Null);
            if status == StatusCode::TOO_MANY_REQUESTS && Instant::now() < deadline {
                std::thread::sleep(POLL);
                continue;
            }
            assert_eq!(status, StatusCode::ACCEPTED, "POST {path}: {answer}");
            return answer["id"].as_str().expect("a task id").to_string();
        }
    }

    /// The task views of `uids`, once every one is terminal; panics at the deadline with
    /// the states seen.
    pub fn wait_terminal(&self, uids: &[String], within: Duration) -> HashMap<String, Value> {
        let deadline = Instant::now() + within;
        let mut done: HashMap<String, Value> = HashMap::new();
        loop {
            let mut pending = HashMap::new();
            for uid in uids {
                if done.contains_key(uid) {
                    continue;
                }
                let view = self.get_ok(&format!("/v1/tasks/{uid}"));
                let state = view["state"].as_str().unwrap_or_default().to_string();
                if matches!(state.as_str(), "succeeded" | "failed" | "canceled") {
                    done.insert(uid.clone(), view);
                } else {
                    pending.insert(uid.clone(), state);
                }
            }
            if pending.is_empty() {
                return done;
            }
            assert!(
                Instant::now() < deadline,
                "{} task(s) not terminal after {within:?}: {pending:?}",
                pending.len()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Downloads a signed result URL: it must answer 200 with an image; returns its size.
    pub fn download_image(&self, url: &str) -> (u32, u32) {
        let resp = self.http.get(url).send().unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert_eq!(resp.status(), StatusCode::OK, "GET {url}");
        let kind = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(kind.starts_with("image/"), "content type of {url}: {kind}");
        let bytes = resp.bytes().expect("body");
        let img = image::load_from_memory(&bytes).expect("the result decodes");
        (img.width(), img.height())
    }
}
