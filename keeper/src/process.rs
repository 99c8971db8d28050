//! Processes: running a PostgreSQL program to completion (exit status checked, output kept for
//! the error, a timeout that kills it), the postgres child, and finding a postmaster that runs on
//! our data dir but is not our child (a previous keeper was `kill -9`ed and left it running).
//!
//! postgres runs in the keeper's process group with the keeper's stdout/stderr, so its messages
//! appear in the keeper's output and survive the keeper. Stopping always goes through
//! `pg_ctl stop`, which works the same for our child and for an adopted postmaster.

use crate::error::{tail, StepError, Tool};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

/// Lines of a failed program's output kept in its error.
const TAIL_LINES: usize = 20;

/// Runs `program` to completion; a non-zero exit becomes `StepError::Tool` with the tail of its
/// output. Killed when `timeout` passes or when the returned future is dropped.
pub async fn run_tool(
    step: &'static str,
    tool: Tool,
    program: &Path,
    args: &[&OsStr],
    envs: &[(&str, &OsStr)],
    timeout: Duration,
) -> Result<String, StepError> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    tracing::debug!(step, program = %program.display(), ?args, "running");
    let child = cmd.spawn().map_err(|source| StepError::Spawn { step, program: program.to_path_buf(), source })?;
    let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Err(_) => return Err(StepError::ToolTimeout { step, tool, timeout }),
        Ok(Err(source)) => return Err(StepError::Io { step, what: "wait for", path: program.to_path_buf(), source }),
        Ok(Ok(output)) => output,
    };
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        return Err(StepError::Tool {
            step,
            tool,
            status: output.status.to_string(),
            tail: tail(&format!("{stdout}\n{stderr}"), TAIL_LINES),
        });
    }
    if !stderr.trim().is_empty() {
        tracing::debug!(step, program = %program.display(), output = %tail(&stderr, TAIL_LINES), "program output");
    }
    Ok(stdout)
}

/// The process state letter in the text of `/proc/<pid>/stat` ("123 (postgres) S 1 ...").
pub fn proc_stat_state(stat: &str) -> Option<char> {
    let after = &stat[stat.rfind(')')? + 1..];
    after.trim_start().chars().next()
}

/// Whether `pid` is a live (not zombie) postgres process.
fn is_live_postgres(pid: i32) -> bool {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let Ok(stat) = std::fs::read_to_string(proc_dir.join("stat")) else { return false };
    if matches!(proc_stat_state(&stat), None | Some('Z') | Some('X')) {
        return false;
    }
    let comm = std::fs::read_to_string(proc_dir.join("comm")).unwrap_or_default();
    matches!(comm.trim(), "postgres" | "postmaster")
}

/// The pid and data dir in the text of `postmaster.pid`.
pub fn parse_postmaster_pid(text: &str) -> Option<(i32, String)> {
    let mut lines = text.lines();
    let pid: i32 = lines.next()?.trim().parse().ok()?;
    let dir = lines.next().unwrap_or_default().trim().to_string();
    (pid > 0).then_some((pid, dir))
}

/// The pid of a live postmaster serving `pgdata`, from its `postmaster.pid`.
pub fn postmaster_pid(pgdata: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(pgdata.join("postmaster.pid")).ok()?;
    let (pid, dir) = parse_postmaster_pid(&text)?;
    let same_dir = match (std::fs::canonicalize(&dir), std::fs::canonicalize(pgdata)) {
        (Ok(a), Ok(b)) => a == b,
        _ => true,
    };
    (same_dir && is_live_postgres(pid)).then_some(pid)
}

/// The postgres the keeper started, if any. A postmaster a previous keeper left running is
/// adopted: not a child, but found through `postmaster.pid` and stopped through `pg_ctl`.
#[derive(Debug, Default)]
pub struct PgChild {
    child: Option<tokio::process::Child>,
}

impl PgChild {
    /// Starts `postgres -D <pgdata>` as a child.
    pub fn spawn(&mut self, postgres: &Path, pgdata: &Path) -> Result<(), StepError> {
        let child = tokio::process::Command::new(postgres)
            .arg("-D")
            .arg(pgdata)
            .stdin(Stdio::null())
            // A dropped handle must not kill postgres: shutdown is always a clean pg_ctl stop.
            .kill_on_drop(false)
            .spawn()
            .map_err(|source| StepError::Spawn { step: "start", program: postgres.to_path_buf(), source })?;
        tracing::info!(pid = child.id(), "postgres started");
        self.child = Some(child);
        Ok(())
    }

