//! SQL on the local postgres, as the superuser over the unix socket in the keeper's data dir
//! (pg_hba `local ... trust` for the superuser; the socket directory is private to the keeper's
//! OS user). One connection per use: the keeper's pace is one pass per sleepInterval, and a fresh
//! connection never carries a broken session from a restarted postgres.

use crate::args::Secret;
use crate::config::KeeperConfig;
use crate::quote::{sql_ident, sql_literal};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

/// What postgres says about itself, in one round trip (plus settings and slots).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PgStatus {
    pub in_recovery: bool,
    pub system_id: String,
    /// The current timeline on a primary; on a standby, the timeline it replays
    /// (`identify::identify_system`; the SQL value until that answers).
    pub timeline_id: u32,
    /// Insert position on a primary; on a standby the furthest of the received (flushed) and
    /// the replayed positions: what a promotion would replay.
    pub xlog_pos: u64,
    /// Db uids of the standbys confirmed in sync (`insync`): listed in `listed_in_sync` and
    /// flushed up to where the master was when they were first seen listed. Not the configured
    /// synchronous_standby_names: a listed standby that is not caught up is not in sync.
    pub synchronous_standbys: Vec<String>,
    /// Db uids and flushed positions of the standbys `pg_stat_replication` shows streaming with
    /// `sync_state` sync or quorum, from their `stolon_<uid>` application names.
    pub listed_in_sync: Vec<(String, u64)>,
    /// The walreceiver is streaming.
    pub streaming: bool,
    pub pending_restart: bool,
    pub repl_role_exists: bool,
    /// Physical replication slots.
    pub slots: BTreeSet<String>,
    /// Settings that come from configuration files, minus the keeper's managed ones.
    pub pg_parameters: BTreeMap<String, String>,
}

/// Connects to the local postgres as the superuser.
pub async fn connect(cfg: &KeeperConfig, timeout: Duration) -> Result<Client, tokio_postgres::Error> {
    let mut pg = tokio_postgres::Config::new();
    pg.host_path(cfg.socket_dir())
        .port(cfg.port)
        .user(&cfg.su_username)
        .dbname("postgres")
        .application_name("stolon-keeper")
        .connect_timeout(timeout);
    let (client, connection) = pg.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(error = %err, "local postgres connection ended");
        }
    });
    Ok(client)
}

/// Prepares the postgres at `host:port` (a keeper's source) to be a pg_rewind source; returns
/// `Ok(false)` when it is still in recovery (not promoted yet: retry later). A just promoted
/// master gets a CHECKPOINT first, because its pg_control shows the new timeline only after one,
/// and pg_rewind reads the timeline there: without it pg_rewind reports "no rewind required"
/// and leaves the old master's diverged WAL in place.
pub async fn prepare_rewind_source(cfg: &KeeperConfig, host: &str, port: u16, timeout: Duration) -> Result<bool, tokio_postgres::Error> {
    let mut pg = tokio_postgres::Config::new();
    pg.host(host).port(port).user(&cfg.su_username).dbname("postgres").application_name("stolon-keeper").connect_timeout(timeout);
    if let Some(password) = &cfg.su_password {
        pg.password(password.expose());
    }
    let (client, connection) = pg.connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let row = client.query_one("SELECT pg_is_in_recovery()", &[]).await?;
    let in_recovery: bool = row.try_get(0)?;
    if in_recovery {
        return Ok(false);
    }
    client.batch_execute("CHECKPOINT").await?;
    Ok(true)
}

const STATUS_QUERY: &str = "
SELECT pg_is_in_recovery(),
       (SELECT system_identifier::text FROM pg_control_system()),
       (CASE WHEN pg_is_in_recovery()
             THEN COALESCE(GREATEST(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), '0/0'::pg_lsn)
             ELSE pg_current_wal_lsn() END)::text,
       (CASE WHEN pg_is_in_recovery()
             THEN GREATEST((SELECT timeline_id FROM pg_control_checkpoint()),
                           (SELECT received_tli FROM pg_stat_wal_receiver))
             ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END),
       ARRAY(SELECT application_name || '@' || COALESCE(flush_lsn, '0/0'::pg_lsn)::text
             FROM pg_stat_replication
             WHERE sync_state IN ('sync', 'quorum') AND state = 'streaming' ORDER BY 1),
       EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming'),
       EXISTS (SELECT 1 FROM pg_settings WHERE pending_restart),
       EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)";

