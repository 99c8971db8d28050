//! Whole-cluster scenarios beyond a single failover: synchronous replication never loses an
//! acknowledged write, clients through the proxy during a failover, the read-only port, corrupt
//! clusterdata (proxies stop forwarding) and a frozen etcd.

use serde_json::json;
use std::time::Duration;
use stolon_tests::load::{missing, Writer};
use stolon_tests::cluster::{create_table, ids, insert_rows, wait_ids, ClusterOptions, TestCluster};
use stolon_tests::postgres::query_i64;
use stolon_tests::wait_until_desc;

const BOOT: Duration = Duration::from_secs(90);
const FAILOVER: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn synchronous_replication_never_loses_an_acknowledged_write() {
    let opts = ClusterOptions { keepers: 3, sentinels: 1, proxies: 0, spec: json!({"initMode": "new", "synchronousReplication": true}) };
    let mut c = TestCluster::start("sync", opts).await;
    let m = c.wait_master(BOOT, None).await;
    c.wait_streaming(m, 2, BOOT).await;
    let master = c.keeper_client(m).await.unwrap();
    create_table(&master).await.unwrap();
    // Writes block until a synchronous standby confirmed them.
    wait_until_desc("a synchronous standby", BOOT, Duration::from_millis(250), || async {
        let n = query_i64(&master, "SELECT count(*) FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum')").await.ok()?;
        (n >= 1).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs_tail(25)));

    let writer = Writer::start(c.keepers[m].pg_port, 1000);
    tokio::time::sleep(Duration::from_secs(3)).await;
    c.kill_keeper(m);
    let acked = writer.stop().await;
    assert!(acked.len() > 10, "the writer made progress before the kill: {}", acked.len());

    let new = c.wait_master(FAILOVER, Some(m)).await;
    let present = ids(&c.keeper_client(new).await.unwrap()).await.unwrap();
    assert_eq!(missing(&acked, &present), Vec::<i32>::new(), "acknowledged writes lost");
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_through_the_proxy_survive_a_failover_and_reads_go_to_standbys() {
    let opts = ClusterOptions { keepers: 3, sentinels: 1, proxies: 1, spec: json!({"initMode": "new"}) };
    let c = TestCluster::start("pxe2e", opts).await;
    let m = c.wait_master(BOOT, None).await;
    c.wait_streaming(m, 2, BOOT).await;
    let rw = wait_until_desc("the proxy to forward", BOOT, Duration::from_millis(250), || c.proxy_client(0))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs_tail(25)));
    create_table(&rw).await.unwrap();
    insert_rows(&rw, 0, 20).await.unwrap();
    assert_eq!(query_i64(&rw, "SELECT inet_server_port()::bigint").await.unwrap(), i64::from(c.keepers[m].pg_port));

    // Read-only port: only standbys (in recovery), spread over both.
    let standby_ports: Vec<i64> = (0..3).filter(|i| *i != m).map(|i| i64::from(c.keepers[i].pg_port)).collect();
    wait_until_desc("read-only port to serve", BOOT, Duration::from_millis(250), || c.proxy_ro_client(0)).await.unwrap();
    // Both standbys join the read-only set once the sentinel sees them streaming within
    // maxStandbyLag; from then on simultaneous connections spread over both. Reaching anything
    // but a standby fails the test at once.
    let spread = wait_until_desc("read-only connections spread over both standbys", BOOT, Duration::from_millis(500), || async {
        let mut seen = std::collections::BTreeSet::new();
        let mut held = Vec::new();
        for _ in 0..6 {
            let ro = c.proxy_ro_client(0).await.map_err(|e| e.to_string())?;
            assert_eq!(query_i64(&ro, "SELECT pg_is_in_recovery()::int::bigint").await.unwrap(), 1);
            let port = query_i64(&ro, "SELECT inet_server_port()::bigint").await.unwrap();
            assert!(standby_ports.contains(&port), "{port} is not a standby");
            seen.insert(port);
            held.push(ro);
        }
        if seen.len() == 2 { Ok(()) } else { Err(format!("only {seen:?}")) }
    })
    .await;
    spread.unwrap_or_else(|e| panic!("{e}\n{}", c.logs_tail(25)));

    // Failover while a writer goes through the proxy: the old connection is closed, writes resume
    // on the new master, and every acknowledged row is there.
    let writer = Writer::start(c.proxies[0].port, 1000);
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Freeze the master (keeper and postgres) rather than kill it: its connections stay open at
    // the TCP level, so only the proxy can close the one opened before the failover. Without
    // that, the query below would hang instead of failing.
    c.freeze_keeper(m);
    let new = c.wait_master(FAILOVER, Some(m)).await;
    let old_conn = tokio::time::timeout(Duration::from_secs(10), query_i64(&rw, "SELECT 1::bigint")).await;
    assert!(matches!(old_conn, Ok(Err(_))), "the connection to the deposed master must be closed by the proxy, got {old_conn:?}");
    let via_proxy = wait_until_desc("the proxy to reach the new master", FAILOVER, Duration::from_millis(250), || async {
        let client = c.proxy_client(0).await.map_err(|e| e.to_string())?;
        query_i64(&client, "SELECT inet_server_port()::bigint").await.map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs_tail(25)));
    assert_eq!(via_proxy, i64::from(c.keepers[new].pg_port));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let acked = writer.stop().await;
    let present = ids(&c.keeper_client(new).await.unwrap()).await.unwrap();
    // Asynchronous replication: rows acknowledged in the last instant before the kill may not
    // have reached any standby (that is what synchronousReplication is for). Rows acknowledged
    // after the failover must all be there.
    let lost = missing(&acked, &present);
    eprintln!("async failover through the proxy: {} acknowledged, {} lost in flight", acked.len(), lost.len());
    assert!(acked.len() > 10, "the writer made progress");
    let tail: Vec<i32> = acked.iter().rev().take(5).copied().collect();
    assert!(missing(&tail, &present).is_empty(), "writes after the failover are on the new master");
    assert!((0..20).all(|id| present.binary_search(&id).is_ok()), "rows written before the failover");
}

