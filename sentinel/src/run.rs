//! The sentinel loop: the thin I/O adapter around the decision core.
//!
//! Every `sleepInterval` (from the clusterdata spec; the default until there is one) the loop
//! reads clusterdata (creating it from `--initial-cluster-spec` when there is none) and publishes
//! this sentinel's info. While this sentinel leads, the same tick reads the keeper and proxy infos,
//! folds them into the memory (`observe`), decides, and writes the result by compare-and-swap on
//! the revision it read. The campaign runs in its own task (`campaign`).
//!
//! Safety (safety rule 1, §2.5): deciding stops at once when the leadership may be lost (the round
//! is raced against `Leadership::lost` and the lease is checked again right before writing); each
//! new term starts from an empty memory, so it waits a full `failInterval` of fresh evidence.
//! Corrupt clusterdata is never overwritten; an unreachable store is logged and retried. Every
//! write compares this sentinel's election key in the same transaction (a stale leader cannot
//! write). `--initial-cluster-spec` creates clusterdata only when no keeper reports existing data.

use crate::campaign::{self, CampaignLink};
use crate::decide::{decide, observe, Memory, Observed};
use crate::metrics::Metrics;
use crate::report::{self, Reporter};
use chrono::Utc;
use clusterview::data::ClusterData;
use clusterview::info::{KeeperInfo, ProxyInfo, SentinelInfo};
use clusterview::spec::ClusterSpec;
use clusterview::store::{Expect, InfoKind, InfoPublisher, Leadership, Store, StoreError, Versioned};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, error, info, warn, Instrument};

/// The shortest tick, whatever the spec says (a zero sleepInterval would spin).
const MIN_SLEEP: Duration = Duration::from_millis(100);

/// What the loop needs besides the store.
pub struct Config {
    pub uid: String,
    /// Validated spec to create clusterdata with when there is none.
    pub initial_spec: Option<ClusterSpec>,
}

/// Loop timing derived from the cluster spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Timing {
    sleep: Duration,
    /// TTL of the info and election leases: max(3 * sleepInterval, failInterval).
    ttl: Duration,
}

impl Timing {
    fn of(spec: &ClusterSpec) -> Timing {
        let sleep = spec.sleep_interval().max(MIN_SLEEP);
        Timing { sleep, ttl: clusterview::spec::info_ttl(sleep, spec.fail_interval()) }
    }
}

/// The loop's state between ticks.
struct Sentinel {
    store: Store,
    config: Config,
    metrics: Arc<Metrics>,
    /// The monotonic epoch of the decision core's times.
    start: Instant,
    timing: Timing,
    publisher: InfoPublisher,
    /// Tells the campaign task the lease TTL to ask for.
    ttl_tx: watch::Sender<Duration>,
    /// `Some` while leading: the memory of this term.
    memory: Option<Memory>,
    reporter: Reporter,
    /// Spec fields this version does not know, as last logged (logged again only on a change).
    unknown_spec_fields: Vec<String>,
    /// Since when this leader has seen no clusterdata (for `--initial-cluster-spec`).
    absent_since: Option<Instant>,
}

/// Runs until `shutdown` resolves, then resigns and withdraws the info.
pub async fn run(store: Store, config: Config, metrics: Arc<Metrics>, shutdown: impl Future<Output = ()>) {
    let timing = Timing::of(&ClusterSpec::default());
    let (ttl_tx, ttl_rx) = watch::channel(timing.ttl);
    let (campaign_task, mut link) = campaign::spawn(store.clone(), config.uid.clone(), ttl_rx);
    let publisher = InfoPublisher::new(&store, InfoKind::Sentinel, &config.uid, timing.ttl);
    let mut s = Sentinel {
        store,
        config,
        metrics,
        start: Instant::now(),
        timing,
        publisher,
        ttl_tx,
        memory: None,
        reporter: Reporter::default(),
        unknown_spec_fields: Vec::new(),
        absent_since: None,
    };
    let mut leadership: Option<Leadership> = None;
    let mut next_tick = Instant::now();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(won) = link.elected.recv(), if leadership.is_none() => {
                info!(uid = %s.config.uid, "elected sentinel leader; failing nothing before failInterval of fresh evidence");
                leadership = Some(won);
                s.begin_term();
                next_tick = Instant::now();
            }
            _ = lost(leadership.as_ref()) => {
                warn!(uid = %s.config.uid, "sentinel leadership lost; stopped deciding");
                leadership = None;
                s.end_term(&link);
            }
            _ = tokio::time::sleep_until(next_tick) => {
                let started = Instant::now();
                let round = s.tick(leadership.as_ref()).instrument(tracing::debug_span!("tick"));
                tokio::select! {
                    _ = round => {}
                    _ = lost(leadership.as_ref()) => debug!("round abandoned: leadership lost"),
                    _ = &mut shutdown => break,
                }
                next_tick = started + s.timing.sleep;
            }
        }
    }
    info!("shutting down");
    drop(campaign_task);
    s.metrics.set_leader(false);
    if let Some(l) = leadership.take() {
        resign(l).await;
    }
    // A leadership won while shutting down is given back too.
    while let Ok(l) = link.elected.try_recv() {
        resign(l).await;
    }
    match s.publisher.withdraw().await {
        Ok(()) => debug!("sentinel info withdrawn"),
        Err(err) => warn!(error = %err, "could not withdraw the sentinel info; it expires with its lease"),
    }
}

