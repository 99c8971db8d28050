//! Synchronous replication: the master's synchronous set, and elections in synchronous mode.
//!
//! "In sync" is what the master reports (pg_stat_replication), never what it was told to use.
//! The set changes only while every listed standby is known in sync, grows before it shrinks
//! (`[A]` -> `[A, B]` -> `[B]`), and loses a member only after `failInterval` of bad health.

use super::fixtures::*;
use crate::decide::Event;

const ON: &str = r#"{"synchronousReplication":true}"#;

fn uids(keepers: &[&str]) -> Vec<String> {
    keepers.iter().map(|k| db_of(k)).collect()
}

/// Sets the master's current synchronous set (spec and what its keeper reports in sync).
fn set_sync(w: &mut World, members: &[&str]) {
    let master = w.cd.dbs.get_mut(&db_of("k1")).unwrap();
    master.spec.synchronous_replication = true;
    master.spec.synchronous_standbys = uids(members);
    report_in_sync(w, members);
}

/// What the master's keeper reports in sync from now on (`stolon_<db>` application names).
fn report_in_sync(w: &mut World, members: &[&str]) {
    w.pg("k1").synchronous_standbys = members.iter().map(|k| format!("stolon_{}", db_of(k))).collect();
}

/// The master's keeper applies its current spec (reports its generation) and reports `in_sync`.
fn master_applies(w: &mut World, in_sync: &[&str]) {
    w.converge("k1");
    report_in_sync(w, in_sync);
}

fn sync_spec(w: &World) -> Vec<String> {
    w.db(&db_of("k1")).spec.synchronous_standbys.clone()
}

