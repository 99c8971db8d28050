//! Timelines: a standby whose WAL forked off the master's history (diverged) is never elected,
//! never a synchronous candidate, and is dropped so its keeper copies the master again; a
//! standby simply behind on the master's history stays electable.

use super::fixtures::*;
use crate::decide::timeline;
use crate::decide::Event;
use clusterview::data::{DbInitMode, DbRole, DbStatus, TimelineHistoryEntry};

fn history(entries: &[(u32, u64)]) -> Vec<TimelineHistoryEntry> {
    entries
        .iter()
        .map(|(tl, at)| TimelineHistoryEntry { timeline_id: *tl, switch_point: *at, reason: String::new() })
        .collect()
}

fn status(timeline_id: u32, xlog_pos: u64, entries: &[(u32, u64)]) -> DbStatus {
    DbStatus { timeline_id, xlog_pos, timelines_history: history(entries), ..Default::default() }
}

#[test]
fn divergence_is_read_through_the_master_history() {
    struct Case {
        name: &'static str,
        master: DbStatus,
        standby: DbStatus,
        diverged: bool,
    }
    let cases = [
        Case { name: "same first timeline", master: status(1, 900, &[]), standby: status(1, 1200, &[]), diverged: false },
        Case {
            name: "standby on a later timeline than the master",
            master: status(1, 900, &[]),
            standby: status(2, 100, &[(1, 50)]),
            diverged: true,
        },
        Case {
            name: "behind the switch point on the parent timeline: simply lagging",
            master: status(2, 900, &[(1, 500)]),
            standby: status(1, 400, &[]),
            diverged: false,
        },
        Case {
            name: "exactly at the switch point on the parent timeline",
            master: status(2, 900, &[(1, 500)]),
            standby: status(1, 500, &[]),
            diverged: false,
        },
        Case {
            name: "past the switch point on the parent timeline",
            master: status(2, 900, &[(1, 500)]),
            standby: status(1, 501, &[]),
            diverged: true,
        },
        Case {
            name: "same timeline, same switch point",
            master: status(2, 900, &[(1, 500)]),
            standby: status(2, 800, &[(1, 500)]),
            diverged: false,
        },
        Case {
            name: "same timeline number, another branch (switch point differs)",
            master: status(2, 900, &[(1, 500)]),
            standby: status(2, 800, &[(1, 450)]),
            diverged: true,
        },
        Case {
            name: "same timeline, standby history not known: no evidence",
            master: status(2, 900, &[(1, 500)]),
            standby: status(2, 800, &[]),
            diverged: false,
        },
        Case {
            name: "grandparent timeline, behind its switch point",
            master: status(3, 900, &[(1, 300), (2, 600)]),
            standby: status(1, 300, &[]),
            diverged: false,
        },
        Case {
            name: "middle timeline past its switch point",
            master: status(3, 900, &[(1, 300), (2, 600)]),
            standby: status(2, 700, &[(1, 300)]),
            diverged: true,
        },
        Case {
            name: "a timeline that is not in the master's history",
            master: status(3, 900, &[(1, 300)]),
            standby: status(2, 200, &[(1, 100)]),
            diverged: true,
        },
        Case {
            name: "master history not known: no evidence",
            master: status(2, 900, &[]),
            standby: status(1, 800, &[]),
            diverged: false,
        },
    ];
    for case in cases {
        assert_eq!(timeline::diverged(&case.master, &case.standby), case.diverged, "{}", case.name);
    }
}

/// k1 is the master on timeline 2 (forked off timeline 1 at 500), at 1000.
fn on_timeline_2(w: &mut World) {
    let state = w.pg("k1");
    state.timeline_id = 2;
    state.timelines_history = history(&[(1, 500)]);
    let master = w.cd.dbs.get_mut(&db_of("k1")).unwrap();
    master.status.timeline_id = 2;
    master.status.timelines_history = history(&[(1, 500)]);
}

fn set_pg(w: &mut World, keeper: &str, timeline_id: u32, xlog_pos: u64, entries: &[(u32, u64)]) {
    let state = w.pg(keeper);
    state.timeline_id = timeline_id;
    state.xlog_pos = xlog_pos;
    state.timelines_history = history(entries);
}

