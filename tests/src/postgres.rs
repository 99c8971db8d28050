//! PostgreSQL for the tests: the bin dir under test, running commands as the
//! `postgres` OS user, a throwaway [`StandalonePostgres`], and async SQL
//! helpers over tokio-postgres.
//!
//! The tests run as root and PostgreSQL refuses root, so commands run as
//! `postgres`. [`run_as_postgres`] sets uid/gid on the `Command` itself rather
//! than prefixing `runuser -u postgres --`: runuser forks and stays as the
//! parent, so the pid a test holds (to SIGSTOP or kill -9 a keeper) would be
//! runuser's, not the program's. std drops root's supplementary groups when
//! it switches uid, so the child has exactly postgres' privileges.

use std::ffi::OsStr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use tokio_postgres::{Client, NoTls};

use crate::process::ChildGuard;
use crate::testdir::TestDir;
use crate::wait::wait_until_desc;

/// Default PostgreSQL bin dir: Debian 12's PostgreSQL 15.
const DEFAULT_PG_BIN: &str = "/usr/lib/postgresql/15/bin";
/// How long a fresh standalone instance may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Grace for the immediate shutdown on drop before the group is SIGKILLed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// PostgreSQL bin dir: `STOLON_TEST_PG_BIN`, else `/usr/lib/postgresql/15/bin`.
pub fn pg_bin_dir() -> PathBuf {
    std::env::var_os("STOLON_TEST_PG_BIN")
        .map_or_else(|| PathBuf::from(DEFAULT_PG_BIN), PathBuf::from)
}

/// Path of PostgreSQL program `name` (e.g. "initdb") in [`pg_bin_dir`].
pub fn pg_bin(name: &str) -> PathBuf {
    pg_bin_dir().join(name)
}

/// Major version of the PostgreSQL under test, from `postgres --version`
/// ("postgres (PostgreSQL) 15.8 (Debian 15.8-0+deb12u1)" gives 15).
///
/// # Panics
/// If `postgres` cannot be run or its output not parsed.
pub fn pg_major_version() -> u32 {
    static VERSION: OnceLock<u32> = OnceLock::new();
    *VERSION.get_or_init(|| {
        let out = match Command::new(pg_bin("postgres")).arg("--version").output() {
            Ok(out) => out,
            Err(e) => panic!(
                "cannot run {}: {e}; set STOLON_TEST_PG_BIN",
                pg_bin("postgres").display()
            ),
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let major = text
            .split_whitespace()
            .find(|word| word.starts_with(|c: char| c.is_ascii_digit()))
            .and_then(|version| version.split('.').next()?.parse().ok());
        match major {
            Some(major) => major,
            None => panic!("cannot parse PostgreSQL version from {text:?}"),
        }
    })
}

/// The `postgres` OS user, as `getent passwd postgres` reports it.
#[derive(Debug, Clone)]
pub struct OsUser {
    /// Numeric user id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Home dir, exported as HOME so tools do not look in /root.
    pub home: PathBuf,
}

/// The `postgres` OS user, looked up once.
///
/// # Panics
/// If the user does not exist.
pub fn postgres_user() -> &'static OsUser {
    static USER: OnceLock<OsUser> = OnceLock::new();
    USER.get_or_init(|| {
        let out = Command::new("getent").args(["passwd", "postgres"]).output();
        let line = match &out {
            Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
            _ => panic!("the `postgres` OS user is missing (getent passwd postgres: {out:?})"),
        };
        // name:password:uid:gid:gecos:home:shell
        let fields: Vec<&str> = line.trim().split(':').collect();
        match (
            fields.get(2).and_then(|s| s.parse().ok()),
            fields.get(3).and_then(|s| s.parse().ok()),
            fields.get(5),
        ) {
            (Some(uid), Some(gid), Some(home)) => OsUser {
                uid,
                gid,
                home: PathBuf::from(home),
            },
            _ => panic!("cannot parse passwd entry {line:?}"),
        }
    })
}

/// Makes `cmd` run as the `postgres` user (see module docs for why not runuser).
pub fn run_as_postgres(cmd: &mut Command) -> &mut Command {
    let user = postgres_user();
    cmd.uid(user.uid)
        .gid(user.gid)
        .env("HOME", &user.home)
        .env("USER", "postgres")
        .env("LOGNAME", "postgres")
}

/// A `Command` for `program` that runs as the `postgres` user.
pub fn postgres_command(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    run_as_postgres(&mut cmd);
    cmd
}

/// `chown -R postgres:postgres path`.
///
/// # Panics
/// If chown fails: the keeper would fail later with a far vaguer error.
pub fn chown_to_postgres(path: &Path) {
    let status = Command::new("chown")
        .arg("-R")
        .arg("postgres:postgres")
        .arg(path)
        .status();
    if !status.as_ref().is_ok_and(|s| s.success()) {
        panic!(
            "chown -R postgres:postgres {} failed: {status:?}",
            path.display()
        );
    }
}

