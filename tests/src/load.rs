//! Helpers for the safety scenarios (`tests/tests/safety*.rs`): a background [`Writer`] that
//! records every id whose INSERT was acknowledged, the "no acknowledged id is missing" check,
//! and small probes of one keeper (role, system id, replication) that a test polls while it
//! breaks things.
//!
//! The writer inserts into `t(id int primary key)` (see [`crate::cluster::create_table`]) one
//! autocommit statement at a time: an id is recorded only once its INSERT returned success, which
//! is the client's acknowledgement of the commit. A statement that times out or fails is not
//! recorded (it may or may not have committed; only acknowledged ones are promised).

use crate::cluster::{ids, TestCluster, SU_PASSWORD};
use crate::postgres::{connect, pg_bin, postgres_command, query_i64, query_string};
use crate::wait_until_desc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// How long one INSERT may take before the writer gives up on its connection (a commit waiting
/// for a synchronous standby that never answers, a frozen server).
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(3);
/// Pause between two INSERTs: about 50 writes per second, enough to have writes in flight at any
/// fault without saturating a 2-core machine.
const PACE: Duration = Duration::from_millis(20);

/// A background writer through `127.0.0.1:<port>` (a proxy, haproxy or a postgres).
pub struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<i32>>>,
    task: JoinHandle<()>,
}

impl Writer {
    /// Starts inserting ids `first..` through `port`, reconnecting after any error.
    pub fn start(port: u16, first: i32) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(write_loop(port, first, stop.clone(), acked.clone()));
        Writer { stop, acked, task }
    }

    /// The ids acknowledged so far, in acknowledgement order (increasing).
    pub fn acked(&self) -> Vec<i32> {
        self.acked.lock().map(|a| a.clone()).unwrap_or_default()
    }

    /// Number of ids acknowledged so far.
    pub fn count(&self) -> usize {
        self.acked.lock().map(|a| a.len()).unwrap_or_default()
    }

    /// Waits until `n` more ids than now are acknowledged; Err says how many came.
    pub async fn wait_more(&self, n: usize, timeout: Duration) -> Result<(), String> {
        let base = self.count();
        wait_until_desc(&format!("{n} more acknowledged writes"), timeout, Duration::from_millis(100), || async {
            let got = self.count() - base;
            if got >= n { Ok(()) } else { Err(format!("{got} acknowledged")) }
        })
        .await
    }

    /// Stops the writer and returns every acknowledged id.
    pub async fn stop(self) -> Vec<i32> {
        self.stop.store(true, Ordering::SeqCst);
        // The loop checks `stop` between statements; a statement in flight ends within its timeout.
        let _ = tokio::time::timeout(STATEMENT_TIMEOUT * 3, self.task).await;
        self.acked.lock().map(|a| a.clone()).unwrap_or_default()
    }
}

async fn write_loop(port: u16, first: i32, stop: Arc<AtomicBool>, acked: Arc<Mutex<Vec<i32>>>) {
    let mut next = first;
    let mut client = None;
    while !stop.load(Ordering::SeqCst) {
        if client.is_none() {
            let attempt = tokio::time::timeout(Duration::from_secs(2), connect("127.0.0.1", port, "postgres", Some(SU_PASSWORD), "postgres")).await;
            client = attempt.ok().and_then(Result::ok);
            if client.is_none() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        }
        let Some(c) = client.as_ref() else { continue };
        let id = next;
        next += 1;
        match tokio::time::timeout(STATEMENT_TIMEOUT, c.execute("INSERT INTO t (id) VALUES ($1)", &[&id])).await {
            Ok(Ok(_)) => {
                if let Ok(mut a) = acked.lock() {
                    a.push(id);
                }
            }
            _ => client = None,
        }
        tokio::time::sleep(PACE).await;
    }
}

/// The ids of `acked` that are not in `present` (sorted).
pub fn missing(acked: &[i32], present: &[i32]) -> Vec<i32> {
    let mut present = present.to_vec();
    present.sort_unstable();
    acked.iter().filter(|id| present.binary_search(id).is_err()).copied().collect()
}

