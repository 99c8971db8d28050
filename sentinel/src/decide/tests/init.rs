//! The initializing phase: which keeper is picked, when the phase turns normal, initTimeout.

use super::fixtures::*;
use crate::decide::Event;
use clusterview::data::{ClusterPhase, DbInitMode, DbRole};

struct PickCase {
    name: &'static str,
    spec: &'static str,
    keepers: &'static [&'static str],
    setup: fn(&mut World),
    /// The keeper whose db becomes the init master, and its initMode; None: nothing picked yet.
    want: Option<(&'static str, DbInitMode)>,
}

#[test]
fn init_picks_a_keeper() {
    let cases = [
        PickCase { name: "lowest uid", spec: "{}", keepers: &["k2", "k1", "k3"], setup: |_| {}, want: Some(("k1", DbInitMode::New)) },
        PickCase {
            name: "canBeMaster false skipped",
            spec: "{}",
            keepers: &["k1", "k2"],
            setup: |w| w.info("k1").can_be_master = Some(false),
            want: Some(("k2", DbInitMode::New)),
        },
        PickCase {
            name: "frozen keeper skipped after the grace window",
            spec: "{}",
            keepers: &["k1", "k2"],
            setup: |w| {
                w.frozen.insert("k1".into());
                w.advance(5);
            },
            want: Some(("k2", DbInitMode::New)),
        },
        PickCase {
            name: "force-failed keeper skipped",
            spec: "{}",
            keepers: &["k1", "k2"],
            setup: |w| {
                w.step();
                w.cd.keepers.get_mut("k1").unwrap().status.force_fail = true;
                w.cd.dbs.clear();
                w.cd.cluster.status.master = None;
            },
            want: Some(("k2", DbInitMode::New)),
        },
        PickCase { name: "no keeper yet", spec: "{}", keepers: &[], setup: |_| {}, want: None },
        PickCase {
            name: "only keepers that cannot be master",
            spec: "{}",
            keepers: &["k1"],
            setup: |w| w.info("k1").can_be_master = Some(false),
            want: None,
        },
        PickCase {
            name: "existing: the configured keeper, not the lowest",
            spec: r#"{"initMode":"existing","existingConfig":{"keeperUID":"k3"}}"#,
            keepers: &["k1", "k3"],
            setup: |_| {},
            want: Some(("k3", DbInitMode::Existing)),
        },
        PickCase {
            name: "existing: waits for the configured keeper",
            spec: r#"{"initMode":"existing","existingConfig":{"keeperUID":"k3"}}"#,
            keepers: &["k1", "k2"],
            setup: |_| {},
            want: None,
        },
        PickCase {
            name: "pitr: lowest uid with initMode pitr",
            spec: r#"{"initMode":"pitr","pitrConfig":{"dataRestoreCommand":"cp -r /b %d"}}"#,
            keepers: &["k2", "k1"],
            setup: |_| {},
            want: Some(("k1", DbInitMode::Pitr)),
        },
    ];
    for case in cases {
        let mut w = World::initializing(spec(case.spec), case.keepers);
        (case.setup)(&mut w);
        w.step();
        let master = w.cd.master_db();
        let got = master.map(|db| (db.spec.keeper_uid.as_str(), db.spec.init_mode));
        assert_eq!(got, case.want, "{}", case.name);
        assert_eq!(w.cd.cluster.status.phase, ClusterPhase::Initializing, "{}", case.name);
        if let Some(db) = master {
            assert_eq!(db.spec.role, DbRole::Master, "{}", case.name);
            assert_eq!(db.generation, 1, "{}", case.name);
            assert_eq!(w.cd.dbs.len(), 1, "{}: no standbys while initializing", case.name);
        }
    }
}

#[test]
fn keepers_are_added_as_they_appear() {
    let mut w = World::initializing(spec("{}"), &["k1"]);
    let d = w.step();
    assert!(d.events.contains(&Event::KeeperAdded { keeper: "k1".into() }));
    assert!(d.events.contains(&Event::KeeperHealthChanged { keeper: "k1".into(), healthy: true }));
    assert!(w.cd.keepers["k1"].status.healthy);
    assert_eq!(w.cd.cluster.generation, 2);
    w.start_keeper("k2");
    w.observe();
    let d = w.step();
    assert!(d.events.contains(&Event::KeeperAdded { keeper: "k2".into() }));
    assert_eq!(w.cd.keepers.keys().collect::<Vec<_>>(), ["k1", "k2"]);
}

