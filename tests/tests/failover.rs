//! Keeper + sentinel scenarios with real etcd, real PostgreSQL and our binaries. Each one asserts
//! on data as well as roles: rows acknowledged before a fault are there after it.

use serde_json::json;
use std::time::Duration;
use stolon_tests::cluster::{create_table, ids, insert_rows, wait_ids, ClusterOptions, TestCluster};
use stolon_tests::postgres::{query_i64, query_string};
use stolon_tests::wait_until_desc;

const BOOT: Duration = Duration::from_secs(90);
const FAILOVER: Duration = Duration::from_secs(60);

fn opts(keepers: usize, sentinels: usize, spec: serde_json::Value) -> ClusterOptions {
    ClusterOptions { keepers, sentinels, proxies: 0, spec }
}

/// Keeper indexes other than `master`.
fn others(c: &TestCluster, master: usize) -> Vec<usize> {
    (0..c.keepers.len()).filter(|i| *i != master).collect()
}

/// Number of keepers whose postgres answers and is not in recovery.
async fn writable_count(c: &TestCluster) -> usize {
    let mut n = 0;
    for i in 0..c.keepers.len() {
        if let Ok(client) = c.keeper_client(i).await {
            if let Ok(0) = query_i64(&client, "SELECT pg_is_in_recovery()::int::bigint").await {
                n += 1;
            }
        }
    }
    n
}

/// A three-keeper cluster with rows 0..100 replicated everywhere.
async fn three_keepers(label: &str, spec: serde_json::Value, sentinels: usize) -> (TestCluster, usize, Vec<i32>) {
    let c = TestCluster::start(label, opts(3, sentinels, spec)).await;
    let m = c.wait_master(BOOT, None).await;
    c.wait_streaming(m, 2, BOOT).await;
    let client = c.keeper_client(m).await.unwrap();
    create_table(&client).await.unwrap();
    insert_rows(&client, 0, 100).await.unwrap();
    let want: Vec<i32> = (0..100).collect();
    for i in others(&c, m) {
        wait_ids(&c, i, &want, BOOT).await;
    }
    (c, m, want)
}

