//! The keeper's three loops.
//!
//! - The *pass* loop (`Keeper::run`), every sleepInterval: read clusterdata, observe, plan,
//!   execute. A step may take long (pg_basebackup), so this loop does not publish.
//! - The *observer* loop (`observe_loop`), every sleepInterval: look at postgres (one status
//!   check, bounded by requestTimeout) and store what it saw, and when, in `Shared`. When a pass
//!   changed something (new plan, newly converged generation) it looks at once and has the
//!   publisher publish at once, so a promotion is reported without waiting for both cadences.
//! - The *claim* loop (`cluster_data_loop`), every sleepInterval and at once on a change
//!   (a watch on clusterdata): read clusterdata for `/primary` (`http::record_read`), so the
//!   probe follows the store even while a pass runs a long step, and wake the pass loop on a
//!   change.
//! - The *publish* loop (`publish_loop`), on a fixed sleepInterval cadence: publish a KeeperInfo
//!   with a fresh infoUID from the latest observation. The sentinel judges a keeper alive by infos
//!   that keep changing, so this loop never waits on postgres: a slow postgres must not look
//!   like a dead keeper (a false failover). An observation too old to trust is published as
//!   "postgres not healthy", never as the last healthy status (`http::observed_pg`).
//!
//! Faults: when the store cannot be read, or clusterdata cannot be used (corrupt, or a newer
//! format written by a newer sentinel or stolonctl), the pass loop holds still: postgres keeps
//! running as it is (no stop, no demotion, no plan from a stale copy: the keeper cannot know
//! what the sentinel decided meanwhile), and `/primary` stops answering 200 (`http`).

use crate::config::KeeperConfig;
use crate::desired::{self, Timing};
use crate::exec::Executor;
use crate::http::{self, Shared, Snapshot};
use crate::info::{self, InfoInput};
use crate::observe::{self, Memory};
use crate::plan::{plan, DataDir, Step};
use clusterview::info::KeeperInfo;
use clusterview::store::InfoKind;
use clusterview::{ClusterData, Store, StoreError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tracing::Instrument;

/// What the last read of clusterdata gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoreState {
    Fresh,
    /// No clusterdata: the cluster was not initialized (`stolonctl init`).
    Absent,
    /// The document could not be used (corrupt, a newer format): hold still.
    Unusable,
    Unreachable,
}

/// The pass loop's state.
pub struct Keeper {
    cfg: Arc<KeeperConfig>,
    store: Store,
    shared: Arc<Shared>,
    pub exec: Executor,
    pub(crate) last_cd: Option<ClusterData>,
    store_state: Option<StoreState>,
    /// The last plan, to log a plan only when it changes.
    pub(crate) last_plan: Vec<Step>,
    /// The last failure logged and when, so a failure repeated every pass is logged once a minute.
    last_error: Option<(String, Instant)>,
}

/// How often the same failure is logged again while it repeats.
const REPEATED_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(60);

impl Keeper {
    pub fn new(cfg: Arc<KeeperConfig>, store: Store, shared: Arc<Shared>, exec: Executor) -> Keeper {
        Keeper { cfg, store, shared, exec, last_cd: None, store_state: None, last_plan: Vec::new(), last_error: None }
    }

    fn timing(&self) -> Timing {
        self.last_cd.as_ref().map_or_else(|| Timing::from_spec(&clusterview::ClusterSpec::defaults()), |cd| Timing::from_spec(&cd.cluster.spec))
    }

    /// Runs passes forever; cancelled by dropping the future (shutdown).
    pub async fn run(&mut self) {
        loop {
            let span = tracing::info_span!("pass", keeper = %self.cfg.uid);
            self.pass().instrument(span).await;
            tokio::select! {
                _ = tokio::time::sleep(self.timing().sleep_interval) => {}
                // Clusterdata changed: act on it now (a demotion above all).
                _ = self.shared.pass_now.notified() => {}
            }
        }
    }

