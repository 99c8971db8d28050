//! The control loop: check the store every `proxyCheckInterval` (and at once on a clusterdata
//! watch event), apply the routing it implies, publish the applied proxy generation, and fence
//! the proxy when the store has not been reachable for `proxyTimeout`.
//!
//! Order matters for safety (safety rule 2): on a master change, every forwarded connection is
//! closed and waited for *before* the ProxyInfo with the new generation is published, because
//! that publication is what lets the sentinel publish a new master. A store blip shorter than
//! `proxyTimeout` changes nothing: connections stay up.
//!
//! A check passes only when clusterdata was read, understood (parsed, known format, valid spec)
//! *and* the ProxyInfo was stored; only then does the fencing deadline move (`fencing`), as in
//! Stolon's proxy. Clusterdata the proxy cannot use stops forwarding at once (the master it
//! names may no longer be the one a sentinel of another version elected) and, as nothing
//! passes, the proxy fences itself after proxyTimeout.

use crate::fencing::{Deadline, Watchdog};
use crate::listener::{self, ConnSettings, Listening, RoState, RwState};
use crate::metrics::ProxyMetrics;
use crate::route;
use chrono::Utc;
use clusterview::data::ClusterData;
use clusterview::info::{KeeperInfo, ProxyInfo};
use clusterview::store::{ClusterDataWatch, InfoKind, InfoPublisher, Store, StoreError};
use clusterview::ClusterSpec;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Static configuration from the flags.
pub struct Config {
    pub uid: String,
    pub rw_addr: SocketAddr,
    pub ro_addr: Option<SocketAddr>,
    pub stop_listening: bool,
    pub conn: ConnSettings,
}

/// State of the running proxy.
pub struct Control {
    config: Config,
    store: Store,
    metrics: Arc<ProxyMetrics>,
    rw: watch::Sender<RwState>,
    ro: watch::Sender<RoState>,
    rw_listener: Option<Listening>,
    ro_listener: Option<Listening>,
    publisher: InfoPublisher,
    /// From the cluster spec; the default until clusterdata is read.
    check_interval: Duration,
    /// The proxyTimeout in force and the last check that passed.
    watchdog: Watchdog,
    /// The watchdog's deadline, shared with the accept loops and forwarded connections.
    gate: Arc<Deadline>,
    fenced: bool,
    watch: Option<ClusterDataWatch>,
    /// The epoch of a master change whose connections had not all closed when `set_rw` stopped
    /// waiting: no generation is published while any of them is left (safety rule 2).
    draining: Option<Arc<()>>,
}

impl Control {
    pub fn new(config: Config, store: Store, metrics: Arc<ProxyMetrics>) -> Control {
        let defaults = ClusterSpec::default();
        let proxy_timeout = defaults.proxy_timeout();
        metrics.proxy_timeout_ms.store(proxy_timeout.as_millis() as u64, Ordering::Relaxed);
        let publisher = InfoPublisher::new(&store, InfoKind::Proxy, &config.uid, info_ttl(&defaults));
        Control {
            rw: watch::channel(RwState::closed()).0,
            ro: watch::channel(RoState { backends: vec![] }).0,
            gate: config.conn.deadline.clone(),
            config,
            store,
            metrics,
            rw_listener: None,
            ro_listener: None,
            publisher,
            check_interval: defaults.proxy_check_interval(),
            watchdog: Watchdog::new(proxy_timeout),
            fenced: true,
            watch: None,
            draining: None,
        }
    }

