//! Tests of `desired::target`: what a keeper derives from clusterdata.

use super::*;
use crate::args::{AuthMethod, Secret};
use clusterview::data::{Db, DbInitMode, DbSpec, DbStatus, FollowConfig};
use clusterview::info::PgVersion;
use std::path::PathBuf;

pub(crate) fn config(uid: &str) -> KeeperConfig {
    KeeperConfig {
        uid: uid.into(),
        data_dir: PathBuf::from("/srv/k"),
        pgdata: PathBuf::from("/srv/k/postgres"),
        pgpass: PathBuf::from("/srv/k/pgpass"),
        listen_address: "10.0.0.9".into(),
        port: 5432,
        advertise_address: "10.0.0.9".into(),
        advertise_port: 5432,
        bin_dir: PathBuf::from("/usr/lib/postgresql/15/bin"),
        pg_version: PgVersion { major: 15, minor: 8 },
        su_username: "postgres".into(),
        su_password: Some(Secret::new("supw".into())),
        repl_username: "repl".into(),
        repl_password: Some(Secret::new("replpw".into())),
        su_auth: AuthMethod::Md5,
        repl_auth: AuthMethod::Md5,
        can_be_master: true,
        can_be_synchronous_replica: true,
        allow_reinit: false,
        boot_uuid: "boot-k".into(),
    }
}

fn db(uid: &str, keeper: &str, role: DbRole, follow: Option<&str>, addr: Option<&str>) -> Db {
    Db {
        uid: uid.into(),
        generation: 2,
        change_time: chrono::Utc::now(),
        spec: DbSpec {
            keeper_uid: keeper.into(),
            role,
            init_mode: DbInitMode::None,
            follow_config: follow.map(|f| FollowConfig { kind: FollowType::Internal, db_uid: Some(f.into()) }),
            followers: vec![],
            synchronous_replication: false,
            synchronous_standbys: vec![],
        },
        status: DbStatus {
            listen_address: addr.map(str::to_string),
            port: addr.map(|_| 5433),
            system_id: Some("7000".into()),
            ..Default::default()
        },
    }
}

pub(crate) fn cluster(spec: &str) -> ClusterData {
    let spec = ClusterSpec::parse_valid(spec).unwrap();
    let mut cd = ClusterData::new_initializing(spec, chrono::Utc::now());
    let mut m = db("db1", "k1", DbRole::Master, None, Some("10.0.0.1"));
    m.spec.followers = vec!["db2".into(), "BAD uid".into()];
    m.spec.synchronous_replication = true;
    m.spec.synchronous_standbys = vec!["db2".into()];
    cd.dbs.insert("db1".into(), m);
    cd.dbs.insert("db2".into(), db("db2", "k2", DbRole::Standby, Some("db1"), Some("10.0.0.2")));
    cd.dbs.insert("db3".into(), db("db3", "k3", DbRole::Standby, Some("dbX"), None));
    cd.cluster.status.master = Some("db1".into());
    cd
}

