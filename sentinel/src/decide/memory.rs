//! What the sentinel remembers between ticks of one leadership term, and `observe`, which folds
//! a tick's infos into it.
//!
//! Liveness is judged by infos that *change* (safety rule 6): for each keeper and proxy uid we keep
//! the last `infoUID` seen and the monotonic time we saw it change. A keeper whose info keeps the
//! same `infoUID` is frozen even if its lease is still alive. Times are `Duration`s since an
//! arbitrary monotonic epoch chosen by the caller (the binary passes `start.elapsed()`), so the
//! core never reads a clock. A new term starts from `Memory::new(now)`: everything seen for the
//! first time counts as changed at that instant, which is what gives a new leader its full
//! `failInterval` of fresh evidence before it fails anything.

use clusterview::data::{ClusterData, DbRole};
use clusterview::info::{KeeperInfo, ProxyInfo};
use std::collections::BTreeMap;
use std::time::Duration;

/// The sentinel's memory across the ticks of one leadership term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Memory {
    /// When this term began; nothing is failed before `leader_since + failInterval`.
    pub leader_since: Duration,
    /// Per keeper uid: when its info last changed and when it last reported a healthy db.
    pub keepers: BTreeMap<String, KeeperSeen>,
    /// Per proxy uid: when its info last changed, kept after the info vanished until the proxy's
    /// own `proxyTimeout` passed, because until then it may still be forwarding.
    pub proxies: BTreeMap<String, ProxySeen>,
    /// Per db uid: when this term first saw it in clusterdata (the init db's `initTimeout`).
    pub dbs_first_seen: BTreeMap<String, Duration>,
    /// Per db uid: its generation in clusterdata and when this term first saw it at that
    /// generation: how long its keeper has had to converge (`convergenceTimeout`, `syncTimeout`).
    pub dbs_generation_seen: BTreeMap<String, (u64, Duration)>,
    /// Per db uid: when this term first saw it deposed (role master, no longer the cluster
    /// master). A keeper report seen after that was published after the deposition was stored.
    pub dbs_deposed_seen: BTreeMap<String, Duration>,
    /// The cluster master's db uid and when this term first saw it master: a db elected again
    /// (a deposed master, its postgres stopped) gets a full `failInterval` to report healthy.
    pub master_seen: Option<(String, Duration)>,
}

/// One keeper as last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeeperSeen {
    /// The `infoUID` of the last info seen; a different one means the keeper is alive.
    pub info_uid: String,
    /// When `info_uid` last changed (or was first seen this term).
    pub changed_at: Duration,
    /// The db uid a fresh info last reported healthy, and when.
    pub healthy: Option<(String, Duration)>,
    /// The db uid a fresh info last reported healthy *and* streaming from its master, and when:
    /// a synchronous standby leaves the set only after `failInterval` without such a report.
    pub streaming: Option<(String, Duration)>,
    /// Since when its fresh infos say `dataDirMissing` without interruption: one such report may
    /// be a transient error reading the directory, not a lost data dir.
    pub data_dir_missing_since: Option<Duration>,
}

/// One proxy as last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySeen {
    /// The `infoUID` of the last info seen.
    pub info_uid: String,
    /// When `info_uid` last changed (or was first seen this term).
    pub changed_at: Duration,
    /// The `proxyTimeout` the proxy advertises: silent for longer, it has fenced itself.
    pub timeout: Duration,
}

impl Memory {
    /// The memory of a term that begins at `now`.
    pub fn new(now: Duration) -> Memory {
        Memory {
            leader_since: now,
            keepers: BTreeMap::new(),
            proxies: BTreeMap::new(),
            dbs_first_seen: BTreeMap::new(),
            dbs_generation_seen: BTreeMap::new(),
            dbs_deposed_seen: BTreeMap::new(),
            master_seen: None,
        }
    }

    /// True during the first `fail_interval` of the term (inclusive): no negative verdicts yet.
    pub fn in_grace(&self, now: Duration, fail_interval: Duration) -> bool {
        now <= self.leader_since.saturating_add(fail_interval)
    }

    /// When the keeper's info last changed; the start of the term for a keeper not seen since.
    pub fn keeper_last_change(&self, uid: &str) -> Duration {
        self.keepers.get(uid).map(|k| k.changed_at).unwrap_or(self.leader_since)
    }

    /// True while the keeper's info changed within `fail_interval`, or during the grace window.
    pub fn keeper_alive(&self, uid: &str, now: Duration, fail_interval: Duration) -> bool {
        if self.in_grace(now, fail_interval) {
            return true;
        }
        match self.keepers.get(uid) {
            Some(seen) => now.saturating_sub(seen.changed_at) <= fail_interval,
            None => false,
        }
    }

    /// When the keeper last reported `db_uid` healthy; the start of the term when not seen since.
    pub fn db_last_healthy(&self, keeper_uid: &str, db_uid: &str) -> Duration {
        match self.keepers.get(keeper_uid).and_then(|k| k.healthy.as_ref()) {
            Some((uid, at)) if uid == db_uid => *at,
            _ => self.leader_since,
        }
    }

    /// When the keeper last reported `db_uid` healthy and streaming; the start of the term when
    /// not seen since.
    pub fn db_last_streaming(&self, keeper_uid: &str, db_uid: &str) -> Duration {
        match self.keepers.get(keeper_uid).and_then(|k| k.streaming.as_ref()) {
            Some((uid, at)) if uid == db_uid => *at,
            _ => self.leader_since,
        }
    }

