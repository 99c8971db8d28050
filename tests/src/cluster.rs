//! A whole stolon-rs cluster of real processes for scenario tests: one etcd, N keepers (each
//! running its postgres as the `postgres` OS user), M sentinels and P proxies, on free loopback
//! ports in one temp dir. Every process is killed when the `TestCluster` is dropped.
//!
//! The cluster is observed the way an operator would: `stolonctl status --format json`, SQL on
//! each keeper's postgres, SQL through the proxies.

use crate::postgres::{connect, pg_bin_dir, postgres_command, query_i64};
use crate::{bin_path, free_port, wait_until_desc, ChildGuard, Etcd, TestDir, KEEPER, PROXY, SENTINEL, STOLONCTL};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;
use tokio_postgres::Client;

/// The superuser and replication passwords of every test cluster.
pub const SU_PASSWORD: &str = "su-secret";
pub const REPL_USER: &str = "repluser";
pub const REPL_PASSWORD: &str = "repl-secret";

/// What to start.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub keepers: usize,
    pub sentinels: usize,
    pub proxies: usize,
    /// The cluster spec given to `stolonctl init`.
    pub spec: Value,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions { keepers: 1, sentinels: 1, proxies: 0, spec: serde_json::json!({"initMode": "new"}) }
    }
}

/// One keeper: its identity, ports, data dir and (while running) its process group.
pub struct KeeperProc {
    pub uid: String,
    pub data_dir: PathBuf,
    pub pg_port: u16,
    pub metrics_port: u16,
    pub extra_args: Vec<String>,
    /// `--store-endpoints` of this keeper when not the cluster's etcd (e.g. a relay).
    pub store_endpoints: Option<String>,
    pub guard: Option<ChildGuard>,
}

/// One proxy.
pub struct ProxyProc {
    pub uid: String,
    pub port: u16,
    pub ro_port: u16,
    pub metrics_port: u16,
    pub guard: Option<ChildGuard>,
}

pub struct TestCluster {
    pub name: String,
    pub keepers: Vec<KeeperProc>,
    pub sentinels: Vec<Option<ChildGuard>>,
    pub proxies: Vec<ProxyProc>,
    pub etcd: Etcd,
    secrets: PathBuf,
    /// Last field: dropped after every process.
    pub dir: TestDir,
}

impl TestCluster {
    /// Starts etcd, initializes the cluster with `opts.spec`, then starts sentinels, keepers and
    /// proxies. Does not wait for a master: see `wait_master`.
    pub async fn start(label: &str, opts: ClusterOptions) -> TestCluster {
        let dir = TestDir::new(label);
        let etcd = Etcd::start_single(&dir).await;
        let secrets = dir.postgres_subdir("secrets");
        for (name, value) in [("su", SU_PASSWORD), ("repl", REPL_PASSWORD)] {
            let path = secrets.join(name);
            std::fs::write(&path, value).expect("write password file");
            crate::postgres::chown_to_postgres(&path);
            set_mode_0600(&path);
        }
        let mut cluster = TestCluster {
            name: "tc".to_string(),
            keepers: Vec::new(),
            sentinels: Vec::new(),
            proxies: Vec::new(),
            etcd,
            secrets,
            dir,
        };
        let out = cluster.ctl(&["init", &opts.spec.to_string()]);
        assert!(out.status.success(), "stolonctl init failed: {}", String::from_utf8_lossy(&out.stderr));
        for _ in 0..opts.sentinels {
            cluster.add_sentinel();
        }
        for _ in 0..opts.keepers {
            cluster.add_keeper(&[]);
        }
        for _ in 0..opts.proxies {
            cluster.add_proxy();
        }
        cluster
    }

    fn common_args(&self) -> Vec<String> {
        self.common_args_via(&self.etcd.endpoints())
    }

    fn common_args_via(&self, store_endpoints: &str) -> Vec<String> {
        vec![
            "--cluster-name".into(),
            self.name.clone(),
            "--store-endpoints".into(),
            store_endpoints.to_string(),
            "--log-level".into(),
            "debug".into(),
        ]
    }

