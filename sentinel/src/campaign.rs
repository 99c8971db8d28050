//! The election campaign, in its own task: `elect()` waits as long as another sentinel leads, so
//! it must not block the loop that publishes this sentinel's info.
//!
//! The task hands each won `Leadership` to the loop and then waits until the loop reports that
//! the term ended (lost or given up) before campaigning again. Errors (etcd unreachable, lease
//! lost while queued) are retried with exponential backoff. The task is owned by a guard that
//! aborts it on drop.

use clusterview::store::{Leadership, Store};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Aborts the campaign task when dropped.
pub struct CampaignTask(JoinHandle<()>);

impl Drop for CampaignTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Channels between the campaign task and the loop.
pub struct CampaignLink {
    /// Each won leadership arrives here.
    pub elected: mpsc::Receiver<Leadership>,
    /// Send one `()` when the current term ended, to campaign again.
    pub term_ended: mpsc::Sender<()>,
}

/// Starts campaigning as `uid`; the lease TTL is read from `ttl` before each campaign.
pub fn spawn(store: Store, uid: String, ttl: watch::Receiver<Duration>) -> (CampaignTask, CampaignLink) {
    let (elected_tx, elected) = mpsc::channel(1);
    let (term_ended, mut ended_rx) = mpsc::channel(1);
    let handle = tokio::spawn(async move {
        let mut backoff = MIN_BACKOFF;
        loop {
            let lease_ttl = *ttl.borrow();
            match store.campaign(&uid, lease_ttl).elect().await {
                Ok(leadership) => {
                    backoff = MIN_BACKOFF;
                    if elected_tx.send(leadership).await.is_err() || ended_rx.recv().await.is_none() {
                        return;
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, retry_in = ?backoff, "campaign for sentinel leadership failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    });
    (CampaignTask(handle), CampaignLink { elected, term_ended })
}
