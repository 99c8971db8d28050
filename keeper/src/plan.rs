//! The keeper's decision: `plan(&Desired, &Observed) -> Vec<Step>`, pure and table-tested.
//!
//! `Desired` is what clusterdata asks of this keeper (its db, the db it follows, the slots it
//! keeps) plus what `dbstate.json` says was already done; `Observed` is what the keeper saw of its
//! data dir and postgres this pass. The plan is the list of steps that moves one toward the other.
//! The executor runs the steps in order and stops at the first failure; the next pass observes
//! again and plans again, so every step is written to be idempotent and safe to repeat after a
//! `kill -9` at any point (a level-triggered reconciler, as in kube-rs).
//!
//! Data safety (safety rule 4) lives here, where the tests can see it:
//! - a deposed master (role master, but not clusterdata's `cluster.status.master`) is stopped
//!   and left alone until clusterdata makes it the master again or gives it another db;
//! - a restarted keeper acts on a master role only once clusterdata records its new bootUUID;
//! - the data dir is removed only to apply initMode `new` or `resync` to a db uid that is not
//!   yet recorded in dbstate.json (or to resync a primary that clusterdata says is a standby),
//!   and never over data that may be another cluster's only copy without `--allow-reinit`
//!   (`would_destroy_data`);
//! - a db whose init was applied, or whose initMode is `none`/`existing`, never gets initdb: a
//!   missing data dir is reported (`ReportDataDirMissing`) and the keeper waits, except that a
//!   stopped standby is simply copied again from its master (it can only come back as a standby);
//! - a resync tries pg_rewind first when `usePgrewind` and the system ids match; a pg_rewind that
//!   failed for this db is not tried again by this process (full pg_basebackup instead);
//! - a synchronous master found stopped starts with clients kept out (`keep_clients_out`).

use crate::state::DbState;
use clusterview::data::{DbInitMode, DbRole};
use std::collections::BTreeSet;

/// What clusterdata and dbstate.json ask of this keeper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// This keeper's db in clusterdata; `None` when clusterdata assigns it none.
    pub db: Option<DesiredDb>,
    /// `<data-dir>/dbstate.json`.
    pub recorded: Option<DbState>,
    /// Hash of the configuration files the keeper wants (`conf::config_hash`).
    pub conf_hash: u64,
    /// Hash of the same files with the restricted pg_hba.conf (clients kept out).
    pub restricted_conf_hash: u64,
    /// The spec's usePgrewind.
    pub use_pgrewind: bool,
    /// The spec's automaticPgRestart: restart when a changed setting needs it.
    pub automatic_pg_restart: bool,
    /// PostgreSQL >= 13 applies a new primary_conninfo on reload; older ones need a restart.
    pub reload_applies_conninfo: bool,
    /// clusterdata's `cluster.uid`, recorded in dbstate.json with the db.
    pub cluster_uid: String,
    /// `--allow-reinit`: the operator allows initdb (initMode new), or a copy from another
    /// cluster, over a data dir that holds data.
    pub allow_reinit: bool,
    /// clusterdata's status of this keeper records this keeper process's bootUUID: the sentinel
    /// has seen this incarnation, so a master role is about it and not about the previous one.
    pub boot_recorded: bool,
}

/// This keeper's db, as clusterdata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredDb {
    pub uid: String,
    pub generation: u64,
    pub role: DbRole,
    pub init_mode: DbInitMode,
    /// Where a standby copies and streams from; `None` when clusterdata does not say yet (the
    /// followed db has no address).
    pub source: Option<Source>,
    /// On a master: the replication slots to keep (`stolon_<follower>` and the additional ones).
    pub slots: BTreeSet<String>,
    /// Role master, but clusterdata's `cluster.status.master` names another db: the sentinel
    /// elected another master and keeps this db (and its data) as a candidate until the new
    /// master has converged. The keeper stops postgres and waits, touching no data.
    pub deposed: bool,
    /// On a master with synchronous replication on: the db uids of its synchronous standbys
    /// (clusterdata's spec), which must be in sync before a (re)started master admits clients.
    pub sync_standbys: Option<BTreeSet<String>>,
}

/// The followed db, as far as the plan needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Its system identifier, when known: pg_rewind only between the same system.
    pub system_id: Option<String>,
    /// pg_rewind needs a superuser connection to it (not available for an external primary).
    pub can_rewind: bool,
}

/// The state of `<data-dir>/postgres`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataDir {
    Missing,
    /// Exists and holds nothing.
    Empty,
    /// Holds something, but not a usable data directory (no PG_VERSION or global/pg_control),
    /// e.g. an interrupted pg_basebackup.
    Partial,
    Present,
}

