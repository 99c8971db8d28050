//! `idle`: the footprint of our daemons on a settled cluster with no client traffic: resident
//! memory and CPU of every keeper process (the `stolon-keeper` binary itself, not its postgres),
//! sentinel and proxy of a 3-keeper, 2-sentinel, 1-proxy cluster.
//!
//! RSS is sampled every second over the window and its maximum reported; CPU is the growth of
//! `utime + stime` over the same window, as a percentage of one core.

use crate::procfs::{binary_pid, clk_tck, cpu_ticks, rss_kib, threads};
use crate::report::{progress, Table};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use stolon_tests::cluster::{ClusterOptions, TestCluster};
use stolon_tests::{ChildGuard, KEEPER, PROXY, SENTINEL};

const BOOT: Duration = Duration::from_secs(120);
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// One daemon being measured.
struct Watched {
    name: String,
    /// Its role in the cluster, for the reader ("master", "leader", ...).
    role: String,
    pid: u32,
    ticks_at_start: u64,
    max_rss_kib: u64,
}

pub async fn run(settle_secs: u64, window_secs: u64) -> Result<(), String> {
    let opts = ClusterOptions { keepers: 3, sentinels: 2, proxies: 1, spec: json!({"initMode": "new"}) };
    let c = TestCluster::start("bi", opts).await;
    let m = c.wait_master(BOOT, None).await;
    c.wait_streaming(m, 2, BOOT).await;
    progress(&format!("idle: cluster up, settling {settle_secs} s"));
    tokio::time::sleep(Duration::from_secs(settle_secs)).await;

    let status = c.status().ok_or("stolonctl status failed")?;
    let mut daemons: Vec<(String, String, &ChildGuard, &str)> = Vec::new();
    for k in &c.keepers {
        let guard = k.guard.as_ref().ok_or(format!("{} is not running", k.uid))?;
        daemons.push((k.uid.clone(), role_of(&status["keepers"], &k.uid, "role"), guard, KEEPER));
    }
    for (i, s) in c.sentinels.iter().enumerate() {
        let uid = format!("sentinel{i}");
        let guard = s.as_ref().ok_or(format!("{uid} is not running"))?;
        daemons.push((uid.clone(), role_of(&status["sentinels"], &uid, "leader"), guard, SENTINEL));
    }
    for p in &c.proxies {
        let guard = p.guard.as_ref().ok_or(format!("{} is not running", p.uid))?;
        daemons.push((p.uid.clone(), String::new(), guard, PROXY));
    }
    let mut watched = Vec::new();
    for (name, role, guard, binary) in daemons {
        let pid = binary_pid(guard, binary).ok_or(format!("no {binary} process for {name}"))?;
        let ticks_at_start = cpu_ticks(pid).ok_or(format!("{name} (pid {pid}) vanished"))?;
        watched.push(Watched { name, role, pid, ticks_at_start, max_rss_kib: 0 });
    }

    progress(&format!("idle: sampling for {window_secs} s"));
    let start = Instant::now();
    for _ in 0..window_secs {
        tokio::time::sleep(SAMPLE_EVERY).await;
        for w in &mut watched {
            let rss = rss_kib(w.pid).ok_or(format!("{} (pid {}) vanished", w.name, w.pid))?;
            w.max_rss_kib = w.max_rss_kib.max(rss);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let hz = clk_tck() as f64;

    let mut table = Table::new(&["process", "role", "threads", "RSS max (MiB)", "CPU (% of one core)"]);
    for w in &watched {
        let ticks = cpu_ticks(w.pid).ok_or(format!("{} (pid {}) vanished", w.name, w.pid))?;
        let cpu = (ticks - w.ticks_at_start) as f64 / hz / elapsed * 100.0;
        table.row(vec![
            w.name.clone(),
            w.role.clone(),
            threads(w.pid).map_or("?".to_string(), |n| n.to_string()),
            format!("{:.1}", w.max_rss_kib as f64 / 1024.0),
            format!("{cpu:.2}"),
        ]);
    }
    table.print(&format!("idle: 3 keepers, 2 sentinels, 1 proxy, default spec, {window_secs} s window after {settle_secs} s settling"));
    Ok(())
}

/// What `stolonctl status` says of `uid` in `list`: field `field` as text ("master", "standby")
/// or, for a boolean field, "leader" when true.
fn role_of(list: &Value, uid: &str, field: &str) -> String {
    let entry = list.as_array().and_then(|l| l.iter().find(|e| e["uid"] == uid));
    match entry.map(|e| &e[field]) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(true)) => "leader".to_string(),
        Some(Value::Bool(false)) => "follower".to_string(),
        _ => "?".to_string(),
    }
}
