//! Hostile clients against the real `backdrop serve` on loopback: what a request can cost
//! before it is authenticated, and what slow or silent clients can hold.
//!
//! - `unauthenticated_bodies_are_refused_before_they_are_read`: clients announce 47 MB
//!   JSON bodies without a key (three on the native route at once, one on each vendor
//!   submit route whose key travels in a header) and send none of them; each gets 401 at
//!   once, so the server read no body before it checked the key.
//! - `an_authenticated_body_is_parsed_straight_into_its_request`: a 40 MB body of small
//!   JSON values (a `serde_json::Value` tree of it would take ~0.6 GB) is refused with
//!   `invalid_parameter` while peak memory stays within a few times the body.
//! - `trickling_and_silent_connections_are_closed_after_the_header_timeout`: 40 clients
//!   trickling header lines and 40 saying nothing are all disconnected once
//!   `header_read_timeout_secs` passes; the server still answers.
//! - `connections_beyond_the_cap_wait_until_one_closes`: with `max_connections = 4` held
//!   by idle clients, a fifth is not served until they leave.
//! - `a_trickled_body_gets_request_timeout`: a body sent a byte at a time is cut off with
//!   408 `request_timeout` after `request_timeout_secs`.
//! - `event_streams_are_capped_per_key`: `max_key_streams` event streams per key, 429
//!   `too_many_streams` beyond, the slot back once a stream closes.

mod common;

use common::{Api, Setup};
use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Peak-memory figures are per server process; one server at a time keeps them honest.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The process's peak resident memory (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("a VmHWM line");
    let kb: u64 = line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("kB");
    kb * 1024
}

fn connect(base: &str) -> TcpStream {
    let stream = TcpStream::connect(base.trim_start_matches("http://")).expect("connects");
    stream.set_read_timeout(Some(Duration::from_secs(15))).expect("read timeout");
    stream
}

/// Reads until the end of a response head (or EOF); the status code, or `None` when the
/// connection ended without one.
fn read_status(stream: &mut TcpStream) -> Result<Option<u16>, std::io::Error> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    Ok(text.split_whitespace().nth(1).and_then(|code| code.parse().ok()))
}

