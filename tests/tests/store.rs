//! The etcd store against a real etcd: CAS, create-if-absent, lease-backed infos, election
//! hand-over when the leader's process is killed, watch, corrupt data, a 3-member cluster.

use chrono::Utc;
use clusterview::info::{KeeperInfo, PostgresState, SentinelInfo};
use clusterview::store::{Expect, InfoKind, InfoPublisher, StoreError};
use clusterview::{ClusterData, ClusterSpec, Store};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;
use stolon_tests::{bin_path, wait_until_desc, ChildGuard, Etcd, EtcdCluster, TestDir};


fn sample() -> ClusterData {
    ClusterData::new_initializing(ClusterSpec::parse_valid(r#"{"initMode":"new"}"#).unwrap(), Utc::now())
}

#[tokio::test(flavor = "multi_thread")]
async fn cas_write_detects_concurrent_change() {
    let dir = TestDir::new("cas");
    let etcd = Etcd::start_single(&dir).await;
    let store = Store::connect(&stolon_tests::store_config(&etcd.endpoints(), "c1")).await.unwrap();
    assert!(store.get_cluster_data().await.unwrap().is_none());

    let first = sample();
    let rev1 = store.put_cluster_data(&first, Expect::Absent).await.unwrap();
    // create-if-absent refuses a second creation.
    assert!(matches!(store.put_cluster_data(&sample(), Expect::Absent).await, Err(StoreError::Conflict)));

    let read = store.get_cluster_data().await.unwrap().unwrap();
    assert_eq!(read.revision, rev1);
    assert_eq!(read.value, first);

    let mut second = read.value.clone();
    second.cluster.generation += 1;
    let rev2 = store.put_cluster_data(&second, Expect::Revision(rev1)).await.unwrap();
    assert!(rev2 > rev1);

    // A writer holding the old revision loses, and writes nothing.
    let mut stale = read.value.clone();
    stale.cluster.generation = 99;
    assert!(matches!(store.put_cluster_data(&stale, Expect::Revision(rev1)).await, Err(StoreError::Conflict)));
    let now = store.get_cluster_data().await.unwrap().unwrap();
    assert_eq!(now.revision, rev2);
    assert_eq!(now.value.cluster.generation, second.cluster.generation);

    // Another cluster name is another key space.
    let other = Store::connect(&stolon_tests::store_config(&etcd.endpoints(), "c2")).await.unwrap();
    assert!(other.get_cluster_data().await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_clusterdata_is_reported_not_misread() {
    let dir = TestDir::new("corrupt");
    let etcd = Etcd::start_single(&dir).await;
    let store = Store::connect(&stolon_tests::store_config(&etcd.endpoints(), "c1")).await.unwrap();
    let mut client = etcd.client().await.unwrap();
    client.put(store.keys().cluster_data(), "{not json", None).await.unwrap();
    assert!(matches!(store.get_cluster_data().await, Err(StoreError::Data(_))));
    let raw = store.get_cluster_data_raw().await.unwrap().unwrap();
    assert_eq!(raw.value, b"{not json");
}

#[tokio::test(flavor = "multi_thread")]
async fn info_disappears_when_its_lease_expires() {
    let dir = TestDir::new("lease");
    let etcd = Etcd::start_single(&dir).await;
    let store = Store::connect(&stolon_tests::store_config(&etcd.endpoints(), "c1")).await.unwrap();
    let info = |n: u32| SentinelInfo { info_uid: format!("i{n}"), uid: "s1".into(), version: String::new() };
    let mut publisher = InfoPublisher::new(&store, InfoKind::Sentinel, "s1", Duration::from_secs(2));

    // Publishing more often than the TTL keeps the info alive well past one TTL.
    for n in 0..8 {
        publisher.publish(&info(n)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let infos: BTreeMap<String, SentinelInfo> = store.list_infos(InfoKind::Sentinel).await.unwrap();
    assert_eq!(infos.get("s1").map(|i| i.info_uid.as_str()), Some("i7"));

    // Once publishing stops, the lease expires and the info is gone.
    drop(publisher);
    wait_until_desc("sentinel info to expire", Duration::from_secs(15), Duration::from_millis(200), || async {
        let infos: BTreeMap<String, SentinelInfo> = store.list_infos(InfoKind::Sentinel).await.unwrap();
        infos.is_empty()
    })
    .await
    .unwrap();

    // withdraw removes at once.
    let mut publisher = InfoPublisher::new(&store, InfoKind::Sentinel, "s2", Duration::from_secs(30));
    publisher.publish(&info(1)).await.unwrap();
    assert_eq!(store.list_infos::<SentinelInfo>(InfoKind::Sentinel).await.unwrap().len(), 1);
    publisher.withdraw().await.unwrap();
    assert!(store.list_infos::<SentinelInfo>(InfoKind::Sentinel).await.unwrap().is_empty());
}

fn campaigner(dir: &TestDir, endpoints: &str, uid: &str) -> ChildGuard {
    let mut cmd = Command::new(bin_path("stolon-test-campaigner"));
    cmd.args([endpoints, "c1", uid, "2"]);
    ChildGuard::spawn(uid, &mut cmd, &dir.log_path(uid))
}

#[tokio::test(flavor = "multi_thread")]
async fn election_hands_over_when_the_leader_process_is_killed() {
    let dir = TestDir::new("elect");
    let etcd = Etcd::start_single(&dir).await;
    let store = Store::connect(&stolon_tests::store_config(&etcd.endpoints(), "c1")).await.unwrap();
    assert_eq!(store.leader().await.unwrap(), None, "nobody campaigns yet");

    let mut a = campaigner(&dir, &etcd.endpoints(), "sa");
    let first = wait_until_desc("a leader", Duration::from_secs(15), Duration::from_millis(100), || async {
        store.leader().await.ok().flatten()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", a.log_tail(20)));
    assert_eq!(first, "sa");
    let mut b = campaigner(&dir, &etcd.endpoints(), "sb");
    // b must not take over while a is alive.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(store.leader().await.unwrap().as_deref(), Some("sa"));
    assert!(!b.log_tail(50).contains("LEADER"), "{}", b.log_tail(50));

    a.kill9();
    let next = wait_until_desc("leadership to move to sb", Duration::from_secs(15), Duration::from_millis(100), || async {
        store.leader().await.ok().flatten().filter(|l| l == "sb")
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", b.log_tail(20)));
    assert_eq!(next, "sb");
    wait_until_desc("sb to know it leads", Duration::from_secs(5), Duration::from_millis(100), || async {
        b.log_tail(50).contains("LEADER sb")
    })
    .await
    .unwrap();
    b.kill9();
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_sees_every_clusterdata_update() {
    let dir = TestDir::new("watch");
    let etcd = Etcd::start_single(&dir).await;
    let store = Store::connect(&stolon_tests::store_config(&etcd.endpoints(), "c1")).await.unwrap();
    let mut watch = store.watch_cluster_data(0).await.unwrap();

    let mut cd = sample();
    let rev = store.put_cluster_data(&cd, Expect::Absent).await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(5), watch.next()).await.unwrap().unwrap().unwrap();
    assert_eq!((seen.revision, &seen.value), (rev, &cd));

    cd.cluster.generation = 7;
    let rev2 = store.put_cluster_data(&cd, Expect::Revision(rev)).await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(5), watch.next()).await.unwrap().unwrap().unwrap();
    assert_eq!((seen.revision, seen.value.cluster.generation), (rev2, 7));

    // A watch started after a known revision replays nothing older.
    let mut late = store.watch_cluster_data(rev2).await.unwrap();
    assert!(tokio::time::timeout(Duration::from_millis(500), late.next()).await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn three_member_cluster_survives_one_member_loss() {
    let dir = TestDir::new("etcd3");
    let mut etcd = EtcdCluster::start(&dir, 3).await;
    let store = Store::connect(&stolon_tests::store_config(&etcd.endpoints(), "c1")).await.unwrap();
    let rev = store.put_cluster_data(&sample(), Expect::Absent).await.unwrap();
    etcd.kill_member(0);
    // Losing a member (maybe the raft leader) may fail requests until a new leader is elected:
    // components retry on their next tick, and so does this test, within a bound.
    let cd = wait_until_desc("a read after member loss", Duration::from_secs(15), Duration::from_millis(200), || async {
        store.get_cluster_data().await
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(cd.revision, rev);
    // Once the survivors have a leader, no request may fail: the client balances over all three
    // endpoints, the dead one included, and the store must try another member instead of
    // failing (as it did in CI: "tcp connect error" to the killed member).
    let mut next = cd.value.clone();
    let mut rev = rev;
    for round in 0..30 {
        next.cluster.generation += 1;
        rev = store
            .put_cluster_data(&next, Expect::Revision(rev))
            .await
            .unwrap_or_else(|e| panic!("write {round} with one member down: {e}"));
        let read = store.get_cluster_data().await.unwrap_or_else(|e| panic!("read {round} with one member down: {e}"));
        assert_eq!(read.map(|v| v.value.cluster.generation), Some(next.cluster.generation));
        store.ping().await.unwrap_or_else(|e| panic!("ping {round} with one member down: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_store_fails_fast_with_a_clear_error() {
    let port = stolon_tests::free_port();
    let mut cfg = stolon_tests::store_config(&format!("http://127.0.0.1:{port}"), "c1");
    cfg.timeout = Duration::from_secs(1);
    let store = Store::connect(&cfg).await.unwrap();
    let started = std::time::Instant::now();
    let err = store.get_cluster_data().await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(matches!(err, StoreError::Timeout { .. } | StoreError::Request { .. }), "{err}");
    assert!(err.to_string().contains(&port.to_string()), "{err}");
}

/// A keeper info reporting existing data (a db uid and a system id), as a keeper whose cluster
/// lost its clusterdata key publishes.
fn keeper_with_data(uid: &str) -> KeeperInfo {
    KeeperInfo {
        info_uid: format!("{uid}-i"),
        uid: uid.into(),
        cluster_uid: Some("old-cluster".into()),
        boot_uuid: "b".into(),
        postgres_binary_version: None,
        pg_listen_address: "127.0.0.1".into(),
        pg_port: 5432,
        can_be_master: Some(true),
        can_be_synchronous_replica: Some(true),
        data_dir_missing: false,
        postgres_state: Some(PostgresState { db_uid: Some("olddb".into()), system_id: Some("7351234567890123456".into()), ..Default::default() }),
    }
}

/// `stolon-sentinel --initial-cluster-spec FILE`: a malformed file is refused before anything is
/// written; a valid one creates clusterdata when there is none *and no keeper reports existing
/// data* (a lost or renamed clusterdata key must never turn into an empty cluster by itself), and
/// never replaces existing clusterdata (a second sentinel with another spec changes nothing).
#[tokio::test(flavor = "multi_thread")]
async fn sentinel_initial_cluster_spec_creates_clusterdata_only_when_absent() {
    let dir = TestDir::new("initspec");
    let etcd = Etcd::start_single(&dir).await;
    let ep = etcd.endpoints();
    let sentinel = |name: &str, spec: &std::path::Path| {
        let mut cmd = Command::new(bin_path(stolon_tests::SENTINEL));
        cmd.args(["--cluster-name", "c1", "--store-endpoints", &ep, "--uid", name, "--initial-cluster-spec"]).arg(spec);
        ChildGuard::spawn(name, &mut cmd, &dir.log_path(name))
    };

    // Malformed: refused at start, naming the file and the field; nothing written.
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"initMode":"new","failInterval":"-1s"}"#).unwrap();
    let mut s0 = sentinel("s0", &bad);
    let status = s0.wait_exit(Duration::from_secs(20)).expect("a sentinel with a bad spec exits");
    assert!(!status.success());
    let log = s0.log_tail(20);
    assert!(log.contains("bad.json") && log.contains("failInterval"), "{log}");
    let store = Store::connect(&stolon_tests::store_config(&ep, "c1")).await.unwrap();
    assert!(store.get_cluster_data_raw().await.unwrap().is_none(), "nothing written");

    // Valid, but a keeper reports data of a cluster whose clusterdata is gone (etcd lost, or
    // the cluster renamed): nothing is created, and the log says what to do, every tick.
    let good = dir.path().join("good.json");
    std::fs::write(&good, r#"{"initMode":"new","failInterval":"7s"}"#).unwrap();
    let mut keeper = InfoPublisher::new(&store, InfoKind::Keeper, "k-old", Duration::from_secs(30));
    keeper.publish(&keeper_with_data("k-old")).await.unwrap();
    let s1 = sentinel("s1", &good);
    wait_until_desc("the sentinel to refuse initializing", Duration::from_secs(20), Duration::from_millis(200), || async {
        (s1.log_tail(50).matches("stolonctl init").count() >= 2).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", s1.log_tail(30)));
    assert!(s1.log_tail(50).contains("k-old"), "the log names the keeper\n{}", s1.log_tail(30));
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(store.get_cluster_data_raw().await.unwrap().is_none(), "clusterdata created over existing data\n{}", s1.log_tail(30));

    // The keeper with data is gone (its info withdrawn): the leader creates clusterdata with
    // exactly that spec.
    keeper.withdraw().await.unwrap();
    let cd = wait_until_desc("clusterdata from --initial-cluster-spec", Duration::from_secs(20), Duration::from_millis(200), || async {
        store.get_cluster_data().await.ok().flatten()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", s1.log_tail(30)));
    assert_eq!(cd.value.cluster.spec.fail_interval(), Duration::from_secs(7));
    let uid = cd.value.cluster.uid.clone();

    // Another sentinel with another spec: the existing cluster stays as it is.
    let other = dir.path().join("other.json");
    std::fs::write(&other, r#"{"initMode":"new","failInterval":"9s"}"#).unwrap();
    drop(s1);
    let s2 = sentinel("s2", &other);
    // Killed, s1 leaves its election key until its lease expires; then s2 leads.
    wait_until_desc("the second sentinel to lead", Duration::from_secs(30), Duration::from_millis(200), || async {
        s2.log_tail(50).contains("elected sentinel leader").then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", s2.log_tail(30)));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let now = store.get_cluster_data().await.unwrap().unwrap();
    assert_eq!(now.value.cluster.uid, uid, "clusterdata replaced\n{}", s2.log_tail(30));
    assert_eq!(now.value.cluster.spec.fail_interval(), Duration::from_secs(7));
}

/// A clusterdata write by a sentinel carries its election in the same transaction: once its
/// election key is gone (lease expired while it was frozen, another sentinel elected), its
/// write fails as `NotLeader` and changes nothing, even with the right clusterdata revision.
#[tokio::test(flavor = "multi_thread")]
async fn a_stale_leader_cannot_write_clusterdata() {
    let dir = TestDir::new("staleleader");
    let etcd = Etcd::start_single(&dir).await;
    let store = Store::connect(&stolon_tests::store_config(&etcd.endpoints(), "c1")).await.unwrap();
    let leadership = store.campaign("s1", Duration::from_secs(5)).elect().await.unwrap();
    let first = sample();
    let rev = store.put_cluster_data_as_leader(&first, Expect::Absent, &leadership).await.unwrap();
    let mut next = first.clone();
    next.cluster.generation += 1;
    let rev = store.put_cluster_data_as_leader(&next, Expect::Revision(rev), &leadership).await.unwrap();
    // A stale revision is still a plain conflict.
    assert!(matches!(store.put_cluster_data_as_leader(&next, Expect::Revision(rev - 1), &leadership).await, Err(StoreError::Conflict)));

    // The election key vanishes (as when its lease expires) and another sentinel is elected.
    let mut client = etcd.client().await.unwrap();
    client.delete(store.keys().sentinel_leader(), Some(etcd_client::DeleteOptions::new().with_prefix())).await.unwrap();
    let _other = store.campaign("s2", Duration::from_secs(5)).elect().await.unwrap();
    assert_eq!(store.leader().await.unwrap().as_deref(), Some("s2"));
    let mut stale = next.clone();
    stale.cluster.generation = 99;
    let err = store.put_cluster_data_as_leader(&stale, Expect::Revision(rev), &leadership).await.unwrap_err();
    assert!(matches!(err, StoreError::NotLeader), "{err}");
    let now = store.get_cluster_data().await.unwrap().unwrap();
    assert_eq!((now.revision, now.value.cluster.generation), (rev, next.cluster.generation), "the stale leader wrote");
}
