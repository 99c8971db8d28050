//! Probes and metrics on `--metrics-listen-address`, answered from a shared snapshot that the
//! keeper's loops update (no I/O in a handler). What they say about postgres comes from the
//! observer's last look only while that look is recent (`observed_pg`), as for the published
//! KeeperInfo, so a probe never vouches for a postgres that stopped answering:
//! - `GET /health`: 200 when the keeper's pass ran recently and postgres answers, else 503;
//! - `GET /role`: 200 with `master`, `standby` or `none` (what postgres is, not what it should be);
//! - `GET /primary`: 200 only while (a) the last successful, parsed read of clusterdata says
//!   this keeper's db is `cluster.status.master` with role master, (b) that read was sent no
//!   longer than min(failInterval, proxyTimeout) ago (`primary_window`), and (c) postgres
//!   answers and is out of recovery; else 503. For load balancers that must find the one
//!   writable node: a keeper cut off from the store stops vouching for itself before the
//!   sentinel may promote another db (it waits failInterval), like a proxy fences itself. An
//!   unreadable clusterdata (corrupt, a newer format) is not a successful read: /primary turns
//!   503 at once and stays so until a read succeeds;
//! - `GET /replica`: 200 only on a healthy standby that is streaming, else 503;
//! - `GET /metrics`: Prometheus text, Stolon's names where they exist.

use crate::desired::Timing;
use crate::sql::PgStatus;
use crate::state::DbState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use clusterview::data::TimelineHistoryEntry;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};
use stolon_common::http::PromText;

/// What the loops know, for probes, metrics and the info publisher.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// postgres' status at the last observation, `None` when it did not answer.
    pub pg: Option<PgStatus>,
    /// The history of `pg`'s timeline, read with it.
    pub pg_history: Vec<TimelineHistoryEntry>,
    /// When the observer stored `pg` (end of its check). Read `pg` through `observed_pg`, which
    /// ignores an observation this old that nothing recent says postgres is healthy.
    pub pg_observed_at: Option<Instant>,
    /// The pass could not observe the data dir (`observe::DataDirUnreadable`): postgres is
    /// reported as not healthy until an observation succeeds again.
    pub observation_failed: bool,
    /// The last successful, parsed read of clusterdata elects this keeper's db as master
    /// (`elects`); false once a read finds clusterdata unusable.
    pub elected_master: bool,
    /// When the last successful, parsed read of clusterdata was *sent* (the document is at
    /// least that recent). Unusable or failed reads do not move it.
    pub cluster_data_read_at: Option<Instant>,
    pub recorded: Option<DbState>,
    pub data_dir_missing: bool,
    pub cluster_uid: Option<String>,
    pub timing: Timing,
    /// End of the last pass, whatever its outcome.
    pub last_pass: Option<Instant>,
    /// Wall-clock time of the last pass whose steps all succeeded.
    pub last_sync_success: Option<SystemTime>,
    pub sync_failures: u64,
}

/// The snapshot behind a lock. The lock is held only to copy values in or out.
#[derive(Debug)]
pub struct Shared {
    inner: Mutex<Snapshot>,
    /// Asks the observer to look at postgres now: the pass loop changed something (promoted,
    /// restarted, converged a new generation) that the sentinel is waiting to see.
    pub observe_now: tokio::sync::Notify,
    /// Asks the publisher to publish now: the observer has such a change to report.
    pub publish_now: tokio::sync::Notify,
    /// Asks the pass loop to run now: clusterdata changed (watch).
    pub pass_now: tokio::sync::Notify,
}

impl Shared {
    pub fn new(timing: Timing, recorded: Option<DbState>) -> Arc<Shared> {
        Arc::new(Shared {
            inner: Mutex::new(Snapshot {
                pg: None,
                pg_history: Vec::new(),
                pg_observed_at: None,
                observation_failed: false,
                elected_master: false,
                cluster_data_read_at: None,
                recorded,
                data_dir_missing: false,
                cluster_uid: None,
                timing,
                last_pass: None,
                last_sync_success: None,
                sync_failures: 0,
            }),
            observe_now: tokio::sync::Notify::new(),
            publish_now: tokio::sync::Notify::new(),
            pass_now: tokio::sync::Notify::new(),
        })
    }

    /// The snapshot, for reading or updating. A poisoned lock (a panic elsewhere) still yields
    /// the data: every field is valid on its own.
    pub fn lock(&self) -> MutexGuard<'_, Snapshot> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn get(&self) -> Snapshot {
        self.lock().clone()
    }
}