    /// Reaps our child if it exited, returning its status once.
    pub fn reap(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                self.child = None;
                Some(status)
            }
            Ok(None) => None,
            Err(err) => {
                tracing::warn!(error = %err, "cannot check the postgres child; forgetting it");
                self.child = None;
                None
            }
        }
    }

    /// Whether our child runs (after reaping it if it exited).
    pub fn alive(&mut self) -> bool {
        self.reap();
        self.child.is_some()
    }

    /// Asks our child for a fast shutdown (SIGINT) directly: for when pg_ctl cannot, because
    /// postmaster.pid is gone with a wiped data dir.
    pub fn interrupt(&self) {
        let pid = self.child.as_ref().and_then(|c| c.id()).and_then(|id| i32::try_from(id).ok()).and_then(rustix::process::Pid::from_raw);
        if let Some(pid) = pid {
            if let Err(err) = rustix::process::kill_process(pid, rustix::process::Signal::INT) {
                tracing::warn!(error = %err, "cannot signal postgres");
            }
        }
    }

    /// Waits up to `timeout` for our child to exit (after a pg_ctl stop).
    pub async fn wait_exit(&mut self, timeout: Duration) {
        if let Some(child) = self.child.as_mut() {
            match tokio::time::timeout(timeout, child.wait()).await {
                Ok(Ok(status)) => tracing::info!(%status, "postgres exited"),
                Ok(Err(err)) => tracing::warn!(error = %err, "cannot wait for postgres"),
                Err(_) => tracing::warn!("postgres did not exit in time after pg_ctl stop"),
            }
            self.child = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_state() {
        assert_eq!(proc_stat_state("123 (postgres) S 1 2 3"), Some('S'));
        assert_eq!(proc_stat_state("9 (we ird) (name)) Z 1"), Some('Z'));
        assert_eq!(proc_stat_state("garbage"), None);
    }

    #[test]
    fn postmaster_pid_file() {
        let text = "4242\n/srv/k/postgres\n1700000000\n5432\n/srv/k\nlocalhost\n  5432001  0\nready   \n";
        assert_eq!(parse_postmaster_pid(text), Some((4242, "/srv/k/postgres".to_string())));
        assert_eq!(parse_postmaster_pid("x\n"), None);
        assert_eq!(parse_postmaster_pid("-1\n/d\n"), None);
    }

    #[test]
    fn stale_pid_file_is_not_a_running_postmaster() {
        let dir = tempfile::tempdir().unwrap();
        // Our own pid is alive but not postgres.
        std::fs::write(dir.path().join("postmaster.pid"), format!("{}\n{}\n", std::process::id(), dir.path().display())).unwrap();
        assert_eq!(postmaster_pid(dir.path()), None);
        assert_eq!(postmaster_pid(&dir.path().join("nope")), None);
    }

    #[tokio::test]
    async fn tool_failures_carry_the_output_tail() {
        let err = run_tool("initdb", Tool::InitDb, Path::new("/bin/sh"), &[OsStr::new("-c"), OsStr::new("echo first; echo boom >&2; exit 3")], &[], Duration::from_secs(5))
            .await
            .unwrap_err();
        match err {
            StepError::Tool { tool: Tool::InitDb, status, tail, .. } => {
                assert!(status.contains('3'), "{status}");
                assert!(tail.contains("boom") && tail.contains("first"), "{tail}");
            }
            other => panic!("unexpected {other:?}"),
        }
        let out = run_tool("x", Tool::PgCtl, Path::new("/bin/sh"), &[OsStr::new("-c"), OsStr::new("echo ok")], &[], Duration::from_secs(5)).await.unwrap();
        assert_eq!(out.trim(), "ok");
    }

    #[tokio::test]
    async fn tool_timeout_and_missing_program() {
        let err = run_tool("x", Tool::BaseBackup, Path::new("/bin/sh"), &[OsStr::new("-c"), OsStr::new("sleep 5")], &[], Duration::from_millis(100)).await.unwrap_err();
        assert!(matches!(err, StepError::ToolTimeout { tool: Tool::BaseBackup, .. }));
        let err = run_tool("x", Tool::PgCtl, Path::new("/nonexistent/pg_ctl"), &[], &[], Duration::from_secs(1)).await.unwrap_err();
        assert!(matches!(err, StepError::Spawn { .. }));
    }
}
