//! A watch on clusterdata, so keepers and proxies react to a new master within one etcd round
//! trip instead of waiting for their next poll. Watches can break (etcd restart, compaction):
//! `next` then returns an error and the caller falls back to polling and re-watches.

use super::{Store, StoreError, Versioned};
use crate::data::ClusterData;
use etcd_client::{EventType, WatchOptions, WatchStream};

/// A stream of clusterdata changes.
pub struct ClusterDataWatch {
    stream: WatchStream,
    endpoints: String,
}

impl Store {
    /// Starts watching clusterdata for changes after `after_revision` (0: from now).
    pub async fn watch_cluster_data(&self, after_revision: i64) -> Result<ClusterDataWatch, StoreError> {
        let mut options = WatchOptions::new();
        if after_revision > 0 {
            options = options.with_start_revision(after_revision + 1);
        }
        let key = self.keys().cluster_data();
        let key = key.as_str();
        let stream = self
            .request("watch clusterdata", |mut c| {
                let options = options.clone();
                async move { c.watch(key, Some(options)).await }
            })
            .await?;
        Ok(ClusterDataWatch { stream, endpoints: self.endpoints.clone() })
    }
}

impl ClusterDataWatch {
    /// The next change: `Some` for a new document, `None` when clusterdata was deleted.
    /// An unreadable document is returned as `StoreError::Data`; the watch stays usable.
    pub async fn next(&mut self) -> Result<Option<Versioned<ClusterData>>, StoreError> {
        loop {
            let resp = self
                .stream
                .message()
                .await
                .map_err(|source| StoreError::Request { op: "watch clusterdata", endpoints: self.endpoints.clone(), source })?;
            let Some(resp) = resp else {
                return Err(StoreError::Request {
                    op: "watch clusterdata",
                    endpoints: self.endpoints.clone(),
                    source: etcd_client::Error::WatchError("watch stream ended".into()),
                });
            };
            if resp.canceled() {
                return Err(StoreError::Request {
                    op: "watch clusterdata",
                    endpoints: self.endpoints.clone(),
                    source: etcd_client::Error::WatchError(format!("watch canceled: {}", resp.cancel_reason())),
                });
            }
            // Only the newest event of a batch matters: it is the state now.
            if let Some(event) = resp.events().last() {
                let Some(kv) = event.kv() else { continue };
                return match event.event_type() {
                    EventType::Delete => Ok(None),
                    EventType::Put => Ok(Some(Versioned {
                        value: ClusterData::from_json(kv.value())?,
                        revision: kv.mod_revision(),
                    })),
                };
            }
        }
    }
}
