//! stolon-proxy: the clients' entry point.
//!
//! - `route`: pure routing rules (read-write target, read-only candidates);
//! - `control`: the loop that checks the store, applies routing, publishes the ProxyInfo and
//!   fences the proxy when no check has passed for `proxyTimeout`;
//! - `fencing`: the fencing deadline (when it moves, and its shared copy checked per chunk);
//! - `listener`: accept loops of the read-write and read-only ports;
//! - `forward`: forwarding one connection with bounded memory;
//! - `metrics`: counters, `/metrics` and `/health`.
#![forbid(unsafe_code)]

mod control;
mod fencing;
mod forward;
mod listener;
mod metrics;
mod route;

use clap::{ArgAction, Parser};
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use stolon_common::{CommonArgs, MetricsArgs};

/// Forwards client connections to the elected PostgreSQL master only.
#[derive(Parser, Debug)]
#[command(name = "stolon-proxy", version, about, long_about = None)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    metrics: MetricsArgs,
    /// Unique id of this proxy (default: a random one per start).
    #[arg(long, value_name = "UID")]
    uid: Option<String>,
    /// Address the proxy listens on for clients.
    #[arg(long, default_value = "127.0.0.1", value_name = "ADDRESS")]
    listen_address: IpAddr,
    /// Read-write port: forwarded to the elected master.
    #[arg(long, default_value_t = 5432, value_name = "PORT")]
    port: u16,
    /// Read-only port, balanced over healthy streaming standbys (off when unset). With no
    /// healthy standby, connections to it are closed at once (never sent to the master).
    #[arg(long, value_name = "PORT")]
    ro_port: Option<u16>,
    /// Stop listening while the store is unreachable for longer than proxyTimeout, so load
    /// balancers see the proxy down (--stop-listening=false keeps listening and refuses).
    #[arg(long, default_value_t = true, action = ArgAction::Set, value_name = "BOOL")]
    stop_listening: bool,
    /// TCP keepalive on client and backend sockets: seconds of silence before the first probe
    /// (0 turns keepalive off). With the defaults a vanished peer (host down, cable cut) is
    /// noticed within about a minute and its postgres backend freed, instead of the kernel's
    /// two hours.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    tcp_keepalive_idle: u64,
    /// TCP keepalive: unanswered probes before the connection is dropped.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..), value_name = "COUNT")]
    tcp_keepalive_count: u32,
    /// TCP keepalive: seconds between probes.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..), value_name = "SECONDS")]
    tcp_keepalive_interval: u64,
    /// Timeout of a connection attempt to the backend (Go duration).
    #[arg(long, default_value = "2s", value_parser = stolon_common::cli::parse_duration, value_name = "DURATION")]
    backend_connect_timeout: Duration,
    /// On SIGTERM, how long forwarded connections may drain before they are closed; never longer
    /// than the fencing deadline (proxyTimeout after the last passed check; past it a failover
    /// could go unfenced).
    #[arg(long, default_value = "10s", value_parser = stolon_common::cli::parse_duration, value_name = "DURATION")]
    shutdown_timeout: Duration,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Args = stolon_common::parse_with_env_prefix("STPROXY");
    stolon_common::logging::init(args.common.log_level, args.common.log_format);
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "stolon-proxy failed");
            eprintln!("stolon-proxy: error: {err}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum ProxyError {
    #[error(transparent)]
    Store(#[from] clusterview::StoreError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("--port and --ro-port must differ")]
    SamePorts,
}

async fn run(args: Args) -> Result<(), ProxyError> {
    if args.ro_port == Some(args.port) && args.port != 0 {
        return Err(ProxyError::SamePorts);
    }
    let store = clusterview::Store::connect(&args.common.store_config()?).await?;
    let uid = args.uid.clone().unwrap_or_else(clusterview::new_uid);
    let metrics = Arc::new(metrics::ProxyMetrics::new());
    let _metrics_server = match args.metrics.metrics_listen_address {
        Some(addr) => Some(stolon_common::http::spawn_server(addr, metrics::router(metrics.clone())).await?),
        None => None,
    };
    let tracker = tokio_util::task::TaskTracker::new();
    let config = control::Config {
        uid: uid.clone(),
        rw_addr: SocketAddr::new(args.listen_address, args.port),
        ro_addr: args.ro_port.map(|p| SocketAddr::new(args.listen_address, p)),
        stop_listening: args.stop_listening,
        conn: listener::ConnSettings {
            connect_timeout: args.backend_connect_timeout,
            keepalive: (args.tcp_keepalive_idle > 0).then(|| forward::Keepalive {
                idle: Duration::from_secs(args.tcp_keepalive_idle),
                interval: Duration::from_secs(args.tcp_keepalive_interval),
                count: args.tcp_keepalive_count,
            }),
            tracker: tracker.clone(),
            deadline: Arc::new(fencing::Deadline::closed()),
        },
    };
    tracing::info!(uid = %uid, port = args.port, ro_port = ?args.ro_port, "stolon-proxy starting");
    let fence_at = control::Control::new(config, store, metrics).run(stolon_common::signals::shutdown_signal()).await?;
    // Listeners are closed: let forwarded connections drain, within --shutdown-timeout but never
    // past the fencing deadline: the control loop no longer follows master changes, and after
    // that deadline a sentinel may publish a new master without this proxy's acknowledgement.
    tracker.close();
    let until = fence_at.min(tokio::time::Instant::now() + args.shutdown_timeout);
    if tokio::time::timeout_at(until, tracker.wait()).await.is_err() {
        tracing::warn!(timeout = ?args.shutdown_timeout, "connections still open at shutdown; closing them");
    }
    tracing::info!("stolon-proxy stopped");
    Ok(())
}