/// Resolves when `leadership` may be lost; never when there is none.
async fn lost(leadership: Option<&Leadership>) {
    match leadership {
        Some(l) => l.lost().await,
        None => std::future::pending().await,
    }
}

async fn resign(leadership: Leadership) {
    match leadership.resign().await {
        Ok(()) => info!("resigned sentinel leadership"),
        Err(err) => warn!(error = %err, "could not resign; leadership expires with its lease"),
    }
}

impl Sentinel {
    fn begin_term(&mut self) {
        self.memory = Some(Memory::new(self.start.elapsed()));
        self.reporter.reset();
        self.metrics.set_leader(true);
    }

    fn end_term(&mut self, link: &CampaignLink) {
        self.memory = None;
        self.metrics.set_leader(false);
        // The campaign task waits for this to campaign again; a full channel means it was told.
        let _ = link.term_ended.try_send(());
    }

    /// One tick: read clusterdata, publish the info, and decide when leading.
    async fn tick(&mut self, leadership: Option<&Leadership>) {
        let cd = self.read_cluster_data(leadership).await;
        if let Some(cd) = &cd {
            self.apply_timing(Timing::of(&cd.value.cluster.spec));
            let unknown = cd.value.cluster.spec.unknown_fields();
            if !unknown.is_empty() && unknown != self.unknown_spec_fields {
                warn!(fields = ?unknown, "cluster spec fields unknown to this sentinel are ignored (set by a newer version, or misspelled); they are kept in clusterdata");
            }
            self.unknown_spec_fields = unknown;
        }
        self.publish_info().await;
        match (leadership, cd) {
            (Some(l), Some(cd)) if l.is_valid() => self.decide_round(l, cd).await,
            _ => {}
        }
    }

    /// Clusterdata, creating it from `--initial-cluster-spec` when absent (see `initialize`).
    /// `None` when there is none, it is unusable, or the store cannot be read (all logged).
    async fn read_cluster_data(&mut self, leadership: Option<&Leadership>) -> Option<Versioned<ClusterData>> {
        let read = self.store.get_cluster_data().await;
        if !matches!(read, Ok(None)) {
            self.absent_since = None;
        }
        match read {
            Ok(Some(cd)) => Some(cd),
            Ok(None) => {
                match leadership.filter(|l| l.is_valid()) {
                    Some(l) => self.initialize(l).await,
                    None => self.absent_since = None,
                }
                None
            }
            Err(StoreError::Data(err)) => {
                error!(error = %err, "stored clusterdata is unusable; not touching it (inspect it with `stolonctl clusterdata read`)");
                None
            }
            Err(err) => {
                warn!(error = %err, "cannot read clusterdata; retrying next tick");
                None
            }
        }
    }

    /// Creates clusterdata from `--initial-cluster-spec`, by the leader only, and only when it is
    /// surely a new cluster (safety rule 4: a lost or renamed clusterdata key never turns into an
    /// empty cluster by itself): no keeper info under this cluster's prefix reports existing data
    /// (a db uid or a system id), after waiting one info TTL with no clusterdata so that every
    /// running keeper has published since, e.g., an emptied etcd came back.
    async fn initialize(&mut self, leadership: &Leadership) {
        let Some(spec) = self.config.initial_spec.clone() else {
            debug!("no clusterdata yet; waiting for `stolonctl init` (or start with --initial-cluster-spec)");
            return;
        };
        let since = *self.absent_since.get_or_insert_with(Instant::now);
        let keepers = match self.store.list_infos::<KeeperInfo>(InfoKind::Keeper).await {
            Ok(infos) => infos,
            Err(err) => return warn!(error = %err, "cannot list keeper infos; not initializing the cluster this tick"),
        };
        let with_data = keepers_with_data(&keepers);
        if !with_data.is_empty() {
            return error!(
                keepers = ?with_data,
                "no clusterdata, but these keepers report existing data: not initializing a new, empty cluster from \
                 --initial-cluster-spec. If clusterdata was lost, restore it (`stolonctl clusterdata write`); if a new \
                 cluster over this data is really wanted, run `stolonctl init` and confirm"
            );
        }
        if since.elapsed() < self.timing.ttl {
            return debug!(waited = ?since.elapsed(), "no clusterdata; waiting one info TTL for keepers to report before initializing");
        }
        let cd = ClusterData::new_initializing(spec, Utc::now());
        match self.store.put_cluster_data_as_leader(&cd, Expect::Absent, leadership).await {
            Ok(_) => info!(cluster_uid = %cd.cluster.uid, "cluster initialized from --initial-cluster-spec"),
            Err(StoreError::Conflict) => debug!("clusterdata was created meanwhile by someone else"),
            Err(err) => warn!(error = %err, "cannot create clusterdata; retrying next tick"),
        }
    }

