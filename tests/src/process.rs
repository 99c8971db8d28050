//! [`ChildGuard`]: owns one child process started by a test and guarantees it
//! and everything it started are gone when the guard drops, also when the test
//! panics.
//!
//! Each child leads its own process group, and the guard signals the whole
//! group, so a postgres started by a keeper dies with the keeper's guard. The
//! leader is reaped only *after* its group was killed: an unreaped (zombie)
//! leader keeps its pid reserved, so the group id we signal can never have
//! been recycled for another test's process. Signals go through the `kill`
//! command because the workspace forbids `unsafe` (and so `libc::kill`).
//!
//! stdout and stderr go to a log file, appended to, so a restarted server
//! keeps one history; on drop during a panic the tail is printed, which is
//! usually the first thing one needs to see why a test failed.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Lines of log printed when a guard drops during a panic.
const PANIC_LOG_LINES: usize = 40;
/// How often exit is polled while waiting for a child.
const POLL: Duration = Duration::from_millis(20);
/// How long a SIGKILLed group may take to vanish; only a process stuck in
/// uninterruptible I/O takes longer.
const GROUP_EXIT_TIMEOUT: Duration = Duration::from_secs(5);

/// A child process (and its process group) killed on drop; see module docs.
#[derive(Debug)]
pub struct ChildGuard {
    /// Short name used in log headers and panic messages ("etcd-0", "keeper1").
    name: String,
    /// The group leader; its pid is also the process group id.
    child: Child,
    /// Where stdout/stderr are appended.
    log_path: PathBuf,
    /// Set once the leader was reaped; from then on its pid may belong to a
    /// stranger, so no signal is sent any more.
    exit: Option<ExitStatus>,
}

impl ChildGuard {
    /// Spawns `cmd` as the leader of a new process group, stdin from
    /// /dev/null and output appended to `log_path`.
    ///
    /// # Panics
    /// If the log cannot be opened or the program cannot be started.
    pub fn spawn(name: &str, cmd: &mut Command, log_path: &Path) -> ChildGuard {
        match Self::try_spawn(name, cmd, log_path) {
            Ok(guard) => guard,
            Err(e) => panic!(
                "cannot start {name} ({cmd:?}), log {}: {e}",
                log_path.display()
            ),
        }
    }