/// `minSynchronousStandbys` is enforced in the master's synchronous_standby_names: with fewer
/// listed standbys a fake one pads the list (every listed name must confirm, and the fake never
/// does, so commits wait until enough real standbys are listed); with 0 the master may commit
/// alone when it has no synchronous standby.
#[test]
fn master_sync_names_honour_min_synchronous_standbys() {
    let rows: [(&str, &[&str], &str); 5] = [
        (r#"{"initMode":"new"}"#, &["db2"], "1 (stolon_db2)"),
        (r#"{"initMode":"new","minSynchronousStandbys":2,"maxSynchronousStandbys":2}"#, &["db2"], "2 (stolon_db2, stolonfakestandby)"),
        (r#"{"initMode":"new","minSynchronousStandbys":2,"maxSynchronousStandbys":2}"#, &["db2", "db3"], "2 (stolon_db2, stolon_db3)"),
        (r#"{"initMode":"new"}"#, &[], "1 (stolonfakestandby)"),
        (r#"{"initMode":"new","minSynchronousStandbys":0}"#, &[], ""),
    ];
    for (spec, set, want) in rows {
        let mut cd = cluster(spec);
        cd.dbs.get_mut("db1").unwrap().spec.synchronous_standbys = set.iter().map(|s| s.to_string()).collect();
        let t = target(&cd, &config("k1"), None);
        let line = format!("synchronous_standby_names = '{want}'");
        assert!(t.stolon_conf.contains(&line), "{spec} {set:?}: want {line}\n{}", t.stolon_conf);
    }
}

#[test]
fn master_keeps_follower_slots_and_sync_names() {
    let cd = cluster(r#"{"initMode":"new","additionalMasterReplicationSlots":["backup"]}"#);
    let t = target(&cd, &config("k1"), None);
    let db = t.desired.db.as_ref().unwrap();
    assert_eq!(db.role, DbRole::Master);
    assert_eq!(db.slots.iter().map(String::as_str).collect::<Vec<_>>(), vec!["backup", "stolon_db2"]);
    assert!(crate::http::elects(&cd, "k1"));
    assert!(t.source.is_none());
    assert!(t.stolon_conf.contains("synchronous_standby_names = '1 (stolon_db2)'"), "{}", t.stolon_conf);
    assert!(t.stolon_conf.contains("primary_conninfo = ''"));
    assert!(t.stolon_conf.contains("max_replication_slots = '21'"));
    assert!(t.stolon_conf.contains("max_wal_senders = '45'"));
    assert!(t.stolon_conf.contains("unix_socket_directories = '/srv/k'"));
}

#[test]
fn sync_master_waits_for_its_spec_standbys_with_a_restricted_hba() {
    let cd = cluster(r#"{"initMode":"new","pgHBA":["host all app 10.1.0.0/16 md5"]}"#);
    let t = target(&cd, &config("k1"), None);
    let db = t.desired.db.as_ref().unwrap();
    assert_eq!(db.sync_standbys, Some(BTreeSet::from(["db2".to_string()])));
    assert!(t.pg_hba.contains("host all app") && !t.pg_hba_restricted.contains("host all app"), "{}", t.pg_hba_restricted);
    assert_ne!(t.desired.conf_hash, t.desired.restricted_conf_hash);
    assert_eq!(t.desired.restricted_conf_hash, conf::config_hash(&t.stolon_conf, &t.pg_hba_restricted, true));
    // Standbys, and masters without synchronous replication, wait for nobody.
    assert_eq!(target(&cd, &config("k2"), None).desired.db.unwrap().sync_standbys, None);
    let mut cd = cd;
    cd.dbs.get_mut("db1").unwrap().spec.synchronous_replication = false;
    assert_eq!(target(&cd, &config("k1"), None).desired.db.unwrap().sync_standbys, None);
}

#[test]
fn standby_follows_its_db_through_status_address() {
    let cd = cluster(r#"{"initMode":"new"}"#);
    let t = target(&cd, &config("k2"), None);
    let src = t.source.as_ref().unwrap();
    assert_eq!(src.describe, "10.0.0.1:5433");
    assert!(src.repl_conninfo.contains("host='10.0.0.1' port='5433' user='repl' application_name='stolon_db2' passfile='/srv/k/pgpass'"), "{}", src.repl_conninfo);
    assert!(src.su_conninfo.as_ref().unwrap().contains("user='postgres' dbname='postgres'"));
    assert!(t.stolon_conf.contains("primary_slot_name = 'stolon_db2'"));
    assert!(t.stolon_conf.contains("application_name=''stolon_db2''"), "{}", t.stolon_conf);
    assert!(t.stolon_conf.contains("synchronous_standby_names = ''"));
    assert!(!crate::http::elects(&cd, "k2"));
    let db = t.desired.db.as_ref().unwrap();
    assert_eq!(db.source, Some(Source { system_id: Some("7000".into()), can_rewind: true }));
    assert!(db.slots.is_empty());
    // Secrets never reach the configuration.
    for text in [&t.stolon_conf, &t.pg_hba, &src.repl_conninfo] {
        assert!(!text.contains("replpw") && !text.contains("supw"));
    }
}

#[test]
fn no_passfile_without_password() {
    let cd = cluster(r#"{"initMode":"new"}"#);
    let mut cfg = config("k2");
    cfg.repl_password = None;
    cfg.repl_auth = AuthMethod::Trust;
    let t = target(&cd, &cfg, None);
    assert!(!t.source.unwrap().repl_conninfo.contains("passfile"));
}

#[test]
fn followed_db_without_address_gives_no_source() {
    let cd = cluster(r#"{"initMode":"new"}"#);
    let t = target(&cd, &config("k3"), None);
    assert!(t.source.is_none());
    assert_eq!(t.desired.db.as_ref().unwrap().source, None);
}

#[test]
fn records_the_cluster_uid_and_passes_allow_reinit() {
    let cd = cluster(r#"{"initMode":"new"}"#);
    let t = target(&cd, &config("k1"), None);
    assert_eq!(t.desired.cluster_uid, cd.cluster.uid);
    assert!(!t.desired.allow_reinit);
    let mut cfg = config("k1");
    cfg.allow_reinit = true;
    assert!(target(&cd, &cfg, None).desired.allow_reinit);
}

#[test]
fn boot_uuid_recorded_only_when_clusterdata_has_this_process_s() {
    let mut cd = cluster(r#"{"initMode":"new"}"#);
    // Not registered by the sentinel yet.
    assert!(!target(&cd, &config("k1"), None).desired.boot_recorded);
    let keeper = |boot: &str| clusterview::data::Keeper {
        uid: "k1".into(),
        generation: 1,
        change_time: chrono::Utc::now(),
        status: clusterview::data::KeeperStatus { boot_uuid: Some(boot.into()), ..Default::default() },
    };
    cd.keepers.insert("k1".into(), keeper("boot-of-the-previous-process"));
    assert!(!target(&cd, &config("k1"), None).desired.boot_recorded);
    cd.keepers.insert("k1".into(), keeper("boot-k"));
    assert!(target(&cd, &config("k1"), None).desired.boot_recorded);
}

#[test]
fn keeper_without_db() {
    let cd = cluster(r#"{"initMode":"new","usePgrewind":false,"automaticPgRestart":true}"#);
    let t = target(&cd, &config("k9"), Some(&DbState { db_uid: "old".into(), generation: Some(1), cluster_uid: None, init_pending: false }));
    assert!(t.desired.db.is_none());
    assert!(!t.desired.use_pgrewind);
    assert!(t.desired.automatic_pg_restart);
    assert!(t.desired.reload_applies_conninfo);
    assert_eq!(t.desired.recorded.as_ref().unwrap().db_uid, "old");
}

#[test]
fn strict_access_lists_keeper_addresses() {
    let cd = cluster(r#"{"initMode":"new","defaultSUReplAccessMode":"strict","pgHBA":[]}"#);
    let t = target(&cd, &config("k1"), None);
    assert!(t.pg_hba.contains("10.0.0.1/32") && t.pg_hba.contains("10.0.0.2/32"), "{}", t.pg_hba);
    assert!(!t.pg_hba.contains("0.0.0.0/0"), "{}", t.pg_hba);
}

#[test]
fn conf_hash_follows_the_spec() {
    let a = target(&cluster(r#"{"initMode":"new"}"#), &config("k1"), None);
    let b = target(&cluster(r#"{"initMode":"new","pgParameters":{"work_mem":"8MB"}}"#), &config("k1"), None);
    assert_ne!(a.desired.conf_hash, b.desired.conf_hash);
    let again = target(&cluster(r#"{"initMode":"new"}"#), &config("k1"), None);
    assert_eq!(a.desired.conf_hash, again.desired.conf_hash);
}

#[test]
fn timing_and_ttl() {
    let t = Timing::from_spec(&ClusterSpec::parse_valid(r#"{"initMode":"new","sleepInterval":"2s","failInterval":"5s"}"#).unwrap());
    assert_eq!(t.info_ttl(), Duration::from_secs(6));
    let t = Timing::from_spec(&ClusterSpec::parse_valid(r#"{"initMode":"new","sleepInterval":"1s","failInterval":"10s"}"#).unwrap());
    assert_eq!(t.info_ttl(), Duration::from_secs(10));
}

#[test]
fn a_master_db_that_is_not_the_cluster_master_is_deposed() {
    let mut cd = cluster(r#"{"initMode":"new"}"#);
    let t = target(&cd, &config("k1"), None);
    assert!(!t.desired.db.as_ref().unwrap().deposed);
    // The sentinel elected db2 and kept db1 (role master) as a candidate.
    cd.cluster.status.master = Some("db2".into());
    let t = target(&cd, &config("k1"), None);
    let db = t.desired.db.as_ref().unwrap();
    assert_eq!((db.role, db.deposed), (DbRole::Master, true));
    assert!(!crate::http::elects(&cd, "k1"));
    // No master at all (e.g. an init that timed out): deposed as well.
    cd.cluster.status.master = None;
    assert!(target(&cd, &config("k1"), None).desired.db.unwrap().deposed);
    // A standby is never deposed.
    assert!(!target(&cd, &config("k2"), None).desired.db.unwrap().deposed);
}