    async fn read_cluster_data(&mut self) -> StoreState {
        let state = match self.store.get_cluster_data().await {
            Ok(Some(v)) => {
                let unknown = v.value.cluster.spec.unknown_fields();
                let before = self.last_cd.as_ref().map(|cd| cd.cluster.spec.unknown_fields()).unwrap_or_default();
                if !unknown.is_empty() && unknown != before {
                    tracing::warn!(fields = ?unknown, "cluster spec fields unknown to this keeper are ignored (set by a newer version, or misspelled)");
                }
                self.last_cd = Some(v.value);
                StoreState::Fresh
            }
            Ok(None) => StoreState::Absent,
            Err(StoreError::Data(err)) => {
                self.log_failure(format!("clusterdata in the store is unusable ({err}): holding still (postgres is left as it is and /primary answers 503) until it can be read; a newer sentinel or stolonctl may have written it: upgrade this keeper"));
                StoreState::Unusable
            }
            Err(err) => {
                if self.store_state != Some(StoreState::Unreachable) {
                    tracing::warn!(error = %err, "cannot read clusterdata; leaving postgres as it is until the store answers");
                }
                StoreState::Unreachable
            }
        };
        if self.store_state != Some(state) {
            match state {
                StoreState::Absent => tracing::info!("no clusterdata yet: waiting for `stolonctl init`"),
                StoreState::Fresh if self.store_state.is_some() => tracing::info!("clusterdata readable again"),
                _ => {}
            }
        }
        self.store_state = Some(state);
        state
    }

    /// One pass: clusterdata, observation, plan, execution.
    pub(crate) async fn pass(&mut self) {
        // What /primary says is the claim loop's (`cluster_data_loop`); this read is for the plan.
        let state = self.read_cluster_data().await;
        let Some(cd) = self.last_cd.clone().filter(|_| state == StoreState::Fresh) else {
            self.shared.lock().last_pass = Some(Instant::now());
            return;
        };
        let target = desired::target(&cd, &self.cfg, self.exec.recorded.as_ref());
        let running = self.exec.running();
        let rewind_failed = target.desired.db.as_ref().is_some_and(|db| self.exec.rewind_failed_for.as_deref() == Some(db.uid.as_str()));
        let memory = Memory { conf_applied: self.exec.conf_applied, rewind_failed };
        let (mut observed, _) = match observe::observe(&self.cfg, running, &memory, target.timing.request_timeout).await {
            Ok(observation) => {
                self.shared.lock().observation_failed = false;
                observation
            }
            Err(err) => {
                // Hold still: no plan from a guess about the data dir, and no dataDirMissing.
                let mut s = self.shared.lock();
                s.observation_failed = true;
                s.last_pass = Some(Instant::now());
                drop(s);
                self.log_failure(err.to_string());
                return;
            }
        };
        if restricted_master(&target.desired, &observed) {
            // The observer's confirmed set: a standby counts once it flushed what the master
            // had when it was first seen listed after the start, so it holds the commits that
            // were waiting when postgres stopped.
            let s = self.shared.lock();
            observed.in_sync_standbys = http::observed_pg(&s, Instant::now()).map(|pg| pg.synchronous_standbys.iter().cloned().collect());
        }
        let steps = plan(&target.desired, &observed);
        let new_plan = steps != self.last_plan;
        if new_plan {
            tracing::info!(db = ?target.desired.db.as_ref().map(|d| &d.uid), ?steps, ?observed, "plan");
            self.last_plan = steps.clone();
        }
        if !steps.contains(&Step::ReportDataDirMissing) || observed.data_dir == DataDir::Present {
            self.exec.data_dir_missing = false;
        }
        let result = self.exec.run(&steps, &target, new_plan).await;
        let mut s = self.shared.lock();
        // A new plan (a promote, a restart, a follow) or a newly converged generation is what the
        // sentinel waits for to go on with a failover: report it now, not up to two
        // sleepIntervals later on the observer's and the publisher's own cadences.
        if new_plan || s.recorded != self.exec.recorded {
            self.shared.observe_now.notify_one();
        }
        s.timing = target.timing;
        s.cluster_uid = Some(cd.cluster.uid.clone());
        s.recorded = self.exec.recorded.clone();
        s.data_dir_missing = self.exec.data_dir_missing;
        s.last_pass = Some(Instant::now());
        match result {
            Ok(()) => {
                s.last_sync_success = Some(SystemTime::now());
                drop(s);
                if self.last_error.take().is_some() {
                    tracing::info!("pass succeeded again");
                }
            }
            Err(err) => {
                s.sync_failures += 1;
                drop(s);
                self.log_failure(err.to_string());
            }
        }
    }

