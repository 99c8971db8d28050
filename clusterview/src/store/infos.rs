//! Component infos under a lease: a keeper, sentinel or proxy that stops publishing disappears
//! from the store once its lease's TTL passes, without anyone cleaning up after it.
//!
//! Each publication grants a fresh lease, puts the info with it, then revokes the previous lease.
//! That costs one more request than refreshing one long-lived lease, but it means a publisher
//! never depends on a keep-alive stream surviving etcd hiccups, and the info expires exactly TTL
//! after the last *successful publication*, which is what liveness means here.

use super::{InfoKind, Store, StoreError};
use etcd_client::{GetOptions, PutOptions};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Publishes one component's info, keeping at most one live lease.
pub struct InfoPublisher {
    store: Store,
    key: String,
    ttl_secs: i64,
    /// The lease the current info is attached to; revoked when superseded.
    lease: Option<i64>,
}

impl InfoPublisher {
    /// `ttl` is rounded up to whole seconds (etcd's lease granularity), at least 1 s.
    pub fn new(store: &Store, kind: InfoKind, uid: &str, ttl: Duration) -> InfoPublisher {
        InfoPublisher { store: store.clone(), key: store.keys().info(kind, uid), ttl_secs: ttl_secs(ttl), lease: None }
    }

    /// Changes the TTL of the next publications (the spec's intervals can change at run time).
    pub fn set_ttl(&mut self, ttl: Duration) {
        self.ttl_secs = ttl_secs(ttl);
    }

    /// Publishes `info`, replacing the previous publication.
    pub async fn publish<T: Serialize>(&mut self, info: &T) -> Result<(), StoreError> {
        // Serializing our own plain info types cannot fail.
        let bytes = serde_json::to_vec(info).unwrap_or_default();
        let ttl_secs = self.ttl_secs;
        let grant = self.store.request("grant info lease", |mut c| async move { c.lease_grant(ttl_secs, None).await }).await?;
        let (key, lease) = (self.key.as_str(), grant.id());
        let put = self
            .store
            .request("publish info", |mut c| {
                let bytes = bytes.clone();
                async move { c.put(key, bytes, Some(PutOptions::new().with_lease(lease))).await }
            })
            .await;
        if let Err(err) = put {
            // Do not leave the fresh lease behind; the old publication stays until its TTL.
            let _ = self.store.request("revoke lease", |mut c| async move { c.lease_revoke(lease).await }).await;
            return Err(err);
        }
        if let Some(old) = self.lease.replace(lease) {
            // Best effort: an old lease carries no key any more and expires by itself anyway.
            if let Err(err) = self.store.request("revoke old lease", |mut c| async move { c.lease_revoke(old).await }).await {
                tracing::debug!(error = %err, "could not revoke a superseded info lease");
            }
        }
        Ok(())
    }

    /// Removes the info now (on clean shutdown) instead of waiting for the lease to expire.
    pub async fn withdraw(&mut self) -> Result<(), StoreError> {
        let key = self.key.as_str();
        self.store.request("delete info", |mut c| async move { c.delete(key, None).await }).await?;
        if let Some(lease) = self.lease.take() {
            let _ = self.store.request("revoke lease", |mut c| async move { c.lease_revoke(lease).await }).await;
        }
        Ok(())
    }
}

/// Whole seconds, rounded up, at least 1 (etcd's lease granularity).
fn ttl_secs(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis().div_ceil(1000)).unwrap_or(i64::MAX).max(1)
}

impl Store {
    /// All live infos of one kind, by uid. An entry that does not parse is skipped with a
    /// warning: one bad publisher must not blind the sentinel to all the others.
    pub async fn list_infos<T: DeserializeOwned>(&self, kind: InfoKind) -> Result<BTreeMap<String, T>, StoreError> {
        let prefix = self.keys().info_prefix(kind);
        let resp = self
            .request("list infos", |mut c| {
                let prefix = prefix.clone();
                async move { c.get(prefix, Some(GetOptions::new().with_prefix())).await }
            })
            .await?;
        let mut out = BTreeMap::new();
        for kv in resp.kvs() {
            let key = String::from_utf8_lossy(kv.key());
            let uid = key.strip_prefix(prefix.as_str()).unwrap_or(&key).to_string();
            match serde_json::from_slice::<T>(kv.value()) {
                Ok(info) => {
                    out.insert(uid, info);
                }
                Err(err) => {
                    tracing::warn!(kind = kind.as_str(), uid = %uid, error = %err, "skipping unreadable info");
                }
            }
        }
        Ok(out)
    }
}
