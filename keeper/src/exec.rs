//! The executor: does the I/O of each plan step. Steps run in order; the first failure stops the
//! pass with a `StepError` naming the step, and the next pass plans again from a fresh
//! observation. Each step is idempotent: stopping a stopped postgres, dropping a missing slot or
//! writing an identical file succeeds.
//!
//! Every PostgreSQL program's exit status is checked (`process::run_tool`); passwords reach them
//! only through files: pg_basebackup and pg_rewind read the 0600 pgpass file (`PGPASSFILE`),
//! initdb reads the superuser password from a 0600 `--pwfile` removed right after.

use crate::config::KeeperConfig;
use crate::desired::Target;
use crate::error::{StepError, Tool};
use crate::plan::{Step, WaitReason};
use crate::process::{self, run_tool, PgChild};
use crate::rewind::{self, RewindAttempts, RewindFailure, Verdict};
use crate::state::{self, DbState};
use crate::{autoconf, conf, sql};
use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long pg_ctl stop / promote may take.
const PG_CTL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long initdb may take.
const INITDB_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs steps; owns the postgres child and what the keeper remembers between passes.
pub struct Executor {
    cfg: Arc<KeeperConfig>,
    pub child: PgChild,
    /// Hash of the configuration postgres was last started or reloaded with.
    pub conf_applied: Option<u64>,
    /// The db uid for which pg_rewind failed in this process (resync then uses pg_basebackup).
    pub rewind_failed_for: Option<String>,
    /// Failed rewind attempts in a row, which decide `rewind_failed_for` (see `rewind`).
    rewind_attempts: RewindAttempts,
    /// dbstate.json as last read or written.
    pub recorded: Option<DbState>,
    /// The last plan asked to report a missing data dir.
    pub data_dir_missing: bool,
    /// The slot whose failed drop was last logged, and when: a drop retried every pass is
    /// logged once a minute.
    slot_drop_warned: Option<(String, Instant)>,
}

impl Executor {
    pub fn new(cfg: Arc<KeeperConfig>, recorded: Option<DbState>) -> Executor {
        Executor {
            cfg,
            child: PgChild::default(),
            conf_applied: None,
            rewind_failed_for: None,
            rewind_attempts: RewindAttempts::default(),
            recorded,
            data_dir_missing: false,
            slot_drop_warned: None,
        }
    }

    /// Whether a postmaster runs on PGDATA (our child, or an adopted one found through
    /// postmaster.pid). Reaps our child.
    pub fn running(&mut self) -> bool {
        if let Some(status) = self.child.reap() {
            tracing::warn!(%status, "postgres exited by itself");
            self.conf_applied = None;
        }
        self.child.alive() || process::postmaster_pid(&self.cfg.pgdata).is_some()
    }

    /// Runs `steps` in order, stopping at the first failure. `verbose`: log each step at info
    /// (a new plan), else at debug (the same plan as last pass, e.g. a retry).
    pub async fn run(&mut self, steps: &[Step], target: &Target, verbose: bool) -> Result<(), StepError> {
        for step in steps {
            let started = Instant::now();
            if verbose {
                tracing::info!(step = step.name(), detail = ?step, "executing");
            } else {
                tracing::debug!(step = step.name(), detail = ?step, "executing");
            }
            let result = self.step(step, target).await;
            if let (Step::Rewind, Some(db)) = (step, &target.desired.db) {
                self.count_rewind(&db.uid, result.as_ref().err());
            }
            if let Err(err) = &result {
                tracing::debug!(step = step.name(), error = %err, "step failed");
            } else {
                tracing::debug!(step = step.name(), elapsed = ?started.elapsed(), "step done");
            }
            result?;
        }
        Ok(())
    }

    /// Counts an attempt of the rewind step for `db`; marks pg_rewind as failed for it (the next
    /// plan resyncs with pg_basebackup) once `rewind::Verdict` says so.
    fn count_rewind(&mut self, db: &str, err: Option<&StepError>) {
        let Some(err) = err else {
            self.rewind_attempts.succeeded();
            return;
        };
        let why = rewind::classify(err);
        match self.rewind_attempts.failed(db, why) {
            Verdict::FallBack { counted } => {
                if self.rewind_failed_for.as_deref() != Some(db) {
                    let reason = if why == RewindFailure::RewindFailed { "pg_rewind failed" } else { "the rewind source refused the keeper" };
                    tracing::warn!(db, error = %err, attempts = counted, reason, "giving up on pg_rewind for this db: falling back to a full resync (the data dir is emptied and copied again with pg_basebackup)");
                }
                self.rewind_failed_for = Some(db.to_string());
            }
            Verdict::Retry { counted } if why != RewindFailure::SourceNotReady => {
                tracing::warn!(db, error = %err, attempt = counted, of = rewind::REWIND_ATTEMPTS, "rewind attempt failed; trying pg_rewind again on the next pass before falling back to a full resync");
            }
            Verdict::Retry { .. } => {}
        }
    }

