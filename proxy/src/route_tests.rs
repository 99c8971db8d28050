//! Table tests of the routing rules.

use super::*;
use chrono::Utc;
use clusterview::data::*;
use clusterview::info::PostgresState;
use clusterview::ClusterSpec;

fn db(uid: &str, keeper: &str, role: DbRole, port: u16) -> Db {
    Db {
        uid: uid.into(),
        generation: 1,
        change_time: Utc::now(),
        spec: DbSpec {
            keeper_uid: keeper.into(),
            role,
            init_mode: DbInitMode::None,
            follow_config: None,
            followers: vec![],
            synchronous_replication: false,
            synchronous_standbys: vec![],
        },
        status: DbStatus { healthy: true, listen_address: Some("127.0.0.1".into()), port: Some(port), ..Default::default() },
    }
}

fn info(keeper: &str, db: &str, role: DbRole, pos: u64, streaming: bool) -> KeeperInfo {
    KeeperInfo {
        info_uid: "i".into(),
        uid: keeper.into(),
        cluster_uid: None,
        boot_uuid: "b".into(),
        postgres_binary_version: None,
        pg_listen_address: "127.0.0.1".into(),
        pg_port: 1,
        can_be_master: None,
        can_be_synchronous_replica: None,
        data_dir_missing: false,
        postgres_state: Some(PostgresState {
            db_uid: Some(db.into()),
            healthy: true,
            role: Some(role),
            xlog_pos: pos,
            streaming,
            ..Default::default()
        }),
    }
}

fn cluster() -> ClusterData {
    let mut cd = ClusterData::new_initializing(ClusterSpec::parse_valid(r#"{"initMode":"new","maxStandbyLag":100}"#).unwrap(), Utc::now());
    cd.cluster.status = ClusterStatus { phase: ClusterPhase::Normal, master: Some("m".into()) };
    cd.dbs.insert("m".into(), db("m", "k0", DbRole::Master, 5000));
    cd.dbs.insert("s1".into(), db("s1", "k1", DbRole::Standby, 5001));
    cd.dbs.insert("s2".into(), db("s2", "k2", DbRole::Standby, 5002));
    cd.proxy.spec = ProxySpec { master_db_uid: Some("m".into()), enabled_proxies: vec!["p1".into()] };
    cd
}

fn infos(entries: &[KeeperInfo]) -> BTreeMap<String, KeeperInfo> {
    entries.iter().map(|i| (i.uid.clone(), i.clone())).collect()
}

#[test]
fn rw_routes_only_enabled_proxies_to_published_master() {
    let cd = cluster();
    assert_eq!(rw_target(&cd, "p1"), Some(Backend { db_uid: "m".into(), address: "127.0.0.1:5000".into() }));
    assert_eq!(rw_target(&cd, "p2"), None, "not enabled");
    let mut fenced = cd.clone();
    fenced.proxy.spec.master_db_uid = None;
    assert_eq!(rw_target(&fenced, "p1"), None, "no master published");
    let mut unknown = cd.clone();
    unknown.proxy.spec.master_db_uid = Some("gone".into());
    assert_eq!(rw_target(&unknown, "p1"), None, "master db missing");
    let mut no_addr = cd.clone();
    no_addr.dbs.get_mut("m").unwrap().status.port = None;
    assert_eq!(rw_target(&no_addr, "p1"), None, "master without address");
    let mut v6 = cd;
    v6.dbs.get_mut("m").unwrap().status.listen_address = Some("::1".into());
    assert_eq!(rw_target(&v6, "p1").unwrap().address, "[::1]:5000");
}

#[test]
fn ro_picks_streaming_standbys_within_lag() {
    let cd = cluster();
    let cases: Vec<(Vec<KeeperInfo>, Vec<&str>)> = vec![
        (vec![info("k0", "m", DbRole::Master, 1000, false), info("k1", "s1", DbRole::Standby, 990, true), info("k2", "s2", DbRole::Standby, 1000, true)], vec!["s1", "s2"]),
        // s1 lags 200 > 100.
        (vec![info("k0", "m", DbRole::Master, 1000, false), info("k1", "s1", DbRole::Standby, 800, true), info("k2", "s2", DbRole::Standby, 1000, true)], vec!["s2"]),
        // s2 not streaming.
        (vec![info("k0", "m", DbRole::Master, 1000, false), info("k1", "s1", DbRole::Standby, 1000, true), info("k2", "s2", DbRole::Standby, 1000, false)], vec!["s1"]),
        // s2's keeper reports it is a master (promoted, not yet in clusterdata): never a reader.
        (vec![info("k0", "m", DbRole::Master, 1000, false), info("k1", "s1", DbRole::Standby, 1000, true), info("k2", "s2", DbRole::Master, 1000, true)], vec!["s1"]),
        // s1's keeper reports another db uid (resyncing).
        (vec![info("k0", "m", DbRole::Master, 1000, false), info("k1", "old", DbRole::Standby, 1000, true)], vec![]),
        // No infos at all: nobody.
        (vec![], vec![]),
    ];
    for (i, (keeper_infos, want)) in cases.into_iter().enumerate() {
        let got: Vec<String> = ro_targets(&cd, &infos(&keeper_infos)).into_iter().map(|b| b.db_uid).collect();
        assert_eq!(got, want, "case {i}");
    }
    let mut sick = cd.clone();
    sick.dbs.get_mut("s1").unwrap().status.healthy = false;
    let all = infos(&[info("k0", "m", DbRole::Master, 1000, false), info("k1", "s1", DbRole::Standby, 1000, true)]);
    assert!(ro_targets(&sick, &all).is_empty(), "sentinel says unhealthy");
}
