//! Where callbacks may go and what their delivery log tells a client: the real router on
//! loopback with a real worker and callback deliverer, receivers on loopback addresses,
//! and a resolver that plays a rebinding DNS server. No packet leaves this machine.

mod common;

use axum::http::HeaderMap;
use backdrop_fetch::{Lookup, Resolver};
use backdrop_server::Shared;
use common::{cutout_b64, no_rate_limit, serve_on, start_prepared, TestServer};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// A DNS server under the test's control: the first lookup of any name answers
/// `first`, every later one `then`; names in `missing` do not exist. Counts lookups.
#[derive(Debug)]
struct TestDns {
    first: IpAddr,
    then: IpAddr,
    missing: Vec<&'static str>,
    lookups: AtomicUsize,
}

impl TestDns {
    fn rebinding(first: &str, then: &str) -> Arc<TestDns> {
        Arc::new(TestDns {
            first: first.parse().expect("ip"),
            then: then.parse().expect("ip"),
            missing: vec!["missing.test"],
            lookups: AtomicUsize::new(0),
        })
    }
}

impl Resolver for TestDns {
    fn lookup<'a>(&'a self, host: &'a str, port: u16) -> Lookup<'a> {
        let answer = if self.missing.contains(&host) {
            Err(std::io::Error::new(std::io::ErrorKind::NotFound, "no such host"))
        } else if self.lookups.fetch_add(1, Ordering::SeqCst) == 0 {
            Ok(vec![SocketAddr::new(self.first, port)])
        } else {
            Ok(vec![SocketAddr::new(self.then, port)])
        };
        Box::pin(async move { answer })
    }
}

/// A server with a worker whose fetcher (and so callback deliverer) resolves with `dns`.
async fn server(
    dns: Arc<TestDns>,
    adjust: impl FnOnce(&mut backdrop_server::ServiceConfig),
) -> TestServer {
    start_prepared(
        backdrop_engines::Engines::weight_free(),
        1,
        |c| {
            no_rate_limit(c);
            adjust(c);
        },
        |shared: &mut Shared| shared.fetcher = shared.fetcher.clone().with_resolver(dns),
    )
    .await
}

/// Counts TCP connections to `listener` and answers none of them (keeps them open).
fn count_connections(listener: TcpListener) -> Arc<AtomicUsize> {
    let count = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&count);
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            open.push(stream);
        }
    });
    count
}

/// Submits a background task with `callback_url`; returns its id.
async fn submit(server: &TestServer, key: &str, callback_url: &str) -> String {
    let body = json!({"image_base64": cutout_b64(), "prompt": "x", "callback_url": callback_url});
    server.submit(&reqwest::Client::new(), key, "/v1/backgrounds", &body).await
}

/// The delivery log once all three state changes (queued, running, succeeded) have
/// either been delivered or used up their attempts.
async fn settled_log(server: &TestServer, key: &str, id: &str, max_attempts: u64) -> Vec<Value> {
    let settled = |deliveries: &[Value]| {
        ["queued", "running", "succeeded"].iter().all(|state| {
            let attempts: Vec<&Value> =
                deliveries.iter().filter(|d| d["state"] == *state).collect();
            attempts.iter().any(|d| d["delivered"] == true) || attempts.len() as u64 >= max_attempts
        })
    };
    let client = reqwest::Client::new();
    server.wait_deliveries(&client, key, id, Duration::from_secs(60), settled).await
}

