//! Checks and resources needed before the keeper may touch anything: not root, the data-dir lock,
//! the OS user name (default superuser), and the PostgreSQL programs and their version.
//!
//! The effective uid comes from `/proc/self/status` (the workspace forbids the `unsafe` a
//! `geteuid` call would need); the lock is an `flock` on `<data-dir>/keeper.lock`, released by
//! the kernel when the process dies, so a `kill -9`ed keeper never leaves a stale lock behind.

use crate::error::StartupError;
use clusterview::info::PgVersion;
use rustix::fs::{flock, FlockOperation};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The effective uid from the text of `/proc/self/status` (`Uid: real effective saved fs`).
pub fn parse_effective_uid(status: &str) -> Option<u32> {
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// The effective uid of this process.
pub fn effective_uid() -> Result<u32, StartupError> {
    let path = PathBuf::from("/proc/self/status");
    let text = std::fs::read_to_string(&path).map_err(|source| StartupError::Io { what: "read", path: path.clone(), source })?;
    parse_effective_uid(&text).ok_or_else(|| StartupError::State { path, reason: "no Uid line".into() })
}

/// Refuses root (uid 0).
pub fn refuse_root() -> Result<u32, StartupError> {
    match effective_uid()? {
        0 => Err(StartupError::Root),
        uid => Ok(uid),
    }
}

/// The user name of `uid` in the text of `/etc/passwd`.
pub fn user_name_in_passwd(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id: u32 = fields.nth(1)?.parse().ok()?;
        (id == uid && !name.is_empty()).then(|| name.to_string())
    })
}

/// The OS user name of `uid`: /etc/passwd, else $USER. Used as the default superuser name.
pub fn os_user_name(uid: u32) -> Option<String> {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|text| user_name_in_passwd(&text, uid))
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
}

/// Creates the keeper's data dir when missing, and makes it private (0700): it holds the
/// pgpass file and postgres' unix socket, on which the superuser needs no password.
pub fn ensure_data_dir(dir: &Path) -> Result<(), StartupError> {
    if !dir.is_dir() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| StartupError::Io { what: "create the data dir", path: dir.to_path_buf(), source })?;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|source| StartupError::Io { what: "make private (chmod 0700)", path: dir.to_path_buf(), source })
}

/// The held data-dir lock; released when dropped or when the process dies.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

/// Takes `<data-dir>/keeper.lock` without waiting: a second keeper on the same dir fails at once.
pub fn lock_data_dir(dir: &Path) -> Result<DataDirLock, StartupError> {
    let path = dir.join("keeper.lock");
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|source| StartupError::Io { what: "open the lock file", path: path.clone(), source })?;
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => {
            return Err(StartupError::Locked { dir: dir.to_path_buf(), lock: path });
        }
        Err(err) => {
            return Err(StartupError::Io { what: "lock", path, source: err.into() });
        }
    }
    // For operators: who holds it. Best effort; the flock is what counts.
    let _ = file.set_len(0).and_then(|_| writeln!(file, "{}", std::process::id()));
    Ok(DataDirLock { _file: file })
}

/// The programs the keeper runs; a bin dir must hold all of them.
pub const PROGRAMS: &[&str] = &["postgres", "pg_ctl", "initdb", "pg_basebackup", "pg_rewind", "pg_controldata"];

fn missing_programs(dir: &Path) -> Vec<&'static str> {
    PROGRAMS.iter().copied().filter(|p| !dir.join(p).is_file()).collect()
}

/// The PostgreSQL bin dir: `--pg-bin-path`, else the directory `postgres` found in PATH really
/// lives in (symlinks resolved), else the newest `/usr/lib/postgresql/<N>/bin`. The dir must hold
/// every program in `PROGRAMS`.
pub fn find_bin_dir(flag: Option<&Path>) -> Result<PathBuf, StartupError> {
    if let Some(dir) = flag {
        let missing = missing_programs(dir);
        return if missing.is_empty() {
            Ok(dir.to_path_buf())
        } else {
            Err(StartupError::PgBin(format!("{} lacks {}", dir.display(), missing.join(", "))))
        };
    }
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if let Ok(real) = std::fs::canonicalize(dir.join("postgres")) {
                candidates.extend(real.parent().map(Path::to_path_buf));
                candidates.push(dir);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse::<u32>().ok()?, e.path().join("bin"))))
        .collect();
    versions.sort();
    candidates.extend(versions.into_iter().rev().map(|(_, bin)| bin));
    candidates.into_iter().find(|dir| missing_programs(dir).is_empty()).ok_or_else(|| {
        StartupError::PgBin(format!("no directory in PATH nor /usr/lib/postgresql/*/bin holds all of {}", PROGRAMS.join(", ")))
    })
}

