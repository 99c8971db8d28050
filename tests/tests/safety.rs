//! Safety scenarios of failover with real etcd, real PostgreSQL and our binaries, under write
//! load: repeated failovers keep electing a master, synchronous replication never loses an
//! acknowledged write (also when the synchronous standby is replaced), a diverged standby rejoins,
//! and a new master that dies before converging hands back to the old one.
//!
//! Writers go through the proxy and record every acknowledged id; the checks read the data on the
//! master (and standbys), not only the roles. Operational safety (ALTER SYSTEM, a deleted
//! clusterdata, haproxy on `/primary`) is in `safety_ops.rs`.

use serde_json::json;
use std::time::{Duration, Instant};
use stolon_tests::cluster::{create_table, insert_rows, wait_ids, ClusterOptions, TestCluster};
use stolon_tests::load::{
    db_uid, keeper_ids, master_uid, missing, ranges, replication, signal_keeper_only, spec_sync_standbys,
    wait_streams_from, wait_sync_standby, writable_keepers, Frozen, Writer,
};
use stolon_tests::wait_until_desc;

const BOOT: Duration = Duration::from_secs(90);
const FAILOVER: Duration = Duration::from_secs(60);
/// How long a standby may take to come back as a streaming standby after a restart or a repoint
/// (a pg_rewind, or a full copy of a small database, on a busy 2-core machine).
const REJOIN: Duration = Duration::from_secs(90);
/// Bound on one election of the repeated-failover test: failInterval (3 s) + a sentinel tick + a
/// promotion, with a wide margin for a loaded CI machine.
const ELECTION: Duration = Duration::from_secs(30);

fn spec(sync: bool) -> serde_json::Value {
    json!({"initMode": "new", "failInterval": "3s", "synchronousReplication": sync,
           "minSynchronousStandbys": 1, "maxSynchronousStandbys": 1})
}

async fn cluster(label: &str, keepers: usize, spec: serde_json::Value) -> (TestCluster, usize) {
    let c = TestCluster::start(label, ClusterOptions { keepers, sentinels: 1, proxies: 1, spec }).await;
    let m = c.wait_master(BOOT, None).await;
    c.wait_streaming(m, keepers as i64 - 1, BOOT).await;
    create_table(&c.keeper_client(m).await.unwrap()).await.unwrap();
    (c, m)
}

/// A writer through proxy 0 that has made progress.
async fn writer(c: &TestCluster, first: i32) -> Writer {
    let w = Writer::start(c.proxies[0].port, first);
    w.wait_more(20, BOOT).await.unwrap_or_else(|e| panic!("writer through the proxy: {e}\n{}", c.logs_tail(25)));
    w
}

/// The sentinel's log tail and `stolonctl status`, for "no master" failures.
fn sentinel_tail(c: &TestCluster) -> String {
    let status = c.ctl(&["status"]);
    let log = c.sentinels.iter().flatten().map(|g| strip_ansi(&g.log_tail(40))).collect::<Vec<_>>().join("\n");
    format!("--- stolonctl status:\n{}\n--- sentinel (last 40 lines):\n{log}", String::from_utf8_lossy(&status.stdout))
}

/// `text` without terminal colour escapes (the binaries colour their logs).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(ch) = chars.next() {
        if ch == '\u{1b}' {
            // ESC [ params m
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(ch);
        }
    }
    out
}

/// Waits until a master other than `old` is elected and writable, or panics with `what` and the
/// sentinel's log tail.
async fn elected(c: &TestCluster, old: usize, timeout: Duration, what: &str) -> usize {
    let found = wait_until_desc("a writable master", timeout, Duration::from_millis(200), || async {
        let uid = master_uid(c).ok_or("no master in clusterdata")?;
        let i = c.keeper_index(&uid);
        if i == old {
            return Err(format!("master is still {uid}"));
        }
        if writable_keepers(c).await.contains(&i) { Ok(i) } else { Err(format!("{uid} elected, not writable yet")) }
    })
    .await;
    found.unwrap_or_else(|e| panic!("{what}: {e}\n{}", sentinel_tail(c)))
}

