//! The etcd v3 store: the only way any component talks to etcd.
//!
//! - this file: connecting (endpoints, TLS, timeouts), errors, and clusterdata read / CAS write;
//! - `keys`: the key layout (docs/protocol.md, "Who writes what");
//! - `infos`: component infos published under a lease, and listing them;
//! - `election`: sentinel leader election (campaign, observe the leader, resign);
//! - `watch`: a watch on clusterdata.
//!
//! Every unary request is bounded by `--store-timeout`, so a dead etcd turns into a
//! `StoreError::Timeout` instead of a hung loop.

mod election;
mod infos;
mod keys;
mod watch;

pub use election::{Campaign, Leadership};
pub use infos::InfoPublisher;
pub use keys::{InfoKind, Keys};
pub use watch::ClusterDataWatch;

use crate::data::{ClusterData, DataError};
use etcd_client::{Client, Compare, CompareOp, ConnectOptions, Txn, TxnOp};
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

/// Why a store operation failed, and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported store backend {0:?}: use \"etcdv3\" (or its alias \"etcd\")")]
    UnsupportedBackend(String),
    #[error("invalid store configuration: {0}")]
    Config(String),
    #[error("cannot read {what} file {path}: {source}")]
    TlsFile { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("cannot connect to etcd at {endpoints}: {source}; check --store-endpoints and that etcd is running")]
    Connect { endpoints: String, source: etcd_client::Error },
    #[error("etcd {op} failed: {source}; check that etcd at {endpoints} is running, reachable and healthy")]
    Request { op: &'static str, endpoints: String, source: etcd_client::Error },
    #[error("etcd {op} timed out after {timeout:?}; check that etcd at {endpoints} is reachable, or raise --store-timeout")]
    Timeout { op: &'static str, endpoints: String, timeout: Duration },
    #[error("clusterdata was changed by someone else meanwhile (compare-and-swap failed); re-read it and retry")]
    Conflict,
    #[error("this sentinel's election key is gone (its lease expired or another sentinel leads): clusterdata not written; campaign again")]
    NotLeader,
    #[error("stored clusterdata is unusable: {0}")]
    Data(#[from] DataError),
}

/// Supported store backends (`--store-backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreBackend {
    EtcdV3,
}

impl std::str::FromStr for StoreBackend {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "etcdv3" | "etcd" => Ok(StoreBackend::EtcdV3),
            other => Err(StoreError::UnsupportedBackend(other.to_string())),
        }
    }
}

/// Everything needed to reach the store; built from the common flags.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub backend: StoreBackend,
    pub endpoints: Vec<String>,
    pub prefix: String,
    pub cluster_name: String,
    pub timeout: Duration,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
}

/// A value read from the store with the mod revision CAS writes compare against.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub value: T,
    pub revision: i64,
}

/// What a CAS write of clusterdata expects to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// No clusterdata yet (create-if-absent).
    Absent,
    /// Clusterdata last modified at this revision.
    Revision(i64),
}

/// A handle on one cluster's keys in etcd. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    client: Client,
    keys: Keys,
    timeout: Duration,
    endpoints: String,
}

impl Store {
    /// Builds a client. The connection itself is lazy: an unreachable etcd shows up as a
    /// `Timeout` or `Request` error on the first operation.
    pub async fn connect(config: &StoreConfig) -> Result<Store, StoreError> {
        if config.cluster_name.is_empty() {
            return Err(StoreError::Config("--cluster-name must not be empty".into()));
        }
        if config.cluster_name.contains('/') {
            return Err(StoreError::Config("--cluster-name must not contain '/'".into()));
        }
        if config.endpoints.is_empty() {
            return Err(StoreError::Config("--store-endpoints must name at least one endpoint".into()));
        }
        if config.timeout.is_zero() {
            return Err(StoreError::Config("--store-timeout must be greater than 0".into()));
        }
        let endpoints_text = config.endpoints.join(",");
        let mut options = ConnectOptions::new()
            .with_connect_timeout(config.timeout)
            // No per-request deadline here: `bounded` applies --store-timeout to unary requests,
            // while an election campaign must be able to wait for as long as another leads.
            .with_keep_alive(Duration::from_secs(5), config.timeout);
        if let Some(tls) = tls_options(config)? {
            options = options.with_tls(tls);
        }
        let endpoints: Vec<String> = config.endpoints.iter().map(|e| normalize_endpoint(e)).collect();
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(|source| StoreError::Connect { endpoints: endpoints_text.clone(), source })?;
        Ok(Store {
            client,
            keys: Keys::new(&config.prefix, &config.cluster_name),
            timeout: config.timeout,
            endpoints: endpoints_text,
        })
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A client for operations of the submodules.
    fn client(&self) -> Client {
        self.client.clone()
    }

    /// Runs one etcd request bounded by the store timeout, mapping errors to `StoreError`.
    /// For a future that cannot be re-made (one round of a stream); prefer `request`.
    async fn bounded<T, F>(&self, op: &'static str, fut: F) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, etcd_client::Error>>,
    {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(source)) => Err(StoreError::Request { op, endpoints: self.endpoints.clone(), source }),
            Err(_) => Err(StoreError::Timeout { op, endpoints: self.endpoints.clone(), timeout: self.timeout }),
        }
    }

