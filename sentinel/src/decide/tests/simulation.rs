//! A whole cluster's life, simulated tick by tick: keepers converge to whatever clusterdata asks,
//! proxies apply every generation. Checks the rules compose: bootstrap, steady state, failover
//! with fencing, the old master's return; and two failovers in a row with timelines, keepers
//! modelled as docs/protocol.md asks (`keeper_second`).

use super::fixtures::*;
use clusterview::data::{ClusterPhase, DbInitMode, DbRole, TimelineHistoryEntry};
use std::collections::BTreeSet;

/// One second: every publishing keeper converges to its db, every proxy applies the current
/// generation, then the sentinel observes and decides.
fn tick(w: &mut World) {
    let publishing: Vec<String> = w.keepers.keys().cloned().collect();
    for k in publishing {
        if w.cd.db_of_keeper(&k).is_some() {
            w.converge(&k);
        }
    }
    w.ack_proxies();
    w.advance(1);
    w.step();
}

fn ticks(w: &mut World, n: usize) {
    for _ in 0..n {
        tick(w);
    }
}

#[test]
fn bootstrap_steady_state_failover_and_return() {
    let mut w = World::initializing(spec("{}"), &["k1", "k2", "k3"]);
    w.proxies.insert("p1".into(), proxy_info("p1", None));
    w.proxies.insert("p2".into(), proxy_info("p2", None));
    w.observe();
    ticks(&mut w, 12);

    // Bootstrapped: k1 master, two standbys, proxies forward to it.
    assert_eq!(w.cd.cluster.status.phase, ClusterPhase::Normal);
    assert_eq!(w.master_keeper(), Some("k1"));
    let master = w.master().unwrap().to_string();
    assert_eq!(w.cd.dbs.len(), 3);
    assert!(w.cd.dbs.values().all(|db| db.spec.init_mode == DbInitMode::None && db.status.healthy));
    assert_eq!(w.db(&master).spec.followers.len(), 2);
    assert_eq!(w.cd.proxy.spec.master_db_uid.as_deref(), Some(master.as_str()));
    assert_eq!(w.cd.proxy.spec.enabled_proxies, ["p1", "p2"]);

    // Steady state: nothing changes any more.
    let generation = w.cd.cluster.generation;
    ticks(&mut w, 5);
    assert_eq!(w.cd.cluster.generation, generation, "a converged cluster is not rewritten");

    // The master dies: failover to k2 (tie on WAL position: lowest uid), fenced, then published.
    w.kill("k1");
    let proxy_generation = w.cd.proxy.generation;
    ticks(&mut w, 10);
    assert_eq!(w.master_keeper(), Some("k2"));
    let new_master = w.master().unwrap().to_string();
    assert_eq!(w.cd.proxy.spec.master_db_uid.as_deref(), Some(new_master.as_str()));
    assert_eq!(w.cd.proxy.generation, proxy_generation + 2, "one fencing, one publication");
    assert!(w.cd.db_of_keeper("k1").is_none());

    // The old master comes back and becomes a standby of the new one.
    w.start_keeper("k1");
    ticks(&mut w, 4);
    let db = w.cd.db_of_keeper("k1").unwrap();
    assert_eq!((db.spec.role, db.spec.init_mode), (DbRole::Standby, DbInitMode::None));
    assert_eq!(db.spec.follow_config.as_ref().and_then(|f| f.db_uid.as_deref()), Some(new_master.as_str()));
    assert!(w.db(&new_master).spec.followers.contains(&db.uid));
    assert_eq!(w.master_keeper(), Some("k2"));
}