/// What the keeper observed this pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub data_dir: DataDir,
    /// The data dir holds a `PG_VERSION` file: it is (or was) a PostgreSQL data directory.
    pub holds_data: bool,
    /// From pg_control_system() when running, else pg_controldata.
    pub system_id: Option<String>,
    /// A postmaster runs on the data dir (our child or one a previous keeper left).
    pub running: bool,
    /// postgres answers SQL.
    pub healthy: bool,
    /// pg_is_in_recovery(), when postgres answers.
    pub in_recovery: Option<bool>,
    /// `standby.signal` exists in the data dir.
    pub standby_signal: bool,
    /// Hash of the configuration files on disk.
    pub conf_on_disk: Option<u64>,
    /// Hash of the configuration the running postgres was last started or reloaded with by this
    /// keeper process (`None` after a keeper restart: reload once to be sure).
    pub conf_applied: Option<u64>,
    /// A changed setting waits for a restart (pg_settings.pending_restart).
    pub pending_restart: bool,
    /// The replication role exists, when postgres answers.
    pub repl_role_exists: Option<bool>,
    /// Physical replication slots, when postgres answers as a primary.
    pub slots: Option<BTreeSet<String>>,
    /// A pg_rewind for this db already failed in this keeper process.
    pub rewind_failed: bool,
    /// On a primary: the standbys pg_stat_replication reports in sync (db uids, `stolon_`
    /// stripped); `None` when unknown or not looked at.
    pub in_sync_standbys: Option<BTreeSet<String>>,
}

/// Why the keeper waits instead of acting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitReason {
    /// A standby's followed db has no address in clusterdata yet.
    NoSource,
    /// initMode `new` on a standby, or `resync` on a master: clusterdata is inconsistent.
    InconsistentInitMode(DbInitMode, DbRole),
    /// initMode pitr is not implemented by this keeper.
    Unsupported(DbInitMode),
    /// A master db that is not clusterdata's master any more (see `DesiredDb::deposed`).
    Deposed,
    /// initMode new (or a copy from another cluster) would destroy data this keeper holds:
    /// PostgreSQL data (`pg_data`) and/or the dbstate.json of a db of another (or an unknown)
    /// cluster. Only `--allow-reinit` lets the keeper go on.
    WouldDestroyData { recorded: Option<DbState>, pg_data: bool },
    /// This keeper restarted and clusterdata does not record its new bootUUID yet: a master role
    /// may have been written about its previous incarnation (see `Desired::boot_recorded`).
    BootUuidNotRecorded,
}

/// One step toward the desired state. Each is idempotent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Fast shutdown of postgres, waiting for it.
    Stop,
    /// Start postgres as the keeper's child and wait until it accepts connections.
    Start,
    Restart,
    /// Re-read the configuration files (SIGHUP).
    Reload,
    /// Leave recovery (pg_ctl promote), waiting for it.
    Promote,
    /// Remove the contents of the data dir.
    RemoveDataDir,
    InitDb,
    BaseBackup,
    Rewind,
    /// Write postgresql-stolon.conf, pg_hba.conf and the include in postgresql.conf.
    WriteConfig,
    /// The same, with the restricted pg_hba.conf that keeps clients out.
    WriteRestrictedConfig,
    CreateStandbySignal,
    CreateReplicationRole,
    CreateSlot(String),
    DropSlot(String),
    /// Write dbstate.json.
    RecordDbState(DbState),
    /// Publish `dataDirMissing: true` and wait for the sentinel.
    ReportDataDirMissing,
    Wait(WaitReason),
}

impl Step {
    /// A short name for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Step::Stop => "stop",
            Step::Start => "start",
            Step::Restart => "restart",
            Step::Reload => "reload",
            Step::Promote => "promote",
            Step::RemoveDataDir => "remove data dir",
            Step::InitDb => "initdb",
            Step::BaseBackup => "basebackup",
            Step::Rewind => "rewind",
            Step::WriteConfig => "write config",
            Step::WriteRestrictedConfig => "write restricted config",
            Step::CreateStandbySignal => "create standby.signal",
            Step::CreateReplicationRole => "create replication role",
            Step::CreateSlot(_) => "create slot",
            Step::DropSlot(_) => "drop slot",
            Step::RecordDbState(_) => "record dbstate",
            Step::ReportDataDirMissing => "report data dir missing",
            Step::Wait(_) => "wait",
        }
    }
}

