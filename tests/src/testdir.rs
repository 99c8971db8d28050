//! The per-test temporary directory: etcd data dirs, PostgreSQL data dirs,
//! unix sockets and the log file of every child live under it.
//!
//! PostgreSQL refuses to run as root, so the keeper and postgres run as the
//! `postgres` OS user and must be able to reach their dirs: the root dir is
//! made world-traversable (0755) and [`TestDir::postgres_subdir`] hands out
//! dirs owned by `postgres`. The dir is removed on drop unless
//! `STOLON_TEST_KEEP=1`, in which case its path is printed so a failed run can
//! be inspected. Declare it *before* the processes using it, so it is dropped
//! after they are killed.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::postgres::chown_to_postgres;

/// A temporary directory for one test; see the module docs.
#[derive(Debug)]
pub struct TestDir {
    /// Removes the directory on drop; taken out when the dir is kept.
    dir: Option<tempfile::TempDir>,
    /// Copy of the path, still valid for messages after `dir` is taken.
    path: PathBuf,
}

impl TestDir {
    /// Creates `/tmp/stolon-<label>-XXXXXX`, mode 0755. Keep `label` short:
    /// unix socket paths under it are limited to 107 bytes.
    ///
    /// # Panics
    /// If the directory cannot be created.
    pub fn new(label: &str) -> TestDir {
        let dir = match tempfile::Builder::new()
            .prefix(&format!("stolon-{label}-"))
            .tempdir()
        {
            Ok(dir) => dir,
            Err(e) => panic!("cannot create temp dir for test {label}: {e}"),
        };
        let path = dir.path().to_path_buf();
        set_mode(&path, 0o755);
        TestDir {
            dir: Some(dir),
            path,
        }
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates (if needed) and returns `<dir>/<name>`, owned by root, mode 0755.
    ///
    /// # Panics
    /// If it cannot be created.
    pub fn subdir(&self, name: &str) -> PathBuf {
        let path = self.path.join(name);
        if let Err(e) = fs::create_dir_all(&path) {
            panic!("cannot create {}: {e}", path.display());
        }
        set_mode(&path, 0o755);
        path
    }

    /// Creates (if needed) and returns `<dir>/<name>`, owned by the `postgres`
    /// user so a keeper or postgres running as that user can create its data
    /// dir and sockets inside.
    ///
    /// # Panics
    /// If it cannot be created or chowned.
    pub fn postgres_subdir(&self, name: &str) -> PathBuf {
        let path = self.subdir(name);
        chown_to_postgres(&path);
        path
    }

    /// Where the log of child `name` goes: `<dir>/logs/<name>.log`.
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.subdir("logs").join(format!("{name}.log"))
    }

    /// Hands the whole tree to the `postgres` user.
    pub fn chown_to_postgres(&self) {
        chown_to_postgres(&self.path);
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::env::var("STOLON_TEST_KEEP").is_ok_and(|v| v == "1") {
            if let Some(dir) = self.dir.take() {
                let kept = dir.keep();
                eprintln!("STOLON_TEST_KEEP=1: keeping test dir {}", kept.display());
            }
        }
        // Otherwise `dir` drops here and removes the tree; root may delete the
        // files owned by `postgres`, and a failed removal only leaks /tmp space.
    }
}

/// chmod; a failure here would surface later as a confusing permission error
/// in a child's log, so it panics with the path instead.
fn set_mode(path: &Path, mode: u32) {
    if let Err(e) = fs::set_permissions(path, fs::Permissions::from_mode(mode)) {
        panic!("cannot chmod {mode:o} {}: {e}", path.display());
    }
}
