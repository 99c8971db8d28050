//! Synchronous replication: the master's synchronous set, and elections in synchronous mode.

use super::fixtures::*;
use crate::decide::Event;

/// Sets the master's current synchronous set (spec and what its keeper reports).
fn set_sync(w: &mut World, members: &[&str]) {
    let master = w.cd.dbs.get_mut(&db_of("k1")).unwrap();
    master.spec.synchronous_replication = true;
    master.spec.synchronous_standbys = members.iter().map(|k| db_of(k)).collect();
    w.pg("k1").synchronous_standbys = members.iter().map(|k| format!("stolon_{}", db_of(k))).collect();
}

#[test]
fn synchronous_set() {
    struct Case {
        name: &'static str,
        spec: &'static str,
        setup: fn(&mut World),
        want: &'static [&'static str],
    }
    const ON: &str = r#"{"synchronousReplication":true}"#;
    let cases = [
        Case {
            name: "enabling picks the healthy standby with the highest WAL position",
            spec: ON,
            setup: |w| {
                w.pg("k2").xlog_pos = 900;
                w.pg("k4").xlog_pos = 800;
            },
            want: &["k3"],
        },
        Case {
            name: "maxSynchronousStandbys 2 picks two",
            spec: r#"{"synchronousReplication":true,"maxSynchronousStandbys":2}"#,
            setup: |w| w.pg("k4").xlog_pos = 900,
            want: &["k2", "k3"],
        },
        Case {
            name: "canBeSynchronousReplica false is excluded",
            spec: ON,
            setup: |w| w.info("k2").can_be_synchronous_replica = Some(false),
            want: &["k3"],
        },
        Case { name: "unhealthy standby is excluded", spec: ON, setup: |w| w.pg("k2").healthy = false, want: &["k3"] },
        Case {
            name: "a healthy current member is kept over a better one",
            spec: ON,
            setup: |w| {
                set_sync(w, &["k4"]);
                w.pg("k4").xlog_pos = 500;
            },
            want: &["k4"],
        },
        Case {
            name: "an unhealthy current member is replaced",
            spec: ON,
            setup: |w| {
                set_sync(w, &["k4"]);
                w.pg("k4").healthy = false;
            },
            want: &["k2"],
        },
        Case {
            name: "too few healthy: current members kept up to minSynchronousStandbys",
            spec: r#"{"synchronousReplication":true,"minSynchronousStandbys":2,"maxSynchronousStandbys":2}"#,
            setup: |w| {
                set_sync(w, &["k3", "k4"]);
                w.pg("k3").healthy = false;
                w.pg("k4").healthy = false;
            },
            want: &["k2", "k3"],
        },
        Case {
            name: "none healthy: the current member stays",
            spec: ON,
            setup: |w| {
                set_sync(w, &["k4"]);
                for k in ["k2", "k3", "k4"] {
                    w.pg(k).healthy = false;
                }
            },
            want: &["k4"],
        },
        Case { name: "disabled: the set is emptied", spec: "{}", setup: |w| set_sync(w, &["k2"]), want: &[] },
    ];
    for case in cases {
        let mut w = World::normal(spec(case.spec), "k1", &["k2", "k3", "k4"]);
        (case.setup)(&mut w);
        w.advance(1);
        let events = w.settle();
        let master = w.db(&db_of("k1"));
        let want: Vec<String> = case.want.iter().map(|k| db_of(k)).collect();
        assert_eq!(master.spec.synchronous_standbys, want, "{}: {events:?}", case.name);
        assert_eq!(master.spec.synchronous_replication, case.spec != "{}", "{}", case.name);
        assert_eq!(w.master(), Some(db_of("k1").as_str()), "{}", case.name);
    }
}

#[test]
fn synchronous_set_change_is_reported_and_bumps_the_master_generation() {
    let mut w = World::normal(spec(r#"{"synchronousReplication":true}"#), "k1", &["k2"]);
    let d = w.step();
    assert!(d.events.contains(&Event::SyncStandbysChanged { master: db_of("k1"), from: vec![], to: vec![db_of("k2")] }));
    assert_eq!(w.db(&db_of("k1")).generation, 3);
}

#[test]
fn synchronous_mode_elects_only_a_synchronous_standby() {
    struct Case {
        name: &'static str,
        setup: fn(&mut World),
        want: Option<&'static str>,
    }
    let cases = [
        Case { name: "the synchronous standby, although behind", setup: |w| set_sync(w, &["k3"]), want: Some("k3") },
        Case {
            name: "listed in the spec but not yet applied by the master: not elected",
            setup: |w| {
                set_sync(w, &["k3"]);
                w.pg("k1").synchronous_standbys.clear();
            },
            want: None,
        },
        Case {
            name: "the synchronous standby is down: nobody",
            setup: |w| {
                set_sync(w, &["k3"]);
                w.pg("k3").healthy = false;
            },
            want: None,
        },
    ];
    for case in cases {
        let mut w = World::normal(spec(r#"{"synchronousReplication":true}"#), "k1", &["k2", "k3"]);
        w.pg("k3").xlog_pos = 990;
        (case.setup)(&mut w);
        w.advance(1);
        // Copy the master's report into clusterdata while it is alive.
        w.step();
        w.kill("k1");
        w.advance(5);
        let d = w.step();
        match case.want {
            Some(k) => assert_eq!(w.master(), Some(db_of(k).as_str()), "{}: {:?}", case.name, d.events),
            None => {
                assert_eq!(w.master(), Some(db_of("k1").as_str()), "{}", case.name);
                assert!(d.events.iter().any(|e| matches!(e, Event::NoEligibleStandby { .. })), "{}", case.name);
            }
        }
    }
}
