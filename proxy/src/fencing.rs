//! The proxy's fencing deadline (safety rule 2): until when it may forward anything at all.
//!
//! A sentinel skips a proxy that has been silent for the proxyTimeout it last *advertised*,
//! counted from the last change of its ProxyInfo the sentinel observed. So the proxy may forward
//! only until `T + proxyTimeout`, where T is the moment it *sent* its last ProxyInfo that was
//! stored: the sentinel cannot have observed that info before it was sent, so the proxy always
//! stops before any sentinel stops waiting for it (as Stolon's proxy, whose check fails when it
//! cannot publish). Consequences, each one a rule of `Watchdog`:
//! - a read without a successful publish moves nothing (a proxy that reads but cannot write is
//!   as good as partitioned for the sentinel);
//! - a new proxyTimeout from the spec counts only once an info carrying it was stored.
//!
//! `Deadline` is the shared, lock-free copy of the deadline that the accept loops check for each
//! new connection and the forwarders for each chunk they copy, so nothing is forwarded past the
//! deadline even when the control loop has not run yet (e.g. right after a SIGSTOP).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// The deadline shared with every accept loop and forwarded connection. Cheap to read.
#[derive(Debug)]
pub struct Deadline {
    /// Instants are stored as nanoseconds after `base`; 0 means "closed".
    base: Instant,
    until_nanos: AtomicU64,
}

impl Deadline {
    /// A deadline already passed: nothing may be forwarded until the first successful check.
    pub fn closed() -> Deadline {
        Deadline { base: Instant::now(), until_nanos: AtomicU64::new(0) }
    }

    /// Forwarding is allowed until `until` (exclusive).
    pub fn set(&self, until: Instant) {
        let nanos = until.saturating_duration_since(self.base).as_nanos();
        self.until_nanos.store(u64::try_from(nanos).unwrap_or(u64::MAX), Ordering::Release);
    }

    /// Closes at once.
    pub fn close(&self) {
        self.until_nanos.store(0, Ordering::Release);
    }

    /// Whether forwarding is allowed at `now`.
    pub fn is_open_at(&self, now: Instant) -> bool {
        let now_nanos = u64::try_from(now.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX);
        now_nanos < self.until_nanos.load(Ordering::Acquire)
    }

    pub fn is_open(&self) -> bool {
        self.is_open_at(Instant::now())
    }
}

/// The control loop's view: the proxyTimeout in force and the last check that passed.
#[derive(Debug, Clone)]
pub struct Watchdog {
    /// The proxyTimeout of the last ProxyInfo stored (the defaults' before the first).
    timeout: Duration,
    /// When the last stored ProxyInfo was sent; `None` before the first.
    last_published: Option<Instant>,
}

impl Watchdog {
    pub fn new(timeout: Duration) -> Watchdog {
        Watchdog { timeout, last_published: None }
    }

    /// A ProxyInfo advertising `advertised` as proxyTimeout, sent at `sent_at`, was stored.
    pub fn published(&mut self, sent_at: Instant, advertised: Duration) {
        self.timeout = advertised;
        // Never backwards: a slow publish must not shorten what a faster one granted.
        self.last_published = Some(self.last_published.map_or(sent_at, |t| t.max(sent_at)));
    }

    /// The proxyTimeout in force (what the sentinel was last told).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Until when forwarding is allowed; `None` before the first stored info.
    pub fn deadline(&self) -> Option<Instant> {
        self.last_published.map(|t| t + self.timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_follows_the_sent_time_of_the_last_stored_info() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(Duration::from_secs(4));
        assert_eq!(w.deadline(), None, "nothing forwarded before the first stored info");
        // Sent at t0, stored 1s later (a slow etcd): the deadline counts from the send.
        w.published(t0, Duration::from_secs(4));
        assert_eq!(w.deadline(), Some(t0 + Duration::from_secs(4)));
        // A late answer to an older publish never moves the deadline back.
        w.published(t0 - Duration::from_secs(1), Duration::from_secs(4));
        assert_eq!(w.deadline(), Some(t0 + Duration::from_secs(4)));
    }

    #[test]
    fn a_new_proxy_timeout_counts_only_once_published() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(Duration::from_secs(4));
        w.published(t0, Duration::from_secs(4));
        // The spec now says 15s, but nothing carrying it was stored: still 4s.
        assert_eq!(w.timeout(), Duration::from_secs(4));
        assert_eq!(w.deadline(), Some(t0 + Duration::from_secs(4)));
        w.published(t0 + Duration::from_secs(1), Duration::from_secs(15));
        assert_eq!(w.deadline(), Some(t0 + Duration::from_secs(16)));
    }

    #[tokio::test(start_paused = true)]
    async fn shared_deadline_opens_and_closes_with_time() {
        let d = Deadline::closed();
        assert!(!d.is_open());
        d.set(Instant::now() + Duration::from_secs(3));
        assert!(d.is_open());
        tokio::time::advance(Duration::from_millis(2999)).await;
        assert!(d.is_open());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(!d.is_open(), "open at the deadline itself");
        d.set(Instant::now() + Duration::from_secs(3));
        d.close();
        assert!(!d.is_open());
    }
}