    async fn step(&mut self, step: &Step, t: &Target) -> Result<(), StepError> {
        let cfg = Arc::clone(&self.cfg);
        let io = |what: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| StepError::Io { step: step.name(), what, path, source }
        };
        match step {
            Step::Stop => self.stop("fast").await,
            Step::Start => self.start(t).await,
            Step::Restart => {
                self.stop("fast").await?;
                self.start(t).await
            }
            Step::Reload => {
                self.pg_ctl("reload", &["reload"]).await?;
                // What postgres now runs with is what is on disk: the full or the restricted file.
                self.conf_applied = crate::observe::conf_on_disk(&cfg.pgdata);
                Ok(())
            }
            Step::Promote => self.pg_ctl("promote", &["promote", "-w", "-t", &PG_CTL_TIMEOUT.as_secs().to_string()]).await.map(|_| ()),
            Step::RemoveDataDir => remove_contents(&cfg.pgdata).map_err(io("empty", &cfg.pgdata)),
            Step::InitDb => {
                self.initdb(t).await?;
                self.neutralize_auto_conf(step)
            }
            Step::BaseBackup => {
                let src = t.source.as_ref().ok_or_else(|| no_source(step))?;
                tracing::info!(source = %src.describe, "copying the data dir with pg_basebackup");
                self.write_pgpass(step)?;
                let args: Vec<OsString> = vec!["-D".into(), cfg.pgdata.clone().into(), "-d".into(), basebackup_conninfo(&src.repl_conninfo).into(), "-X".into(), "stream".into(), "-c".into(), "fast".into(), "--no-password".into()];
                self.tool(step, Tool::BaseBackup, "pg_basebackup", &args, sync_kill_timeout(t.timing.sync_timeout)).await?;
                // The copy brings the source's postgresql.auto.conf along.
                self.neutralize_auto_conf(step)
            }
            Step::Rewind => {
                let src = t.source.as_ref().and_then(|s| s.su_conninfo.as_ref().map(|c| (s, c))).ok_or_else(|| no_source(step))?;
                // The source must already be promoted: see sql::prepare_rewind_source.
                let timeout = t.timing.request_timeout;
                let prepare = sql::prepare_rewind_source(&cfg, &src.0.host, src.0.port, timeout);
                match within(step, "the rewind source's connection and CHECKPOINT", timeout, "requestTimeout", prepare).await? {
                    Ok(true) => {}
                    Ok(false) => {
                        return Err(StepError::Precondition {
                            step: step.name(),
                            reason: format!("the new master {} is not promoted yet; retrying on the next pass", src.0.describe),
                        })
                    }
                    Err(source) => return Err(StepError::RewindSource { step: step.name(), describe: src.0.describe.clone(), source }),
                }
                tracing::info!(source = %src.0.describe, "rewinding the data dir with pg_rewind");
                self.write_pgpass(step)?;
                let auto_conf = cfg.pgdata.join(autoconf::AUTO_CONF_FILE);
                autoconf::remove_symlink(&cfg.pgdata).map_err(io("remove", &auto_conf))?;
                let args: Vec<OsString> = vec![format!("--target-pgdata={}", cfg.pgdata.display()).into(), format!("--source-server={}", src.1).into()];
                self.tool(step, Tool::Rewind, "pg_rewind", &args, sync_kill_timeout(t.timing.sync_timeout)).await?;
                // pg_rewind copied the source's own configuration; ours is rewritten next.
                self.neutralize_auto_conf(step)
            }
            Step::WriteConfig => self.write_config(t, step, &t.pg_hba),
            Step::WriteRestrictedConfig => self.write_config(t, step, &t.pg_hba_restricted),
            Step::CreateStandbySignal => {
                state::atomic_write(&cfg.pgdata.join("standby.signal"), b"", 0o600).map_err(io("write", &cfg.pgdata.join("standby.signal")))
            }
            Step::CreateReplicationRole => {
                let work = async {
                    let client = sql::connect(&cfg, t.timing.request_timeout).await?;
                    sql::ensure_replication_role(&client, &cfg.repl_username, cfg.repl_password.as_ref()).await
                };
                local_sql(step, t, work).await
            }
            Step::CreateSlot(name) => {
                let work = async {
                    let client = sql::connect(&cfg, t.timing.request_timeout).await?;
                    sql::create_slot(&client, name).await
                };
                local_sql(step, t, work).await
            }
            Step::DropSlot(name) => {
                // A failed drop is logged and the pass goes on, as in Stolon: the usual cause is
                // a removed standby that is still connected (the slot is active), and stopping
                // the pass here would keep the master from ever recording a new generation (a
                // NotConverged failover of a healthy master). The next pass tries again.
                let work = async {
                    let client = sql::connect(&cfg, t.timing.request_timeout).await?;
                    sql::drop_slot(&client, name).await
                };
                let dropped = local_sql(step, t, work).await;
                if let Err(err) = dropped {
                    let repeated = self.slot_drop_warned.as_ref().is_some_and(|(slot, at)| slot == name && at.elapsed() < Duration::from_secs(60));
                    if !repeated {
                        tracing::warn!(slot = %name, error = %err, "cannot drop a stale replication slot (standby still connected?); going on, retrying on the next pass");
                        self.slot_drop_warned = Some((name.clone(), Instant::now()));
                    }
                }
                Ok(())
            }
            Step::RecordDbState(st) => {
                state::write_db_state(&cfg.data_dir, st).map_err(io("write", &cfg.data_dir.join(state::DB_STATE_FILE)))?;
                self.recorded = Some(st.clone());
                Ok(())
            }
            Step::ReportDataDirMissing => {
                if !self.data_dir_missing {
                    tracing::warn!(pgdata = %cfg.pgdata.display(), "the data dir of this keeper's db is missing: reporting dataDirMissing and waiting for the sentinel (no initdb)");
                }
                self.data_dir_missing = true;
                Ok(())
            }
            Step::Wait(WaitReason::WouldDestroyData { recorded, pg_data }) => {
                let db = t.desired.db.as_ref();
                let init_mode = match db.map(|db| db.init_mode) {
                    Some(clusterview::data::DbInitMode::New) => "new",
                    _ => "resync",
                };
                Err(StepError::WouldDestroyData {
                    init_mode,
                    db: db.map(|db| db.uid.clone()).unwrap_or_default(),
                    found: describe_found_data(&cfg.pgdata, recorded.as_ref(), *pg_data, &t.desired.cluster_uid),
                })
            }
            Step::Wait(_) => Ok(()),
        }
    }

    async fn tool(&self, step: &Step, tool: Tool, program: &str, args: &[OsString], timeout: Duration) -> Result<(), StepError> {
        let args: Vec<&OsStr> = args.iter().map(OsString::as_os_str).collect();
        let envs = [("PGPASSFILE", self.cfg.pgpass.as_os_str()), ("PGCONNECT_TIMEOUT", OsStr::new("10"))];
        run_tool(step.name(), tool, &self.cfg.program(program), &args, &envs, timeout).await.map(|_| ())
    }

    async fn pg_ctl(&self, step: &'static str, args: &[&str]) -> Result<String, StepError> {
        let mut all: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        all.extend([OsStr::new("-D"), self.cfg.pgdata.as_os_str()]);
        run_tool(step, Tool::PgCtl, &self.cfg.program("pg_ctl"), &all, &[], PG_CTL_TIMEOUT + Duration::from_secs(5)).await
    }

    /// Stops postgres (`mode` fast or immediate), waits for it, and reaps our child. Stopping a stopped
    /// postgres succeeds.
    pub async fn stop(&mut self, mode: &str) -> Result<(), StepError> {
        if !self.running() {
            self.child.wait_exit(Duration::from_secs(1)).await;
            return Ok(());
        }
        if process::postmaster_pid(&self.cfg.pgdata).is_none() {
            // Our child runs but its data dir (and postmaster.pid) is gone: pg_ctl cannot reach it.
            tracing::warn!("postgres runs without its postmaster.pid (data dir wiped?): signalling it directly");
            self.child.interrupt();
            self.child.wait_exit(PG_CTL_TIMEOUT).await;
            self.conf_applied = None;
            return Ok(());
        }
        let timeout = PG_CTL_TIMEOUT.as_secs().to_string();
        self.pg_ctl("stop", &["stop", "-m", mode, "-w", "-t", &timeout]).await?;
        self.child.wait_exit(Duration::from_secs(10)).await;
        self.conf_applied = None;
        Ok(())
    }

    async fn start(&mut self, t: &Target) -> Result<(), StepError> {
        if self.running() {
            return Ok(());
        }
        // A pgpass deleted by someone must not stop replication.
        self.write_pgpass(&Step::Start)?;
        // Whatever put a postgresql.auto.conf back (a copy made by hand, an adopted data dir),
        // postgres never starts with settings the keeper does not manage.
        self.neutralize_auto_conf(&Step::Start)?;
        self.child.spawn(&self.cfg.program("postgres"), &self.cfg.pgdata)?;
        self.conf_applied = crate::observe::conf_on_disk(&self.cfg.pgdata);
        let deadline = Instant::now() + t.timing.db_wait_ready_timeout;
        loop {
            if let Some(status) = self.child.reap() {
                self.conf_applied = None;
                return Err(StepError::StartExited { status: status.to_string() });
            }
            // Each attempt (connect, startup, SELECT 1) is bounded as a whole, by what is left of
            // dbWaitReadyTimeout: a postgres that accepts and never answers must not hold the
            // pass past the deadline.
            let left = deadline.saturating_duration_since(Instant::now());
            let attempt = async {
                let client = sql::connect(&self.cfg, Duration::from_secs(2)).await?;
                client.simple_query("SELECT 1").await
            };
            if let Ok(Ok(_)) = tokio::time::timeout(left.min(Duration::from_secs(2)), attempt).await {
                tracing::info!("postgres accepts connections");
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(StepError::StartTimeout { timeout: t.timing.db_wait_ready_timeout });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn initdb(&mut self, t: &Target) -> Result<(), StepError> {
        let cfg = Arc::clone(&self.cfg);
        let pwfile = cfg.data_dir.join(".initdb-pwfile");
        let mut args: Vec<OsString> = vec!["-D".into(), cfg.pgdata.clone().into(), "-U".into(), cfg.su_username.clone().into(), "--auth-local=trust".into(), format!("--auth-host={}", cfg.su_auth.as_hba()).into()];
        if let Some(pw) = &cfg.su_password {
            state::atomic_write(&pwfile, format!("{}\n", pw.expose()).as_bytes(), 0o600)
                .map_err(|source| StepError::Io { step: "initdb", what: "write", path: pwfile.clone(), source })?;
            args.push(format!("--pwfile={}", pwfile.display()).into());
        }
        let nc = &t.new_config;
        if let Some(locale) = &nc.locale {
            args.push(format!("--locale={locale}").into());
        }
        if let Some(encoding) = &nc.encoding {
            args.push(format!("--encoding={encoding}").into());
        }
        args.extend(data_checksums_arg(nc.data_checksums, cfg.pg_version.major).map(OsString::from));
        let result = self.tool(&Step::InitDb, Tool::InitDb, "initdb", &args, INITDB_TIMEOUT).await;
        let _ = std::fs::remove_file(&pwfile);
        result
    }

    /// Makes postgresql.auto.conf a symlink to /dev/null (`autoconf`), logging the settings of a
    /// file moved aside.
    fn neutralize_auto_conf(&self, step: &Step) -> Result<(), StepError> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let path = self.cfg.pgdata.join(autoconf::AUTO_CONF_FILE);
        match autoconf::neutralize(&self.cfg.pgdata, &self.cfg.data_dir, now) {
            Ok(autoconf::Neutralized::MovedAside { backup, settings }) => {
                tracing::warn!(?settings, backup = %backup.display(), "postgresql.auto.conf (ALTER SYSTEM) held settings; they are ignored from now on (moved aside): set them in the cluster spec's pgParameters instead");
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(source) => Err(StepError::Io { step: step.name(), what: "replace with a symlink to /dev/null", path, source }),
        }
    }

    fn write_pgpass(&self, step: &Step) -> Result<(), StepError> {
        let cfg = &self.cfg;
        state::write_pgpass(&cfg.data_dir, &[(&cfg.su_username, cfg.su_password.as_ref()), (&cfg.repl_username, cfg.repl_password.as_ref())])
            .map(|_| ())
            .map_err(|source| StepError::Io { step: step.name(), what: "write", path: cfg.pgpass.clone(), source })
    }

    fn write_config(&self, t: &Target, step: &Step, pg_hba: &str) -> Result<(), StepError> {
        let pgdata = &self.cfg.pgdata;
        let err = |what: &'static str, path: std::path::PathBuf| move |source| StepError::Io { step: step.name(), what, path, source };
        self.write_pgpass(step)?;
        let stolon = pgdata.join(conf::STOLON_CONF_FILE);
        state::atomic_write(&stolon, t.stolon_conf.as_bytes(), 0o600).map_err(err("write", stolon.clone()))?;
        let hba = pgdata.join("pg_hba.conf");
        state::atomic_write(&hba, pg_hba.as_bytes(), 0o600).map_err(err("write", hba.clone()))?;
        let main = pgdata.join("postgresql.conf");
        let text = match std::fs::read_to_string(&main) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(err("read", main.clone())(e)),
        };
        if !conf::include_is_last(&text) {
            state::atomic_write(&main, conf::with_include_last(&text).as_bytes(), 0o600).map_err(err("write", main.clone()))?;
        }
        Ok(())
    }

}

/// Runs `work` (an I/O of `step` on a server) within `timeout`; a `StepError::Timeout` when it
/// does not finish. libpq's and tokio-postgres' connect timeouts cover only the socket: a
/// server that accepts and never answers (SIGSTOPped, overloaded, a half-open connection
/// after a partition) would otherwise hold the pass until TCP keepalive gives up, hours later.
async fn within<T>(step: &Step, what: &'static str, timeout: Duration, limit: &'static str, work: impl std::future::Future<Output = T>) -> Result<T, StepError> {
    tokio::time::timeout(timeout, work).await.map_err(|_| {
        tracing::warn!(step = step.name(), what, ?timeout, "no answer in time; ending the pass");
        StepError::Timeout { step: step.name(), what, timeout, limit }
    })
}

/// A local SQL step (connection and statements) bounded by requestTimeout.
async fn local_sql(step: &Step, t: &Target, work: impl std::future::Future<Output = Result<(), tokio_postgres::Error>>) -> Result<(), StepError> {
    within(step, "SQL on the local postgres", t.timing.request_timeout, "requestTimeout", work).await?.map_err(|source| StepError::Sql { step: step.name(), source })
}

/// What a refused re-initialization would have destroyed, for the operator.
fn describe_found_data(pgdata: &Path, recorded: Option<&DbState>, pg_data: bool, cluster_uid: &str) -> String {
    let mut found = Vec::new();
    if pg_data {
        found.push(format!("PostgreSQL data in {} (PG_VERSION present)", pgdata.display()));
    }
    if let Some(r) = recorded {
        let cluster = match r.cluster_uid.as_deref() {
            Some(c) if c == cluster_uid => format!("this cluster ({c})"),
            Some(c) => format!("cluster {c}, not this cluster {cluster_uid}"),
            None => "a cluster an older keeper did not record".to_string(),
        };
        found.push(format!("dbstate.json naming db {} of {cluster}", r.db_uid));
    }
    found.join("; ")
}

fn no_source(step: &Step) -> StepError {
    StepError::Precondition { step: step.name(), reason: "clusterdata gives no address for the followed db yet".into() }
}

/// initdb's checksum flag for the spec's `newConfig.dataChecksums`. Unset keeps the version's
/// default (off before 18, on from 18). `false` must be said explicitly from 18 on, where initdb
/// enables checksums by default; `--no-data-checksums` does not exist before 18.
fn data_checksums_arg(wanted: Option<bool>, pg_major: u32) -> Option<&'static str> {
    match wanted {
        Some(true) => Some("--data-checksums"),
        Some(false) if pg_major >= 18 => Some("--no-data-checksums"),
        Some(false) | None => None,
    }
}

