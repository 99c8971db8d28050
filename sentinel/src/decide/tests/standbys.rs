//! Standby assignment, maxStandbys, re-pointing, returning and wiped keepers, dead keeper removal.

use super::fixtures::*;
use crate::decide::Event;
use clusterview::data::{DbInitMode, DbRole, FollowConfig, FollowType};

fn follows(w: &World, keeper: &str) -> Option<String> {
    w.cd.db_of_keeper(keeper)?.spec.follow_config.as_ref()?.db_uid.clone()
}

#[test]
fn keeper_without_db_gets_a_resync_standby() {
    let mut w = World::normal(spec("{}"), "k1", &["k2"]);
    w.start_keeper("k3");
    w.advance(1);
    let d = w.step();
    let db = w.cd.db_of_keeper("k3").unwrap().clone();
    assert_eq!((db.spec.role, db.spec.init_mode, db.generation), (DbRole::Standby, DbInitMode::Resync, 1));
    assert_eq!(db.spec.follow_config, Some(FollowConfig { kind: FollowType::Internal, db_uid: Some(db_of("k1")) }));
    assert_eq!(db.status.listen_address.as_deref(), Some("k3.host"));
    assert!(d.events.contains(&Event::StandbyAssigned { keeper: "k3".into(), db: db.uid.clone(), follows: db_of("k1") }));
    let master = w.db(&db_of("k1"));
    assert_eq!(master.spec.followers, vec![db_of("k2"), db.uid.clone()]);
    assert_eq!(master.generation, 3, "followers changed: master generation bumped");
    assert_eq!(w.db(&db_of("k2")).generation, 2, "untouched standby keeps its generation");
    assert_eq!(w.cd.proxy.generation, 3, "proxy spec untouched");

    // Once it converged, its initMode is cleared (generation bump).
    w.converge("k3");
    w.advance(1);
    let d = w.step();
    assert!(d.events.contains(&Event::InitModeCleared { db: db.uid.clone() }));
    let db = w.db(&db.uid);
    assert_eq!((db.spec.init_mode, db.generation), (DbInitMode::None, 2));
}

