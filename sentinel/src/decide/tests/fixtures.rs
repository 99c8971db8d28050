//! Small builders for decision tests: a spec with short test timeouts, keeper and proxy infos,
//! and `World`, a simulated cluster (clusterdata + infos + memory + a monotonic clock) that runs
//! `observe` and `decide` the way the binary does, without I/O.
//!
//! Every `World::step` also checks the fixed-point property: deciding again on the output with the
//! same inputs must change nothing.

use crate::decide::{decide, observe, Decision, Event, Memory, Observed};
use chrono::{DateTime, Utc};
use clusterview::data::{
    ClusterData, ClusterPhase, ClusterStatus, Db, DbInitMode, DbRole, DbSpec, DbStatus, FollowConfig, FollowType,
    Keeper, KeeperStatus, ProxySpec,
};
use clusterview::info::{KeeperInfo, PostgresState, ProxyInfo};
use clusterview::spec::ClusterSpec;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The test spec: 1 s ticks, failInterval 4 s, proxyTimeout 4 s, initTimeout 10 s, dead keepers
/// removed after 60 s; `patch` (a JSON merge patch) changes any of it.
pub fn spec(patch: &str) -> ClusterSpec {
    let base = ClusterSpec::parse_valid(
        r#"{"initMode":"new","sleepInterval":"1s","failInterval":"4s","proxyCheckInterval":"1s",
            "proxyTimeout":"4s","initTimeout":"10s","deadKeeperRemovalInterval":"60s"}"#,
    )
    .unwrap();
    let spec = base.patched(patch).unwrap();
    spec.validate().unwrap();
    spec
}

pub fn wall() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).unwrap()
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A keeper info without a postgres state (a keeper that has no db yet).
pub fn keeper_info(uid: &str) -> KeeperInfo {
    KeeperInfo {
        info_uid: format!("{uid}-i0"),
        uid: uid.to_string(),
        cluster_uid: None,
        boot_uuid: format!("{uid}-boot"),
        postgres_binary_version: None,
        pg_listen_address: format!("{uid}.host"),
        pg_port: 5432,
        can_be_master: None,
        can_be_synchronous_replica: None,
        data_dir_missing: false,
        postgres_state: None,
    }
}

/// A healthy postgres state of `db` converged at `generation`, timeline 1, WAL position 1000.
pub fn pg_state(db: &str, generation: u64) -> PostgresState {
    PostgresState {
        db_uid: Some(db.to_string()),
        generation: Some(generation),
        healthy: true,
        system_id: Some("sys".into()),
        timeline_id: 1,
        xlog_pos: 1000,
        ..Default::default()
    }
}

pub fn proxy_info(uid: &str, generation: Option<u64>) -> ProxyInfo {
    ProxyInfo { info_uid: format!("{uid}-i0"), uid: uid.to_string(), generation, proxy_timeout: secs(4) }
}

fn db_from(uid: &str, keeper: &KeeperInfo, role: DbRole, follows: Option<&str>, generation: u64) -> Db {
    let state = keeper.postgres_state.clone().unwrap_or_default();
    Db {
        uid: uid.to_string(),
        generation,
        change_time: wall(),
        spec: DbSpec {
            keeper_uid: keeper.uid.clone(),
            role,
            init_mode: DbInitMode::None,
            follow_config: follows.map(|m| FollowConfig { kind: FollowType::Internal, db_uid: Some(m.to_string()) }),
            followers: Vec::new(),
            synchronous_replication: false,
            synchronous_standbys: Vec::new(),
        },
        status: DbStatus {
            healthy: true,
            current_generation: state.generation,
            listen_address: Some(keeper.pg_listen_address.clone()),
            port: Some(keeper.pg_port),
            system_id: state.system_id.clone(),
            timeline_id: state.timeline_id,
            xlog_pos: state.xlog_pos,
            timelines_history: Vec::new(),
            synchronous_standbys: Vec::new(),
        },
    }
}

fn keeper_entry(info: &KeeperInfo) -> Keeper {
    Keeper {
        uid: info.uid.clone(),
        generation: 1,
        change_time: wall(),
        status: KeeperStatus { healthy: true, boot_uuid: Some(info.boot_uuid.clone()), ..Default::default() },
    }
}

