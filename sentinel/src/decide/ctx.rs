//! The inputs of one decision and the verdicts every rule shares: is a keeper alive, usable, is a
//! db healthy, has the master failed, which proxies are active. Keeping them here means each
//! rule asks the same question the same way (docs/protocol.md "Liveness").
//!
//! Two notions of keeper health are deliberately distinct: *alive* is a negative verdict that
//! needs fresh evidence (during the grace window of a new term every keeper is alive); *usable*
//! is a positive one (its info is here now, it is alive and not force-failed) and gates every
//! assignment and election.

use super::{Event, FailReason, Observed};
use clusterview::data::{ClusterData, Db, DbInitMode};
use clusterview::info::KeeperInfo;
use clusterview::spec::ClusterSpec;
use std::collections::BTreeSet;
use std::time::Duration;

/// One decision's inputs, the events collected so far and the uid maker.
pub(super) struct Ctx<'a> {
    pub obs: &'a Observed<'a>,
    /// The clusterdata as read, before any rule ran (e.g. for the proxy generation to wait for).
    pub original: &'a ClusterData,
    events: Vec<Event>,
    new_uid: &'a mut dyn FnMut() -> String,
}

impl<'a> Ctx<'a> {
    pub fn new(original: &'a ClusterData, obs: &'a Observed<'a>, new_uid: &'a mut dyn FnMut() -> String) -> Ctx<'a> {
        Ctx { obs, original, events: Vec::new(), new_uid }
    }

    pub fn into_events(self) -> Vec<Event> {
        self.events
    }

    /// Records an event once per decision (passes may meet the same condition again).
    pub fn push(&mut self, event: Event) {
        if !self.events.contains(&event) {
            self.events.push(event);
        }
    }

    /// A db uid not used in `cd` yet.
    pub fn fresh_uid(&mut self, cd: &ClusterData) -> String {
        let mut uid = (self.new_uid)();
        // A collision of random 8-hex uids is unlikely, not impossible; a few retries make it moot.
        for _ in 0..8 {
            if !cd.dbs.contains_key(&uid) {
                break;
            }
            uid = (self.new_uid)();
        }
        uid
    }

    /// The cluster spec (the operator's; accessors give the effective values).
    pub fn spec(&self) -> &'a ClusterSpec {
        &self.original.cluster.spec
    }

    pub fn now(&self) -> Duration {
        self.obs.now
    }

    pub fn fail_interval(&self) -> Duration {
        self.spec().fail_interval()
    }

    /// The first `failInterval` of the term: nothing is failed yet (fresh evidence only).
    pub fn in_grace(&self) -> bool {
        self.obs.memory.in_grace(self.obs.now, self.fail_interval())
    }

    pub fn info(&self, keeper_uid: &str) -> Option<&'a KeeperInfo> {
        self.obs.keepers.get(keeper_uid)
    }

    /// The keeper's info changed within `failInterval` (or the term is still in its grace window).
    pub fn keeper_alive(&self, keeper_uid: &str) -> bool {
        self.obs.memory.keeper_alive(keeper_uid, self.obs.now, self.fail_interval())
    }

    /// `stolonctl failkeeper` was run on the keeper and not cleared yet.
    pub fn force_failed(&self, cd: &ClusterData, keeper_uid: &str) -> bool {
        cd.keepers.get(keeper_uid).is_some_and(|k| k.status.force_fail)
    }

    /// The keeper publishes now, is alive and is not force-failed: it may be given work.
    pub fn keeper_usable(&self, cd: &ClusterData, keeper_uid: &str) -> bool {
        self.info(keeper_uid).is_some() && self.keeper_alive(keeper_uid) && !self.force_failed(cd, keeper_uid)
    }

    /// The keeper's current info says postgres is healthy and belongs to `db`.
    pub fn db_reports_healthy(&self, db: &Db) -> bool {
        self.info(&db.spec.keeper_uid).is_some_and(|info| {
            !info.data_dir_missing
                && info
                    .postgres_state
                    .as_ref()
                    .is_some_and(|s| s.healthy && s.db_uid.as_deref() == Some(db.uid.as_str()))
        })
    }

    /// A db is healthy while its keeper is usable and reports it healthy (protocol "Liveness").
    pub fn db_healthy(&self, cd: &ClusterData, db: &Db) -> bool {
        self.keeper_usable(cd, &db.spec.keeper_uid) && self.db_reports_healthy(db)
    }

    /// The db's keeper has not converged it to its current generation within its timeout:
    /// `syncTimeout` while it is being copied from scratch (initMode `resync`: a basebackup may
    /// take long; 0, the default, means no limit, as in Stolon), `convergenceTimeout` otherwise.
    /// Never during the grace window, and the clock starts when this term first saw the db at
    /// that generation (fresh evidence only).
    pub fn convergence_overdue(&self, db: &Db) -> bool {
        if self.in_grace() || db.status.current_generation == Some(db.generation) {
            return false;
        }
        let Some(since) = self.obs.memory.db_generation_since(&db.uid, db.generation) else { return false };
        let timeout = if db.spec.init_mode == DbInitMode::Resync { self.spec().sync_timeout() } else { self.spec().convergence_timeout() };
        if timeout.is_zero() {
            return false;
        }
        self.obs.now.saturating_sub(since) > timeout
    }

    /// A synchronous standby has failed: its keeper is force-failed, or no fresh info reported
    /// its db healthy and streaming for `failInterval` (never during the grace window). One bad
    /// report (a slow status query, a keeper restart) is not enough: every change of the set
    /// costs a round of waiting for the master to report the new member in sync.
    pub fn sync_standby_failed(&self, cd: &ClusterData, db: &Db) -> bool {
        let keeper = db.spec.keeper_uid.as_str();
        if self.force_failed(cd, keeper) {
            return true;
        }
        if self.in_grace() {
            return false;
        }
        let last = self.obs.memory.db_last_streaming(keeper, &db.uid);
        self.obs.now.saturating_sub(last) > self.fail_interval()
    }

    /// Why the master db counts as failed, if it does. Never during the grace window.
    pub fn master_failure(&self, cd: &ClusterData, master: &Db) -> Option<FailReason> {
        if self.in_grace() {
            return None;
        }
        let keeper = master.spec.keeper_uid.as_str();
        if self.force_failed(cd, keeper) {
            return Some(FailReason::ForceFail);
        }
        if !self.keeper_alive(keeper) {
            return Some(FailReason::KeeperDead);
        }
        // A master that reports unhealthy for a moment (a restart) is not failed at once, nor a
        // db just elected (again) that has yet to start.
        let memory = self.obs.memory;
        let last_healthy = memory.db_last_healthy(keeper, &master.uid).max(memory.master_since(&master.uid, self.obs.now));
        if !self.db_reports_healthy(master) && self.obs.now.saturating_sub(last_healthy) > self.fail_interval() {
            return Some(FailReason::DbUnhealthy);
        }
        // A keeper that cannot apply what the master must be (settings, synchronous standbys)
        // leaves the cluster in a state nobody decided; a standby that can is the better master.
        if self.convergence_overdue(master) {
            return Some(FailReason::NotConverged);
        }
        None
    }

    /// Proxies that may be forwarding: their info changed within their own `proxyTimeout`.
    /// Enabled proxies this term has not seen at all count as active for `proxyTimeout` from the
    /// start of the term (they may be forwarding while cut off from the store).
    pub fn active_proxies(&self, cd: &ClusterData) -> BTreeSet<String> {
        let memory = self.obs.memory;
        let mut active: BTreeSet<String> = memory
            .proxies
            .keys()
            .filter(|uid| memory.proxy_active(uid, self.obs.now) == Some(true))
            .cloned()
            .collect();
        // An info the memory has not folded in yet is fresh by definition.
        active.extend(self.obs.proxies.keys().filter(|uid| !memory.proxies.contains_key(*uid)).cloned());
        let unseen_deadline = memory.leader_since.saturating_add(self.spec().proxy_timeout());
        for uid in &cd.proxy.spec.enabled_proxies {
            if !memory.proxies.contains_key(uid) && !self.obs.proxies.contains_key(uid) && self.obs.now <= unseen_deadline {
                active.insert(uid.clone());
            }
        }
        active
    }
}