/// The steps that bring the observed state to the desired one.
pub fn plan(d: &Desired, o: &Observed) -> Vec<Step> {
    let Some(db) = &d.db else {
        // Clusterdata gives this keeper no db (not assigned yet, or removed): a postgres running
        // here is nobody's master or standby, so stop it rather than let clients write to it.
        return if o.running { vec![Step::Stop] } else { vec![] };
    };
    if db.role == DbRole::Master && db.deposed {
        // Another db was elected. This one stays a candidate (the sentinel may elect it again if
        // the new master fails before converging), so its data is left exactly as it is: no
        // rewind, no copy, no initdb, no promotion. Stopping it fences it from clients.
        let mut steps = stop_if_running(o);
        steps.push(Step::Wait(WaitReason::Deposed));
        return steps;
    }
    if db.role == DbRole::Master && !d.boot_recorded {
        // The master role may be about this keeper's previous incarnation (written just before
        // a failover the sentinel is about to make): start, promote or initdb nothing until the
        // sentinel has seen this process. A primary left running is left as it is.
        return vec![Step::Wait(WaitReason::BootUuidNotRecorded)];
    }
    // An initdb that started and did not finish has not applied the initMode.
    let initialized = d.recorded.as_ref().is_some_and(|r| r.db_uid == db.uid && !r.init_pending);
    // A standby whose data dir vanished after its copy is copied again: a copy of the master
    // can only ever be a standby, so this is safe, and waiting for the sentinel to hand out a
    // new db would leave the cluster a standby short meanwhile.
    let lost_standby = db.role == DbRole::Standby && o.data_dir != DataDir::Present && !o.running;
    match (&db.source, initialized && lost_standby) {
        (Some(source), true) => copy_as_standby(d, db, source, o),
        _ if initialized => converge(d, db, o),
        _ => init(d, db, o),
    }
}

/// Stop, copy the followed db (rewind or basebackup), mark as standby, record, converge.
fn copy_as_standby(d: &Desired, db: &DesiredDb, source: &Source, o: &Observed) -> Vec<Step> {
    let record = record(d, db, None);
    let mut steps = stop_if_running(o);
    steps.extend(copy_steps(d, source, o));
    steps.extend([Step::CreateStandbySignal, record]);
    steps.extend(converge(d, db, &after_copy(o, true, None)));
    steps
}

/// Applies the db's initMode to a db uid not yet recorded in dbstate.json.
fn init(d: &Desired, db: &DesiredDb, o: &Observed) -> Vec<Step> {
    let record = record(d, db, None);
    match db.init_mode {
        DbInitMode::New => {
            if db.role != DbRole::Master {
                return vec![Step::Wait(WaitReason::InconsistentInitMode(db.init_mode, db.role))];
            }
            if let Some(refusal) = would_destroy_data(d, db, o, Overwrite::InitDb) {
                return vec![refusal];
            }
            let mut steps = stop_if_running(o);
            // Recorded first: after a kill -9 during initdb, the remains are recognised as ours.
            steps.push(Step::RecordDbState(DbState { init_pending: true, ..record_state(d, db, None) }));
            if o.data_dir != DataDir::Missing {
                steps.push(Step::RemoveDataDir);
            }
            steps.extend([Step::InitDb, record]);
            steps.extend(converge(d, db, &after_copy(o, false, Some(false))));
            steps
        }
        DbInitMode::Resync => {
            if db.role != DbRole::Standby {
                return vec![Step::Wait(WaitReason::InconsistentInitMode(db.init_mode, db.role))];
            }
            let Some(source) = &db.source else {
                return vec![Step::Wait(WaitReason::NoSource)];
            };
            if let Some(refusal) = would_destroy_data(d, db, o, Overwrite::Copy) {
                return vec![refusal];
            }
            copy_as_standby(d, db, source, o)
        }
        DbInitMode::Existing | DbInitMode::None => {
            // Adopt the data dir as it is; never create one.
            if o.data_dir != DataDir::Present {
                return vec![Step::ReportDataDirMissing];
            }
            // Adopting another cluster's data as a master (initMode existing) is how an operator
            // recovers a lost clusterdata; adopting it as a standby would copy over it.
            if db.role == DbRole::Standby {
                if let Some(refusal) = would_destroy_data(d, db, o, Overwrite::Copy) {
                    return vec![refusal];
                }
            }
            let mut steps = vec![record];
            steps.extend(converge(d, db, o));
            steps
        }
        DbInitMode::Pitr => vec![Step::Wait(WaitReason::Unsupported(db.init_mode))],
    }
}

