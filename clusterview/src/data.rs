//! ClusterData: the authoritative clusterview, written only by the leading sentinel (by CAS).
//!
//! The shape follows Stolon's: objects carry `uid`, `generation`, `changeTime`, a `spec` (what is
//! wanted) and a `status` (what was last observed), and the document carries a `formatVersion` so a
//! newer writer's data is recognised instead of misread. A db's `generation` is bumped by the
//! sentinel each time its spec changes; the keeper reports the generation it converged to, which is
//! how the sentinel knows a change has been applied. The proxy section has its own generation for
//! the fencing handshake of safety rule 2.

use crate::spec::ClusterSpec;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of the stored clusterdata document this code writes and understands.
pub const CLUSTERDATA_FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    #[error("clusterdata is not valid JSON at `{path}`: {message}")]
    Corrupt { path: String, message: String },
    #[error("clusterdata has format version {found}, this binary understands up to {CLUSTERDATA_FORMAT_VERSION}: upgrade this component")]
    NewerFormat { found: u32 },
    #[error("clusterdata belongs to cluster uid {found}, expected {expected}")]
    WrongCluster { found: String, expected: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterData {
    pub format_version: u32,
    pub change_time: DateTime<Utc>,
    pub cluster: Cluster,
    #[serde(default)]
    pub keepers: BTreeMap<String, Keeper>,
    #[serde(default)]
    pub dbs: BTreeMap<String, Db>,
    pub proxy: Proxy,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cluster {
    pub uid: String,
    pub generation: u64,
    pub change_time: DateTime<Utc>,
    pub spec: ClusterSpec,
    pub status: ClusterStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterPhase {
    /// No db has been initialized yet: the sentinel picks a keeper and waits for it.
    Initializing,
    /// A master db exists (or existed); normal operation and failover.
    Normal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    pub phase: ClusterPhase,
    /// The uid of the master db, once one was chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Keeper {
    pub uid: String,
    pub generation: u64,
    pub change_time: DateTime<Utc>,
    #[serde(default)]
    pub status: KeeperStatus,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeeperStatus {
    #[serde(default)]
    pub healthy: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_healthy_time: Option<DateTime<Utc>>,
    /// Changes each time the keeper process restarts.
    #[serde(rename = "bootUUID", default, skip_serializing_if = "Option::is_none")]
    pub boot_uuid: Option<String>,
    /// Set by `stolonctl failkeeper`: treat this keeper as failed until it restarts or reports again.
    #[serde(default)]
    pub force_fail: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub can_be_master: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub can_be_synchronous_replica: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DbRole {
    Master,
    Standby,
}

/// What the keeper must do to bring its data directory into existence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DbInitMode {
    /// Use the data directory as it is.
    #[default]
    None,
    /// initdb a new database (only ever for the first db of a new cluster).
    New,
    /// Throw the local data away and copy it from the master (pg_rewind first when allowed).
    Resync,
    /// Adopt the existing local data directory as the master (initMode existing).
    Existing,
    /// Restore from a backup (initMode pitr).
    Pitr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FollowType {
    /// Follow another db of this cluster.
    Internal,
    /// Follow a server outside the cluster (standby cluster).
    External,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FollowConfig {
    #[serde(rename = "type")]
    pub kind: FollowType,
    /// The db followed, for `internal`.
    #[serde(rename = "dbuid", default, skip_serializing_if = "Option::is_none")]
    pub db_uid: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Db {
    pub uid: String,
    pub generation: u64,
    pub change_time: DateTime<Utc>,
    pub spec: DbSpec,
    #[serde(default)]
    pub status: DbStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DbSpec {
    #[serde(rename = "keeperUID")]
    pub keeper_uid: String,
    pub role: DbRole,
    #[serde(default)]
    pub init_mode: DbInitMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_config: Option<FollowConfig>,
    /// Dbs following this one (their replication slots live here when this is the master).
    #[serde(default)]
    pub followers: Vec<String>,
    #[serde(default)]
    pub synchronous_replication: bool,
    /// Db uids that must be in synchronous_standby_names when this db is the master (every one
    /// confirms each commit; the keeper pads with a fake standby below `minSynchronousStandbys`).
    #[serde(default)]
    pub synchronous_standbys: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimelineHistoryEntry {
    #[serde(rename = "timelineID")]
    pub timeline_id: u32,
    /// WAL position where this timeline ended and the next one started.
    pub switch_point: u64,
    #[serde(default)]
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DbStatus {
    #[serde(default)]
    pub healthy: bool,
    /// The db generation the keeper last reported as converged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_generation: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(rename = "systemdID", default, skip_serializing_if = "Option::is_none")]
    pub system_id: Option<String>,
    #[serde(rename = "timelineID", default)]
    pub timeline_id: u32,
    #[serde(default)]
    pub xlog_pos: u64,
    #[serde(default)]
    pub timelines_history: Vec<TimelineHistoryEntry>,
    /// On the master: db uids *known in sync*: reported in sync by its keeper (pg_stat_replication)
    /// while listed in `spec.synchronousStandbys`, and kept while they stay listed (every listed
    /// standby confirms each commit). Maintained by the sentinel; what an election relies on.
    #[serde(default)]
    pub synchronous_standbys: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Proxy {
    /// Bumped each time the spec changes; proxies report the generation they applied.
    pub generation: u64,
    pub change_time: DateTime<Utc>,
    pub spec: ProxySpec,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxySpec {
    /// The db proxies must forward to; `None` means "no master: refuse and close everything".
    #[serde(rename = "masterDbUid", default, skip_serializing_if = "Option::is_none")]
    pub master_db_uid: Option<String>,
    /// Proxies allowed to forward to the master; a proxy not listed forwards nothing.
    #[serde(default)]
    pub enabled_proxies: Vec<String>,
}

impl ClusterData {
    /// A fresh clusterdata for `stolonctl init` or `--initial-cluster-spec`.
    pub fn new_initializing(spec: ClusterSpec, now: DateTime<Utc>) -> ClusterData {
        ClusterData {
            format_version: CLUSTERDATA_FORMAT_VERSION,
            change_time: now,
            cluster: Cluster {
                uid: crate::new_uid(),
                generation: 1,
                change_time: now,
                spec,
                status: ClusterStatus { phase: ClusterPhase::Initializing, master: None },
            },
            keepers: BTreeMap::new(),
            dbs: BTreeMap::new(),
            proxy: Proxy { generation: 1, change_time: now, spec: ProxySpec::default() },
        }
    }

    /// Parses stored clusterdata, refusing a format newer than this binary understands.
    pub fn from_json(bytes: &[u8]) -> Result<ClusterData, DataError> {
        // Look at the version first, so a newer format is reported as such, not as corruption.
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct VersionOnly {
            format_version: u32,
        }
        if let Ok(v) = serde_json::from_slice::<VersionOnly>(bytes) {
            if v.format_version > CLUSTERDATA_FORMAT_VERSION {
                return Err(DataError::NewerFormat { found: v.format_version });
            }
        }
        let de = &mut serde_json::Deserializer::from_slice(bytes);
        serde_path_to_error::deserialize(de).map_err(|e| DataError::Corrupt {
            path: e.path().to_string(),
            message: e.into_inner().to_string(),
        })
    }

    /// Serializes for the store. Serializing these plain types cannot fail.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// The master db, when one is elected.
    pub fn master_db(&self) -> Option<&Db> {
        self.cluster.status.master.as_ref().and_then(|uid| self.dbs.get(uid))
    }

    /// The master's freshest known WAL position: from its keeper's current info when there is
    /// one, else the last position the sentinel recorded. What standby lag is measured against.
    pub fn master_xlog_pos(&self, keeper_infos: &BTreeMap<String, crate::info::KeeperInfo>) -> Option<u64> {
        self.master_db().map(|m| {
            keeper_infos
                .get(&m.spec.keeper_uid)
                .and_then(|i| i.postgres_state.as_ref())
                .map(|s| s.xlog_pos)
                .unwrap_or(m.status.xlog_pos)
        })
    }

    /// The db a keeper owns, if any.
    pub fn db_of_keeper(&self, keeper_uid: &str) -> Option<&Db> {
        self.dbs.values().find(|db| db.spec.keeper_uid == keeper_uid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ClusterData {
        let spec = ClusterSpec::parse_valid(r#"{"initMode":"new","failInterval":"10s"}"#).unwrap();
        let now = Utc::now();
        let mut cd = ClusterData::new_initializing(spec, now);
        cd.keepers.insert(
            "k1".into(),
            Keeper { uid: "k1".into(), generation: 1, change_time: now, status: KeeperStatus::default() },
        );
        cd.dbs.insert(
            "db1".into(),
            Db {
                uid: "db1".into(),
                generation: 3,
                change_time: now,
                spec: DbSpec {
                    keeper_uid: "k1".into(),
                    role: DbRole::Master,
                    init_mode: DbInitMode::New,
                    follow_config: None,
                    followers: vec!["db2".into()],
                    synchronous_replication: false,
                    synchronous_standbys: vec![],
                },
                status: DbStatus { healthy: true, current_generation: Some(3), xlog_pos: 42, ..Default::default() },
            },
        );
        cd.cluster.status = ClusterStatus { phase: ClusterPhase::Normal, master: Some("db1".into()) };
        cd.proxy.spec = ProxySpec { master_db_uid: Some("db1".into()), enabled_proxies: vec!["p1".into()] };
        cd
    }

    #[test]
    fn round_trips() {
        let cd = sample();
        let back = ClusterData::from_json(&cd.to_json()).unwrap();
        assert_eq!(back, cd);
        assert_eq!(back.master_db().map(|d| d.uid.as_str()), Some("db1"));
        assert_eq!(back.db_of_keeper("k1").map(|d| d.uid.as_str()), Some("db1"));
        let text = String::from_utf8(cd.to_json()).unwrap();
        for key in ["\"formatVersion\"", "\"keeperUID\"", "\"masterDbUid\"", "\"failInterval\": \"10s\""] {
            assert!(text.contains(key), "{key} missing in {text}");
        }
    }

    /// A newer writer's spec field does not make clusterdata unreadable (it is kept and named).
    #[test]
    fn clusterdata_with_an_unknown_spec_field_is_readable() {
        let mut doc: serde_json::Value = serde_json::from_slice(&sample().to_json()).unwrap();
        doc["cluster"]["spec"]["fancyNewSetting"] = serde_json::json!(true);
        let cd = ClusterData::from_json(doc.to_string().as_bytes()).unwrap();
        assert_eq!(cd.cluster.spec.unknown_fields(), vec!["fancyNewSetting".to_string()]);
        assert_eq!(cd.cluster.spec.fail_interval(), std::time::Duration::from_secs(10));
    }

    #[test]
    fn corrupt_and_newer_are_told_apart() {
        assert!(matches!(ClusterData::from_json(b"{not json"), Err(DataError::Corrupt { .. })));
        assert!(matches!(ClusterData::from_json(b"{\"formatVersion\":1}"), Err(DataError::Corrupt { .. })));
        assert!(matches!(
            ClusterData::from_json(b"{\"formatVersion\":99}"),
            Err(DataError::NewerFormat { found: 99 })
        ));
    }
}