/// A throwaway PostgreSQL cluster run as `postgres`, listening on
/// 127.0.0.1:port and on a unix socket in its own dir, trust auth for the
/// superuser `postgres`; stopped (immediate shutdown, then SIGKILL) on drop.
#[derive(Debug)]
pub struct StandalonePostgres {
    /// Owned by postgres; holds `data/` and the unix socket.
    base_dir: PathBuf,
    /// TCP port on 127.0.0.1.
    port: u16,
    /// The postmaster.
    guard: ChildGuard,
}

impl StandalonePostgres {
    /// initdb's `<dir>/pg-<port>/data`, starts postgres and waits until
    /// `SELECT 1` works.
    ///
    /// # Panics
    /// If initdb fails or the server is not ready within 30 s, with its log.
    pub async fn start(dir: &TestDir, port: u16) -> StandalonePostgres {
        let name = format!("pg-{port}");
        let base_dir = dir.postgres_subdir(&name);
        let data_dir = base_dir.join("data");
        let out = postgres_command(pg_bin("initdb"))
            .arg("-D")
            .arg(&data_dir)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .output();
        match &out {
            Ok(out) if out.status.success() => {}
            _ => panic!("initdb {} failed: {out:?}", data_dir.display()),
        }
        let mut cmd = postgres_command(pg_bin("postgres"));
        cmd.arg("-D")
            .arg(&data_dir)
            .arg("-p")
            .arg(port.to_string())
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", base_dir.display()));
        let guard = ChildGuard::spawn(&name, &mut cmd, &dir.log_path(&name));
        let pg = StandalonePostgres {
            base_dir,
            port,
            guard,
        };
        if let Err(e) = wait_for_sql(
            "127.0.0.1",
            port,
            "postgres",
            None,
            "postgres",
            START_TIMEOUT,
        )
        .await
        {
            panic!("{name} not ready: {e}\n{}", pg.log_tail(40));
        }
        pg
    }

    /// Always 127.0.0.1.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The unix socket dir (usable as a tokio-postgres / libpq host).
    pub fn socket_dir(&self) -> &Path {
        &self.base_dir
    }

    /// The data dir.
    pub fn data_dir(&self) -> PathBuf {
        self.base_dir.join("data")
    }

    /// libpq connection string for the superuser over TCP.
    pub fn conn_string(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        )
    }

    /// A connection as superuser `postgres` to database `postgres`.
    pub async fn connect(&self) -> Result<Client, tokio_postgres::Error> {
        connect(self.host(), self.port, "postgres", None, "postgres").await
    }

    /// The postmaster's guard, e.g. to kill -9 or freeze it.
    pub fn guard(&mut self) -> &mut ChildGuard {
        &mut self.guard
    }

    /// The last `n` lines of the server log.
    pub fn log_tail(&self, n: usize) -> String {
        self.guard.log_tail(n)
    }
}

impl Drop for StandalonePostgres {
    fn drop(&mut self) {
        // Immediate shutdown rather than SIGKILL right away: the postmaster
        // then removes its SysV shared memory segment, which would otherwise
        // leak on every test run.
        self.guard.shutdown("QUIT", STOP_GRACE);
    }
}

/// Connects with tokio-postgres (no TLS) and spawns the connection task on
/// the current tokio runtime. `host` may be a unix socket dir.
pub async fn connect(
    host: &str,
    port: u16,
    user: &str,
    password: Option<&str>,
    dbname: &str,
) -> Result<Client, tokio_postgres::Error> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(host)
        .port(port)
        .user(user)
        .dbname(dbname)
        .connect_timeout(Duration::from_secs(5));
    if let Some(password) = password {
        config.password(password);
    }
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        // Tests kill servers on purpose; the resulting connection error shows
        // up on the next query through `client`, so it is not reported here.
        let _ = connection.await;
    });
    Ok(client)
}

/// Runs `sql` and returns column 0 of its single row as i64 (cast in SQL,
/// e.g. `SELECT count(*)` or `SELECT 1::int8`).
pub async fn query_i64(client: &Client, sql: &str) -> Result<i64, tokio_postgres::Error> {
    client.query_one(sql, &[]).await?.try_get(0)
}

/// Runs `sql` and returns column 0 of its single row as text (cast in SQL).
pub async fn query_string(client: &Client, sql: &str) -> Result<String, tokio_postgres::Error> {
    client.query_one(sql, &[]).await?.try_get(0)
}

/// Waits until a connection succeeds and `SELECT 1` answers, then returns
/// that connection.
pub async fn wait_for_sql(
    host: &str,
    port: u16,
    user: &str,
    password: Option<&str>,
    dbname: &str,
    timeout: Duration,
) -> Result<Client, String> {
    let what = format!("SQL on {host}:{port} as {user}");
    wait_until_desc(&what, timeout, Duration::from_millis(100), || async {
        let client = connect(host, port, user, password, dbname).await?;
        query_i64(&client, "SELECT 1::int8").await?;
        Ok::<_, tokio_postgres::Error>(client)
    })
    .await
}
