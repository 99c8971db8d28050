//! The accept loops of the read-write and read-only ports, and the routing state they read.
//!
//! The control loop publishes a `RwState` / `RoState` through watch channels; an accept loop
//! reads the current value for each new connection. Closing connections is done by cancelling
//! tokens, never by walking a list: every read-write connection holds its epoch's token, every
//! read-only connection its backend's token.

use crate::fencing::Deadline;
use crate::forward::{Ended, Forward, Keepalive};
use crate::metrics::PortMetrics;
use crate::route::Backend;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Read-write routing: one master epoch.
#[derive(Clone)]
pub struct RwState {
    pub backend: Option<Backend>,
    /// Cancelled when this epoch ends (master change or fencing).
    pub cancel: CancellationToken,
    /// Held by every connection of the epoch; the control loop waits for the count to drop.
    pub epoch: Arc<()>,
}

impl RwState {
    pub fn closed() -> RwState {
        RwState { backend: None, cancel: CancellationToken::new(), epoch: Arc::new(()) }
    }
}

/// One read-only backend with its connection count and its token.
pub struct RoBackend {
    pub backend: Backend,
    pub active: AtomicU64,
    pub cancel: CancellationToken,
}

/// Read-only routing: the standbys fit to serve reads.
#[derive(Clone)]
pub struct RoState {
    pub backends: Vec<Arc<RoBackend>>,
}

/// What every connection needs besides its routing.
#[derive(Clone)]
pub struct ConnSettings {
    pub connect_timeout: Duration,
    pub keepalive: Option<Keepalive>,
    pub tracker: TaskTracker,
    /// The fencing deadline: new connections are refused, and open ones copy nothing, once it
    /// has passed, even if the control loop has not run yet (e.g. right after a freeze).
    pub deadline: Arc<Deadline>,
}

/// A bound listener running its accept loop; dropping it stops listening.
pub struct Listening(JoinHandle<()>);

impl Drop for Listening {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub async fn listen_rw(
    addr: SocketAddr,
    state: watch::Receiver<RwState>,
    settings: ConnSettings,
    metrics: Arc<PortMetrics>,
) -> std::io::Result<Listening> {
    let listener = TcpListener::bind(addr).await?;
    Ok(Listening(tokio::spawn(async move {
        loop {
            let (client, peer) = accept(&listener, &metrics).await;
            let current = state.borrow().clone();
            let Some(backend) = current.backend.filter(|_| settings.deadline.is_open()) else {
                metrics.refused.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(client = %peer, "no master: connection refused");
                continue;
            };
            let forward = Forward {
                client,
                backend: backend.address.clone(),
                connect_timeout: settings.connect_timeout,
                keepalive: settings.keepalive,
                cancel: current.cancel.clone(),
                deadline: settings.deadline.clone(),
                metrics: metrics.clone(),
            };
            let metrics = metrics.clone();
            let epoch = current.epoch.clone();
            settings.tracker.spawn(async move {
                let _epoch = epoch;
                let ended = run_counted(forward, &metrics).await;
                tracing::debug!(client = %peer, backend = %backend.address, ?ended, "connection ended");
            });
        }
    })))
}

pub async fn listen_ro(
    addr: SocketAddr,
    state: watch::Receiver<RoState>,
    settings: ConnSettings,
    metrics: Arc<PortMetrics>,
) -> std::io::Result<Listening> {
    let listener = TcpListener::bind(addr).await?;
    Ok(Listening(tokio::spawn(async move {
        loop {
            let (client, peer) = accept(&listener, &metrics).await;
            let current = state.borrow().clone();
            // Fewest active connections first; ties go to the first in db uid order.
            let chosen = if settings.deadline.is_open() {
                current.backends.iter().min_by_key(|b| b.active.load(Ordering::Relaxed)).cloned()
            } else {
                None
            };
            let Some(target) = chosen else {
                metrics.refused.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(client = %peer, "no healthy standby: read-only connection refused");
                continue;
            };
            // Count the connection before the task starts, so a burst of accepts spreads out.
            target.active.fetch_add(1, Ordering::Relaxed);
            let forward = Forward {
                client,
                backend: target.backend.address.clone(),
                connect_timeout: settings.connect_timeout,
                keepalive: settings.keepalive,
                cancel: target.cancel.clone(),
                deadline: settings.deadline.clone(),
                metrics: metrics.clone(),
            };
            let metrics = metrics.clone();
            settings.tracker.spawn(async move {
                run_counted(forward, &metrics).await;
                target.active.fetch_sub(1, Ordering::Relaxed);
            });
        }
    })))
}

/// Accepts the next client, counting it; accept errors (EMFILE and friends) back off instead of
/// spinning.
async fn accept(listener: &TcpListener, metrics: &PortMetrics) -> (tokio::net::TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(pair) => {
                metrics.total.fetch_add(1, Ordering::Relaxed);
                return pair;
            }
            Err(err) => {
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Runs one forwarded connection, keeping the port's gauges and counters.
async fn run_counted(forward: Forward, metrics: &PortMetrics) -> Ended {
    metrics.active.fetch_add(1, Ordering::Relaxed);
    let ended = forward.run().await;
    metrics.active.fetch_sub(1, Ordering::Relaxed);
    if ended == Ended::Fenced {
        metrics.closed_by_master_change.fetch_add(1, Ordering::Relaxed);
    }
    ended
}

/// Builds the next read-only state, keeping the counters and tokens of backends that stay and
/// cancelling the connections of backends that left.
pub fn next_ro_state(previous: &RoState, wanted: Vec<Backend>) -> RoState {
    let mut old: HashMap<&Backend, &Arc<RoBackend>> = previous.backends.iter().map(|b| (&b.backend, b)).collect();
    let backends: Vec<Arc<RoBackend>> = wanted
        .into_iter()
        .map(|backend| match old.remove(&backend) {
            Some(kept) => kept.clone(),
            None => Arc::new(RoBackend { backend, active: AtomicU64::new(0), cancel: CancellationToken::new() }),
        })
        .collect();
    for gone in old.values() {
        gone.cancel.cancel();
    }
    RoState { backends }
}
