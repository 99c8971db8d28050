//! The cluster spec: what the operator asks for, with Stolon's field names and meanings.
//!
//! Every field is optional in the stored document so that an operator's spec says only what they
//! chose; the accessor of the same name returns the effective value (the operator's or our
//! default). Our defaults are faster than Stolon's (see `DEFAULTS` and README "Cluster spec"),
//! because a 20 s failure detection is slower than our users want; each one is documented below.
//!
//! `ClusterSpec::parse` rejects wrong types and negative durations with the JSON path of the
//! offending field; `validate` rejects values that are individually fine but inconsistent together
//! (e.g. `proxyCheckInterval >= proxyTimeout`). Unknown fields are *not* errors, as in Stolon: a
//! newer version's field must not make an older keeper, sentinel or proxy unable to read the
//! cluster during a rolling upgrade (a proxy that cannot read clusterdata fences itself). They are
//! kept, written back unchanged, and named by `unknown_fields` so every component can warn.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Why a cluster spec was refused. Every variant names the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("invalid cluster spec at `{path}`: {message}")]
    Parse { path: String, message: String },
    #[error("cluster spec field `{field}` {reason}")]
    Invalid { field: &'static str, reason: String },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> SpecError {
    SpecError::Invalid { field, reason: reason.into() }
}

/// How a brand new cluster gets its first database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InitMode {
    /// initdb a new, empty database on one keeper.
    New,
    /// Adopt the database a named keeper already has (`existingConfig.keeperUID`).
    Existing,
    /// Restore a base backup and replay archived WAL (`pitrConfig`).
    Pitr,
}

/// Whether this cluster is a primary cluster or replicates from another one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterRole {
    Master,
    Standby,
}