/// Removes everything inside `dir` (the dir itself stays: it may be a mount point).
pub fn remove_contents(dir: &Path) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// The source's replication conninfo with another application_name: a pg_basebackup WAL stream
/// under the standby's own name (`stolon_<db>`) would be counted as that synchronous standby
/// and could acknowledge commits before the standby even exists. libpq takes the last value of
/// a repeated keyword.
fn basebackup_conninfo(repl_conninfo: &str) -> String {
    format!("{repl_conninfo} application_name='stolon-basebackup'")
}

/// The kill timeout of pg_basebackup and pg_rewind: `syncTimeout`, where 0 (the default, as in
/// Stolon) means no limit. A copy of a large data dir may take hours; killing it only makes the
/// keeper wipe and start over forever. `Duration::MAX` makes `tokio::time::timeout` set no
/// deadline at all (its deadline is not representable).
fn sync_kill_timeout(sync_timeout: Duration) -> Duration {
    if sync_timeout.is_zero() {
        Duration::MAX
    } else {
        sync_timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initdb_checksum_flag_per_version() {
        let rows = [
            (15, Some(true), Some("--data-checksums")),
            (15, Some(false), None),
            (15, None, None),
            (17, Some(true), Some("--data-checksums")),
            (17, Some(false), None),
            (17, None, None),
            (18, Some(true), Some("--data-checksums")),
            (18, Some(false), Some("--no-data-checksums")),
            (18, None, None),
        ];
        for (major, wanted, want) in rows {
            assert_eq!(data_checksums_arg(wanted, major), want, "PostgreSQL {major}, dataChecksums {wanted:?}");
        }
    }

    /// A basebackup or rewind under `syncTimeout` 0 (the default: no limit, as Stolon) must run to
    /// completion; under a positive syncTimeout it is killed once it outlasts it.
    #[tokio::test]
    async fn sync_timeout_zero_never_kills_the_copy() {
        let sleep = Path::new("/bin/sleep");
        let args = [OsStr::new("0.3")];
        let unlimited = run_tool("basebackup", Tool::BaseBackup, sleep, &args, &[], sync_kill_timeout(Duration::ZERO)).await;
        assert!(unlimited.is_ok(), "syncTimeout 0 killed the tool: {unlimited:?}");
        let limited = run_tool("basebackup", Tool::BaseBackup, sleep, &args, &[], sync_kill_timeout(Duration::from_millis(50))).await;
        assert!(matches!(limited, Err(StepError::ToolTimeout { .. })), "{limited:?}");
    }

    /// Safety review §14a: a stale `stolon_` slot that cannot be dropped (its standby is still
    /// connected, so the slot is active) must not stop the pass: the steps after it still run.
    #[tokio::test]
    async fn a_slot_that_cannot_be_dropped_does_not_stop_the_pass() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = crate::desired::tests::config("k1");
        cfg.data_dir = dir.path().to_path_buf();
        cfg.pgdata = dir.path().join("postgres");
        cfg.pgpass = dir.path().join("pgpass");
        let cfg = Arc::new(cfg);
        let t = crate::desired::target(&crate::desired::tests::cluster(r#"{"initMode":"new"}"#), &cfg, None);
        let mut exec = Executor::new(Arc::clone(&cfg), None);
        let rec = DbState { db_uid: "db1".into(), generation: Some(2), cluster_uid: None, init_pending: false };
        // No postgres runs here, so the drop fails, like one refused with "slot is active".
        let steps = [Step::DropSlot("stolon_gone".into()), Step::RecordDbState(rec.clone())];
        exec.run(&steps, &t, false).await.unwrap();
        assert_eq!(state::read_db_state(dir.path()).unwrap(), Some(rec));
    }

    #[test]
    fn found_data_names_the_data_and_the_cluster() {
        let rec = DbState { db_uid: "old".into(), generation: Some(3), cluster_uid: Some("c0".into()), init_pending: false };
        let text = describe_found_data(Path::new("/k/postgres"), Some(&rec), true, "c1");
        assert_eq!(text, "PostgreSQL data in /k/postgres (PG_VERSION present); dbstate.json naming db old of cluster c0, not this cluster c1");
        let rec = DbState { cluster_uid: None, ..rec };
        assert!(describe_found_data(Path::new("/k/postgres"), Some(&rec), false, "c1").contains("an older keeper"));
    }

    #[test]
    fn remove_contents_keeps_the_dir_and_tolerates_absence() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("pg");
        std::fs::create_dir_all(d.join("base/1")).unwrap();
        std::fs::write(d.join("PG_VERSION"), "15").unwrap();
        std::os::unix::fs::symlink("/nonexistent", d.join("link")).unwrap();
        remove_contents(&d).unwrap();
        assert!(d.is_dir());
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 0);
        remove_contents(&dir.path().join("nope")).unwrap();
    }
}

