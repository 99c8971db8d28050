//! Operational safety with real etcd, real PostgreSQL and our binaries: settings the keeper
//! manages cannot be overridden with ALTER SYSTEM, a deleted clusterdata key never wipes data, and
//! a load balancer routing on the keepers' `/primary` check never sees two primaries nor loses an
//! acknowledged write during a switchover. Failover scenarios are in `safety.rs`.

use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stolon_tests::cluster::{create_table, ids, insert_rows, wait_ids, ClusterOptions, TestCluster};
use stolon_tests::haproxy::Haproxy;
use stolon_tests::relay::Relay;
use stolon_tests::load::{http_status, keeper_ids, missing, ranges, system_id, wait_streams_from, writable_keepers, Writer};
use stolon_tests::wait_until_desc;

const BOOT: Duration = Duration::from_secs(90);
const FAILOVER: Duration = Duration::from_secs(60);

/// ALTER SYSTEM writes postgresql.auto.conf, which postgres reads after the keeper's own
/// configuration and which pg_basebackup / pg_rewind copy to every node: a setting made there
/// (synchronous_standby_names, primary_conninfo, port) would silently beat clusterdata. It must
/// fail.
#[tokio::test(flavor = "multi_thread")]
async fn alter_system_is_refused() {
    let started = Instant::now();
    let c = TestCluster::start("altersys", ClusterOptions { keepers: 1, sentinels: 1, proxies: 0, spec: json!({"initMode": "new"}) }).await;
    let m = c.wait_master(BOOT, None).await;
    let client = c.keeper_client(m).await.unwrap();
    let result = client.batch_execute("ALTER SYSTEM SET work_mem = '8MB'").await;
    let auto_conf = std::fs::read_to_string(c.keepers[m].data_dir.join("postgres/postgresql.auto.conf")).unwrap_or_default();
    eprintln!("altersys: ALTER SYSTEM gave {result:?}; took {:?}", started.elapsed());
    assert!(result.is_err(), "ALTER SYSTEM succeeded; postgresql.auto.conf now holds:\n{auto_conf}");
    assert!(!auto_conf.contains("work_mem"), "postgresql.auto.conf:\n{auto_conf}");
}

/// A running cluster with data, and a sentinel started with `--initial-cluster-spec` (as the
/// Helm chart does by default). The clusterdata key disappears (etcd restored empty, `etcdctl
/// del`, a renamed cluster): nothing may be wiped. 15 s later every keeper's data dir still has
/// the same database system (no initdb, no copy from a fresh cluster) and, where postgres
/// answers, every row.
#[tokio::test(flavor = "multi_thread")]
async fn clusterdata_key_deleted_with_data_present_wipes_nothing() {
    let started = Instant::now();
    let mut c = TestCluster::start("cdgone", ClusterOptions { keepers: 2, sentinels: 0, proxies: 0, spec: json!({"initMode": "new"}) }).await;
    let spec_path = c.dir.path().join("initial-spec.json");
    std::fs::write(&spec_path, json!({"initMode": "new"}).to_string()).unwrap();
    c.add_sentinel_with(&["--initial-cluster-spec", spec_path.to_str().unwrap()]);
    let m = c.wait_master(BOOT, None).await;
    c.wait_streaming(m, 1, BOOT).await;
    let master = c.keeper_client(m).await.unwrap();
    create_table(&master).await.unwrap();
    insert_rows(&master, 0, 50).await.unwrap();
    let want: Vec<i32> = (0..50).collect();
    wait_ids(&c, 1 - m, &want, BOOT).await;
    let before: Vec<Option<String>> = (0..2).map(|i| system_id(&c, i)).collect();
    assert!(before.iter().all(Option::is_some) && before[0] == before[1], "one database system: {before:?}");

    let mut etcd = c.etcd.client().await.unwrap();
    let deleted = etcd.delete("stolon/cluster/tc/clusterdata", None).await.unwrap();
    assert_eq!(deleted.deleted(), 1, "the clusterdata key existed");
    tokio::time::sleep(Duration::from_secs(15)).await;

    let mut problems = Vec::new();
    for (i, was) in before.iter().enumerate() {
        let now = system_id(&c, i);
        if now != *was {
            problems.push(format!("{}: database system {was:?} became {now:?}", c.keepers[i].uid));
        }
        if let Ok(client) = c.keeper_client(i).await {
            match ids(&client).await {
                Ok(got) if got == want => {}
                other => problems.push(format!("{}: rows {other:?}", c.keepers[i].uid)),
            }
        }
    }
    eprintln!("cdgone: took {:?}", started.elapsed());
    assert!(problems.is_empty(), "data wiped after the clusterdata key was deleted:\n{}\n{}", problems.join("\n"), c.logs_tail(20));
}

/// Switchovers in the haproxy test: `STOLON_TEST_SWITCHOVERS`, default 3.
fn switchovers() -> usize {
    std::env::var("STOLON_TEST_SWITCHOVERS").ok().and_then(|v| v.parse().ok()).unwrap_or(3)
}

/// How long the deposed master's keeper reads clusterdata late in each switchover: below
/// failInterval and proxyTimeout (4 s), above a standby's read-and-promote (about 1.5 s).
const LATE_READ: Duration = Duration::from_millis(2500);

/// Keepers whose `/primary` answered 200 in one sweep, with the time since the switchover.
type Sweep = (Duration, Vec<usize>);

