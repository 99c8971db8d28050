//! Master failure, the fresh-evidence rule, and the election of the new master.

use super::fixtures::*;
use crate::decide::{Event, FailReason, Memory};
use clusterview::data::{DbInitMode, DbRole};

#[test]
fn a_settled_cluster_changes_nothing() {
    let mut w = World::normal(spec("{}"), "k1", &["k2", "k3"]);
    let d = w.decide();
    assert_eq!(d.next, None, "events: {:?}", d.events);
    assert!(d.events.is_empty(), "{:?}", d.events);
}

struct ElectionCase {
    name: &'static str,
    spec: &'static str,
    /// Changes to the standbys k2, k3 (and k4) before the master k1 dies.
    setup: fn(&mut World),
    /// The keeper whose db must become master; None: no eligible standby, nothing elected.
    want: Option<&'static str>,
}

#[test]
fn master_death_elects_the_best_standby() {
    let cases = [
        ElectionCase {
            name: "highest WAL position wins",
            spec: "{}",
            setup: |w| {
                w.pg("k2").xlog_pos = 900;
                w.pg("k3").xlog_pos = 950;
            },
            want: Some("k3"),
        },
        ElectionCase { name: "tie goes to the lowest keeper uid", spec: "{}", setup: |_| {}, want: Some("k2") },
        ElectionCase {
            name: "standby lagging more than maxStandbyLag is not elected",
            spec: r#"{"maxStandbyLag":100}"#,
            setup: |w| {
                w.pg("k2").xlog_pos = 2000; // ahead of the master's last known position: fine
                w.pg("k3").xlog_pos = 899;
                w.pg("k2").healthy = false;
            },
            want: None,
        },
        ElectionCase {
            name: "standby exactly maxStandbyLag behind is eligible",
            spec: r#"{"maxStandbyLag":100}"#,
            setup: |w| {
                w.pg("k2").xlog_pos = 899;
                w.pg("k3").xlog_pos = 900;
            },
            want: Some("k3"),
        },
        ElectionCase {
            name: "standby on another timeline is not elected, even far ahead",
            spec: "{}",
            setup: |w| {
                w.pg("k3").timeline_id = 2;
                w.pg("k3").xlog_pos = 5000;
                w.pg("k2").xlog_pos = 990;
            },
            want: Some("k2"),
        },
        ElectionCase {
            name: "canBeMaster false is skipped",
            spec: "{}",
            setup: |w| {
                w.info("k3").can_be_master = Some(false);
                w.pg("k3").xlog_pos = 1000;
                w.pg("k2").xlog_pos = 500;
            },
            want: Some("k2"),
        },
        ElectionCase {
            name: "unhealthy standby is skipped",
            spec: "{}",
            setup: |w| w.pg("k2").healthy = false,
            want: Some("k3"),
        },
        ElectionCase {
            name: "standby still reporting another db (resyncing) is skipped",
            spec: "{}",
            setup: |w| w.pg("k2").db_uid = Some("old".into()),
            want: Some("k3"),
        },
        ElectionCase {
            name: "wiped data dir is never master",
            spec: "{}",
            setup: |w| w.info("k2").data_dir_missing = true,
            want: Some("k3"),
        },
        ElectionCase {
            name: "frozen standby keeper is skipped",
            spec: "{}",
            setup: |w| {
                w.frozen.insert("k2".into());
            },
            want: Some("k3"),
        },
        ElectionCase {
            name: "dead standby keeper is skipped",
            spec: "{}",
            setup: |w| w.kill("k2"),
            want: Some("k3"),
        },
        ElectionCase {
            name: "force-failed standby keeper is skipped",
            spec: "{}",
            setup: |w| w.cd.keepers.get_mut("k2").unwrap().status.force_fail = true,
            want: Some("k3"),
        },
        ElectionCase {
            name: "no eligible standby: the old master stays",
            spec: "{}",
            setup: |w| {
                w.info("k2").can_be_master = Some(false);
                w.pg("k3").timeline_id = 3;
            },
            want: None,
        },
        ElectionCase {
            name: "standby not following the master is skipped",
            spec: "{}",
            setup: |w| {
                let db = w.cd.dbs.get_mut(&db_of("k3")).unwrap();
                db.spec.follow_config.as_mut().unwrap().db_uid = Some("elsewhere".into());
                db.status.xlog_pos = 2000;
                w.pg("k3").xlog_pos = 1000;
                w.pg("k2").xlog_pos = 10;
            },
            want: Some("k2"),
        },
    ];
    for case in cases {
        let mut w = World::normal(spec(case.spec), "k1", &["k2", "k3"]);
        (case.setup)(&mut w);
        w.kill("k1");
        w.advance(5);
        let d = w.decide();
        let next = d.next.clone().unwrap_or_else(|| w.cd.clone());
        match case.want {
            Some(keeper) => {
                let new = db_of(keeper);
                assert_eq!(next.cluster.status.master.as_deref(), Some(new.as_str()), "{}", case.name);
                assert!(
                    d.events.contains(&Event::Failover {
                        old_master: db_of("k1"),
                        old_keeper: "k1".into(),
                        new_master: new.clone(),
                        new_keeper: keeper.into(),
                        reason: FailReason::KeeperDead,
                    }),
                    "{}: {:?}",
                    case.name,
                    d.events
                );
                // The old master's db is kept, as it was (deposed), until the new one converged.
                let old = &next.dbs[&db_of("k1")];
                assert_eq!((old.spec.role, old.generation), (DbRole::Master, 2), "{}: old master's db kept", case.name);
                // Not promoted while the old master may still run: its keeper's last clusterdata
                // read may be 1 s after its last info, and it fences itself 4 s after that read.
                assert_eq!(next.dbs[&new].spec.role, DbRole::Standby, "{}: not promoted yet", case.name);
                // Fenced in the same write: no master for the proxies, generation + 1.
                assert_eq!(next.proxy.spec.master_db_uid, None, "{}", case.name);
                assert!(next.proxy.spec.enabled_proxies.is_empty(), "{}", case.name);
                assert_eq!(next.proxy.generation, 4, "{}", case.name);
                // Every remaining standby follows the new master, and the master lists them.
                for db in next.dbs.values().filter(|db| db.uid != new && db.spec.role == DbRole::Standby) {
                    let follows = db.spec.follow_config.as_ref().and_then(|f| f.db_uid.clone());
                    assert_eq!(follows.as_deref(), Some(new.as_str()), "{}: {}", case.name, db.uid);
                    assert!(next.dbs[&new].spec.followers.contains(&db.uid), "{}", case.name);
                }
                w.step();
                // One second later the old master has fenced itself: the new one is promoted.
                w.advance(1);
                w.step();
                let master = w.db(&new);
                assert_eq!((master.spec.role, master.spec.follow_config.clone()), (DbRole::Master, None), "{}", case.name);
                assert_eq!(master.spec.init_mode, DbInitMode::None, "{}", case.name);
                assert_eq!(master.generation, 4, "{}: one bump at the failover, one at the promotion", case.name);
                assert!(w.cd.dbs.contains_key(&db_of("k1")), "{}: kept until the new master converged", case.name);
            }
            None => {
                assert_eq!(next.cluster.status.master.as_deref(), Some(db_of("k1").as_str()), "{}", case.name);
                assert_eq!(next.proxy, w.cd.proxy, "{}: proxies untouched", case.name);
                assert!(
                    d.events.iter().any(|e| matches!(e, Event::NoEligibleStandby { .. })),
                    "{}: {:?}",
                    case.name,
                    d.events
                );
                w.step();
            }
        }
    }
}

