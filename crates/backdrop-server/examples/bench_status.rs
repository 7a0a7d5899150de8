//! Status-poll benchmark: how many `GET /v1/tasks/{id}` a server answers per second on
//! loopback, and at what latency, against SQLite and PostgreSQL.
//!
//! For each backend it opens a fresh database, starts the real router in this process
//! (`backdrop_server::router` under `axum::serve` on 127.0.0.1:0, with a worker), creates
//! a key, submits one studio background through the API and waits until it succeeded,
//! stops the worker, then drives `GET /v1/tasks/{id}` from C tasks, each on its own
//! keep-alive connection, for a fixed time. It prints one table row per backend:
//! requests/s, p50, p99, max latency and errors (non-200 answers or transport failures).
//! Client and server share this process and its cores.
//!
//! With `--mix` (the soak run, `tools/soak`), the worker keeps running and each
//! connection cycles through 20 requests from its own key (of 8): 15 status polls, one
//! submit (most are refused 429 by the submit rate, as a busy client would see), and four
//! bad requests (no key: 401; malformed JSON: 400; unknown route: 404; `limit=-5`: 400).
//! An error is then a transport failure, a 5xx, or an answer other than the one expected.
//!
//! ```text
//! bench_status [--concurrency 16] [--seconds 10] [--postgres URL] [--mix]
//! ```
//!
//! `--postgres` takes a URL whose database (and `search_path` schema) the run may fill;
//! `tools/bench-status` makes a throwaway schema on the server `tools/postgres` starts.

use backdrop_engines::Engines;
use backdrop_server::{now_ms, router, worker, ServiceConfig, Shared};
use base64::Engine as _;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Keys the `--mix` connections spread over.
const KEYS: usize = 8;

/// At most this many requests per connection, whatever the duration.
const MAX_REQUESTS_PER_CONNECTION: usize = 2_000_000;

struct Options {
    concurrency: usize,
    seconds: u64,
    postgres: Option<String>,
    mix: bool,
}

fn options() -> Result<Options, String> {
    let mut o = Options { concurrency: 16, seconds: 10, postgres: None, mix: false };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--concurrency" => {
                o.concurrency = value()?.parse().map_err(|e| format!("--concurrency: {e}"))?
            }
            "--seconds" => o.seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--postgres" => o.postgres = Some(value()?),
            "--mix" => o.mix = true,
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    if !(1..=256).contains(&o.concurrency) || !(1..=120).contains(&o.seconds) {
        return Err("concurrency must be 1..=256 and seconds 1..=120".into());
    }
    Ok(o)
}

struct Row {
    backend: &'static str,
    requests: usize,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
    max: Duration,
    errors: usize,
}

/// Sends `request`; its JSON answer.
async fn answer(request: reqwest::RequestBuilder) -> Result<Value, String> {
    let response = request.send().await.map_err(|e| e.to_string())?;
    response.json().await.map_err(|e| e.to_string())
}