/// Compact "a..b, c, d..e" rendering of sorted ids for failure messages.
pub fn ranges(ids: &[i32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        let mut j = i;
        while j + 1 < ids.len() && ids[j + 1] == ids[j] + 1 {
            j += 1;
        }
        out.push(if i == j { ids[i].to_string() } else { format!("{}..={}", ids[i], ids[j]) });
        i = j + 1;
    }
    out.join(", ")
}

/// The ids in `t` on keeper `i`'s postgres.
pub async fn keeper_ids(c: &TestCluster, i: usize) -> Result<Vec<i32>, String> {
    let client = c.keeper_client(i).await.map_err(|e| e.to_string())?;
    ids(&client).await.map_err(|e| e.to_string())
}

/// Whether keeper `i`'s postgres answers and is in recovery (None when it does not answer).
pub async fn in_recovery(c: &TestCluster, i: usize) -> Option<bool> {
    let client = c.keeper_client(i).await.ok()?;
    query_i64(&client, "SELECT pg_is_in_recovery()::int::bigint").await.ok().map(|v| v == 1)
}

/// Keeper indexes whose postgres answers and is not in recovery.
pub async fn writable_keepers(c: &TestCluster) -> Vec<usize> {
    let mut out = Vec::new();
    for i in 0..c.keepers.len() {
        if in_recovery(c, i).await == Some(false) {
            out.push(i);
        }
    }
    out
}

/// The master keeper's uid in `stolonctl status`, if any.
pub fn master_uid(c: &TestCluster) -> Option<String> {
    c.status()?["cluster"]["master_keeper_uid"].as_str().map(str::to_string)
}

/// The db uid keeper `i` currently has in clusterdata (`stolonctl status`).
pub fn db_uid(c: &TestCluster, i: usize) -> Option<String> {
    let status = c.status()?;
    status["keepers"].as_array()?.iter().find(|k| k["uid"] == c.keepers[i].uid.as_str())?["db_uid"].as_str().map(str::to_string)
}

/// The keeper index whose db uid is `db` (as named by `stolon_<db>` application names).
pub fn keeper_of_db(c: &TestCluster, db: &str) -> Option<usize> {
    let status = c.status()?;
    let uid = status["keepers"].as_array()?.iter().find(|k| k["db_uid"] == db)?["uid"].as_str()?.to_string();
    Some(c.keeper_index(&uid))
}

/// The master db's `spec.synchronousStandbys` in clusterdata (db uids).
pub fn spec_sync_standbys(c: &TestCluster) -> Option<Vec<String>> {
    let out = c.ctl(&["clusterdata", "read"]);
    let cd: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let master = cd["cluster"]["status"]["master"].as_str()?;
    let list = cd["dbs"][master]["spec"]["synchronousStandbys"].as_array()?;
    Some(list.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
}

/// On keeper `master`'s postgres: `(application_name, state, sync_state, pid)` of every walsender.
pub async fn replication(c: &TestCluster, master: usize) -> Result<Vec<(String, String, String, i32)>, String> {
    let client = c.keeper_client(master).await.map_err(|e| e.to_string())?;
    let rows = client
        .query("SELECT application_name, state, sync_state, pid FROM pg_stat_replication", &[])
        .await
        .map_err(|e| e.to_string())?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect())
}

/// The keeper whose standby is `sync` on keeper `master`'s postgres, once there is one.
pub async fn wait_sync_standby(c: &TestCluster, master: usize, timeout: Duration) -> usize {
    let found = wait_until_desc("a synchronous standby", timeout, Duration::from_millis(250), || async {
        let rows = replication(c, master).await?;
        let (app, ..) = rows.iter().find(|r| r.1 == "streaming" && r.2 == "sync").ok_or(format!("{rows:?}"))?;
        let db = app.strip_prefix("stolon_").ok_or(format!("unexpected application_name {app}"))?;
        keeper_of_db(c, db).ok_or(format!("no keeper has db {db}"))
    })
    .await;
    found.unwrap_or_else(|e| panic!("{e}\n{}", c.logs_tail(25)))
}

