//! The demo's screen: a [`Frame`] holds everything observed in one refresh and [`render`] turns
//! it into the lines drawn on the terminal. Pure, so the layout is tested without a cluster;
//! drawing (ANSI escapes) is the binary's job.

use super::writer::WriterStats;
use std::fmt::Write;
use std::time::{Duration, Instant};

/// One keeper's row of the table.
#[derive(Debug, Clone, Default)]
pub struct KeeperRow {
    pub uid: String,
    /// The keeper's pid, which is also its process group id: its postgres is in that group.
    pub pgid: u32,
    /// `None` while the keeper runs; once dead, how long until the demo restarts it.
    pub restart_in: Option<Duration>,
    /// From the clusterview: "master", "standby", "none", ... (`None`: status unavailable).
    pub role: Option<String>,
    /// From the clusterview, see `observe::KeeperStatus::health`.
    pub health: Option<String>,
    /// Rows in the demo table on this keeper's postgres.
    pub rows: Option<i64>,
    /// `pg_is_in_recovery()` on this keeper's postgres.
    pub in_recovery: Option<bool>,
    /// Bytes behind the master, from the clusterview.
    pub lag: Option<u64>,
}

/// A process other than a keeper (etcd, sentinels, proxy), on one line.
#[derive(Debug, Clone)]
pub struct ProcessRow {
    /// "etcd", "sentinel0", ...
    pub name: String,
    pub pid: u32,
    pub alive: bool,
    /// Extra words, e.g. "leader" or the proxy's port.
    pub note: String,
}

/// Everything shown in one refresh.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Time since the demo started.
    pub uptime: Duration,
    /// When this frame was observed, to compute the length of a running outage.
    pub now: Instant,
    /// The temp dir holding data dirs and logs.
    pub dir: String,
    /// Whether the temp dir is kept on exit (`STOLON_TEST_KEEP=1`).
    pub keep_dir: bool,
    /// The proxy's read-write port.
    pub proxy_port: u16,
    /// How long after its death a process is restarted.
    pub restart_after: Duration,
    /// Uid of the master keeper, from the clusterview.
    pub master: Option<String>,
    /// Whether `stolonctl status` failed this time.
    pub status_failed: bool,
    pub keepers: Vec<KeeperRow>,
    pub others: Vec<ProcessRow>,
    /// The writer's counters, copied *before* the keepers were probed, so every insert counted
    /// as acknowledged here was acknowledged before the master's rows were counted.
    pub writer: WriterStats,
    pub events: Vec<String>,
}

/// `m:ss` (or `h:mm:ss`) for event stamps and the uptime.
pub fn clock(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// WAL bytes in a short human form.
fn bytes(n: u64) -> String {
    match n {
        0..=1023 => format!("{n} B"),
        1024..=1_048_575 => format!("{:.1} KiB", n as f64 / 1024.0),
        _ => format!("{:.1} MiB", n as f64 / 1_048_576.0),
    }
}

fn or_dash<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// The screen's text, lines separated by `\n`.
pub fn render(f: &Frame) -> String {
    let mut out = String::new();
    header(&mut out, f);
    writes(&mut out, f);
    table(&mut out, f);
    let others: Vec<String> = f
        .others
        .iter()
        .map(|p| {
            let state = if p.alive { "" } else { " DEAD" };
            let note = if p.note.is_empty() {
                String::new()
            } else {
                format!(", {}", p.note)
            };
            format!("{} (pid {}{note}){state}", p.name, p.pid)
        })
        .collect();
    let _ = writeln!(out, "\nAlso running: {}", others.join("  "));
    let _ = writeln!(out, "\nRecent events:");
    for line in &f.events {
        let _ = writeln!(out, "  {line}");
    }
    out
}

fn header(out: &mut String, f: &Frame) {
    let _ = writeln!(
        out,
        "stolon-rs demo: etcd, 3 keepers, 2 sentinels and a proxy, all local processes    up {}",
        clock(f.uptime)
    );
    match f.keepers.iter().find(|k| Some(&k.uid) == f.master.as_ref()) {
        Some(k) if k.restart_in.is_none() => {
            let _ = writeln!(
                out,
                "To kill the master ({}, its postgres included) run in another terminal:",
                k.uid
            );
            let _ = writeln!(out, "    kill -9 -- -{}", k.pgid);
        }
        Some(k) => {
            let _ = writeln!(
                out,
                "The master ({}) is dead: the sentinels elect a standby once it has not been",
                k.uid
            );
            let _ = writeln!(
                out,
                "    seen for failInterval (4 s by default); watch the ROLE column"
            );
        }
        None => {
            let _ = writeln!(
                out,
                "No master elected yet. Once there is one, this says how to kill it:"
            );
            let _ = writeln!(out, "    kill -9 -- -<its PGID from the table below>");
        }
    }
    let secs = f.restart_after.as_secs();
    let _ = writeln!(
        out,
        "A dead keeper (or sentinel) is restarted automatically {secs} s after it died, so you can"
    );
    let _ = writeln!(
        out,
        "watch it rejoin as a standby. Ctrl-C stops everything and cleans up."
    );
    let _ = writeln!(
        out,
        "SQL through the proxy:  PGPASSWORD=su-secret psql -h 127.0.0.1 -p {} -U postgres",
        f.proxy_port
    );
    let kept = if f.keep_dir {
        "kept on exit"
    } else {
        "removed on exit; STOLON_TEST_KEEP=1 keeps it"
    };
    let _ = writeln!(out, "Data and logs: {} ({kept})", f.dir);
}

fn writes(out: &mut String, f: &Frame) {
    let w = &f.writer;
    let last = w
        .last_outage
        .map(|d| format!("; last outage {:.1} s", d.as_secs_f64()))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "\nInserts through the proxy, one every 100 ms: {} attempted, {} acknowledged, {} failed{last}",
        w.attempts, w.acked, w.failures
    );
    let error = w.last_error.as_deref().unwrap_or("-");
    let state = match w.failing_since {
        Some(since) => {
            let secs = f.now.saturating_duration_since(since).as_secs_f64();
            format!(">>> WRITES FAILING for {secs:.1} s: {error}")
        }
        None if w.acked == 0 => {
            format!("waiting for the first acknowledged insert (last error: {error})")
        }
        None => "writes OK".to_string(),
    };
    let _ = writeln!(out, "  {state}");
    // Replication is synchronous: every acknowledged insert must be on the master once it has
    // left recovery (a standby being promoted may not have replayed everything yet).
    let master = f.keepers.iter().find(|k| Some(&k.uid) == f.master.as_ref());
    if let Some((k, rows)) = master
        .and_then(|k| Some((k, k.rows?)))
        .filter(|(k, _)| k.in_recovery == Some(false))
    {
        let verdict = if u64::try_from(rows).is_ok_and(|rows| rows >= w.acked) {
            "none lost"
        } else {
            "ACKNOWLEDGED INSERTS LOST"
        };
        let _ = writeln!(
            out,
            "  master {} has {rows} rows, {} inserts were acknowledged: {verdict}",
            k.uid, w.acked
        );
    }
}