/// Parses `postgres --version` output: "postgres (PostgreSQL) 15.8 (Debian 15.8-0+deb12u1)".
pub fn parse_pg_version(text: &str) -> Option<PgVersion> {
    let version = text.split_whitespace().find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))?;
    let mut parts = version.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    Some(PgVersion { major, minor })
}

/// Runs `postgres --version`; PostgreSQL 12 or newer is required (standby settings in
/// postgresql.conf and standby.signal).
pub fn pg_version(bin_dir: &Path) -> Result<PgVersion, StartupError> {
    let program = bin_dir.join("postgres");
    let out = std::process::Command::new(&program)
        .arg("--version")
        .output()
        .map_err(|e| StartupError::PgBin(format!("cannot run {}: {e}", program.display())))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = parse_pg_version(&text)
        .ok_or_else(|| StartupError::PgBin(format!("cannot read the version in {:?}", text.trim())))?;
    if version.major < 12 {
        return Err(StartupError::PgBin(format!(
            "PostgreSQL {}.{} is too old: stolon-keeper needs PostgreSQL 12 or newer",
            version.major, version.minor
        )));
    }
    Ok(version)
}

/// Unix socket paths are limited to 107 bytes; postgres refuses a longer one with a vaguer error.
pub fn check_socket_path(socket_dir: &Path, port: u16) -> Result<(), StartupError> {
    let path = socket_dir.join(format!(".s.PGSQL.{port}"));
    let len = path.as_os_str().len();
    let text = socket_dir.to_string_lossy();
    if len > 107 || text.contains(',') {
        return Err(StartupError::Flag {
            flag: "--data-dir",
            reason: format!(
                "postgres' unix socket lives in the data dir, and {} is too long ({len} bytes, at most 107) or contains a comma: use a shorter path",
                path.display()
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_uid_is_the_second_field() {
        let status = "Name:\tcat\nUid:\t1000\t101\t101\t101\nGid:\t0\t0\t0\t0\n";
        assert_eq!(parse_effective_uid(status), Some(101));
        assert_eq!(parse_effective_uid("Name: x\n"), None);
    }

    #[test]
    fn passwd_lookup() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\npostgres:x:101:104:PostgreSQL administrator:/var/lib/postgresql:/bin/bash\n";
        assert_eq!(user_name_in_passwd(passwd, 101).as_deref(), Some("postgres"));
        assert_eq!(user_name_in_passwd(passwd, 0).as_deref(), Some("root"));
        assert_eq!(user_name_in_passwd(passwd, 5), None);
    }

    #[test]
    fn versions() {
        assert_eq!(parse_pg_version("postgres (PostgreSQL) 15.8 (Debian 15.8-0+deb12u1)\n"), Some(PgVersion { major: 15, minor: 8 }));
        assert_eq!(parse_pg_version("postgres (PostgreSQL) 17beta1"), Some(PgVersion { major: 17, minor: 0 }));
        assert_eq!(parse_pg_version("nothing"), None);
    }

    #[test]
    fn second_lock_fails_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock_data_dir(dir.path()).unwrap();
        assert!(matches!(lock_data_dir(dir.path()), Err(StartupError::Locked { .. })));
        drop(first);
        assert!(lock_data_dir(dir.path()).is_ok());
    }

    #[test]
    fn data_dir_is_made_private() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("a/b");
        ensure_data_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        ensure_data_dir(&d).unwrap();
        assert_eq!(std::fs::metadata(&d).unwrap().permissions().mode() & 0o777, 0o700);
    }

    #[test]
    fn socket_path_length() {
        assert!(check_socket_path(Path::new("/tmp/k1"), 5432).is_ok());
        let long = format!("/tmp/{}", "x".repeat(120));
        assert!(check_socket_path(Path::new(&long), 5432).is_err());
    }
}
