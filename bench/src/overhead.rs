//! `proxy-overhead`: what our proxy costs compared with connecting to the master directly and
//! with HAProxy in TCP mode, measured with `pgbench -S` (read-only, so the proxies' per-byte and
//! per-connection costs dominate, not the disk).
//!
//! One cluster (1 keeper, 1 sentinel, 1 proxy) plus one HAProxy forwarding to the master's port.
//! `pgbench -i -s 10` runs once; then every (mode, target) pair runs `--rounds` times, interleaved
//! (direct, proxy, haproxy, direct, ...) so slow drift of this shared machine hits all targets
//! alike, and the median is reported. Modes: persistent connections, and `-C` (a new connection
//! per transaction, where the proxy's connect path and its backend connect dominate).

use crate::procfs::{binary_pid, clk_tck, cpu_ticks};
use crate::report::{change_pct, fmt_pct, median, progress, Table};
use serde_json::json;
use std::process::Command as StdCommand;
use std::time::Duration;
use stolon_tests::cluster::{ClusterOptions, TestCluster, SU_PASSWORD};
use stolon_tests::postgres::{connect, pg_bin, query_i64};
use stolon_tests::{free_port, wait_until_desc, ChildGuard};
use tokio::process::Command;

const BOOT: Duration = Duration::from_secs(120);
/// Unmeasured pgbench -S run after the load.
const WARMUP_SECS: u32 = 5;
/// Long enough for HAProxy to parse its config and bind, or to give up.
const HAPROXY_STARTUP: Duration = Duration::from_millis(500);
const MODES: [(&str, &[&str]); 2] = [("persistent", &[]), ("connect per txn (-C)", &["-C"])];

/// One pgbench result.
#[derive(Debug, Clone, Copy)]
struct Sample {
    tps: f64,
    latency_ms: f64,
    /// `average connection time` (only printed with -C).
    conn_ms: Option<f64>,
    failed: u64,
    /// CPU time (user + system) the forwarding process spent per transaction, in µs; `None` for
    /// the direct target. On a machine where pgbench, postgres and the proxy share the cores,
    /// this is what the proxy takes from the others, and it is much less noisy than TPS.
    cpu_us_per_txn: Option<f64>,
}

/// Where the measured processes run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CpuLayout {
    /// Wherever the scheduler puts them: pgbench, postgres and the forwarder compete for the
    /// same cores, so every µs of CPU the forwarder spends is taken from the other two.
    Shared,
    /// pgbench and postgres pinned to CPU 0, the forwarder to CPU 1: a proxy on its own core
    /// (its own pod or host in production), where only the latency it adds can cost throughput.
    Split,
}