/// Corrupt clusterdata: nobody crashes and the sentinel never overwrites what it cannot read,
/// but the proxy stops forwarding (it cannot know whether the master it last knew is still the
/// elected one) and serves again once clusterdata is restored. A frozen etcd changes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn corrupt_clusterdata_stops_proxies_and_a_frozen_etcd_changes_nothing() {
    let opts = ClusterOptions { keepers: 2, sentinels: 1, proxies: 1, spec: json!({"initMode": "new"}) };
    let c = TestCluster::start("faults", opts).await;
    let m = c.wait_master(BOOT, None).await;
    c.wait_streaming(m, 1, BOOT).await;
    let s = (m + 1) % 2;
    let master = c.keeper_client(m).await.unwrap();
    create_table(&master).await.unwrap();
    insert_rows(&master, 0, 10).await.unwrap();
    let through_proxy = wait_until_desc("the proxy to forward", FAILOVER, Duration::from_millis(250), || c.proxy_client(0))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs_tail(25)));

    // Corrupt clusterdata: nobody crashes, nobody overwrites it, postgres keeps serving directly,
    // and the proxy forwards nothing: its connection is closed, new ones fail.
    let out = c.ctl(&["clusterdata", "read"]);
    let good = String::from_utf8(out.stdout).unwrap();
    let mut etcd = c.etcd.client().await.unwrap();
    let key = "stolon/cluster/tc/clusterdata";
    etcd.put(key, "{corrupt", None).await.unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let raw = etcd.get(key, None).await.unwrap();
    assert_eq!(raw.kvs()[0].value(), b"{corrupt", "the sentinel must not overwrite what it cannot read");
    assert!(query_i64(&through_proxy, "SELECT 1::bigint").await.is_err(), "the proxy kept forwarding on unreadable clusterdata");
    assert!(c.proxy_client(0).await.is_err(), "the proxy accepted a connection on unreadable clusterdata");
    insert_rows(&master, 10, 20).await.unwrap();
    for k in &c.keepers {
        assert!(k.guard.as_ref().unwrap().is_running(), "{} crashed\n{}", k.uid, c.logs_tail(20));
    }
    assert!(c.sentinels[0].as_ref().unwrap().is_running());
    assert!(c.proxies[0].guard.as_ref().unwrap().is_running());
    // An operator restores it; the cluster carries on with the same master, through the proxy too.
    etcd.put(key, good.trim(), None).await.unwrap();
    assert_eq!(c.wait_master(FAILOVER, None).await, m);
    let via_proxy = wait_until_desc("the proxy to forward again", FAILOVER, Duration::from_millis(250), || async {
        let client = c.proxy_client(0).await.map_err(|e| e.to_string())?;
        query_i64(&client, "SELECT inet_server_port()::bigint").await.map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs_tail(25)));
    assert_eq!(via_proxy, i64::from(c.keepers[m].pg_port));

    // etcd frozen for longer than failInterval: postgres keeps running as it is, and no failover
    // happens when etcd comes back.
    c.etcd.stop();
    tokio::time::sleep(Duration::from_secs(8)).await;
    insert_rows(&master, 20, 30).await.unwrap();
    c.etcd.cont();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(c.wait_master(FAILOVER, None).await, m, "no failover after an etcd outage");
    wait_ids(&c, s, &(0..30).collect::<Vec<_>>(), FAILOVER).await;
}