/// The db uid the fixtures give a keeper's first db.
pub fn db_of(keeper: &str) -> String {
    format!("db-{keeper}")
}

/// A simulated cluster: what the store holds, what the sentinel remembers, and its clock.
pub struct World {
    pub cd: ClusterData,
    pub keepers: BTreeMap<String, KeeperInfo>,
    pub proxies: BTreeMap<String, ProxyInfo>,
    /// Keepers and proxies whose infos stop changing on `advance` (frozen processes).
    pub frozen: BTreeSet<String>,
    pub memory: Memory,
    pub now: Duration,
    infos_published: u64,
    uids_made: u64,
}

impl World {
    /// A new term at time 0 over `cd`, with no infos yet.
    pub fn new(cd: ClusterData) -> World {
        World {
            cd,
            keepers: BTreeMap::new(),
            proxies: BTreeMap::new(),
            frozen: BTreeSet::new(),
            memory: Memory::new(Duration::ZERO),
            now: Duration::ZERO,
            infos_published: 0,
            uids_made: 0,
        }
    }

    /// A fresh, initializing cluster with keepers `keepers` publishing (no db yet).
    pub fn initializing(spec: ClusterSpec, keepers: &[&str]) -> World {
        let mut w = World::new(ClusterData::new_initializing(spec, wall()));
        for k in keepers {
            w.keepers.insert(k.to_string(), keeper_info(k));
        }
        w.observe();
        w
    }

    /// A settled normal cluster: master db `db-<master>` (its postgres a primary), standbys
    /// `db-<s>` following it (streaming), all healthy at timeline 1 and WAL position 1000; proxy `p1` enabled and acknowledged at
    /// generation 3. The clock is past the grace window.
    pub fn normal(spec: ClusterSpec, master: &str, standbys: &[&str]) -> World {
        let mut cd = ClusterData::new_initializing(spec, wall());
        cd.cluster.status = ClusterStatus { phase: ClusterPhase::Normal, master: Some(db_of(master)) };
        let mut keepers = BTreeMap::new();
        let mut m = keeper_info(master);
        m.postgres_state = Some(PostgresState { role: Some(DbRole::Master), ..pg_state(&db_of(master), 2) });
        let mut master_db = db_from(&db_of(master), &m, DbRole::Master, None, 2);
        for s in standbys {
            let mut info = keeper_info(s);
            info.postgres_state =
                Some(PostgresState { role: Some(DbRole::Standby), streaming: true, ..pg_state(&db_of(s), 2) });
            cd.dbs.insert(db_of(s), db_from(&db_of(s), &info, DbRole::Standby, Some(&db_of(master)), 2));
            cd.keepers.insert(s.to_string(), keeper_entry(&info));
            master_db.spec.followers.push(db_of(s));
            keepers.insert(s.to_string(), info);
        }
        master_db.spec.followers.sort();
        cd.dbs.insert(db_of(master), master_db);
        cd.keepers.insert(master.to_string(), keeper_entry(&m));
        keepers.insert(master.to_string(), m);
        cd.proxy.generation = 3;
        cd.proxy.spec = ProxySpec { master_db_uid: Some(db_of(master)), enabled_proxies: vec!["p1".into()] };
        let mut w = World::new(cd);
        w.keepers = keepers;
        w.proxies.insert("p1".into(), proxy_info("p1", Some(3)));
        w.observe();
        w.advance(5);
        w
    }

    pub fn observe(&mut self) {
        self.memory = observe(&self.memory, Some(&self.cd), &self.keepers, &self.proxies, self.now);
    }

    /// Lets `secs` seconds pass, one tick per second: every keeper and proxy not frozen
    /// publishes a fresh info, and the sentinel observes.
    pub fn advance(&mut self, secs: u64) {
        for _ in 0..secs {
            self.now += Duration::from_secs(1);
            self.infos_published += 1;
            let n = self.infos_published;
            for (uid, info) in self.keepers.iter_mut().filter(|(uid, _)| !self.frozen.contains(*uid)) {
                info.info_uid = format!("{uid}-i{n}");
            }
            for (uid, info) in self.proxies.iter_mut().filter(|(uid, _)| !self.frozen.contains(*uid)) {
                info.info_uid = format!("{uid}-i{n}");
            }
            self.observe();
        }
    }

