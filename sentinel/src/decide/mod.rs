//! The sentinel's decision core, free of I/O: clusterdata, infos, memory and the time go in; the
//! next clusterdata (or nothing to change) and a list of events to log come out. The caller does
//! all reading, writing and logging (STYLE rule 3; raft-rs's `Ready`).
//!
//! - `memory`: what the sentinel remembers between ticks, and `observe`;
//! - `ctx`: the inputs of one decision and the verdicts derived from them (alive, healthy, failed);
//! - `status`: keepers added as they appear; keeper and db status copied from the infos;
//! - `init`: the initializing phase (pick a keeper, wait for its db, `initTimeout`);
//! - `failover`: master failure and the election of the best standby;
//! - `deposed`: the old master kept until the new one is established, promotion only once the
//!   old one is stopped or fenced, and its election again when the new one fails first;
//! - `timeline`: standbys whose WAL forked off the master's history;
//! - `standbys`: standby dbs, followers, dead keeper removal, forceFail, initMode clearing;
//! - `sync`: the master's synchronous standbys;
//! - `proxy`: the proxy fencing handshake and `enabledProxies`.
//!
//! `decide` runs these steps in passes until one pass changes nothing, so its output is a fixed
//! point: deciding again on it with the same inputs changes nothing. Generations are assigned
//! once, at the end, by comparing with the input: `db.generation` + 1 when a db's spec changed,
//! `proxy.generation` + 1 when the proxy spec changed, `cluster.generation` + 1 on any change.
//!
//! Not implemented yet (TODO): standby clusters (`role: standby`, a master db following an
//! external server) are left untouched with an `Unsupported` event; cascading replication
//! (`maxStandbysPerSender`) is not used, every standby follows the master.

mod ctx;
mod deposed;
mod failover;
mod init;
mod memory;
mod proxy;
mod standbys;
mod status;
mod sync;
mod timeline;
#[cfg(test)]
mod tests;

pub use memory::{observe, Memory};

use chrono::{DateTime, Utc};
use clusterview::data::{ClusterData, DbInitMode};
use clusterview::info::{KeeperInfo, ProxyInfo};
use ctx::Ctx;
use std::collections::BTreeMap;
use std::time::Duration;

/// Passes after which `decide` stops even if the last pass still changed something (each pass
/// only completes what the previous one started; three suffice in every known case).
const MAX_PASSES: usize = 6;

/// Everything a decision looks at besides the clusterdata itself.
pub struct Observed<'a> {
    /// Live keeper infos by keeper uid.
    pub keepers: &'a BTreeMap<String, KeeperInfo>,
    /// Live proxy infos by proxy uid.
    pub proxies: &'a BTreeMap<String, ProxyInfo>,
    /// The memory after `observe` of this tick.
    pub memory: &'a Memory,
    /// Monotonic time, on the same epoch as the memory.
    pub now: Duration,
    /// Wall time, only for the `changeTime` fields.
    pub wall: DateTime<Utc>,
}

/// The outcome of one decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The clusterdata to write, or `None` when nothing changes.
    pub next: Option<ClusterData>,
    /// What was decided (and what is being waited for), for the log.
    pub events: Vec<Event>,
}

/// Why the master db was judged failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailReason {
    /// `stolonctl failkeeper` on its keeper.
    ForceFail,
    /// Its keeper's info did not change for `failInterval`.
    KeeperDead,
    /// Its keeper did not report it healthy for `failInterval`.
    DbUnhealthy,
    /// Its keeper did not converge it to its generation within `convergenceTimeout`.
    NotConverged,
}