/// safety rule 6: a new leader fails nothing during its first failInterval.
#[test]
fn fresh_evidence_only() {
    struct Case {
        name: &'static str,
        /// What is wrong with the master when the new term starts.
        setup: fn(&mut World),
        /// Seconds into the new term, and whether the master has been failed over by then.
        checks: &'static [(u64, bool)],
    }
    let cases = [
        Case { name: "master info gone", setup: |w| w.kill("k1"), checks: &[(0, false), (3, false), (4, false), (5, true)] },
        Case {
            name: "master info frozen",
            setup: |w| {
                w.frozen.insert("k1".into());
            },
            checks: &[(2, false), (4, false), (5, true)],
        },
        Case {
            name: "master reports unhealthy",
            setup: |w| w.pg("k1").healthy = false,
            checks: &[(3, false), (4, false), (5, true)],
        },
        Case {
            name: "master force-failed",
            setup: |w| w.cd.keepers.get_mut("k1").unwrap().status.force_fail = true,
            checks: &[(0, false), (4, false), (5, true)],
        },
    ];
    for case in cases {
        let mut w = World::normal(spec("{}"), "k1", &["k2"]);
        (case.setup)(&mut w);
        // A new term starts now, with an empty memory.
        let start = w.now;
        w.memory = Memory::new(start);
        w.observe();
        for (at, failed_over) in case.checks {
            let to = start + secs(*at);
            while w.now < to {
                w.advance(1);
            }
            let d = w.decide();
            let master = d.next.as_ref().unwrap_or(&w.cd).cluster.status.master.clone();
            assert_eq!(master != Some(db_of("k1")), *failed_over, "{} at +{at}s: {:?}", case.name, d.events);
        }
    }
}