    /// How long the keeper's fresh infos have said `dataDirMissing` without interruption.
    pub fn data_dir_missing_for(&self, uid: &str, now: Duration) -> Option<Duration> {
        self.keepers.get(uid).and_then(|k| k.data_dir_missing_since).map(|since| now.saturating_sub(since))
    }

    /// When this term first saw `db_uid` deposed; `None` when it has not (deposed by the decision
    /// now running, or not deposed).
    pub fn db_deposed_since(&self, db_uid: &str) -> Option<Duration> {
        self.dbs_deposed_seen.get(db_uid).copied()
    }

    /// When this term first saw `db_uid` as the cluster master (`now` when it has not: elected by
    /// the decision now running).
    pub fn master_since(&self, db_uid: &str, now: Duration) -> Duration {
        match &self.master_seen {
            Some((uid, since)) if uid == db_uid => *since,
            _ => now,
        }
    }

    /// True while the proxy's info changed within its own advertised `proxyTimeout`.
    pub fn proxy_active(&self, uid: &str, now: Duration) -> Option<bool> {
        self.proxies.get(uid).map(|p| now.saturating_sub(p.changed_at) <= p.timeout)
    }

    /// When `db_uid` was first seen this term (`now` for a db not seen yet: it was just made).
    pub fn db_first_seen(&self, db_uid: &str, now: Duration) -> Duration {
        self.dbs_first_seen.get(db_uid).copied().unwrap_or(now)
    }

    /// When this term first saw `db_uid` at `generation`; `None` when it has not (a db or a
    /// generation made by the decision now running: its keeper has not even been told yet).
    pub fn db_generation_since(&self, db_uid: &str, generation: u64) -> Option<Duration> {
        match self.dbs_generation_seen.get(db_uid) {
            Some((g, since)) if *g == generation => Some(*since),
            _ => None,
        }
    }
}

/// Folds one tick's observations into the memory. `cd` is the clusterdata just read (keepers it
/// lists are remembered even after their info vanished, for dead keeper removal).
pub fn observe(
    memory: &Memory,
    cd: Option<&ClusterData>,
    keeper_infos: &BTreeMap<String, KeeperInfo>,
    proxy_infos: &BTreeMap<String, ProxyInfo>,
    now: Duration,
) -> Memory {
    let mut next = Memory::new(memory.leader_since);

    for (uid, info) in keeper_infos {
        let previous = memory.keepers.get(uid);
        let fresh = previous.is_none_or(|p| p.info_uid != info.info_uid);
        let mut seen = match previous {
            Some(p) if !fresh => p.clone(),
            _ => KeeperSeen {
                info_uid: info.info_uid.clone(),
                changed_at: now,
                healthy: previous.and_then(|p| p.healthy.clone()),
                streaming: previous.and_then(|p| p.streaming.clone()),
                data_dir_missing_since: previous.and_then(|p| p.data_dir_missing_since),
            },
        };
        if fresh {
            seen.data_dir_missing_since = if info.data_dir_missing { seen.data_dir_missing_since.or(Some(now)) } else { None };
        }
        if fresh && !info.data_dir_missing {
            if let Some(state) = info.postgres_state.as_ref().filter(|s| s.healthy) {
                if let Some(db_uid) = &state.db_uid {
                    seen.healthy = Some((db_uid.clone(), now));
                    if state.streaming {
                        seen.streaming = Some((db_uid.clone(), now));
                    }
                }
            }
        }
        next.keepers.insert(uid.clone(), seen);
    }
    // Keepers whose info vanished: remember when they were last alive while clusterdata lists them.
    for (uid, seen) in &memory.keepers {
        let listed = cd.is_none_or(|cd| cd.keepers.contains_key(uid));
        if !next.keepers.contains_key(uid) && listed {
            next.keepers.insert(uid.clone(), seen.clone());
        }
    }

    for (uid, info) in proxy_infos {
        let seen = match memory.proxies.get(uid) {
            Some(p) if p.info_uid == info.info_uid => ProxySeen { timeout: info.proxy_timeout, ..p.clone() },
            _ => ProxySeen { info_uid: info.info_uid.clone(), changed_at: now, timeout: info.proxy_timeout },
        };
        next.proxies.insert(uid.clone(), seen);
    }
    // A proxy whose info vanished may still forward until its own timeout: keep it until then.
    for (uid, seen) in &memory.proxies {
        if !next.proxies.contains_key(uid) && now.saturating_sub(seen.changed_at) <= seen.timeout {
            next.proxies.insert(uid.clone(), seen.clone());
        }
    }

    match cd {
        Some(cd) => {
            next.master_seen = cd.cluster.status.master.as_ref().map(|uid| (uid.clone(), memory.master_since(uid, now)));
            for (uid, db) in &cd.dbs {
                next.dbs_first_seen.insert(uid.clone(), memory.db_first_seen(uid, now));
                let since = memory.db_generation_since(uid, db.generation).unwrap_or(now);
                next.dbs_generation_seen.insert(uid.clone(), (db.generation, since));
                let deposed = db.spec.role == DbRole::Master && cd.cluster.status.master.as_deref() != Some(uid.as_str());
                if deposed {
                    next.dbs_deposed_seen.insert(uid.clone(), memory.db_deposed_since(uid).unwrap_or(now));
                }
            }
        }
        None => {
            next.dbs_first_seen = memory.dbs_first_seen.clone();
            next.dbs_generation_seen = memory.dbs_generation_seen.clone();
            next.dbs_deposed_seen = memory.dbs_deposed_seen.clone();
            next.master_seen = memory.master_seen.clone();
        }
    }
    next
}
