//! The deposed master (findings 7 and issue items 3 and 6): a failover keeps the old master's db
//! (role master, no longer the cluster master) so its data stays untouched; the new master is
//! promoted only once the old one is stopped or has fenced itself; the old db is replaced by a
//! resync db only once the new master has converged; and the old master is elected again when
//! the new one fails before that.

use super::fixtures::*;
use crate::decide::{Event, FailReason};
use clusterview::data::{DbInitMode, DbRole};

/// k1 master, k2 (best: position 1000) and k3 (900) standbys.
fn cluster(spec_patch: &str) -> World {
    let mut w = World::normal(spec(spec_patch), "k1", &["k2", "k3"]);
    w.pg("k3").xlog_pos = 900;
    w.advance(1);
    w.settle();
    w
}

fn force_fail(w: &mut World, keeper: &str) {
    w.cd.keepers.get_mut(keeper).unwrap().status.force_fail = true;
}

fn waiting(d: &crate::decide::Decision) -> bool {
    d.events.iter().any(|e| matches!(e, Event::WaitingForOldMaster { .. }))
}

#[test]
fn failover_deposes_the_old_master_and_promotes_once_it_stopped() {
    let mut w = cluster("{}");
    force_fail(&mut w, "k1");
    let d = w.step();
    assert!(d.events.iter().any(|e| matches!(e, Event::Failover { reason: FailReason::ForceFail, .. })), "{:?}", d.events);
    assert_eq!(w.master(), Some(db_of("k2").as_str()));
    // The old master's db stays, untouched: role master, no resync db for its keeper.
    let old = w.db(&db_of("k1"));
    assert_eq!((old.spec.role, old.generation), (DbRole::Master, 2), "old master kept as it was");
    assert_eq!(w.cd.db_of_keeper("k1").unwrap().uid, db_of("k1"), "no new db for k1");
    // The new master is not promoted while the old one may still run as a primary.
    let new = w.db(&db_of("k2"));
    assert_eq!(new.spec.role, DbRole::Standby, "not promoted yet");
    assert!(waiting(&d), "{:?}", d.events);
    // Proxies are fenced in the same write.
    assert_eq!(w.cd.proxy.spec.master_db_uid, None);
    // The other standby follows the new master.
    let k3 = w.db(&db_of("k3"));
    assert_eq!(k3.spec.follow_config.as_ref().and_then(|f| f.db_uid.as_deref()), Some(db_of("k2").as_str()));

    // k1's keeper still reports a primary: still waiting.
    w.advance(1);
    let d = w.step();
    assert!(waiting(&d), "{:?}", d.events);
    assert_eq!(w.db(&db_of("k2")).spec.role, DbRole::Standby);

    // k1's keeper stops postgres (it read that it is deposed) and says so: k2 is promoted.
    w.stop_postgres("k1");
    w.advance(1);
    let d = w.step();
    assert!(!waiting(&d), "{:?}", d.events);
    let new = w.db(&db_of("k2"));
    assert_eq!((new.spec.role, new.spec.follow_config.clone(), new.spec.init_mode), (DbRole::Master, None, DbInitMode::None));
    assert_eq!(w.cd.proxy.spec.master_db_uid, None, "not published before it promoted");
    // Not promoted yet: the old master's db stays.
    w.advance(1);
    w.step();
    assert_eq!(w.db(&db_of("k1")).spec.role, DbRole::Master);

    // k2 promotes and converges: only now is the old master's db replaced by a resync standby.
    w.converge("k2");
    w.ack_proxies();
    w.advance(1);
    let d = w.step();
    assert!(d.events.contains(&Event::DbRemoved { keeper: "k1".into(), db: db_of("k1"), why: "deposed master" }), "{:?}", d.events);
    let db = w.cd.db_of_keeper("k1").unwrap();
    assert_ne!(db.uid, db_of("k1"));
    assert_eq!((db.spec.role, db.spec.init_mode), (DbRole::Standby, DbInitMode::Resync));
    assert_eq!(db.spec.follow_config.as_ref().and_then(|f| f.db_uid.as_deref()), Some(db_of("k2").as_str()));
    w.settle();
    assert_eq!(w.cd.proxy.spec.master_db_uid.as_deref(), Some(db_of("k2").as_str()));
}

