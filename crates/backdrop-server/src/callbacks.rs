//! Callback delivery from the outbox.
//!
//! Every state change of a task with a callback URL is written to the outbox in the same
//! transaction as the change itself, so no change is lost to a crash. This loop sends
//! them: the body is rendered by the task's surface on the first attempt and stored, so
//! every retry sends the same bytes; a failed attempt (no answer, or a non-2xx status) is
//! retried after `backoff_ms * 2^(attempt-1)` up to `max_attempts`; each attempt is in the
//! delivery log (`GET /v1/tasks/{id}/callbacks`). A receiver that is down never blocks or
//! fails the task.
//!
//! # Destinations
//! Callbacks go out through the input fetcher ([`backdrop_fetch::Fetcher::post`]), under
//! the same address policy and `[fetch] allow` list: the receiver's name is resolved once
//! per attempt, every address is checked, and the connection goes only to the checked
//! address (no second lookup a rebinding DNS server could answer differently, no proxy
//! from the environment). Redirects are not followed; a 3xx answer is a failed attempt.
//!
//! The delivery log is the client's to read, so it must not turn the server into a
//! probe of networks the client cannot reach: a failed attempt records only a coarse
//! category ([`failure_category`]: `refused: private or unresolvable address`,
//! `refused: not an http(s) URL`, `connection failed`, `timeout`, or `HTTP {status}`),
//! never the connection error's text. The full error goes to the server's log.
//!
//! # Signature
//! Each POST carries `Backdrop-Signature: t=UNIX_SECONDS,v1=HEX` where
//! `HEX = hex(HMAC-SHA256(secret, "{t}.{body}"))` and `secret` is the hex SHA-256 of the
//! API key that submitted the task (so a client can verify with nothing but its own key:
//! `secret = sha256_hex(api_key)`). Reject bodies whose `t` is far from now to stop replays.

use crate::{now_ms, Shared};
use backdrop_fetch::{FetchError, FetchPolicy, Fetcher};
use backdrop_store::{DeliveryAttempt, OutboxEntry};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Name of the signature header.
pub const SIGNATURE_HEADER: &str = "Backdrop-Signature";

/// The signature header value for `body` at time `t` (unix seconds) under `secret`.
pub fn sign(secret: &str, t: i64, body: &str) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        // HMAC takes keys of any length; this branch cannot be reached.
        Err(_) => return String::new(),
    };
    mac.update(format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Delivers due callbacks until `shutdown` turns true.
pub async fn run(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    // The fetcher's address policy, allow-list and resolver; only the time limit is the
    // callbacks' own.
    let sender = shared.fetcher.with_policy(FetchPolicy {
        timeout: Duration::from_secs(shared.config.callbacks.timeout_secs),
        max_redirects: 0,
        ..shared.fetcher.policy().clone()
    });
    while !*shutdown.borrow() {
        let lease = (shared.config.callbacks.timeout_secs as i64 + 5) * 1000;
        match shared.repo.due_callbacks(now_ms(), lease, 16).await {
            Ok(entries) if !entries.is_empty() => {
                let sends = entries.into_iter().map(|entry| deliver(&shared, &sender, entry));
                futures::future::join_all(sends).await;
                continue;
            }
            Ok(_) => {}
            Err(e) => tracing::error!("cannot read the callback outbox: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = shutdown.changed() => {}
        }
    }
}

async fn deliver(shared: &Shared, sender: &Fetcher, entry: OutboxEntry) {
    let Ok(Some(task)) = shared.repo.task(&entry.task_uid).await else {
        tracing::warn!(task = %entry.task_uid, "callback for a missing task dropped");
        let attempt = DeliveryAttempt {
            status: None,
            error: Some("task not found".into()),
            delivered: false,
        };
        let _ = shared.repo.record_delivery(entry.id, "", attempt, None, now_ms()).await;
        return;
    };
    let body = match &entry.body {
        Some(body) => body.clone(),
        None => {
            let renderer = shared
                .callback_renderers
                .get(&task.surface)
                .or_else(|| shared.callback_renderers.get("native"));
            renderer.map_or_else(String::new, |render| render(shared, &task, entry.state))
        }
    };
    let secret = match shared.repo.key(task.key_id).await {
        Ok(Some(key)) => key.hash,
        _ => String::new(),
    };
    let attempt_number = entry.attempts + 1;
    let signature = sign(&secret, now_ms() / 1000, &body);
    let headers = [("content-type", "application/json"), (SIGNATURE_HEADER, signature.as_str())];
    let attempt = match sender.post(&entry.url, &headers, body.clone().into_bytes()).await {
        Ok(status) => {
            let delivered = (200..300).contains(&status);
            DeliveryAttempt {
                status: Some(status),
                error: (!delivered).then(|| format!("HTTP {status}")),
                delivered,
            }
        }
        Err(e) => {
            tracing::info!(task = %entry.task_uid, "callback attempt failed: {e}");
            DeliveryAttempt {
                status: None,
                error: Some(failure_category(&e).to_string()),
                delivered: false,
            }
        }
    };
    let config = &shared.config.callbacks;
    let next = if attempt.delivered || attempt_number >= config.max_attempts {
        None
    } else {
        Some(now_ms() + config.backoff_ms.saturating_mul(1i64 << (attempt_number - 1).min(20)))
    };
    let result = if attempt.delivered {
        "delivered"
    } else if next.is_some() {
        "retry"
    } else {
        "failed"
    };
    shared.metrics.callback(result);
    if let Err(e) = shared.repo.record_delivery(entry.id, &body, attempt, next, now_ms()).await {
        tracing::error!(task = %entry.task_uid, "cannot record a callback delivery: {e}");
    }
}

/// What the delivery log records for an attempt that got no HTTP answer. Deliberately
/// coarse: a client chooses the URL and reads the log, so the log must not tell apart
/// "no such host" from "an internal host" (that would map internal names), nor report
/// how a connection failed (that would make the server a port scanner).
pub fn failure_category(error: &FetchError) -> &'static str {
    match error {
        FetchError::AddressRefused { .. } | FetchError::Resolve { .. } => {
            "refused: private or unresolvable address"
        }
        FetchError::InvalidUrl { .. } | FetchError::UnsupportedScheme { .. } => {
            "refused: not an http(s) URL"
        }
        FetchError::Timeout { .. } => "timeout",
        _ => "connection failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_of_time_and_body() {
        let header = sign("secret", 1_700_000_000, r#"{"a":1}"#);
        let mut mac = Hmac::<Sha256>::new_from_slice(b"secret").expect("key");
        mac.update(br#"1700000000.{"a":1}"#);
        assert_eq!(header, format!("t=1700000000,v1={}", hex::encode(mac.finalize().into_bytes())));
    }
}