    /// Logs why a pass stopped; the same failure repeated every pass only once a minute.
    fn log_failure(&mut self, text: String) {
        let repeated = self.last_error.as_ref().is_some_and(|(last, at)| *last == text && at.elapsed() < REPEATED_ERROR_LOG_INTERVAL);
        if repeated {
            tracing::debug!(error = %text, "pass stopped (again)");
        } else {
            tracing::error!(error = %text, "pass stopped; retrying every sleepInterval");
            self.last_error = Some((text, Instant::now()));
        }
    }

    /// Stops postgres on shutdown: fast, then immediate if fast did not work.
    pub async fn shutdown(&mut self) {
        if !self.exec.running() {
            return;
        }
        tracing::info!("stopping postgres (fast shutdown)");
        if let Err(err) = self.exec.stop("fast").await {
            tracing::error!(error = %err, "fast shutdown failed; trying immediate");
            if let Err(err) = self.exec.stop("immediate").await {
                tracing::error!(error = %err, "postgres could not be stopped");
            }
        }
    }
}

/// A running primary with synchronous replication whose configuration on disk is the restricted
/// one: the plan needs its in-sync standbys to let clients in.
fn restricted_master(d: &crate::plan::Desired, o: &crate::plan::Observed) -> bool {
    let sync = d.db.as_ref().is_some_and(|db| db.role == clusterview::data::DbRole::Master && db.sync_standbys.is_some());
    sync && o.running && o.in_recovery == Some(false) && o.conf_on_disk == Some(d.restricted_conf_hash)
}

/// Looks at postgres every sleepInterval and stores the result with its time, forever. A check
/// that hangs ends at requestTimeout (`observe::pg_status`) as "postgres did not answer".
pub async fn observe_loop(cfg: Arc<KeeperConfig>, shared: Arc<Shared>) {
    let mut nudged = false;
    // Kept across looks: a standby is confirmed in sync only once it flushed what the master
    // had when the standby was first seen listed (`insync`).
    let mut confirmations = crate::insync::SyncConfirmations::default();
    loop {
        let timing = shared.lock().timing;
        let mut status = observe::pg_status(&cfg, timing.request_timeout).await;
        match status.as_mut().filter(|s| !s.in_recovery) {
            Some(s) => s.synchronous_standbys = confirmations.confirm(s.xlog_pos, &s.listed_in_sync),
            None => confirmations = Default::default(),
        }
        let history = status.as_ref().map(|s| info::read_timeline_history(&cfg.pgdata, s.timeline_id)).unwrap_or_default();
        {
            let mut s = shared.lock();
            s.pg = status;
            s.pg_history = history;
            s.pg_observed_at = Some(Instant::now());
        }
        if nudged {
            shared.publish_now.notify_one();
        }
        nudged = tokio::select! {
            _ = tokio::time::sleep(timing.sleep_interval) => false,
            _ = shared.observe_now.notified() => true,
        };
    }
}

