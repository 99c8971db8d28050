//! The keeper's errors: `StartupError` for what stops it from starting at all, `StepError` for a
//! failed step of a plan. Each names what failed, keeps the cause, and says what to do; a failed
//! PostgreSQL program carries the tail of its output, which is usually the whole story.

use std::path::PathBuf;
use std::time::Duration;

/// Why the keeper cannot start. Printed once by `main`, which exits non-zero.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("refusing to run as root: PostgreSQL refuses to run as root, and the keeper runs postgres as its child. Run the keeper as the OS user that owns --data-dir, e.g. `runuser -u postgres -- stolon-keeper ...`, `User=postgres` in a systemd unit, or `runAsUser` in Kubernetes")]
    Root,
    #[error("another keeper is already running on data dir {dir} ({lock} is locked): stop it first, or give this keeper its own --data-dir")]
    Locked { dir: PathBuf, lock: PathBuf },
    #[error("{flag}: {reason}")]
    Flag { flag: &'static str, reason: String },
    #[error("cannot read the {flag} file {path}: {source}")]
    PasswordFile { flag: &'static str, path: PathBuf, source: std::io::Error },
    #[error("cannot {what} {path}: {source}; check that the directory exists and belongs to the OS user running the keeper")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("cannot use the PostgreSQL programs: {0}; set --pg-bin-path to the directory holding postgres, initdb and pg_ctl")]
    PgBin(String),
    #[error("{path} is not a valid keeper state file ({reason}); fix or remove it (removing keeperstate.json gives the keeper a new uid)")]
    State { path: PathBuf, reason: String },
    #[error("data dir {dir} belongs to keeper {recorded} but --uid is {given}: use --uid {recorded}, or another --data-dir")]
    UidMismatch { dir: PathBuf, recorded: String, given: String },
    #[error(transparent)]
    Store(#[from] clusterview::StoreError),
    #[error(transparent)]
    Metrics(std::io::Error),
}

/// PostgreSQL programs the keeper runs; each failure says what to check for that program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    InitDb,
    PgCtl,
    BaseBackup,
    Rewind,
    ControlData,
}

impl Tool {
    pub fn program(self) -> &'static str {
        match self {
            Tool::InitDb => "initdb",
            Tool::PgCtl => "pg_ctl",
            Tool::BaseBackup => "pg_basebackup",
            Tool::Rewind => "pg_rewind",
            Tool::ControlData => "pg_controldata",
        }
    }

    fn hint(self) -> &'static str {
        match self {
            Tool::InitDb => "check the cluster spec's newConfig (locale, encoding) and that the data dir is writable by the keeper's OS user",
            Tool::PgCtl => "see postgres' own messages in the keeper's output",
            Tool::BaseBackup => "check that the followed db is reachable at its address, that --pg-repl-username and its password match the master's, and that the master's pg_hba.conf admits this host (defaultSUReplAccessMode)",
            Tool::Rewind => "the keeper falls back to a full pg_basebackup on its next pass",
            Tool::ControlData => "the data directory may be damaged",
        }
    }
}

/// Why one step of a plan failed. The keeper logs it and plans again on its next pass.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("{step}: cannot run {program}: {source}; check --pg-bin-path")]
    Spawn { step: &'static str, program: PathBuf, source: std::io::Error },
    #[error("{step}: {} failed ({status}); {}\n--- last lines of its output ---\n{tail}", tool.program(), tool.hint())]
    Tool { step: &'static str, tool: Tool, status: String, tail: String },
    #[error("{step}: {} did not finish within {timeout:?} and was stopped; {}", tool.program(), tool.hint())]
    ToolTimeout { step: &'static str, tool: Tool, timeout: Duration },
    #[error("{step}: cannot {what} {path}: {source}")]
    Io { step: &'static str, what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{step}: SQL on the local postgres failed: {source}; check that postgres runs and admits the superuser over the unix socket")]
    Sql { step: &'static str, source: tokio_postgres::Error },
    #[error("{step}: cannot prepare {describe} as the pg_rewind source: {source}; check that --pg-su-username and its password are the same on every keeper and that the new master's pg_hba.conf admits this host as the superuser (defaultSUReplAccessMode). After {} refused attempts in a row the keeper gives up on pg_rewind and copies the data dir again with pg_basebackup", crate::rewind::REWIND_ATTEMPTS)]
    RewindSource { step: &'static str, describe: String, source: tokio_postgres::Error },
    #[error("start: postgres exited ({status}) while starting; see its messages in the keeper's output (common causes: the port is in use, a bad pgParameters value)")]
    StartExited { status: String },
    #[error("start: postgres did not accept connections within {timeout:?} (the cluster spec's dbWaitReadyTimeout); it is left running and checked again on the next pass")]
    StartTimeout { timeout: Duration },
    #[error("{step}: {reason}")]
    Precondition { step: &'static str, reason: String },
    /// A connection or query that got no answer in time: the server accepted the connection
    /// (or was reached) but is frozen, overloaded or cut off. The pass ends so the keeper can
    /// plan again from a fresh observation instead of waiting on it (TCP keepalive: hours).
    #[error("{step}: {what} got no answer within {timeout:?} (the cluster spec's {limit}); the server may be frozen, overloaded or unreachable. Retrying on the next pass")]
    Timeout { step: &'static str, what: &'static str, timeout: Duration, limit: &'static str },
    #[error("refusing to apply initMode {init_mode} for db {db}: it would destroy the data this keeper holds ({found}). If the cluster data in the store was lost or re-created, restore it (or create the cluster with initMode existing from the keeper holding the newest data) instead. To throw this data away on purpose, restart this keeper with --allow-reinit (STKEEPER_ALLOW_REINIT=true), then remove the flag. Waiting")]
    WouldDestroyData { init_mode: &'static str, db: String, found: String },
}

/// The last `lines` lines of a program's output, for error messages.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = all.len().saturating_sub(lines);
    all[start..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\n\nc\nd\n", 2), "c\nd");
        assert_eq!(tail("", 3), "");
        assert_eq!(tail("x", 3), "x");
    }

    #[test]
    fn tool_errors_say_what_to_do() {
        let e = StepError::Tool { step: "basebackup", tool: Tool::BaseBackup, status: "exit status: 1".into(), tail: "FATAL: no pg_hba.conf entry".into() };
        let text = e.to_string();
        assert!(text.contains("pg_basebackup failed"), "{text}");
        assert!(text.contains("pg_hba.conf entry"), "{text}");
        assert!(text.contains("--pg-repl-username"), "{text}");
        assert!(StartupError::Root.to_string().contains("runuser -u postgres"));
        let e = StepError::WouldDestroyData { init_mode: "new", db: "db9".into(), found: "PostgreSQL data in /d/postgres".into() };
        let text = e.to_string();
        assert!(text.contains("--allow-reinit") && text.contains("PostgreSQL data in /d/postgres") && text.contains("db9"), "{text}");
    }
}