/// Whether an observation of postgres made at `observed_at` still stands at `now`. The observer
/// looks every sleepInterval and one look takes at most requestTimeout, so an older one means
/// postgres (or the observer) is stuck, and nothing recent says postgres is healthy.
pub fn pg_observation_fresh(observed_at: Option<Instant>, now: Instant, timing: &Timing) -> bool {
    observed_at.is_some_and(|t| now.saturating_duration_since(t) <= timing.request_timeout + timing.sleep_interval)
}

/// postgres' status as last observed, when that observation is fresh enough to trust and the
/// pass could read the data dir; `None` otherwise, exactly as if postgres had not answered.
pub fn observed_pg(s: &Snapshot, now: Instant) -> Option<&PgStatus> {
    s.pg.as_ref().filter(|_| !s.observation_failed && pg_observation_fresh(s.pg_observed_at, now, &s.timing))
}

/// What postgres is now: `master`, `standby` or `none`.
pub fn local_role(s: &Snapshot, now: Instant) -> &'static str {
    match observed_pg(s, now) {
        Some(pg) if pg.in_recovery => "standby",
        Some(_) => "master",
        None => "none",
    }
}

/// Healthy: the pass ran within the info TTL (plus a request timeout) and postgres answered at
/// a recent observation.
pub fn healthy(s: &Snapshot, now: Instant) -> bool {
    let window = s.timing.info_ttl() + s.timing.request_timeout;
    let pass_recent = s.last_pass.is_some_and(|t| now.saturating_duration_since(t) <= window);
    pass_recent && observed_pg(s, now).is_some()
}

/// How long a read of clusterdata electing this keeper lets /primary answer 200:
/// min(failInterval, proxyTimeout). The sentinel declares a master failed only after
/// failInterval without a healthy report, so a master cut off from the store stops claiming
/// to be primary before another db can be elected; and never later than the proxies fence.
pub fn primary_window(timing: &Timing) -> std::time::Duration {
    timing.fail_interval.min(timing.proxy_timeout)
}

/// Whether clusterdata elects this keeper's db: it is `cluster.status.master` and its spec
/// role is master.
pub fn elects(cd: &clusterview::ClusterData, keeper_uid: &str) -> bool {
    cd.master_db().is_some_and(|m| m.spec.keeper_uid == keeper_uid && m.spec.role == clusterview::data::DbRole::Master)
}

/// Records a successful, parsed read of clusterdata, sent at `sent_at` (`None`: there is no
/// clusterdata, which elects nobody).
pub fn record_read(s: &mut Snapshot, sent_at: Instant, cd: Option<&clusterview::ClusterData>, keeper_uid: &str) {
    s.elected_master = cd.is_some_and(|cd| elects(cd, keeper_uid));
    s.cluster_data_read_at = Some(s.cluster_data_read_at.map_or(sent_at, |t| t.max(sent_at)));
}

/// Records a read that found clusterdata unusable (corrupt, a newer format): the keeper can no
/// longer tell who is master, so it stops claiming to be (freshness is not refreshed either).
pub fn record_unusable(s: &mut Snapshot) {
    s.elected_master = false;
}

pub fn is_primary(s: &Snapshot, now: Instant) -> bool {
    let fresh = s.cluster_data_read_at.is_some_and(|t| now.saturating_duration_since(t) <= primary_window(&s.timing));
    fresh && s.elected_master && observed_pg(s, now).is_some_and(|pg| !pg.in_recovery)
}

pub fn is_replica(s: &Snapshot, now: Instant) -> bool {
    observed_pg(s, now).is_some_and(|pg| pg.in_recovery && pg.streaming)
}

fn code(ok: bool) -> StatusCode {
    if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

/// Renders the metrics.
pub fn metrics(s: &Snapshot, now: Instant) -> String {
    let mut p = PromText::new();
    let role = local_role(s, now);
    let pg = observed_pg(s, now);
    p.family("stolon_keeper_local_role", "gauge", "The role of the local postgres: 1 for the current one.");
    for r in ["master", "standby", "none"] {
        p.sample("stolon_keeper_local_role", &[("role", r)], if r == role { 1.0 } else { 0.0 });
    }
    let last = s.last_sync_success.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()).map_or(0.0, |d| d.as_secs_f64());
    p.single("stolon_keeper_last_sync_success_seconds", "gauge", "Unix time of the last pass whose steps all succeeded.", last);
    p.single("stolon_keeper_sync_failures_total", "counter", "Passes that stopped on a failed step.", s.sync_failures as f64);
    let needs_restart = pg.is_some_and(|pg| pg.pending_restart);
    p.single("stolon_keeper_needs_restart", "gauge", "1 when a changed setting waits for a postgres restart.", f64::from(u8::from(needs_restart)));
    p.single("stolon_keeper_healthy", "gauge", "1 when the keeper and its postgres are healthy (as /health).", f64::from(u8::from(healthy(s, now))));
    p.single("stolon_keeper_data_dir_missing", "gauge", "1 when the db's data dir is missing and the keeper waits for the sentinel.", f64::from(u8::from(s.data_dir_missing)));
    if let Some(pg) = pg {
        p.single("stolon_keeper_xlog_pos", "gauge", "WAL position (insert on a master; on a standby the furthest received or replayed).", pg.xlog_pos as f64);
        p.single("stolon_keeper_timeline_id", "gauge", "Current timeline.", f64::from(pg.timeline_id));
    }
    p.finish()
}