pub async fn run(rounds: usize, seconds: u32, persistent_only: bool, layout: CpuLayout) -> Result<(), String> {
    let modes = if persistent_only { &MODES[..1] } else { &MODES[..] };
    let opts = ClusterOptions { keepers: 1, sentinels: 1, proxies: 1, spec: json!({"initMode": "new"}) };
    let c = TestCluster::start("bo", opts).await;
    let m = c.wait_master(BOOT, None).await;
    let direct = c.keepers[m].pg_port;
    let ha_port = free_port();
    let haproxy = start_haproxy(&c, ha_port, direct)?;
    let targets = [("direct", direct), ("stolon-proxy", c.proxies[0].port), ("haproxy", ha_port)];
    let proxy_guard = c.proxies[0].guard.as_ref().ok_or("the proxy is not running")?;
    let forwarders = [
        None,
        Some(binary_pid(proxy_guard, "stolon-proxy").ok_or("cannot find the stolon-proxy process")?),
        Some(binary_pid(&haproxy, "haproxy").ok_or("cannot find the haproxy process")?),
    ];
    let tck = clk_tck() as f64;
    let pgbench_cpu = if layout == CpuLayout::Split {
        if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
            return Err("--cpu-layout split needs at least 2 CPUs".into());
        }
        // Backends forked later inherit the postmaster's affinity.
        for pid in c.keepers[m].guard.as_ref().ok_or("the master keeper is not running")?.group_pids() {
            pin(pid, "0")?;
        }
        for pid in forwarders.iter().flatten() {
            pin(*pid, "1")?;
        }
        Some("0")
    } else {
        None
    };
    for (name, port) in targets {
        wait_until_desc(&format!("SQL through {name}"), BOOT, Duration::from_millis(200), || async move {
            let client = connect("127.0.0.1", port, "postgres", Some(SU_PASSWORD), "postgres").await?;
            query_i64(&client, "SELECT 1::int8").await
        })
        .await?;
    }
    progress("proxy-overhead: pgbench -i -s 10");
    pgbench(direct, &["-i", "-s", "10", "-q"]).await?;
    // The load leaves a checkpoint and cold caches behind, which would slow whichever target
    // ran first; flush it now and warm up outside the measurements.
    let client = connect("127.0.0.1", direct, "postgres", Some(SU_PASSWORD), "postgres").await.map_err(|e| format!("connect for CHECKPOINT: {e}"))?;
    client.batch_execute("CHECKPOINT").await.map_err(|e| format!("CHECKPOINT: {e}"))?;
    progress(&format!("proxy-overhead: warm-up, {WARMUP_SECS} s"));
    pgbench(direct, &["-S", "-c", "8", "-j", "2", "-T", &WARMUP_SECS.to_string()]).await?;

    let duration = seconds.to_string();
    let mut samples: Vec<Vec<Vec<Sample>>> = vec![vec![Vec::new(); targets.len()]; modes.len()];
    for round in 1..=rounds {
        for (mi, (mode, mode_args)) in modes.iter().enumerate() {
            for (ti, (target, port)) in targets.iter().enumerate() {
                progress(&format!("proxy-overhead: round {round}/{rounds}, {mode}, {target}"));
                let mut args = vec!["-S", "-c", "8", "-j", "2", "-T", &duration];
                args.extend_from_slice(mode_args);
                let cpu_before = forwarders[ti].and_then(cpu_ticks);
                let out = pgbench_on(pgbench_cpu, *port, &args).await?;
                let cpu_after = forwarders[ti].and_then(cpu_ticks);
                let mut s = parse(&out)?;
                if let (Some(before), Some(after)) = (cpu_before, cpu_after) {
                    let txns = s.tps * f64::from(seconds);
                    s.cpu_us_per_txn = Some((after.saturating_sub(before)) as f64 / tck * 1e6 / txns.max(1.0));
                }
                progress(&format!("proxy-overhead: {:.0} tps, {:.3} ms", s.tps, s.latency_ms));
                samples[mi][ti].push(s);
            }
        }
    }
    let layout = match layout {
        CpuLayout::Shared => "shared CPUs",
        CpuLayout::Split => "pgbench+postgres on CPU 0, forwarder on CPU 1",
    };
    report(&targets.map(|(name, _)| name), &samples, rounds, seconds, layout);
    Ok(())
}

/// Prints the per-target table and the comparisons. A comparison is made within each round
/// (the runs were back to back) and the median of those per-round changes is reported, so
/// drift between rounds cancels out.
fn report(targets: &[&str], samples: &[Vec<Vec<Sample>>], rounds: usize, seconds: u32, layout: &str) {
    let mut abs = Table::new(&["mode", "target", "TPS (median)", "latency avg ms (median)", "conn time ms (median)", "forwarder CPU µs/txn (median)", "TPS per round", "failed txns"]);
    let mut rel = Table::new(&["mode", "comparison", "TPS change (median)", "TPS change per round", "latency change (median)"]);
    for (mi, runs) in samples.iter().enumerate() {
        let mode = MODES[mi].0;
        let med = |ti: usize, f: fn(&Sample) -> f64| median(&runs[ti].iter().map(f).collect::<Vec<_>>());
        for (ti, target) in targets.iter().enumerate() {
            let conn = med(ti, |s| s.conn_ms.unwrap_or(f64::NAN));
            let cpu = med(ti, |s| s.cpu_us_per_txn.unwrap_or(f64::NAN));
            abs.row(vec![
                mode.to_string(),
                target.to_string(),
                format!("{:.0}", med(ti, |s| s.tps)),
                format!("{:.3}", med(ti, |s| s.latency_ms)),
                if conn.is_nan() { "-".to_string() } else { format!("{conn:.3}") },
                if cpu.is_nan() { "-".to_string() } else { format!("{cpu:.1}") },
                runs[ti].iter().map(|s| format!("{:.0}", s.tps)).collect::<Vec<_>>().join(", "),
                runs[ti].iter().map(|s| s.failed).sum::<u64>().to_string(),
            ]);
        }
        // (a, b): a's change relative to b, indexes into `targets`.
        for (a, b) in [(1, 0), (1, 2), (2, 0)] {
            let per_round = |f: fn(&Sample) -> f64| runs[a].iter().zip(&runs[b]).map(|(x, y)| change_pct(f(x), f(y))).collect::<Vec<_>>();
            let tps = per_round(|s| s.tps);
            rel.row(vec![
                mode.to_string(),
                format!("{} vs {}", targets[a], targets[b]),
                fmt_pct(median(&tps)),
                tps.iter().map(|p| fmt_pct(*p)).collect::<Vec<_>>().join(", "),
                fmt_pct(median(&per_round(|s| s.latency_ms))),
            ]);
        }
    }
    abs.print(&format!("proxy-overhead ({layout}): pgbench -S -c 8 -j 2 -T {seconds}, median of {rounds} interleaved rounds"));
    rel.print(&format!("proxy-overhead ({layout}): paired comparisons within each round (TPS: negative = slower; latency: positive = slower)"));
}