/// What a keeper does in one second, as docs/protocol.md asks, with timelines: a master promotes
/// (a new timeline forking off at its position) and writes; a deposed master stops its postgres;
/// a standby copies a new db from its master, and follows its master's timeline switch when its
/// walreceiver streams (`cut_off` keepers' walreceivers are down).
fn keeper_second(w: &mut World, keeper: &str, cut_off: &BTreeSet<String>) {
    let Some(db) = w.cd.db_of_keeper(keeper).cloned() else { return };
    let is_master = w.master() == Some(db.uid.as_str());
    let followed = db.spec.follow_config.as_ref().and_then(|f| f.db_uid.clone());
    let source = followed
        .and_then(|uid| w.cd.dbs.get(&uid))
        .and_then(|m| w.keepers.get(&m.spec.keeper_uid))
        .and_then(|info| info.postgres_state.clone())
        .filter(|s| s.role == Some(DbRole::Master));
    let state = w.pg(keeper);
    match db.spec.role {
        DbRole::Master if !is_master => {
            // Deposed: stop postgres and wait, touching no data.
            state.healthy = false;
            state.role = None;
            return;
        }
        DbRole::Master => {
            if state.db_uid.as_deref() == Some(db.uid.as_str()) && state.role != Some(DbRole::Master) && state.timeline_id > 0 {
                let switch_point = state.xlog_pos;
                state.timelines_history.push(TimelineHistoryEntry {
                    timeline_id: state.timeline_id,
                    switch_point,
                    reason: "promoted".into(),
                });
                state.timeline_id += 1;
            }
            if state.timeline_id == 0 {
                state.timeline_id = 1;
            }
            state.xlog_pos += 10;
            state.streaming = false;
        }
        DbRole::Standby => {
            let copying = state.db_uid.as_deref() != Some(db.uid.as_str());
            match source {
                Some(src) if copying => {
                    state.timeline_id = src.timeline_id;
                    state.timelines_history = src.timelines_history.clone();
                    state.xlog_pos = src.xlog_pos;
                    state.streaming = true;
                }
                Some(src) if !cut_off.contains(keeper) => {
                    let forked = src.timelines_history.iter().any(|h| h.timeline_id == state.timeline_id && h.switch_point < state.xlog_pos);
                    if !forked {
                        state.timeline_id = src.timeline_id;
                        state.timelines_history = src.timelines_history.clone();
                        state.xlog_pos = src.xlog_pos;
                    }
                    state.streaming = !forked;
                }
                _ if copying => return,
                _ => state.streaming = false,
            }
        }
    }
    w.converge(keeper);
}

/// Finding 6 (sentinel side) and 7: two failovers in a row, the second soon after the first. The
/// standby k3 is cut off from k2 after the first failover (its walreceiver is down), so it still
/// replays timeline 1 when k2, on timeline 2, dies: its position is at k2's switch point, so it is
/// on k2's history and must be elected (not required to be on timeline 2 exactly).
#[test]
fn second_failover_soon_after_the_first_elects_a_master() {
    struct Case {
        name: &'static str,
        /// k3's walreceiver is down after the first failover.
        k3_cut_off: bool,
    }
    let cases = [
        Case { name: "k3 streams timeline 2 from k2", k3_cut_off: false },
        Case { name: "k3 cut off, still on timeline 1 at k2's switch point", k3_cut_off: true },
    ];
    for case in cases {
        let mut w = World::initializing(spec("{}"), &["k1", "k2", "k3"]);
        w.proxies.insert("p1".into(), proxy_info("p1", None));
        w.observe();
        let mut cut_off = BTreeSet::new();
        let second = |w: &mut World, cut_off: &BTreeSet<String>| {
            let publishing: Vec<String> = w.keepers.keys().cloned().collect();
            for k in publishing {
                keeper_second(w, &k, cut_off);
            }
            w.ack_proxies();
            w.advance(1);
            w.step();
        };
        for _ in 0..12 {
            second(&mut w, &cut_off);
        }
        assert_eq!(w.master_keeper(), Some("k1"), "{}", case.name);
        assert_eq!(w.cd.dbs.len(), 3, "{}", case.name);

        // First failover: k1 dies; k2 (tie: lowest uid) is elected, promoted to timeline 2.
        w.kill("k1");
        if case.k3_cut_off {
            cut_off.insert("k3".to_string());
        }
        for _ in 0..12 {
            second(&mut w, &cut_off);
        }
        assert_eq!(w.master_keeper(), Some("k2"), "{}", case.name);
        let m2 = w.master().unwrap().to_string();
        assert_eq!(w.db(&m2).status.timeline_id, 2, "{}", case.name);
        assert_eq!(w.cd.proxy.spec.master_db_uid.as_deref(), Some(m2.as_str()), "{}", case.name);
        assert!(w.cd.db_of_keeper("k1").is_none(), "{}: the dead old master's db is gone", case.name);
        let k3 = w.cd.db_of_keeper("k3").unwrap().clone();
        let want_tl = if case.k3_cut_off { 1 } else { 2 };
        assert_eq!(k3.status.timeline_id, want_tl, "{}", case.name);

        // Second failover, seconds later: k2 dies; k3 is the only standby left.
        w.kill("k2");
        for _ in 0..12 {
            second(&mut w, &cut_off);
        }
        assert_eq!(w.master_keeper(), Some("k3"), "{}: {:?}", case.name, w.cd.dbs);
        let m3 = w.master().unwrap().to_string();
        assert_eq!(m3, k3.uid, "{}: k3's own db, not a copy", case.name);
        let master = w.db(&m3);
        assert_eq!(master.spec.role, DbRole::Master, "{}", case.name);
        assert_eq!(master.status.timeline_id, want_tl + 1, "{}", case.name);
        assert_eq!(w.cd.proxy.spec.master_db_uid.as_deref(), Some(m3.as_str()), "{}", case.name);
    }
}