    /// [`ChildGuard::spawn`] returning the error instead of panicking.
    pub fn try_spawn(name: &str, cmd: &mut Command, log_path: &Path) -> io::Result<ChildGuard> {
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)?;
        // The header separates restarts of the same server in one log.
        writeln!(log, "===== starting {name}: {cmd:?}")?;
        let stderr = log.try_clone()?;
        let child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr))
            .spawn()?;
        Ok(ChildGuard {
            name: name.to_owned(),
            child,
            log_path: log_path.to_path_buf(),
            exit: None,
        })
    }

    /// The name given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Pid of the leader, which is also the process group id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log file holding the child's stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last `n` lines of the log (lossy UTF-8), for failure messages.
    pub fn log_tail(&self, n: usize) -> String {
        log_tail(&self.log_path, n)
    }

    /// The leader's exit status, once reaped by kill9/terminate/wait_exit.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.exit
    }

    /// Whether the leader is alive; a stopped (SIGSTOP) leader counts as
    /// running, an exited one that is not reaped yet does not.
    pub fn is_running(&self) -> bool {
        self.exit.is_none() && pid_alive(self.pid())
    }

    /// Live pids in the child's process group (leader included if alive).
    pub fn group_pids(&self) -> Vec<u32> {
        if self.exit.is_some() {
            return Vec::new();
        }
        group_members(self.pid())
    }

    /// Sends `sig` (a name such as "HUP", "TERM") to the leader only, e.g.
    /// to crash a keeper while its postgres keeps running. Returns whether
    /// `kill` succeeded.
    pub fn signal(&self, sig: &str) -> bool {
        self.exit.is_none() && send_signal(sig, &self.pid().to_string())
    }

    /// Sends `sig` to every process of the group. Returns whether `kill`
    /// succeeded (it fails when the group is already empty).
    pub fn signal_group(&self, sig: &str) -> bool {
        self.exit.is_none() && send_signal(sig, &format!("-{}", self.pid()))
    }

    /// Freezes the whole group (SIGSTOP), e.g. to simulate a hung server
    /// whose sockets stay open.
    /// Returns once every thread of every process in the group is stopped:
    /// delivery is asynchronous, and a request sent right after a bare `kill
    /// -STOP` may still be served.
    pub fn stop(&self) {
        if self.signal_group("STOP") {
            self.wait_group(all_threads_stopped);
        }
    }

    /// Resumes a group frozen by [`ChildGuard::stop`]; returns once no
    /// process of the group is stopped any more.
    pub fn cont(&self) {
        if self.signal_group("CONT") {
            self.wait_group(|pid| {
                !matches!(proc_stat(&format!("/proc/{pid}/stat")), Some(('T', _)))
            });
        }
    }

    /// Polls (up to 5 s) until `done` holds for every live group member.
    fn wait_group(&self, done: impl Fn(u32) -> bool) {
        let deadline = Instant::now() + GROUP_EXIT_TIMEOUT;
        while !group_members(self.pid()).into_iter().all(&done) && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
    }

    /// Kills the whole group with SIGKILL at once, reaps the leader and waits
    /// (up to 5 s) until no process of the group is left.
    pub fn kill9(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.signal_group("KILL");
            self.reap();
            // SIGKILL is delivered asynchronously and only the leader is ours
            // to wait for; grandchildren may still be tearing down, holding
            // ports and data dirs the next step of the test wants back.
            let deadline = Instant::now() + GROUP_EXIT_TIMEOUT;
            while !group_members(self.pid()).is_empty() && Instant::now() < deadline {
                std::thread::sleep(POLL);
            }
        }
        self.exit
    }

    /// SIGTERM to the leader only (it should shut down what it started),
    /// wait up to `grace` for it to exit, then SIGKILL whatever is left of
    /// the group and reap. Blocks the calling thread for at most `grace`.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.shutdown("TERM", grace)
    }

    /// SIGKILLs the leader only and waits until it is dead, leaving the rest
    /// of its group running: a keeper crash whose postgres lives on. The
    /// leader stays unreaped, so the orphans are still killed when this guard
    /// drops: keep it alive as long as they should live.
    pub fn kill9_leader_only(&self) {
        if self.signal("KILL") {
            let deadline = Instant::now() + GROUP_EXIT_TIMEOUT;
            while pid_alive(self.pid()) && Instant::now() < deadline {
                std::thread::sleep(POLL);
            }
        }
    }

    /// Like [`ChildGuard::terminate`] with another signal, e.g. "QUIT" for a
    /// postmaster's immediate shutdown or "INT" for its fast shutdown.
    pub fn shutdown(&mut self, sig: &str, grace: Duration) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.signal(sig);
            // A frozen leader would hold the signal pending until the deadline.
            self.signal("CONT");
            self.wait_exit(grace);
            self.kill9();
        }
        self.exit
    }

    /// Waits up to `timeout` for the leader to exit by itself. If it did, the
    /// rest of its group is killed and the leader reaped; returns its status.
    /// Returns `None` (and leaves it running) on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.exit.is_some() {
            return self.exit;
        }
        let deadline = Instant::now() + timeout;
        while pid_alive(self.pid()) {
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(POLL);
        }
        self.kill9()
    }

    /// Waits for the (already signalled) leader and records its status.
    fn reap(&mut self) {
        match self.child.wait() {
            Ok(status) => self.exit = Some(status),
            // Only possible if the child was reaped behind our back; there is
            // nothing left to wait for, so record it as gone.
            Err(e) => {
                eprintln!("harness: waiting for {} failed: {e}", self.name);
                self.exit = Some(ExitStatus::default());
            }
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "----- last {PANIC_LOG_LINES} lines of {} ({}):\n{}",
                self.name,
                self.log_path.display(),
                self.log_tail(PANIC_LOG_LINES)
            );
        }
        self.kill9();
    }
}

/// The last `n` lines of the file at `path`, or a note saying why not.
pub fn log_tail(path: &Path, n: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

/// Runs `kill -<sig> -- <target>`; a negative target names a process group.
fn send_signal(sig: &str, target: &str) -> bool {
    Command::new("kill")
        .arg(format!("-{sig}"))
        .arg("--")
        .arg(target)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// State letter and process group from a `stat` file: `/proc/<pid>/stat`
/// or, per thread, `/proc/<pid>/task/<tid>/stat`.
fn proc_stat(stat_path: &str) -> Option<(char, u32)> {
    let stat = fs::read_to_string(stat_path).ok()?;
    // The command name (field 2) may contain spaces and parentheses; the
    // fields after the last ')' are plain: state, ppid, pgrp, ...
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let pgrp = fields.nth(1)?.parse().ok()?;
    Some((state, pgrp))
}

/// Whether `pid` exists and is not a zombie. Zombies matter here: in a
/// container whose pid 1 does not reap, killed grandchildren stay zombies
/// forever, yet they are as dead as can be.
pub fn pid_alive(pid: u32) -> bool {
    matches!(proc_stat(&format!("/proc/{pid}/stat")), Some((state, _)) if !matches!(state, 'Z' | 'X' | 'x'))
}

/// Live (non-zombie) pids whose process group is `pgid`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            matches!(proc_stat(&format!("/proc/{pid}/stat")), Some((state, pgrp))
                if pgrp == pgid && !matches!(state, 'Z' | 'X' | 'x'))
        })
        .collect()
}

/// Whether every thread of `pid` is stopped (or gone). The process' own
/// state is its main thread's; a multi-threaded server (etcd is Go) can
/// still be serving on another thread when the main one shows `T`.
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return true;
    };
    tasks
        .filter_map(|task| task.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .all(|tid| {
            matches!(
                proc_stat(&format!("/proc/{pid}/task/{tid}/stat")),
                None | Some(('T' | 't' | 'Z' | 'X' | 'x', _))
            )
        })
}
