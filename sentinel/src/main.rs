//! stolon-sentinel: elects a leader among the sentinels; the leader decides the clusterview.
//!
//! - `main.rs`: flags (`STSENTINEL_*` env vars), start-up checks, metrics server, signals;
//! - `run`: the loop (info, clusterdata, decide, CAS write) around the pure core;
//! - `campaign`: the election campaign task;
//! - `decide/`: the decision core, sans I/O, with its table tests;
//! - `report`: logging the decisions; `metrics`: `/metrics`.
#![forbid(unsafe_code)]

mod campaign;
mod decide;
mod metrics;
mod report;
mod run;

use clap::Parser;
use clusterview::spec::{ClusterSpec, SpecError};
use clusterview::{Store, StoreError};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use stolon_common::{CommonArgs, MetricsArgs};

/// The stolon-rs sentinel: watches keepers and proxies, elects the master, drives failover.
#[derive(Parser, Debug)]
#[command(name = "stolon-sentinel", version, about, long_about = None)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    metrics: MetricsArgs,
    /// Unique id of this sentinel (default: a new random one at each start).
    #[arg(long, value_name = "UID")]
    uid: Option<String>,
    /// Cluster spec (JSON file) to initialize the cluster with when it has no clusterdata yet;
    /// ignored once clusterdata exists. An invalid spec stops the sentinel at start-up. Never
    /// used while a keeper reports existing data (a db uid or a system id): a lost or renamed
    /// clusterdata key is not turned into an empty cluster; use `stolonctl init` then.
    #[arg(long, value_name = "FILE")]
    initial_cluster_spec: Option<PathBuf>,
}

/// Why the sentinel refused to start.
#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error("cannot read --initial-cluster-spec {path}: {source}")]
    ReadSpec { path: PathBuf, source: std::io::Error },
    #[error("invalid --initial-cluster-spec {path}: {source}; fix the file (see `stolonctl spec --defaults`)")]
    InvalidSpec { path: PathBuf, source: SpecError },
    #[error("invalid --uid {0:?}: use letters, digits, '-' or '_' only")]
    InvalidUid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Metrics(std::io::Error),
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Args = stolon_common::parse_with_env_prefix("STSENTINEL");
    stolon_common::logging::init(args.common.log_level, args.common.log_format);
    match start(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("stolon-sentinel: error: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn start(args: Args) -> Result<(), StartError> {
    // Check every input before touching the store.
    let initial_spec = match &args.initial_cluster_spec {
        Some(path) => Some(read_spec(path)?),
        None => None,
    };
    if let Some(unknown) = initial_spec.as_ref().map(ClusterSpec::unknown_fields).filter(|u| !u.is_empty()) {
        tracing::warn!(fields = ?unknown, "--initial-cluster-spec has fields unknown to this sentinel; they are kept but ignored (check their spelling)");
    }
    let uid = match args.uid {
        Some(uid) if valid_uid(&uid) => uid,
        Some(uid) => return Err(StartError::InvalidUid(uid)),
        None => clusterview::new_uid(),
    };
    let store = Store::connect(&args.common.store_config()?).await?;
    let metrics = Arc::new(metrics::Metrics::default());
    // Held until exit: the metrics server runs as long as the sentinel.
    let _metrics_server = match args.metrics.metrics_listen_address {
        Some(addr) => Some(
            stolon_common::http::spawn_server(addr, metrics::router(metrics.clone()))
                .await
                .map_err(StartError::Metrics)?,
        ),
        None => None,
    };
    tracing::info!(uid = %uid, cluster = %args.common.cluster_name, "stolon-sentinel starting");
    let config = run::Config { uid, initial_spec };
    run::run(store, config, metrics, stolon_common::signals::shutdown_signal()).await;
    Ok(())
}

fn read_spec(path: &PathBuf) -> Result<ClusterSpec, StartError> {
    let text = std::fs::read_to_string(path).map_err(|source| StartError::ReadSpec { path: path.clone(), source })?;
    ClusterSpec::parse_valid(&text).map_err(|source| StartError::InvalidSpec { path: path.clone(), source })
}

/// A uid becomes part of an etcd key: keep it to a safe alphabet.
fn valid_uid(uid: &str) -> bool {
    !uid.is_empty() && uid.len() <= 64 && uid.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use stolon_common::cli::try_parse_from_with_env_prefix;

    #[test]
    fn flags_parse() {
        let args: Args = try_parse_from_with_env_prefix(
            "STSENTINEL_TEST",
            ["stolon-sentinel", "--cluster-name", "c", "--uid", "s1", "--initial-cluster-spec", "/x.json", "--metrics-listen-address", "127.0.0.1:9459"],
        )
        .unwrap();
        assert_eq!(args.uid.as_deref(), Some("s1"));
        assert_eq!(args.initial_cluster_spec, Some(PathBuf::from("/x.json")));
        assert!(args.metrics.metrics_listen_address.is_some());
    }

    #[test]
    fn initial_spec_is_validated() {
        let dir = std::env::temp_dir().join(format!("stsentinel-spec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.json");
        std::fs::write(&good, r#"{"initMode":"new","failInterval":"10s"}"#).unwrap();
        assert!(read_spec(&good).is_ok());
        let bad = dir.join("bad.json");
        std::fs::write(&bad, r#"{"initMode":"new","failInterval":"1s","sleepInterval":"2s"}"#).unwrap();
        assert!(matches!(read_spec(&bad), Err(StartError::InvalidSpec { .. })));
        let unknown = dir.join("unknown.json");
        std::fs::write(&unknown, r#"{"initMode":"new","bogus":1}"#).unwrap();
        // Unknown fields are tolerated (warned about at start), as in Stolon.
        assert_eq!(read_spec(&unknown).unwrap().unknown_fields(), vec!["bogus".to_string()]);
        assert!(matches!(read_spec(&dir.join("missing.json")), Err(StartError::ReadSpec { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn uids() {
        assert!(valid_uid("sentinel-1_a"));
        assert!(!valid_uid(""));
        assert!(!valid_uid("a/b"));
    }
}
