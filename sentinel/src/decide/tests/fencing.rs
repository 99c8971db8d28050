//! The proxy fencing handshake (safety rule 2) and `enabledProxies`.

use super::fixtures::*;
use crate::decide::{Event, Memory};
use clusterview::data::DbRole;

/// k1 master, k2 standby, proxies p1 and p2 enabled; then k1 dies and the failover write fences
/// the proxies. Returns the world right after k2 was promoted (k1 fenced itself one second after
/// the failover write), with k2 converged as master.
fn fenced() -> World {
    let mut w = World::normal(spec("{}"), "k1", &["k2"]);
    w.proxies.insert("p2".into(), proxy_info("p2", Some(3)));
    w.advance(1);
    w.settle();
    assert_eq!(w.cd.proxy.spec.enabled_proxies, ["p1", "p2"]);
    assert_eq!(w.cd.proxy.generation, 4);
    w.ack_proxies();
    w.kill("k1");
    w.advance(5);
    w.step();
    assert_eq!(w.master(), Some(db_of("k2").as_str()));
    assert_eq!((w.cd.proxy.spec.master_db_uid.clone(), w.cd.proxy.generation), (None, 5));
    w.advance(1);
    w.step();
    assert_eq!(w.db(&db_of("k2")).spec.role, DbRole::Master);
    assert_eq!(w.cd.proxy.spec.master_db_uid, None);
    w.converge("k2");
    w
}

#[test]
fn new_master_is_published_only_after_every_active_proxy_acknowledged() {
    let mut w = fenced();
    w.advance(1);
    let d = w.step();
    assert_eq!(w.cd.proxy.spec.master_db_uid, None);
    assert!(d.events.contains(&Event::WaitingForProxies {
        db: db_of("k2"),
        generation: 5,
        pending: vec!["p1".into(), "p2".into()]
    }));
    w.proxies.get_mut("p1").unwrap().generation = Some(5);
    w.advance(1);
    w.step();
    assert_eq!(w.cd.proxy.spec.master_db_uid, None, "p2 has not acknowledged yet");
    w.proxies.get_mut("p2").unwrap().generation = Some(5);
    w.advance(1);
    let d = w.step();
    assert_eq!(w.cd.proxy.spec.master_db_uid.as_deref(), Some(db_of("k2").as_str()));
    assert_eq!(w.cd.proxy.spec.enabled_proxies, ["p1", "p2"]);
    assert_eq!(w.cd.proxy.generation, 6);
    assert!(d.events.contains(&Event::MasterPublished { db: db_of("k2"), enabled_proxies: vec!["p1".into(), "p2".into()] }));
}

#[test]
fn publication_after_fencing() {
    struct Case {
        name: &'static str,
        /// Runs on the fenced world (clock at the failover write).
        setup: fn(&mut World),
        /// The enabled proxies once the master is published; None: not published yet.
        want: Option<&'static [&'static str]>,
    }
    let cases = [
        Case {
            name: "all acknowledged",
            setup: |w| {
                w.ack_proxies();
                w.advance(1);
            },
            want: Some(&["p1", "p2"]),
        },
        Case {
            name: "a higher generation counts as acknowledged",
            setup: |w| {
                w.ack_proxies();
                w.proxies.get_mut("p2").unwrap().generation = Some(9);
                w.advance(1);
            },
            want: Some(&["p1", "p2"]),
        },
        Case {
            name: "one proxy has not acknowledged",
            setup: |w| {
                w.ack_proxies();
                w.proxies.get_mut("p2").unwrap().generation = Some(4);
                w.advance(1);
            },
            want: None,
        },
        Case {
            name: "silent proxy past its proxyTimeout is skipped",
            setup: |w| {
                w.frozen.insert("p2".into());
                w.ack_proxies();
                w.advance(5);
            },
            want: Some(&["p1"]),
        },
        Case {
            name: "silent proxy within its proxyTimeout is waited for",
            setup: |w| {
                w.frozen.insert("p2".into());
                w.ack_proxies();
                w.advance(3);
            },
            want: None,
        },
        Case {
            name: "a proxy advertising a longer proxyTimeout is waited for longer",
            setup: |w| {
                w.proxies.get_mut("p2").unwrap().proxy_timeout = secs(20);
                w.advance(1);
                w.frozen.insert("p2".into());
                w.ack_proxies();
                w.advance(10);
            },
            want: None,
        },
        Case {
            name: "vanished proxy may still forward until its timeout",
            setup: |w| {
                w.proxies.remove("p2");
                w.ack_proxies();
                w.advance(3);
            },
            want: None,
        },
        Case {
            name: "vanished proxy past its timeout is skipped",
            setup: |w| {
                w.proxies.remove("p2");
                w.ack_proxies();
                w.advance(5);
            },
            want: Some(&["p1"]),
        },
        Case {
            name: "new master not converged (still in recovery)",
            setup: |w| {
                w.ack_proxies();
                w.pg("k2").generation = Some(2);
                w.pg("k2").role = Some(DbRole::Standby);
                w.advance(1);
            },
            want: None,
        },
        Case {
            name: "new master promoted, a later spec change not applied yet",
            setup: |w| {
                w.ack_proxies();
                w.cd.dbs.get_mut(&db_of("k2")).unwrap().generation += 1;
                w.advance(1);
            },
            want: Some(&["p1", "p2"]),
        },
        Case {
            name: "new master unhealthy",
            setup: |w| {
                w.ack_proxies();
                w.pg("k2").healthy = false;
                w.advance(1);
            },
            want: None,
        },
        Case {
            name: "no proxies at all",
            setup: |w| {
                w.proxies.clear();
                w.advance(5);
            },
            want: Some(&[]),
        },
    ];
    for case in cases {
        let mut w = fenced();
        (case.setup)(&mut w);
        w.step();
        let published = w.cd.proxy.spec.master_db_uid.clone();
        match case.want {
            Some(enabled) => {
                assert_eq!(published.as_deref(), Some(db_of("k2").as_str()), "{}", case.name);
                assert_eq!(w.cd.proxy.spec.enabled_proxies, enabled, "{}", case.name);
                assert_eq!(w.cd.proxy.generation, 6, "{}", case.name);
            }
            None => {
                assert_eq!(published, None, "{}", case.name);
                assert_eq!(w.cd.proxy.generation, 5, "{}", case.name);
            }
        }
    }
}