fn rounds() -> usize {
    std::env::var("STOLON_TEST_FAILOVER_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(10)
}

/// Pause between a round's rejoin and the next kill: `STOLON_TEST_FAILOVER_SETTLE_SECS`, default
/// 6 s. Any pause far below checkpoint_timeout (5 min) keeps what makes the second failover hard
/// (standbys that have not done a restartpoint on the new timeline); 6 s keeps ten rounds under
/// about 4 minutes.
fn settle() -> Duration {
    let secs = std::env::var("STOLON_TEST_FAILOVER_SETTLE_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(6);
    Duration::from_secs(secs)
}

/// kill -9 the master (keeper and postgres) `rounds()` times in a row under writes through the
/// proxy; each time a master must be elected within ELECTION, writes must resume, and the killed
/// keeper must come back as a streaming standby of the new master before the next round. In
/// sync mode no acknowledged write may be lost at any round.
async fn repeated_failovers(label: &str, sync: bool) {
    let started = Instant::now();
    let (mut c, mut m) = cluster(label, 3, spec(sync)).await;
    if sync {
        wait_sync_standby(&c, m, BOOT).await;
    }
    let w = writer(&c, 1_000_000).await;
    let mut async_lost = Vec::new();
    for round in 1..=rounds() {
        let t = Instant::now();
        c.kill_keeper(m);
        let what = format!("round {round}: after kill -9 of master {}", c.keepers[m].uid);
        let new = elected(&c, m, ELECTION, &what).await;
        let election = t.elapsed();
        w.wait_more(10, FAILOVER).await.unwrap_or_else(|e| panic!("{what}: writes through the proxy: {e}\n{}", c.logs_tail(25)));
        let acked = w.acked();
        let present = keeper_ids(&c, new).await.unwrap();
        let lost = missing(&acked, &present);
        assert!(!sync || lost.is_empty(), "{what}: acknowledged writes lost on {}: {}", c.keepers[new].uid, ranges(&lost));
        async_lost.extend(lost.iter().filter(|id| !async_lost.contains(*id)).copied().collect::<Vec<_>>());
        c.start_keeper(m);
        wait_streams_from(&c, m, new, REJOIN).await.unwrap_or_else(|e| panic!("{what}: the old master rejoins: {e}\n{}", c.logs_tail(25)));
        c.wait_streaming(new, 2, REJOIN).await;
        if sync {
            wait_sync_standby(&c, new, REJOIN).await;
        }
        eprintln!("round {round}: {} -> {} elected in {election:?}, round took {:?}", c.keepers[m].uid, c.keepers[new].uid, t.elapsed());
        tokio::time::sleep(settle()).await;
        m = new;
    }
    let acked = w.stop().await;
    let present = keeper_ids(&c, m).await.unwrap();
    let lost = missing(&acked, &present);
    if sync {
        assert!(lost.is_empty(), "acknowledged writes lost: {}", ranges(&lost));
    }
    // Every standby ends with exactly the master's rows.
    for i in (0..3).filter(|i| *i != m) {
        wait_ids(&c, i, &present, REJOIN).await;
    }
    eprintln!("{label}: {} rounds, {} acknowledged, {} lost ({}), took {:?}", rounds(), acked.len(), lost.len(), ranges(&lost), started.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_failovers_in_a_row_elect_a_master_every_time_async() {
    repeated_failovers("tenfo-async", false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_failovers_in_a_row_elect_a_master_every_time_sync() {
    repeated_failovers("tenfo-sync", true).await;
}

/// The pid of the walsender on keeper `master` that feeds keeper `standby`.
async fn walsender_of(c: &TestCluster, master: usize, standby: usize) -> i32 {
    let app = format!("stolon_{}", db_uid(c, standby).expect("standby db uid"));
    let rows = replication(c, master).await.unwrap();
    rows.iter().find(|r| r.0 == app).map(|r| r.3).unwrap_or_else(|| panic!("no walsender {app} in {rows:?}"))
}

/// Sync mode, min = max = 1. The synchronous standby A's keeper freezes (its postgres keeps
/// streaming and acknowledging) while the async standby B is behind (its walsender is frozen, so
/// it has none of the last acknowledged commits). The sentinel may change the synchronous set; then
/// the master dies. Whoever is elected must hold every acknowledged write: B may only become
/// synchronous once it has caught up, and A must stay electable (it has everything).
///
/// A frozen walsender also never re-reads synchronous_standby_names, so the master's
/// pg_stat_replication shows B as `async` even once B is listed: this test does not cover a live
/// but lagging B, which pg_stat_replication calls `sync` as soon as it is listed and streaming.
#[tokio::test(flavor = "multi_thread")]
async fn sync_standby_replaced_under_write_load_then_master_killed_loses_nothing() {
    let started = Instant::now();
    let (mut c, m) = cluster("syncswap", 3, spec(true)).await;
    let a = wait_sync_standby(&c, m, BOOT).await;
    let b = (0..3).find(|i| *i != m && *i != a).unwrap();
    let a_db = db_uid(&c, a).unwrap();
    let w = writer(&c, 1).await;
    // B stops receiving: every commit acknowledged from now on is on the master and A only.
    let sender = walsender_of(&c, m, b).await;
    let _frozen = Frozen::stop(sender);
    w.wait_more(50, FAILOVER).await.unwrap();
    signal_keeper_only(&c, a, "STOP");
    let changed = wait_until_desc("the sentinel to change the synchronous set", Duration::from_secs(20), Duration::from_millis(200), || async {
        spec_sync_standbys(&c).filter(|set| *set != vec![a_db.clone()])
    })
    .await;
    // Let the master apply whatever was decided.
    tokio::time::sleep(Duration::from_secs(2)).await;
    eprintln!("sync set after A's keeper froze: {changed:?}; master's walsenders: {:?}", replication(&c, m).await);
    c.kill_keeper(m);
    // A's keeper comes back once the election had every chance to happen without it.
    tokio::time::sleep(Duration::from_secs(8)).await;
    signal_keeper_only(&c, a, "CONT");
    let new = elected(&c, m, FAILOVER, "after the master was killed").await;
    w.wait_more(10, FAILOVER).await.unwrap_or_else(|e| panic!("writes on the new master: {e}\n{}", c.logs_tail(25)));
    let acked = w.stop().await;
    let present = keeper_ids(&c, new).await.unwrap();
    let lost = missing(&acked, &present);
    eprintln!("syncswap: A={} B={} elected {}; {} acknowledged, took {:?}", c.keepers[a].uid, c.keepers[b].uid, c.keepers[new].uid, acked.len(), started.elapsed());
    assert!(lost.is_empty(), "{} acknowledged writes lost on the new master {}: {}", lost.len(), c.keepers[new].uid, ranges(&lost));
}

/// Async. A `--can-be-master=false` standby D is ahead of the only electable standby E (E's
/// walsender froze before the last writes) when the master dies. E is elected (its timeline forks
/// before D's position); writes go on through the proxy, and D must come back: streaming from E
/// with every row E has (pg_rewind or a new copy), not stuck on a timeline it cannot follow.
#[tokio::test(flavor = "multi_thread")]
async fn failover_under_write_load_with_an_async_standby_ahead_then_rejoins() {
    let started = Instant::now();
    let opts = ClusterOptions { keepers: 2, sentinels: 1, proxies: 1, spec: spec(false) };
    let mut c = TestCluster::start("ahead", opts).await;
    let d = c.add_keeper(&["--can-be-master=false"]);
    let m = c.wait_master(BOOT, None).await;
    let e = (0..2).find(|i| *i != m).unwrap();
    c.wait_streaming(m, 2, BOOT).await;
    create_table(&c.keeper_client(m).await.unwrap()).await.unwrap();
    let w = writer(&c, 1).await;
    let sender = walsender_of(&c, m, e).await;
    let _frozen = Frozen::stop(sender);
    w.wait_more(30, FAILOVER).await.unwrap();
    // D has the latest acknowledged rows, E does not: D is ahead.
    let last = *w.acked().last().unwrap();
    wait_until_desc("D to have the latest rows", FAILOVER, Duration::from_millis(100), || async {
        keeper_ids(&c, d).await.ok().filter(|ids| ids.contains(&last))
    })
    .await
    .unwrap();
    c.kill_keeper(m);
    let new = elected(&c, m, FAILOVER, "after the master was killed").await;
    assert_eq!(new, e, "the only keeper that can be master");
    w.wait_more(20, FAILOVER).await.unwrap_or_else(|e| panic!("writes on the new master: {e}\n{}", c.logs_tail(25)));
    wait_streams_from(&c, d, e, REJOIN).await.unwrap_or_else(|err| panic!("the diverged standby rejoins: {err}\n{}", c.logs_tail(25)));
    let acked = w.stop().await;
    let present = keeper_ids(&c, e).await.unwrap();
    wait_ids(&c, d, &present, REJOIN).await;
    eprintln!("ahead: {} acknowledged, {} lost with the old master (async), took {:?}", acked.len(), missing(&acked, &present).len(), started.elapsed());
}

/// Async, 2 keepers. A switchover (`stolonctl failkeeper`) elects the standby S, whose keeper is
/// frozen so it cannot promote; then S dies. The old master still has all the data and is the
/// only candidate: it must be elected again, with every row, instead of waiting forever for a
/// promoted source to rewind from.
#[tokio::test(flavor = "multi_thread")]
async fn new_master_killed_before_it_converges_the_old_one_is_elected_again() {
    let started = Instant::now();
    let opts = ClusterOptions { keepers: 2, sentinels: 1, proxies: 0, spec: spec(false) };
    let mut c = TestCluster::start("refail", opts).await;
    let m = c.wait_master(BOOT, None).await;
    let s = 1 - m;
    c.wait_streaming(m, 1, BOOT).await;
    let master = c.keeper_client(m).await.unwrap();
    create_table(&master).await.unwrap();
    insert_rows(&master, 0, 100).await.unwrap();
    let want: Vec<i32> = (0..100).collect();
    wait_ids(&c, s, &want, BOOT).await;
    // S's info is fresh (published within the last second), so it is elected on the next tick.
    signal_keeper_only(&c, s, "STOP");
    let out = c.ctl(&["failkeeper", &c.keepers[m].uid]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s_uid = c.keepers[s].uid.clone();
    wait_until_desc("S to be elected", Duration::from_secs(20), Duration::from_millis(50), || async {
        (master_uid(&c).as_deref() == Some(s_uid.as_str())).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", sentinel_tail(&c)));
    c.kill_keeper(s);
    let back = elected(&c, s, FAILOVER, "after the elected standby died before promoting").await;
    assert_eq!(back, m);
    assert_eq!(keeper_ids(&c, m).await.unwrap(), want, "the old master's data is intact");
    // Its postgres may have been restarted meanwhile: a fresh connection, and it takes writes.
    let client = c.keeper_client(m).await.unwrap();
    insert_rows(&client, 100, 110).await.unwrap();
    assert_eq!(keeper_ids(&c, m).await.unwrap(), (0..110).collect::<Vec<_>>());
    eprintln!("refail: took {:?}", started.elapsed());
}