#[test]
fn max_standbys_is_respected() {
    struct Case {
        name: &'static str,
        max: u16,
        new_keepers: &'static [&'static str],
        assigned: &'static [&'static str],
    }
    let cases = [
        Case { name: "already at max", max: 1, new_keepers: &["k3"], assigned: &[] },
        Case { name: "room for all", max: 3, new_keepers: &["k4", "k3"], assigned: &["k3", "k4"] },
        Case { name: "room for one: lowest uid", max: 2, new_keepers: &["k4", "k3"], assigned: &["k3"] },
    ];
    for case in cases {
        let mut w = World::normal(spec(&format!(r#"{{"maxStandbys":{}}}"#, case.max)), "k1", &["k2"]);
        for k in case.new_keepers {
            w.start_keeper(k);
        }
        w.advance(1);
        w.step();
        let got: Vec<&str> = case.new_keepers.iter().copied().filter(|k| w.cd.db_of_keeper(k).is_some()).collect();
        let mut got = got;
        got.sort();
        assert_eq!(got, case.assigned, "{}", case.name);
        assert!(case.new_keepers.iter().all(|k| w.cd.keepers.contains_key(*k)), "{}: keepers listed", case.name);
    }
}

#[test]
fn old_master_returns_as_a_resync_standby() {
    let mut w = World::normal(spec("{}"), "k1", &["k2"]);
    w.kill("k1");
    w.advance(5);
    w.step();
    assert_eq!(w.master(), Some(db_of("k2").as_str()));
    // k2 is promoted once k1 has fenced itself, and converges: k1's deposed db goes.
    for _ in 0..2 {
        w.advance(1);
        w.converge("k2");
        w.step();
    }
    assert_eq!(w.db(&db_of("k2")).spec.role, DbRole::Master);
    assert!(w.cd.db_of_keeper("k1").is_none(), "a dead keeper gets no db");
    // k1 comes back, still running its old data as a primary.
    let info = w.start_keeper("k1");
    info.postgres_state = Some(pg_state(&db_of("k1"), 2));
    w.advance(1);
    w.step();
    let db = w.cd.db_of_keeper("k1").unwrap();
    assert_ne!(db.uid, db_of("k1"), "a new db uid, so the keeper applies resync");
    assert_eq!((db.spec.role, db.spec.init_mode), (DbRole::Standby, DbInitMode::Resync));
    assert_eq!(follows(&w, "k1"), Some(db_of("k2")));
    assert_eq!(w.master(), Some(db_of("k2").as_str()));
    assert!(!db.status.healthy, "its old data does not make the new db healthy");
    assert_eq!((db.status.current_generation, db.status.xlog_pos), (None, 0), "facts of the old db are not copied");
    assert_eq!(db.status.listen_address.as_deref(), Some("k1.host"));
}

/// Finding 14g: one `dataDirMissing` report may be a transient `read_dir` error; the db is
/// replaced only once the report persisted for failInterval (4 s here).
#[test]
fn wiped_standby_gets_a_new_resync_db_once_the_report_persisted() {
    let mut w = World::normal(spec("{}"), "k1", &["k2"]);
    let info = w.info("k2");
    info.data_dir_missing = true;
    info.postgres_state = None;
    for second in 1..=5 {
        w.advance(1);
        let d = w.step();
        assert!(w.cd.dbs.contains_key(&db_of("k2")), "+{second}s: not yet: {:?}", d.events);
    }
    w.advance(1);
    let d = w.step();
    assert!(d.events.contains(&Event::DbRemoved { keeper: "k2".into(), db: db_of("k2"), why: "data dir missing" }));
    let new = w.cd.db_of_keeper("k2").unwrap().uid.clone();
    assert_eq!(w.db(&new).spec.init_mode, DbInitMode::Resync);
    // The keeper still says its data dir is missing until it has resynced: no second replacement.
    w.advance(10);
    w.step();
    assert_eq!(w.cd.db_of_keeper("k2").unwrap().uid, new);
}

#[test]
fn a_passing_data_dir_missing_report_drops_nothing() {
    let mut w = World::normal(spec("{}"), "k1", &["k2"]);
    for second in 0..12 {
        // Missing on every third report only: never for failInterval in a row.
        w.info("k2").data_dir_missing = second % 3 == 0;
        w.advance(1);
        let d = w.step();
        assert!(w.cd.dbs.contains_key(&db_of("k2")), "+{second}s: {:?}", d.events);
    }
}

#[test]
fn wiped_master_is_failed_over_and_resyncs() {
    let mut w = World::normal(spec("{}"), "k1", &["k2"]);
    let info = w.info("k1");
    info.data_dir_missing = true;
    info.postgres_state = None;
    w.advance(5);
    w.step();
    assert_eq!(w.master(), Some(db_of("k2").as_str()));
    for _ in 0..3 {
        w.advance(1);
        w.converge("k2");
        w.step();
    }
    let db = w.cd.db_of_keeper("k1").unwrap();
    assert_eq!((db.spec.role, db.spec.init_mode), (DbRole::Standby, DbInitMode::Resync));
}

#[test]
fn standby_following_a_stale_db_is_repointed() {
    let mut w = World::normal(spec("{}"), "k1", &["k2", "k3"]);
    w.cd.dbs.get_mut(&db_of("k3")).unwrap().spec.follow_config.as_mut().unwrap().db_uid = Some("gone".into());
    let d = w.step();
    assert!(d.events.contains(&Event::Repointed { db: db_of("k3"), from: Some("gone".into()), to: db_of("k1") }));
    assert_eq!(follows(&w, "k3"), Some(db_of("k1")));
    assert_eq!(w.db(&db_of("k3")).generation, 3);
    assert_eq!(w.db(&db_of("k2")).generation, 2);
}

#[test]
fn deposed_master_db_is_replaced_by_a_standby() {
    let mut w = World::normal(spec("{}"), "k1", &["k2"]);
    w.cd.dbs.get_mut(&db_of("k2")).unwrap().spec.role = DbRole::Master;
    w.step();
    let db = w.cd.db_of_keeper("k2").unwrap();
    assert_ne!(db.uid, db_of("k2"));
    assert_eq!((db.spec.role, db.spec.init_mode), (DbRole::Standby, DbInitMode::Resync));
}

#[test]
fn dead_keeper_removal() {
    struct Case {
        name: &'static str,
        /// Who stops publishing, and how.
        setup: fn(&mut World),
        seconds: u64,
        removed: &'static [&'static str],
    }
    let cases = [
        Case { name: "not yet", setup: |w| w.kill("k3"), seconds: 60, removed: &[] },
        Case { name: "after deadKeeperRemovalInterval", setup: |w| w.kill("k3"), seconds: 61, removed: &["k3"] },
        Case {
            name: "never the master's keeper",
            setup: |w| {
                w.info("k2").can_be_master = Some(false);
                w.info("k3").can_be_master = Some(false);
                w.kill("k1");
            },
            seconds: 70,
            removed: &[],
        },
        Case {
            // Failed over in the same decision: its db is deposed, kept until the new master is
            // established, and so is its keeper.
            name: "never a deposed master's keeper",
            setup: |w| w.kill("k1"),
            seconds: 70,
            removed: &[],
        },
        Case {
            name: "not while its info is still published (frozen)",
            setup: |w| {
                w.frozen.insert("k3".into());
            },
            seconds: 70,
            removed: &[],
        },
    ];
    for case in cases {
        let mut w = World::normal(spec("{}"), "k1", &["k2", "k3"]);
        (case.setup)(&mut w);
        w.advance(case.seconds);
        let d = w.step();
        for k in ["k1", "k2", "k3"] {
            let removed = case.removed.contains(&k);
            assert_eq!(!w.cd.keepers.contains_key(k), removed, "{}: keeper {k}", case.name);
            assert_eq!(w.cd.dbs.contains_key(&db_of(k)), !removed, "{}: db of {k}", case.name);
            if removed {
                assert!(d.events.contains(&Event::KeeperRemoved { keeper: k.into(), dbs: vec![db_of(k)] }));
                assert!(!w.db(&db_of("k1")).spec.followers.contains(&db_of(k)), "{}", case.name);
            }
        }
    }
}