/// Waits until keeper `i` is a standby streaming from keeper `master` (its walreceiver reports
/// `streaming` from `master`'s port).
pub async fn wait_streams_from(c: &TestCluster, i: usize, master: usize, timeout: Duration) -> Result<(), String> {
    let port = i32::from(c.keepers[master].pg_port);
    wait_until_desc(&format!("{} streaming from {}", c.keepers[i].uid, c.keepers[master].uid), timeout, Duration::from_millis(250), || async {
        let client = c.keeper_client(i).await.map_err(|e| e.to_string())?;
        let row = client
            .query_opt("SELECT status, sender_port FROM pg_stat_wal_receiver", &[])
            .await
            .map_err(|e| e.to_string())?
            .ok_or("no walreceiver")?;
        let (status, sender): (String, Option<i32>) = (row.get(0), row.get(1));
        if status == "streaming" && sender == Some(port) { Ok(()) } else { Err(format!("{status} from port {sender:?}")) }
    })
    .await
}

/// The database system identifier of keeper `i`'s data dir, read with `pg_controldata` (works
/// whether postgres runs or not); None when the data dir has no valid control file.
pub fn system_id(c: &TestCluster, i: usize) -> Option<String> {
    let out = postgres_command(pg_bin("pg_controldata")).arg(c.keepers[i].data_dir.join("postgres")).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().find_map(|l| l.strip_prefix("Database system identifier:")).map(|v| v.trim().to_string())
}

/// SIGSTOP / SIGCONT keeper `i`'s keeper process only: its postgres keeps running and serving
/// (a keeper that lost the store or hangs, while replication goes on).
pub fn signal_keeper_only(c: &TestCluster, i: usize, sig: &str) {
    let guard = c.keepers[i].guard.as_ref().unwrap_or_else(|| panic!("{} is not running", c.keepers[i].uid));
    assert!(guard.signal(sig), "kill -{sig} {} failed", c.keepers[i].uid);
}

/// A postgres backend (e.g. a walsender) stopped with SIGSTOP, continued when dropped. The
/// cluster's teardown kills postmasters and keepers, not their children: a backend left stopped
/// would outlive the test (it notices its postmaster's death only once it runs again). Declare
/// the guard after the cluster so that it drops first, also when the test fails.
pub struct Frozen(i32);

impl Frozen {
    pub fn stop(pid: i32) -> Frozen {
        signal_pid(pid, "STOP");
        Frozen(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        // Not `signal_pid`: no assertion (and no panic) in a drop; the backend may be gone.
        let _ = std::process::Command::new("kill").arg("-CONT").arg(self.0.to_string()).status();
    }
}

/// Sends `sig` to one postgres backend pid (e.g. a walsender): the tests run as root.
pub fn signal_pid(pid: i32, sig: &str) {
    let ok = std::process::Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().is_ok_and(|s| s.success());
    assert!(ok, "kill -{sig} {pid} failed");
}

/// The HTTP status code of `GET <path>` on keeper `i`'s metrics address (0 when unreachable).
pub async fn keeper_http_status(c: &TestCluster, i: usize, path: &str) -> u16 {
    http_status(c.keepers[i].metrics_port, path).await
}

/// The HTTP status code of `GET <path>` on `127.0.0.1:<port>` (0 when unreachable or slower
/// than 500 ms).
pub async fn http_status(port: u16, path: &str) -> u16 {
    let get = async {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes()).await.ok()?;
        let mut head = vec![0u8; 32];
        let n = s.read(&mut head).await.ok()?;
        let line = String::from_utf8_lossy(&head[..n]).to_string();
        line.split_whitespace().nth(1)?.parse().ok()
    };
    tokio::time::timeout(Duration::from_millis(500), get).await.ok().flatten().unwrap_or(0)
}

/// The `server_version`-independent text of `current_setting(name)` on keeper `i`.
pub async fn setting(c: &TestCluster, i: usize, name: &str) -> Result<String, String> {
    let client = c.keeper_client(i).await.map_err(|e| e.to_string())?;
    query_string(&client, &format!("SELECT current_setting('{name}')")).await.map_err(|e| e.to_string())
}
