//! stolon-keeper: runs one PostgreSQL instance as its child and brings it to what clusterdata says.
//!
//! - `args`: flags (Stolon's names, `STKEEPER_*` env vars) and their checks;
//! - `config`: the resolved settings (`KeeperConfig`);
//! - `preflight`: not root, the data-dir lock, the PostgreSQL programs and version;
//! - `state`: keeperstate.json, dbstate.json and pgpass, written atomically;
//! - `quote`: quoting for postgresql.conf, conninfo, pg_hba.conf, pgpass and SQL;
//! - `conf`, `hba`: pure renderings of postgresql-stolon.conf and pg_hba.conf (golden-tested);
//! - `autoconf`: postgresql.auto.conf as a symlink to /dev/null, so ALTER SYSTEM fails;
//! - `desired`: clusterdata to the plan's `Desired` plus the files to write;
//! - `plan`: the pure decision `plan(&Desired, &Observed) -> Vec<Step>`;
//! - `observe`: the data dir and postgres as they are (`Observed`);
//! - `exec`, `process`, `sql`: the I/O of each step;
//! - `identify`: IDENTIFY_SYSTEM over a replication connection (a standby's replayed timeline);
//! - `rewind`: when a failing pg_rewind gives way to a full resync (pg_basebackup);
//! - `info`: the published KeeperInfo;
//! - `http`: probes (/health, /role, /primary, /replica) and /metrics;
//! - `keeper`: the pass loop, the observer loop, the claim loop (/primary) and the publish loop;
//! - `error`: typed errors that say what to do.
//!
//! Shutdown: on SIGTERM or SIGINT the keeper stops its pass, stops postgres with a fast shutdown
//! (waiting for it), withdraws its info and exits.
#![forbid(unsafe_code)]

mod args;
mod autoconf;
mod conf;
mod config;
mod desired;
mod error;
mod exec;
#[cfg(test)]
mod golden;
mod hba;
mod http;
mod identify;
mod info;
mod insync;
mod keeper;
mod observe;
#[cfg(test)]
mod pg_tests;
mod plan;
mod preflight;
mod process;
mod quote;
mod rewind;
mod sql;
mod state;
#[cfg(test)]
mod store_tests;

use crate::error::StartupError;
use std::process::ExitCode;
use std::sync::Arc;

#[tokio::main]
async fn main() -> ExitCode {
    let args: args::Args = stolon_common::parse_with_env_prefix("STKEEPER");
    stolon_common::logging::init(args.common.log_level, args.common.log_format);
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("stolon-keeper: error: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: args::Args) -> Result<(), StartupError> {
    let euid = preflight::refuse_root()?;
    preflight::ensure_data_dir(&args.data_dir)?;
    let _lock = preflight::lock_data_dir(&args.data_dir)?;
    let cfg = Arc::new(config::resolve(&args, euid)?);
    let db_state_path = cfg.data_dir.join(state::DB_STATE_FILE);
    let recorded = state::read_db_state(&cfg.data_dir).map_err(|reason| StartupError::State { path: db_state_path, reason })?;
    state::write_pgpass(&cfg.data_dir, &[(&cfg.su_username, cfg.su_password.as_ref()), (&cfg.repl_username, cfg.repl_password.as_ref())])
        .map_err(|source| StartupError::Io { what: "write", path: cfg.pgpass.clone(), source })?;
    tracing::info!(
        keeper = %cfg.uid,
        data_dir = %cfg.data_dir.display(),
        pg_bin = %cfg.bin_dir.display(),
        pg_version = format!("{}.{}", cfg.pg_version.major, cfg.pg_version.minor),
        listen = format!("{}:{}", cfg.listen_address, cfg.port),
        advertise = format!("{}:{}", cfg.advertise_address, cfg.advertise_port),
        db = ?recorded.as_ref().map(|r| &r.db_uid),
        "stolon-keeper starting"
    );

    let store = clusterview::Store::connect(&args.common.store_config()?).await?;
    let timing = desired::Timing::from_spec(&clusterview::ClusterSpec::defaults());
    let shared = http::Shared::new(timing, recorded.clone());
    let _server = match args.metrics.metrics_listen_address {
        Some(addr) => {
            let handle = stolon_common::http::spawn_server(addr, http::router(Arc::clone(&shared))).await.map_err(StartupError::Metrics)?;
            tracing::info!(%addr, "serving /metrics and the probes");
            Some(AbortOnDrop(handle))
        }
        None => None,
    };
    let observer = AbortOnDrop(tokio::spawn(keeper::observe_loop(Arc::clone(&cfg), Arc::clone(&shared))));
    let claim = AbortOnDrop(tokio::spawn(keeper::cluster_data_loop(Arc::clone(&cfg), store.clone(), Arc::clone(&shared))));
    let publisher = AbortOnDrop(tokio::spawn(keeper::publish_loop(Arc::clone(&cfg), store.clone(), Arc::clone(&shared), cfg.boot_uuid.clone())));

    let exec = exec::Executor::new(Arc::clone(&cfg), recorded);
    let mut keeper = keeper::Keeper::new(Arc::clone(&cfg), store.clone(), shared, exec);
    tokio::select! {
        () = keeper.run() => {}
        () = stolon_common::signals::shutdown_signal() => {
            tracing::info!("shutdown requested");
        }
    }
    drop(publisher);
    drop(claim);
    drop(observer);
    keeper.shutdown().await;
    keeper::withdraw_info(&cfg, &store).await;
    tracing::info!("stolon-keeper stopped");
    Ok(())
}

/// Aborts a background task when dropped (STYLE: tasks are owned by guards).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