/// One thing decided, or waited for, in a decision. Events that change nothing (waiting, no
/// eligible standby, unsupported) are reported every tick the condition holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    KeeperAdded { keeper: String },
    KeeperHealthChanged { keeper: String, healthy: bool },
    KeeperRemoved { keeper: String, dbs: Vec<String> },
    ForceFailCleared { keeper: String },
    InitStarted { keeper: String, db: String, mode: DbInitMode },
    InitTimedOut { keeper: String, db: String },
    InitCompleted { keeper: String, db: String },
    /// Initialization cannot start yet (e.g. the `existingConfig` keeper is not alive).
    InitWaiting { reason: String },
    Failover { old_master: String, old_keeper: String, new_master: String, new_keeper: String, reason: FailReason },
    NoEligibleStandby { master: String, keeper: String, reason: FailReason },
    StandbyAssigned { keeper: String, db: String, follows: String },
    DbRemoved { keeper: String, db: String, why: &'static str },
    Repointed { db: String, from: Option<String>, to: String },
    InitModeCleared { db: String },
    SyncStandbysChanged { master: String, from: Vec<String>, to: Vec<String> },
    /// The synchronous set waits for the master to report every listed standby in sync.
    WaitingForSyncStandbys { master: String, in_sync: Vec<String>, listed: Vec<String> },
    /// The elected master is not promoted yet: the deposed master(s) may still run as a primary
    /// (their keeper has neither reported postgres stopped nor been silent long enough to have
    /// fenced itself).
    WaitingForOldMaster { new_master: String, old_masters: Vec<String> },
    /// The elected master gets role master (its keeper promotes it): the old one is stopped or fenced.
    MasterPromoted { db: String, keeper: String },
    ProxiesFenced { generation: u64 },
    MasterPublished { db: String, enabled_proxies: Vec<String> },
    WaitingForProxies { db: String, generation: u64, pending: Vec<String> },
    /// A new term waits one `proxyTimeout` before publishing a master (proxies it never saw).
    WaitingForNewTerm { db: String },
    EnabledProxiesChanged { added: Vec<String>, removed: Vec<String> },
    Unsupported { what: &'static str },
}

/// Decides the next clusterdata. `new_uid` makes uids for new dbs (the binary passes
/// `clusterview::new_uid`; tests a counter).
pub fn decide(cd: &ClusterData, obs: &Observed<'_>, new_uid: &mut dyn FnMut() -> String) -> Decision {
    let mut ctx = Ctx::new(cd, obs, new_uid);
    let mut next = cd.clone();
    for _ in 0..MAX_PASSES {
        let before = next.clone();
        pass(&mut next, &mut ctx);
        if next == before {
            break;
        }
    }
    finalize(cd, &mut next, obs.wall);
    let mut events = ctx.into_events();
    // A keeper may look unhealthy in one pass and healthy in the next (force-fail of a standby):
    // report only the net change.
    events.retain(|event| match event {
        Event::KeeperHealthChanged { keeper, healthy } => {
            let now = next.keepers.get(keeper).map(|k| k.status.healthy);
            let before = cd.keepers.get(keeper).map(|k| k.status.healthy);
            now == Some(*healthy) && before != Some(*healthy)
        }
        _ => true,
    });
    if next == *cd {
        Decision { next: None, events }
    } else {
        Decision { next: Some(next), events }
    }
}

/// One pass over every rule, in dependency order.
fn pass(cd: &mut ClusterData, ctx: &mut Ctx<'_>) {
    status::refresh(cd, ctx);
    init::step(cd, ctx);
    failover::step(cd, ctx);
    deposed::step(cd, ctx);
    standbys::step(cd, ctx);
    sync::step(cd, ctx);
    proxy::step(cd, ctx);
    // Dbs made in this pass get their status (address, port) at once.
    status::refresh(cd, ctx);
}

/// Assigns generations and change times by comparing with the input clusterdata.
fn finalize(original: &ClusterData, next: &mut ClusterData, wall: DateTime<Utc>) {
    for db in next.dbs.values_mut() {
        match original.dbs.get(&db.uid) {
            Some(old) if old.spec != db.spec => {
                db.generation = old.generation + 1;
                db.change_time = wall;
            }
            Some(_) => {}
            None => {
                db.generation = 1;
                db.change_time = wall;
            }
        }
    }
    for keeper in next.keepers.values_mut() {
        match original.keepers.get(&keeper.uid) {
            Some(old) if old.status != keeper.status => keeper.change_time = wall,
            Some(_) => {}
            None => keeper.change_time = wall,
        }
    }
    if next.proxy.spec != original.proxy.spec {
        next.proxy.generation = original.proxy.generation + 1;
        next.proxy.change_time = wall;
    }
    if next != original {
        next.cluster.generation = original.cluster.generation + 1;
        next.cluster.change_time = wall;
        next.change_time = wall;
    }
}
