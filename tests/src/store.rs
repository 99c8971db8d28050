//! The clusterview store as the tests reach it: default prefix, a short request timeout.

use clusterview::store::{StoreBackend, StoreConfig};
use clusterview::Store;
use std::time::Duration;

/// Store configuration for `cluster` at `endpoints` (comma-separated).
pub fn store_config(endpoints: &str, cluster: &str) -> StoreConfig {
    StoreConfig {
        backend: StoreBackend::EtcdV3,
        endpoints: endpoints.split(',').map(str::to_string).collect(),
        prefix: "stolon/cluster".into(),
        cluster_name: cluster.into(),
        timeout: Duration::from_secs(3),
        cert_file: None,
        key_file: None,
        ca_file: None,
    }
}

/// A connected store for `cluster` at `endpoints`.
///
/// # Panics
/// If the configuration is refused (connecting itself is lazy).
pub async fn connect_store(endpoints: &str, cluster: &str) -> Store {
    match Store::connect(&store_config(endpoints, cluster)).await {
        Ok(store) => store,
        Err(e) => panic!("store for {cluster} at {endpoints}: {e}"),
    }
}