/// A master under full load (pgbench read-write, 8 clients, both cores busy) for several
/// failIntervals is not failed over: the keeper keeps publishing its info on its own cadence
/// however slow postgres answers, and the sentinel sees it alive. Every pgbench transaction
/// succeeds and the elected master db never changes.
#[tokio::test(flavor = "multi_thread")]
async fn a_master_under_full_load_is_not_failed_over() {
    let opts = ClusterOptions { keepers: 2, sentinels: 1, proxies: 0, spec: json!({"initMode": "new"}) };
    let c = TestCluster::start("load", opts).await;
    let m = c.wait_master(BOOT, None).await;
    c.wait_streaming(m, 1, BOOT).await;
    let master_db = |c: &TestCluster| c.status().and_then(|s| s["cluster"]["master_db_uid"].as_str().map(str::to_string));
    let before = master_db(&c).expect("a master db");
    let port = c.keepers[m].pg_port.to_string();
    let pgbench = move |args: &[&str]| {
        std::process::Command::new(stolon_tests::postgres::pg_bin("pgbench"))
            .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres"])
            .args(args)
            .arg("postgres")
            .env("PGPASSWORD", stolon_tests::cluster::SU_PASSWORD)
            .output()
            .expect("run pgbench")
    };
    let init = pgbench(&["-i", "-s", "5", "-q"]);
    assert!(init.status.success(), "pgbench -i: {}", String::from_utf8_lossy(&init.stderr));
    // 20 s is five failIntervals of the default spec.
    let run = tokio::task::spawn_blocking(move || pgbench(&["-c", "8", "-j", "2", "-T", "20"]));
    let mut seen = std::collections::BTreeSet::new();
    while !run.is_finished() {
        if let Some(db) = master_db(&c) {
            seen.insert(db);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let out = run.await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "pgbench under load failed: {}\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr), c.logs_tail(25));
    let txns: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|v| v.split('/').next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(txns > 1000, "the load ran: {txns} transactions\n{stdout}");
    assert!(!stdout.contains("number of failed transactions: ") || stdout.contains("number of failed transactions: 0 "), "{stdout}");
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![before.clone()], "the master db changed under load\n{}", c.logs_tail(25));
    // And not a moment after the load either.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(master_db(&c).as_deref(), Some(before.as_str()));
    assert_eq!(c.wait_master(FAILOVER, None).await, m);
}