/// The new master is promoted once the old master is stopped or has fenced itself: its keeper's
/// `/primary` and its proxies stop within min(failInterval, proxyTimeout) (4 s here) of its last
/// clusterdata read, which is at most one sleepInterval (1 s) after its last published info.
#[test]
fn the_new_master_waits_for_the_old_one_to_be_stopped_or_fenced() {
    struct Case {
        name: &'static str,
        /// How k1 fails (at t = T).
        fail: fn(&mut World),
        /// Seconds after T: (is k2 promoted yet).
        checks: &'static [(u64, bool)],
    }
    let cases = [
        Case {
            name: "force-failed keeper that keeps its primary running: fenced 4 s after the deposition was stored",
            fail: |w| force_fail(w, "k1"),
            // Failover at T; deposition first seen at T+1; fenced once now > T+1+4.
            checks: &[(0, false), (1, false), (5, false), (6, true)],
        },
        Case {
            name: "force-failed keeper that stops its primary at once",
            fail: |w| {
                force_fail(w, "k1");
                w.stop_postgres("k1");
            },
            checks: &[(0, false), (1, false), (2, true)],
        },
        Case {
            name: "dead keeper: failed after failInterval, fenced 1 + 4 s after its last info",
            fail: |w| w.kill("k1"),
            checks: &[(4, false), (5, false), (6, true)],
        },
        Case {
            name: "frozen keeper: same as dead",
            fail: |w| {
                w.frozen.insert("k1".into());
            },
            checks: &[(5, false), (6, true)],
        },
    ];
    for case in cases {
        let mut w = cluster("{}");
        (case.fail)(&mut w);
        let start = w.now;
        for (at, promoted) in case.checks {
            while w.now < start + secs(*at) {
                w.advance(1);
            }
            let d = w.step();
            let k2 = w.db(&db_of("k2"));
            let is_promoted = w.master() == Some(db_of("k2").as_str()) && k2.spec.role == DbRole::Master;
            assert_eq!(is_promoted, *promoted, "{} at +{at}s: {:?}", case.name, d.events);
            if w.master() == Some(db_of("k2").as_str()) {
                assert!(w.cd.dbs.contains_key(&db_of("k1")), "{} at +{at}s: old master's db kept", case.name);
                assert_eq!(waiting(&d), !*promoted, "{} at +{at}s: {:?}", case.name, d.events);
            }
        }
    }
}

/// Finding 7: the new master fails before it converged; the old master, intact, is elected again
/// (async: it has everything it acknowledged, the new one never served a write since proxies
/// publish a master only once it converged and the deposed master is gone; sync: it is the source
/// of every acknowledged write).
#[test]
fn the_old_master_is_elected_again_when_the_new_one_fails_first() {
    struct Case {
        name: &'static str,
        spec: &'static str,
        /// What happens to k2 after it was elected (k1 has stopped its postgres by then).
        fail_new: fn(&mut World),
    }
    const SYNC: &str = r#"{"synchronousReplication":true}"#;
    let cases = [
        Case { name: "async: new master's keeper dies before promoting", spec: "{}", fail_new: |w| w.kill("k2") },
        Case { name: "sync: new master's keeper dies before promoting", spec: SYNC, fail_new: |w| w.kill("k2") },
        Case {
            name: "async: new master's postgres stays down",
            spec: "{}",
            fail_new: |w| w.stop_postgres("k2"),
        },
        Case {
            name: "sync: new master force-failed",
            spec: SYNC,
            fail_new: |w| w.cd.keepers.get_mut("k2").unwrap().status.force_fail = true,
        },
    ];
    for case in cases {
        let mut w = cluster(case.spec);
        if case.spec == SYNC {
            // k2 is the synchronous standby, reported in sync.
            // The master's keeper applies the spec that lists k2, then reports k2 in sync (a
            // report counts only once made on the applied spec).
            w.advance(1);
            w.settle();
            w.converge("k1");
            w.pg("k1").synchronous_standbys = vec![format!("stolon_{}", db_of("k2"))];
            w.advance(1);
            w.settle();
            assert_eq!(w.db(&db_of("k1")).status.synchronous_standbys, vec![db_of("k2")], "{}: known in sync", case.name);
            assert_eq!(w.db(&db_of("k1")).spec.synchronous_standbys, vec![db_of("k2")], "{}", case.name);
        }
        force_fail(&mut w, "k1");
        w.step();
        assert_eq!(w.master(), Some(db_of("k2").as_str()), "{}", case.name);
        w.stop_postgres("k1");
        (case.fail_new)(&mut w);
        // Long enough for k2 to be failed and fenced.
        let mut events = Vec::new();
        for _ in 0..12 {
            w.advance(1);
            events.extend(w.step().events);
            if w.master() == Some(db_of("k1").as_str()) {
                break;
            }
        }
        assert_eq!(w.master(), Some(db_of("k1").as_str()), "{}: old master elected again: {:?}", case.name, events);
        let old = w.db(&db_of("k1"));
        assert_eq!(old.spec.role, DbRole::Master, "{}", case.name);
        assert_eq!(w.cd.db_of_keeper("k1").unwrap().uid, db_of("k1"), "{}: its data was never given up", case.name);
        assert!(w.cd.dbs.values().filter(|db| db.spec.role == DbRole::Master).count() <= 2, "{}", case.name);
        // Its keeper starts it again: it converges and proxies publish it.
        w.converge("k1");
        for _ in 0..8 {
            w.ack_proxies();
            w.advance(1);
            w.step();
        }
        assert_eq!(w.cd.proxy.spec.master_db_uid.as_deref(), Some(db_of("k1").as_str()), "{}", case.name);
        assert_eq!(w.master(), Some(db_of("k1").as_str()), "{}", case.name);
        assert!(
            w.cd.dbs.values().all(|db| db.uid == db_of("k1") || db.spec.role == DbRole::Standby),
            "{}: only one master db: {:?}",
            case.name,
            w.cd.dbs
        );
    }
}

