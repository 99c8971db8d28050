//! Observation: what the data dir and postgres look like right now, as the plan's `Observed`.
//!
//! Read-only: files in PGDATA, `postmaster.pid`, `pg_controldata` when postgres is down, and one
//! SQL round trip when it is up (plus IDENTIFY_SYSTEM on a standby, for its replayed timeline). The parsers are pure and tested; the rest is thin I/O.

use crate::config::KeeperConfig;
use crate::conf;
use crate::error::Tool;
use crate::plan::{DataDir, Observed};
use crate::process::{self, run_tool};
use crate::sql::{self, PgStatus};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// PGDATA could not be read. Not the same as missing or partial: a transient error (EMFILE,
/// EIO) must not make the keeper report `dataDirMissing` (the sentinel would drop the db and
/// force a resync) nor let the plan wipe or adopt it. The pass does nothing and the keeper
/// reports postgres as not healthy until the dir reads again.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the data dir {}: {source}; doing nothing this pass and reporting postgres as not healthy until it reads again (check the disk, and the keeper's open-file limit)", path.display())]
pub struct DataDirUnreadable {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Classifies PGDATA; an error when it cannot be read (anything but "does not exist").
pub fn classify_data_dir(pgdata: &Path) -> Result<DataDir, DataDirUnreadable> {
    let unreadable = |source| DataDirUnreadable { path: pgdata.to_path_buf(), source };
    let mut entries = match std::fs::read_dir(pgdata) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(DataDir::Missing),
        Err(e) => return Err(unreadable(e)),
    };
    match entries.next() {
        None => return Ok(DataDir::Empty),
        Some(Err(e)) => return Err(unreadable(e)),
        Some(Ok(_)) => {}
    }
    let present = is_file(&pgdata.join("PG_VERSION")).map_err(unreadable)? && is_file(&pgdata.join("global").join("pg_control")).map_err(unreadable)?;
    Ok(if present { DataDir::Present } else { DataDir::Partial })
}

/// Whether `path` is a file; an error only when that cannot be told (not for "no such file",
/// nor for a parent that is not a directory: both mean "not a data directory").
fn is_file(path: &Path) -> std::io::Result<bool> {
    match std::fs::metadata(path) {
        Ok(meta) => Ok(meta.is_file()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) => Ok(false),
        Err(e) => Err(e),
    }
}

/// What `pg_controldata` says (run with LC_ALL=C, so the labels are English).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControlData {
    pub system_id: Option<String>,
    /// "shut down", "shut down in recovery", "in production", "in archive recovery", ...
    pub cluster_state: Option<String>,
}

pub fn parse_controldata(text: &str) -> ControlData {
    let field = |label: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(label).and_then(|rest| rest.strip_prefix(':')))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    ControlData { system_id: field("Database system identifier"), cluster_state: field("Database cluster state") }
}

/// Runs pg_controldata on PGDATA.
pub async fn control_data(cfg: &KeeperConfig, timeout: Duration) -> Option<ControlData> {
    let args = [cfg.pgdata.as_os_str()];
    let envs = [("LC_ALL", OsStr::new("C")), ("LANG", OsStr::new("C"))];
    match run_tool("observe", Tool::ControlData, &cfg.program("pg_controldata"), &args, &envs, timeout).await {
        Ok(text) => Some(parse_controldata(&text)),
        Err(err) => {
            tracing::warn!(error = %err, "cannot read pg_control");
            None
        }
    }
}

/// Hash of the configuration files on disk, comparable to `Desired::conf_hash`.
pub fn conf_on_disk(pgdata: &Path) -> Option<u64> {
    let stolon = std::fs::read_to_string(pgdata.join(conf::STOLON_CONF_FILE)).ok()?;
    let hba = std::fs::read_to_string(pgdata.join("pg_hba.conf")).unwrap_or_default();
    let main = std::fs::read_to_string(pgdata.join("postgresql.conf")).unwrap_or_default();
    Some(conf::config_hash(&stolon, &hba, conf::include_is_last(&main)))
}