#[test]
fn synchronous_set() {
    struct Case {
        name: &'static str,
        spec: &'static str,
        setup: fn(&mut World),
        /// Seconds that pass after the setup, before the sentinel decides.
        wait: u64,
        want: &'static [&'static str],
    }
    let cases = [
        Case {
            name: "enabling picks the healthy standby with the highest WAL position",
            spec: ON,
            setup: |w| {
                w.pg("k2").xlog_pos = 900;
                w.pg("k4").xlog_pos = 800;
            },
            wait: 1,
            want: &["k3"],
        },
        Case {
            name: "maxSynchronousStandbys 2 picks two",
            spec: r#"{"synchronousReplication":true,"maxSynchronousStandbys":2}"#,
            setup: |w| w.pg("k4").xlog_pos = 900,
            wait: 1,
            want: &["k2", "k3"],
        },
        Case {
            name: "canBeSynchronousReplica false is excluded",
            spec: ON,
            setup: |w| w.info("k2").can_be_synchronous_replica = Some(false),
            wait: 1,
            want: &["k3"],
        },
        Case { name: "unhealthy standby is excluded", spec: ON, setup: |w| w.pg("k2").healthy = false, wait: 1, want: &["k3"] },
        Case {
            name: "a standby that is not streaming is not a candidate",
            spec: ON,
            setup: |w| w.pg("k2").streaming = false,
            wait: 1,
            want: &["k3"],
        },
        Case {
            name: "a standby on another timeline than the master is not a candidate",
            spec: ON,
            setup: |w| w.pg("k2").timeline_id = 2,
            wait: 1,
            want: &["k3"],
        },
        Case {
            name: "a standby that has not applied its spec yet is not a candidate",
            spec: ON,
            setup: |w| w.pg("k2").generation = Some(1),
            wait: 1,
            want: &["k3"],
        },
        Case {
            name: "a healthy current member is kept over a better one",
            spec: ON,
            setup: |w| {
                set_sync(w, &["k4"]);
                w.pg("k4").xlog_pos = 500;
            },
            wait: 1,
            want: &["k4"],
        },
        Case {
            name: "a current member unhealthy for less than failInterval stays, alone",
            spec: ON,
            setup: |w| {
                set_sync(w, &["k4"]);
                w.pg("k4").healthy = false;
            },
            wait: 3,
            want: &["k4"],
        },
        Case {
            name: "a current member not streaming for less than failInterval stays, alone",
            spec: ON,
            setup: |w| {
                set_sync(w, &["k4"]);
                w.pg("k4").streaming = false;
            },
            wait: 3,
            want: &["k4"],
        },
        Case {
            name: "a member unhealthy beyond failInterval: its replacement is added first, it stays ([A] -> [A, B])",
            spec: ON,
            setup: |w| {
                set_sync(w, &["k4"]);
                w.pg("k4").healthy = false;
            },
            wait: 5,
            want: &["k2", "k4"],
        },
        Case {
            name: "a member whose keeper is dead beyond failInterval: replacement added first",
            spec: ON,
            setup: |w| {
                set_sync(w, &["k4"]);
                w.frozen.insert("k4".into());
            },
            wait: 5,
            want: &["k2", "k4"],
        },
        Case {
            name: "too few healthy: failed members kept up to minSynchronousStandbys, the new one added besides",
            spec: r#"{"synchronousReplication":true,"minSynchronousStandbys":2,"maxSynchronousStandbys":2}"#,
            setup: |w| {
                set_sync(w, &["k3", "k4"]);
                w.pg("k3").healthy = false;
                w.pg("k4").healthy = false;
            },
            wait: 5,
            want: &["k2", "k3", "k4"],
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
            wait: 5,
            want: &["k4"],
        },
        Case {
            name: "minSynchronousStandbys 0, none healthy: the failed member leaves, the master commits alone",
            spec: r#"{"synchronousReplication":true,"minSynchronousStandbys":0}"#,
            setup: |w| {
                set_sync(w, &["k4"]);
                for k in ["k2", "k3", "k4"] {
                    w.pg(k).healthy = false;
                }
            },
            wait: 5,
            want: &[],
        },
        Case {
            name: "maxSynchronousStandbys lowered: the member furthest behind leaves",
            spec: ON,
            setup: |w| {
                set_sync(w, &["k2", "k3"]);
                w.pg("k2").xlog_pos = 900;
            },
            wait: 1,
            want: &["k3"],
        },
        Case {
            name: "a listed standby the master does not report in sync yet is waited for, not replaced",
            spec: ON,
            setup: |w| {
                set_sync(w, &["k4"]);
                report_in_sync(w, &[]);
                w.pg("k3").xlog_pos = 2000;
            },
            wait: 1,
            want: &["k4"],
        },
        Case {
            name: "a listed standby not in sync yet that fails is dropped back to the in-sync ones",
            spec: ON,
            setup: |w| {
                set_sync(w, &["k3", "k4"]);
                report_in_sync(w, &["k3"]);
                w.pg("k4").healthy = false;
            },
            wait: 5,
            want: &["k3"],
        },
        Case { name: "disabled: the set is emptied", spec: "{}", setup: |w| set_sync(w, &["k2"]), wait: 1, want: &[] },
    ];
    for case in cases {
        let mut w = World::normal(spec(case.spec), "k1", &["k2", "k3", "k4"]);
        (case.setup)(&mut w);
        w.advance(case.wait);
        let events = w.settle();
        let master = w.db(&db_of("k1"));
        assert_eq!(master.spec.synchronous_standbys, uids(case.want), "{}: {events:?}", case.name);
        assert_eq!(master.spec.synchronous_replication, case.spec != "{}", "{}", case.name);
        assert_eq!(w.master(), Some(db_of("k1").as_str()), "{}", case.name);
    }
}

#[test]
fn synchronous_set_change_is_reported_and_bumps_the_master_generation() {
    let mut w = World::normal(spec(ON), "k1", &["k2"]);
    let d = w.step();
    assert!(d.events.contains(&Event::SyncStandbysChanged { master: db_of("k1"), from: vec![], to: vec![db_of("k2")] }));
    assert_eq!(w.db(&db_of("k1")).generation, 3);
}

