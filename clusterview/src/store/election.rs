//! Sentinel leader election on etcd's election API, backed by a lease.
//!
//! A `Campaign` grants a lease, keeps it alive from a background task, and waits in etcd's
//! election queue under `<root>sentinel-leader`. Once elected it yields a `Leadership`, which
//! knows, from the monotonic clock, until when the lease is surely still alive: the time the
//! last successful keep-alive was *sent* plus 80% of the TTL granted back. `is_valid()` turning
//! false is the signal to stop deciding at once (safety rule 1); clusterdata writes are CAS anyway,
//! so even a sentinel that misjudges this cannot overwrite a newer leader's decision, and the
//! leader's writes (`Store::put_cluster_data_as_leader`) also compare its election key in the
//! same transaction, so a sentinel whose term ended cannot write at all.

use super::{Store, StoreError};
use etcd_client::{LeaderKey, ResignOptions};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Lease validity as seen by the keep-alive task: `Some(deadline)` or `None` once lost.
type Validity = watch::Receiver<Option<Instant>>;

/// A candidate waiting to lead.
pub struct Campaign {
    store: Store,
    uid: String,
    ttl_secs: i64,
}

/// Held while this process leads. Dropping it stops the keep-alive, so the lease (and the
/// leadership) expires within the TTL; `resign` hands over at once.
pub struct Leadership {
    store: Store,
    lease: i64,
    leader_key: Option<LeaderKey>,
    validity: Validity,
    /// Owns the keep-alive task: dropping the leadership stops renewing the lease.
    _keepalive: Arc<KeepAliveTask>,
}

struct KeepAliveTask(JoinHandle<()>);

impl Drop for KeepAliveTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Store {
    /// Prepares a campaign for `uid` with a lease of `ttl` (rounded up to seconds, at least 2).
    pub fn campaign(&self, uid: &str, ttl: Duration) -> Campaign {
        let ttl_secs = i64::try_from(ttl.as_millis().div_ceil(1000)).unwrap_or(i64::MAX).max(2);
        Campaign { store: self.clone(), uid: uid.to_string(), ttl_secs }
    }

    /// The uid of the current leader, if any.
    pub async fn leader(&self) -> Result<Option<String>, StoreError> {
        let name = self.keys().sentinel_leader();
        let name = name.as_str();
        self.request("read sentinel leader", |mut c| async move {
            match c.leader(name).await {
                Ok(resp) => Ok(resp.kv().map(|kv| String::from_utf8_lossy(kv.value()).into_owned())),
                // "election: no leader" is an answer, not a failure (unlike raft's "etcdserver:
                // no leader", which `request` retries).
                Err(etcd_client::Error::GRpcStatus(status)) if status.message().contains("election: no leader") => {
                    Ok(None)
                }
                Err(err) => Err(err),
            }
        })
        .await
    }
}

impl Campaign {
    /// Waits until this candidate is elected. Returns an error when etcd cannot be reached or
    /// the lease was lost while waiting; the caller retries after a pause.
    pub async fn elect(&self) -> Result<Leadership, StoreError> {
        let mut client = self.store.client();
        let ttl_secs = self.ttl_secs;
        let grant =
            self.store.request("grant election lease", |mut c| async move { c.lease_grant(ttl_secs, None).await }).await?;
        let lease = grant.id();
        let (validity, keepalive) = spawn_keepalive(self.store.clone(), lease, self.ttl_secs);
        let mut lost = validity.clone();
        let name = self.store.keys().sentinel_leader();
        let result = tokio::select! {
            result = client.campaign(name, self.uid.clone(), lease) => result,
            _ = wait_lost(&mut lost) => {
                return Err(StoreError::Timeout {
                    op: "keep election lease alive while campaigning",
                    endpoints: self.store.endpoints.clone(),
                    timeout: self.store.timeout,
                });
            }
        };
        match result {
            Ok(mut resp) => Ok(Leadership {
                store: self.store.clone(),
                lease,
                leader_key: resp.take_leader(),
                validity,
                _keepalive: keepalive,
            }),
            Err(source) => {
                drop(keepalive);
                let _ = self.store.request("revoke lease", |mut c| async move { c.lease_revoke(lease).await }).await;
                Err(StoreError::Request { op: "campaign", endpoints: self.store.endpoints.clone(), source })
            }
        }
    }
}

