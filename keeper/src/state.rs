//! The keeper's own files in `<data-dir>` and the one way they are written.
//!
//! - `keeperstate.json`: the keeper uid, generated once when `--uid` is not given;
//! - `dbstate.json`: the db uid whose initMode this keeper has applied, and the db generation it
//!   last converged to (docs/protocol.md). This file is what stops a restarted keeper from running
//!   initdb or a resync again, so it is written atomically and fsynced;
//! - `pgpass`: the superuser and replication passwords (0600), used by libpq through `passfile=`
//!   and `PGPASSFILE` so no password is ever on a command line or in postgresql.conf.
//!
//! Every write is atomic: a temp file in the same directory, fsync, rename, fsync of the directory.
//! After a `kill -9` a reader sees either the old or the new content, never a torn one.

use crate::args::Secret;
use crate::quote::pgpass_field;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// `<data-dir>/keeperstate.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeeperState {
    pub uid: String,
}

/// `<data-dir>/dbstate.json`: which db this data dir belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DbState {
    /// The db uid whose initMode has been applied to the data dir.
    #[serde(rename = "dbUID")]
    pub db_uid: String,
    /// The db generation the keeper last converged to; `None` right after init, before the
    /// first convergence.
    #[serde(default)]
    pub generation: Option<u64>,
    /// The uid of the cluster (clusterdata's `cluster.uid`) the db belongs to, so that data of
    /// another cluster is recognised and never silently overwritten. Absent in files written by
    /// older keepers; the keeper adds it on its next pass.
    #[serde(rename = "clusterUID", default, skip_serializing_if = "Option::is_none")]
    pub cluster_uid: Option<String>,
    /// initdb for `db_uid` started and has not finished: what the data dir holds is the remains of
    /// that initdb (e.g. after a `kill -9`), which the keeper may remove and redo.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub init_pending: bool,
}

pub const KEEPER_STATE_FILE: &str = "keeperstate.json";
pub const DB_STATE_FILE: &str = "dbstate.json";
pub const PGPASS_FILE: &str = "pgpass";

/// Writes `bytes` to `path` atomically with permissions `mode`.
pub fn atomic_write(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        let mut file = std::fs::OpenOptions::new().create(true).write(true).truncate(true).mode(mode).open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    // Make the rename itself durable.
    std::fs::File::open(dir)?.sync_all()
}

/// Reads a JSON state file; `Ok(None)` when it does not exist.
fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| e.to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    atomic_write(path, &bytes, 0o600)
}

pub fn read_keeper_state(data_dir: &Path) -> Result<Option<KeeperState>, String> {
    read_json(&data_dir.join(KEEPER_STATE_FILE))
}

pub fn write_keeper_state(data_dir: &Path, state: &KeeperState) -> std::io::Result<()> {
    write_json(&data_dir.join(KEEPER_STATE_FILE), state)
}

pub fn read_db_state(data_dir: &Path) -> Result<Option<DbState>, String> {
    read_json(&data_dir.join(DB_STATE_FILE))
}

pub fn write_db_state(data_dir: &Path, state: &DbState) -> std::io::Result<()> {
    write_json(&data_dir.join(DB_STATE_FILE), state)
}

/// The pgpass file's text: one line per user with a password, any host, port and database.
pub fn pgpass_text(entries: &[(&str, Option<&Secret>)]) -> String {
    entries
        .iter()
        .filter_map(|(user, pw)| pw.map(|pw| format!("*:*:*:{}:{}\n", pgpass_field(user), pgpass_field(pw.expose()))))
        .collect()
}

/// Writes `<data-dir>/pgpass` (0600: libpq ignores a pgpass file others can read).
pub fn write_pgpass(data_dir: &Path, entries: &[(&str, Option<&Secret>)]) -> std::io::Result<PathBuf> {
    let path = data_dir.join(PGPASS_FILE);
    atomic_write(&path, pgpass_text(entries).as_bytes(), 0o600)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn db_state_round_trip_and_absence() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_db_state(dir.path()).unwrap(), None);
        let st = DbState { db_uid: "abc".into(), generation: Some(4), cluster_uid: Some("c1".into()), init_pending: false };
        write_db_state(dir.path(), &st).unwrap();
        assert_eq!(read_db_state(dir.path()).unwrap(), Some(st));
        let text = std::fs::read_to_string(dir.path().join(DB_STATE_FILE)).unwrap();
        assert!(text.contains("\"dbUID\": \"abc\""), "{text}");
        std::fs::write(dir.path().join(DB_STATE_FILE), "{torn").unwrap();
        assert!(read_db_state(dir.path()).is_err());
    }

    #[test]
    fn keeper_state_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        write_keeper_state(dir.path(), &KeeperState { uid: "k1".into() }).unwrap();
        assert_eq!(read_keeper_state(dir.path()).unwrap().unwrap().uid, "k1");
    }

    #[test]
    fn atomic_write_replaces_and_sets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.conf");
        atomic_write(&p, b"one", 0o600).unwrap();
        atomic_write(&p, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "two");
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(!dir.path().join(".f.conf.tmp").exists());
    }

    #[test]
    fn pgpass_escapes_and_skips_users_without_password() {
        let su = Secret::new("a:b".into());
        let text = pgpass_text(&[("postgres", Some(&su)), ("repl", None)]);
        assert_eq!(text, "*:*:*:postgres:a\\:b\n");
        let dir = tempfile::tempdir().unwrap();
        let path = write_pgpass(dir.path(), &[("postgres", Some(&su))]).unwrap();
        assert_eq!(std::fs::metadata(path).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