    /// Runs until `shutdown` resolves; then stops listening and withdraws the proxy's info.
    /// Returns the instant by which forwarded connections must be gone: past it, a sentinel
    /// stops waiting for this (now silent) proxy and may publish a new master, exactly as it
    /// would for a proxy cut off from the store.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) -> std::io::Result<Instant> {
        if !self.config.stop_listening {
            self.start_listening().await?;
        }
        tokio::pin!(shutdown);
        loop {
            let store = self.store.clone();
            let check = check_store(&store, self.config.ro_addr.is_some());
            tokio::pin!(check);
            let result = loop {
                let deadline = self.deadline();
                tokio::select! {
                    res = &mut check => break Some(res),
                    _ = tokio::time::sleep_until(deadline), if !self.fenced => self.fence("no check passed for proxyTimeout (store unreachable, info not stored, or clusterdata unusable)").await,
                    _ = &mut shutdown => break None,
                }
            };
            let Some(result) = result else { break };
            match result {
                Ok(Some((cd, keepers))) => self.apply(&cd, &keepers).await,
                Ok(None) => {
                    // Reachable store, no cluster: nothing to forward to, but the store is fine
                    // and there is no master any sentinel could have published.
                    tracing::warn!("no clusterdata: cluster not initialized (stolonctl init)");
                    self.set_rw(None).await;
                    self.passed(Instant::now(), self.watchdog.timeout());
                }
                Err(StoreError::Data(err)) => self.unusable(&err.to_string()).await,
                Err(err) => tracing::warn!(error = %err, "store check failed"),
            }
            if !self.fenced && self.listeners_wanted() {
                if let Err(err) = self.start_listening().await {
                    tracing::error!(error = %err, "cannot listen");
                }
            }
            let deadline = self.deadline();
            let fenced = self.fenced;
            let wake = tokio::select! {
                _ = tokio::time::sleep(self.check_interval) => Wake::Tick,
                _ = next_change(&mut self.watch) => Wake::Tick,
                _ = tokio::time::sleep_until(deadline), if !fenced => Wake::Deadline,
                _ = &mut shutdown => Wake::Shutdown,
            };
            match wake {
                Wake::Tick => {}
                Wake::Deadline => self.fence("no check passed for proxyTimeout (store unreachable, info not stored, or clusterdata unusable)").await,
                Wake::Shutdown => break,
            }
        }
        self.rw_listener = None;
        self.ro_listener = None;
        self.metrics.listening.store(false, Ordering::Relaxed);
        let drain_until = if self.fenced { Instant::now() } else { self.deadline() };
        if let Err(err) = self.publisher.withdraw().await {
            tracing::debug!(error = %err, "could not withdraw proxy info");
        }
        Ok(drain_until)
    }

    /// The fencing deadline; now when no check has passed yet.
    fn deadline(&self) -> Instant {
        self.watchdog.deadline().unwrap_or_else(Instant::now)
    }

    /// A check passed: a ProxyInfo sent at `sent_at` and advertising `timeout` was stored (or
    /// there is no clusterdata at all). Moves the deadline.
    fn passed(&mut self, sent_at: Instant, timeout: Duration) {
        self.watchdog.published(sent_at, timeout);
        self.gate.set(self.deadline());
        self.fenced = false;
        self.metrics.proxy_timeout_ms.store(timeout.as_millis() as u64, Ordering::Relaxed);
        if let Ok(mut t) = self.metrics.last_check.lock() {
            *t = Some(sent_at);
        }
        self.metrics.last_check_success_unix.store(Utc::now().timestamp().max(0) as u64, Ordering::Relaxed);
    }

    /// Clusterdata this proxy cannot use (corrupt, newer format, invalid spec): the check fails.
    /// Forward nothing from now on: the master it last knew may have been replaced by a sentinel
    /// that writes what this version cannot read. The deadline does not move, so the proxy
    /// fences itself (stops listening) after proxyTimeout, as for an unreachable store.
    async fn unusable(&mut self, why: &str) {
        tracing::error!(
            error = why,
            "clusterdata unusable: not forwarding, fencing after proxyTimeout (upgrade this proxy, or fix clusterdata: `stolonctl clusterdata read`)"
        );
        self.set_rw(None).await;
        self.ro.send_modify(|state| *state = listener::next_ro_state(state, vec![]));
    }

    fn listeners_wanted(&self) -> bool {
        self.rw_listener.is_none() || (self.config.ro_addr.is_some() && self.ro_listener.is_none())
    }

    async fn start_listening(&mut self) -> std::io::Result<()> {
        if self.rw_listener.is_none() {
            let rx = self.rw.subscribe();
            self.rw_listener = Some(listener::listen_rw(self.config.rw_addr, rx, self.config.conn.clone(), self.metrics.rw.clone()).await?);
            tracing::info!(address = %self.config.rw_addr, "listening (read-write)");
        }
        if let (Some(addr), None) = (self.config.ro_addr, &self.ro_listener) {
            let rx = self.ro.subscribe();
            self.ro_listener = Some(listener::listen_ro(addr, rx, self.config.conn.clone(), self.metrics.ro.clone()).await?);
            tracing::info!(address = %addr, "listening (read-only)");
        }
        self.metrics.listening.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Applies fresh clusterdata, then publishes the generation applied; the check passes only
    /// once that publication was stored.
    async fn apply(&mut self, cd: &ClusterData, keepers: &BTreeMap<String, KeeperInfo>) {
        let spec = &cd.cluster.spec;
        if let Err(err) = spec.validate() {
            return self.unusable(&err.to_string()).await;
        }
        self.check_interval = spec.proxy_check_interval();
        // Adopted (for the deadline) only once an info advertising it is stored.
        let proxy_timeout = spec.proxy_timeout();
        self.set_rw(route::rw_target(cd, &self.config.uid)).await;
        if self.config.ro_addr.is_some() {
            let wanted = route::ro_targets(cd, keepers);
            self.ro.send_modify(|state| *state = listener::next_ro_state(state, wanted));
        }
        if let Some(epoch) = self.draining.take() {
            if Arc::strong_count(&epoch) > 1 {
                tracing::warn!(
                    generation = cd.proxy.generation,
                    open = Arc::strong_count(&epoch) - 1,
                    "connections to the previous master are still closing: not publishing the applied generation yet"
                );
                self.draining = Some(epoch);
                return;
            }
        }
        self.metrics.proxy_generation.store(cd.proxy.generation, Ordering::Relaxed);
        let info = ProxyInfo {
            info_uid: clusterview::new_info_uid(),
            uid: self.config.uid.clone(),
            generation: Some(cd.proxy.generation),
            proxy_timeout,
        };
        self.publisher.set_ttl(info_ttl(spec));
        // Bounded by the fencing deadline: a store that vanishes right after the read must not
        // hold this loop (each store request may take --store-timeout, longer than
        // proxyTimeout) past the moment it has to close every connection. A fenced proxy has
        // nothing to close and may wait one proxyTimeout.
        let sent_at = Instant::now();
        let bound = if self.fenced { sent_at + proxy_timeout } else { self.deadline() };
        match tokio::time::timeout_at(bound, self.publisher.publish(&info)).await {
            Ok(Ok(())) => self.passed(sent_at, proxy_timeout),
            Ok(Err(err)) => return tracing::warn!(error = %err, "cannot publish proxy info: check failed, the fencing deadline stays"),
            Err(_) => return tracing::warn!("publishing the proxy info outlasted proxyTimeout: check failed"),
        }
        if self.watch.is_none() {
            self.watch = tokio::time::timeout_at(self.deadline(), self.store.watch_cluster_data(0)).await.ok().and_then(Result::ok);
        }
    }

    /// Switches the read-write target; on any change of master, closes every forwarded
    /// connection of the old epoch and waits for them to be gone.
    async fn set_rw(&mut self, backend: Option<route::Backend>) {
        let current = self.rw.borrow().backend.clone();
        if current == backend {
            return;
        }
        let next = RwState { backend: backend.clone(), cancel: tokio_util::sync::CancellationToken::new(), epoch: Arc::new(()) };
        let old = self.rw.send_replace(next);
        old.cancel.cancel();
        if !wait_epoch_closed(&old.epoch).await {
            tracing::warn!(open = Arc::strong_count(&old.epoch) - 1, "connections of the previous master outlived the close wait");
            self.draining = Some(old.epoch);
        }
        if let Ok(mut m) = self.metrics.current_master.lock() {
            *m = backend.as_ref().map(|b| b.address.clone());
        }
        tracing::info!(
            old = current.as_ref().map(|b| b.address.as_str()).unwrap_or("none"),
            new = backend.as_ref().map(|b| b.address.as_str()).unwrap_or("none"),
            "master changed: closed all forwarded connections"
        );
    }

    /// No check passed for proxyTimeout: close everything and, by default, stop listening.
    async fn fence(&mut self, why: &str) {
        tracing::warn!(reason = why, "fencing: closing all connections");
        self.fenced = true;
        self.gate.close();
        self.set_rw(None).await;
        self.ro.send_modify(|state| *state = listener::next_ro_state(state, vec![]));
        if self.config.stop_listening {
            self.rw_listener = None;
            self.ro_listener = None;
            self.metrics.listening.store(false, Ordering::Relaxed);
            tracing::warn!("stopped listening until a check passes again");
        }
        self.watch = None;
    }
}