/// Brings an initialized db to its spec.
fn converge(d: &Desired, db: &DesiredDb, o: &Observed) -> Vec<Step> {
    if o.data_dir != DataDir::Present {
        return vec![Step::ReportDataDirMissing];
    }
    let mut steps = Vec::new();
    let done = match db.role {
        DbRole::Master => converge_master(d, db, o, &mut steps),
        DbRole::Standby => converge_standby(d, db, o, &mut steps),
    };
    let recorded = d.recorded.as_ref().filter(|r| r.db_uid == db.uid);
    let recorded_generation = recorded.and_then(|r| r.generation);
    // dbstate.json of an older keeper lacks the cluster uid: add it.
    let recorded_cluster = recorded.and_then(|r| r.cluster_uid.as_deref());
    if done && steps.is_empty() && o.healthy && (recorded_generation != Some(db.generation) || recorded_cluster != Some(d.cluster_uid.as_str())) {
        steps.push(record(d, db, Some(db.generation)));
    }
    steps
}

/// Master: running, out of recovery, configured, with its replication role and slots. Returns
/// whether the plan could look at everything (postgres answered).
fn converge_master(d: &Desired, db: &DesiredDb, o: &Observed, steps: &mut Vec<Step>) -> bool {
    let (write, conf_hash) = if keep_clients_out(d, db, o) { (Step::WriteRestrictedConfig, d.restricted_conf_hash) } else { (Step::WriteConfig, d.conf_hash) };
    if o.conf_on_disk != Some(conf_hash) {
        steps.push(write);
    }
    if !o.running {
        steps.push(Step::Start);
        if o.standby_signal {
            // Start as a standby and promote, so the new master gets a new timeline and
            // cannot be confused with the history it was following.
            steps.push(Step::Promote);
        } else if o.repl_role_exists == Some(false) {
            steps.push(Step::CreateReplicationRole);
        }
        return false;
    }
    if o.conf_applied != Some(conf_hash) {
        steps.push(Step::Reload);
    }
    match o.in_recovery {
        Some(true) => {
            steps.push(Step::Promote);
            return false;
        }
        None => return false,
        Some(false) => {}
    }
    if o.pending_restart && d.automatic_pg_restart {
        steps.push(Step::Restart);
    }
    if o.repl_role_exists == Some(false) {
        steps.push(Step::CreateReplicationRole);
    }
    if let Some(present) = &o.slots {
        for slot in db.slots.difference(present) {
            steps.push(Step::CreateSlot(slot.clone()));
        }
        for slot in present.iter().filter(|s| s.starts_with("stolon_") && !db.slots.contains(*s)) {
            steps.push(Step::DropSlot(slot.clone()));
        }
    }
    true
}

/// Whether the master runs (or starts) with the restricted pg_hba.conf (Stolon's
/// waitSyncStandbysSynced): with synchronous replication on, a master found stopped starts with
/// clients kept out, because transactions that were waiting for a standby's acknowledgement when
/// it stopped are in its WAL and become visible at start before any standby has them; clients
/// come in once every synchronous standby of the spec is reported in sync. The restricted file
/// on disk is what carries this across passes and keeper restarts. A master that keeps running
/// while a standby falls behind is not restricted (its commits simply wait).
fn keep_clients_out(d: &Desired, db: &DesiredDb, o: &Observed) -> bool {
    let Some(wanted) = db.sync_standbys.as_ref().filter(|w| !w.is_empty()) else { return false };
    if !o.running {
        return true;
    }
    let restricted_now = o.conf_on_disk == Some(d.restricted_conf_hash);
    let in_sync = o.in_sync_standbys.as_ref().is_some_and(|have| wanted.is_subset(have));
    restricted_now && !in_sync
}

/// Standby: in recovery from its source with the wanted primary_conninfo. A primary that
/// clusterdata calls a standby is stopped at once and resynced (rewind first).
fn converge_standby(d: &Desired, db: &DesiredDb, o: &Observed, steps: &mut Vec<Step>) -> bool {
    let acts_as_primary = (o.running && o.in_recovery == Some(false)) || (!o.running && !o.standby_signal);
    let Some(source) = &db.source else {
        if o.running && o.in_recovery == Some(false) {
            steps.push(Step::Stop);
        }
        steps.push(Step::Wait(WaitReason::NoSource));
        return false;
    };
    if acts_as_primary {
        steps.extend(stop_if_running(o));
        steps.extend(copy_steps(d, source, o));
        steps.push(Step::CreateStandbySignal);
        converge_standby(d, db, &after_copy(o, true, None), steps);
        return false;
    }
    if o.conf_on_disk != Some(d.conf_hash) {
        steps.push(Step::WriteConfig);
    }
    if !o.standby_signal {
        steps.push(Step::CreateStandbySignal);
    }
    if !o.running {
        steps.push(Step::Start);
        return false;
    }
    if o.conf_applied != Some(d.conf_hash) {
        if d.reload_applies_conninfo {
            steps.push(Step::Reload);
        } else {
            steps.push(Step::Restart);
            return false;
        }
    }
    if o.pending_restart && d.automatic_pg_restart {
        steps.push(Step::Restart);
    }
    o.in_recovery.is_some()
}