#[tokio::test(flavor = "multi_thread")]
async fn bootstrap_single_keeper() {
    let c = TestCluster::start("boot1", opts(1, 1, json!({"initMode": "new"}))).await;
    let m = c.wait_master(BOOT, None).await;
    let client = c.keeper_client(m).await.unwrap();
    create_table(&client).await.unwrap();
    insert_rows(&client, 0, 10).await.unwrap();
    assert_eq!(ids(&client).await.unwrap(), (0..10).collect::<Vec<_>>());
    // The keeper runs the PostgreSQL under test (STOLON_TEST_PG_BIN), not whatever is on PATH.
    let version = query_i64(&client, "SELECT current_setting('server_version_num')::bigint").await.unwrap();
    assert_eq!(version / 10000, i64::from(stolon_tests::postgres::pg_major_version()));
    // The sentinel leaves the init phase once the db reports healthy at its generation.
    let status = wait_until_desc("phase normal", BOOT, Duration::from_millis(200), || async {
        c.status().filter(|s| s["cluster"]["phase"] == "normal")
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs_tail(25)));
    assert_eq!(status["keepers"][0]["role"], "master");
    assert_eq!(status["keepers"][0]["pg_healthy"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn three_keepers_two_sentinels_stream_and_replicate() {
    let (c, m, want) = three_keepers("boot3", json!({"initMode": "new"}), 2).await;
    for i in others(&c, m) {
        let client = c.keeper_client(i).await.unwrap();
        assert_eq!(query_i64(&client, "SELECT pg_is_in_recovery()::int::bigint").await.unwrap(), 1);
        assert_eq!(ids(&client).await.unwrap(), want);
    }
    let status = c.status().unwrap();
    let leaders = status["sentinels"].as_array().unwrap().iter().filter(|s| s["leader"] == true).count();
    assert_eq!(leaders, 1, "{status}");
    assert_eq!(writable_count(&c).await, 1);
}

/// The keeper's log since its last (re)start: the harness appends every start to one file,
/// each behind a "===== starting" header.
fn log_since_last_start(c: &TestCluster, i: usize) -> String {
    let Some(guard) = c.keepers[i].guard.as_ref() else { return String::new() };
    let text = std::fs::read_to_string(guard.log_path()).unwrap_or_default();
    text.rsplit("===== starting").next().unwrap_or_default().to_string()
}

/// How the rejoining keeper `i` got its data dir back since its last start.
fn rejoin_methods(c: &TestCluster, i: usize) -> (bool, bool) {
    let log = log_since_last_start(c, i);
    (log.contains("rewinding the data dir with pg_rewind"), log.contains("copying the data dir with pg_basebackup"))
}

#[tokio::test(flavor = "multi_thread")]
async fn kill9_master_promotes_a_standby_and_the_other_follows() {
    let (mut c, old, want) = three_keepers("kill9", json!({"initMode": "new"}), 1).await;
    c.kill_keeper(old);
    let new = c.wait_master(FAILOVER, Some(old)).await;
    let client = c.keeper_client(new).await.unwrap();
    assert_eq!(ids(&client).await.unwrap(), want, "rows written before the kill");
    // The remaining standby follows the new master: new rows reach it.
    insert_rows(&client, 100, 120).await.unwrap();
    let want: Vec<i32> = (0..120).collect();
    let other = others(&c, new).into_iter().find(|i| *i != old).unwrap();
    wait_ids(&c, other, &want, FAILOVER).await;

    // The old master, restarted, rejoins as a standby (pg_rewind is on by default) and catches up.
    c.start_keeper(old);
    wait_ids(&c, old, &want, FAILOVER).await;
    let client = c.keeper_client(old).await.unwrap();
    assert_eq!(query_i64(&client, "SELECT pg_is_in_recovery()::int::bigint").await.unwrap(), 1);
    assert_eq!(writable_count(&c).await, 1, "exactly one master");
    // It came back by pg_rewind, not by the full copy that would also give these rows.
    assert_eq!(rejoin_methods(&c, old), (true, false), "(rewound, copied)\n{}", log_since_last_start(&c, old));
}

/// A second failover soon after the first: the remaining standby follows timeline 2 but has
/// not done a restartpoint on it yet, and its walreceiver is down once the second master dies.
/// It reports the timeline it replays (2), so it is elected (it reported pg_control's 1 and was
/// never elected).
#[tokio::test(flavor = "multi_thread")]
async fn a_second_failover_elects_the_standby_that_follows_timeline_2() {
    let (mut c, first, _) = three_keepers("tli2", json!({"initMode": "new"}), 1).await;
    c.kill_keeper(first);
    let second = c.wait_master(FAILOVER, Some(first)).await;
    let client = c.keeper_client(second).await.unwrap();
    insert_rows(&client, 100, 120).await.unwrap();
    let want: Vec<i32> = (0..120).collect();
    let last = others(&c, second).into_iter().find(|i| *i != first).unwrap();
    wait_ids(&c, last, &want, FAILOVER).await;
    let standby = c.keeper_client(last).await.unwrap();
    let checkpoint_tli = query_i64(&standby, "SELECT timeline_id::bigint FROM pg_control_checkpoint()").await.unwrap();
    assert_eq!(checkpoint_tli, 1, "the scenario needs no restartpoint on timeline 2 yet");
    drop(standby);

    c.kill_keeper(second);
    assert_eq!(c.wait_master(FAILOVER, Some(second)).await, last);
    let client = c.keeper_client(last).await.unwrap();
    assert_eq!(ids(&client).await.unwrap(), want, "rows written on timeline 2");
}

#[tokio::test(flavor = "multi_thread")]
async fn old_master_rejoins_by_full_resync_without_pg_rewind() {
    let (mut c, old, _) = three_keepers("resync", json!({"initMode": "new", "usePgrewind": false}), 1).await;
    c.kill_keeper(old);
    let new = c.wait_master(FAILOVER, Some(old)).await;
    let client = c.keeper_client(new).await.unwrap();
    insert_rows(&client, 100, 110).await.unwrap();
    c.start_keeper(old);
    wait_ids(&c, old, &(0..110).collect::<Vec<_>>(), FAILOVER).await;
    assert_eq!(writable_count(&c).await, 1);
    assert_eq!(rejoin_methods(&c, old), (false, true), "(rewound, copied)\n{}", log_since_last_start(&c, old));
}

#[tokio::test(flavor = "multi_thread")]
async fn frozen_master_is_replaced_and_never_comes_back_as_a_second_master() {
    let (c, old, want) = three_keepers("freeze", json!({"initMode": "new"}), 1).await;
    c.freeze_keeper(old);
    let new = c.wait_master(FAILOVER, Some(old)).await;
    let client = c.keeper_client(new).await.unwrap();
    assert_eq!(ids(&client).await.unwrap(), want);
    insert_rows(&client, 100, 105).await.unwrap();
    c.thaw_keeper(old);
    // The old master must turn into a standby of the new one.
    let want: Vec<i32> = (0..105).collect();
    wait_ids(&c, old, &want, FAILOVER).await;
    wait_until_desc("old master in recovery", FAILOVER, Duration::from_millis(250), || async {
        let client = c.keeper_client(old).await.ok()?;
        (query_i64(&client, "SELECT pg_is_in_recovery()::int::bigint").await.ok()? == 1).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs_tail(25)));
    assert_eq!(writable_count(&c).await, 1);
    let status = c.status().unwrap();
    assert_eq!(status["cluster"]["master_keeper_uid"], c.keepers[new].uid.as_str());
}

/// Sends `sig` (`STOP`, `CONT`) to a standby's walreceiver process.
async fn signal_walreceiver(client: &tokio_postgres::Client, sig: &str) {
    let pid = query_i64(client, "SELECT pid::bigint FROM pg_stat_wal_receiver").await.unwrap();
    let status = std::process::Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().unwrap();
    assert!(status.success(), "kill -{sig} {pid}");
}

#[tokio::test(flavor = "multi_thread")]
async fn standby_lagging_beyond_max_standby_lag_is_not_elected() {
    let c = TestCluster::start("lag", opts(2, 1, json!({"initMode": "new", "maxStandbyLag": 65536}))).await;
    let m = c.wait_master(BOOT, None).await;
    c.wait_streaming(m, 1, BOOT).await;
    let s = others(&c, m)[0];
    // Freeze the standby's walreceiver: it stops receiving (its postgres and keeper stay
    // healthy), then write far more than maxStandbyLag on the master.
    let standby = c.keeper_client(s).await.unwrap();
    signal_walreceiver(&standby, "STOP").await;
    let master = c.keeper_client(m).await.unwrap();
    master.batch_execute("CREATE TABLE big AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 20000) g").await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut c = c;
    c.kill_keeper(m);
    // Well past failInterval: the lagging standby must still be in recovery and not elected.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let client = c.keeper_client(s).await.unwrap();
    assert_eq!(query_i64(&client, "SELECT pg_is_in_recovery()::int::bigint").await.unwrap(), 1);
    let status = c.status().unwrap();
    assert_ne!(status["cluster"]["master_keeper_uid"], c.keepers[s].uid.as_str(), "{status}");
    signal_walreceiver(&standby, "CONT").await;
}

/// A standby whose *replay* is paused but which has received every WAL record is as good as
/// any: a promotion replays what it received. It is ranked by received WAL, so it is elected
/// within maxStandbyLag and comes up with every row (it used to be ranked by its replay
/// position and passed over).
#[tokio::test(flavor = "multi_thread")]
async fn standby_with_paused_replay_is_ranked_by_received_wal_and_elected_with_every_row() {
    let c = TestCluster::start("replay", opts(2, 1, json!({"initMode": "new", "maxStandbyLag": 65536}))).await;
    let m = c.wait_master(BOOT, None).await;
    c.wait_streaming(m, 1, BOOT).await;
    let s = others(&c, m)[0];
    let standby = c.keeper_client(s).await.unwrap();
    standby.batch_execute("SELECT pg_wal_replay_pause()").await.unwrap();
    let master = c.keeper_client(m).await.unwrap();
    master.batch_execute("CREATE TABLE big AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 20000) g").await.unwrap();
    let written = query_string(&master, "SELECT pg_current_wal_lsn()::text").await.unwrap();
    let received = format!("SELECT pg_last_wal_receive_lsn() >= '{written}'::pg_lsn");
    wait_until_desc("the standby receives all WAL", FAILOVER, Duration::from_millis(200), || async {
        standby.query_one(&received, &[]).await.is_ok_and(|row| row.get::<_, bool>(0))
    })
    .await
    .unwrap();
    let replayed: bool = standby.query_one(&format!("SELECT pg_last_wal_replay_lsn() < '{written}'::pg_lsn"), &[]).await.unwrap().get(0);
    assert!(replayed, "replay is paused behind what was received");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut c = c;
    c.kill_keeper(m);
    assert_eq!(c.wait_master(FAILOVER, Some(m)).await, s);
    let client = c.keeper_client(s).await.unwrap();
    assert_eq!(query_i64(&client, "SELECT count(*) FROM big").await.unwrap(), 20000);
}

#[tokio::test(flavor = "multi_thread")]
async fn keeper_with_wiped_data_dir_resyncs_instead_of_becoming_a_master() {
    let c = TestCluster::start("wipe", opts(2, 1, json!({"initMode": "new"}))).await;
    let m = c.wait_master(BOOT, None).await;
    c.wait_streaming(m, 1, BOOT).await;
    let client = c.keeper_client(m).await.unwrap();
    create_table(&client).await.unwrap();
    insert_rows(&client, 0, 50).await.unwrap();
    let s = others(&c, m)[0];
    let want: Vec<i32> = (0..50).collect();
    wait_ids(&c, s, &want, BOOT).await;

    let mut c = c;
    c.kill_keeper(s);
    std::fs::remove_dir_all(c.keepers[s].data_dir.join("postgres")).unwrap();
    c.start_keeper(s);
    // It comes back as a standby with the master's rows, never as a fresh master.
    wait_ids(&c, s, &want, BOOT).await;
    let standby = c.keeper_client(s).await.unwrap();
    assert_eq!(query_i64(&standby, "SELECT pg_is_in_recovery()::int::bigint").await.unwrap(), 1);
    assert_eq!(writable_count(&c).await, 1);
    let status = c.status().unwrap();
    assert_eq!(status["cluster"]["master_keeper_uid"], c.keepers[m].uid.as_str());

    // Now the master's data dir is wiped: it must not initdb an empty master; the standby, which
    // has every row, takes over, and the old master comes back as its standby.
    c.kill_keeper(m);
    std::fs::remove_dir_all(c.keepers[m].data_dir.join("postgres")).unwrap();
    c.start_keeper(m);
    assert_eq!(c.wait_master(FAILOVER, Some(m)).await, s);
    let client = c.keeper_client(s).await.unwrap();
    assert_eq!(ids(&client).await.unwrap(), want);
    wait_ids(&c, m, &want, FAILOVER).await;
    assert_eq!(writable_count(&c).await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn stolonctl_failkeeper_fails_the_master_over() {
    let (c, old, want) = three_keepers("failk", json!({"initMode": "new"}), 1).await;
    let out = c.ctl(&["failkeeper", &c.keepers[old].uid]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let new = c.wait_master(FAILOVER, Some(old)).await;
    let client = c.keeper_client(new).await.unwrap();
    assert_eq!(ids(&client).await.unwrap(), want);
    // The old master becomes a standby of the new one.
    insert_rows(&client, 100, 101).await.unwrap();
    wait_ids(&c, old, &(0..101).collect::<Vec<_>>(), FAILOVER).await;
    assert_eq!(writable_count(&c).await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_sentinel_leader_hands_over_without_a_failover() {
    let c = TestCluster::start("sentk", opts(2, 2, json!({"initMode": "new"}))).await;
    let m = c.wait_master(BOOT, None).await;
    c.wait_streaming(m, 1, BOOT).await;
    let status = c.status().unwrap();
    let leader = status["sentinels"].as_array().unwrap().iter().find(|s| s["leader"] == true).unwrap()["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let idx: usize = leader.trim_start_matches("sentinel").parse().unwrap();
    let mut c = c;
    c.kill_sentinel(idx);
    let other = format!("sentinel{}", 1 - idx);
    wait_until_desc("the other sentinel to lead", FAILOVER, Duration::from_millis(250), || async {
        let status = c.status()?;
        status["sentinels"].as_array()?.iter().any(|s| s["uid"] == other.as_str() && s["leader"] == true).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs_tail(25)));
    // Give the new leader time to (wrongly) act, then check nothing moved.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(c.wait_master(FAILOVER, None).await, m, "no failover on a sentinel change");
    c.wait_streaming(m, 1, FAILOVER).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn master_restarted_on_a_new_port_is_followed_without_failover() {
    let (mut c, m, want) = three_keepers("newport", json!({"initMode": "new", "failInterval": "20s"}), 1).await;
    if let Some(mut g) = c.keepers[m].guard.take() {
        g.terminate(Duration::from_secs(30));
    }
    c.keepers[m].pg_port = stolon_tests::free_port();
    c.start_keeper(m);
    assert_eq!(c.wait_master(FAILOVER, None).await, m, "same master");
    c.wait_streaming(m, 2, FAILOVER).await;
    let client = c.keeper_client(m).await.unwrap();
    insert_rows(&client, 100, 110).await.unwrap();
    let want: Vec<i32> = want.into_iter().chain(100..110).collect();
    for i in others(&c, m) {
        wait_ids(&c, i, &want, FAILOVER).await;
    }
}