/// Reads the status of the local postgres.
pub async fn query_status(client: &Client, repl_username: &str) -> Result<PgStatus, tokio_postgres::Error> {
    let row = client.query_one(STATUS_QUERY, &[&repl_username]).await?;
    let lsn: String = row.try_get(2)?;
    let timeline: Option<i32> = row.try_get(3)?;
    let slots = client
        .query("SELECT slot_name::text FROM pg_replication_slots WHERE slot_type = 'physical'", &[])
        .await?
        .iter()
        .map(|r| r.try_get::<_, String>(0))
        .collect::<Result<BTreeSet<_>, _>>()?;
    let params = client
        .query("SELECT name, current_setting(name) FROM pg_settings WHERE source = 'configuration file'", &[])
        .await?
        .iter()
        .map(|r| Ok((r.try_get::<_, String>(0)?, r.try_get::<_, String>(1)?)))
        .collect::<Result<BTreeMap<_, _>, tokio_postgres::Error>>()?
        .into_iter()
        .filter(|(name, _)| !crate::conf::MANAGED.contains(&name.as_str()))
        .collect();
    let mut status = PgStatus {
        in_recovery: row.try_get(0)?,
        system_id: row.try_get(1)?,
        timeline_id: timeline.and_then(|t| u32::try_from(t).ok()).unwrap_or(0),
        xlog_pos: crate::info::parse_lsn(&lsn).unwrap_or(0),
        synchronous_standbys: Vec::new(),
        listed_in_sync: listed_in_sync(row.try_get(4)?),
        streaming: row.try_get(5)?,
        pending_restart: row.try_get(6)?,
        repl_role_exists: row.try_get(7)?,
        slots,
        pg_parameters: params,
    };
    // Without history (a single look), a listed standby is confirmed only when it has flushed
    // everything the master has now; the observer keeps the history across looks.
    status.synchronous_standbys = crate::insync::SyncConfirmations::default().confirm(status.xlog_pos, &status.listed_in_sync);
    Ok(status)
}

/// `stolon_<uid>@<flush lsn>` rows of pg_stat_replication to (db uid, flushed position);
/// walsenders of anything but a keeper's standby (`stolon-basebackup`, foreign clients) are no db.
pub fn listed_in_sync(rows: Vec<String>) -> Vec<(String, u64)> {
    rows.iter()
        .filter_map(|row| row.rsplit_once('@'))
        .filter_map(|(name, lsn)| Some((name.strip_prefix("stolon_").filter(|uid| !uid.is_empty())?.to_string(), crate::info::parse_lsn(lsn)?)))
        .collect()
}

/// The statement that creates (or updates) the replication role. The password is sent as a
/// SCRAM-SHA-256 verifier, never in clear text, so even a logged statement does not reveal it.
pub fn replication_role_sql(exists: bool, username: &str, verifier: Option<&str>) -> String {
    let verb = if exists { "ALTER" } else { "CREATE" };
    let password = verifier.map(|v| format!(" PASSWORD {}", sql_literal(v))).unwrap_or_default();
    format!("{verb} ROLE {} WITH LOGIN REPLICATION{password}", sql_ident(username))
}

/// Creates the replication role, or brings an existing one to LOGIN REPLICATION with our password.
pub async fn ensure_replication_role(client: &Client, username: &str, password: Option<&Secret>) -> Result<(), tokio_postgres::Error> {
    let exists: bool = client
        .query_one("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", &[&username])
        .await?
        .try_get(0)?;
    let verifier = password.map(|p| postgres_protocol::password::scram_sha_256(p.expose().as_bytes()));
    client.batch_execute(&replication_role_sql(exists, username, verifier.as_deref())).await
}

/// Creates a physical replication slot; one that already exists counts as created.
pub async fn create_slot(client: &Client, name: &str) -> Result<(), tokio_postgres::Error> {
    match client.execute("SELECT pg_create_physical_replication_slot($1)", &[&name]).await {
        Err(err) if err.code() == Some(&SqlState::DUPLICATE_OBJECT) => Ok(()),
        other => other.map(|_| ()),
    }
}

/// Drops a replication slot; one that no longer exists counts as dropped.
pub async fn drop_slot(client: &Client, name: &str) -> Result<(), tokio_postgres::Error> {
    match client.execute("SELECT pg_drop_replication_slot($1)", &[&name]).await {
        Err(err) if err.code() == Some(&SqlState::UNDEFINED_OBJECT) => Ok(()),
        other => other.map(|_| ()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_sync_rows_to_db_uids_and_positions() {
        let rows = ["stolon_db2@0/3000060", "stolon-basebackup@0/1", "walreceiver@0/2", "stolon_@0/3", "stolon_db3@1/0", "stolon_db4@bad"].map(String::from).to_vec();
        assert_eq!(listed_in_sync(rows), vec![("db2".to_string(), 0x300_0060), ("db3".to_string(), 1 << 32)]);
    }

    #[test]
    fn role_statements() {
        assert_eq!(replication_role_sql(false, "repl", None), "CREATE ROLE \"repl\" WITH LOGIN REPLICATION");
        let v = postgres_protocol::password::scram_sha_256(b"secret");
        assert!(v.starts_with("SCRAM-SHA-256$"));
        let sql = replication_role_sql(true, "re\"pl", Some(&v));
        assert!(sql.starts_with("ALTER ROLE \"re\"\"pl\" WITH LOGIN REPLICATION PASSWORD 'SCRAM-SHA-256$"), "{sql}");
        assert!(!sql.contains("secret"));
    }
}