/// Finding: a sync standby with one bad report was swapped for another in one write (`[A]` ->
/// `[B]`), so a master failing right after could elect B, which lacks acknowledged commits. The
/// whole replacement, step by step, with the election checked at each step.
#[test]
fn a_failed_synchronous_standby_is_replaced_through_the_union() {
    let mut w = World::normal(spec(ON), "k1", &["k2", "k3"]);
    set_sync(&mut w, &["k2"]);
    w.advance(1);
    w.settle();
    // k2's postgres stops answering (or its keeper is slow): one bad report changes nothing.
    w.pg("k2").healthy = false;
    w.advance(1);
    w.settle();
    assert_eq!(sync_spec(&w), uids(&["k2"]), "one bad report must not evict the synchronous standby");
    // After failInterval k3 is added; k2 stays until the master reports k3 in sync.
    w.advance(4);
    w.settle();
    assert_eq!(sync_spec(&w), uids(&["k2", "k3"]));
    assert_eq!(w.db(&db_of("k1")).status.synchronous_standbys, uids(&["k2"]), "only k2 is known in sync");
    // The master applies [k2, k3] but k3 is still catching up: nothing changes, however long.
    master_applies(&mut w, &[]);
    w.advance(10);
    w.settle();
    assert_eq!(sync_spec(&w), uids(&["k2", "k3"]), "waiting for k3 to be reported in sync");
    // k3 in sync: k2 leaves.
    master_applies(&mut w, &["k3"]);
    w.advance(1);
    let events = w.settle();
    assert_eq!(sync_spec(&w), uids(&["k3"]), "{events:?}");
    assert!(events.contains(&Event::SyncStandbysChanged { master: db_of("k1"), from: uids(&["k2", "k3"]), to: uids(&["k3"]) }));
    // The master dies: k3, known in sync, is elected.
    master_applies(&mut w, &["k3"]);
    w.advance(1);
    w.settle();
    w.kill("k1");
    w.advance(5);
    let d = w.step();
    assert_eq!(w.master(), Some(db_of("k3").as_str()), "{:?}", d.events);
}

/// The master dies while the union `[k2, k3]` waits for k3: k3 may lack acknowledged commits
/// and k2 is down, so nobody is elected (the old code had already switched to `[k3]`).
#[test]
fn a_standby_added_but_not_yet_in_sync_is_not_elected() {
    let mut w = World::normal(spec(ON), "k1", &["k2", "k3"]);
    set_sync(&mut w, &["k2"]);
    w.advance(1);
    w.settle();
    w.pg("k2").healthy = false;
    w.advance(5);
    w.settle();
    assert_eq!(sync_spec(&w), uids(&["k2", "k3"]));
    master_applies(&mut w, &[]);
    w.advance(1);
    w.settle();
    w.kill("k1");
    w.advance(5);
    let d = w.step();
    assert_eq!(w.master(), Some(db_of("k1").as_str()), "{:?}", d.events);
    assert!(d.events.iter().any(|e| matches!(e, Event::NoEligibleStandby { .. })), "{:?}", d.events);
}