    /// Runs stolonctl against this cluster.
    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(bin_path(STOLONCTL))
            .args(["--cluster-name", &self.name, "--store-endpoints", &self.etcd.endpoints()])
            .args(args)
            .output()
            .expect("run stolonctl")
    }

    /// `stolonctl status --format json`, or None when it fails.
    pub fn status(&self) -> Option<Value> {
        let out = self.ctl(&["status", "--format", "json"]);
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Adds and starts keeper `keeper<N>`; returns its index.
    pub fn add_keeper(&mut self, extra_args: &[&str]) -> usize {
        self.add_keeper_via(extra_args, None)
    }

    /// Adds and starts keeper `keeper<N>` reaching etcd at `store_endpoints` (e.g. a relay)
    /// instead of directly; returns its index.
    pub fn add_keeper_via(&mut self, extra_args: &[&str], store_endpoints: Option<String>) -> usize {
        let i = self.keepers.len();
        let uid = format!("keeper{i}");
        let data_dir = self.dir.postgres_subdir(&uid);
        self.keepers.push(KeeperProc {
            uid,
            data_dir,
            pg_port: free_port(),
            metrics_port: free_port(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            store_endpoints,
            guard: None,
        });
        self.start_keeper(i);
        i
    }

    /// (Re)starts keeper `i` with its data dir and ports.
    pub fn start_keeper(&mut self, i: usize) {
        let mut cmd = postgres_command(bin_path(KEEPER));
        let k = &self.keepers[i];
        cmd.args(self.common_args_via(&k.store_endpoints.clone().unwrap_or_else(|| self.etcd.endpoints())));
        cmd.args(["--uid", &k.uid])
            .arg("--data-dir")
            .arg(&k.data_dir)
            .args(["--pg-listen-address", "127.0.0.1", "--pg-port", &k.pg_port.to_string()])
            .arg("--pg-bin-path")
            .arg(pg_bin_dir())
            .args(["--pg-su-username", "postgres", "--pg-repl-username", REPL_USER])
            .arg("--pg-su-passwordfile")
            .arg(self.secrets.join("su"))
            .arg("--pg-repl-passwordfile")
            .arg(self.secrets.join("repl"))
            .args(["--metrics-listen-address", &format!("127.0.0.1:{}", k.metrics_port)])
            .args(&k.extra_args);
        let log = self.dir.log_path(&k.uid);
        let guard = ChildGuard::spawn(&k.uid, &mut cmd, &log);
        self.keepers[i].guard = Some(guard);
    }

    /// kill -9 keeper `i` and its postgres (the whole process group).
    pub fn kill_keeper(&mut self, i: usize) {
        if let Some(mut g) = self.keepers[i].guard.take() {
            g.kill9();
        }
    }

    /// Freezes (SIGSTOP) keeper `i` and its postgres.
    pub fn freeze_keeper(&self, i: usize) {
        if let Some(g) = &self.keepers[i].guard {
            g.stop();
        }
    }

    /// Thaws (SIGCONT) keeper `i` and its postgres.
    pub fn thaw_keeper(&self, i: usize) {
        if let Some(g) = &self.keepers[i].guard {
            g.cont();
        }
    }

    pub fn add_sentinel(&mut self) -> usize {
        let i = self.sentinels.len();
        self.sentinels.push(None);
        self.start_sentinel(i);
        i
    }

    pub fn start_sentinel(&mut self, i: usize) {
        self.start_sentinel_with(i, &[]);
    }

    /// Adds a sentinel started with `extra` arguments (e.g. `--initial-cluster-spec FILE`).
    pub fn add_sentinel_with(&mut self, extra: &[&str]) -> usize {
        let i = self.sentinels.len();
        self.sentinels.push(None);
        self.start_sentinel_with(i, extra);
        i
    }

    /// (Re)starts sentinel `i` with `extra` arguments.
    pub fn start_sentinel_with(&mut self, i: usize, extra: &[&str]) {
        let uid = format!("sentinel{i}");
        let mut cmd = Command::new(bin_path(SENTINEL));
        cmd.args(self.common_args()).args(["--uid", &uid]).args(extra);
        let guard = ChildGuard::spawn(&uid, &mut cmd, &self.dir.log_path(&uid));
        self.sentinels[i] = Some(guard);
    }

    pub fn kill_sentinel(&mut self, i: usize) {
        if let Some(mut g) = self.sentinels[i].take() {
            g.kill9();
        }
    }

    pub fn add_proxy(&mut self) -> usize {
        let i = self.proxies.len();
        self.proxies.push(ProxyProc {
            uid: format!("proxy{i}"),
            port: free_port(),
            ro_port: free_port(),
            metrics_port: free_port(),
            guard: None,
        });
        let p = &self.proxies[i];
        let mut cmd = Command::new(bin_path(PROXY));
        cmd.args(self.common_args())
            .args(["--uid", &p.uid, "--port", &p.port.to_string(), "--ro-port", &p.ro_port.to_string()])
            .args(["--metrics-listen-address", &format!("127.0.0.1:{}", p.metrics_port)]);
        let guard = ChildGuard::spawn(&p.uid, &mut cmd, &self.dir.log_path(&p.uid));
        self.proxies[i].guard = Some(guard);
        i
    }

    /// Index of the keeper with uid `uid`.
    pub fn keeper_index(&self, uid: &str) -> usize {
        self.keepers.iter().position(|k| k.uid == uid).unwrap_or_else(|| panic!("no keeper {uid}"))
    }

    /// Superuser connection to keeper `i`'s postgres.
    pub async fn keeper_client(&self, i: usize) -> Result<Client, tokio_postgres::Error> {
        connect("127.0.0.1", self.keepers[i].pg_port, "postgres", Some(SU_PASSWORD), "postgres").await
    }

    /// Superuser connection through proxy `p` (read-write port).
    pub async fn proxy_client(&self, p: usize) -> Result<Client, tokio_postgres::Error> {
        connect("127.0.0.1", self.proxies[p].port, "postgres", Some(SU_PASSWORD), "postgres").await
    }

    /// Superuser connection through proxy `p`'s read-only port.
    pub async fn proxy_ro_client(&self, p: usize) -> Result<Client, tokio_postgres::Error> {
        connect("127.0.0.1", self.proxies[p].ro_port, "postgres", Some(SU_PASSWORD), "postgres").await
    }

    /// Waits until the cluster reports a healthy master (other than `not`) whose postgres accepts
    /// writes; returns the master keeper's index.
    pub async fn wait_master(&self, timeout: Duration, not: Option<usize>) -> usize {
        let found = wait_until_desc("a writable elected master", timeout, Duration::from_millis(250), || async {
            let status = self.status().ok_or("no status")?;
            if status["cluster"]["available"] != Value::Bool(true) {
                return Err("cluster not available".to_string());
            }
            let uid = status["cluster"]["master_keeper_uid"].as_str().ok_or("no master")?.to_string();
            let i = self.keeper_index(&uid);
            if Some(i) == not {
                return Err(format!("master is still {uid}"));
            }
            let client = self.keeper_client(i).await.map_err(|e| e.to_string())?;
            let in_recovery = query_i64(&client, "SELECT pg_is_in_recovery()::int::bigint").await.map_err(|e| e.to_string())?;
            if in_recovery != 0 {
                return Err(format!("{uid} is elected but still in recovery"));
            }
            Ok(i)
        })
        .await;
        found.unwrap_or_else(|e| panic!("{e}\n{}", self.logs_tail(25)))
    }

    /// Waits until keeper `master`'s postgres has `n` streaming standbys.
    pub async fn wait_streaming(&self, master: usize, n: i64, timeout: Duration) {
        let found = wait_until_desc(&format!("{n} streaming standbys"), timeout, Duration::from_millis(250), || async {
            let client = self.keeper_client(master).await.map_err(|e| e.to_string())?;
            let count = query_i64(&client, "SELECT count(*) FROM pg_stat_replication r JOIN pg_replication_slots s ON s.active_pid = r.pid AND NOT s.temporary WHERE r.state = 'streaming'")
                .await
                .map_err(|e| e.to_string())?;
            if count >= n { Ok(()) } else { Err(format!("{count} streaming")) }
        })
        .await;
        found.unwrap_or_else(|e| panic!("{e}\n{}", self.logs_tail(25)))
    }

    /// The last `n` lines of every process's log, for failure messages.
    pub fn logs_tail(&self, n: usize) -> String {
        let mut out = String::new();
        let status = self.ctl(&["status"]);
        out.push_str(&format!("--- stolonctl status:\n{}{}\n", String::from_utf8_lossy(&status.stdout), String::from_utf8_lossy(&status.stderr)));
        let guards = self
            .keepers
            .iter()
            .filter_map(|k| k.guard.as_ref())
            .chain(self.sentinels.iter().flatten())
            .chain(self.proxies.iter().filter_map(|p| p.guard.as_ref()));
        for g in guards {
            out.push_str(&format!("--- {} (last {n} lines):\n{}\n", g.name(), g.log_tail(n)));
        }
        out
    }
}

fn set_mode_0600(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}

/// Creates the test table `t(id int primary key)` on `client` if missing.
pub async fn create_table(client: &Client) -> Result<(), tokio_postgres::Error> {
    client.batch_execute("CREATE TABLE IF NOT EXISTS t (id int PRIMARY KEY)").await
}

/// Inserts ids `from..to`, one statement each (each acknowledged on return).
pub async fn insert_rows(client: &Client, from: i32, to: i32) -> Result<(), tokio_postgres::Error> {
    for id in from..to {
        client.execute("INSERT INTO t (id) VALUES ($1)", &[&id]).await?;
    }
    Ok(())
}

/// The ids in `t`, sorted.
pub async fn ids(client: &Client) -> Result<Vec<i32>, tokio_postgres::Error> {
    let rows = client.query("SELECT id FROM t ORDER BY id", &[]).await?;
    Ok(rows.iter().map(|r| r.get::<_, i32>(0)).collect())
}

/// Waits until keeper `i`'s postgres has exactly `want` in `t` (replication caught up).
pub async fn wait_ids(cluster: &TestCluster, i: usize, want: &[i32], timeout: Duration) {
    let found = wait_until_desc(&format!("{} rows on {}", want.len(), cluster.keepers[i].uid), timeout, Duration::from_millis(200), || async {
        let client = cluster.keeper_client(i).await.map_err(|e| e.to_string())?;
        let got = ids(&client).await.map_err(|e| e.to_string())?;
        if got == want { Ok(()) } else { Err(format!("{} rows", got.len())) }
    })
    .await;
    found.unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs_tail(25)))
}