/// What the init db's keeper reports, and whether the phase turns normal.
#[test]
fn init_completes_only_when_healthy_at_its_generation() {
    struct Case {
        name: &'static str,
        report: fn(&mut World),
        normal: bool,
    }
    let cases = [
        Case { name: "healthy at generation", report: |w| w.converge("k1"), normal: true },
        Case {
            name: "healthy at an older generation",
            report: |w| {
                w.converge("k1");
                w.pg("k1").generation = Some(0);
            },
            normal: false,
        },
        Case {
            name: "converged but unhealthy",
            report: |w| {
                w.converge("k1");
                w.pg("k1").healthy = false;
            },
            normal: false,
        },
        Case {
            name: "healthy, for another db uid",
            report: |w| {
                w.converge("k1");
                w.pg("k1").db_uid = Some("other".into());
            },
            normal: false,
        },
        Case { name: "no report yet", report: |_| {}, normal: false },
    ];
    for case in cases {
        let mut w = World::initializing(spec("{}"), &["k1", "k2"]);
        w.step();
        let init_db = w.master().unwrap().to_string();
        (case.report)(&mut w);
        w.advance(1);
        let d = w.step();
        let normal = w.cd.cluster.status.phase == ClusterPhase::Normal;
        assert_eq!(normal, case.normal, "{}", case.name);
        if case.normal {
            assert!(d.events.contains(&Event::InitCompleted { keeper: "k1".into(), db: init_db.clone() }));
            let master = w.db(&init_db);
            // initMode new is cleared once applied, so a lost keeper state never re-runs initdb.
            assert_eq!(master.spec.init_mode, DbInitMode::None);
            assert_eq!(master.generation, 2);
            // The other keeper becomes a standby at once, and the master lists it.
            let standby = w.cd.db_of_keeper("k2").unwrap();
            assert_eq!(standby.spec.init_mode, DbInitMode::Resync);
            assert_eq!(master.spec.followers, vec![standby.uid.clone()]);
            // No proxies: the master is published once the term's first proxyTimeout passed.
            assert_eq!(w.cd.proxy.spec.master_db_uid, None);
            w.converge("k1");
            w.advance(4);
            w.step();
            assert_eq!(w.cd.proxy.spec.master_db_uid.as_deref(), Some(init_db.as_str()));
        } else {
            assert_eq!(w.cd.dbs.len(), 1, "{}", case.name);
            assert_eq!(w.cd.proxy.spec.master_db_uid, None, "{}", case.name);
        }
    }
}

#[test]
fn init_timeout_picks_another_keeper() {
    let mut w = World::initializing(spec("{}"), &["k1", "k2"]);
    w.step();
    let first = w.master().unwrap().to_string();
    assert_eq!(w.master_keeper(), Some("k1"));
    // The db is first observed one tick after it was made (t=1): initTimeout runs from there.
    w.advance(11);
    assert_eq!(w.step().next, None, "not timed out at exactly initTimeout");
    w.advance(1);
    let d = w.step();
    assert!(d.events.contains(&Event::InitTimedOut { keeper: "k1".into(), db: first.clone() }));
    assert_eq!(w.master_keeper(), Some("k2"));
    assert!(!w.cd.dbs.contains_key(&first));
    assert_eq!(w.cd.dbs.len(), 1);
}

#[test]
fn init_timeout_with_one_keeper_retries_it_with_a_new_db() {
    let mut w = World::initializing(spec("{}"), &["k1"]);
    w.step();
    let first = w.master().unwrap().to_string();
    w.advance(12);
    w.step();
    assert_eq!(w.master_keeper(), Some("k1"));
    assert_ne!(w.master(), Some(first.as_str()));
    assert_eq!(w.cd.master_db().unwrap().spec.init_mode, DbInitMode::New);
}

#[test]
fn standby_cluster_role_is_left_alone() {
    let mut w = World::initializing(
        spec(r#"{"role":"standby","standbyConfig":{"standbySettings":{"primaryConninfo":"host=x"}}}"#),
        &["k1"],
    );
    let d = w.step();
    assert!(d.events.contains(&Event::Unsupported { what: "cluster role standby" }));
    assert!(w.cd.dbs.is_empty());
}
