//! The HTTP listener: what a connection may cost before, and around, any handler.
//!
//! `axum::serve` has no header-read timeout and no connection cap, so a few hundred
//! clients trickling header bytes (or saying nothing) hold their sockets for ever. This
//! loop serves the same router over HTTP/1.1 with:
//!
//! - a connection cap ([`ConnectionLimits::max_connections`]): at the cap the loop stops
//!   accepting, so further clients wait in the kernel's backlog instead of costing memory;
//! - a header-read timeout: a request head (or, on a kept-alive connection, the next one)
//!   that has not fully arrived in time closes the connection, trickling or silent;
//! - graceful shutdown: on the signal, listening stops and open requests finish (up to
//!   [`SHUTDOWN_GRACE`]).
//!
//! The per-request time limit is a router layer ([`crate::api::time_limit`]) so that it
//! answers in the API's error shape. HTTP/2 is not offered: the service sits behind a
//! proxy that terminates TLS, and cleartext HTTP/2 (h2c) clients are rare.

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

/// How long open requests may run on after the shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Connection-level limits (from `[server]`).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Open connections at once; further clients wait to be accepted.
    pub max_connections: usize,
    /// Time for a request head to arrive completely.
    pub header_read_timeout: Duration,
}

impl ConnectionLimits {
    /// The limits `[server]` configures.
    pub fn of(config: &crate::ServiceConfig) -> Self {
        ConnectionLimits {
            max_connections: config.server.max_connections,
            header_read_timeout: Duration::from_secs(config.server.header_read_timeout_secs),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let max = limits.max_connections.clamp(1, u32::MAX as usize);
    let slots = Arc::new(Semaphore::new(max));
    let (stop, stopping) = watch::channel(false);
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let mut stopping = stopping.clone();
        tokio::spawn(async move {
            tokio::pin!(connection);
            // Errors here are the client's (reset, timed-out head, bad request line).
            tokio::select! {
                _ = connection.as_mut() => {}
                () = async { drop(stopping.wait_for(|stop| *stop).await) } => {
                    // Finish the request in flight, then close.
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    // Every connection holds a slot until it ends: all slots back means all closed.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    if tokio::time::timeout(SHUTDOWN_GRACE, slots.acquire_many(all)).await.is_err() {
        tracing::warn!("open requests did not finish within {SHUTDOWN_GRACE:?} of shutdown");
    }
    Ok(())
}
