//! Keeper data safety with real processes: a cluster data created again over keepers that hold
//! data does not wipe them (safety review §3), ALTER SYSTEM cannot override the keeper's
//! settings (§8), and a restarted synchronous master keeps clients out until its standby is in
//! sync (§14c).

use serde_json::json;
use std::time::Duration;
use stolon_tests::cluster::{create_table, ids, insert_rows, wait_ids, ClusterOptions, TestCluster};
use stolon_tests::postgres::{connect, query_i64};
use stolon_tests::wait_until_desc;

const BOOT: Duration = Duration::from_secs(90);

/// A cluster of `keepers` keepers whose master is keeper 0, with rows 0..10 on every keeper.
async fn keepers_with_rows(label: &str, keepers: usize) -> (TestCluster, Vec<i32>) {
    let c = TestCluster::start(label, ClusterOptions { keepers, sentinels: 1, proxies: 0, spec: json!({"initMode": "new"}) }).await;
    let m = c.wait_master(BOOT, None).await;
    assert_eq!(m, 0, "the sentinel initializes the lowest keeper uid");
    let client = c.keeper_client(0).await.unwrap();
    create_table(&client).await.unwrap();
    insert_rows(&client, 0, 10).await.unwrap();
    let want: Vec<i32> = (0..10).collect();
    for i in 1..keepers {
        wait_ids(&c, i, &want, BOOT).await;
    }
    (c, want)
}

/// Keeper 0's log since its last start.
fn keeper_log(c: &TestCluster) -> String {
    let Some(guard) = c.keepers[0].guard.as_ref() else { return String::new() };
    let text = std::fs::read_to_string(guard.log_path()).unwrap_or_default();
    text.rsplit("===== starting").next().unwrap_or_default().to_string()
}

async fn wait_refusal(c: &TestCluster, what: &str) {
    wait_until_desc(what, Duration::from_secs(60), Duration::from_millis(250), || async {
        let log = keeper_log(c);
        (log.contains("--allow-reinit") && log.contains("refusing to apply initMode new")).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs_tail(30)));
}

/// The cluster data is created again (as after a lost etcd with `--initial-cluster-spec`, or a
/// `stolonctl init --yes`): the keeper, picked for initMode new, refuses to initdb over its data
/// and says how to proceed. The data is recovered with initMode existing, and the standby's copy
/// of the same database rejoins the recovered cluster; only `--allow-reinit` makes the keeper
/// re-initialize, and the standby then refuses to copy the new database over the old one.
#[tokio::test(flavor = "multi_thread")]
async fn a_recreated_cluster_data_does_not_wipe_a_keeper_s_data() {
    let (mut c, want) = keepers_with_rows("reinit", 2).await;
    let init = |c: &TestCluster, spec: serde_json::Value| {
        let out = c.ctl(&["init", "--yes", &spec.to_string()]);
        assert!(out.status.success(), "stolonctl init --yes: {}", String::from_utf8_lossy(&out.stderr));
    };
    init(&c, json!({"initMode": "new"}));
    // (Postgres is stopped meanwhile: the new cluster data gives the keeper no db at first.)
    wait_refusal(&c, "the keeper to refuse initdb over its data").await;

    // Restarted: still refused, the data dir untouched.
    c.kill_keeper(0);
    c.start_keeper(0);
    wait_refusal(&c, "the restarted keeper to refuse initdb over its data dir").await;
    let pgdata = c.keepers[0].data_dir.join("postgres");
    assert!(pgdata.join("PG_VERSION").is_file() && pgdata.join("base").is_dir(), "data dir kept");

    // The way back: a cluster adopting that keeper's data. Every row is there.
    init(&c, json!({"initMode": "existing", "existingConfig": {"keeperUID": c.keepers[0].uid}}));
    c.wait_master(BOOT, None).await;
    let rows = wait_until_desc("the adopted db to answer", BOOT, Duration::from_millis(500), || async {
        let client = c.keeper_client(0).await.ok()?;
        ids(&client).await.ok()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs_tail(30)));
    assert_eq!(rows, want, "the data survived the re-created cluster data");
    // The standby's copy (same system id, recorded under the old cluster) follows as usual.
    let client = c.keeper_client(0).await.unwrap();
    insert_rows(&client, 10, 20).await.unwrap();
    let want: Vec<i32> = (0..20).collect();
    wait_ids(&c, 1, &want, BOOT).await;

    // The operator says so explicitly: re-initialized, the old rows are gone.
    init(&c, json!({"initMode": "new"}));
    wait_refusal(&c, "the keeper to refuse again").await;
    c.kill_keeper(0);
    c.keepers[0].extra_args.push("--allow-reinit".into());
    c.start_keeper(0);
    c.wait_master(BOOT, None).await;
    let gone = wait_until_desc("the new db to answer", BOOT, Duration::from_millis(500), || async {
        let client = c.keeper_client(0).await.ok()?;
        Some(ids(&client).await.is_err())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs_tail(30)));
    assert!(gone, "a new, empty database after --allow-reinit");
    // Keeper 1 is not allowed to copy that new database over its data.
    wait_until_desc("keeper 1 to refuse a copy from another database", Duration::from_secs(60), Duration::from_millis(250), || async {
        let log = c.keepers[1].guard.as_ref()?.log_tail(100);
        log.contains("refusing to apply initMode resync").then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs_tail(30)));
    // (Stopped, as a keeper with no db of the new cluster at first:) its data dir is kept.
    assert!(c.keepers[1].data_dir.join("postgres/PG_VERSION").is_file(), "keeper 1's data dir kept");
}

