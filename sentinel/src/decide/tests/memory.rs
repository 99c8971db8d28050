//! `observe`: liveness from changing infos, and what is remembered after an info vanished.

use super::fixtures::*;
use crate::decide::{observe, Memory};
use clusterview::data::{ClusterData, Keeper, KeeperStatus};
use std::collections::BTreeMap;

#[test]
fn keeper_changes_are_timed_by_info_uid() {
    struct Case {
        name: &'static str,
        /// infoUIDs published at t = 0, 1, 2, 3 (None: no info).
        infos: [Option<&'static str>; 4],
        changed_at: Option<u64>,
    }
    let cases = [
        Case { name: "fresh every tick", infos: [Some("a"), Some("b"), Some("c"), Some("d")], changed_at: Some(3) },
        Case { name: "frozen since t=1", infos: [Some("a"), Some("b"), Some("b"), Some("b")], changed_at: Some(1) },
        Case { name: "first seen at t=2", infos: [None, None, Some("x"), Some("x")], changed_at: Some(2) },
        Case { name: "vanished, still listed", infos: [Some("a"), Some("b"), None, None], changed_at: Some(1) },
    ];
    // clusterdata lists the keeper all along, so it is remembered after its info vanished.
    let mut cd = ClusterData::new_initializing(spec("{}"), wall());
    cd.keepers.insert(
        "k1".into(),
        Keeper { uid: "k1".into(), generation: 1, change_time: wall(), status: KeeperStatus::default() },
    );
    for case in cases {
        let mut memory = Memory::new(secs(0));
        for (t, uid) in case.infos.iter().enumerate() {
            let mut infos = BTreeMap::new();
            if let Some(uid) = uid {
                let mut info = keeper_info("k1");
                info.info_uid = uid.to_string();
                infos.insert("k1".to_string(), info);
            }
            memory = observe(&memory, Some(&cd), &infos, &BTreeMap::new(), secs(t as u64));
        }
        assert_eq!(memory.keepers.get("k1").map(|k| k.changed_at), case.changed_at.map(secs), "{}", case.name);
    }
}

#[test]
fn healthy_reports_count_only_when_fresh() {
    let cd = ClusterData::new_initializing(spec("{}"), wall());
    let mut info = keeper_info("k1");
    info.postgres_state = Some(pg_state("db1", 1));
    let infos = BTreeMap::from([("k1".to_string(), info.clone())]);
    let m = observe(&Memory::new(secs(0)), Some(&cd), &infos, &BTreeMap::new(), secs(0));
    let m = observe(&m, Some(&cd), &infos, &BTreeMap::new(), secs(3));
    assert_eq!(m.db_last_healthy("k1", "db1"), secs(0), "same infoUID: no new evidence");
    info.info_uid = "k1-i9".into();
    let infos = BTreeMap::from([("k1".to_string(), info)]);
    let m = observe(&m, Some(&cd), &infos, &BTreeMap::new(), secs(4));
    assert_eq!(m.db_last_healthy("k1", "db1"), secs(4));
    assert_eq!(m.db_last_healthy("k1", "other"), secs(0), "another db: the term's start");
}

#[test]
fn streaming_reports_are_timed_apart_from_health() {
    let cd = ClusterData::new_initializing(spec("{}"), wall());
    let mut info = keeper_info("k1");
    info.postgres_state = Some(clusterview::info::PostgresState { streaming: true, ..pg_state("db1", 1) });
    let m = observe(&Memory::new(secs(0)), Some(&cd), &BTreeMap::from([("k1".to_string(), info.clone())]), &BTreeMap::new(), secs(1));
    assert_eq!(m.db_last_streaming("k1", "db1"), secs(1));
    // Healthy but no longer streaming (walreceiver down): health moves on, streaming does not.
    info.info_uid = "k1-i2".into();
    info.postgres_state.as_mut().unwrap().streaming = false;
    let m = observe(&m, Some(&cd), &BTreeMap::from([("k1".to_string(), info.clone())]), &BTreeMap::new(), secs(5));
    assert_eq!((m.db_last_healthy("k1", "db1"), m.db_last_streaming("k1", "db1")), (secs(5), secs(1)));
    // Streaming but not healthy counts for neither.
    info.info_uid = "k1-i3".into();
    let state = info.postgres_state.as_mut().unwrap();
    (state.streaming, state.healthy) = (true, false);
    let m = observe(&m, Some(&cd), &BTreeMap::from([("k1".to_string(), info)]), &BTreeMap::new(), secs(6));
    assert_eq!(m.db_last_streaming("k1", "db1"), secs(1));
    assert_eq!(m.db_last_streaming("k1", "other"), secs(0), "another db: the term's start");
}

#[test]
fn vanished_proxy_is_remembered_until_its_timeout() {
    let cd = ClusterData::new_initializing(spec("{}"), wall());
    let proxies = BTreeMap::from([("p1".to_string(), proxy_info("p1", Some(1)))]);
    let m = observe(&Memory::new(secs(0)), Some(&cd), &BTreeMap::new(), &proxies, secs(1));
    let none = BTreeMap::new();
    let m = observe(&m, Some(&cd), &BTreeMap::new(), &none, secs(5));
    assert_eq!(m.proxy_active("p1", secs(5)), Some(true));
    let m = observe(&m, Some(&cd), &BTreeMap::new(), &none, secs(6));
    assert_eq!(m.proxy_active("p1", secs(6)), None, "forgotten once past its timeout");
}

#[test]
fn unlisted_keeper_without_info_is_forgotten() {
    let cd = ClusterData::new_initializing(spec("{}"), wall());
    let infos = BTreeMap::from([("k1".to_string(), keeper_info("k1"))]);
    let m = observe(&Memory::new(secs(0)), Some(&cd), &infos, &BTreeMap::new(), secs(0));
    assert!(m.keepers.contains_key("k1"));
    let m = observe(&m, Some(&cd), &BTreeMap::new(), &BTreeMap::new(), secs(1));
    assert!(!m.keepers.contains_key("k1"));
}