    fn apply_timing(&mut self, timing: Timing) {
        if timing == self.timing {
            return;
        }
        if timing.ttl != self.timing.ttl {
            // A new publisher gets the new TTL; the old lease expires by itself.
            self.publisher = InfoPublisher::new(&self.store, InfoKind::Sentinel, &self.config.uid, timing.ttl);
            let _ = self.ttl_tx.send(timing.ttl);
        }
        debug!(sleep = ?timing.sleep, ttl = ?timing.ttl, "timing from the cluster spec");
        self.timing = timing;
    }

    async fn publish_info(&mut self) {
        let info = SentinelInfo {
            info_uid: clusterview::new_info_uid(),
            uid: self.config.uid.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        };
        if let Err(err) = self.publisher.publish(&info).await {
            warn!(error = %err, "cannot publish the sentinel info; retrying next tick");
        }
    }

    /// Reads the infos, decides, and writes the result if it changes anything.
    async fn decide_round(&mut self, leadership: &Leadership, cd: Versioned<ClusterData>) {
        let keepers = match self.store.list_infos::<KeeperInfo>(InfoKind::Keeper).await {
            Ok(infos) => infos,
            Err(err) => return warn!(error = %err, "cannot list keeper infos; retrying next tick"),
        };
        let proxies = match self.store.list_infos::<ProxyInfo>(InfoKind::Proxy).await {
            Ok(infos) => infos,
            Err(err) => return warn!(error = %err, "cannot list proxy infos; retrying next tick"),
        };
        let now = self.start.elapsed();
        let memory = self.memory.get_or_insert_with(|| Memory::new(now));
        *memory = observe(memory, Some(&cd.value), &keepers, &proxies, now);
        let obs = Observed { keepers: &keepers, proxies: &proxies, memory, now, wall: Utc::now() };
        let decision = decide(&cd.value, &obs, &mut clusterview::new_uid);
        self.reporter.conditions(&decision.events);
        let Some(next) = decision.next else {
            self.succeeded(false);
            return;
        };
        if !leadership.is_valid() {
            return warn!("leadership may be lost; decision discarded");
        }
        match self.store.put_cluster_data_as_leader(&next, Expect::Revision(cd.revision), leadership).await {
            Ok(_) => {
                report::changes(&decision.events, &cd.value, &next);
                self.succeeded(true);
            }
            Err(StoreError::Conflict) => info!("clusterdata changed meanwhile; deciding again next tick"),
            Err(StoreError::NotLeader) => warn!("no longer the leader (election key gone); decision discarded"),
            Err(err) => warn!(error = %err, "cannot write clusterdata; retrying next tick"),
        }
    }

    fn succeeded(&self, wrote: bool) {
        let unix_ms = u64::try_from(Utc::now().timestamp_millis()).unwrap_or(0);
        self.metrics.decision_succeeded(unix_ms, wrote);
    }
}

/// Keepers whose info reports existing data: a db uid (their dbstate.json) or a system id.
fn keepers_with_data(keepers: &std::collections::BTreeMap<String, KeeperInfo>) -> Vec<String> {
    keepers
        .values()
        .filter(|k| k.postgres_state.as_ref().is_some_and(|s| s.db_uid.is_some() || s.system_id.is_some()))
        .map(|k| k.uid.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepers_with_data_are_those_reporting_a_db_uid_or_a_system_id() {
        use clusterview::info::PostgresState;
        let keeper = |uid: &str, state: Option<PostgresState>| KeeperInfo {
            info_uid: "i".into(),
            uid: uid.into(),
            cluster_uid: None,
            boot_uuid: "b".into(),
            postgres_binary_version: None,
            pg_listen_address: "h".into(),
            pg_port: 1,
            can_be_master: None,
            can_be_synchronous_replica: None,
            data_dir_missing: false,
            postgres_state: state,
        };
        let infos: std::collections::BTreeMap<String, KeeperInfo> = [
            keeper("empty", Some(PostgresState::default())),
            keeper("none", None),
            keeper("dbuid", Some(PostgresState { db_uid: Some("d".into()), ..Default::default() })),
            keeper("sysid", Some(PostgresState { system_id: Some("7".into()), ..Default::default() })),
        ]
        .into_iter()
        .map(|k| (k.uid.clone(), k))
        .collect();
        assert_eq!(keepers_with_data(&infos), vec!["dbuid".to_string(), "sysid".into()]);
    }

    #[test]
    fn timing_follows_the_spec() {
        let spec = ClusterSpec::parse_valid(r#"{"initMode":"new","sleepInterval":"2s","failInterval":"10s"}"#).unwrap();
        assert_eq!(Timing::of(&spec), Timing { sleep: Duration::from_secs(2), ttl: Duration::from_secs(10) });
        let spec = ClusterSpec::parse_valid(r#"{"initMode":"new","sleepInterval":"5s","failInterval":"6s"}"#).unwrap();
        assert_eq!(Timing::of(&spec).ttl, Duration::from_secs(15));
        assert_eq!(Timing::of(&ClusterSpec::default()), Timing { sleep: Duration::from_secs(1), ttl: Duration::from_secs(4) });
    }
}
