//! Logging what the decision core decided, with structured fields.
//!
//! Changes are logged once, after the clusterdata carrying them was written (a decision lost to a
//! compare-and-swap conflict is decided again and logged then). Conditions that change nothing
//! (waiting for proxies, no eligible standby, ...) come back every tick while they hold: they are
//! logged at their level when they first appear or change, and at debug level while they repeat.

use crate::decide::{Event, FailReason};
use clusterview::data::ClusterData;
use tracing::{debug, info, warn};

/// True for events that report a condition rather than a change.
pub fn is_condition(event: &Event) -> bool {
    matches!(
        event,
        Event::InitWaiting { .. }
            | Event::NoEligibleStandby { .. }
            | Event::WaitingForProxies { .. }
            | Event::WaitingForNewTerm { .. }
            | Event::WaitingForOldMaster { .. }
            | Event::Unsupported { .. }
    )
}

/// Remembers the last conditions reported, to log each one when it appears.
#[derive(Default)]
pub struct Reporter {
    last_conditions: Vec<Event>,
}

impl Reporter {
    /// Logs the conditions of this round (changes are logged by `changes`).
    pub fn conditions(&mut self, events: &[Event]) {
        let now: Vec<Event> = events.iter().filter(|e| is_condition(e)).cloned().collect();
        for event in &now {
            if self.last_conditions.contains(event) {
                debug!(?event, "still");
            } else {
                log(event);
            }
        }
        self.last_conditions = now;
    }

    /// Forgets the conditions (a new term reports them afresh).
    pub fn reset(&mut self) {
        self.last_conditions.clear();
    }
}

/// Logs the changes of a decision whose clusterdata was written.
pub fn changes(events: &[Event], old: &ClusterData, new: &ClusterData) {
    let mut any = false;
    for event in events.iter().filter(|e| !is_condition(e)) {
        any = true;
        log(event);
    }
    let fields = (new.cluster.generation, new.cluster.status.master.as_deref(), new.proxy.generation);
    if any {
        info!(
            cluster_generation = fields.0,
            master = fields.1,
            proxy_generation = fields.2,
            proxy_master = new.proxy.spec.master_db_uid.as_deref(),
            "clusterdata updated"
        );
    } else {
        debug!(cluster_generation = fields.0, previous = old.cluster.generation, "clusterdata status updated");
    }
}

fn reason(r: FailReason) -> &'static str {
    match r {
        FailReason::ForceFail => "force-failed (stolonctl failkeeper)",
        FailReason::KeeperDead => "keeper info not updated for failInterval",
        FailReason::DbUnhealthy => "db not reported healthy for failInterval",
        FailReason::NotConverged => "db not converged to its generation within convergenceTimeout",
    }
}

fn log(event: &Event) {
    match event {
        Event::KeeperAdded { keeper } => info!(keeper, "new keeper added"),
        Event::KeeperHealthChanged { keeper, healthy: true } => info!(keeper, "keeper healthy"),
        Event::KeeperHealthChanged { keeper, healthy: false } => warn!(keeper, "keeper unhealthy"),
        Event::KeeperRemoved { keeper, dbs } => warn!(keeper, ?dbs, "dead keeper removed"),
        Event::ForceFailCleared { keeper } => info!(keeper, "force-fail cleared"),
        Event::InitStarted { keeper, db, mode } => info!(keeper, db, ?mode, "initializing the cluster's first db"),
        Event::InitTimedOut { keeper, db } => warn!(keeper, db, "db not initialized within initTimeout; picking again"),
        Event::InitCompleted { keeper, db } => info!(keeper, db, "cluster initialized; phase normal"),
        Event::InitWaiting { reason } => info!(reason, "cluster initialization waiting"),
        Event::Failover { old_master, old_keeper, new_master, new_keeper, reason: r } => warn!(
            old_master,
            old_keeper,
            new_master,
            new_keeper,
            reason = reason(*r),
            "failover: master failed, electing a new master"
        ),
        Event::NoEligibleStandby { master, keeper, reason: r } => warn!(
            master,
            keeper,
            reason = reason(*r),
            "master failed but no standby is eligible (healthy, same timeline, within maxStandbyLag, canBeMaster, synchronous); keeping it"
        ),
        Event::StandbyAssigned { keeper, db, follows } => info!(keeper, db, follows, "new standby db assigned"),
        Event::DbRemoved { keeper, db, why } => info!(keeper, db, why, "db removed"),
        Event::Repointed { db, from, to } => info!(db, from = from.as_deref(), to, "standby re-pointed"),
        Event::InitModeCleared { db } => debug!(db, "db initialized; initMode set to none"),
        Event::SyncStandbysChanged { master, from, to } => info!(master, ?from, ?to, "synchronous standbys changed"),
        Event::WaitingForSyncStandbys { master, in_sync, listed } => {
            info!(master, ?in_sync, ?listed, "waiting for the master to report every listed synchronous standby in sync")
        }
        Event::WaitingForOldMaster { new_master, old_masters } => info!(
            new_master,
            ?old_masters,
            "new master not promoted yet: waiting for the old master to stop or fence itself"
        ),
        Event::MasterPromoted { db, keeper } => info!(db, keeper, "old master stopped or fenced: new master promoted"),
        Event::ProxiesFenced { generation } => {
            warn!(proxy_generation = generation, "proxies fenced: no master published until they acknowledge")
        }
        Event::MasterPublished { db, enabled_proxies } => info!(db, ?enabled_proxies, "master published to proxies"),
        Event::WaitingForProxies { db, generation, pending } => {
            info!(db, proxy_generation = generation, ?pending, "waiting for proxies to acknowledge before publishing the master")
        }
        Event::WaitingForNewTerm { db } => {
            info!(db, "new leader: waiting proxyTimeout before publishing the master (proxies not seen yet may still forward)")
        }
        Event::EnabledProxiesChanged { added, removed } => info!(?added, ?removed, "enabled proxies changed"),
        Event::Unsupported { what } => warn!(what, "not supported yet; leaving clusterdata as it is"),
    }
}
