//! Table tests of `plan`: one row per situation a keeper meets, plus exhaustive safety checks
//! over every combination of init mode, role, dbstate and data dir.

use super::*;
use DbInitMode as M;
use Step::*;

#[path = "plan_safety_tests.rs"]
mod safety;

const H: u64 = 42;
/// The hash of the configuration with the restricted pg_hba.conf.
const HR: u64 = 43;

fn slots(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn src(system_id: Option<&str>, can_rewind: bool) -> Option<Source> {
    Some(Source { system_id: system_id.map(str::to_string), can_rewind })
}

fn master(init_mode: DbInitMode) -> DesiredDb {
    DesiredDb { uid: "db1".into(), generation: 3, role: DbRole::Master, init_mode, source: None, slots: slots(&["stolon_db2"]), deposed: false, sync_standbys: None }
}

fn standby(init_mode: DbInitMode, source: Option<Source>) -> DesiredDb {
    DesiredDb { uid: "db1".into(), generation: 3, role: DbRole::Standby, init_mode, source, slots: BTreeSet::new(), deposed: false, sync_standbys: None }
}

fn rec(uid: &str, generation: Option<u64>) -> Option<DbState> {
    Some(DbState { db_uid: uid.into(), generation, cluster_uid: Some("c1".into()), init_pending: false })
}

fn desired(db: Option<DesiredDb>, recorded: Option<DbState>) -> Desired {
    Desired { db, recorded, conf_hash: H, restricted_conf_hash: HR, use_pgrewind: true, automatic_pg_restart: false, reload_applies_conninfo: true, cluster_uid: "c1".into(), allow_reinit: false, boot_recorded: true }
}

fn stopped(data_dir: DataDir) -> Observed {
    Observed {
        data_dir,
        holds_data: data_dir == DataDir::Present,
        system_id: (data_dir == DataDir::Present).then(|| "sys1".to_string()),
        running: false,
        healthy: false,
        in_recovery: None,
        standby_signal: false,
        conf_on_disk: Some(H),
        conf_applied: None,
        pending_restart: false,
        repl_role_exists: None,
        slots: None,
        rewind_failed: false,
        in_sync_standbys: None,
    }
}

fn running_master() -> Observed {
    Observed {
        running: true,
        healthy: true,
        in_recovery: Some(false),
        conf_applied: Some(H),
        repl_role_exists: Some(true),
        slots: Some(slots(&["stolon_db2"])),
        ..stopped(DataDir::Present)
    }
}

fn running_standby() -> Observed {
    Observed { in_recovery: Some(true), standby_signal: true, repl_role_exists: Some(true), slots: None, ..running_master() }
}

fn record(generation: Option<u64>) -> Step {
    RecordDbState(DbState { db_uid: "db1".into(), generation, cluster_uid: Some("c1".into()), init_pending: false })
}

fn rec_of(uid: &str, cluster: Option<&str>, generation: Option<u64>) -> Option<DbState> {
    Some(DbState { db_uid: uid.into(), generation, cluster_uid: cluster.map(str::to_string), init_pending: false })
}

/// dbstate.json says initdb for db1 started (and may not have finished).
fn pending() -> Step {
    RecordDbState(DbState { db_uid: "db1".into(), generation: None, cluster_uid: Some("c1".into()), init_pending: true })
}

fn refuse(recorded: Option<DbState>, pg_data: bool) -> Vec<Step> {
    vec![Wait(WaitReason::WouldDestroyData { recorded, pg_data })]
}

fn allow_reinit(d: Desired) -> Desired {
    Desired { allow_reinit: true, ..d }
}

struct Case {
    name: &'static str,
    d: Desired,
    o: Observed,
    want: Vec<Step>,
}

fn cases() -> Vec<Case> {
    let converged = rec("db1", Some(3));
    let mut v = vec![
        Case { name: "no db, postgres stopped: nothing", d: desired(None, None), o: stopped(DataDir::Present), want: vec![] },
        Case { name: "no db, postgres running: stop it", d: desired(None, converged.clone()), o: running_master(), want: vec![Stop] },
        Case {
            name: "new master on an empty keeper",
            d: desired(Some(master(M::New)), None),
            o: stopped(DataDir::Missing),
            want: vec![pending(), InitDb, record(None), WriteConfig, Start, CreateReplicationRole],
        },
        Case {
            // Safety review §3: the clusterdata was lost and a sentinel created a new cluster.
            name: "new master over an old cluster's running db: refuse, touch nothing",
            d: desired(Some(master(M::New)), rec_of("olddb", Some("old-cluster"), Some(9))),
            o: running_standby(),
            want: refuse(rec_of("olddb", Some("old-cluster"), Some(9)), true),
        },
        Case {
            name: "new master over an old cluster's running db with --allow-reinit: stop, wipe, initdb",
            d: allow_reinit(desired(Some(master(M::New)), rec_of("olddb", Some("old-cluster"), Some(9)))),
            o: running_standby(),
            want: vec![Stop, pending(), RemoveDataDir, InitDb, record(None), WriteConfig, Start, CreateReplicationRole],
        },
        Case {
            name: "new master over PostgreSQL data and no dbstate.json: refuse",
            d: desired(Some(master(M::New)), None),
            o: stopped(DataDir::Present),
            want: refuse(None, true),
        },
        Case {
            name: "new master over a partial data dir holding PG_VERSION and no dbstate.json: refuse",
            d: desired(Some(master(M::New)), None),
            o: Observed { holds_data: true, ..stopped(DataDir::Partial) },
            want: refuse(None, true),
        },
        Case {
            name: "new master, empty data dir but the dbstate.json of another cluster: refuse",
            d: desired(Some(master(M::New)), rec_of("olddb", Some("old-cluster"), Some(2))),
            o: stopped(DataDir::Empty),
            want: refuse(rec_of("olddb", Some("old-cluster"), Some(2)), false),
        },
        Case {
            name: "new master, dbstate.json of an older keeper (no cluster uid) naming another db: refuse",
            d: desired(Some(master(M::New)), rec_of("olddb", None, Some(2))),
            o: stopped(DataDir::Missing),
            want: refuse(rec_of("olddb", None, Some(2)), false),
        },
        Case {
            name: "new master, dbstate.json of an earlier init attempt of this cluster, no data: initdb",
            d: desired(Some(master(M::New)), rec_of("db0", Some("c1"), None)),
            o: stopped(DataDir::Missing),
            want: vec![pending(), InitDb, record(None), WriteConfig, Start, CreateReplicationRole],
        },
        Case {
            name: "new master after an initdb interrupted by kill -9 (PG_VERSION, initdb pending): redo",
            d: desired(Some(master(M::New)), Some(DbState { init_pending: true, ..rec("db1", None).unwrap() })),
            o: Observed { holds_data: true, ..stopped(DataDir::Partial) },
            want: vec![pending(), RemoveDataDir, InitDb, record(None), WriteConfig, Start, CreateReplicationRole],
        },
        Case {
            name: "new master after an initdb killed before it wrote anything",
            d: desired(Some(master(M::New)), None),
            o: stopped(DataDir::Partial),
            want: vec![pending(), RemoveDataDir, InitDb, record(None), WriteConfig, Start, CreateReplicationRole],
        },
        Case {
            name: "resync over the data of another cluster: refuse",
            d: desired(Some(standby(M::Resync, src(Some("other"), true))), rec_of("olddb", Some("old-cluster"), Some(3))),
            o: stopped(DataDir::Present),
            want: refuse(rec_of("olddb", Some("old-cluster"), Some(3)), true),
        },
        Case {
            // Recovery of a lost clusterdata: the new cluster adopted another keeper's copy of
            // the same database (initMode existing); this keeper's copy rejoins as usual.
            name: "resync over another cluster's copy of the same database (same system id): rewind",
            d: desired(Some(standby(M::Resync, src(Some("sys1"), true))), rec_of("olddb", Some("old-cluster"), Some(3))),
            o: stopped(DataDir::Present),
            want: vec![Rewind, CreateStandbySignal, record(None), WriteConfig, Start],
        },
        Case {
            name: "resync over another cluster's data, local system id unknown: refuse",
            d: desired(Some(standby(M::Resync, src(Some("sys1"), true))), rec_of("olddb", Some("old-cluster"), Some(3))),
            o: Observed { system_id: None, ..stopped(DataDir::Present) },
            want: refuse(rec_of("olddb", Some("old-cluster"), Some(3)), true),
        },
        Case {
            name: "resync over the data of another cluster with --allow-reinit: basebackup",
            d: allow_reinit(desired(Some(standby(M::Resync, src(Some("other"), true))), rec_of("olddb", Some("old-cluster"), Some(3)))),
            o: stopped(DataDir::Present),
            want: vec![RemoveDataDir, BaseBackup, CreateStandbySignal, record(None), WriteConfig, Start],
        },
        Case {
            name: "converged db recorded by an older keeper (no cluster uid): record the cluster uid",
            d: desired(Some(master(M::None)), rec_of("db1", None, Some(3))),
            o: running_master(),
            want: vec![record(Some(3))],
        },
        Case {
            name: "new master already initialized: never initdb again",
            d: desired(Some(master(M::New)), converged.clone()),
            o: running_master(),
            want: vec![],
        },
        Case {
            name: "initialized master whose data dir vanished: report, no initdb",
            d: desired(Some(master(M::New)), converged.clone()),
            o: stopped(DataDir::Missing),
            want: vec![ReportDataDirMissing],
        },
        Case {
            name: "initMode none, data dir missing: report, no initdb",
            d: desired(Some(master(M::None)), None),
            o: stopped(DataDir::Missing),
            want: vec![ReportDataDirMissing],
        },
        Case {
            name: "standby, data dir emptied: copied again from its master",
            d: desired(Some(standby(M::None, src(Some("sys1"), true))), rec("db1", Some(2))),
            o: stopped(DataDir::Empty),
            want: vec![RemoveDataDir, BaseBackup, CreateStandbySignal, record(None), WriteConfig, Start],
        },
        Case {
            name: "master, data dir emptied: report, never initdb",
            d: desired(Some(DesiredDb { role: DbRole::Master, ..standby(M::None, src(Some("sys1"), true)) }), rec("db1", Some(2))),
            o: stopped(DataDir::Empty),
            want: vec![ReportDataDirMissing],
        },
        Case {
            name: "initMode none, unrecorded but healthy: adopt and record",
            d: desired(Some(master(M::None)), None),
            o: running_master(),
            want: vec![record(None), record(Some(3))],
        },
        Case {
            name: "initMode existing, stopped: adopt, configure, start",
            d: desired(Some(master(M::Existing)), None),
            o: Observed { conf_on_disk: None, ..stopped(DataDir::Present) },
            want: vec![record(None), WriteConfig, Start],
        },
        Case {
            name: "existing with a partial data dir: report, never wipe",
            d: desired(Some(master(M::Existing)), None),
            o: stopped(DataDir::Partial),
            want: vec![ReportDataDirMissing],
        },
        Case {
            name: "resync of the old master: stop, rewind, follow",
            d: desired(Some(standby(M::Resync, src(Some("sys1"), true))), rec("olddb", Some(5))),
            o: running_master(),
            want: vec![Stop, Rewind, CreateStandbySignal, record(None), WriteConfig, Start],
        },
        Case {
            name: "resync without usePgrewind: wipe and basebackup",
            d: Desired { use_pgrewind: false, ..desired(Some(standby(M::Resync, src(Some("sys1"), true))), None) },
            o: stopped(DataDir::Present),
            want: vec![RemoveDataDir, BaseBackup, CreateStandbySignal, record(None), WriteConfig, Start],
        },
        Case {
            name: "resync after a failed rewind: basebackup",
            d: desired(Some(standby(M::Resync, src(Some("sys1"), true))), None),
            o: Observed { rewind_failed: true, ..stopped(DataDir::Present) },
            want: vec![RemoveDataDir, BaseBackup, CreateStandbySignal, record(None), WriteConfig, Start],
        },
        Case {
            name: "resync from another system: basebackup",
            d: desired(Some(standby(M::Resync, src(Some("other"), true))), None),
            o: stopped(DataDir::Present),
            want: vec![RemoveDataDir, BaseBackup, CreateStandbySignal, record(None), WriteConfig, Start],
        },
        Case {
            name: "resync with an unknown source system id: rewind checks it itself",
            d: desired(Some(standby(M::Resync, src(None, true))), None),
            o: stopped(DataDir::Present),
            want: vec![Rewind, CreateStandbySignal, record(None), WriteConfig, Start],
        },
        Case {
            name: "new standby on an empty keeper: basebackup",
            d: desired(Some(standby(M::Resync, src(Some("sys1"), true))), None),
            o: stopped(DataDir::Missing),
            want: vec![BaseBackup, CreateStandbySignal, record(None), WriteConfig, Start],
        },
        Case {
            name: "resync from an external primary: no rewind possible",
            d: desired(Some(standby(M::Resync, src(None, false))), None),
            o: stopped(DataDir::Present),
            want: vec![RemoveDataDir, BaseBackup, CreateStandbySignal, record(None), WriteConfig, Start],
        },
        Case {
            name: "resync with no source address yet: wait, touch nothing",
            d: desired(Some(standby(M::Resync, None)), None),
            o: running_master(),
            want: vec![Wait(WaitReason::NoSource)],
        },
        Case {
            name: "initMode new for a standby: inconsistent, wait",
            d: desired(Some(standby(M::New, src(None, true))), None),
            o: stopped(DataDir::Missing),
            want: vec![Wait(WaitReason::InconsistentInitMode(M::New, DbRole::Standby))],
        },
        Case {
            name: "pitr: unsupported, wait",
            d: desired(Some(master(M::Pitr)), None),
            o: stopped(DataDir::Missing),
            want: vec![Wait(WaitReason::Unsupported(M::Pitr))],
        },
        Case { name: "converged master: nothing", d: desired(Some(master(M::None)), converged.clone()), o: running_master(), want: vec![] },
        Case {
            name: "master converged to an older generation: record the new one",
            d: desired(Some(master(M::None)), rec("db1", Some(2))),
            o: running_master(),
            want: vec![record(Some(3))],
        },
        Case {
            name: "elected standby: configure and promote",
            d: desired(Some(master(M::None)), converged.clone()),
            o: Observed { conf_on_disk: Some(1), conf_applied: Some(1), ..running_standby() },
            want: vec![WriteConfig, Reload, Promote],
        },
        Case {
            name: "elected while stopped as a standby: start, then promote (new timeline)",
            d: desired(Some(master(M::None)), converged.clone()),
            o: Observed { standby_signal: true, ..stopped(DataDir::Present) },
            want: vec![Start, Promote],
        },
        Case {
            name: "master crashed (kill -9 of all): start it",
            d: desired(Some(master(M::None)), converged.clone()),
            o: stopped(DataDir::Present),
            want: vec![Start],
        },
        Case {
            name: "master slots: create the missing, drop stale stolon_ ones, keep foreign ones",
            d: desired(Some(DesiredDb { slots: slots(&["stolon_db2", "stolon_db3", "backup"]), ..master(M::None) }), converged.clone()),
            o: Observed { slots: Some(slots(&["stolon_db2", "stolon_gone", "manual_slot"])), ..running_master() },
            want: vec![CreateSlot("backup".into()), CreateSlot("stolon_db3".into()), DropSlot("stolon_gone".into())],
        },
        Case {
            name: "master without its replication role",
            d: desired(Some(master(M::None)), converged.clone()),
            o: Observed { repl_role_exists: Some(false), ..running_master() },
            want: vec![CreateReplicationRole],
        },
        Case {
            name: "pgParameters changed: write and reload",
            d: desired(Some(master(M::None)), converged.clone()),
            o: Observed { conf_on_disk: Some(7), conf_applied: Some(7), ..running_master() },
            want: vec![WriteConfig, Reload],
        },
        Case {
            name: "keeper restarted next to a running postgres: reload once",
            d: desired(Some(master(M::None)), converged.clone()),
            o: Observed { conf_applied: None, ..running_master() },
            want: vec![Reload],
        },
        Case {
            name: "pending restart without automaticPgRestart: left to the operator",
            d: desired(Some(master(M::None)), converged.clone()),
            o: Observed { pending_restart: true, ..running_master() },
            want: vec![],
        },
        Case {
            name: "pending restart with automaticPgRestart: restart",
            d: Desired { automatic_pg_restart: true, ..desired(Some(master(M::None)), converged.clone()) },
            o: Observed { pending_restart: true, ..running_master() },
            want: vec![Restart],
        },
        Case {
            name: "master not answering yet: no SQL steps, no convergence claimed",
            d: desired(Some(master(M::None)), rec("db1", Some(2))),
            o: Observed { healthy: false, in_recovery: None, repl_role_exists: None, slots: None, ..running_master() },
            want: vec![],
        },
        Case {
            name: "converged standby: nothing",
            d: desired(Some(standby(M::None, src(Some("sys1"), true))), converged.clone()),
            o: running_standby(),
            want: vec![],
        },
        Case {
            name: "standby re-pointed to a new master: write and reload",
            d: desired(Some(standby(M::None, src(Some("sys1"), true))), converged.clone()),
            o: Observed { conf_on_disk: Some(1), conf_applied: Some(1), ..running_standby() },
            want: vec![WriteConfig, Reload],
        },
        Case {
            name: "standby re-pointed on PostgreSQL 12: write and restart",
            d: Desired { reload_applies_conninfo: false, ..desired(Some(standby(M::None, src(Some("sys1"), true))), converged.clone()) },
            o: Observed { conf_on_disk: Some(1), conf_applied: Some(1), ..running_standby() },
            want: vec![WriteConfig, Restart],
        },
        Case {
            name: "stopped standby: start it",
            d: desired(Some(standby(M::None, src(Some("sys1"), true))), converged.clone()),
            o: Observed { standby_signal: true, ..stopped(DataDir::Present) },
            want: vec![Start],
        },
        Case {
            name: "a running primary that clusterdata calls a standby: stop at once, rewind, follow",
            d: desired(Some(standby(M::None, src(Some("sys1"), true))), converged.clone()),
            o: running_master(),
            want: vec![Stop, Rewind, CreateStandbySignal, WriteConfig, Start],
        },
        Case {
            name: "a stopped ex-primary (no standby.signal) as a standby: rewind before starting",
            d: desired(Some(standby(M::None, src(Some("sys1"), true))), converged.clone()),
            o: stopped(DataDir::Present),
            want: vec![Rewind, CreateStandbySignal, WriteConfig, Start],
        },
        Case {
            name: "a running primary called standby with no source: stop (fence) and wait",
            d: desired(Some(standby(M::None, None)), converged.clone()),
            o: running_master(),
            want: vec![Stop, Wait(WaitReason::NoSource)],
        },
        Case {
            name: "a running standby with no source: leave it, wait",
            d: desired(Some(standby(M::None, None)), converged.clone()),
            o: running_standby(),
            want: vec![Wait(WaitReason::NoSource)],
        },
        Case {
            name: "standby in recovery without standby.signal: recreate it",
            d: desired(Some(standby(M::None, src(Some("sys1"), true))), converged.clone()),
            o: Observed { standby_signal: false, ..running_standby() },
            want: vec![CreateStandbySignal],
        },
        Case {
            name: "standby generation bumped (e.g. new followers): record",
            d: desired(Some(standby(M::None, src(Some("sys1"), true))), rec("db1", Some(1))),
            o: running_standby(),
            want: vec![record(Some(3))],
        },
    ];
    v.extend(safety::deposed_cases());
    v.extend(safety::restricted_cases());
    v.extend(safety::boot_cases());
    v.push(Case {
        name: "master with unknown slots (not answering as primary): no slot steps",
        d: desired(Some(master(M::None)), converged),
        o: Observed { slots: None, ..running_master() },
        want: vec![],
    });
    v
}

#[test]
fn table() {
    let cases = cases();
    assert!(cases.len() >= 25);
    let mut failures = Vec::new();
    for c in &cases {
        let got = plan(&c.d, &c.o);
        if got != c.want {
            failures.push(format!("{}:\n  want {:?}\n  got  {:?}", c.name, c.want, got));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

/// Every combination of mode, role, dbstate and data dir.
fn all_situations() -> Vec<(Desired, Observed)> {
    let modes = [M::None, M::New, M::Resync, M::Existing, M::Pitr];
    let data_dirs = [DataDir::Missing, DataDir::Empty, DataDir::Partial, DataDir::Present];
    let mut out = Vec::new();
    for mode in modes {
        for role in [DbRole::Master, DbRole::Standby] {
            for recorded in [None, rec("db1", None), rec("db1", Some(3)), rec("other", Some(1))] {
                for data_dir in data_dirs {
                    for running in [false, true] {
                        for in_recovery in [None, Some(false), Some(true)] {
                            let db = DesiredDb { role, ..standby(mode, src(Some("sys1"), true)) };
                            let o = Observed { running, in_recovery, healthy: in_recovery.is_some(), ..stopped(data_dir) };
                            out.push((desired(Some(db), recorded.clone()), o));
                        }
                    }
                }
            }
        }
    }
    out
}

#[test]
fn initdb_only_for_new_and_unrecorded() {
    for (d, o) in all_situations() {
        let steps = plan(&d, &o);
        if steps.contains(&InitDb) {
            let db = d.db.as_ref().unwrap();
            assert_eq!(db.init_mode, M::New, "initdb for {d:?} {o:?}");
            assert_ne!(d.recorded.as_ref().map(|r| r.db_uid.as_str()), Some("db1"), "initdb for a recorded db: {d:?} {o:?}");
        }
    }
}

#[test]
fn data_removed_only_for_new_resync_or_a_primary_turned_standby() {
    for (d, o) in all_situations() {
        if !plan(&d, &o).contains(&RemoveDataDir) {
            continue;
        }
        let db = d.db.as_ref().unwrap();
        let recorded = d.recorded.as_ref().is_some_and(|r| r.db_uid == db.uid);
        let fresh_copy = !recorded && matches!(db.init_mode, M::New | M::Resync);
        let primary_as_standby = recorded && db.role == DbRole::Standby && o.in_recovery != Some(true);
        let lost_standby = recorded && db.role == DbRole::Standby && o.data_dir != DataDir::Present && !o.running;
        assert!(fresh_copy || primary_as_standby || lost_standby, "data removed for {d:?} {o:?}");
    }
}

#[test]
fn missing_data_of_an_applied_db_is_reported_or_copied_again_never_recreated() {
    for (d, o) in all_situations() {
        let db = d.db.as_ref().unwrap();
        let recorded = d.recorded.as_ref().is_some_and(|r| r.db_uid == db.uid);
        if !recorded || o.data_dir == DataDir::Present {
            continue;
        }
        let steps = plan(&d, &o);
        assert!(!steps.contains(&InitDb), "{d:?} {o:?}");
        if db.role == DbRole::Standby && !o.running {
            // A standby is copied again from its master: it can only come back as a standby.
            assert!(steps.contains(&BaseBackup) && steps.contains(&CreateStandbySignal), "{steps:?} for {d:?} {o:?}");
        } else {
            assert_eq!(steps, vec![ReportDataDirMissing], "{d:?} {o:?}");
        }
    }
}

#[test]
fn resync_copies_before_starting_and_never_starts_a_primary_as_standby_unstopped() {
    for (d, o) in all_situations() {
        let steps = plan(&d, &o);
        let pos = |s: &Step| steps.iter().position(|x| x == s);
        if let (Some(copy), Some(stop)) = (pos(&BaseBackup).or(pos(&Rewind)), pos(&Stop)) {
            assert!(stop < copy, "copy before stop: {steps:?}");
        }
        let touch = steps.iter().position(|s| matches!(s, RemoveDataDir | Rewind | InitDb | BaseBackup));
        if let (true, Some(touch)) = (o.running, touch) {
            assert!(pos(&Stop).is_some_and(|stop| stop < touch), "touches the data of a running postgres: {steps:?}");
        }
    }
}

/// Steps that change nothing: waiting, and reporting what the keeper cannot fix itself.
fn changes_something(step: &Step) -> bool {
    !matches!(step, Wait(_) | ReportDataDirMissing)
}

/// Situations where postgres already is what clusterdata asks: the db recorded as converged at
/// its generation, the configuration written and applied, the role, the replication role and the
/// slots in place. Every spec switch is varied, since none of them may matter once converged.
fn converged_situations() -> Vec<(String, Desired, Observed)> {
    let mut out = vec![("no db, postgres stopped".to_string(), desired(None, None), stopped(DataDir::Present))];
    let slot_sets = [slots(&[]), slots(&["stolon_db2"]), slots(&["stolon_db2", "stolon_db3", "backup"])];
    let sources = [src(Some("sys1"), true), src(None, true), src(None, false)];
    for mode in [M::None, M::New, M::Resync, M::Existing, M::Pitr] {
        for (use_pgrewind, automatic_pg_restart, reload_applies_conninfo) in (0..8).map(|b| (b & 1 != 0, b & 2 != 0, b & 4 != 0)) {
            let spec = |db: DesiredDb| Desired { use_pgrewind, automatic_pg_restart, reload_applies_conninfo, ..desired(Some(db), rec("db1", Some(3))) };
            let flags = format!("{mode:?} usePgrewind={use_pgrewind} automaticPgRestart={automatic_pg_restart} reloadAppliesConninfo={reload_applies_conninfo}");
            // A setting waiting for a restart is the operator's call without automaticPgRestart.
            let pending = [false, !automatic_pg_restart];
            for want in &slot_sets {
                for foreign_slot in [false, true] {
                    for pending_restart in pending {
                        let mut present = want.clone();
                        if foreign_slot {
                            present.insert("manual_slot".to_string());
                        }
                        let d = spec(DesiredDb { slots: want.clone(), ..master(mode) });
                        let o = Observed { slots: Some(present.clone()), pending_restart, ..running_master() };
                        out.push((format!("master {flags} slots={present:?} pending_restart={pending_restart}"), d, o));
                    }
                }
            }
            for source in &sources {
                for pending_restart in pending {
                    let d = spec(standby(mode, source.clone()));
                    let o = Observed { pending_restart, ..running_standby() };
                    out.push((format!("standby {flags} source={source:?} pending_restart={pending_restart}"), d, o));
                }
            }
        }
    }
    out
}

#[test]
fn converged_situations_plan_no_change() {
    let situations = converged_situations();
    assert!(situations.len() > 100);
    for (name, d, o) in &situations {
        let steps = plan(d, o);
        assert!(!steps.iter().any(changes_something), "converged ({name}) but planned {steps:?}");
    }
}

/// Which converged situations a perturbation applies to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum For {
    NoDb,
    AnyDb,
    Master,
    Standby,
}

struct Perturbation {
    name: &'static str,
    applies: For,
    change: fn(&mut Desired, &mut Observed),
    /// What the plan must then do.
    want: fn(&[Step]) -> bool,
}

fn db_mut(d: &mut Desired) -> &mut DesiredDb {
    d.db.as_mut().unwrap()
}

fn perturbations() -> Vec<Perturbation> {
    let reapplies = |s: &[Step]| s.contains(&Reload) || s.contains(&Restart);
    vec![
        Perturbation { name: "no db, postgres running", applies: For::NoDb, change: |_, o| *o = running_master(), want: |s| s == [Stop] },
        Perturbation {
            name: "wanted configuration changed (conf hash differs)",
            applies: For::AnyDb,
            change: |d, _| d.conf_hash = 7,
            want: |s| s.contains(&WriteConfig) && (s.contains(&Reload) || s.contains(&Restart)),
        },
        Perturbation { name: "configuration on disk edited", applies: For::AnyDb, change: |_, o| o.conf_on_disk = Some(7), want: |s| s.contains(&WriteConfig) },
        Perturbation { name: "postgres runs an older configuration", applies: For::AnyDb, change: |_, o| o.conf_applied = Some(7), want: reapplies },
        Perturbation { name: "keeper restarted next to a running postgres", applies: For::AnyDb, change: |_, o| o.conf_applied = None, want: reapplies },
        Perturbation {
            name: "generation bumped",
            applies: For::AnyDb,
            change: |d, _| db_mut(d).generation = 4,
            want: |s| s == [record(Some(4))],
        },
        Perturbation {
            name: "pending restart with automaticPgRestart",
            applies: For::AnyDb,
            change: |d, o| {
                d.automatic_pg_restart = true;
                o.pending_restart = true;
            },
            want: |s| s.contains(&Restart),
        },
        Perturbation {
            name: "postgres stopped",
            applies: For::AnyDb,
            change: |_, o| *o = Observed { standby_signal: o.standby_signal, ..stopped(DataDir::Present) },
            want: |s| s.contains(&Start),
        },
        Perturbation { name: "a follower's slot is missing", applies: For::Master, change: |d, _| _ = db_mut(d).slots.insert("stolon_db9".into()), want: |s| s.contains(&CreateSlot("stolon_db9".into())) },
        Perturbation {
            name: "a stale stolon_ slot",
            applies: For::Master,
            change: |_, o| _ = o.slots.as_mut().unwrap().insert("stolon_gone".into()),
            want: |s| s.contains(&DropSlot("stolon_gone".into())),
        },
        Perturbation { name: "replication role missing", applies: For::Master, change: |_, o| o.repl_role_exists = Some(false), want: |s| s.contains(&CreateReplicationRole) },
        Perturbation {
            name: "elected while in recovery",
            applies: For::Master,
            change: |_, o| {
                o.in_recovery = Some(true);
                o.slots = None;
            },
            want: |s| s.contains(&Promote),
        },
        Perturbation { name: "standby.signal removed", applies: For::Standby, change: |_, o| o.standby_signal = false, want: |s| s.contains(&CreateStandbySignal) },
        Perturbation {
            name: "a standby out of recovery (acts as a primary)",
            applies: For::Standby,
            change: |_, o| o.in_recovery = Some(false),
            want: |s| s.first() == Some(&Stop) && (s.contains(&Rewind) || s.contains(&BaseBackup)),
        },
    ]
}

#[test]
fn one_change_away_from_converged_is_never_stable() {
    let mut applied = vec![0usize; perturbations().len()];
    for (name, d, o) in converged_situations() {
        for (i, p) in perturbations().iter().enumerate() {
            let role = d.db.as_ref().map(|db| db.role);
            let applies = match p.applies {
                For::NoDb => role.is_none(),
                For::AnyDb => role.is_some(),
                For::Master => role == Some(DbRole::Master),
                For::Standby => role == Some(DbRole::Standby),
            };
            if !applies {
                continue;
            }
            let (mut d, mut o) = (d.clone(), o.clone());
            (p.change)(&mut d, &mut o);
            let steps = plan(&d, &o);
            assert!(steps.iter().any(changes_something) && (p.want)(&steps), "{} from converged ({name}): planned {steps:?}", p.name);
            applied[i] += 1;
        }
    }
    for (p, n) in perturbations().iter().zip(applied) {
        assert!(n > 0, "perturbation {:?} applied to no converged situation", p.name);
    }
}
