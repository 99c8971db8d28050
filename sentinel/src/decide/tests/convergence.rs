//! `convergenceTimeout` and `syncTimeout`: a db whose keeper does not bring it to its current
//! generation in time. A standby is replaced by a new db (its keeper starts over with a fresh
//! resync); a master is failed over. The clock starts when this term first saw the db at that
//! generation, and a dead keeper's db is left alone.

use super::fixtures::*;
use crate::decide::{Event, FailReason, Memory};
use clusterview::data::{DbInitMode, DbRole};

/// Bumps `keeper`'s db to a generation its keeper has not converged to (it keeps reporting the
/// old one), as if the sentinel had just changed its spec, and lets the sentinel see it.
fn unconverge(w: &mut World, keeper: &str, init_mode: DbInitMode) {
    let db = w.cd.dbs.get_mut(&db_of(keeper)).unwrap();
    db.generation += 1;
    db.spec.init_mode = init_mode;
    w.observe();
}

struct Case {
    name: &'static str,
    spec: &'static str,
    /// What happens to the cluster "normal(k1; k2, k3)" before time passes.
    setup: fn(&mut World),
    /// Seconds that pass after the setup.
    wait: u64,
    /// Whether k2's db must have been replaced by a new one.
    k2_replaced: bool,
    /// The reason the master must have been failed over for, if it must.
    failover: Option<FailReason>,
}

#[test]
fn dbs_that_do_not_converge_in_time() {
    let cases = [
        Case {
            name: "standby re-pointed but never converged: replaced after convergenceTimeout",
            spec: r#"{"convergenceTimeout":"20s"}"#,
            setup: |w| unconverge(w, "k2", DbInitMode::None),
            wait: 21,
            k2_replaced: true,
            failover: None,
        },
        Case {
            name: "standby still within convergenceTimeout is kept",
            spec: r#"{"convergenceTimeout":"20s"}"#,
            setup: |w| unconverge(w, "k2", DbInitMode::None),
            wait: 19,
            k2_replaced: false,
            failover: None,
        },
        Case {
            name: "a resyncing standby gets syncTimeout, not convergenceTimeout",
            spec: r#"{"convergenceTimeout":"20s","syncTimeout":"60s"}"#,
            setup: |w| unconverge(w, "k2", DbInitMode::Resync),
            wait: 40,
            k2_replaced: false,
            failover: None,
        },
        Case {
            name: "a resync that outlasts syncTimeout starts over",
            spec: r#"{"convergenceTimeout":"20s","syncTimeout":"60s"}"#,
            setup: |w| unconverge(w, "k2", DbInitMode::Resync),
            wait: 61,
            k2_replaced: true,
            failover: None,
        },
        Case {
            name: "syncTimeout 0 (the default) is no limit: a resync running for hours is kept",
            spec: r#"{"convergenceTimeout":"20s"}"#,
            setup: |w| unconverge(w, "k2", DbInitMode::Resync),
            wait: 4 * 3600,
            k2_replaced: false,
            failover: None,
        },
        Case {
            name: "an explicit syncTimeout \"0s\" is no limit either (a spec migrated from Stolon)",
            spec: r#"{"convergenceTimeout":"20s","syncTimeout":"0s"}"#,
            setup: |w| unconverge(w, "k2", DbInitMode::Resync),
            wait: 120,
            k2_replaced: false,
            failover: None,
        },
        Case {
            name: "a dead keeper's unconverged db is left alone",
            spec: r#"{"convergenceTimeout":"20s"}"#,
            setup: |w| {
                unconverge(w, "k2", DbInitMode::None);
                w.kill("k2");
            },
            wait: 30,
            k2_replaced: false,
            failover: None,
        },
        Case {
            name: "a converged cluster is never touched, however long it runs",
            spec: r#"{"convergenceTimeout":"20s"}"#,
            setup: |_| {},
            wait: 120,
            k2_replaced: false,
            failover: None,
        },
        Case {
            name: "master not converged within convergenceTimeout is failed over",
            spec: r#"{"convergenceTimeout":"20s"}"#,
            setup: |w| unconverge(w, "k1", DbInitMode::None),
            wait: 21,
            k2_replaced: false,
            failover: Some(FailReason::NotConverged),
        },
        Case {
            name: "master still within convergenceTimeout stays",
            spec: r#"{"convergenceTimeout":"20s"}"#,
            setup: |w| unconverge(w, "k1", DbInitMode::None),
            wait: 19,
            k2_replaced: false,
            failover: None,
        },
    ];
    for case in cases {
        let mut w = World::normal(spec(case.spec), "k1", &["k2", "k3"]);
        (case.setup)(&mut w);
        w.advance(case.wait);
        let d = w.step();
        let k2_db = w.cd.db_of_keeper("k2").map(|db| db.uid.clone());
        if case.k2_replaced {
            let new = k2_db.unwrap_or_else(|| panic!("{}: k2 has no db; events {:?}", case.name, d.events));
            assert_ne!(new, db_of("k2"), "{}: k2 kept its db; events {:?}", case.name, d.events);
            let db = w.db(&new);
            assert_eq!((db.spec.role, db.spec.init_mode), (DbRole::Standby, DbInitMode::Resync), "{}", case.name);
            assert!(
                d.events.iter().any(|e| matches!(e, Event::DbRemoved { keeper, why, .. } if keeper == "k2" && why.starts_with("not converged"))),
                "{}: {:?}",
                case.name,
                d.events
            );
        } else if w.master_keeper() != Some("k2") {
            assert_eq!(k2_db.as_deref(), Some(db_of("k2").as_str()), "{}: events {:?}", case.name, d.events);
        }
        let failover = d.events.iter().find_map(|e| match e {
            Event::Failover { reason, old_keeper, .. } if old_keeper == "k1" => Some(*reason),
            _ => None,
        });
        assert_eq!(failover, case.failover, "{}: events {:?}", case.name, d.events);
        if case.failover.is_none() {
            assert_eq!(w.master_keeper(), Some("k1"), "{}", case.name);
        }
    }
}

#[test]
fn a_new_term_gives_a_full_convergence_timeout() {
    // The db stopped converging long before this sentinel became leader; the new leader counts
    // from its own first sight of that generation.
    let mut w = World::normal(spec(r#"{"convergenceTimeout":"20s"}"#), "k1", &["k2", "k3"]);
    unconverge(&mut w, "k2", DbInitMode::None);
    w.advance(100);
    w.memory = Memory::new(w.now);
    w.observe();
    w.advance(19);
    let d = w.step();
    assert_eq!(w.cd.db_of_keeper("k2").map(|db| db.uid.clone()), Some(db_of("k2")), "events {:?}", d.events);
    w.advance(2);
    let d = w.step();
    assert_ne!(w.cd.db_of_keeper("k2").map(|db| db.uid.clone()), Some(db_of("k2")), "events {:?}", d.events);
}

#[test]
fn a_replaced_standby_that_converges_stays() {
    let mut w = World::normal(spec(r#"{"convergenceTimeout":"20s"}"#), "k1", &["k2", "k3"]);
    unconverge(&mut w, "k2", DbInitMode::None);
    w.advance(21);
    w.settle();
    let new = w.cd.db_of_keeper("k2").unwrap().uid.clone();
    assert_ne!(new, db_of("k2"));
    w.converge("k2");
    w.advance(60);
    w.settle();
    assert_eq!(w.cd.db_of_keeper("k2").unwrap().uid, new, "a converged db is not replaced again");
}
