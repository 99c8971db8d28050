//! Component infos: what each keeper, sentinel and proxy publishes about itself, under a lease.
//!
//! Every publication carries a fresh `infoUID`. The sentinel judges liveness by infos that
//! *change* (safety rule 6): a keeper whose info keeps the same `infoUID` for `failInterval` is
//! failed even if its lease is still alive (e.g. a frozen process whose lease a dying etcd
//! connection kept up).

use crate::data::{DbRole, TimelineHistoryEntry};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PgVersion {
    pub major: u32,
    pub minor: u32,
}

/// What a keeper observed of its PostgreSQL instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostgresState {
    /// The db uid the keeper's data directory belongs to (from clusterdata), if any.
    #[serde(rename = "uid", default, skip_serializing_if = "Option::is_none")]
    pub db_uid: Option<String>,
    /// The db generation the keeper has converged to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    /// postgres answers queries.
    #[serde(default)]
    pub healthy: bool,
    /// master (not in recovery) or standby (in recovery); None when not running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<DbRole>,
    #[serde(rename = "systemID", default, skip_serializing_if = "Option::is_none")]
    pub system_id: Option<String>,
    #[serde(rename = "timelineID", default)]
    pub timeline_id: u32,
    /// Current WAL position: insert position on a master, replay position on a standby.
    #[serde(default)]
    pub xlog_pos: u64,
    #[serde(default)]
    pub timelines_history: Vec<TimelineHistoryEntry>,
    /// Db uids currently listed as synchronous standbys (on a master).
    #[serde(default)]
    pub synchronous_standbys: Vec<String>,
    /// A standby is receiving WAL from its primary (walreceiver streaming).
    #[serde(default)]
    pub streaming: bool,
    /// Settings in effect, for the sentinel and `stolonctl status`.
    #[serde(default)]
    pub pg_parameters: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeeperInfo {
    #[serde(rename = "infoUID")]
    pub info_uid: String,
    pub uid: String,
    #[serde(rename = "clusterUID", default, skip_serializing_if = "Option::is_none")]
    pub cluster_uid: Option<String>,
    /// Changes each time the keeper process starts.
    #[serde(rename = "bootUUID")]
    pub boot_uuid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres_binary_version: Option<PgVersion>,
    /// Address and port other keepers and proxies use to reach this keeper's postgres.
    pub pg_listen_address: String,
    pub pg_port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub can_be_master: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub can_be_synchronous_replica: Option<bool>,
    /// The keeper's own data directory could not be used (e.g. wiped while clusterdata has a db).
    #[serde(default)]
    pub data_dir_missing: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres_state: Option<PostgresState>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SentinelInfo {
    #[serde(rename = "infoUID")]
    pub info_uid: String,
    pub uid: String,
    #[serde(default)]
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyInfo {
    #[serde(rename = "infoUID")]
    pub info_uid: String,
    pub uid: String,
    /// The proxy generation (clusterdata `proxy.generation`) this proxy has fully applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    /// The proxyTimeout this proxy enforces on itself, so the sentinel knows when a silent proxy
    /// has fenced itself.
    #[serde(with = "crate::duration::required")]
    pub proxy_timeout: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infos_round_trip() {
        let keeper = KeeperInfo {
            info_uid: "i1".into(),
            uid: "keeper0".into(),
            cluster_uid: Some("c".into()),
            boot_uuid: "b".into(),
            postgres_binary_version: Some(PgVersion { major: 15, minor: 18 }),
            pg_listen_address: "127.0.0.1".into(),
            pg_port: 5432,
            can_be_master: Some(true),
            can_be_synchronous_replica: None,
            data_dir_missing: false,
            postgres_state: Some(PostgresState { healthy: true, xlog_pos: 99, ..Default::default() }),
        };
        let text = serde_json::to_string(&keeper).unwrap();
        assert!(text.contains("\"infoUID\""));
        assert_eq!(serde_json::from_str::<KeeperInfo>(&text).unwrap(), keeper);

        let proxy = ProxyInfo {
            info_uid: "i".into(),
            uid: "p".into(),
            generation: Some(3),
            proxy_timeout: Duration::from_secs(4),
        };
        let text = serde_json::to_string(&proxy).unwrap();
        assert!(text.contains("\"proxyTimeout\":\"4s\""), "{text}");
        assert_eq!(serde_json::from_str::<ProxyInfo>(&text).unwrap(), proxy);
    }
}