/// Finding 2 and 6: the election compares timelines through the master's history, as Stolon.
#[test]
fn election_compares_timelines_through_the_history() {
    struct Case {
        name: &'static str,
        setup: fn(&mut World),
        want: Option<&'static str>,
    }
    let cases = [
        Case {
            name: "standby on the master's timeline",
            setup: |w| {
                set_pg(w, "k2", 2, 990, &[(1, 500)]);
                w.pg("k3").healthy = false;
            },
            want: Some("k2"),
        },
        Case {
            name: "standby still on the parent timeline, behind the switch point (no WAL of timeline 2 yet)",
            setup: |w| {
                set_pg(w, "k2", 1, 500, &[]);
                w.pg("k3").healthy = false;
            },
            want: Some("k2"),
        },
        Case {
            name: "standby past the switch point on the parent timeline is never elected, even far ahead",
            setup: |w| {
                set_pg(w, "k2", 1, 5000, &[]);
                set_pg(w, "k3", 1, 450, &[]);
            },
            want: Some("k3"),
        },
        Case {
            name: "another branch numbered 2 is never elected, even far ahead",
            setup: |w| {
                set_pg(w, "k2", 2, 5000, &[(1, 450)]);
                set_pg(w, "k3", 2, 900, &[(1, 500)]);
            },
            want: Some("k3"),
        },
    ];
    for case in cases {
        let mut w = World::normal(spec("{}"), "k1", &["k2", "k3"]);
        on_timeline_2(&mut w);
        (case.setup)(&mut w);
        w.kill("k1");
        w.advance(6);
        w.settle();
        match case.want {
            Some(k) => assert_eq!(w.master(), Some(db_of(k).as_str()), "{}", case.name),
            None => assert_eq!(w.master(), Some(db_of("k1").as_str()), "{}", case.name),
        }
    }
}

/// Finding 2: a diverged standby is dropped and its keeper given a new resync db (it rewinds or
/// copies the master again), only on fresh evidence.
#[test]
fn diverged_standby_is_dropped_and_resynced() {
    struct Case {
        name: &'static str,
        /// k3 is past the switch point on timeline 1 (diverged); this may change that.
        setup: fn(&mut World),
        dropped: bool,
    }
    let cases = [
        Case { name: "diverged, reported healthy, not streaming", setup: |_| {}, dropped: true },
        Case {
            name: "postgres not answering: its last known position is no fresh evidence",
            setup: |w| w.pg("k3").healthy = false,
            dropped: false,
        },
        Case {
            name: "its walreceiver streams from the master: it cannot have forked (a replay delay)",
            setup: |w| w.pg("k3").streaming = true,
            dropped: false,
        },
        Case { name: "keeper gone", setup: |w| w.kill("k3"), dropped: false },
        Case {
            name: "the master has not reported itself a primary at its generation yet",
            setup: |w| w.pg("k1").generation = Some(1),
            dropped: false,
        },
    ];
    for case in cases {
        let mut w = World::normal(spec("{}"), "k1", &["k2", "k3"]);
        on_timeline_2(&mut w);
        set_pg(&mut w, "k2", 2, 1000, &[(1, 500)]);
        set_pg(&mut w, "k3", 1, 600, &[]);
        w.pg("k3").streaming = false;
        (case.setup)(&mut w);
        w.advance(1);
        let d = w.step();
        let removed = Event::DbRemoved { keeper: "k3".into(), db: db_of("k3"), why: "diverged from the master's timeline" };
        assert_eq!(d.events.contains(&removed), case.dropped, "{}: {:?}", case.name, d.events);
        assert_eq!(w.cd.dbs.contains_key(&db_of("k3")), !case.dropped, "{}", case.name);
        assert!(w.cd.dbs.contains_key(&db_of("k2")), "{}: the standby on the master's timeline stays", case.name);
        if case.dropped {
            let db = w.cd.db_of_keeper("k3").unwrap();
            assert_eq!((db.spec.role, db.spec.init_mode), (DbRole::Standby, DbInitMode::Resync), "{}", case.name);
            assert_eq!(db.spec.follow_config.as_ref().and_then(|f| f.db_uid.as_deref()), Some(db_of("k1").as_str()));
            assert!(!w.db(&db_of("k1")).spec.followers.contains(&db_of("k3")), "{}", case.name);
        }
    }
}

/// Finding 2: in synchronous mode a diverged standby is never chosen, even with the highest
/// position (it could never acknowledge a commit: every write would block).
#[test]
fn diverged_standby_is_never_a_synchronous_candidate() {
    let mut w = World::normal(spec(r#"{"synchronousReplication":true}"#), "k1", &["k2", "k3"]);
    on_timeline_2(&mut w);
    // k2 is past the fork, with the highest position; its walreceiver still reports streaming
    // (so it is not dropped yet), but it can never follow timeline 2.
    set_pg(&mut w, "k2", 1, 5000, &[]);
    set_pg(&mut w, "k3", 2, 900, &[(1, 500)]);
    w.advance(1);
    for _ in 0..3 {
        w.step();
        assert_eq!(w.db(&db_of("k1")).spec.synchronous_standbys, vec![db_of("k3")]);
        w.advance(1);
    }
}