#[test]
fn a_short_unhealthy_spell_of_the_master_is_not_a_failure() {
    let mut w = World::normal(spec("{}"), "k1", &["k2"]);
    w.pg("k1").healthy = false;
    w.advance(4);
    w.step();
    assert_eq!(w.master(), Some(db_of("k1").as_str()));
    assert!(!w.db(&db_of("k1")).status.healthy, "status says unhealthy at once");
    w.pg("k1").healthy = true;
    w.advance(3);
    w.step();
    w.pg("k1").healthy = false;
    w.advance(4);
    w.step();
    assert_eq!(w.master(), Some(db_of("k1").as_str()));
    w.advance(1);
    w.step();
    assert_eq!(w.master(), Some(db_of("k2").as_str()));
}

#[test]
fn force_fail_fails_over_and_is_cleared() {
    let mut w = World::normal(spec("{}"), "k1", &["k2"]);
    w.cd.keepers.get_mut("k1").unwrap().status.force_fail = true;
    let d = w.step();
    assert!(d.events.iter().any(|e| matches!(e, Event::Failover { reason: FailReason::ForceFail, .. })));
    assert_eq!(w.master(), Some(db_of("k2").as_str()));
    assert!(!w.cd.keepers["k1"].status.force_fail, "cleared once its db is no longer master");
    // k1 is alive, but its data is not touched before the new master exists: its db stays, as
    // a deposed master (its keeper stops postgres and waits), and it gets no resync db yet.
    let db = w.cd.db_of_keeper("k1").unwrap();
    assert_eq!((db.uid.as_str(), db.spec.role, db.spec.init_mode), (db_of("k1").as_str(), DbRole::Master, DbInitMode::None));
    // k1 stops its postgres; k2 is promoted and converges: only then does k1 get a resync db.
    w.stop_postgres("k1");
    for _ in 0..3 {
        w.advance(1);
        w.converge("k2");
        w.step();
    }
    assert_eq!(w.db(&db_of("k2")).spec.role, DbRole::Master);
    let db = w.cd.db_of_keeper("k1").unwrap();
    assert_eq!((db.spec.role, db.spec.init_mode), (DbRole::Standby, DbInitMode::Resync));
    assert_ne!(db.uid, db_of("k1"));
}

#[test]
fn force_fail_without_eligible_standby_keeps_master_and_flag() {
    let mut w = World::normal(spec("{}"), "k1", &["k2"]);
    w.info("k2").can_be_master = Some(false);
    w.cd.keepers.get_mut("k1").unwrap().status.force_fail = true;
    w.advance(1);
    let d = w.step();
    assert!(d.events.contains(&Event::NoEligibleStandby {
        master: db_of("k1"),
        keeper: "k1".into(),
        reason: FailReason::ForceFail
    }));
    assert_eq!(w.master(), Some(db_of("k1").as_str()));
    assert!(w.cd.keepers["k1"].status.force_fail);
}

#[test]
fn force_fail_of_a_standby_is_cleared_at_once() {
    let mut w = World::normal(spec("{}"), "k1", &["k2"]);
    w.cd.keepers.get_mut("k2").unwrap().status.force_fail = true;
    let d = w.step();
    assert!(d.events.contains(&Event::ForceFailCleared { keeper: "k2".into() }));
    assert!(!d.events.iter().any(|e| matches!(e, Event::KeeperHealthChanged { .. })), "no net change: {:?}", d.events);
    assert_eq!(w.master(), Some(db_of("k1").as_str()));
    assert!(!w.cd.keepers["k2"].status.force_fail);
}

#[test]
fn master_whose_data_dir_vanished_is_replaced_from_its_last_known_position() {
    let mut w = World::normal(spec(r#"{"maxStandbyLag":100}"#), "k1", &["k2", "k3"]);
    w.advance(10);
    w.settle();
    // k1's keeper keeps publishing, but its data dir is gone: it reports zeros for its db.
    let db = w.pg("k1").db_uid.clone();
    w.info("k1").data_dir_missing = true;
    *w.pg("k1") = clusterview::info::PostgresState { db_uid: db, ..Default::default() };
    w.advance(1);
    w.settle();
    // The zeros must not replace the master's last known timeline and WAL position, or no
    // standby would look eligible.
    let master = w.master().unwrap().to_string();
    assert_eq!(w.db(&master).status.timeline_id, 1, "last known timeline kept");
    w.advance(10);
    w.settle();
    assert!(matches!(w.master_keeper(), Some("k2") | Some("k3")), "master is now {:?}", w.master_keeper());
}