/// ALTER SYSTEM fails (postgresql.auto.conf is a symlink to /dev/null), so it can never override
/// a setting the keeper manages, such as synchronous_standby_names.
#[tokio::test(flavor = "multi_thread")]
async fn alter_system_fails() {
    let (c, _) = keepers_with_rows("altersystem", 1).await;
    let client = c.keeper_client(0).await.unwrap();
    let err = client.batch_execute("ALTER SYSTEM SET synchronous_standby_names = ''").await.unwrap_err();
    let text = err.as_db_error().map(|e| e.message().to_string()).unwrap_or_else(|| err.to_string());
    assert!(text.contains("postgresql.auto.conf"), "{text}");
    let auto = c.keepers[0].data_dir.join("postgres/postgresql.auto.conf");
    assert_eq!(std::fs::read_link(&auto).unwrap(), std::path::Path::new("/dev/null"));
}

/// Safety review §14c: a synchronous master that was restarted admits clients only once its
/// synchronous standby is in sync again (commits that waited for the standby when the master
/// stopped are in its WAL, and must not be read before a standby holds them). The keeper's own
/// connections and replication are let in meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_sync_master_keeps_clients_out_until_its_standby_is_in_sync() {
    // failInterval long enough for no failover and no change of synchronous standby meanwhile.
    let spec = json!({"initMode": "new", "synchronousReplication": true, "failInterval": "60s"});
    let mut c = TestCluster::start("restricted", ClusterOptions { keepers: 2, sentinels: 1, proxies: 0, spec }).await;
    let m = c.wait_master(BOOT, None).await;
    let s = 1 - m;
    c.wait_streaming(m, 1, BOOT).await;
    let su = c.keeper_client(m).await.unwrap();
    wait_until_desc("a synchronous standby", BOOT, Duration::from_millis(250), || async {
        let n = query_i64(&su, "SELECT count(*) FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum')").await.ok()?;
        (n >= 1).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs_tail(25)));
    su.batch_execute("CREATE ROLE app LOGIN PASSWORD 'app-secret'").await.unwrap();
    drop(su);
    let port = c.keepers[m].pg_port;
    let app = || connect("127.0.0.1", port, "app", Some("app-secret"), "postgres");
    app().await.expect("a client connects to the running master");

    // The standby goes away, then the master restarts (keeper and postgres killed).
    c.kill_keeper(s);
    c.kill_keeper(m);
    c.start_keeper(m);
    wait_until_desc("the restarted master to accept the superuser", BOOT, Duration::from_millis(250), || async {
        let su = c.keeper_client(m).await.ok()?;
        (query_i64(&su, "SELECT pg_is_in_recovery()::int::bigint").await.ok()? == 0).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs_tail(25)));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let err = app().await.err().unwrap_or_else(|| panic!("a client got in before the standby was in sync\n{}", c.logs_tail(25)));
    let text = err.as_db_error().map(|e| e.message().to_string()).unwrap_or_else(|| err.to_string());
    assert!(text.contains("pg_hba.conf"), "{text}");

    // The standby comes back and catches up: clients are let in.
    c.start_keeper(s);
    wait_until_desc("clients admitted again", BOOT, Duration::from_millis(500), || async { app().await.ok().map(|_| ()) })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs_tail(25)));
}