    /// Runs one etcd request, `attempt(client)`, within the store timeout, and tries again while
    /// etcd answers "unavailable". The client balances requests over every endpoint, including
    /// a member that is down or has just lost its raft leader: without a retry, one dead member
    /// of three fails a share of all requests (seen in CI as "tcp connect error" on a healthy
    /// cluster), while another attempt reaches a live member. Every request we make may be
    /// repeated: reads and lease grants trivially; an info put is idempotent; a clusterdata CAS
    /// that did apply before its answer was lost fails its repeat as a `Conflict`, which callers
    /// already handle by re-reading.
    async fn request<T, F, Fut>(&self, op: &'static str, mut attempt: F) -> Result<T, StoreError>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut pause = RETRY_PAUSE_MIN;
        loop {
            match tokio::time::timeout_at(deadline, attempt(self.client())).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(source)) if is_unavailable(&source) && tokio::time::Instant::now() + pause < deadline => {
                    tracing::debug!(op, error = %source, "etcd endpoint unavailable, trying again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(RETRY_PAUSE_MAX);
                }
                Ok(Err(source)) => return Err(StoreError::Request { op, endpoints: self.endpoints.clone(), source }),
                Err(_) => {
                    return Err(StoreError::Timeout { op, endpoints: self.endpoints.clone(), timeout: self.timeout })
                }
            }
        }
    }

    /// Reads clusterdata with its mod revision; `None` when the cluster was never initialized.
    pub async fn get_cluster_data(&self) -> Result<Option<Versioned<ClusterData>>, StoreError> {
        let key = self.keys.cluster_data();
        let key = key.as_str();
        let resp = self.request("get clusterdata", |mut c| async move { c.get(key, None).await }).await?;
        match resp.kvs().first() {
            None => Ok(None),
            Some(kv) => Ok(Some(Versioned {
                value: ClusterData::from_json(kv.value())?,
                revision: kv.mod_revision(),
            })),
        }
    }

    /// Reads clusterdata as raw bytes (for `stolonctl clusterdata read`, which must work even
    /// when the document is corrupt).
    pub async fn get_cluster_data_raw(&self) -> Result<Option<Versioned<Vec<u8>>>, StoreError> {
        let key = self.keys.cluster_data();
        let key = key.as_str();
        let resp = self.request("get clusterdata", |mut c| async move { c.get(key, None).await }).await?;
        Ok(resp.kvs().first().map(|kv| Versioned { value: kv.value().to_vec(), revision: kv.mod_revision() }))
    }

    /// Writes clusterdata only if it is still as `expect` says; returns the new mod revision.
    /// A concurrent change yields `StoreError::Conflict` and writes nothing.
    pub async fn put_cluster_data(&self, data: &ClusterData, expect: Expect) -> Result<i64, StoreError> {
        self.put_cluster_data_raw(data.to_json(), expect).await
    }

    /// As `put_cluster_data`, for the leading sentinel: the same transaction also checks that
    /// its election key still exists with the create revision it was elected with, so a sentinel
    /// whose term ended (frozen past its lease, then resumed) cannot land a decision of its old
    /// term (`StoreError::NotLeader`), whatever it believes about its lease.
    pub async fn put_cluster_data_as_leader(
        &self,
        data: &ClusterData,
        expect: Expect,
        leadership: &Leadership,
    ) -> Result<i64, StoreError> {
        let Some((key, rev)) = leadership.election_key() else { return Err(StoreError::NotLeader) };
        let term = Compare::create_revision(key.clone(), CompareOp::Equal, rev);
        let resp = self.cas_cluster_data(data.to_json(), expect, Some(term), Some(key.clone())).await?;
        match resp {
            Ok(revision) => Ok(revision),
            Err(ops) => {
                // Which compare failed: the else branch read the election key.
                let ours = ops.iter().any(|op| match op {
                    etcd_client::TxnOpResponse::Get(get) => get.kvs().first().is_some_and(|kv| kv.create_revision() == rev),
                    _ => false,
                });
                Err(if ours { StoreError::Conflict } else { StoreError::NotLeader })
            }
        }
    }

    /// As `put_cluster_data`, with bytes the caller has already validated.
    pub async fn put_cluster_data_raw(&self, bytes: Vec<u8>, expect: Expect) -> Result<i64, StoreError> {
        self.cas_cluster_data(bytes, expect, None, None).await?.map_err(|_| StoreError::Conflict)
    }

    /// One CAS transaction on clusterdata, with an optional extra compare; on a failed compare,
    /// the answers of the else branch (a read of `else_get`).
    async fn cas_cluster_data(
        &self,
        bytes: Vec<u8>,
        expect: Expect,
        extra: Option<Compare>,
        else_get: Option<Vec<u8>>,
    ) -> Result<Result<i64, Vec<etcd_client::TxnOpResponse>>, StoreError> {
        let key = self.keys.cluster_data();
        let compare = match expect {
            Expect::Absent => Compare::create_revision(key.clone(), CompareOp::Equal, 0),
            Expect::Revision(rev) => Compare::mod_revision(key.clone(), CompareOp::Equal, rev),
        };
        let compares: Vec<Compare> = std::iter::once(compare).chain(extra).collect();
        let otherwise: Vec<TxnOp> = else_get.into_iter().map(|k| TxnOp::get(k, None)).collect();
        let txn = Txn::new().when(compares).and_then(vec![TxnOp::put(key, bytes, None)]).or_else(otherwise);
        let resp = self.request("write clusterdata", |mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        }).await?;
        if !resp.succeeded() {
            return Ok(Err(resp.op_responses()));
        }
        Ok(Ok(resp.header().map(|h| h.revision()).unwrap_or_default()))
    }

    /// Checks that etcd answers (a cheap read of the clusterdata key's existence).
    pub async fn ping(&self) -> Result<(), StoreError> {
        let key = self.keys.cluster_data();
        let key = key.as_str();
        let opts = etcd_client::GetOptions::new().with_count_only();
        self.request("ping", |mut c| {
            let opts = opts.clone();
            async move { c.get(key, Some(opts)).await }
        })
        .await?;
        Ok(())
    }
}

