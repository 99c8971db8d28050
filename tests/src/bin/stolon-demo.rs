//! `stolon-demo`: a local cluster to play with, no Docker needed (run it through
//! `scripts/demo.sh`, as root: keepers run as the `postgres` OS user). It starts etcd, three
//! keepers, two sentinels and a proxy as local processes with the test harness's `TestCluster`,
//! inserts a row through the proxy every 100 ms and redraws a table every second: the inserts'
//! fate, and per keeper its process, role, health, rows, recovery flag and lag. The screen says
//! how to `kill -9` the master's process group from another terminal; a dead keeper or sentinel
//! is restarted 10 s after it died, so the old master is seen rejoining as a standby.
//!
//! Ctrl-C (or SIGTERM, SIGHUP) stops the keepers cleanly (each stops its postgres), then drops
//! the cluster, which kills every process and removes the temp dir (kept with
//! `STOLON_TEST_KEEP=1`). Every child leads its own process group, so the terminal's Ctrl-C
//! reaches only this process and the cleanup is ours to do.
#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used)]

#[path = "../demo/mod.rs"]
mod demo;

use demo::observe::{self, Tracker};
use demo::screen::{self, Frame, KeeperRow, ProcessRow};
use demo::writer::{self, WriterStats};
use demo::{lock, Events};
use serde_json::json;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use stolon_tests::cluster::{ClusterOptions, TestCluster};
use stolon_tests::ChildGuard;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// How long a dead keeper or sentinel stays dead before the demo restarts it.
const RESTART_AFTER: Duration = Duration::from_secs(10);
/// Screen refresh period.
const REFRESH: Duration = Duration::from_secs(1);
/// How long a keeper may take to stop its postgres on Ctrl-C before its group is SIGKILLed.
const STOP_GRACE: Duration = Duration::from_secs(15);

#[tokio::main]
async fn main() -> ExitCode {
    // The euid owns /proc/self; keepers are started as `postgres`, which needs root.
    if std::fs::metadata("/proc/self").map(|m| m.uid()).ok() != Some(0) {
        eprintln!(
            "stolon-demo: run as root (scripts/demo.sh): keepers run as the postgres OS user"
        );
        return ExitCode::FAILURE;
    }
    let mut signals = match Signals::new() {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("stolon-demo: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "starting etcd, 3 keepers, 2 sentinels and a proxy (binaries in {}) ...",
        stolon_tests::bin_dir().display()
    );
    // Synchronous replication: an acknowledged insert survives the loss of the master, which the
    // screen checks after every failover.
    let spec = json!({"initMode": "new", "synchronousReplication": true});
    let opts = ClusterOptions {
        keepers: 3,
        sentinels: 2,
        proxies: 1,
        spec,
    };
    let mut cluster = tokio::select! {
        cluster = TestCluster::start("demo", opts) => cluster,
        // Dropping the half-started cluster kills what it started.
        () = signals.recv() => {
            say("interrupted while starting; everything started so far is stopped\n");
            return ExitCode::SUCCESS;
        }
    };
    let events = Arc::new(Events::new());
    let stats = Arc::new(Mutex::new(WriterStats::default()));
    // `opts` asked for one proxy and `start` starts exactly as many as asked: index 0 exists.
    let proxy_port = cluster.proxies[0].port;
    let writer = tokio::spawn(writer::run(proxy_port, stats.clone(), events.clone()));
    let mut supervisor = Supervisor::new(&cluster);
    let mut tracker = Tracker::default();
    let mut ticker = tokio::time::interval(REFRESH);
    say("\x1b[2J");
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = signals.recv() => break,
        }
        supervisor.check(&mut cluster, &events);
        let frame = observe_frame(
            &cluster,
            proxy_port,
            &supervisor,
            &mut tracker,
            &stats,
            &events,
        )
        .await;
        draw(&screen::render(&frame));
    }
    writer.abort();
    stop(cluster);
    ExitCode::SUCCESS
}