enum Wake {
    Tick,
    Deadline,
    Shutdown,
}

/// Info lease TTL: long enough to survive two missed checks, short enough that a dead proxy
/// disappears soon after its proxyTimeout.
fn info_ttl(spec: &ClusterSpec) -> Duration {
    (spec.proxy_check_interval() * 3).max(spec.proxy_timeout())
}

/// Reads clusterdata (and keeper infos when the read-only port needs them).
async fn check_store(
    store: &Store,
    need_keepers: bool,
) -> Result<Option<(ClusterData, BTreeMap<String, KeeperInfo>)>, StoreError> {
    let Some(cd) = store.get_cluster_data().await? else { return Ok(None) };
    let keepers = if need_keepers { store.list_infos(InfoKind::Keeper).await? } else { BTreeMap::new() };
    Ok(Some((cd.value, keepers)))
}

/// Resolves on the next clusterdata change; never when there is no watch.
async fn next_change(watch: &mut Option<ClusterDataWatch>) {
    match watch {
        Some(w) => {
            if w.next().await.is_err() {
                *watch = None;
            }
        }
        None => std::future::pending().await,
    }
}

/// Waits until no connection of an epoch is left, for at most 2 s (a cancelled task drops its
/// sockets when it is next polled, so this is short unless the runtime is starved). Returns
/// whether they are all gone; when not, the caller holds back the generation it publishes.
async fn wait_epoch_closed(epoch: &Arc<()>) -> bool {
    let start = Instant::now();
    while Arc::strong_count(epoch) > 1 && start.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Arc::strong_count(epoch) == 1
}
