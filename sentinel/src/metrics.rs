//! The sentinel's metrics, served on `--metrics-listen-address` at `/metrics`.
//!
//! Values are atomics owned by the loop and read by the HTTP handler (STYLE rule 10: passed in,
//! not global). `last_decision_success` is set only after a whole round succeeded: infos read,
//! decision made, and clusterdata written when it had to change.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use stolon_common::http::PromText;

#[derive(Debug, Default)]
pub struct Metrics {
    /// This sentinel holds the election lease.
    is_leader: AtomicBool,
    /// Unix time in milliseconds of the last fully successful decision round; 0 before the first.
    last_success_unix_ms: AtomicU64,
    /// Successful decision rounds (changing clusterdata or not).
    decisions: AtomicU64,
    /// Clusterdata writes (decisions that changed something and were stored).
    writes: AtomicU64,
}

impl Metrics {
    pub fn set_leader(&self, leader: bool) {
        self.is_leader.store(leader, Ordering::Relaxed);
    }

    /// Records a successful round at `unix_ms`, which wrote clusterdata when `wrote`.
    pub fn decision_succeeded(&self, unix_ms: u64, wrote: bool) {
        self.decisions.fetch_add(1, Ordering::Relaxed);
        if wrote {
            self.writes.fetch_add(1, Ordering::Relaxed);
        }
        self.last_success_unix_ms.store(unix_ms, Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let mut p = PromText::new();
        p.single(
            "stolon_sentinel_is_leader",
            "gauge",
            "1 when this sentinel is the elected leader.",
            f64::from(u8::from(self.is_leader.load(Ordering::Relaxed))),
        );
        p.single(
            "stolon_sentinel_last_decision_success_seconds",
            "gauge",
            "Unix time of the last fully successful decision round (0: none yet).",
            self.last_success_unix_ms.load(Ordering::Relaxed) as f64 / 1000.0,
        );
        p.single(
            "stolon_sentinel_decisions_total",
            "counter",
            "Successful decision rounds as leader.",
            self.decisions.load(Ordering::Relaxed) as f64,
        );
        p.single(
            "stolon_sentinel_clusterdata_writes_total",
            "counter",
            "Clusterdata changes written as leader.",
            self.writes.load(Ordering::Relaxed) as f64,
        );
        p.finish()
    }
}

/// The `/metrics` route.
pub fn router(metrics: Arc<Metrics>) -> axum::Router {
    use axum::http::header::CONTENT_TYPE;
    use axum::routing::get;
    axum::Router::new().route(
        "/metrics",
        get(move || {
            let m = metrics.clone();
            async move { ([(CONTENT_TYPE, "text/plain; version=0.0.4")], m.render()) }
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_stolon_names() {
        let m = Metrics::default();
        m.set_leader(true);
        m.decision_succeeded(1_700_000_000_500, true);
        m.decision_succeeded(1_700_000_001_000, false);
        let text = m.render();
        for line in [
            "stolon_sentinel_is_leader 1\n",
            "stolon_sentinel_last_decision_success_seconds 1700000001\n",
            "stolon_sentinel_decisions_total 2\n",
            "stolon_sentinel_clusterdata_writes_total 1\n",
        ] {
            assert!(text.contains(line), "{line} missing in {text}");
        }
    }
}