/// Which hosts may connect as the superuser and replication user (Stolon's `defaultSUReplAccessMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SuReplAccessMode {
    /// From any host (md5/scram), as Stolon does by default.
    All,
    /// Only from the other keepers' addresses.
    Strict,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_checksums: Option<bool>,
    /// Fields this version does not know (a newer version's, or a typo), kept and written back
    /// unchanged; see `ClusterSpec::unknown_fields`.
    #[serde(flatten)]
    pub unknown: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExistingConfig {
    #[serde(rename = "keeperUID", default)]
    pub keeper_uid: String,
    /// Fields this version does not know (a newer version's, or a typo), kept and written back
    /// unchanged; see `ClusterSpec::unknown_fields`.
    #[serde(flatten)]
    pub unknown: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveRecoverySettings {
    #[serde(default)]
    pub restore_command: String,
    /// Fields this version does not know (a newer version's, or a typo), kept and written back
    /// unchanged; see `ClusterSpec::unknown_fields`.
    #[serde(flatten)]
    pub unknown: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecoveryTargetSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_target_lsn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_target_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_target_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_target_xid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_target_timeline: Option<String>,
    /// Fields this version does not know (a newer version's, or a typo), kept and written back
    /// unchanged; see `ClusterSpec::unknown_fields`.
    #[serde(flatten)]
    pub unknown: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PitrConfig {
    #[serde(default)]
    pub data_restore_command: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_recovery_settings: Option<ArchiveRecoverySettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_target_settings: Option<RecoveryTargetSettings>,
    /// Fields this version does not know (a newer version's, or a typo), kept and written back
    /// unchanged; see `ClusterSpec::unknown_fields`.
    #[serde(flatten)]
    pub unknown: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StandbySettings {
    #[serde(default)]
    pub primary_conninfo: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_slot_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_min_apply_delay: Option<String>,
    /// Fields this version does not know (a newer version's, or a typo), kept and written back
    /// unchanged; see `ClusterSpec::unknown_fields`.
    #[serde(flatten)]
    pub unknown: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StandbyConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standby_settings: Option<StandbySettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_recovery_settings: Option<ArchiveRecoverySettings>,
    /// Fields this version does not know (a newer version's, or a typo), kept and written back
    /// unchanged; see `ClusterSpec::unknown_fields`.
    #[serde(flatten)]
    pub unknown: BTreeMap<String, serde_json::Value>,
}

/// The operator's cluster spec as stored in clusterdata. `None` means "use the default".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSpec {
    #[serde(default, with = "crate::duration::opt", skip_serializing_if = "Option::is_none")]
    pub sleep_interval: Option<Duration>,
    #[serde(default, with = "crate::duration::opt", skip_serializing_if = "Option::is_none")]
    pub request_timeout: Option<Duration>,
    #[serde(default, with = "crate::duration::opt", skip_serializing_if = "Option::is_none")]
    pub fail_interval: Option<Duration>,
    #[serde(default, with = "crate::duration::opt", skip_serializing_if = "Option::is_none")]
    pub convergence_timeout: Option<Duration>,
    #[serde(default, with = "crate::duration::opt", skip_serializing_if = "Option::is_none")]
    pub init_timeout: Option<Duration>,
    #[serde(default, with = "crate::duration::opt", skip_serializing_if = "Option::is_none")]
    pub sync_timeout: Option<Duration>,
    #[serde(default, with = "crate::duration::opt", skip_serializing_if = "Option::is_none")]
    pub db_wait_ready_timeout: Option<Duration>,
    #[serde(default, with = "crate::duration::opt", skip_serializing_if = "Option::is_none")]
    pub dead_keeper_removal_interval: Option<Duration>,
    #[serde(default, with = "crate::duration::opt", skip_serializing_if = "Option::is_none")]
    pub proxy_check_interval: Option<Duration>,
    #[serde(default, with = "crate::duration::opt", skip_serializing_if = "Option::is_none")]
    pub proxy_timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_standbys: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_standbys_per_sender: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_standby_lag: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synchronous_replication: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_synchronous_standbys: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_synchronous_standbys: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_wal_senders: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_master_replication_slots: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_pgrewind: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_mode: Option<InitMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge_pg_parameters: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<ClusterRole>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_config: Option<NewConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub existing_config: Option<ExistingConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pitr_config: Option<PitrConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standby_config: Option<StandbyConfig>,
    #[serde(rename = "defaultSUReplAccessMode", default, skip_serializing_if = "Option::is_none")]
    pub default_su_repl_access_mode: Option<SuReplAccessMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_parameters: Option<BTreeMap<String, String>>,
    /// `None` (null/absent): allow the superuser and everyone md5 from any host, as Stolon does.
    /// `Some(list)`, even empty: exactly these lines after the keeper's own local/replication lines.
    #[serde(rename = "pgHBA", default, skip_serializing_if = "Option::is_none")]
    pub pg_hba: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automatic_pg_restart: Option<bool>,
    /// Fields this version does not know (a newer version's, or a typo), kept and written back
    /// unchanged; see `ClusterSpec::unknown_fields`.
    #[serde(flatten)]
    pub unknown: BTreeMap<String, serde_json::Value>,
}

/// Declares, once, each defaulted field's effective-value accessor and its default. The accessor
/// has the field's name; `with_defaults` fills every listed field.
macro_rules! defaults {
    ($($(#[$doc:meta])* $field:ident: $ty:ty = $default:expr;)*) => {
        impl ClusterSpec {
            $(
                $(#[$doc])*
                pub fn $field(&self) -> $ty {
                    self.$field.clone().unwrap_or_else(|| $default)
                }
            )*

            /// This spec with every defaulted field filled in (what `stolonctl spec --defaults` shows).
            pub fn with_defaults(&self) -> ClusterSpec {
                let mut out = self.clone();
                $( out.$field = Some(self.$field()); )*
                out
            }
        }
    };
}

defaults! {
    /// How often keepers, sentinels and proxies run their loop. Stolon: 5s; ours 1s for fast failover.
    sleep_interval: Duration = Duration::from_secs(1);
    /// Timeout of one request to PostgreSQL or the store. Stolon: 10s.
    request_timeout: Duration = Duration::from_secs(3);
    /// A keeper or db not seen healthy for this long is failed. Stolon: 20s.
    fail_interval: Duration = Duration::from_secs(4);
    /// How long a db may take to converge to a new spec before it is considered failed. Stolon: 30s.
    convergence_timeout: Duration = Duration::from_secs(30);
    /// How long the first db may take to initialize. Same as Stolon.
    init_timeout: Duration = Duration::from_secs(300);
    /// How long a standby may take to sync from a new master (pg_basebackup, pg_rewind); a copy
    /// outlasting it is killed and started over. 0 means no limit. Same as Stolon (0).
    sync_timeout: Duration = Duration::ZERO;
    /// How long to wait for postgres to become ready after start. Same as Stolon.
    db_wait_ready_timeout: Duration = Duration::from_secs(60);
    /// A keeper not seen for this long is removed from clusterdata. Same as Stolon.
    dead_keeper_removal_interval: Duration = Duration::from_secs(48 * 3600);
    /// How often proxies check the store. Stolon: 5s.
    proxy_check_interval: Duration = Duration::from_secs(1);
    /// A proxy that could not check the store for this long closes its connections. Stolon: 15s.
    proxy_timeout: Duration = Duration::from_secs(4);
    /// Maximum number of standbys of the master. Same as Stolon.
    max_standbys: u16 = 20;
    /// Maximum number of standbys following one sender. Same as Stolon.
    max_standbys_per_sender: u16 = 3;
    /// A standby lagging more than this many bytes behind the master is not elected. Same as Stolon (1 MiB).
    max_standby_lag: u64 = 1024 * 1024;
    /// Synchronous replication. Same as Stolon.
    synchronous_replication: bool = false;
    /// Fewer synchronous standbys than this: the master's commits wait (a fake standby pads
    /// synchronous_standby_names). 0: the master may commit alone. Same as Stolon.
    min_synchronous_standbys: u16 = 1;
    /// Same as Stolon.
    max_synchronous_standbys: u16 = 1;
    /// Extra wal senders beyond the ones the standbys need. Same as Stolon.
    additional_wal_senders: u16 = 5;
    /// Replication slots kept on the master for external clients. Same as Stolon.
    additional_master_replication_slots: Vec<String> = Vec::new();
    /// Try pg_rewind before a full resync. Stolon: false; ours true (safety rule 4: rewind before resync).
    use_pgrewind: bool = true;
    /// Merge pgParameters with the ones found in an existing db. Same as Stolon.
    merge_pg_parameters: bool = true;
    /// Same as Stolon.
    role: ClusterRole = ClusterRole::Master;
    /// Same as Stolon.
    default_su_repl_access_mode: SuReplAccessMode = SuReplAccessMode::All;
    /// Same as Stolon.
    pg_parameters: BTreeMap<String, String> = BTreeMap::new();
    /// Restart postgres by itself when a parameter that needs a restart changes. Same as Stolon.
    automatic_pg_restart: bool = false;
}

impl ClusterSpec {
    /// Parses a spec, naming the field at fault on error. Does not run `validate`.
    pub fn parse(json: &str) -> Result<ClusterSpec, SpecError> {
        // serde would also accept a JSON array as a struct; a spec is always an object.
        if !json.trim_start().starts_with('{') {
            return Err(SpecError::Parse {
                path: "(top level)".to_string(),
                message: "a cluster spec must be a JSON object, e.g. {\"initMode\":\"new\"}".to_string(),
            });
        }
        let de = &mut serde_json::Deserializer::from_str(json);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            SpecError::Parse {
                path: if path == "." || path == "?" { "(top level)".to_string() } else { path },
                message: e.into_inner().to_string(),
            }
        })
    }

    /// Parses and validates.
    pub fn parse_valid(json: &str) -> Result<ClusterSpec, SpecError> {
        let spec = Self::parse(json)?;
        spec.validate()?;
        Ok(spec)
    }

    /// The defaults alone (no initMode: the operator must always choose it).
    pub fn defaults() -> ClusterSpec {
        ClusterSpec::default().with_defaults()
    }

    /// The fields this version does not know, as dotted paths (`newConfig.icuRules`), sorted:
    /// what the sentinel and keeper log and stolonctl prints as a warning.
    pub fn unknown_fields(&self) -> Vec<String> {
        let mut out: Vec<String> = self.unknown.keys().cloned().collect();
        let mut nested = |prefix: &str, unknown: Option<&BTreeMap<String, serde_json::Value>>| {
            out.extend(unknown.into_iter().flat_map(|u| u.keys()).map(|k| format!("{prefix}.{k}")));
        };
        nested("newConfig", self.new_config.as_ref().map(|c| &c.unknown));
        nested("existingConfig", self.existing_config.as_ref().map(|c| &c.unknown));
        let pitr = self.pitr_config.as_ref();
        nested("pitrConfig", pitr.map(|c| &c.unknown));
        nested("pitrConfig.archiveRecoverySettings", pitr.and_then(|c| c.archive_recovery_settings.as_ref()).map(|c| &c.unknown));
        nested("pitrConfig.recoveryTargetSettings", pitr.and_then(|c| c.recovery_target_settings.as_ref()).map(|c| &c.unknown));
        let standby = self.standby_config.as_ref();
        nested("standbyConfig", standby.map(|c| &c.unknown));
        nested("standbyConfig.standbySettings", standby.and_then(|c| c.standby_settings.as_ref()).map(|c| &c.unknown));
        nested("standbyConfig.archiveRecoverySettings", standby.and_then(|c| c.archive_recovery_settings.as_ref()).map(|c| &c.unknown));
        out.sort();
        out
    }

    /// Checks the effective values (explicit or default) for consistency.
    pub fn validate(&self) -> Result<(), SpecError> {
        let positive = [
            ("sleepInterval", self.sleep_interval()),
            ("requestTimeout", self.request_timeout()),
            ("failInterval", self.fail_interval()),
            ("convergenceTimeout", self.convergence_timeout()),
            ("initTimeout", self.init_timeout()),
            ("dbWaitReadyTimeout", self.db_wait_ready_timeout()),
            ("deadKeeperRemovalInterval", self.dead_keeper_removal_interval()),
            ("proxyCheckInterval", self.proxy_check_interval()),
            ("proxyTimeout", self.proxy_timeout()),
        ];
        for (field, value) in positive {
            if value.is_zero() {
                return Err(invalid(field, "must be greater than 0"));
            }
        }
        if self.fail_interval() <= self.sleep_interval() {
            return Err(invalid(
                "failInterval",
                format!(
                    "({}) must be greater than sleepInterval ({}), or every keeper would look failed",
                    crate::duration::format(self.fail_interval()),
                    crate::duration::format(self.sleep_interval())
                ),
            ));
        }
        if self.proxy_check_interval() >= self.proxy_timeout() {
            return Err(invalid(
                "proxyCheckInterval",
                format!(
                    "({}) must be less than proxyTimeout ({})",
                    crate::duration::format(self.proxy_check_interval()),
                    crate::duration::format(self.proxy_timeout())
                ),
            ));
        }
        if self.max_standbys() < 1 {
            return Err(invalid("maxStandbys", "must be at least 1"));
        }
        if self.max_standbys_per_sender() < 1 {
            return Err(invalid("maxStandbysPerSender", "must be at least 1"));
        }
        // minSynchronousStandbys 0 is valid (Stolon #841): a master without a synchronous standby
        // may then commit alone. maxSynchronousStandbys must still allow one.
        if self.max_synchronous_standbys() < 1 {
            return Err(invalid("maxSynchronousStandbys", "must be at least 1"));
        }
        if self.max_synchronous_standbys() < self.min_synchronous_standbys() {
            return Err(invalid(
                "maxSynchronousStandbys",
                format!(
                    "({}) must be at least minSynchronousStandbys ({})",
                    self.max_synchronous_standbys(),
                    self.min_synchronous_standbys()
                ),
            ));
        }
        for slot in self.additional_master_replication_slots() {
            if !valid_slot_name(&slot) {
                return Err(invalid(
                    "additionalMasterReplicationSlots",
                    format!("entry {slot:?} is not a valid slot name (lower case letters, digits and _ only)"),
                ));
            }
            if slot.starts_with("stolon_") {
                return Err(invalid(
                    "additionalMasterReplicationSlots",
                    format!("entry {slot:?} uses the prefix stolon_, reserved for the keepers' own slots"),
                ));
            }
        }
        self.validate_init_mode()?;
        for (name, value) in self.pg_parameters() {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
                return Err(invalid("pgParameters", format!("parameter name {name:?} is not a valid setting name")));
            }
            if value.contains(['\n', '\r', '\0']) {
                return Err(invalid("pgParameters", format!("value of {name:?} contains a line break or NUL")));
            }
        }
        if let Some(lines) = &self.pg_hba {
            for line in lines {
                if line.trim().is_empty() || line.contains(['\n', '\r', '\0']) {
                    return Err(invalid("pgHBA", format!("entry {line:?} must be one non-empty line")));
                }
            }
        }
        Ok(())
    }

    fn validate_init_mode(&self) -> Result<(), SpecError> {
        match self.init_mode {
            None => return Err(invalid("initMode", "is missing: choose \"new\", \"existing\" or \"pitr\"")),
            Some(InitMode::New) => {}
            Some(InitMode::Existing) => {
                let uid = self.existing_config.as_ref().map(|c| c.keeper_uid.as_str()).unwrap_or("");
                if uid.is_empty() {
                    return Err(invalid(
                        "existingConfig",
                        "must name the keeper whose db to adopt (existingConfig.keeperUID) when initMode is \"existing\"",
                    ));
                }
            }
            Some(InitMode::Pitr) => {
                let cmd = self.pitr_config.as_ref().map(|c| c.data_restore_command.as_str()).unwrap_or("");
                if cmd.is_empty() {
                    return Err(invalid(
                        "pitrConfig",
                        "must set pitrConfig.dataRestoreCommand when initMode is \"pitr\"",
                    ));
                }
            }
        }
        if self.role() == ClusterRole::Standby {
            let conninfo = self
                .standby_config
                .as_ref()
                .and_then(|c| c.standby_settings.as_ref())
                .map(|s| s.primary_conninfo.as_str())
                .unwrap_or("");
            let restore = self
                .standby_config
                .as_ref()
                .and_then(|c| c.archive_recovery_settings.as_ref())
                .map(|s| s.restore_command.as_str())
                .unwrap_or("");
            if conninfo.is_empty() && restore.is_empty() {
                return Err(invalid(
                    "standbyConfig",
                    "must set standbySettings.primaryConninfo or archiveRecoverySettings.restoreCommand when role is \"standby\"",
                ));
            }
            if self.synchronous_replication() {
                return Err(invalid("synchronousReplication", "cannot be enabled when role is \"standby\""));
            }
        }
        Ok(())
    }

    /// Applies a JSON merge patch (RFC 7386) to this spec, as `stolonctl update --patch` does:
    /// objects merge, `null` removes a field (back to its default), anything else replaces.
    pub fn patched(&self, patch_json: &str) -> Result<ClusterSpec, SpecError> {
        let patch: serde_json::Value = serde_json::from_str(patch_json).map_err(|e| SpecError::Parse {
            path: "(top level)".to_string(),
            message: e.to_string(),
        })?;
        let mut doc = serde_json::to_value(self).map_err(|e| SpecError::Parse {
            path: "(top level)".to_string(),
            message: e.to_string(),
        })?;
        merge_patch(&mut doc, &patch);
        ClusterSpec::parse(&doc.to_string())
    }
}

fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    use serde_json::Value;
    match patch {
        Value::Object(patch_map) => {
            if !target.is_object() {
                *target = Value::Object(serde_json::Map::new());
            }
            if let Value::Object(target_map) = target {
                for (key, value) in patch_map {
                    if value.is_null() {
                        target_map.remove(key);
                    } else {
                        merge_patch(target_map.entry(key.clone()).or_insert(Value::Null), value);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// TTL of a keeper's or sentinel's info lease (docs/protocol.md): long enough to survive two
/// missed publications, and never shorter than failInterval, so an info does not vanish before
/// the sentinel could have judged its keeper failed anyway.
pub fn info_ttl(sleep_interval: Duration, fail_interval: Duration) -> Duration {
    (sleep_interval * 3).max(fail_interval)
}

/// PostgreSQL replication slot names: lower case letters, digits and underscores, at most 63 bytes.
pub fn valid_slot_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
#[path = "spec_tests.rs"]
mod tests;