#[test]
fn synchronous_mode_elects_only_a_synchronous_standby() {
    struct Case {
        name: &'static str,
        spec: &'static str,
        setup: fn(&mut World),
        want: Option<&'static str>,
    }
    let cases = [
        Case { name: "the synchronous standby, although behind", spec: ON, setup: |w| set_sync(w, &["k3"]), want: Some("k3") },
        Case {
            name: "maxStandbyLag is ignored: the synchronous standby's replay lags far behind",
            spec: r#"{"synchronousReplication":true,"maxStandbyLag":100}"#,
            setup: |w| {
                set_sync(w, &["k3"]);
                w.pg("k3").xlog_pos = 10;
            },
            want: Some("k3"),
        },
        Case {
            name: "two synchronous standbys: the one with the highest position wins",
            spec: r#"{"synchronousReplication":true,"maxSynchronousStandbys":2}"#,
            setup: |w| {
                set_sync(w, &["k2", "k3"]);
                w.pg("k2").xlog_pos = 995;
            },
            want: Some("k2"),
        },
        Case {
            name: "listed in the spec but not yet applied by the master: not elected",
            spec: ON,
            setup: |w| {
                set_sync(w, &["k3"]);
                w.pg("k1").synchronous_standbys.clear();
            },
            want: None,
        },
        Case {
            name: "the synchronous standby is down: nobody",
            spec: ON,
            setup: |w| {
                set_sync(w, &["k3"]);
                w.pg("k3").healthy = false;
            },
            want: None,
        },
    ];
    for case in cases {
        let mut w = World::normal(spec(case.spec), "k1", &["k2", "k3"]);
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

/// A standby the master reported in sync stays electable while it is listed, even when a later
/// report misses it (its walsender reconnecting): every commit since waited for it.
#[test]
fn a_standby_known_in_sync_stays_electable_when_a_report_misses_it() {
    let mut w = World::normal(spec(ON), "k1", &["k2", "k3"]);
    set_sync(&mut w, &["k3"]);
    w.advance(1);
    w.step();
    report_in_sync(&mut w, &[]);
    w.advance(1);
    w.step();
    assert_eq!(w.db(&db_of("k1")).status.synchronous_standbys, uids(&["k3"]));
    w.kill("k1");
    w.advance(5);
    let d = w.step();
    assert_eq!(w.master(), Some(db_of("k3").as_str()), "{:?}", d.events);
}

/// minSynchronousStandbys (as Stolon): the new master's set is the old one with itself replaced by
/// the old master, so it keeps the configured number of names (the keeper pads with a fake
/// standby when fewer are listed) instead of dropping to one copy.
#[test]
fn a_new_master_inherits_the_set_with_the_old_master_in_its_place() {
    let spec = spec(r#"{"synchronousReplication":true,"minSynchronousStandbys":2,"maxSynchronousStandbys":2}"#);
    let mut w = World::normal(spec, "k1", &["k2", "k3", "k4"]);
    set_sync(&mut w, &["k2", "k3"]);
    w.pg("k2").xlog_pos = 1010;
    w.advance(1);
    w.step();
    w.kill("k1");
    w.advance(5);
    let d = w.step();
    assert_eq!(w.master(), Some(db_of("k2").as_str()), "{:?}", d.events);
    assert_eq!(w.db(&db_of("k2")).spec.synchronous_standbys, uids(&["k1", "k3"]), "{:?}", d.events);
    assert!(w.db(&db_of("k2")).spec.synchronous_replication);
}

#[test]
fn inherited_set_replaces_the_new_master_by_the_old_one() {
    use crate::decide::sync::inherited_set;
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let rows: [(&[&str], &[&str]); 4] = [
        (&["b"], &["a"]),
        (&["b", "c"], &["a", "c"]),
        (&["c", "b"], &["a", "c"]),
        (&[], &[]),
    ];
    for (old, want) in rows {
        assert_eq!(inherited_set(&s(old), "a", "b"), s(want), "old set {old:?}, old master a, new master b");
    }
}

#[test]
fn known_in_sync_keeps_reported_members_while_listed() {
    use crate::decide::sync::known_in_sync;
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    /// (listed, known before, reported, report made on the applied spec, want)
    type Row = (&'static [&'static str], &'static [&'static str], &'static [&'static str], bool, &'static [&'static str]);
    let rows: [Row; 5] = [
        (&["a"], &[], &["a"], true, &["a"]),
        (&["a"], &["a"], &[], true, &["a"]),
        (&["b"], &["a"], &["a", "b"], true, &["b"]),
        (&["a", "b"], &["a"], &["a", "b"], false, &["a"]),
        (&["a"], &[], &["x"], true, &[]),
    ];
    for (listed, known, reported, applied, want) in rows {
        assert_eq!(known_in_sync(&s(listed), &s(known), &s(reported), applied), s(want), "{listed:?} {known:?} {reported:?} {applied}");
    }
}

/// After a failover the inherited set names the old master, whose db is gone: once the new master
/// has promoted and applied its spec, the set moves on to a standby following it, through the
/// usual path (listed first, elected only once the new master reports it in sync).
#[test]
fn after_failover_the_inherited_set_moves_on_once_the_new_master_settles() {
    let mut w = World::normal(spec(ON), "k1", &["k2", "k3"]);
    set_sync(&mut w, &["k2"]);
    w.advance(1);
    w.step();
    w.kill("k1");
    w.advance(5);
    w.step();
    assert_eq!(w.master(), Some(db_of("k2").as_str()));
    assert_eq!(w.db(&db_of("k2")).spec.synchronous_standbys, uids(&["k1"]));
    // Not settled yet (k2 has not promoted): nothing changes, however long.
    w.advance(10);
    w.settle();
    assert_eq!(w.db(&db_of("k2")).spec.synchronous_standbys, uids(&["k1"]));
    // k2 promotes and applies its spec, k3 follows it.
    w.converge("k2");
    w.converge("k3");
    w.advance(1);
    let events = w.settle();
    assert_eq!(w.db(&db_of("k2")).spec.synchronous_standbys, uids(&["k3"]), "{events:?}");
    assert!(w.db(&db_of("k2")).status.synchronous_standbys.is_empty(), "k3 is listed, not in sync yet");
}