/// Reads clusterdata for `/primary` every sleepInterval, and at once when the watch reports a
/// change, forever. Each read is bounded by requestTimeout; only a successful, parsed read
/// refreshes the claim (`http::record_read`), an unusable one ends it at once.
pub async fn cluster_data_loop(cfg: Arc<KeeperConfig>, store: Store, shared: Arc<Shared>) {
    let mut watch: Option<clusterview::store::ClusterDataWatch> = None;
    let mut failing: Option<&'static str> = None;
    loop {
        let timing = shared.lock().timing;
        let sent_at = Instant::now();
        let read = tokio::time::timeout(timing.request_timeout, store.get_cluster_data()).await;
        let failure = match read {
            Ok(Ok(cd)) => {
                http::record_read(&mut shared.lock(), sent_at, cd.as_ref().map(|v| &v.value), &cfg.uid);
                None
            }
            Ok(Err(StoreError::Data(err))) => {
                http::record_unusable(&mut shared.lock());
                if failing != Some("unusable") {
                    tracing::error!(error = %err, "clusterdata is unusable: /primary answers 503 until it can be read");
                }
                Some("unusable")
            }
            Ok(Err(err)) => {
                if failing != Some("unreachable") {
                    tracing::warn!(error = %err, window = ?http::primary_window(&timing), "cannot read clusterdata: /primary answers 503 once the last read is older than the window");
                }
                Some("unreachable")
            }
            Err(_) => {
                if failing != Some("timeout") {
                    tracing::warn!(timeout = ?timing.request_timeout, "reading clusterdata took longer than requestTimeout");
                }
                Some("timeout")
            }
        };
        if failing.is_some() && failure.is_none() {
            tracing::info!("clusterdata readable again");
        }
        failing = failure;
        if watch.is_none() {
            watch = tokio::time::timeout(timing.request_timeout, store.watch_cluster_data(0)).await.ok().and_then(Result::ok);
        }
        // A broken watch is made again on the next round, not at once: a watch that keeps
        // breaking must not turn this into a busy loop.
        let sleep = tokio::time::sleep(timing.sleep_interval);
        tokio::pin!(sleep);
        let changed = loop {
            tokio::select! {
                _ = &mut sleep => break false,
                changed = next_change(&mut watch) => if changed { break true },
            }
        };
        if changed {
            shared.pass_now.notify_one();
        }
    }
}

/// Resolves on the next clusterdata change (`true`), or when the watch broke (`false`; it is
/// dropped, and made again by the caller); never when there is no watch. An unreadable new document is a
/// change too: the next read finds it unusable.
async fn next_change(watch: &mut Option<clusterview::store::ClusterDataWatch>) -> bool {
    let Some(w) = watch else { return std::future::pending().await };
    match w.next().await {
        Ok(_) | Err(StoreError::Data(_)) => true,
        Err(err) => {
            tracing::debug!(error = %err, "clusterdata watch ended; watching again");
            *watch = None;
            false
        }
    }
}

/// The KeeperInfo to publish at `now` from the loops' snapshot: postgres as last observed when
/// that observation is fresh, else not healthy.
fn info_at(cfg: &KeeperConfig, snapshot: &Snapshot, boot_uuid: &str, now: Instant) -> KeeperInfo {
    info::keeper_info(
        cfg,
        InfoInput {
            cluster_uid: snapshot.cluster_uid.as_deref(),
            boot_uuid,
            recorded: snapshot.recorded.as_ref(),
            data_dir_missing: snapshot.data_dir_missing,
            pg: http::observed_pg(snapshot, now).map(|s| (s, snapshot.pg_history.clone())),
        },
    )
}