fn table(out: &mut String, f: &Frame) {
    let _ = writeln!(out);
    if f.status_failed {
        let _ = writeln!(
            out,
            "(stolonctl status failed: roles, health and lag unknown)"
        );
    }
    let _ = writeln!(
        out,
        "{}",
        columns([
            "KEEPER",
            "PGID",
            "PROCESS",
            "ROLE",
            "HEALTH",
            "ROWS",
            "IN RECOVERY",
            "LAG"
        ])
    );
    for k in &f.keepers {
        let process = match k.restart_in {
            None => "running".to_string(),
            Some(d) => format!("DEAD, restart in {} s", d.as_secs_f64().ceil()),
        };
        let recovery = k.in_recovery.map(|r| if r { "yes" } else { "no" });
        let cells = [
            k.uid.clone(),
            k.pgid.to_string(),
            process,
            or_dash(k.role.as_deref()),
            or_dash(k.health.as_deref()),
            or_dash(k.rows),
            or_dash(recovery),
            or_dash(k.lag.map(bytes)),
        ];
        let _ = writeln!(out, "{}", columns(cells.each_ref().map(String::as_str)));
    }
}

/// One line of the keeper table, the header included.
fn columns([uid, pgid, process, role, health, rows, recovery, lag]: [&str; 8]) -> String {
    format!(
        "{uid:<9} {pgid:>7}  {process:<22} {role:<17} {health:<19} {rows:>6}  {recovery:<11} {lag}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> Frame {
        let keeper = |uid: &str, pgid, role: &str, recovery| KeeperRow {
            uid: uid.into(),
            pgid,
            role: Some(role.into()),
            health: Some("ok".into()),
            rows: Some(120),
            in_recovery: Some(recovery),
            lag: (role == "standby").then_some(0),
            ..KeeperRow::default()
        };
        Frame {
            uptime: Duration::from_secs(75),
            now: Instant::now(),
            dir: "/tmp/stolon-demo-x".into(),
            keep_dir: false,
            proxy_port: 15003,
            restart_after: Duration::from_secs(10),
            master: Some("keeper1".into()),
            status_failed: false,
            keepers: vec![
                keeper("keeper0", 100, "standby", true),
                keeper("keeper1", 200, "master", false),
            ],
            others: vec![ProcessRow {
                name: "etcd".into(),
                pid: 7,
                alive: true,
                note: String::new(),
            }],
            writer: WriterStats {
                attempts: 130,
                acked: 118,
                failures: 12,
                ..WriterStats::default()
            },
            events: vec!["[0:01] keeper1 is elected master".into()],
        }
    }

    #[test]
    fn shows_the_kill_command_of_the_master_group_and_the_loss_check() {
        let text = render(&frame());
        assert!(text.contains("up 1:15"), "{text}");
        assert!(text.contains("kill -9 -- -200\n"), "{text}");
        assert!(
            text.contains("master keeper1 has 120 rows, 118 inserts were acknowledged: none lost"),
            "{text}"
        );
        assert!(text.contains("etcd (pid 7)"), "{text}");
    }

    #[test]
    fn a_dead_master_has_no_kill_command_and_a_countdown() {
        let mut f = frame();
        f.keepers[1].restart_in = Some(Duration::from_millis(6200));
        f.writer.failing_since = Some(f.now - Duration::from_secs(2));
        f.writer.last_error = Some("connection closed".into());
        let text = render(&f);
        assert!(!text.contains("kill -9 -- -200"), "{text}");
        assert!(text.contains("The master (keeper1) is dead"), "{text}");
        assert!(text.contains("DEAD, restart in 7 s"), "{text}");
        assert!(
            text.contains(">>> WRITES FAILING for 2.0 s: connection closed"),
            "{text}"
        );
    }

    #[test]
    fn sizes_and_clock() {
        assert_eq!(
            (bytes(512), bytes(2048), bytes(3 << 20)),
            ("512 B".into(), "2.0 KiB".into(), "3.0 MiB".into())
        );
        assert_eq!(
            (
                clock(Duration::from_secs(59)),
                clock(Duration::from_secs(3725))
            ),
            ("0:59".into(), "1:02:05".into())
        );
    }
}