/// The new master was promoted but died before it was established (never published): once it
/// has fenced itself (its keeper silent for sleepInterval + min(failInterval, proxyTimeout)), the
/// old master is elected again; the promoted one is deposed in turn and resynced once the old
/// master is back.
#[test]
fn the_old_master_is_elected_again_when_the_promoted_new_one_dies_unpublished() {
    let mut w = cluster("{}");
    force_fail(&mut w, "k1");
    w.step();
    w.stop_postgres("k1");
    w.advance(2);
    w.step();
    assert_eq!(w.db(&db_of("k2")).spec.role, DbRole::Master, "promoted");
    let died = w.now;
    w.kill("k2");
    let mut events = Vec::new();
    while w.master() != Some(db_of("k1").as_str()) && w.now < died + secs(12) {
        w.advance(1);
        events.extend(w.step().events);
        assert_eq!(w.cd.proxy.spec.master_db_uid, None, "k2 never published");
    }
    assert_eq!(w.master(), Some(db_of("k1").as_str()), "{events:?}");
    assert_eq!(w.now, died + secs(6), "failed at +5 s, fenced at +6 s: {events:?}");
    assert!(
        events.contains(&Event::WaitingForOldMaster { new_master: db_of("k1"), old_masters: vec![db_of("k2")] }),
        "{events:?}"
    );
    // k1 starts again; once it is established, k2's deposed db goes (k2's keeper is dead: no
    // new db), and proxies publish k1.
    w.converge("k1");
    for _ in 0..3 {
        w.ack_proxies();
        w.advance(1);
        w.step();
    }
    assert!(!w.cd.dbs.contains_key(&db_of("k2")), "{:?}", w.cd.dbs);
    assert_eq!(w.cd.proxy.spec.master_db_uid.as_deref(), Some(db_of("k1").as_str()));
}

/// Two deposed masters: neither is known to hold every acknowledged write, so neither is elected
/// again; the best standby is.
#[test]
fn with_two_deposed_masters_a_standby_is_elected() {
    let mut w = cluster("{}");
    // k1 is deposed already (k2 elected, not promoted); k3's db is a second deposed master.
    force_fail(&mut w, "k1");
    w.step();
    w.stop_postgres("k1");
    w.cd.dbs.get_mut(&db_of("k3")).unwrap().spec.role = DbRole::Master;
    w.kill("k2");
    w.start_keeper("k4");
    w.advance(1);
    w.step();
    let k4 = w.cd.db_of_keeper("k4").unwrap().uid.clone();
    w.converge("k4");
    w.pg("k4").xlog_pos = 1000;
    for _ in 0..8 {
        w.advance(1);
        w.step();
    }
    assert_eq!(w.master(), Some(k4.as_str()));
}
