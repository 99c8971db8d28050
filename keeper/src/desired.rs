//! From clusterdata to a `Target`: the plan's `Desired`, the configuration files to write, and how
//! to reach the followed db. Pure: clusterdata, the keeper's config and dbstate.json in, values out.
//!
//! Addresses are read only from `dbs[followed].status.listenAddress/port` (docs/protocol.md), and
//! every connection string carries `passfile=` instead of a password.

use crate::config::KeeperConfig;
use crate::plan::{Desired, DesiredDb, Source};
use crate::state::DbState;
use crate::{conf, hba, quote};
use clusterview::data::{ClusterData, DbRole, FollowType};
use clusterview::spec::{ClusterSpec, NewConfig};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// How to reach the db a standby copies and streams from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceConn {
    /// `host:port`, for logs.
    pub describe: String,
    /// Replication connection: pg_basebackup `-d` and primary_conninfo.
    pub repl_conninfo: String,
    /// Superuser connection for pg_rewind (internal sources only).
    pub su_conninfo: Option<String>,
    /// Host and port, to check the source is promoted before rewinding from it.
    pub host: String,
    pub port: u16,
}

/// Everything one keeper pass needs from clusterdata.
#[derive(Debug, Clone)]
pub struct Target {
    pub desired: Desired,
    /// postgresql-stolon.conf.
    pub stolon_conf: String,
    pub pg_hba: String,
    /// pg_hba.conf keeping clients out (a sync master restarted, until its standbys are in sync).
    pub pg_hba_restricted: String,
    pub source: Option<SourceConn>,
    /// initdb options (spec's newConfig).
    pub new_config: NewConfig,
    pub timing: Timing,
}

/// The spec's intervals and timeouts the keeper uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub sleep_interval: Duration,
    pub fail_interval: Duration,
    pub request_timeout: Duration,
    pub db_wait_ready_timeout: Duration,
    pub sync_timeout: Duration,
    /// How long clusterdata may go unread before /primary stops vouching for this master.
    pub proxy_timeout: Duration,
}

impl Timing {
    pub fn from_spec(spec: &ClusterSpec) -> Timing {
        Timing {
            sleep_interval: spec.sleep_interval(),
            fail_interval: spec.fail_interval(),
            request_timeout: spec.request_timeout(),
            db_wait_ready_timeout: spec.db_wait_ready_timeout(),
            sync_timeout: spec.sync_timeout(),
            proxy_timeout: spec.proxy_timeout(),
        }
    }

    /// TTL of the keeper's info lease: max(3 * sleepInterval, failInterval).
    pub fn info_ttl(&self) -> Duration {
        clusterview::spec::info_ttl(self.sleep_interval, self.fail_interval)
    }
}

/// The replication slot a standby of db `uid` uses on its master.
pub fn slot_name(db_uid: &str) -> String {
    format!("stolon_{db_uid}")
}

fn connect_timeout(t: &Timing) -> String {
    t.request_timeout.as_secs().max(2).to_string()
}

/// Connection strings to an internal source at `host:port`.
fn internal_source(cfg: &KeeperConfig, own_db: &str, host: &str, port: u16, t: &Timing) -> SourceConn {
    let port_s = port.to_string();
    let app = slot_name(own_db);
    let pgpass = cfg.pgpass.to_string_lossy().into_owned();
    let timeout = connect_timeout(t);
    let mut repl = vec![("host", host), ("port", port_s.as_str()), ("user", cfg.repl_username.as_str()), ("application_name", app.as_str())];
    if cfg.repl_password.is_some() {
        repl.push(("passfile", pgpass.as_str()));
    }
    repl.extend([("sslmode", "prefer"), ("connect_timeout", timeout.as_str())]);
    let mut su = vec![("host", host), ("port", port_s.as_str()), ("user", cfg.su_username.as_str()), ("dbname", "postgres")];
    if cfg.su_password.is_some() {
        su.push(("passfile", pgpass.as_str()));
    }
    su.extend([("sslmode", "prefer"), ("connect_timeout", timeout.as_str())]);
    SourceConn {
        describe: format!("{host}:{port}"),
        repl_conninfo: quote::conninfo(&repl),
        su_conninfo: Some(quote::conninfo(&su)),
        host: host.to_string(),
        port,
    }
}

