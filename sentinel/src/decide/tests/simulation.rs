//! A whole cluster's life, simulated tick by tick: keepers converge to whatever clusterdata asks,
//! proxies apply every generation. Checks the rules compose: bootstrap, steady state, failover
//! with fencing, the old master's return.

use super::fixtures::*;
use clusterview::data::{ClusterPhase, DbInitMode, DbRole};

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