/// Publishes the keeper's info every sleepInterval, forever, from what the observer last saw.
pub async fn publish_loop(cfg: Arc<KeeperConfig>, store: Store, shared: Arc<Shared>, boot_uuid: String) {
    let mut publisher: Option<(Duration, clusterview::store::InfoPublisher)> = None;
    let mut failing = false;
    let mut stale = false;
    let mut next = tokio::time::Instant::now();
    loop {
        let snapshot = shared.get();
        let timing = snapshot.timing;
        let ttl = timing.info_ttl();
        if publisher.as_ref().map(|(t, _)| *t) != Some(ttl) {
            publisher = Some((ttl, clusterview::store::InfoPublisher::new(&store, InfoKind::Keeper, &cfg.uid, ttl)));
        }
        let now = Instant::now();
        // Before the first observation there is nothing to warn about; after it, an old one
        // means the observer's checks stopped returning.
        let is_stale = snapshot.pg_observed_at.is_some() && !http::pg_observation_fresh(snapshot.pg_observed_at, now, &timing);
        if is_stale != stale {
            let age = snapshot.pg_observed_at.map(|t| now.saturating_duration_since(t));
            if is_stale {
                tracing::warn!(?age, limit = ?(timing.request_timeout + timing.sleep_interval), "no recent observation of postgres; publishing it as not healthy");
            } else {
                tracing::info!("postgres observed again; publishing its status");
            }
            stale = is_stale;
        }
        let keeper_info = info_at(&cfg, &snapshot, &boot_uuid, now);
        if let Some((_, p)) = publisher.as_mut() {
            match p.publish(&keeper_info).await {
                Ok(()) if failing => {
                    tracing::info!("publishing the keeper info again");
                    failing = false;
                }
                Ok(()) => {}
                Err(err) => {
                    if !failing {
                        tracing::warn!(error = %err, "cannot publish the keeper info; retrying every sleepInterval");
                    }
                    failing = true;
                }
            }
        }
        // A fixed cadence: time spent publishing shortens the wait instead of adding to it, and
        // a publication that overran starts the next one at once rather than a burst of them.
        next = (next + timing.sleep_interval).max(tokio::time::Instant::now());
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            // A change to report: publish it now, and go on with the cadence from here.
            _ = shared.publish_now.notified() => next = tokio::time::Instant::now(),
        }
    }
}

/// Removes the keeper's info on clean shutdown, so the sentinel need not wait for its lease.
pub async fn withdraw_info(cfg: &KeeperConfig, store: &Store) {
    let mut publisher = clusterview::store::InfoPublisher::new(store, InfoKind::Keeper, &cfg.uid, Duration::from_secs(1));
    if let Err(err) = publisher.withdraw().await {
        tracing::debug!(error = %err, "cannot withdraw the keeper info; it expires with its lease");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::PgStatus;
    use clusterview::data::{DbRole, TimelineHistoryEntry};

    #[test]
    fn published_postgres_state_follows_the_observation_age() {
        let cfg = crate::desired::tests::config("k1");
        let shared = Shared::new(desired::Timing::from_spec(&clusterview::ClusterSpec::defaults()), None);
        let now = Instant::now() + Duration::from_secs(60);
        let history = vec![TimelineHistoryEntry { timeline_id: 1, switch_point: 10, reason: String::new() }];
        let healthy_pg = Some(PgStatus { timeline_id: 2, ..Default::default() });
        // (observation, its age, published healthy)
        let rows = [
            ("healthy, just observed", healthy_pg.clone(), Some(Duration::ZERO), true),
            ("healthy, observed 4 s ago (sleepInterval + requestTimeout)", healthy_pg.clone(), Some(Duration::from_secs(4)), true),
            ("healthy, but observed 5 s ago: stale", healthy_pg.clone(), Some(Duration::from_secs(5)), false),
            ("not answering, just observed", None, Some(Duration::ZERO), false),
            ("never observed", healthy_pg, None, false),
        ];
        for (name, pg, age, want_healthy) in rows {
            let mut s = shared.get();
            s.pg = pg;
            s.pg_history = history.clone();
            s.pg_observed_at = age.map(|a| now - a);
            let state = info_at(&cfg, &s, "boot", now).postgres_state.unwrap();
            assert_eq!(state.healthy, want_healthy, "{name}");
            if want_healthy {
                assert_eq!((state.role, state.timeline_id, state.timelines_history.len()), (Some(DbRole::Master), 2, 1), "{name}");
            } else {
                // The shape published when postgres does not answer: nothing claimed about it.
                assert_eq!((state.role, state.system_id, state.timeline_id), (None, None, 0), "{name}");
                assert!(state.timelines_history.is_empty(), "{name}");
            }
        }
    }
}