#[tokio::test]
async fn a_callback_name_that_rebinds_to_loopback_never_reaches_it() {
    // Two receivers on one port: the one the name first resolves to (127.0.0.2, on the
    // allow-list, standing in for a public host) and a loopback service the rebound
    // answer points at (127.0.0.1, not on the allow-list).
    let (trap, receiver) = loop {
        let trap = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = trap.local_addr().expect("addr").port();
        if let Ok(receiver) = TcpListener::bind(("127.0.0.2", port)).await {
            break (trap, receiver);
        }
    };
    let port = receiver.local_addr().expect("addr").port();
    let trapped = count_connections(trap);
    let received: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let log = Arc::clone(&received);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let log = Arc::clone(&log);
            async move {
                let host = headers["host"].to_str().unwrap_or_default().to_string();
                log.lock().expect("lock").push((host, serde_json::from_str(&body).expect("json")));
                StatusCode::NO_CONTENT
            }
        }),
    );
    serve_on(receiver, app);

    let dns = TestDns::rebinding("127.0.0.2", "127.0.0.1");
    let server = server(Arc::clone(&dns), |c| {
        c.fetch.allow = vec!["127.0.0.2/32".into()];
        c.callbacks.max_attempts = 2;
    })
    .await;
    let key = server.key(None).await;
    let id = submit(&server, &key, &format!("http://hook.test:{port}/hook")).await;
    let log = settled_log(&server, &key, &id, 2).await;

    // One state change got the first answer and was delivered, to the checked address,
    // under the URL's own host name.
    let delivered: Vec<&Value> = log.iter().filter(|d| d["delivered"] == true).collect();
    assert_eq!(delivered.len(), 1, "{log:?}");
    let received = received.lock().expect("lock").clone();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0].0, format!("hook.test:{port}"));
    assert_eq!(received[0].1["state"], delivered[0]["state"]);
    // Every other attempt resolved to loopback and was refused before connecting.
    for attempt in log.iter().filter(|d| d["delivered"] == false) {
        assert_eq!(attempt["error"], "refused: private or unresolvable address", "{attempt}");
        assert_eq!(attempt["status"], Value::Null);
    }
    assert_eq!(log.len(), 1 + 2 * 2, "two refused attempts for each other state: {log:?}");
    assert_eq!(dns.lookups.load(Ordering::SeqCst), log.len(), "one lookup per attempt");
    // Give a late connection the chance to show up before checking there was none.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(trapped.load(Ordering::SeqCst), 0, "the loopback service was never contacted");
}

#[tokio::test]
async fn the_delivery_log_names_a_category_never_the_connection_error() {
    // A port with nothing listening, a receiver that never answers, and one that fails.
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        listener.local_addr().expect("addr")
    };
    let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let silent_addr = silent.local_addr().expect("addr");
    let _silent_connections = count_connections(silent);
    let failing = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let failing_addr = failing.local_addr().expect("addr");
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(|| async { StatusCode::INTERNAL_SERVER_ERROR }));
    serve_on(failing, app);

    let dns = TestDns::rebinding("127.0.0.1", "127.0.0.1");
    let server = server(dns, |c| {
        c.fetch.allow = vec!["127.0.0.1/32".into()];
        c.callbacks.max_attempts = 1;
        c.callbacks.timeout_secs = 1;
    })
    .await;
    let key = server.key(None).await;
    let cases = [
        (format!("http://{closed}/hook"), "connection failed", Value::Null),
        (format!("http://{silent_addr}/hook"), "timeout", Value::Null),
        (format!("http://{failing_addr}/hook"), "HTTP 500", json!(500)),
        // Not on the allow-list, and a name that does not resolve: one answer for both,
        // so the log cannot tell an internal host from a missing one.
        (
            "http://127.0.0.2:9/hook".to_string(),
            "refused: private or unresolvable address",
            Value::Null,
        ),
        (
            "http://missing.test/hook".to_string(),
            "refused: private or unresolvable address",
            Value::Null,
        ),
    ];
    let mut ids = Vec::new();
    for (url, _, _) in &cases {
        ids.push(submit(&server, &key, url).await);
    }
    for ((url, category, status), id) in cases.iter().zip(&ids) {
        let log = settled_log(&server, &key, id, 1).await;
        assert_eq!(log.len(), 3, "{url}: {log:?}");
        for attempt in &log {
            assert_eq!(
                (&attempt["error"], &attempt["status"], &attempt["delivered"]),
                (&json!(category), status, &json!(false)),
                "{url}: {attempt}"
            );
        }
    }
}