/// Writes a TCP-mode HAProxy config forwarding `port` to `backend` and starts HAProxy in the
/// foreground, owned by a guard so it dies with the benchmark.
fn start_haproxy(c: &TestCluster, port: u16, backend: u16) -> Result<ChildGuard, String> {
    let cfg = c.dir.path().join("haproxy.cfg");
    let text = format!(
        "global\n    maxconn 4000\n\ndefaults\n    mode tcp\n    timeout connect 10s\n    timeout client 1h\n    timeout server 1h\n\n\
         frontend pg\n    bind 127.0.0.1:{port}\n    maxconn 4000\n    default_backend master\n\n\
         backend master\n    server pg 127.0.0.1:{backend} maxconn 4000\n"
    );
    std::fs::write(&cfg, text).map_err(|e| format!("write {}: {e}", cfg.display()))?;
    let mut cmd = StdCommand::new("haproxy");
    cmd.arg("-f").arg(&cfg).arg("-db");
    let guard = ChildGuard::try_spawn("haproxy", &mut cmd, &c.dir.log_path("haproxy")).map_err(|e| format!("start haproxy (is it installed? bench/run.sh installs it): {e}"))?;
    // A bad config or limit makes HAProxy exit at once; say why rather than time out later.
    std::thread::sleep(HAPROXY_STARTUP);
    if !guard.is_running() {
        return Err(format!("haproxy exited at startup:\n{}", guard.log_tail(10)));
    }
    Ok(guard)
}

/// Pins every thread of `pid` to `cpus` (a taskset list such as "0").
fn pin(pid: u32, cpus: &str) -> Result<(), String> {
    let out = StdCommand::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .output()
        .map_err(|e| format!("run taskset (util-linux): {e}"))?;
    if !out.status.success() {
        return Err(format!("taskset -c {cpus} on pid {pid} failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(())
}

/// Runs pgbench against 127.0.0.1:`port` as the superuser; returns its stdout.
async fn pgbench(port: u16, args: &[&str]) -> Result<String, String> {
    pgbench_on(None, port, args).await
}

/// As `pgbench`, pinned to `cpus` when given.
async fn pgbench_on(cpus: Option<&str>, port: u16, args: &[&str]) -> Result<String, String> {
    let mut cmd = match cpus {
        Some(cpus) => {
            let mut cmd = Command::new("taskset");
            cmd.args(["-c", cpus]).arg(pg_bin("pgbench"));
            cmd
        }
        None => Command::new(pg_bin("pgbench")),
    };
    let out = cmd
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
        .args(args)
        .arg("postgres")
        .env("PGPASSWORD", SU_PASSWORD)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("run pgbench: {e}"))?;
    if !out.status.success() {
        return Err(format!("pgbench {args:?} on port {port} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The numbers of a pgbench run from its summary lines.
fn parse(out: &str) -> Result<Sample, String> {
    let value = |prefix: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    let missing = |what: &str| format!("no `{what}` in pgbench output:\n{out}");
    Ok(Sample {
        tps: value("tps = ").ok_or_else(|| missing("tps"))?,
        latency_ms: value("latency average = ").ok_or_else(|| missing("latency average"))?,
        conn_ms: value("average connection time = "),
        // `as` truncates, and a count printed by pgbench is a whole number.
        failed: value("number of failed transactions: ").map_or(0, |f| f as u64),
        cpu_us_per_txn: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pgbench_15_summary() {
        let out = "number of transactions actually processed: 100\nnumber of failed transactions: 0 (0.000%)\n\
                   latency average = 0.974 ms\naverage connection time = 1.250 ms\ntps = 8210.912 (including reconnection times)\n";
        let s = parse(out).unwrap();
        assert_eq!((s.tps, s.latency_ms, s.conn_ms, s.failed), (8210.912, 0.974, Some(1.25), 0));
        assert!(parse("nothing").is_err());
    }
}
