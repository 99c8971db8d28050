//! `failover`: how long writes through the proxy are unavailable when the master's keeper and its
//! postgres are killed with `kill -9`, and whether any acknowledged write is lost.
//!
//! Each run starts a fresh cluster (3 keepers, 1 sentinel, 1 proxy), waits until both standbys
//! stream, starts a [`Writer`] through the proxy and, once it has been acknowledged for a while,
//! kills the master's whole process group. *Unavailability* is the time from the kill to the
//! acknowledgement of the first insert sent after it; the *ack gap* is the same measured from the
//! last acknowledgement before the kill, i.e. what a client sees as the hole in its writes. After
//! the writer ran a little longer on the new master, every acknowledged id missing there is lost.

use crate::report::{min_median_max, progress, Table};
use crate::writer::{Ack, Writer};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};
use stolon_tests::cluster::{create_table, ids, ClusterOptions, TestCluster};
use stolon_tests::wait_until_desc;

/// Cluster start, election of the first master and standby sync.
const BOOT: Duration = Duration::from_secs(120);
/// Limit on the unavailability itself; a failover slower than this fails the run.
const RECOVERY: Duration = Duration::from_secs(120);
/// Acknowledged inserts before the kill: the writer is past its first connection.
const WARMUP_ACKS: usize = 20;
/// How long the writer keeps going on the new master before the rows are checked.
const AFTER_RECOVERY: Duration = Duration::from_secs(1);

/// The specs compared: our defaults, and failure detection tuned for fast failover.
fn specs() -> Vec<(&'static str, Value)> {
    vec![
        ("default", json!({"initMode": "new"})),
        (
            "fast",
            json!({"initMode": "new", "sleepInterval": "500ms", "failInterval": "2s",
                   "proxyCheckInterval": "500ms", "proxyTimeout": "2s"}),
        ),
    ]
}

/// What one run measured.
struct RunResult {
    old_master: String,
    new_master: String,
    /// Kill to the acknowledgement of the first insert sent after it.
    unavailable: Duration,
    /// Last acknowledgement before the kill to that first acknowledgement after it.
    ack_gap: Duration,
    acked: usize,
    lost: Vec<i32>,
    failed_attempts: u64,
}

pub async fn run(runs: usize) -> Result<(), String> {
    let mut per_run = Table::new(&["spec", "run", "old master", "new master", "unavailable (s)", "ack gap (s)", "acked rows", "lost rows", "failed attempts"]);
    let mut summary = Table::new(&["spec", "runs", "unavailable min (s)", "median (s)", "max (s)", "ack gap median (s)", "lost acked rows (total)"]);
    for (name, spec) in specs() {
        let mut results = Vec::new();
        for i in 1..=runs {
            progress(&format!("failover: spec {name}, run {i}/{runs}"));
            let r = one_run(&format!("bf{name}"), spec.clone()).await?;
            progress(&format!(
                "failover: {} -> {}, unavailable {:.2} s, {} acked, {} lost",
                r.old_master,
                r.new_master,
                r.unavailable.as_secs_f64(),
                r.acked,
                r.lost.len()
            ));
            per_run.row(vec![
                name.to_string(),
                i.to_string(),
                r.old_master.clone(),
                r.new_master.clone(),
                format!("{:.2}", r.unavailable.as_secs_f64()),
                format!("{:.2}", r.ack_gap.as_secs_f64()),
                r.acked.to_string(),
                if r.lost.is_empty() { "0".to_string() } else { format!("{} {:?}", r.lost.len(), r.lost) },
                r.failed_attempts.to_string(),
            ]);
            results.push(r);
        }
        let secs = |f: fn(&RunResult) -> Duration| results.iter().map(|r| f(r).as_secs_f64()).collect::<Vec<_>>();
        let (min, med, max) = min_median_max(&secs(|r| r.unavailable)).unwrap_or((f64::NAN, f64::NAN, f64::NAN));
        let gap = min_median_max(&secs(|r| r.ack_gap)).map_or(f64::NAN, |(_, m, _)| m);
        let lost: usize = results.iter().map(|r| r.lost.len()).sum();
        summary.row(vec![
            name.to_string(),
            results.len().to_string(),
            format!("{min:.2}"),
            format!("{med:.2}"),
            format!("{max:.2}"),
            format!("{gap:.2}"),
            lost.to_string(),
        ]);
    }
    per_run.print("failover: per run");
    summary.print("failover: summary");
    Ok(())
}

/// One fresh cluster, one kill, one measurement.
async fn one_run(label: &str, spec: Value) -> Result<RunResult, String> {
    let opts = ClusterOptions { keepers: 3, sentinels: 1, proxies: 1, spec };
    let mut c = TestCluster::start(label, opts).await;
    let old = c.wait_master(BOOT, None).await;
    c.wait_streaming(old, 2, BOOT).await;
    wait_until_desc("table t created through the proxy", BOOT, Duration::from_millis(200), || async {
        let client = c.proxy_client(0).await.map_err(|e| e.to_string())?;
        create_table(&client).await.map_err(|e| e.to_string())
    })
    .await?;

    let writer = Writer::start(c.proxies[0].port);
    writer.wait_for("warm-up acknowledgements", BOOT, |acks| acks.get(WARMUP_ACKS - 1).copied()).await?;
    let old_uid = c.keepers[old].uid.clone();
    let elected = c.status().and_then(|s| s["cluster"]["master_keeper_uid"].as_str().map(str::to_string));
    if elected.as_deref() != Some(old_uid.as_str()) {
        return Err(format!("the master moved from {old_uid} to {elected:?} before the kill"));
    }

    let killed_at = Instant::now();
    c.kill_keeper(old);
    let first = writer
        .wait_for("acknowledged insert after the kill", RECOVERY, |acks| acks.iter().find(|a| a.sent >= killed_at).copied())
        .await?;
    tokio::time::sleep(AFTER_RECOVERY).await;
    let failed_attempts = writer.failures();
    let acks = writer.stop()?;

    let new = c.wait_master(BOOT, Some(old)).await;
    let client = c.keeper_client(new).await.map_err(|e| format!("connect to the new master: {e}"))?;
    let present: HashSet<i32> = ids(&client).await.map_err(|e| format!("read t on the new master: {e}"))?.into_iter().collect();
    Ok(RunResult {
        old_master: old_uid,
        new_master: c.keepers[new].uid.clone(),
        unavailable: first.acked - killed_at,
        ack_gap: first.acked - last_before(&acks, killed_at).map_or(killed_at, |a| a.acked),
        acked: acks.len(),
        lost: acks.iter().filter(|a| !present.contains(&a.id)).map(|a| a.id).collect(),
        failed_attempts,
    })
}

/// The last acknowledgement that arrived before `t`.
fn last_before(acks: &[Ack], t: Instant) -> Option<Ack> {
    acks.iter().rev().find(|a| a.acked < t).copied()
}