/// First and longest pause between attempts of a request that found etcd unavailable.
const RETRY_PAUSE_MIN: Duration = Duration::from_millis(50);
const RETRY_PAUSE_MAX: Duration = Duration::from_millis(500);

/// etcd (or the way to it) said "unavailable": a dead or unreachable member, or one without a
/// raft leader for now. Another attempt may reach a healthy member.
fn is_unavailable(err: &etcd_client::Error) -> bool {
    match err {
        etcd_client::Error::GRpcStatus(status) => status.code() == tonic::Code::Unavailable,
        etcd_client::Error::TransportError(_) => true,
        _ => false,
    }
}

/// Accepts `127.0.0.1:2379` as well as `http://127.0.0.1:2379`.
fn normalize_endpoint(endpoint: &str) -> String {
    let trimmed = endpoint.trim();
    if trimmed.contains("://") {
        trimmed.to_string()
    } else {
        format!("http://{trimmed}")
    }
}

fn tls_options(config: &StoreConfig) -> Result<Option<etcd_client::TlsOptions>, StoreError> {
    let read = |what: &'static str, path: &PathBuf| {
        std::fs::read(path).map_err(|source| StoreError::TlsFile { what, path: path.clone(), source })
    };
    let uses_https = config.endpoints.iter().any(|e| e.trim().starts_with("https://"));
    if config.ca_file.is_none() && config.cert_file.is_none() && config.key_file.is_none() && !uses_https {
        return Ok(None);
    }
    let mut tls = etcd_client::TlsOptions::new();
    if let Some(ca) = &config.ca_file {
        tls = tls.ca_certificate(etcd_client::Certificate::from_pem(read("--store-ca-file", ca)?));
    }
    match (&config.cert_file, &config.key_file) {
        (Some(cert), Some(key)) => {
            tls = tls.identity(etcd_client::Identity::from_pem(
                read("--store-cert-file", cert)?,
                read("--store-key", key)?,
            ));
        }
        (None, None) => {}
        _ => {
            return Err(StoreError::Config(
                "--store-cert-file and --store-key must be given together".into(),
            ))
        }
    }
    Ok(Some(tls))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_names() {
        assert_eq!("etcdv3".parse::<StoreBackend>().unwrap(), StoreBackend::EtcdV3);
        assert_eq!("etcd".parse::<StoreBackend>().unwrap(), StoreBackend::EtcdV3);
        assert!(matches!("consul".parse::<StoreBackend>(), Err(StoreError::UnsupportedBackend(_))));
    }

    #[test]
    fn endpoints_get_a_scheme() {
        assert_eq!(normalize_endpoint("127.0.0.1:2379"), "http://127.0.0.1:2379");
        assert_eq!(normalize_endpoint(" https://e:2379 "), "https://e:2379");
    }
}