/// SIGINT (Ctrl-C), SIGTERM and SIGHUP (terminal closed), all meaning "stop and clean up".
struct Signals {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl Signals {
    /// Installs the handlers now, so that from here on none of them kills the process.
    fn new() -> std::io::Result<Signals> {
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
            _ = self.hup.recv() => {}
        }
    }
}

/// Restarts keepers and sentinels found dead, [`RESTART_AFTER`] after their death was seen.
struct Supervisor {
    /// When each keeper was first seen dead (`None` while it runs).
    keepers_dead_since: Vec<Option<Instant>>,
    /// Same for each sentinel.
    sentinels_dead_since: Vec<Option<Instant>>,
}

/// What [`Supervisor`] makes of one process at one check.
enum Verdict {
    Running,
    JustDied,
    Waiting,
    RestartNow,
}

impl Supervisor {
    fn new(cluster: &TestCluster) -> Supervisor {
        Supervisor {
            keepers_dead_since: vec![None; cluster.keepers.len()],
            sentinels_dead_since: vec![None; cluster.sentinels.len()],
        }
    }

    /// Updates `dead_since` for a process that is (not) `alive` at `now`.
    fn verdict(dead_since: &mut Option<Instant>, alive: bool, now: Instant) -> Verdict {
        match (alive, *dead_since) {
            (true, _) => {
                *dead_since = None;
                Verdict::Running
            }
            (false, None) => {
                *dead_since = Some(now);
                Verdict::JustDied
            }
            (false, Some(t)) if now.saturating_duration_since(t) >= RESTART_AFTER => {
                *dead_since = None;
                Verdict::RestartNow
            }
            (false, Some(_)) => Verdict::Waiting,
        }
    }

    fn check(&mut self, cluster: &mut TestCluster, events: &Events) {
        let now = Instant::now();
        let secs = RESTART_AFTER.as_secs();
        for i in 0..cluster.keepers.len() {
            let (alive, pgid) = state(cluster.keepers[i].guard.as_ref());
            let uid = cluster.keepers[i].uid.clone();
            match Self::verdict(&mut self.keepers_dead_since[i], alive, now) {
                Verdict::JustDied => events.push(format!(
                    "{uid} (pgid {pgid}) is dead; restarting it in {secs} s"
                )),
                Verdict::RestartNow => {
                    // Kill what may be left of the old group (a postgres whose keeper alone
                    // was killed) and reap the old leader, then start afresh on the same dirs.
                    cluster.kill_keeper(i);
                    cluster.start_keeper(i);
                    let (_, pgid) = state(cluster.keepers[i].guard.as_ref());
                    events.push(format!("restarted {uid}, new pgid {pgid}"));
                }
                Verdict::Running | Verdict::Waiting => {}
            }
        }
        for i in 0..cluster.sentinels.len() {
            let (alive, pid) = state(cluster.sentinels[i].as_ref());
            match Self::verdict(&mut self.sentinels_dead_since[i], alive, now) {
                Verdict::JustDied => events.push(format!(
                    "sentinel{i} (pid {pid}) is dead; restarting it in {secs} s"
                )),
                Verdict::RestartNow => {
                    cluster.kill_sentinel(i);
                    cluster.start_sentinel(i);
                    events.push(format!("restarted sentinel{i}"));
                }
                Verdict::Running | Verdict::Waiting => {}
            }
        }
    }

    /// Time left before keeper `i` is restarted, if it is dead.
    fn keeper_restart_in(&self, i: usize) -> Option<Duration> {
        let since = self.keepers_dead_since.get(i).copied().flatten()?;
        Some(RESTART_AFTER.saturating_sub(since.elapsed()))
    }
}

/// Whether a guarded process runs, and its pid (0 without a guard). A process killed from
/// another terminal stays an unreaped zombie, which counts as dead.
fn state(guard: Option<&ChildGuard>) -> (bool, u32) {
    guard.map_or((false, 0), |g| (g.is_running(), g.pid()))
}