/// Every step that talks to a server ends within its budget when the server accepts the
/// connection and never answers (frozen, overloaded, half-open after a partition).
#[cfg(test)]
mod bound_tests {
    use super::*;
    use crate::desired::tests::{cluster, config};
    use std::time::Duration;

    /// A unix socket that accepts every connection and never answers.
    fn unix_silent(path: &Path) -> tokio::task::JoinHandle<()> {
        let listener = tokio::net::UnixListener::bind(path).unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                held.push(conn);
            }
        })
    }

    /// A TCP port on 127.0.0.1 that accepts every connection and never answers.
    async fn tcp_silent() -> (u16, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                held.push(conn);
            }
        });
        (port, task)
    }

    /// A standby keeper `k2` in a temp dir; its target follows db1, with a 300 ms requestTimeout.
    fn standby(dir: &Path) -> (Arc<KeeperConfig>, Target) {
        let mut cfg = config("k2");
        cfg.data_dir = dir.to_path_buf();
        cfg.pgdata = dir.join("postgres");
        cfg.pgpass = dir.join("pgpass");
        let mut t = crate::desired::target(&cluster(r#"{"initMode": "new"}"#), &cfg, None);
        t.timing.request_timeout = Duration::from_millis(300);
        t.timing.db_wait_ready_timeout = Duration::from_millis(500);
        (Arc::new(cfg), t)
    }

    async fn run_bounded(exec: &mut Executor, step: Step, t: &Target) -> Result<(), StepError> {
        let started = Instant::now();
        let result = tokio::time::timeout(Duration::from_secs(5), exec.run(std::slice::from_ref(&step), t, false)).await;
        let Ok(result) = result else { panic!("{step:?} still running after 5 s: unbounded") };
        assert!(started.elapsed() < Duration::from_secs(3), "{step:?} took {:?}", started.elapsed());
        result
    }

    #[tokio::test]
    async fn a_rewind_source_that_accepts_but_never_answers_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let (cfg, mut t) = standby(dir.path());
        let (port, _hold) = tcp_silent().await;
        let src = t.source.as_mut().unwrap();
        (src.host, src.port) = ("127.0.0.1".into(), port);
        let mut exec = Executor::new(cfg, None);
        let err = run_bounded(&mut exec, Step::Rewind, &t).await.unwrap_err();
        assert!(matches!(err, StepError::Timeout { step: "rewind", .. }), "{err}");
        // A frozen source is not a refusal: it does not count toward giving up on pg_rewind.
        assert_eq!(crate::rewind::classify(&err), crate::rewind::RewindFailure::SourceNotReady);
        assert!(exec.rewind_failed_for.is_none());
    }

    #[tokio::test]
    async fn local_sql_steps_on_a_postgres_that_never_answers_are_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let (cfg, t) = standby(dir.path());
        let _hold = unix_silent(&cfg.socket_dir().join(format!(".s.PGSQL.{}", cfg.port)));
        let mut exec = Executor::new(cfg, None);
        for step in [Step::CreateReplicationRole, Step::CreateSlot("stolon_x".into())] {
            let err = run_bounded(&mut exec, step.clone(), &t).await.unwrap_err();
            assert!(matches!(err, StepError::Timeout { .. }), "{step:?}: {err}");
        }
        // A failed slot drop is logged and the pass goes on (safety review §14a), but it too must
        // end within the bound rather than hold the pass.
        run_bounded(&mut exec, Step::DropSlot("stolon_x".into()), &t).await.unwrap();
    }

    #[tokio::test]
    async fn start_gives_up_at_db_wait_ready_timeout_when_postgres_never_answers() {
        let dir = tempfile::tempdir().unwrap();
        let (cfg, t) = standby(dir.path());
        let mut cfg = Arc::try_unwrap(cfg).unwrap();
        // A "postgres" that runs and never opens its own socket; the socket is held by a
        // listener that accepts and never answers.
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::fs::write(bin.join("postgres"), "#!/bin/sh\nexec sleep 30\n").unwrap();
        std::fs::set_permissions(bin.join("postgres"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        cfg.bin_dir = bin;
        std::fs::create_dir(&cfg.pgdata).unwrap();
        let _hold = unix_silent(&cfg.socket_dir().join(format!(".s.PGSQL.{}", cfg.port)));
        let mut exec = Executor::new(Arc::new(cfg), None);
        let err = run_bounded(&mut exec, Step::Start, &t).await.unwrap_err();
        assert!(matches!(err, StepError::StartTimeout { .. }), "{err}");
        exec.child.interrupt();
    }
}