/// Starts the service on `database_url`, makes one finished task, and measures.
async fn bench(
    backend: &'static str,
    database_url: Option<String>,
    o: &Options,
) -> Result<Row, String> {
    let data = tempfile::TempDir::new().map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let mut config = ServiceConfig::default();
    config.server.data_dir = data.path().to_path_buf();
    config.server.bind = addr.to_string();
    config.database.url = database_url.map(backdrop_core::Secret::new);
    config.queue.poll_ms = 20;
    let shared = Arc::new(Shared::open(config, Engines::weight_free()).await?);
    let (_, key) = backdrop_server::auth::create_key(shared.repo.as_ref(), "bench", None, now_ms())
        .await
        .map_err(|e| e.to_string())?;
    let mut keys = vec![key.clone()];
    for _ in 1..KEYS {
        let (_, other) =
            backdrop_server::auth::create_key(shared.repo.as_ref(), "bench", None, now_ms())
                .await
                .map_err(|e| e.to_string())?;
        keys.push(other);
    }
    let app = router(Arc::clone(&shared));
    let limits = backdrop_server::listen::ConnectionLimits::of(&shared.config);
    let server =
        tokio::spawn(backdrop_server::listen::serve(listener, app, limits, std::future::pending()));
    let (stop, stopped) = watch::channel(false);
    let work = tokio::spawn(worker::run(Arc::clone(&shared), "bench".into(), 1, stopped));

    let base = format!("http://{addr}");
    let http = reqwest::Client::new();
    let cutout = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/bottle-cutout.png"),
    )
    .map_err(|e| format!("examples/bottle-cutout.png: {e}"))?;
    let body = json!({
        "image_base64": base64::engine::general_purpose::STANDARD.encode(cutout),
        "prompt": "on a marble counter", "engine": "studio", "width": 128, "height": 128,
        "seed": 1, "n": 1,
    });
    let accepted =
        answer(http.post(format!("{base}/v1/backgrounds")).bearer_auth(&key).json(&body)).await?;
    let id = accepted["id"].as_str().ok_or_else(|| format!("submit refused: {accepted}"))?;
    let url = format!("{base}/v1/tasks/{id}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let view = answer(http.get(&url).bearer_auth(&key)).await?;
        match view["state"].as_str() {
            Some("succeeded") => break,
            Some("failed" | "canceled") => return Err(format!("the task ended: {view}")),
            _ if Instant::now() > deadline => return Err("the task did not finish".into()),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    if !o.mix {
        // Only status reads from here on.
        let _ = stop.send(true);
        let _ = work.await;
    }
    let submit = serde_json::to_vec(&body).map_err(|e| e.to_string())?;

    let run_for = Duration::from_secs(o.seconds);
    let started = Instant::now();
    let mut clients = Vec::new();
    for c in 0..o.concurrency {
        // One client per task, one idle connection each: C keep-alive connections.
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?;
        let (url, key, base) = (url.clone(), key.clone(), base.clone());
        let own_key = keys[c % keys.len()].clone();
        let submit = submit.clone();
        let mix = o.mix;
        clients.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(1 << 16);
            let mut errors = 0usize;
            while started.elapsed() < run_for && latencies.len() < MAX_REQUESTS_PER_CONNECTION {
                let step = if mix { latencies.len() % 20 } else { 0 };
                let (request, expected): (_, &[u16]) = match step {
                    15 => (
                        client
                            .post(format!("{base}/v1/backgrounds"))
                            .bearer_auth(&own_key)
                            .header("content-type", "application/json")
                            .body(submit.clone()),
                        &[202, 429],
                    ),
                    16 => (client.get(&url), &[401]),
                    17 => (
                        client
                            .post(format!("{base}/v1/backgrounds"))
                            .bearer_auth(&own_key)
                            .header("content-type", "application/json")
                            .body("{\"prompt\": "),
                        &[400, 429],
                    ),
                    18 => (client.get(format!("{base}/v1/nothing")), &[404]),
                    19 => (
                        client.get(format!("{base}/v1/tasks?limit=-5")).bearer_auth(&own_key),
                        &[400],
                    ),
                    _ => (client.get(&url).bearer_auth(&key), &[200]),
                };
                let t = Instant::now();
                let ok = match request.send().await {
                    Ok(resp) => {
                        expected.contains(&resp.status().as_u16()) && resp.bytes().await.is_ok()
                    }
                    Err(_) => false,
                };
                latencies.push(t.elapsed());
                if !ok {
                    errors += 1;
                }
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for client in clients {
        let (latencies, e) = client.await.map_err(|e| e.to_string())?;
        all.extend(latencies);
        errors += e;
    }
    let elapsed = started.elapsed();
    let _ = stop.send(true);
    server.abort();
    all.sort_unstable();
    let at = |q: f64| {
        all.get(((all.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or_default()
    };
    Ok(Row {
        backend,
        requests: all.len(),
        elapsed,
        p50: at(0.50),
        p99: at(0.99),
        max: all.last().copied().unwrap_or_default(),
        errors,
    })
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bench_status: {e}");
            std::process::exit(2);
        }
    };
    let mut rows = Vec::new();
    let mut backends: Vec<(&'static str, Option<String>)> = vec![("sqlite", None)];
    match &o.postgres {
        Some(url) => backends.push(("postgresql", Some(url.clone()))),
        None => eprintln!("bench_status: no --postgres URL; SQLite only"),
    }
    for (name, url) in backends {
        let what = if o.mix { "polls, submits and bad requests" } else { "GET /v1/tasks/{id}" };
        eprintln!("bench_status: {name}: {what}, {} connections, {} s", o.concurrency, o.seconds);
        match bench(name, url, &o).await {
            Ok(row) => rows.push(row),
            Err(e) => {
                eprintln!("bench_status: {name}: {e}");
                std::process::exit(1);
            }
        }
    }
    println!(
        "| backend | connections | seconds | requests | requests/s | p50 ms | p99 ms | max ms | errors |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {:.1} | {} | {:.0} | {} | {} | {} | {} |",
            r.backend,
            o.concurrency,
            r.elapsed.as_secs_f64(),
            r.requests,
            r.requests as f64 / r.elapsed.as_secs_f64(),
            ms(r.p50),
            ms(r.p99),
            ms(r.max),
            r.errors
        );
    }
}
