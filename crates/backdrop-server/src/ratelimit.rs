//! Per-key limits kept in this process: submit rates (a token bucket per key) and the
//! long-lived requests a key holds at once ([`StreamSlots`]).
//!
//! Each key's bucket holds up to `burst` tokens and refills at `rate` per second; a
//! submit takes one. An empty bucket answers with the seconds until the next token, which
//! becomes `Retry-After`. Buckets live in memory per API node, so with N nodes behind a
//! balancer a key can reach N times the rate; the queue and concurrency limits, which are
//! in the database, stay global.
//!
//! The limiter reads the time from a [`Clock`]: the server's is [`SystemClock`], and
//! tests move one by hand instead of sleeping.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Where the rate limiter reads the time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current instant; never earlier than one returned before.
    fn now(&self) -> Instant;
}

/// The monotonic clock of the machine.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// Token buckets keyed by key id (or any other id, such as a vendor account).
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    clock: Arc<dyn Clock>,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// `rate` tokens per second, at most `burst` saved up (at least 1), on the
    /// [`SystemClock`].
    pub fn new(rate: f64, burst: u32) -> Self {
        RateLimiter::with_clock(rate, burst, Arc::new(SystemClock))
    }

    /// As [`RateLimiter::new`], reading the time from `clock`.
    pub fn with_clock(rate: f64, burst: u32, clock: Arc<dyn Clock>) -> Self {
        RateLimiter {
            rate: rate.max(0.001),
            burst: f64::from(burst.max(1)),
            clock,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `id`; `Err(seconds)` to wait when there is none.
    pub fn check(&self, id: &str) -> Result<(), u64> {
        let now = self.clock.now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Bound memory: forget full buckets when the map grows large.
        if buckets.len() > 100_000 {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        let (tokens, at) = buckets.entry(id.to_string()).or_insert((self.burst, now));
        let refilled =
            (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if refilled >= 1.0 {
            *tokens = refilled - 1.0;
            Ok(())
        } else {
            *tokens = refilled;
            Err(((1.0 - refilled) / self.rate).ceil() as u64)
        }
    }
}

/// Counts the long-lived requests (event streams, synchronous waits) each key holds, up
/// to a cap per key. Each one polls the database while it lasts, so without a cap a few
/// keys could tie up the pool. Per process, like the rate buckets.
#[derive(Debug)]
pub struct StreamSlots {
    cap: u32,
    held: Mutex<HashMap<String, u32>>,
}

/// One held slot; dropping it gives the slot back.
#[derive(Debug)]
pub struct StreamSlot {
    slots: Arc<StreamSlots>,
    id: String,
}

impl StreamSlots {
    /// At most `cap` slots per id (at least 1).
    pub fn new(cap: u32) -> Arc<Self> {
        Arc::new(StreamSlots { cap: cap.max(1), held: Mutex::new(HashMap::new()) })
    }

    /// The per-id cap.
    pub fn cap(&self) -> u32 {
        self.cap
    }

    /// Slots `id` holds now.
    pub fn held(&self, id: &str) -> u32 {
        let held = self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        held.get(id).copied().unwrap_or(0)
    }

    /// Takes a slot for `id`, or `None` when it holds `cap` already.
    pub fn take(self: &Arc<Self>, id: &str) -> Option<StreamSlot> {
        let mut held = self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = held.entry(id.to_string()).or_insert(0);
        if *count >= self.cap {
            return None;
        }
        *count += 1;
        Some(StreamSlot { slots: Arc::clone(self), id: id.to_string() })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut held = self.slots.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = held.get_mut(&self.id) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.id);
            }
        }
    }
}

/// A clock that stands still until it is moved: for tests (and simulations) of the
/// limiter without sleeping.
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    elapsed: Mutex<std::time::Duration>,
}

impl ManualClock {
    /// A clock at an arbitrary start.
    pub fn new() -> Arc<Self> {
        Arc::new(ManualClock { start: Instant::now(), elapsed: Mutex::new(Default::default()) })
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: std::time::Duration) {
        *self.elapsed.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + *self.elapsed.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_refill() {
        let clock = ManualClock::new();
        let limiter = RateLimiter::with_clock(2.0, 2, clock.clone());
        assert!(limiter.check("k").is_ok());
        assert!(limiter.check("k").is_ok());
        assert_eq!(limiter.check("k"), Err(1));
        assert!(limiter.check("other").is_ok(), "keys are independent");
        clock.advance(Duration::from_millis(600));
        assert!(limiter.check("k").is_ok());
        assert_eq!(limiter.check("k"), Err(1), "0.6 s refilled one token and a fifth");
    }

    #[test]
    fn retry_after_counts_down_to_the_next_token() {
        let clock = ManualClock::new();
        let limiter = RateLimiter::with_clock(0.25, 1, clock.clone());
        assert!(limiter.check("k").is_ok());
        assert_eq!(limiter.check("k"), Err(4));
        clock.advance(Duration::from_millis(2500));
        assert_eq!(limiter.check("k"), Err(2), "1.5 s to go rounds up");
        clock.advance(Duration::from_millis(1500));
        assert!(limiter.check("k").is_ok());
        clock.advance(Duration::from_secs(3600));
        assert!(limiter.check("k").is_ok());
        assert!(limiter.check("k").is_err(), "an idle hour saves up no more than the burst");
    }

    #[test]
    fn stream_slots_cap_each_key_and_come_back_when_dropped() {
        let slots = StreamSlots::new(2);
        let a1 = slots.take("a").expect("first");
        let _a2 = slots.take("a").expect("second");
        assert!(slots.take("a").is_none(), "a third slot for one key is refused");
        assert!(slots.take("b").is_some(), "other keys are not affected");
        drop(a1);
        assert!(slots.take("a").is_some(), "a dropped slot is free again");
    }
}