/// postgres' status when a postmaster runs on PGDATA and answers SQL.
pub async fn pg_status(cfg: &KeeperConfig, timeout: Duration) -> Option<PgStatus> {
    process::postmaster_pid(&cfg.pgdata)?;
    status_within(cfg, timeout).await
}

/// Connects and reads the status, all within `timeout`. The whole check is bounded, not each
/// part: libpq's connect timeout covers only the socket, and a postgres that is overloaded (or
/// stopped with SIGSTOP) accepts the connection and then never answers the handshake.
async fn status_within(cfg: &KeeperConfig, timeout: Duration) -> Option<PgStatus> {
    let check = async {
        let client = match sql::connect(cfg, timeout).await {
            Ok(client) => client,
            Err(err) => {
                tracing::debug!(error = %err, "postgres does not answer");
                return None;
            }
        };
        match sql::query_status(&client, &cfg.repl_username).await {
            Ok(mut status) => {
                if status.in_recovery {
                    replay_timeline(cfg, &mut status).await;
                }
                Some(status)
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot read postgres' status");
                None
            }
        }
    };
    match tokio::time::timeout(timeout, check).await {
        Ok(status) => status,
        Err(_) => {
            tracing::warn!(?timeout, "postgres did not answer the status check within requestTimeout");
            None
        }
    }
}

/// Whether the last IDENTIFY_SYSTEM failed, to log a failure once rather than every check.
static IDENTIFY_FAILING: AtomicBool = AtomicBool::new(false);

/// Sets a standby's timeline to the one it replays (IDENTIFY_SYSTEM). When that cannot be
/// read, the SQL value stays: it can only be lower (a standby looks behind and is not elected,
/// never ahead), and the failure is logged.
async fn replay_timeline(cfg: &KeeperConfig, status: &mut PgStatus) {
    match crate::identify::identify_system(cfg).await {
        Ok(id) => {
            if IDENTIFY_FAILING.swap(false, Ordering::Relaxed) {
                tracing::info!("IDENTIFY_SYSTEM answers again: reporting the replayed timeline");
            }
            status.timeline_id = id.timeline_id;
        }
        Err(err) => {
            if !IDENTIFY_FAILING.swap(true, Ordering::Relaxed) {
                tracing::warn!(error = %err, fallback = status.timeline_id, "cannot read the replayed timeline with IDENTIFY_SYSTEM; reporting the timeline from pg_control and the walreceiver, which may be lower");
            }
        }
    }
}

/// What the executor remembers between passes (lost on restart, on purpose).
#[derive(Debug, Clone, Default)]
pub struct Memory {
    pub conf_applied: Option<u64>,
    pub rewind_failed: bool,
}

