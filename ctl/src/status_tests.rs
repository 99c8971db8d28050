//! Tests of the status view: roles, availability, lag, listing of inactive keepers.

use super::*;
use chrono::Utc;
use clusterview::data::*;
use clusterview::info::PostgresState;
use clusterview::ClusterSpec;

fn db(uid: &str, keeper: &str, role: DbRole, follows: Option<&str>, healthy: bool, pos: u64) -> Db {
    Db {
        uid: uid.into(),
        generation: 2,
        change_time: Utc::now(),
        spec: DbSpec {
            keeper_uid: keeper.into(),
            role,
            init_mode: DbInitMode::None,
            follow_config: follows.map(|f| FollowConfig { kind: FollowType::Internal, db_uid: Some(f.into()) }),
            followers: vec![],
            synchronous_replication: false,
            synchronous_standbys: vec![],
        },
        status: DbStatus { healthy, current_generation: Some(2), xlog_pos: pos, ..Default::default() },
    }
}

fn keeper(uid: &str, healthy: bool) -> Keeper {
    Keeper { uid: uid.into(), generation: 1, change_time: Utc::now(), status: KeeperStatus { healthy, ..Default::default() } }
}

fn info(uid: &str, port: u16, pos: u64) -> KeeperInfo {
    KeeperInfo {
        info_uid: "i".into(),
        uid: uid.into(),
        cluster_uid: None,
        boot_uuid: "b".into(),
        postgres_binary_version: None,
        pg_listen_address: "127.0.0.1".into(),
        pg_port: port,
        can_be_master: None,
        can_be_synchronous_replica: None,
        data_dir_missing: false,
        postgres_state: Some(PostgresState { healthy: true, xlog_pos: pos, ..Default::default() }),
    }
}

fn cluster(master_healthy: bool) -> ClusterData {
    let mut cd = ClusterData::new_initializing(ClusterSpec::parse_valid(r#"{"initMode":"new"}"#).unwrap(), Utc::now());
    cd.cluster.status = ClusterStatus { phase: ClusterPhase::Normal, master: Some("db0".into()) };
    cd.keepers.insert("k0".into(), keeper("k0", true));
    cd.keepers.insert("k1".into(), keeper("k1", true));
    cd.dbs.insert("db0".into(), db("db0", "k0", DbRole::Master, None, master_healthy, 1000));
    cd.dbs.insert("db1".into(), db("db1", "k1", DbRole::Standby, Some("db0"), true, 900));
    cd.proxy.spec.master_db_uid = Some("db0".into());
    cd
}

#[test]
fn master_standby_lag_and_leader() {
    let cd = cluster(true);
    let infos = BTreeMap::from([("k0".to_string(), info("k0", 5000, 5000)), ("k1".to_string(), info("k1", 5001, 4000))]);
    let sentinels = BTreeMap::from([
        ("s1".to_string(), SentinelInfo { info_uid: "x".into(), uid: "s1".into(), version: String::new() }),
        ("s2".to_string(), SentinelInfo { info_uid: "y".into(), uid: "s2".into(), version: String::new() }),
    ]);
    let st = build(&cd, &infos, &sentinels, &BTreeMap::new(), Some("s2"));
    assert!(st.cluster.available);
    assert_eq!(st.cluster.master_keeper_uid.as_deref(), Some("k0"));
    assert_eq!(st.sentinels, vec![SentinelView { uid: "s1".into(), leader: false }, SentinelView { uid: "s2".into(), leader: true }]);
    let k0 = &st.keepers[0];
    assert_eq!((k0.role.as_str(), k0.lag), ("master", None));
    assert_eq!(k0.listen_address.as_deref(), Some("127.0.0.1:5000"));
    let k1 = &st.keepers[1];
    assert_eq!((k1.role.as_str(), k1.lag, k1.follows.as_deref()), ("standby", Some(1000), Some("k0")));
    let text = render_text(&st);
    assert!(text.contains("* k0"), "{text}");
    assert!(text.contains("available: yes"), "{text}");
}

#[test]
fn unhealthy_master_is_not_available_and_unknown_keepers_are_listed() {
    let cd = cluster(false);
    let infos = BTreeMap::from([("k9".to_string(), info("k9", 5009, 0))]);
    let st = build(&cd, &infos, &BTreeMap::new(), &BTreeMap::new(), None);
    assert!(!st.cluster.available);
    let uids: Vec<&str> = st.keepers.iter().map(|k| k.uid.as_str()).collect();
    assert_eq!(uids, vec!["k0", "k1", "k9"]);
    let k9 = &st.keepers[2];
    assert_eq!((k9.role.as_str(), k9.healthy, k9.active), ("none", false, true));
    assert!(!st.keepers[0].active);
}

#[test]
fn json_has_the_documented_shape() {
    let st = build(&cluster(true), &BTreeMap::new(), &BTreeMap::new(), &BTreeMap::new(), None);
    let v = serde_json::to_value(&st).unwrap();
    for key in ["uid", "listen_address", "healthy", "pg_healthy", "pg_wanted_generation", "pg_current_generation"] {
        assert!(v["keepers"][0].get(key).is_some(), "keepers[].{key}");
    }
    for key in ["available", "master_keeper_uid", "master_db_uid"] {
        assert!(v["cluster"].get(key).is_some(), "cluster.{key}");
    }
    assert!(v["sentinels"].is_array() && v["proxies"].is_array());
}
