//! Real etcd servers for the tests: [`Etcd`] (one server) and
//! [`EtcdCluster`] (n members), each member on its own free loopback client
//! and peer ports with its data dir under the test's [`TestDir`].
//!
//! Members can be killed, frozen (SIGSTOP: sockets stay open but nothing
//! answers, the nastier failure) and restarted with the same name, ports and
//! data dir, so "etcd gone, then back" scenarios see the same cluster.
//! Timings are shortened (100 ms heartbeat, 1 s election) so leader loss is
//! resolved within a test's patience. Readiness is a linearizable `get`
//! through etcd-client on the member's own endpoint: it only succeeds once the
//! member has joined a cluster with a leader, and `etcdctl` need not exist.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};

use crate::ports::free_port;
use crate::process::ChildGuard;
use crate::testdir::TestDir;
use crate::wait::wait_until_desc;

/// How long a starting member may take to serve a linearizable read.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Per-request bounds of harness clients, so a frozen member fails fast.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// The etcd binary: `STOLON_TEST_ETCD_BIN`, else `etcd` on PATH.
pub fn etcd_bin() -> PathBuf {
    std::env::var_os("STOLON_TEST_ETCD_BIN").map_or_else(|| PathBuf::from("etcd"), PathBuf::from)
}

/// Connects an etcd-client to `endpoints` with the harness' short timeouts.
pub async fn connect(endpoints: &[String]) -> Result<Client, etcd_client::Error> {
    let options = ConnectOptions::new()
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_timeout(REQUEST_TIMEOUT);
    Client::connect(endpoints, Some(options)).await
}

/// One etcd member: its fixed identity (name, ports, data dir, cluster
/// membership) and, while it runs, its process.
#[derive(Debug)]
pub struct EtcdMember {
    /// Member name, unique in the test dir; also names the log file.
    name: String,
    client_port: u16,
    peer_port: u16,
    /// Kept across restarts so the member rejoins as itself.
    data_dir: PathBuf,
    log_path: PathBuf,
    /// `--initial-cluster` value, the same for every member.
    initial_cluster: String,
    /// `--initial-cluster-token`, unique per cluster so members of two test
    /// clusters can never join each other.
    token: String,
    /// The running process; `None` after [`EtcdMember::kill`].
    guard: Option<ChildGuard>,
}

impl EtcdMember {
    /// Member name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Client URL, `http://127.0.0.1:<port>`.
    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// Peer URL, `http://127.0.0.1:<port>`.
    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    /// Client port.
    pub fn client_port(&self) -> u16 {
        self.client_port
    }

    /// Data dir, kept across restarts.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// Whether the process is alive (a frozen one counts as alive).
    pub fn is_running(&self) -> bool {
        self.guard.as_ref().is_some_and(ChildGuard::is_running)
    }

    /// The process guard while it runs, e.g. for its pid.
    pub fn guard(&self) -> Option<&ChildGuard> {
        self.guard.as_ref()
    }

    /// The last `n` lines of this member's log (all its runs).
    pub fn log_tail(&self, n: usize) -> String {
        crate::process::log_tail(&self.log_path, n)
    }

    /// Freezes the member with SIGSTOP.
    pub fn stop(&self) {
        if let Some(guard) = &self.guard {
            guard.stop();
        }
    }

    /// Resumes a member frozen by [`EtcdMember::stop`].
    pub fn cont(&self) {
        if let Some(guard) = &self.guard {
            guard.cont();
        }
    }

    /// Kills the member with SIGKILL; its data dir stays.
    pub fn kill(&mut self) {
        // Dropping the guard kills and reaps the process group.
        self.guard = None;
    }

    /// Kills the member if running and starts it again with the same
    /// identity, without waiting for it to be ready (a lone member of a
    /// cluster that lost quorum cannot be).
    pub fn start_again(&mut self) {
        self.kill();
        self.spawn();
    }

    /// [`EtcdMember::start_again`], then waits until it serves reads.
    ///
    /// # Panics
    /// If it is not ready within 30 s, with its log tail.
    pub async fn restart(&mut self) {
        self.start_again();
        self.wait_ready().await;
    }

    /// Waits until this member answers a linearizable read on its own endpoint.
    ///
    /// # Panics
    /// If it does not within 30 s, with its log tail.
    pub async fn wait_ready(&self) {
        let endpoint = [self.client_url()];
        let what = format!("etcd member {} at {}", self.name, endpoint[0]);
        let ready = wait_until_desc(&what, READY_TIMEOUT, Duration::from_millis(100), || async {
            let mut client = connect(&endpoint).await?;
            client
                .get("stolon-tests/ready-probe", None)
                .await
                .map(|_| ())
        })
        .await;
        if let Err(e) = ready {
            panic!("{e}\nlog of {}:\n{}", self.name, self.log_tail(40));
        }
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(etcd_bin());
        cmd.arg(format!("--name={}", self.name))
            .arg(format!("--data-dir={}", self.data_dir.display()))
            .arg(format!("--listen-client-urls={}", self.client_url()))
            .arg(format!("--advertise-client-urls={}", self.client_url()))
            .arg(format!("--listen-peer-urls={}", self.peer_url()))
            .arg(format!("--initial-advertise-peer-urls={}", self.peer_url()))
            .arg(format!("--initial-cluster={}", self.initial_cluster))
            // Ignored by etcd once the data dir holds a WAL, so restarts
            // rejoin the existing cluster with the very same flags.
            .arg("--initial-cluster-state=new")
            .arg(format!("--initial-cluster-token={}", self.token))
            .args(["--heartbeat-interval=100", "--election-timeout=1000"])
            .args(["--logger=zap", "--log-level=info"]);
        // etcd 3.4 refuses to start on architectures other than amd64
        // unless told they are fine.
        if std::env::consts::ARCH != "x86_64" {
            let goarch = match std::env::consts::ARCH {
                "aarch64" => "arm64",
                "powerpc64" => "ppc64le",
                other => other,
            };
            cmd.env("ETCD_UNSUPPORTED_ARCH", goarch);
        }
        self.guard = Some(ChildGuard::spawn(&self.name, &mut cmd, &self.log_path));
    }
}