    /// Decides on the current state without applying the result.
    pub fn decide(&mut self) -> Decision {
        decide_at(&self.cd, &self.keepers, &self.proxies, &self.memory, self.now, &mut self.uids_made)
    }

    /// Decides, checks the fixed-point property, and stores the result as the new clusterdata.
    pub fn step(&mut self) -> Decision {
        let decision = self.decide();
        if let Some(next) = &decision.next {
            let mut uids = self.uids_made;
            let again = decide_at(next, &self.keepers, &self.proxies, &self.memory, self.now, &mut uids);
            assert_eq!(again.next, None, "deciding again on the output changed it; events: {:?}", again.events);
            self.cd = next.clone();
        }
        decision
    }

    /// Steps until nothing changes (at most 5 rounds); returns every event seen.
    pub fn settle(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        for _ in 0..5 {
            let decision = self.step();
            events.extend(decision.events);
            if decision.next.is_none() {
                break;
            }
        }
        events
    }

    /// The keeper's info (panics when it does not publish).
    pub fn info(&mut self, uid: &str) -> &mut KeeperInfo {
        self.keepers.get_mut(uid).unwrap()
    }

    /// The keeper's postgres state (created empty when missing).
    pub fn pg(&mut self, uid: &str) -> &mut PostgresState {
        self.info(uid).postgres_state.get_or_insert_with(PostgresState::default)
    }

    /// The keeper stops publishing (its info's lease expired).
    pub fn kill(&mut self, uid: &str) {
        self.keepers.remove(uid);
    }

    /// A keeper (re)appears, publishing a plain info.
    pub fn start_keeper(&mut self, uid: &str) -> &mut KeeperInfo {
        self.keepers.insert(uid.to_string(), keeper_info(uid));
        self.info(uid)
    }

    /// The keeper converges to its db as clusterdata describes it now: healthy, at its generation.
    pub fn converge(&mut self, keeper: &str) {
        let db = self.cd.db_of_keeper(keeper).cloned().unwrap();
        let role = db.spec.role;
        let state = self.pg(keeper);
        state.db_uid = Some(db.uid.clone());
        state.generation = Some(db.generation);
        state.healthy = true;
        state.role = Some(role);
        // A converged standby streams from its master; a master streams from nobody.
        state.streaming = role == DbRole::Standby;
        if state.timeline_id == 0 {
            state.timeline_id = 1;
        }
    }

    /// The keeper's postgres stops (a deposed master's keeper stops it and waits): not healthy,
    /// not running; the data dir and its db uid stay.
    pub fn stop_postgres(&mut self, keeper: &str) {
        let state = self.pg(keeper);
        state.healthy = false;
        state.role = None;
        state.streaming = false;
    }

    /// Every proxy that is not frozen applies the current proxy generation.
    pub fn ack_proxies(&mut self) {
        let generation = self.cd.proxy.generation;
        for (uid, info) in self.proxies.iter_mut() {
            if !self.frozen.contains(uid) {
                info.generation = Some(generation);
            }
        }
    }

    pub fn master(&self) -> Option<&str> {
        self.cd.cluster.status.master.as_deref()
    }

    pub fn master_keeper(&self) -> Option<&str> {
        self.cd.master_db().map(|db| db.spec.keeper_uid.as_str())
    }

    pub fn db(&self, uid: &str) -> &Db {
        &self.cd.dbs[uid]
    }
}

/// `decide` with a counter for new uids (`new1`, `new2`, ...).
fn decide_at(
    cd: &ClusterData,
    keepers: &BTreeMap<String, KeeperInfo>,
    proxies: &BTreeMap<String, ProxyInfo>,
    memory: &Memory,
    now: Duration,
    uids_made: &mut u64,
) -> Decision {
    let obs = Observed { keepers, proxies, memory, now, wall: wall() };
    let mut new_uid = || {
        *uids_made += 1;
        format!("new{uids_made}")
    };
    decide(cd, &obs, &mut new_uid)
}
