//! The keeper against a real etcd: what `/primary` says follows clusterdata at once through
//! the watch, an unusable clusterdata ends the claim and makes the pass hold still.

use crate::desired::tests::{cluster, config};
use crate::exec::Executor;
use crate::http::{self, Shared};
use crate::keeper::{cluster_data_loop, Keeper};
use crate::sql::PgStatus;
use clusterview::store::Expect;
use clusterview::ClusterData;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stolon_tests::store::connect_store;
use stolon_tests::testdir::TestDir;
use stolon_tests::Etcd;

/// Polls `cond` until it holds, for at most `limit`.
async fn within(limit: Duration, what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn electing(keeper: &str) -> ClusterData {
    let mut cd = cluster(r#"{"initMode":"new"}"#);
    let db = if keeper == "k1" { "db1" } else { "db2" };
    cd.cluster.status.master = Some(db.into());
    for d in cd.dbs.values_mut() {
        d.spec.role = if d.uid == db { clusterview::data::DbRole::Master } else { clusterview::data::DbRole::Standby };
    }
    cd
}

#[tokio::test]
async fn primary_follows_clusterdata_through_the_watch_and_ends_on_unusable_data() {
    let dir = TestDir::new("kclaim");
    let etcd = Etcd::start_single(&dir).await;
    let store = connect_store(&etcd.endpoints(), "c1").await;
    let mut rev = store.put_cluster_data(&electing("k1"), Expect::Absent).await.unwrap();
    let shared = Shared::new(crate::desired::Timing::from_spec(&clusterview::ClusterSpec::defaults()), None);
    {
        // A sleepInterval far longer than the test: only the watch can make /primary follow.
        let mut s = shared.lock();
        s.timing.sleep_interval = Duration::from_secs(60);
        s.timing.fail_interval = Duration::from_secs(120);
        s.timing.proxy_timeout = Duration::from_secs(120);
        s.pg = Some(PgStatus::default());
        s.pg_observed_at = Some(Instant::now() + Duration::from_secs(600));
    }
    let task = tokio::spawn(cluster_data_loop(Arc::new(config("k1")), store.clone(), Arc::clone(&shared)));
    let primary = || http::is_primary(&shared.get(), Instant::now());
    within(Duration::from_secs(5), "k1 elected: /primary 200", primary).await;
    // Give the loop time to set up its watch after its first read.
    tokio::time::sleep(Duration::from_millis(500)).await;

    rev = store.put_cluster_data(&electing("k2"), Expect::Revision(rev)).await.unwrap();
    within(Duration::from_secs(2), "another master: /primary 503 at once", || !primary()).await;
    rev = store.put_cluster_data(&electing("k1"), Expect::Revision(rev)).await.unwrap();
    within(Duration::from_secs(2), "k1 elected again", primary).await;
    let read_at = shared.get().cluster_data_read_at;

    // A document this keeper cannot parse (a newer format, corrupt): no longer primary, and
    // the read does not count as a successful one.
    store.put_cluster_data_raw(br#"{"formatVersion": 99}"#.to_vec(), Expect::Revision(rev)).await.unwrap();
    within(Duration::from_secs(2), "unusable clusterdata: /primary 503", || !primary()).await;
    assert_eq!(shared.get().cluster_data_read_at, read_at, "an unusable read refreshed the claim's freshness");
    task.abort();
}

#[tokio::test]
async fn an_unusable_clusterdata_makes_the_pass_hold_still() {
    let dir = TestDir::new("khold");
    let etcd = Etcd::start_single(&dir).await;
    let store = connect_store(&etcd.endpoints(), "c1").await;
    store.put_cluster_data_raw(b"{ corrupt".to_vec(), Expect::Absent).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config("k1");
    cfg.data_dir = tmp.path().to_path_buf();
    cfg.pgdata = tmp.path().join("postgres");
    cfg.pgpass = tmp.path().join("pgpass");
    cfg.bin_dir = tmp.path().join("no-bin");
    let cfg = Arc::new(cfg);
    let shared = Shared::new(crate::desired::Timing::from_spec(&clusterview::ClusterSpec::defaults()), None);
    let mut keeper = Keeper::new(Arc::clone(&cfg), store, Arc::clone(&shared), Executor::new(Arc::clone(&cfg), None));
    // The last good copy elected k1's db (a new cluster: initdb); now the store holds garbage.
    keeper.last_cd = Some(electing("k1"));
    keeper.pass().await;
    assert!(keeper.last_plan.is_empty(), "planned from a stale copy: {:?}", keeper.last_plan);
    assert!(!tmp.path().join("postgres").exists(), "acted on a stale copy");
    assert!(shared.get().last_pass.is_some());
}