/// Builds the target of this pass for keeper `cfg.uid`.
pub fn target(cd: &ClusterData, cfg: &KeeperConfig, recorded: Option<&DbState>) -> Target {
    let spec = &cd.cluster.spec;
    let timing = Timing::from_spec(spec);
    let db = cd.db_of_keeper(&cfg.uid);
    let mut source_conn = None;
    let mut source = None;
    let mut extra_managed: Vec<(&'static str, String)> = Vec::new();
    let mut primary_slot = String::new();
    if let Some(db) = db.filter(|db| db.spec.role == DbRole::Standby) {
        match db.spec.follow_config.as_ref().map(|f| (f.kind, f.db_uid.as_deref())) {
            Some((FollowType::Internal, Some(followed))) if followed != db.uid => {
                if let Some(f) = cd.dbs.get(followed) {
                    if let (Some(host), Some(port)) = (&f.status.listen_address, f.status.port) {
                        source_conn = Some(internal_source(cfg, &db.uid, host, port, &timing));
                        source = Some(Source { system_id: f.status.system_id.clone(), can_rewind: true });
                        primary_slot = slot_name(&db.uid);
                    }
                }
            }
            Some((FollowType::External, _)) => {
                let standby = spec.standby_config.as_ref();
                let settings = standby.and_then(|s| s.standby_settings.as_ref());
                if let Some(s) = settings.filter(|s| !s.primary_conninfo.trim().is_empty()) {
                    let mut conninfo = s.primary_conninfo.trim().to_string();
                    if !conninfo.contains("application_name") {
                        conninfo = format!("{conninfo} {}", quote::conninfo(&[("application_name", &slot_name(&db.uid))]));
                    }
                    source_conn = Some(SourceConn { describe: "the external primary (standbyConfig)".into(), repl_conninfo: conninfo, su_conninfo: None, host: String::new(), port: 0 });
                    source = Some(Source { system_id: None, can_rewind: false });
                    primary_slot = s.primary_slot_name.clone().unwrap_or_default();
                    if let Some(delay) = &s.recovery_min_apply_delay {
                        extra_managed.push(("recovery_min_apply_delay", delay.clone()));
                    }
                }
                if let Some(restore) = standby.and_then(|s| s.archive_recovery_settings.as_ref()).filter(|a| !a.restore_command.is_empty()) {
                    extra_managed.push(("restore_command", restore.restore_command.clone()));
                }
            }
            _ => {}
        }
    }

    let is_master = db.is_some_and(|db| db.spec.role == DbRole::Master);
    let ssn = match db {
        Some(db) if is_master => conf::synchronous_standby_names(db.spec.synchronous_replication, &db.spec.synchronous_standbys, spec.min_synchronous_standbys()),
        _ => String::new(),
    };
    let additional = spec.additional_master_replication_slots();
    let max_standbys = u32::from(spec.max_standbys());
    let socket_dir = cfg.socket_dir().to_string_lossy().into_owned();
    let conninfo = source_conn.as_ref().map(|s| s.repl_conninfo.clone()).unwrap_or_default();
    let params: BTreeMap<String, String> = spec.pg_parameters();
    let stolon_conf = conf::render(&conf::ConfInput {
        pg_major: cfg.pg_version.major,
        listen_addresses: &cfg.listen_address,
        port: cfg.port,
        socket_dir: &socket_dir,
        max_wal_senders: 2 * max_standbys + u32::from(spec.additional_wal_senders()),
        max_replication_slots: max_standbys + u32::try_from(additional.len()).unwrap_or(u32::MAX),
        synchronous_standby_names: &ssn,
        primary_conninfo: &conninfo,
        primary_slot_name: &primary_slot,
        extra_managed: &extra_managed,
        pg_parameters: &params,
    });
    let keeper_addresses: Vec<String> = cd.dbs.values().filter_map(|d| d.status.listen_address.clone()).collect();
    let hba_input = hba::HbaInput {
        su_username: &cfg.su_username,
        repl_username: &cfg.repl_username,
        su_auth: cfg.su_auth,
        repl_auth: cfg.repl_auth,
        access: spec.default_su_repl_access_mode(),
        keeper_addresses: &keeper_addresses,
        user_lines: spec.pg_hba.as_deref(),
        restricted: false,
    };
    let pg_hba = hba::render(&hba_input);
    let pg_hba_restricted = hba::render(&hba::HbaInput { restricted: true, ..hba_input });
    let conf_hash = conf::config_hash(&stolon_conf, &pg_hba, true);
    let restricted_conf_hash = conf::config_hash(&stolon_conf, &pg_hba_restricted, true);

    let desired_db = db.map(|db| {
        let mut slots = BTreeSet::new();
        if is_master {
            slots.extend(db.spec.followers.iter().map(|f| slot_name(f)).filter(|s| clusterview::spec::valid_slot_name(s)));
            slots.extend(additional.iter().cloned());
        }
        DesiredDb {
            uid: db.uid.clone(),
            generation: db.generation,
            role: db.spec.role,
            init_mode: db.spec.init_mode,
            source: source.clone(),
            slots,
            deposed: is_master && cd.cluster.status.master.as_deref() != Some(db.uid.as_str()),
            sync_standbys: (is_master && db.spec.synchronous_replication).then(|| db.spec.synchronous_standbys.iter().cloned().collect()),
        }
    });
    Target {
        desired: Desired {
            db: desired_db,
            recorded: recorded.cloned(),
            conf_hash,
            restricted_conf_hash,
            use_pgrewind: spec.use_pgrewind(),
            automatic_pg_restart: spec.automatic_pg_restart(),
            reload_applies_conninfo: cfg.pg_version.major >= 13,
            cluster_uid: cd.cluster.uid.clone(),
            allow_reinit: cfg.allow_reinit,
            boot_recorded: cd.keepers.get(&cfg.uid).and_then(|k| k.status.boot_uuid.as_deref()) == Some(cfg.boot_uuid.as_str()),
        },
        stolon_conf,
        pg_hba,
        pg_hba_restricted,
        source: source_conn,
        new_config: spec.new_config.clone().unwrap_or_default(),
        timing,
    }
}

#[cfg(test)]
#[path = "desired_tests.rs"]
pub(crate) mod tests;