/// Records `db` (of this cluster) in dbstate.json, at `generation` once converged.
fn record(d: &Desired, db: &DesiredDb, generation: Option<u64>) -> Step {
    Step::RecordDbState(record_state(d, db, generation))
}

fn record_state(d: &Desired, db: &DesiredDb, generation: Option<u64>) -> DbState {
    DbState { db_uid: db.uid.clone(), generation, cluster_uid: Some(d.cluster_uid.clone()), init_pending: false }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Overwrite {
    /// initdb for initMode new.
    InitDb,
    /// A copy (pg_rewind or pg_basebackup) for initMode resync.
    Copy,
}

/// The refusal to wait on when applying the db's initMode would destroy data that may be the
/// only copy of someone's database (safety review §3: a lost clusterdata re-created by a
/// sentinel must not wipe the old cluster). `None` when there is nothing to lose or the
/// operator said `--allow-reinit`.
/// - initdb: never over PostgreSQL data (PG_VERSION), except the remains of this db's own
///   interrupted initdb, nor on a keeper whose dbstate.json names a db of another cluster or of
///   an unknown one (written by an older keeper);
/// - copy: never over the data of a db recorded as another cluster's, unless it is a copy of the
///   same database as the source (same system id). A standby of this cluster given a new resync
///   db (same cluster uid) is copied over its old data as always.
fn would_destroy_data(d: &Desired, db: &DesiredDb, o: &Observed, what: Overwrite) -> Option<Step> {
    if d.allow_reinit {
        return None;
    }
    let other_db = d.recorded.as_ref().filter(|r| r.db_uid != db.uid);
    let own_pending = d.recorded.as_ref().is_some_and(|r| r.db_uid == db.uid && r.init_pending);
    let refuse = match what {
        Overwrite::InitDb => {
            let foreign = other_db.is_some_and(|r| r.cluster_uid.as_deref() != Some(d.cluster_uid.as_str()));
            foreign || (o.holds_data && !own_pending)
        }
        Overwrite::Copy => {
            let other_cluster = other_db.is_some_and(|r| r.cluster_uid.as_ref().is_some_and(|c| *c != d.cluster_uid));
            // A copy of the same database (same system id as the source) rejoins as usual, as
            // when a lost clusterdata was recovered with initMode existing from another keeper.
            let same_system = matches!((&o.system_id, db.source.as_ref().and_then(|s| s.system_id.as_ref())), (Some(local), Some(remote)) if local == remote);
            o.holds_data && other_cluster && !same_system
        }
    };
    refuse.then(|| Step::Wait(WaitReason::WouldDestroyData { recorded: d.recorded.clone(), pg_data: o.holds_data }))
}

fn stop_if_running(o: &Observed) -> Vec<Step> {
    if o.running {
        vec![Step::Stop]
    } else {
        vec![]
    }
}

/// How a standby's data dir becomes a copy of its source: pg_rewind when allowed and possible,
/// else a fresh pg_basebackup into an emptied data dir.
fn copy_steps(d: &Desired, source: &Source, o: &Observed) -> Vec<Step> {
    let same_system = match (&o.system_id, &source.system_id) {
        (Some(local), Some(remote)) => local == remote,
        // pg_rewind checks the system ids itself and fails when they differ.
        (Some(_), None) => true,
        (None, _) => false,
    };
    if d.use_pgrewind && source.can_rewind && !o.rewind_failed && o.data_dir == DataDir::Present && same_system {
        return vec![Step::Rewind];
    }
    let mut steps = Vec::new();
    if o.data_dir != DataDir::Missing {
        steps.push(Step::RemoveDataDir);
    }
    steps.push(Step::BaseBackup);
    steps
}

/// What the data dir looks like right after initdb / basebackup / rewind: present, stopped,
/// configuration not yet ours.
fn after_copy(o: &Observed, standby_signal: bool, repl_role_exists: Option<bool>) -> Observed {
    Observed {
        data_dir: DataDir::Present,
        holds_data: true,
        system_id: None,
        running: false,
        healthy: false,
        in_recovery: None,
        standby_signal,
        conf_on_disk: None,
        conf_applied: None,
        pending_restart: false,
        repl_role_exists,
        slots: None,
        rewind_failed: o.rewind_failed,
        in_sync_standbys: None,
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