/// Looks at the cluster and assembles the frame to draw; pushes events for role changes.
async fn observe_frame(
    cluster: &TestCluster,
    proxy_port: u16,
    supervisor: &Supervisor,
    tracker: &mut Tracker,
    stats: &Mutex<WriterStats>,
    events: &Events,
) -> Frame {
    // Copied before the probes: see `Frame::writer`.
    let writer = lock(stats).clone();
    let status = observe::status(cluster);
    if let Some(view) = &status {
        tracker.note(view, events);
    }
    let probes = observe::probe_keepers(cluster).await;
    let keepers = cluster
        .keepers
        .iter()
        .zip(probes)
        .enumerate()
        .map(|(i, (k, probe))| {
            let st = status.as_ref().and_then(|s| s.keepers.get(&k.uid));
            KeeperRow {
                uid: k.uid.clone(),
                pgid: state(k.guard.as_ref()).1,
                restart_in: supervisor.keeper_restart_in(i),
                role: st.map(|s| s.role.clone()),
                health: st.map(|s| s.health.clone()),
                rows: probe.rows,
                in_recovery: probe.in_recovery,
                lag: st.and_then(|s| s.lag),
            }
        })
        .collect();
    let leader = status.as_ref().and_then(|s| s.leader.clone());
    Frame {
        uptime: events.uptime(),
        now: Instant::now(),
        dir: cluster.dir.path().display().to_string(),
        keep_dir: std::env::var("STOLON_TEST_KEEP").is_ok_and(|v| v == "1"),
        proxy_port,
        restart_after: RESTART_AFTER,
        master: status.as_ref().and_then(|s| s.master.clone()),
        status_failed: status.is_none(),
        keepers,
        others: other_processes(cluster, leader.as_deref()),
        writer,
        events: events.recent(),
    }
}

/// etcd, the sentinels (marking the leader) and the proxies.
fn other_processes(cluster: &TestCluster, leader: Option<&str>) -> Vec<ProcessRow> {
    let row = |name: String, guard: Option<&ChildGuard>, note: String| {
        let (alive, pid) = state(guard);
        ProcessRow {
            name,
            pid,
            alive,
            note,
        }
    };
    let mut rows = vec![row(
        "etcd".into(),
        cluster.etcd.member().guard(),
        String::new(),
    )];
    for (i, g) in cluster.sentinels.iter().enumerate() {
        let name = format!("sentinel{i}");
        let note = if leader == Some(name.as_str()) {
            "leader".to_string()
        } else {
            String::new()
        };
        rows.push(row(name, g.as_ref(), note));
    }
    for p in &cluster.proxies {
        rows.push(row(
            p.uid.clone(),
            p.guard.as_ref(),
            format!("port {}", p.port),
        ));
    }
    rows
}

/// Writes `text` to stdout, ignoring failures: after SIGHUP the terminal is gone, and `print!`
/// would panic there, in the middle of the cleanup.
fn say(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
}

/// Redraws the screen in place: home, each line followed by "erase to end of line", then
/// "erase below", which flickers less than clearing the whole screen first.
fn draw(text: &str) {
    let mut out = String::from("\x1b[H");
    for line in text.lines() {
        out.push_str(line);
        out.push_str("\x1b[K\n");
    }
    out.push_str("\x1b[J");
    say(&out);
}

/// Stops the keepers (each stops its postgres with a fast shutdown), then drops the cluster,
/// which kills every remaining process and removes the temp dir.
fn stop(mut cluster: TestCluster) {
    say("\x1b[H\x1b[2Jstopping: keepers stop their postgres, then every process is killed ...\n");
    tokio::task::block_in_place(|| {
        // Signal all first so the keepers stop in parallel; `terminate` then waits for each.
        for guard in cluster.keepers.iter().filter_map(|k| k.guard.as_ref()) {
            guard.signal("TERM");
        }
        for guard in cluster.keepers.iter_mut().filter_map(|k| k.guard.as_mut()) {
            guard.terminate(STOP_GRACE);
        }
    });
    let dir = cluster.dir.path().to_path_buf();
    drop(cluster);
    if dir.exists() {
        say(&format!(
            "stopped; data and logs kept in {}\n",
            dir.display()
        ));
    } else {
        say(&format!("stopped; removed {}\n", dir.display()));
    }
}