/// The probe and metrics routes.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/health", get(|State(s): State<Arc<Shared>>| async move { code(healthy(&s.get(), Instant::now())) }))
        .route("/role", get(|State(s): State<Arc<Shared>>| async move { local_role(&s.get(), Instant::now()) }))
        .route("/primary", get(|State(s): State<Arc<Shared>>| async move { code(is_primary(&s.get(), Instant::now())) }))
        .route("/replica", get(|State(s): State<Arc<Shared>>| async move { code(is_replica(&s.get(), Instant::now())) }))
        .route("/metrics", get(|State(s): State<Arc<Shared>>| async move { metrics(&s.get(), Instant::now()) }))
        .with_state(shared)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clusterview::ClusterSpec;
    use std::time::Duration;

    fn snap(pg: Option<PgStatus>) -> Snapshot {
        let shared = Shared::new(Timing::from_spec(&ClusterSpec::defaults()), None);
        let mut s = shared.get();
        s.pg = pg;
        s.pg_observed_at = Some(Instant::now());
        s.last_pass = Some(Instant::now());
        s
    }

    #[test]
    fn roles_and_probes() {
        let now = Instant::now();
        let none = snap(None);
        assert_eq!(local_role(&none, now), "none");
        assert!(!healthy(&none, Instant::now()));
        let mut master = snap(Some(PgStatus::default()));
        assert_eq!(local_role(&master, now), "master");
        assert!(healthy(&master, Instant::now()));
        assert!(!is_primary(&master, Instant::now()), "not elected");
        master.elected_master = true;
        assert!(!is_primary(&master, Instant::now()), "clusterdata never read");
        master.cluster_data_read_at = Some(Instant::now());
        assert!(is_primary(&master, Instant::now()));
        assert!(!is_primary(&master, Instant::now() + Duration::from_secs(30)), "stale clusterdata: fenced");
        let standby = snap(Some(PgStatus { in_recovery: true, streaming: false, ..Default::default() }));
        assert_eq!(local_role(&standby, now), "standby");
        assert!(!is_replica(&standby, now));
        let streaming = snap(Some(PgStatus { in_recovery: true, streaming: true, ..Default::default() }));
        assert!(is_replica(&streaming, now));
        assert!(!is_primary(&Snapshot { elected_master: true, cluster_data_read_at: Some(Instant::now()), ..streaming }, Instant::now()));
    }

    #[test]
    fn primary_only_within_min_of_fail_interval_and_proxy_timeout_after_the_read() {
        let ms = Duration::from_millis;
        let now = Instant::now() + Duration::from_secs(60);
        // (failInterval, proxyTimeout, age of the last successful read, want 200)
        let rows = [
            (4000, 4000, 0, true),
            (4000, 4000, 4000, true),
            (4000, 4000, 4001, false),
            // A proxyTimeout longer than failInterval: the sentinel may elect another master
            // after failInterval, so the claim must end by then.
            (4000, 15000, 3999, true),
            (4000, 15000, 5000, false),
            (20000, 10000, 10001, false),
            (20000, 10000, 9000, true),
        ];
        for (fail, proxy, age, want) in rows {
            let mut s = snap(Some(PgStatus::default()));
            s.pg_observed_at = Some(now);
            s.timing.fail_interval = ms(fail);
            s.timing.proxy_timeout = ms(proxy);
            s.elected_master = true;
            s.cluster_data_read_at = Some(now - ms(age));
            assert_eq!(is_primary(&s, now), want, "failInterval {fail} ms, proxyTimeout {proxy} ms, read {age} ms ago");
        }
    }

    #[test]
    fn an_unusable_read_ends_the_claim_at_once_and_does_not_refresh_it() {
        let mut cd = crate::desired::tests::cluster(r#"{"initMode":"new"}"#);
        let mut s = snap(Some(PgStatus::default()));
        let t0 = Instant::now();
        record_read(&mut s, t0, Some(&cd), "k1");
        assert!(is_primary(&s, t0), "k1's db1 is the master");
        record_unusable(&mut s);
        assert!(!is_primary(&s, t0));
        assert_eq!(s.cluster_data_read_at, Some(t0), "not refreshed");
        record_read(&mut s, t0 + Duration::from_secs(1), Some(&cd), "k1");
        assert!(is_primary(&s, t0 + Duration::from_secs(1)));
        // Another keeper's db, no master, no clusterdata, or the master db not (yet) master.
        record_read(&mut s, t0, Some(&cd), "k2");
        assert!(!s.elected_master);
        record_read(&mut s, t0, None, "k1");
        assert!(!s.elected_master);
        cd.dbs.get_mut("db1").unwrap().spec.role = clusterview::data::DbRole::Standby;
        record_read(&mut s, t0, Some(&cd), "k1");
        assert!(!s.elected_master);
        // An answer to an older request never moves freshness back.
        assert_eq!(s.cluster_data_read_at, Some(t0 + Duration::from_secs(1)));
    }

    #[test]
    fn observation_freshness() {
        // Defaults: sleepInterval 1s + requestTimeout 3s.
        let timing = Timing::from_spec(&ClusterSpec::defaults());
        let limit = timing.request_timeout + timing.sleep_interval;
        let now = Instant::now() + Duration::from_secs(60);
        let ms = Duration::from_millis;
        let rows = [
            ("never observed", None, false),
            ("just now", Some(now), true),
            ("one sleepInterval ago", Some(now - timing.sleep_interval), true),
            ("at the limit", Some(now - limit), true),
            ("just past the limit", Some(now - limit - ms(1)), false),
            ("long ago", Some(now - Duration::from_secs(30)), false),
            // Stored by another thread after `now` was taken.
            ("after now", Some(now + ms(5)), true),
        ];
        for (name, observed_at, want) in rows {
            assert_eq!(pg_observation_fresh(observed_at, now, &timing), want, "{name}");
        }
    }

    #[test]
    fn a_stale_healthy_observation_vouches_for_nothing() {
        let mut s = snap(Some(PgStatus { in_recovery: true, streaming: true, ..Default::default() }));
        s.elected_master = true;
        s.cluster_data_read_at = Some(Instant::now());
        let now = Instant::now();
        assert!(observed_pg(&s, now).is_some() && healthy(&s, now) && is_replica(&s, now));
        // The pass loop still runs (last_pass fresh) but postgres stopped answering 5 s ago.
        s.pg_observed_at = Some(now - Duration::from_secs(5));
        s.last_pass = Some(now);
        assert!(observed_pg(&s, now).is_none());
        assert_eq!(local_role(&s, now), "none");
        assert!(!healthy(&s, now));
        assert!(!is_replica(&s, now));
        let text = metrics(&s, now);
        assert!(text.contains("stolon_keeper_healthy 0") && !text.contains("stolon_keeper_xlog_pos"), "{text}");
        let mut master = snap(Some(PgStatus::default()));
        master.elected_master = true;
        master.cluster_data_read_at = Some(now);
        master.pg_observed_at = Some(now - Duration::from_secs(5));
        assert!(!is_primary(&master, now));
    }

    #[test]
    fn a_failed_data_dir_observation_reports_postgres_not_healthy() {
        let mut s = snap(Some(PgStatus { in_recovery: true, streaming: true, ..Default::default() }));
        let now = Instant::now();
        assert!(healthy(&s, now));
        s.observation_failed = true;
        assert!(observed_pg(&s, now).is_none() && !healthy(&s, now) && !is_replica(&s, now));
        assert!(!s.data_dir_missing, "an unreadable data dir is not reported missing");
    }

    #[test]
    fn stale_pass_is_unhealthy() {
        let s = snap(Some(PgStatus::default()));
        assert!(!healthy(&s, Instant::now() + Duration::from_secs(60)));
    }

    #[test]
    fn metrics_text() {
        let mut s = snap(Some(PgStatus { in_recovery: true, pending_restart: true, ..Default::default() }));
        s.last_sync_success = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1000));
        let text = metrics(&s, Instant::now());
        assert!(text.contains("stolon_keeper_local_role{role=\"standby\"} 1"), "{text}");
        assert!(text.contains("stolon_keeper_local_role{role=\"master\"} 0"), "{text}");
        assert!(text.contains("stolon_keeper_last_sync_success_seconds 1000"), "{text}");
        assert!(text.contains("stolon_keeper_needs_restart 1"), "{text}");
    }

    #[tokio::test]
    async fn served_over_http() {
        let shared = Shared::new(Timing::from_spec(&ClusterSpec::defaults()), None);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, router(shared)).await });
        let get = |path: &'static str| async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            c.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
            let mut out = String::new();
            c.read_to_string(&mut out).await.unwrap();
            out
        };
        assert!(get("/role").await.ends_with("none"));
        assert!(get("/health").await.starts_with("HTTP/1.1 503"));
        assert!(get("/primary").await.starts_with("HTTP/1.1 503"));
        assert!(get("/metrics").await.contains("stolon_keeper_local_role"));
        server.abort();
    }
}
