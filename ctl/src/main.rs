//! stolonctl: operator commands on a cluster's clusterdata.
//!
//! - `main.rs`: flags (Stolon's names, `STOLONCTL_*` env vars) and dispatch;
//! - `commands.rs`: init, spec, update, failkeeper, removekeeper, promote, clusterdata;
//! - `status.rs`: the status model, built purely from store contents, and its text/JSON views.
//!
//! Every command validates its input before touching the store and writes clusterdata only by
//! compare-and-swap, so it never clobbers a concurrent sentinel decision.
#![forbid(unsafe_code)]

mod commands;
mod status;

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use stolon_common::CommonArgs;

/// Operator commands for a stolon-rs cluster.
#[derive(Parser, Debug)]
#[command(name = "stolonctl", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: Cmd,
}

/// Where a spec or document comes from: an argument, a file, or stdin.
#[derive(clap::Args, Debug, Clone)]
struct JsonInput {
    /// The JSON document itself (alternative to --file).
    #[arg(value_name = "JSON")]
    json: Option<String>,
    /// Read the JSON document from FILE, or from stdin when FILE is "-".
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Initialize a new cluster with a cluster spec (default {"initMode":"new"}).
    Init {
        #[command(flatten)]
        input: JsonInput,
        /// Replace existing clusterdata (this re-initializes the cluster: its data is discarded).
        #[arg(short = 'y', long = "yes")]
        yes: bool,
    },
    /// Show the cluster's status: sentinels, proxies, keepers, master.
    Status {
        /// Output format.
        #[arg(short = 'f', long = "format", default_value = "text")]
        format: OutputFormat,
    },
    /// Print the cluster spec.
    Spec {
        /// Include the default value of every field not set explicitly.
        #[arg(long)]
        defaults: bool,
    },
    /// Replace the cluster spec, or patch it with --patch (JSON merge patch).
    Update {
        #[command(flatten)]
        input: JsonInput,
        /// Merge the given JSON into the current spec instead of replacing it (null resets a field).
        #[arg(short = 'p', long = "patch")]
        patch: bool,
    },
    /// Force a keeper to be considered failed (its master db, if any, is failed over).
    Failkeeper {
        /// The keeper's uid.
        uid: String,
    },
    /// Remove a keeper (and its db) from the clusterdata. Refused for the master's keeper.
    Removekeeper {
        /// The keeper's uid.
        uid: String,
    },
    /// Promote a standby cluster to a primary cluster (sets the spec role to master).
    Promote {
        /// Do not ask for confirmation.
        #[arg(short = 'y', long = "yes")]
        yes: bool,
    },
    /// Read or write the raw clusterdata document (for recovery; use with care).
    Clusterdata {
        #[command(subcommand)]
        action: ClusterdataCmd,
    },
}

#[derive(Subcommand, Debug)]
enum ClusterdataCmd {
    /// Print the stored clusterdata document as is.
    Read,
    /// Replace the clusterdata document (validated first).
    Write {
        #[command(flatten)]
        input: JsonInput,
        /// Confirm replacing existing clusterdata.
        #[arg(short = 'y', long = "yes")]
        yes: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OutputFormat {
    Text,
    Json,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli: Cli = stolon_common::parse_with_env_prefix("STOLONCTL");
    stolon_common::logging::init(cli.common.log_level, cli.common.log_format);
    match commands::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("stolonctl: error: {err}");
            ExitCode::FAILURE
        }
    }
}