/// True when the server has closed `stream` (EOF or reset), false when it still waits.
fn closed_by_server(stream: &TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).expect("read timeout");
    let mut reader = stream;
    let mut buf = [0u8; 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // a 408/400 answer before the close is fine
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// A JSON array of `len` bytes made of tiny values: cheap as bytes, ~16x as a tree.
fn tiny_values(len: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(len);
    body.extend_from_slice(b"[0");
    while body.len() + 3 < len {
        body.extend_from_slice(b",0");
    }
    body.push(b']');
    body
}

#[test]
fn unauthenticated_bodies_are_refused_before_they_are_read() {
    let _serial = serial();
    let setup = Setup::new("", &[]);
    let server = setup.start_server("api", &[]);
    // The native route three times at once, then each vendor route whose key travels
    // in a header (PicPik signs its body, so it must read it: its size is capped).
    let paths: [&'static str; 7] = [
        "/v1/backgrounds",
        "/v1/backgrounds",
        "/v1/backgrounds",
        "/v1/expansions",
        "/api/v1/paintAsync",
        "/api/tasks/visual/background",
        "/v1/images/editing/expand",
    ];
    let clients: Vec<_> = paths
        .iter()
        .map(|&path| {
            let base = server.base.clone();
            std::thread::spawn(move || {
                let mut stream = connect(&base);
                let announced: usize = 47 * 1024 * 1024;
                let head = format!(
                    "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {announced}\r\n\r\n"
                );
                stream.write_all(head.as_bytes()).expect("writes the head");
                let started = Instant::now();
                // No byte of the body is ever sent: an answer proves none was needed.
                let status = read_status(&mut stream);
                (status.ok().flatten(), started.elapsed())
            })
        })
        .collect();
    for (client, path) in clients.into_iter().zip(paths) {
        let (status, took) = client.join().expect("client thread");
        assert_eq!(status, Some(401), "{path}: an unauthenticated submit is answered 401 at once");
        assert!(took < Duration::from_secs(10), "{path}: the 401 waited for the body ({took:?})");
    }
}

#[test]
fn an_authenticated_body_is_parsed_straight_into_its_request() {
    let _serial = serial();
    let setup = Setup::new("", &[]);
    let (_, key) = setup.create_key(100, &[]);
    let server = setup.start_server("api", &[]);
    let before = peak_rss(server.proc.id());
    let mut body = br#"{"prompt": "bottle on paper", "image_url": "#.to_vec();
    body.extend_from_slice(&tiny_values(40 * 1024 * 1024));
    body.push(b'}');
    let http = Client::builder().timeout(Duration::from_secs(60)).build().expect("client");
    let resp = http
        .post(format!("{}/v1/backgrounds", server.base))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .expect("the server answers");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let answer: Value = resp.json().expect("a JSON error");
    assert_eq!(answer["code"], "invalid_parameter", "{answer}");
    assert!(answer["message"].as_str().unwrap_or("").contains("string"), "{answer}");
    let grown = peak_rss(server.proc.id()).saturating_sub(before);
    // The body itself is held once (40 MB, plus the reader's buffer growth); a JSON tree
    // of it would be ~0.6 GB.
    assert!(grown < 200 << 20, "peak memory grew {} MB for a 40 MB body", grown >> 20);
}

#[test]
fn trickling_and_silent_connections_are_closed_after_the_header_timeout() {
    let _serial = serial();
    let setup = Setup::new("[server]\nheader_read_timeout_secs = 1\n", &[]);
    let server = setup.start_server("api", &[]);
    let mut trickling: Vec<TcpStream> = (0..40).map(|_| connect(&server.base)).collect();
    let silent: Vec<TcpStream> = (0..40).map(|_| connect(&server.base)).collect();
    for stream in &mut trickling {
        let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\n");
    }
    // Four seconds of one header line every 250 ms: never a complete head.
    let until = Instant::now() + Duration::from_secs(4);
    let mut line = 0;
    while Instant::now() < until {
        for stream in &mut trickling {
            let _ = stream.write_all(format!("X-Slow-{line}: 1\r\n").as_bytes());
        }
        line += 1;
        std::thread::sleep(Duration::from_millis(250));
    }
    let open_trickling =
        trickling.iter().filter(|s| !closed_by_server(s, Duration::from_millis(500))).count();
    let open_silent =
        silent.iter().filter(|s| !closed_by_server(s, Duration::from_millis(500))).count();
    assert_eq!(open_trickling, 0, "trickling connections still open after 4 s");
    assert_eq!(open_silent, 0, "silent connections still open after 4 s");
    let api = Api::new(&server.base, "none");
    assert_eq!(api.get("/healthz").0, StatusCode::OK, "the server still answers");
}

#[test]
fn connections_beyond_the_cap_wait_until_one_closes() {
    let _serial = serial();
    let setup = Setup::new("[server]\nmax_connections = 4\nheader_read_timeout_secs = 30\n", &[]);
    let server = setup.start_server("api", &[]);
    // start_server's readiness client is gone; let the server see its connection close.
    std::thread::sleep(Duration::from_millis(300));
    let holders: Vec<TcpStream> = (0..4).map(|_| connect(&server.base)).collect();
    std::thread::sleep(Duration::from_millis(200));
    let quick = Client::builder().timeout(Duration::from_secs(2)).build().expect("client");
    let at_cap = quick.get(format!("{}/healthz", server.base)).send();
    assert!(at_cap.is_err(), "a fifth connection was served beyond max_connections = 4");
    drop(holders);
    let resp = quick.get(format!("{}/healthz", server.base)).send().expect("served once freed");
    assert_eq!(resp.status(), StatusCode::OK);
}

#[test]
fn a_trickled_body_gets_request_timeout() {
    let _serial = serial();
    let setup = Setup::new("[server]\nrequest_timeout_secs = 1\n", &[]);
    let (_, key) = setup.create_key(100, &[]);
    let server = setup.start_server("api", &[]);
    let mut stream = connect(&server.base);
    let head = format!(
        "POST /v1/backgrounds HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{"
    );
    stream.write_all(head.as_bytes()).expect("writes the head");
    let started = Instant::now();
    let writer = stream.try_clone().expect("clone");
    let trickle = std::thread::spawn(move || {
        let mut writer = writer;
        for _ in 0..40 {
            if writer.write_all(b" ").is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let status = read_status(&mut stream).expect("an answer");
    assert_eq!(status, Some(408), "a body trickled past request_timeout_secs");
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    drop(stream);
    let _ = trickle.join();
}

#[test]
fn event_streams_are_capped_per_key() {
    let _serial = serial();
    let setup = Setup::new("[limits]\nmax_key_streams = 2\n", &[]);
    let (_, key) = setup.create_key(100, &[]);
    let (_, other) = setup.create_key(100, &[]);
    // No worker: the task stays queued, so its event stream stays open.
    let server = setup.start_server("api", &["--no-worker"]);
    let api = Api::new(&server.base, &key);
    let png = std::fs::read(common::example("bottle-cutout.png")).expect("example");
    let id = api.submit(
        "/v1/backgrounds",
        &json!({"image_base64": common::base64(&png), "prompt": "bottle", "engine": "studio"}),
    );
    let http = Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
    let open = |key: &str| {
        http.get(format!("{}/v1/tasks/{id}/events", server.base))
            .bearer_auth(key)
            .send()
            .expect("the server answers")
    };
    let first = open(&key);
    let second = open(&key);
    assert_eq!((first.status(), second.status()), (StatusCode::OK, StatusCode::OK));
    let third = open(&key);
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    let answer: Value = third.json().expect("a JSON error");
    assert_eq!(answer["code"], "too_many_streams", "{answer}");
    // Another key's slots are its own: it is refused for not owning the task (403), not
    // for this key's streams (429).
    assert_eq!(open(&other).status(), StatusCode::FORBIDDEN);
    drop(first);
    // The server notices the closed stream at its next event or keep-alive write.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let again = open(&key);
        if again.status() == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "the closed stream's slot never came back");
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(second);
}
