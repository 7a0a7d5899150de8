//! Prometheus metrics, rendered in the text exposition format at `GET /metrics`.
//!
//! Counters and histograms live in this process; queue depth is read from the database
//! at scrape time, so every API node reports the shared queue.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

const DURATION_BUCKETS: [f64; 11] =
    [0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0];

#[derive(Debug, Default)]
struct Inner {
    outcomes: BTreeMap<(String, String), u64>,
    duration_buckets: BTreeMap<String, [u64; DURATION_BUCKETS.len()]>,
    duration_sum: BTreeMap<String, (f64, u64)>,
    step_seconds: BTreeMap<String, (f64, u64)>,
    callbacks: BTreeMap<String, u64>,
    submits: BTreeMap<(String, String), u64>,
}

/// The process's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        f(&mut self.inner.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// A task ended with `outcome` after `seconds` of running on `engine`.
    pub fn task_finished(&self, engine: &str, outcome: &str, seconds: f64) {
        self.with(|m| {
            *m.outcomes.entry((engine.to_string(), outcome.to_string())).or_default() += 1;
            let buckets = m.duration_buckets.entry(engine.to_string()).or_default();
            for (bucket, le) in buckets.iter_mut().zip(DURATION_BUCKETS) {
                if seconds <= le {
                    *bucket += 1;
                }
            }
            let sum = m.duration_sum.entry(engine.to_string()).or_default();
            sum.0 += seconds;
            sum.1 += 1;
        });
    }

    /// An engine ran `steps` steps in `seconds`.
    pub fn engine_steps(&self, engine: &str, steps: u64, seconds: f64) {
        self.with(|m| {
            let entry = m.step_seconds.entry(engine.to_string()).or_default();
            entry.0 += seconds;
            entry.1 += steps;
        });
    }

    /// A callback attempt ended with `result` (`delivered`, `retry`, `failed`).
    pub fn callback(&self, result: &str) {
        self.with(|m| *m.callbacks.entry(result.to_string()).or_default() += 1);
    }

    /// A submit was answered: `surface` and `result` (`accepted`, or an error code).
    pub fn submit(&self, surface: &str, result: &str) {
        self.with(|m| {
            *m.submits.entry((surface.to_string(), result.to_string())).or_default() += 1
        });
    }

    /// The exposition text, with the queue depths given.
    pub fn render(&self, queue_depths: &[(String, u64)]) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# HELP backdrop_queue_depth Tasks waiting, per engine.\n# TYPE backdrop_queue_depth gauge");
        for (engine, depth) in queue_depths {
            let _ = writeln!(out, "backdrop_queue_depth{{engine=\"{engine}\"}} {depth}");
        }
        self.with(|m| {
            let _ = writeln!(out, "# HELP backdrop_tasks_finished_total Tasks ended, per engine and outcome.\n# TYPE backdrop_tasks_finished_total counter");
            for ((engine, outcome), n) in &m.outcomes {
                let _ = writeln!(out, "backdrop_tasks_finished_total{{engine=\"{engine}\",outcome=\"{outcome}\"}} {n}");
            }
            let _ = writeln!(out, "# HELP backdrop_task_duration_seconds Running time of ended tasks.\n# TYPE backdrop_task_duration_seconds histogram");
            for (engine, buckets) in &m.duration_buckets {
                for (count, le) in buckets.iter().zip(DURATION_BUCKETS) {
                    let _ = writeln!(out, "backdrop_task_duration_seconds_bucket{{engine=\"{engine}\",le=\"{le}\"}} {count}");
                }
                let (sum, count) = m.duration_sum.get(engine).copied().unwrap_or_default();
                let _ = writeln!(out, "backdrop_task_duration_seconds_bucket{{engine=\"{engine}\",le=\"+Inf\"}} {count}");
                let _ = writeln!(out, "backdrop_task_duration_seconds_sum{{engine=\"{engine}\"}} {sum}");
                let _ = writeln!(out, "backdrop_task_duration_seconds_count{{engine=\"{engine}\"}} {count}");
            }
            let _ = writeln!(out, "# HELP backdrop_engine_step_seconds Time per engine step.\n# TYPE backdrop_engine_step_seconds summary");
            for (engine, (sum, count)) in &m.step_seconds {
                let _ = writeln!(out, "backdrop_engine_step_seconds_sum{{engine=\"{engine}\"}} {sum}");
                let _ = writeln!(out, "backdrop_engine_step_seconds_count{{engine=\"{engine}\"}} {count}");
            }
            let _ = writeln!(out, "# HELP backdrop_callbacks_total Callback delivery attempts by result.\n# TYPE backdrop_callbacks_total counter");
            for (result, n) in &m.callbacks {
                let _ = writeln!(out, "backdrop_callbacks_total{{result=\"{result}\"}} {n}");
            }
            let _ = writeln!(out, "# HELP backdrop_submits_total Submits by surface and result.\n# TYPE backdrop_submits_total counter");
            for ((surface, result), n) in &m.submits {
                let _ = writeln!(out, "backdrop_submits_total{{surface=\"{surface}\",result=\"{result}\"}} {n}");
            }
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::default();
        m.task_finished("studio", "succeeded", 0.3);
        m.engine_steps("patch", 10, 1.5);
        let text = m.render(&[("studio".into(), 4)]);
        assert!(text.contains("backdrop_queue_depth{engine=\"studio\"} 4"));
        assert!(text
            .contains("backdrop_tasks_finished_total{engine=\"studio\",outcome=\"succeeded\"} 1"));
        assert!(
            text.contains("backdrop_task_duration_seconds_bucket{engine=\"studio\",le=\"0.1\"} 0")
        );
        assert!(
            text.contains("backdrop_task_duration_seconds_bucket{engine=\"studio\",le=\"0.5\"} 1")
        );
        assert!(text.contains("backdrop_engine_step_seconds_count{engine=\"patch\"} 10"));
    }
}