impl Leadership {
    /// True while the lease is surely alive; false from the moment it may have expired.
    pub fn is_valid(&self) -> bool {
        matches!(*self.validity.borrow(), Some(deadline) if Instant::now() < deadline)
    }

    /// The election key and its create revision: while that key exists with that revision, no
    /// other sentinel leads (a newer candidate's key has a higher revision). `None` when etcd
    /// did not return the key.
    pub(crate) fn election_key(&self) -> Option<(Vec<u8>, i64)> {
        self.leader_key.as_ref().map(|k| (k.key().to_vec(), k.rev()))
    }

    /// Resolves when leadership may have been lost.
    pub async fn lost(&self) {
        let mut validity = self.validity.clone();
        wait_lost(&mut validity).await;
    }

    /// Gives up leadership now so another sentinel takes over without waiting for the TTL.
    pub async fn resign(self) -> Result<(), StoreError> {
        if let Some(key) = self.leader_key.clone() {
            let opts = ResignOptions::new().with_leader(key);
            self.store
                .request("resign", |mut c| {
                    let opts = opts.clone();
                    async move { c.resign(Some(opts)).await }
                })
                .await?;
        }
        let lease = self.lease;
        self.store.request("revoke lease", |mut c| async move { c.lease_revoke(lease).await }).await?;
        Ok(())
    }
}

/// Resolves when the validity deadline passes without renewal, or the lease is known lost.
async fn wait_lost(validity: &mut Validity) {
    loop {
        let deadline = *validity.borrow_and_update();
        match deadline {
            None => return,
            Some(deadline) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => {
                        if matches!(*validity.borrow(), Some(d) if d <= Instant::now()) {
                            return;
                        }
                    }
                    changed = validity.changed() => {
                        if changed.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// Keeps `lease` alive every third of its TTL until aborted or the lease is gone.
fn spawn_keepalive(store: Store, lease: i64, ttl_secs: i64) -> (Validity, Arc<KeepAliveTask>) {
    let ttl = Duration::from_secs(u64::try_from(ttl_secs).unwrap_or(2));
    let margin = |granted: Duration| granted.mul_f64(0.8);
    let (tx, rx) = watch::channel(Some(Instant::now() + margin(ttl)));
    let handle = tokio::spawn(async move {
        let mut client = store.client();
        let mut stream = None;
        loop {
            let sent_at = Instant::now();
            if stream.is_none() {
                match store.bounded("open lease keep-alive", client.lease_keep_alive(lease)).await {
                    Ok(pair) => stream = Some(pair),
                    Err(err) => tracing::warn!(error = %err, "election lease keep-alive failed"),
                }
            }
            if let Some((keeper, responses)) = stream.as_mut() {
                let round = async {
                    keeper.keep_alive().await?;
                    responses.message().await
                };
                match store.bounded("keep election lease alive", round).await {
                    Ok(Some(resp)) if resp.ttl() > 0 => {
                        let granted = Duration::from_secs(u64::try_from(resp.ttl()).unwrap_or(0));
                        let _ = tx.send(Some(sent_at + margin(granted)));
                    }
                    Ok(Some(_)) => {
                        tracing::warn!(lease, "election lease expired");
                        let _ = tx.send(None);
                        return;
                    }
                    Ok(None) | Err(_) => {
                        tracing::warn!(lease, "election lease keep-alive stream broke; reopening");
                        stream = None;
                    }
                }
            }
            tokio::time::sleep(ttl / 3).await;
        }
    });
    (rx, Arc::new(KeepAliveTask(handle)))
}