/// Observes the data dir and postgres. `running` comes from the caller, which owns the child.
pub async fn observe(cfg: &KeeperConfig, running: bool, memory: &Memory, timeout: Duration) -> Result<(Observed, Option<PgStatus>), DataDirUnreadable> {
    let data_dir = classify_data_dir(&cfg.pgdata)?;
    let status = if running { pg_status(cfg, timeout).await } else { None };
    let system_id = match (&status, data_dir, running) {
        (Some(s), _, _) => Some(s.system_id.clone()),
        (None, DataDir::Present, false) => control_data(cfg, timeout).await.and_then(|c| c.system_id),
        _ => None,
    };
    let observed = Observed {
        data_dir,
        holds_data: cfg.pgdata.join("PG_VERSION").exists(),
        system_id,
        running,
        healthy: status.is_some(),
        in_recovery: status.as_ref().map(|s| s.in_recovery),
        standby_signal: cfg.pgdata.join("standby.signal").exists(),
        conf_on_disk: conf_on_disk(&cfg.pgdata),
        conf_applied: if running { memory.conf_applied } else { None },
        pending_restart: status.as_ref().is_some_and(|s| s.pending_restart),
        repl_role_exists: status.as_ref().map(|s| s.repl_role_exists),
        slots: status.as_ref().filter(|s| !s.in_recovery).map(|s| s.slots.clone()),
        rewind_failed: memory.rewind_failed,
        // Filled by the pass when the plan needs it (a restarted sync master).
        in_sync_standbys: None,
    };
    Ok((observed, status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_dir_states() {
        let dir = tempfile::tempdir().unwrap();
        let pgdata = dir.path().join("postgres");
        let classify = |p: &Path| classify_data_dir(p).unwrap();
        assert_eq!(classify(&pgdata), DataDir::Missing);
        std::fs::create_dir(&pgdata).unwrap();
        assert_eq!(classify(&pgdata), DataDir::Empty);
        std::fs::write(pgdata.join("PG_VERSION"), "15\n").unwrap();
        assert_eq!(classify(&pgdata), DataDir::Partial);
        // `global` as a file: still just not a data directory.
        std::fs::write(pgdata.join("global"), "").unwrap();
        assert_eq!(classify(&pgdata), DataDir::Partial);
        std::fs::remove_file(pgdata.join("global")).unwrap();
        std::fs::create_dir(pgdata.join("global")).unwrap();
        std::fs::write(pgdata.join("global/pg_control"), b"x").unwrap();
        assert_eq!(classify(&pgdata), DataDir::Present);
    }

    #[tokio::test]
    async fn an_unreadable_data_dir_is_a_failed_observation_not_a_missing_or_partial_one() {
        // read_dir fails with something other than "not found" (here ENOTDIR; in production
        // EMFILE or EIO): before, this was classified Partial, and the plan reported
        // dataDirMissing.
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = crate::desired::tests::config("k1");
        cfg.data_dir = dir.path().to_path_buf();
        cfg.pgdata = dir.path().join("postgres");
        std::fs::write(&cfg.pgdata, "not a directory").unwrap();
        let err = classify_data_dir(&cfg.pgdata).unwrap_err();
        assert_eq!(err.path, cfg.pgdata);
        let observed = observe(&cfg, false, &Memory::default(), Duration::from_millis(300)).await;
        assert!(observed.is_err(), "{observed:?}");
    }

    #[tokio::test]
    async fn a_postgres_that_accepts_but_never_answers_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = crate::desired::tests::config("k1");
        cfg.data_dir = dir.path().to_path_buf();
        cfg.pgdata = dir.path().join("postgres");
        // The kernel accepts the connection; nobody ever answers the startup message.
        let listener = tokio::net::UnixListener::bind(cfg.socket_dir().join(format!(".s.PGSQL.{}", cfg.port))).unwrap();
        let _hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                held.push(conn);
            }
        });
        let started = std::time::Instant::now();
        assert_eq!(status_within(&cfg, Duration::from_millis(300)).await, None);
        assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    }

    #[test]
    fn controldata_fields() {
        let text = "pg_control version number:            1300\nCatalog version number:               202209061\nDatabase system identifier:           7351234567890123456\nDatabase cluster state:               shut down in recovery\n";
        let c = parse_controldata(text);
        assert_eq!(c.system_id.as_deref(), Some("7351234567890123456"));
        assert_eq!(c.cluster_state.as_deref(), Some("shut down in recovery"));
        assert_eq!(parse_controldata(""), ControlData::default());
    }

    #[test]
    fn conf_on_disk_matches_rendered_hash() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(conf_on_disk(dir.path()), None);
        std::fs::write(dir.path().join(conf::STOLON_CONF_FILE), "a = '1'\n").unwrap();
        std::fs::write(dir.path().join("pg_hba.conf"), "local all \"pg\" trust\n").unwrap();
        std::fs::write(dir.path().join("postgresql.conf"), conf::with_include_last("x = 1\n")).unwrap();
        assert_eq!(conf_on_disk(dir.path()), Some(conf::config_hash("a = '1'\n", "local all \"pg\" trust\n", true)));
        std::fs::write(dir.path().join("postgresql.conf"), "x = 1\n").unwrap();
        assert_eq!(conf_on_disk(dir.path()), Some(conf::config_hash("a = '1'\n", "local all \"pg\" trust\n", false)));
    }
}
