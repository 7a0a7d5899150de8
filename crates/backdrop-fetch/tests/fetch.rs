//! The fetcher against real HTTP servers on loopback.
//!
//! No test sends a packet beyond this machine: fixtures listen on 127.0.0.1, 127.0.0.2
//! and [::1] only, and the non-loopback destinations (10.0.0.1, 169.254.169.254) are
//! refused before a connection exists. That is asserted two ways: refused loopback
//! fixtures count zero connections, and refusals come back as `AddressRefused` (which
//! only the pre-connect check produces) well inside the time a connection attempt to an
//! unreachable address would take.

use backdrop_fetch::{FetchError, FetchPolicy, Fetcher, IpNet, Lookup, Resolver};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PNG: &[u8] =
    b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";
const JPEG: &[u8] = &[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F', 0, 1, 1, 0];
const WEBP: &[u8] =
    b"RIFF\x1a\0\0\0WEBPVP8L\x0d\0\0\0\x2f\0\0\0\x10\x07\x10\x11\x11\x88\x88\xfe\x07\0";

/// What a fixture answers to one request.
enum Reply {
    /// A complete response with `Content-Length`, then the connection closes.
    Full { status: u16, headers: Vec<(&'static str, String)>, body: Vec<u8> },
    /// Status line, headers (no `Content-Length`) and these body bytes, then nothing more
    /// while the connection stays open.
    ThenStall { headers: Vec<(&'static str, String)>, body: Vec<u8> },
    /// Reads the request and never answers.
    Silent,
}

fn ok(content_type: &str, body: &[u8]) -> Reply {
    Reply::Full {
        status: 200,
        headers: vec![("Content-Type", content_type.to_owned())],
        body: body.to_vec(),
    }
}

fn redirect(status: u16, location: impl Into<String>) -> Reply {
    Reply::Full { status, headers: vec![("Location", location.into())], body: Vec::new() }
}

type Handler = Arc<dyn Fn(&str) -> Reply + Send + Sync>;

/// A tiny HTTP/1.1 server on a loopback address that counts the connections it accepts.
struct Fixture {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
}

impl Fixture {
    /// Listens on `ip` (a loopback address) at a free port; `None` if the address cannot
    /// be bound on this machine (no IPv6, say).
    async fn start(
        ip: &str,
        handler: impl Fn(&str) -> Reply + Send + Sync + 'static,
    ) -> Option<Fixture> {
        Fixture::start_on(ip, 0, handler).await
    }

    /// [`Fixture::start`] on a given port.
    async fn start_on(
        ip: &str,
        port: u16,
        handler: impl Fn(&str) -> Reply + Send + Sync + 'static,
    ) -> Option<Fixture> {
        let listener = TcpListener::bind((ip, port)).await.ok()?;
        let addr = listener.local_addr().expect("local addr");
        assert!(addr.ip().is_loopback(), "fixtures stay on loopback");
        let connections = Arc::new(AtomicUsize::new(0));
        let handler: Handler = Arc::new(handler);
        let count = connections.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(answer(stream, handler.clone()));
            }
        });
        Some(Fixture { addr, connections })
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

async fn answer(mut stream: TcpStream, handler: Handler) {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    // Read a request body too (a POST's), so closing the connection does not reset it
    // under the client before it reads the answer.
    let head_len = request.windows(4).position(|w| w == b"\r\n\r\n").map_or(0, |i| i + 4);
    let content_length = String::from_utf8_lossy(&request[..head_len])
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0usize);
    while request.len() < head_len + content_length {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let request = String::from_utf8_lossy(&request);
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let head = |status: u16, headers: &[(&str, String)]| {
        let mut head = format!("HTTP/1.1 {status} Fixture\r\nConnection: close\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head
    };
    match handler(&path) {
        Reply::Full { status, headers, body } => {
            let mut out = head(status, &headers);
            out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
            let _ = stream.write_all(out.as_bytes()).await;
            let _ = stream.write_all(&body).await;
            let _ = stream.shutdown().await;
        }
        Reply::ThenStall { headers, body } => {
            let out = head(200, &headers) + "\r\n";
            let _ = stream.write_all(out.as_bytes()).await;
            let _ = stream.write_all(&body).await;
            let _ = stream.flush().await;
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        Reply::Silent => tokio::time::sleep(Duration::from_secs(60)).await,
    }
}

fn net(s: &str) -> IpNet {
    s.parse().expect("network")
}

/// A policy that allows only 127.0.0.1 (the usual fixture), with short limits.
fn allow_fixture() -> FetchPolicy {
    FetchPolicy {
        max_bytes: 1024 * 1024,
        timeout: Duration::from_secs(10),
        max_redirects: 3,
        allow: vec![net("127.0.0.1/32")],
    }
}

/// Fetches and expects a refusal of a non-loopback address, quickly: a real connection
/// attempt to 10.0.0.1 or 169.254.169.254 from here would hang or fail differently.
async fn assert_refused(fetcher: &Fetcher, url: &str, addr: &str) -> FetchError {
    let started = Instant::now();
    let err = fetcher.fetch(url).await.expect_err(url);
    assert!(
        matches!(&err, FetchError::AddressRefused { addr: a, .. } if a.to_string() == addr),
        "{url}: expected a refusal of {addr}, got {err:?}"
    );
    assert_eq!(err.code().as_str(), "url_refused");
    assert!(err.to_string().contains(addr), "the message names the address: {err}");
    assert!(started.elapsed() < Duration::from_secs(2), "refused before connecting");
    err
}

#[tokio::test]
async fn allow_listed_loopback_fixture_is_fetched() {
    let fixture = Fixture::start("127.0.0.1", |path| match path {
        "/a.png" => ok("image/png", PNG),
        // Image hosts often mislabel: the bytes decide.
        "/b" => ok("application/octet-stream", JPEG),
        "/c.webp" => ok("image/webp", WEBP),
        _ => Reply::Full { status: 404, headers: vec![], body: b"nope".to_vec() },
    })
    .await
    .expect("bind 127.0.0.1");
    let fetcher = Fetcher::new(allow_fixture());

    let fetched = fetcher.fetch(&fixture.url("/a.png")).await.expect("png");
    assert_eq!(fetched.bytes, PNG);
    assert_eq!(fetched.content_type, "image/png");
    assert_eq!(fetched.final_url.as_str(), fixture.url("/a.png"));

    let fetched = fetcher.fetch(&fixture.url("/b")).await.expect("jpeg");
    assert_eq!((fetched.content_type, fetched.bytes.as_slice()), ("image/jpeg", JPEG));
    let fetched = fetcher.fetch(&fixture.url("/c.webp")).await.expect("webp");
    assert_eq!((fetched.content_type, fetched.bytes.as_slice()), ("image/webp", WEBP));

    let err = fetcher.fetch(&fixture.url("/missing.png")).await.expect_err("404");
    assert!(matches!(err, FetchError::Status { status: 404, .. }), "{err:?}");
    assert_eq!(err.code().as_str(), "download_failed");
}

#[tokio::test]
async fn allow_listed_host_name_connects_to_the_checked_address() {
    // `localhost` goes through our own resolution and the pinned client; allow both
    // loopback forms since the resolver may answer either or both.
    let fixture = Fixture::start("127.0.0.1", |_| ok("image/png", PNG)).await.expect("bind");
    let mut policy = allow_fixture();
    policy.allow.push(net("::1/128"));
    let fetcher = Fetcher::new(policy);
    let url = format!("http://localhost:{}/a.png", fixture.addr.port());
    let fetched = fetcher.fetch(&url).await.expect("fetch via localhost");
    assert_eq!(fetched.bytes, PNG);
    assert_eq!(fetched.final_url.host_str(), Some("localhost"));
}

#[tokio::test]
async fn loopback_is_refused_without_the_allow_list_and_never_contacted() {
    let fixture = Fixture::start("127.0.0.1", |_| ok("image/png", PNG)).await.expect("bind");
    let fetcher = Fetcher::new(FetchPolicy::default());

    assert_refused(&fetcher, &fixture.url("/a.png"), "127.0.0.1").await;
    // The same address spelled as a number, and in its IPv4-mapped IPv6 form.
    let port = fixture.addr.port();
    assert_refused(&fetcher, &format!("http://2130706433:{port}/a.png"), "127.0.0.1").await;
    assert_refused(
        &fetcher,
        &format!("http://[::ffff:127.0.0.1]:{port}/a.png"),
        "::ffff:127.0.0.1",
    )
    .await;
    // A host name that resolves to loopback.
    let err =
        fetcher.fetch(&format!("http://localhost:{port}/a.png")).await.expect_err("localhost");
    match &err {
        FetchError::AddressRefused { host, addr, reason } => {
            assert_eq!(host, "localhost");
            assert!(addr.is_loopback(), "{addr}");
            assert_eq!(*reason, "a loopback address");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(fixture.connections(), 0, "a refused destination is never connected to");
}

#[tokio::test]
async fn ipv6_loopback_is_refused_and_never_contacted() {
    let fetcher = Fetcher::new(allow_fixture());
    match Fixture::start("::1", |_| ok("image/png", PNG)).await {
        Some(fixture) => {
            assert_refused(&fetcher, &fixture.url("/a.png"), "::1").await;
            assert_eq!(fixture.connections(), 0);
        }
        None => {
            eprintln!("no IPv6 loopback here; checking the refusal without a fixture");
            assert_refused(&fetcher, "http://[::1]:9/a.png", "::1").await;
        }
    }
}

#[tokio::test]
async fn private_and_metadata_addresses_are_refused_before_connecting() {
    let fetcher = Fetcher::new(allow_fixture());
    assert_refused(&fetcher, "http://10.0.0.1/a.png", "10.0.0.1").await;
    assert_refused(&fetcher, "http://169.254.169.254/latest/meta-data/", "169.254.169.254").await;
    assert_refused(&fetcher, "http://[fd00:ec2::254]/latest/meta-data/", "fd00:ec2::254").await;
    assert_refused(&fetcher, "http://[::ffff:a9fe:a9fe]/", "::ffff:169.254.169.254").await;
    assert_refused(&fetcher, "http://192.168.1.1:8080/a.png", "192.168.1.1").await;
    assert_refused(&fetcher, "http://100.64.0.1/a.png", "100.64.0.1").await;
    let err = assert_refused(&fetcher, "http://169.254.169.254/", "169.254.169.254").await;
    assert!(err.to_string().contains("metadata"), "{err}");
}

#[tokio::test]
async fn redirects_to_refused_destinations_are_refused_and_never_contacted() {
    // The target: a loopback address that is NOT on the allow-list (127.0.0.2).
    let Some(target) = Fixture::start("127.0.0.2", |_| ok("image/png", PNG)).await else {
        panic!("127.0.0.2 is loopback on Linux and must be bindable");
    };
    let target_url = target.url("/a.png");
    let target_port = target.addr.port();
    let origin = Fixture::start("127.0.0.1", move |path| match path {
        "/to-loopback" => redirect(302, target_url.clone()),
        "/to-loopback-by-number" => redirect(307, format!("http://2130706434:{target_port}/a.png")),
        "/to-private" => redirect(301, "http://10.0.0.1/a.png"),
        "/to-metadata" => redirect(302, "http://169.254.169.254/latest/meta-data/iam/"),
        "/to-ipv6" => redirect(308, "http://[::1]:9/a.png"),
        "/to-file" => redirect(302, "file:///etc/passwd"),
        _ => ok("image/png", PNG),
    })
    .await
    .expect("bind");
    let fetcher = Fetcher::new(allow_fixture());

    assert_refused(&fetcher, &origin.url("/to-loopback"), "127.0.0.2").await;
    assert_refused(&fetcher, &origin.url("/to-private"), "10.0.0.1").await;
    assert_refused(&fetcher, &origin.url("/to-metadata"), "169.254.169.254").await;
    assert_refused(&fetcher, &origin.url("/to-ipv6"), "::1").await;
    assert_refused(&fetcher, &origin.url("/to-loopback-by-number"), "127.0.0.2").await;
    let err = fetcher.fetch(&origin.url("/to-file")).await.expect_err("file");
    assert!(matches!(err, FetchError::UnsupportedScheme { .. }), "{err:?}");

    assert_eq!(origin.connections(), 6, "each redirecting hop was fetched once");
    assert_eq!(target.connections(), 0, "the refused hop was never connected to");
}

#[tokio::test]
async fn allowed_redirects_are_followed() {
    let fixture = Fixture::start("127.0.0.1", |path| match path {
        "/one" => redirect(301, "/two"),
        "/two" => redirect(302, "three?x=1"),
        "/three?x=1" => redirect(303, "/img.png"),
        "/img.png" => ok("image/png", PNG),
        _ => Reply::Full { status: 404, headers: vec![], body: vec![] },
    })
    .await
    .expect("bind");
    let fetcher = Fetcher::new(allow_fixture());
    let fetched = fetcher.fetch(&fixture.url("/one")).await.expect("three redirects");
    assert_eq!(fetched.bytes, PNG);
    assert_eq!(fetched.final_url.as_str(), fixture.url("/img.png"));
    assert_eq!(fixture.connections(), 4, "one connection per hop");
}

#[tokio::test]
async fn too_many_redirects() {
    let fixture = Fixture::start("127.0.0.1", |_| redirect(302, "/again")).await.expect("bind");
    let fetcher = Fetcher::new(allow_fixture());
    let err = fetcher.fetch(&fixture.url("/start")).await.expect_err("loop");
    assert_eq!(err, FetchError::TooManyRedirects { limit: 3 });
    assert_eq!(err.code().as_str(), "too_many_redirects");
    assert!(err.to_string().contains('3'), "{err}");
    assert_eq!(fixture.connections(), 4, "the first request and three redirects");

    let mut policy = allow_fixture();
    policy.max_redirects = 0;
    let err = Fetcher::new(policy).fetch(&fixture.url("/start")).await.expect_err("none allowed");
    assert_eq!(err, FetchError::TooManyRedirects { limit: 0 });
}

#[tokio::test]
async fn size_cap_from_content_length_and_while_streaming() {
    let mut big = PNG.to_vec();
    big.resize(5000, 7);
    let body = big.clone();
    let fixture = Fixture::start("127.0.0.1", move |path| match path {
        "/announced.png" => ok("image/png", &body),
        // No Content-Length, more than the cap, and then the connection stays open: the
        // fetch must stop on the bytes, not wait for the end or the timeout.
        _ => Reply::ThenStall {
            headers: vec![("Content-Type", "image/png".into())],
            body: body.clone(),
        },
    })
    .await
    .expect("bind");
    let mut policy = allow_fixture();
    policy.max_bytes = 1000;
    policy.timeout = Duration::from_secs(20);
    let fetcher = Fetcher::new(policy);

    let err = fetcher.fetch(&fixture.url("/announced.png")).await.expect_err("too large");
    assert_eq!(err, FetchError::TooLarge { limit: 1000 });
    assert_eq!(err.code().as_str(), "download_too_large");
    assert!(err.to_string().contains("1000 bytes"), "{err}");

    let started = Instant::now();
    let err = fetcher.fetch(&fixture.url("/streamed.png")).await.expect_err("too large");
    assert_eq!(err, FetchError::TooLarge { limit: 1000 });
    assert!(started.elapsed() < Duration::from_secs(5), "stopped at the cap, not at the timeout");

    // Exactly at the cap is fine.
    let mut policy = allow_fixture();
    policy.max_bytes = big.len() as u64;
    let fetched =
        Fetcher::new(policy).fetch(&fixture.url("/announced.png")).await.expect("at the cap");
    assert_eq!(fetched.bytes, big);
}

#[tokio::test]
async fn overall_timeout() {
    let fixture = Fixture::start("127.0.0.1", |path| match path {
        "/silent" => Reply::Silent,
        // Headers and the first bytes of a real image, then nothing.
        _ => Reply::ThenStall {
            headers: vec![("Content-Length", "100000".into())],
            body: PNG.to_vec(),
        },
    })
    .await
    .expect("bind");
    let mut policy = allow_fixture();
    policy.timeout = Duration::from_millis(400);
    let fetcher = Fetcher::new(policy);
    for path in ["/silent", "/stalled-body"] {
        let started = Instant::now();
        let err = fetcher.fetch(&fixture.url(path)).await.expect_err(path);
        assert_eq!(err, FetchError::Timeout { limit: Duration::from_millis(400) }, "{path}");
        assert_eq!(err.code().as_str(), "download_timeout");
        assert!(err.to_string().contains("0.4 s"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(3), "{path}: {:?}", started.elapsed());
    }
}

#[tokio::test]
async fn non_images_are_refused() {
    let fixture = Fixture::start("127.0.0.1", |path| match path {
        "/page.html" => ok("text/html", b"<!doctype html><html><body>hello</body></html>"),
        // Declared as an image; the bytes say otherwise.
        "/liar.png" => {
            ok("image/png", b"<?xml version=\"1.0\"?><svg xmlns=\"http://www.w3.org/2000/svg\"/>")
        }
        "/gif" => ok("image/gif", b"GIF89a\x01\0\x01\0\x80\0\0\0\0\0\xff\xff\xff!"),
        "/tiny" => ok("image/png", b"\x89P"),
        // A huge non-image that stalls after its first bytes: refused on those bytes.
        _ => Reply::ThenStall {
            headers: vec![],
            body: b"<html>this is not an image at all".to_vec(),
        },
    })
    .await
    .expect("bind");
    let fetcher = Fetcher::new(allow_fixture());
    for path in ["/page.html", "/liar.png", "/gif", "/tiny", "/endless"] {
        let started = Instant::now();
        let err = fetcher.fetch(&fixture.url(path)).await.expect_err(path);
        assert!(matches!(err, FetchError::NotAnImage { .. }), "{path}: {err:?}");
        assert_eq!(err.code().as_str(), "not_an_image");
        assert!(started.elapsed() < Duration::from_secs(5), "{path}");
    }
}

#[tokio::test]
async fn bad_urls() {
    let fetcher = Fetcher::new(allow_fixture());
    for (url, code) in [
        ("file:///etc/passwd", "url_refused"),
        ("ftp://127.0.0.1/a.png", "url_refused"),
        ("not a url", "invalid_url"),
        ("http://", "invalid_url"),
    ] {
        let err = fetcher.fetch(url).await.expect_err(url);
        assert_eq!(err.code().as_str(), code, "{url}: {err}");
    }
}

#[tokio::test]
async fn check_validates_without_connecting() {
    let fixture = Fixture::start("127.0.0.1", |_| ok("image/png", PNG)).await.expect("bind");
    let allowed = Fetcher::new(allow_fixture()).check(&fixture.url("/cb")).await.expect("allowed");
    assert_eq!(allowed.addrs, vec![fixture.addr]);
    let refused = Fetcher::new(FetchPolicy::default()).check(&fixture.url("/cb")).await;
    assert!(matches!(refused, Err(FetchError::AddressRefused { .. })), "{refused:?}");
    assert_eq!(fixture.connections(), 0);
}

/// A DNS server that rebinds: its first answer for any name is `first`, every later one
/// is `then`. Counts the lookups.
#[derive(Debug)]
struct Rebinding {
    first: IpAddr,
    then: IpAddr,
    lookups: AtomicUsize,
}

impl Rebinding {
    fn new(first: &str, then: &str) -> Arc<Rebinding> {
        Arc::new(Rebinding {
            first: first.parse().expect("ip"),
            then: then.parse().expect("ip"),
            lookups: AtomicUsize::new(0),
        })
    }

    fn lookups(&self) -> usize {
        self.lookups.load(Ordering::SeqCst)
    }
}

impl Resolver for Rebinding {
    fn lookup<'a>(&'a self, _host: &'a str, port: u16) -> Lookup<'a> {
        let ip =
            if self.lookups.fetch_add(1, Ordering::SeqCst) == 0 { self.first } else { self.then };
        Box::pin(async move { Ok(vec![SocketAddr::new(ip, port)]) })
    }
}

/// Two fixtures on one port: `127.0.0.1` (on the allow-list) and `127.0.0.2` (not).
async fn allowed_and_forbidden(
    handler: impl Fn(&str) -> Reply + Send + Sync + Clone + 'static,
) -> (Fixture, Fixture) {
    for _ in 0..20 {
        let allowed = Fixture::start("127.0.0.1", handler.clone()).await.expect("bind");
        if let Some(forbidden) =
            Fixture::start_on("127.0.0.2", allowed.addr.port(), handler.clone()).await
        {
            return (allowed, forbidden);
        }
    }
    panic!("no port free on both 127.0.0.1 and 127.0.0.2");
}

#[tokio::test]
async fn a_rebinding_name_is_resolved_once_per_fetch_and_connected_to_as_checked() {
    let (allowed, forbidden) = allowed_and_forbidden(|_| ok("image/png", PNG)).await;
    let dns = Rebinding::new("127.0.0.1", "127.0.0.2");
    let fetcher = Fetcher::new(allow_fixture()).with_resolver(dns.clone());
    let url = format!("http://rebind.test:{}/a.png", allowed.addr.port());

    // The checked answer is the one connected to: the client never asks DNS again, so
    // the second (rebound) answer cannot reach the connection.
    let fetched = fetcher.fetch(&url).await.expect("the first answer is allowed");
    assert_eq!(fetched.bytes, PNG);
    assert_eq!(dns.lookups(), 1, "one lookup per hop");
    assert_eq!((allowed.connections(), forbidden.connections()), (1, 0));

    // The next fetch resolves afresh, gets the forbidden address and is refused.
    assert_refused(&fetcher, &url, "127.0.0.2").await;
    assert_eq!(dns.lookups(), 2);
    assert_eq!(forbidden.connections(), 0, "the rebound address is never contacted");
}

#[tokio::test]
async fn post_goes_to_the_checked_address_and_follows_no_redirect() {
    let (allowed, forbidden) = allowed_and_forbidden(|path| match path {
        "/moved" => redirect(307, "http://127.0.0.2/hook"),
        "/broken" => Reply::Full { status: 500, headers: vec![], body: b"oops".to_vec() },
        _ => Reply::Full { status: 204, headers: vec![], body: Vec::new() },
    })
    .await;
    let port = allowed.addr.port();
    let dns = Rebinding::new("127.0.0.1", "127.0.0.2");
    let fetcher = Fetcher::new(allow_fixture()).with_resolver(dns.clone());
    let headers = [("content-type", "application/json")];

    let status = fetcher
        .post(&format!("http://hook.test:{port}/hook"), &headers, b"{}".to_vec())
        .await
        .expect("delivered");
    assert_eq!((status, dns.lookups(), allowed.connections()), (204, 1, 1));
    // Every status is the caller's to judge; a redirect is returned, not followed.
    let status = fetcher.post(&allowed.url("/moved"), &headers, b"{}".to_vec()).await;
    assert_eq!(status, Ok(307));
    let status = fetcher.post(&allowed.url("/broken"), &headers, b"{}".to_vec()).await;
    assert_eq!(status, Ok(500));
    assert_eq!(allowed.connections(), 3);

    // The name now rebinds to a forbidden address: refused before any connection.
    let err = fetcher
        .post(&format!("http://hook.test:{port}/hook"), &headers, b"{}".to_vec())
        .await
        .expect_err("rebound");
    assert!(matches!(err, FetchError::AddressRefused { .. }), "{err:?}");
    let err = Fetcher::new(FetchPolicy::default())
        .post(&allowed.url("/hook"), &headers, Vec::new())
        .await
        .expect_err("loopback is not allowed by default");
    assert!(matches!(err, FetchError::AddressRefused { .. }), "{err:?}");
    assert_eq!((allowed.connections(), forbidden.connections()), (3, 0));
}

#[tokio::test]
async fn post_is_bounded_by_the_timeout() {
    let fixture = Fixture::start("127.0.0.1", |_| Reply::Silent).await.expect("bind");
    let mut policy = allow_fixture();
    policy.timeout = Duration::from_millis(300);
    let started = Instant::now();
    let err = Fetcher::new(policy).post(&fixture.url("/hook"), &[], b"{}".to_vec()).await;
    assert_eq!(err, Err(FetchError::Timeout { limit: Duration::from_millis(300) }));
    assert!(started.elapsed() < Duration::from_secs(3));
}