/// Polls every keeper's `/primary` every 50 ms until `stop`; returns the sweeps where more than
/// one answered 200, and how many sweeps ran.
async fn poll_primaries(ports: Vec<u16>, stop: Arc<AtomicBool>, t0: Instant) -> (Vec<Sweep>, usize) {
    let mut doubles = Vec::new();
    let mut sweeps = 0;
    while !stop.load(Ordering::SeqCst) {
        let mut up = Vec::new();
        for (i, port) in ports.iter().enumerate() {
            if http_status(*port, "/primary").await == 200 {
                up.push(i);
            }
        }
        sweeps += 1;
        if up.len() > 1 {
            doubles.push((t0.elapsed(), up));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (doubles, sweeps)
}

/// haproxy in front of three keepers, checking `GET /primary` on each keeper's metrics address
/// every 200 ms (one failure marks it down and cuts its sessions). A writer goes through haproxy;
/// `stolonctl failkeeper <master>` switches over, several times. No two keepers may ever answer
/// 200 on `/primary` at once (haproxy would send writes to both), and no acknowledged write may be
/// lost: a planned switchover has no reason to lose any.
///
/// Each keeper reaches etcd through its own relay, and in each switchover the deposed master's
/// relay holds its bytes for LATE_READ: its keeper learns of the switchover 2.5 s late. Keepers
/// read clusterdata on their own 1 s cadences, so the new master promoting before the old one has
/// read that it was deposed happens anyway in some switchovers (seen on the base code without the
/// relay: 2 of 5 switchovers in one run, none in another); the late read makes it every time.
#[tokio::test(flavor = "multi_thread")]
async fn failkeeper_under_writes_through_haproxy_on_primary_never_two_200() {
    let started = Instant::now();
    let mut c = TestCluster::start("haprox", ClusterOptions { keepers: 0, sentinels: 1, proxies: 0, spec: json!({"initMode": "new"}) }).await;
    let mut relays = Vec::new();
    for _ in 0..3 {
        let relay = Relay::start(c.etcd.member().client_port()).await;
        c.add_keeper_via(&[], Some(relay.url()));
        relays.push(relay);
    }
    let m = c.wait_master(BOOT, None).await;
    c.wait_streaming(m, 2, BOOT).await;
    create_table(&c.keeper_client(m).await.unwrap()).await.unwrap();
    let servers: Vec<(String, u16, u16)> = c.keepers.iter().map(|k| (k.uid.clone(), k.pg_port, k.metrics_port)).collect();
    let haproxy = Haproxy::start(&c.dir, &servers).await;
    let w = Writer::start(haproxy.port, 1);
    w.wait_more(30, BOOT).await.unwrap_or_else(|e| panic!("writer through haproxy: {e}\n{}", haproxy.guard.log_tail(20)));

    let stop = Arc::new(AtomicBool::new(false));
    let ports: Vec<u16> = c.keepers.iter().map(|k| k.metrics_port).collect();
    let t0 = Instant::now();
    let poller = tokio::spawn(poll_primaries(ports, stop.clone(), t0));
    let mut m = m;
    let mut path = vec![c.keepers[m].uid.clone()];
    for round in 1..=switchovers() {
        tokio::time::sleep(Duration::from_secs(1)).await;
        eprintln!("switchover {round} at {:?}", t0.elapsed());
        relays[m].pause();
        relays[m].resume_after(LATE_READ);
        let out = c.ctl(&["failkeeper", &c.keepers[m].uid]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let new = c.wait_master(FAILOVER, Some(m)).await;
        w.wait_more(20, FAILOVER).await.unwrap_or_else(|e| panic!("writes through haproxy after switchover {round}: {e}\n{}", haproxy.guard.log_tail(20)));
        // Until the old master is a standby again: the window where it could still answer 200.
        wait_until_desc("the old master to be a standby", FAILOVER, Duration::from_millis(250), || async {
            writable_keepers(&c).await == vec![new]
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs_tail(25)));
        wait_streams_from(&c, m, new, FAILOVER).await.unwrap_or_else(|e| panic!("{e}\n{}", c.logs_tail(25)));
        m = new;
        path.push(c.keepers[m].uid.clone());
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    let (doubles, sweeps) = poller.await.unwrap();
    let acked = w.stop().await;
    let present = keeper_ids(&c, m).await.unwrap();
    let lost = missing(&acked, &present);
    eprintln!(
        "haprox: {}, {sweeps} sweeps, {} with two 200s, {} acknowledged, {} lost ({}); took {:?}",
        path.join(" -> "),
        doubles.len(),
        acked.len(),
        lost.len(),
        ranges(&lost),
        started.elapsed()
    );
    let mut problems = Vec::new();
    if let Some((at, up)) = doubles.first() {
        let last = doubles.last().map(|d| d.0).unwrap_or_default();
        problems.push(format!("/primary answered 200 on keepers {up:?} at once, first {at:?} after the switchover, last {last:?} ({} sweeps)", doubles.len()));
    }
    if !lost.is_empty() {
        problems.push(format!("{} acknowledged writes lost on the new master: {}", lost.len(), ranges(&lost)));
    }
    assert!(problems.is_empty(), "{}\n--- haproxy:\n{}", problems.join("\n"), haproxy.guard.log_tail(30));
}