/// An etcd cluster of n members on loopback; killed on drop.
#[derive(Debug)]
pub struct EtcdCluster {
    members: Vec<EtcdMember>,
}

impl EtcdCluster {
    /// Starts `size` members and waits until each serves reads.
    ///
    /// # Panics
    /// If a member cannot start or is not ready within 30 s.
    pub async fn start(dir: &TestDir, size: usize) -> EtcdCluster {
        let token = format!("stolon-test-{}", uuid::Uuid::new_v4());
        let identities: Vec<(String, u16, u16)> = (0..size)
            .map(|i| {
                let client_port = free_port();
                // The client port is unique, so the name is unique even when
                // one test dir holds several clusters.
                (format!("etcd{i}-{client_port}"), client_port, free_port())
            })
            .collect();
        let initial_cluster = identities
            .iter()
            .map(|(name, _, peer)| format!("{name}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let members = identities
            .into_iter()
            .map(|(name, client_port, peer_port)| EtcdMember {
                data_dir: dir.path().join(&name),
                log_path: dir.log_path(&name),
                name,
                client_port,
                peer_port,
                initial_cluster: initial_cluster.clone(),
                token: token.clone(),
                guard: None,
            })
            .collect();
        let mut cluster = EtcdCluster { members };
        // All members must run before any can be ready: a leader needs quorum.
        for member in &mut cluster.members {
            member.spawn();
        }
        for member in &cluster.members {
            member.wait_ready().await;
        }
        cluster
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the cluster has no members (never, for a started cluster).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Client URLs of all members.
    pub fn client_urls(&self) -> Vec<String> {
        self.members.iter().map(EtcdMember::client_url).collect()
    }

    /// Comma-separated client URLs, the form our binaries' `--store-endpoints` take.
    pub fn endpoints(&self) -> String {
        self.client_urls().join(",")
    }

    /// Member `i`.
    ///
    /// # Panics
    /// If `i` is out of range.
    pub fn member(&self, i: usize) -> &EtcdMember {
        &self.members[i]
    }

    /// Member `i`, mutably (kill, restart).
    ///
    /// # Panics
    /// If `i` is out of range.
    pub fn member_mut(&mut self, i: usize) -> &mut EtcdMember {
        &mut self.members[i]
    }

    /// SIGKILLs member `i`.
    pub fn kill_member(&mut self, i: usize) {
        self.members[i].kill();
    }

    /// Freezes member `i` with SIGSTOP.
    pub fn stop_member(&self, i: usize) {
        self.members[i].stop();
    }

    /// Resumes member `i`.
    pub fn cont_member(&self, i: usize) {
        self.members[i].cont();
    }

    /// Restarts member `i` and waits until it serves reads (which needs a
    /// quorum of the others to be up).
    pub async fn restart_member(&mut self, i: usize) {
        self.members[i].restart().await;
    }

    /// A client over all members' endpoints.
    pub async fn client(&self) -> Result<Client, etcd_client::Error> {
        connect(&self.client_urls()).await
    }

    /// A client talking to member `i` only.
    pub async fn member_client(&self, i: usize) -> Result<Client, etcd_client::Error> {
        connect(&[self.members[i].client_url()]).await
    }
}

/// A single-member etcd; killed on drop.
#[derive(Debug)]
pub struct Etcd {
    cluster: EtcdCluster,
}

impl Etcd {
    /// Starts one etcd server and waits until it serves reads.
    ///
    /// # Panics
    /// If it cannot start or is not ready within 30 s.
    pub async fn start_single(dir: &TestDir) -> Etcd {
        Etcd {
            cluster: EtcdCluster::start(dir, 1).await,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoints(&self) -> String {
        self.cluster.endpoints()
    }

    /// The one client URL, as a list.
    pub fn client_urls(&self) -> Vec<String> {
        self.cluster.client_urls()
    }

    /// The server as a member (ports, pid, log).
    pub fn member(&self) -> &EtcdMember {
        self.cluster.member(0)
    }

    /// Freezes the server with SIGSTOP; [`Etcd::cont`] resumes it.
    pub fn stop(&self) {
        self.cluster.stop_member(0);
    }

    /// Resumes a frozen server.
    pub fn cont(&self) {
        self.cluster.cont_member(0);
    }

    /// SIGKILLs the server; [`Etcd::restart`] brings it back with its data.
    pub fn kill(&mut self) {
        self.cluster.kill_member(0);
    }

    /// (Re)starts the server with the same ports and data and waits until ready.
    pub async fn restart(&mut self) {
        self.cluster.restart_member(0).await;
    }

    /// Whether the server process is alive.
    pub fn is_running(&self) -> bool {
        self.member().is_running()
    }

    /// A client connected to the server.
    pub async fn client(&self) -> Result<Client, etcd_client::Error> {
        self.cluster.client().await
    }

    /// The last `n` lines of the server log.
    pub fn log_tail(&self, n: usize) -> String {
        self.member().log_tail(n)
    }
}
