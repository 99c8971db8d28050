//! `stolon-bench`: benchmarks of stolon-rs with real etcd, real PostgreSQL and our real binaries,
//! started by the integration-test harness (`stolon-tests`). Each subcommand prints Markdown
//! tables on stdout and progress on stderr; numbers are measured and reported, never judged.
//! `bench/run.sh` builds in release and runs them all; `bench/RESULTS.md` holds a run's output.
//!
//! Module map:
//! - [`failover`]: write unavailability and lost acknowledged writes when the master is killed.
//! - [`writer`]: the failover benchmark's client, inserting through the proxy on its own thread.
//! - [`overhead`]: pgbench through our proxy vs direct vs HAProxy, with the forwarder's CPU per
//!   transaction, on shared cores or with the forwarder on a core of its own.
//! - [`idle`]: memory and CPU of the daemons of a settled, idle cluster.
//! - [`procfs`]: RSS, threads and CPU time of a process from `/proc` (idle and overhead).
//! - [`report`]: Markdown tables and min/median/max.
//!
//! Every process is owned by the harness's guards, which kill it on drop, also when a benchmark
//! fails or panics half-way.
#![forbid(unsafe_code)]

mod failover;
mod idle;
mod overhead;
mod procfs;
mod report;
mod writer;

use clap::{Parser, Subcommand};
use std::process::ExitCode;
use tokio::signal::unix::{signal, SignalKind};

#[derive(Parser)]
#[command(name = "stolon-bench", about = "Benchmarks of stolon-rs with real etcd, PostgreSQL and binaries")]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Write unavailability and lost acknowledged rows when the master is killed with kill -9,
    /// for the default spec and a fast-failover spec (3 keepers, 1 sentinel, 1 proxy, fresh
    /// cluster per run).
    Failover {
        /// Runs per spec.
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// pgbench -S (persistent and -C) direct to the master, through our proxy and through
    /// HAProxy in TCP mode, interleaved.
    ProxyOverhead {
        /// Interleaved rounds over all targets; the median is reported.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Seconds per pgbench run (-T).
        #[arg(long, default_value_t = 15)]
        seconds: u32,
        /// Only the persistent-connection mode (skips -C; for quick comparisons).
        #[arg(long)]
        persistent_only: bool,
        /// `shared`: the forwarder competes with pgbench and postgres for the cores; `split`:
        /// pgbench and postgres on CPU 0, the forwarder alone on CPU 1.
        #[arg(long, value_enum, default_value_t = overhead::CpuLayout::Shared)]
        cpu_layout: overhead::CpuLayout,
    },
    /// RSS and CPU of keepers, sentinels and proxy of an idle 3-keeper cluster.
    Idle {
        /// Seconds to wait after the cluster is up before sampling.
        #[arg(long, default_value_t = 10)]
        settle: u64,
        /// Seconds of the sampling window.
        #[arg(long, default_value_t = 30)]
        window: u64,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let bench = async {
        match Cli::parse().bench {
            Bench::Failover { runs } => failover::run(runs).await,
            Bench::ProxyOverhead { rounds, seconds, persistent_only, cpu_layout } => {
                overhead::run(rounds, seconds, persistent_only, cpu_layout).await
            }
            Bench::Idle { settle, window } => idle::run(settle, window).await,
        }
    };
    // The children lead their own process groups, so a Ctrl-C on the terminal does not reach
    // them: on SIGINT or SIGTERM the benchmark is dropped, and with it every guard, which kills
    // its process group.
    let result = tokio::select! {
        result = bench => result,
        signal = stop_signal() => Err(format!("{signal}; every process started was killed")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stolon-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGINT or SIGTERM, naming it.
async fn stop_signal() -> &'static str {
    let mut term = signal(SignalKind::terminate()).ok();
    let sigterm = async {
        match term.as_mut() {
            Some(term) => term.recv().await,
            // Without a SIGTERM handler the default action still ends us; only SIGINT is caught.
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "interrupted (SIGINT)",
        _ = sigterm => "terminated (SIGTERM)",
    }
}