#[test]
fn proxy_appearing_while_master_is_published_is_enabled() {
    let mut w = World::normal(spec("{}"), "k1", &["k2"]);
    w.proxies.insert("p9".into(), proxy_info("p9", None));
    w.advance(1);
    let d = w.step();
    assert_eq!(w.cd.proxy.spec.enabled_proxies, ["p1", "p9"]);
    assert_eq!(w.cd.proxy.spec.master_db_uid.as_deref(), Some(db_of("k1").as_str()));
    assert_eq!(w.cd.proxy.generation, 4);
    assert!(d.events.contains(&Event::EnabledProxiesChanged { added: vec!["p9".into()], removed: vec![] }));
}

#[test]
fn proxy_gone_past_its_timeout_is_no_longer_enabled() {
    let mut w = World::normal(spec("{}"), "k1", &["k2"]);
    w.proxies.insert("p2".into(), proxy_info("p2", Some(3)));
    w.advance(1);
    w.settle();
    w.proxies.remove("p2");
    w.advance(4);
    assert_eq!(w.step().next, None, "still within its timeout");
    w.advance(1);
    w.step();
    assert_eq!(w.cd.proxy.spec.enabled_proxies, ["p1"]);
}

#[test]
fn a_new_term_waits_one_proxy_timeout_before_publishing() {
    let mut w = fenced();
    // A new leader takes over right after the fencing write. p2 is cut off from the store (its
    // info is gone) and may still forward to the old master until its proxyTimeout passes.
    w.proxies.remove("p2");
    w.ack_proxies();
    w.memory = Memory::new(w.now);
    w.observe();
    w.advance(4);
    let d = w.step();
    assert_eq!(w.cd.proxy.spec.master_db_uid, None);
    assert!(d.events.contains(&Event::WaitingForNewTerm { db: db_of("k2") }), "{:?}", d.events);
    w.advance(1);
    w.step();
    assert_eq!(w.cd.proxy.spec.master_db_uid.as_deref(), Some(db_of("k2").as_str()));
    assert_eq!(w.cd.proxy.spec.enabled_proxies, ["p1"]);
}

#[test]
fn proxies_pointing_elsewhere_are_fenced_before_the_master_is_published() {
    let mut w = World::normal(spec("{}"), "k1", &["k2"]);
    // e.g. clusterdata restored by an operator: the proxies forward to a db that is not the master.
    w.cd.proxy.spec.master_db_uid = Some("db-old".into());
    let d = w.step();
    assert_eq!((w.cd.proxy.spec.master_db_uid.clone(), w.cd.proxy.generation), (None, 4), "{:?}", d.events);
    assert!(d.events.contains(&Event::ProxiesFenced { generation: 4 }));
    w.ack_proxies();
    w.advance(1);
    w.step();
    assert_eq!(w.cd.proxy.spec.master_db_uid.as_deref(), Some(db_of("k1").as_str()));
}

#[test]
fn a_master_elected_while_fenced_is_published_only_once_promoted() {
    let mut w = World::normal(spec("{}"), "k1", &["k2", "k3"]);
    w.kill("k1");
    w.advance(5);
    w.step();
    assert_eq!(w.master(), Some(db_of("k2").as_str()));
    w.converge("k3");
    w.ack_proxies();
    // The new master dies too before it was published; k3 (a converged standby) is elected.
    w.kill("k2");
    w.advance(5);
    w.step();
    assert_eq!(w.master(), Some(db_of("k3").as_str()));
    assert_eq!(w.cd.proxy.spec.master_db_uid, None, "k3 is still a standby until its keeper promotes it");
    w.converge("k3");
    w.advance(1);
    w.step();
    assert_eq!(w.cd.proxy.spec.master_db_uid.as_deref(), Some(db_of("k3").as_str()));
}
