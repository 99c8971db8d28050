//! Table tests of `plan` for the safety rules added after the safety review: a deposed master
//! (§7), no re-initialization over existing data (§3), the restricted pg_hba.conf of a restarted
//! synchronous master (§14c) and the bootUUID gate of a restarted keeper (§14e). The helpers
//! live in the parent module (`plan_tests.rs`).

use super::*;

fn deposed(init_mode: DbInitMode) -> DesiredDb {
    DesiredDb { deposed: true, ..master(init_mode) }
}

/// A master db that clusterdata no longer names as the cluster's master (CONTRACT with the
/// sentinel: the old master's db is kept until the new master has converged, so it can be
/// re-elected): stop postgres and wait, touching no data.
pub(super) fn deposed_cases() -> Vec<Case> {
    let converged = rec("db1", Some(3));
    vec![
        Case {
            name: "deposed master, running: fast shutdown and wait, no rewind, no copy",
            d: desired(Some(deposed(M::None)), converged.clone()),
            o: running_master(),
            want: vec![Stop, Wait(WaitReason::Deposed)],
        },
        Case {
            name: "deposed master, stopped: wait, never start",
            d: desired(Some(deposed(M::None)), converged.clone()),
            o: stopped(DataDir::Present),
            want: vec![Wait(WaitReason::Deposed)],
        },
        Case {
            name: "deposed while still in recovery (elected, then deposed before promoting): stop, no promote",
            d: desired(Some(deposed(M::None)), converged.clone()),
            o: running_standby(),
            want: vec![Stop, Wait(WaitReason::Deposed)],
        },
        Case {
            name: "deposed master whose config changed: no config written, no reload",
            d: Desired { conf_hash: 7, ..desired(Some(deposed(M::None)), converged.clone()) },
            o: running_master(),
            want: vec![Stop, Wait(WaitReason::Deposed)],
        },
        Case {
            name: "deposed master at an older generation: nothing recorded",
            d: desired(Some(deposed(M::None)), rec("db1", Some(1))),
            o: stopped(DataDir::Present),
            want: vec![Wait(WaitReason::Deposed)],
        },
        Case {
            name: "deposed new master never initialized: no initdb",
            d: desired(Some(deposed(M::New)), None),
            o: stopped(DataDir::Missing),
            want: vec![Wait(WaitReason::Deposed)],
        },
        Case {
            name: "deposed master, data dir missing: wait (nothing to report as master)",
            d: desired(Some(deposed(M::None)), converged.clone()),
            o: stopped(DataDir::Missing),
            want: vec![Wait(WaitReason::Deposed)],
        },
        Case {
            name: "deposed master made master again: started as the master",
            d: desired(Some(master(M::None)), converged),
            o: stopped(DataDir::Present),
            want: vec![Start],
        },
    ]
}

fn sync_master(in_sync: &[&str]) -> DesiredDb {
    DesiredDb { sync_standbys: Some(slots(in_sync)), ..master(M::None) }
}

/// Safety review §14c (Stolon's waitSyncStandbysSynced): a master (re)started with synchronous
/// replication on admits no client until its synchronous standbys are in sync, so no commit
/// made before the restart is read before a standby holds it.
pub(super) fn restricted_cases() -> Vec<Case> {
    let converged = rec("db1", Some(3));
    let restricted = Observed { conf_on_disk: Some(HR), conf_applied: Some(HR), in_sync_standbys: Some(slots(&[])), ..running_master() };
    vec![
        Case {
            name: "sync master found stopped: started with the restricted pg_hba",
            d: desired(Some(sync_master(&["db2"])), converged.clone()),
            o: stopped(DataDir::Present),
            want: vec![WriteRestrictedConfig, Start],
        },
        Case {
            name: "sync master elected while stopped as a standby: restricted start, promote",
            d: desired(Some(sync_master(&["db2"])), converged.clone()),
            o: Observed { standby_signal: true, ..stopped(DataDir::Present) },
            want: vec![WriteRestrictedConfig, Start, Promote],
        },
        Case {
            name: "restarted sync master, its standby not in sync yet: clients stay out (converged otherwise)",
            d: desired(Some(sync_master(&["db2"])), rec("db1", Some(2))),
            o: restricted.clone(),
            want: vec![record(Some(3))],
        },
        Case {
            name: "restarted sync master, in-sync standbys unknown: clients stay out",
            d: desired(Some(sync_master(&["db2"])), converged.clone()),
            o: Observed { in_sync_standbys: None, ..restricted.clone() },
            want: vec![],
        },
        Case {
            name: "restarted sync master, only some of its standbys in sync: clients stay out",
            d: desired(Some(sync_master(&["db2", "db3"])), converged.clone()),
            o: Observed { in_sync_standbys: Some(slots(&["db2"])), ..restricted.clone() },
            want: vec![],
        },
        Case {
            name: "restarted sync master, its standbys in sync again: full pg_hba, reload",
            d: desired(Some(sync_master(&["db2"])), converged.clone()),
            o: Observed { in_sync_standbys: Some(slots(&["db2", "db4"])), ..restricted.clone() },
            want: vec![WriteConfig, Reload],
        },
        Case {
            name: "restricted master whose synchronous replication was turned off: full pg_hba, reload",
            d: desired(Some(master(M::None)), converged.clone()),
            o: restricted.clone(),
            want: vec![WriteConfig, Reload],
        },
        Case {
            name: "sync master with no synchronous standby to wait for: started for clients",
            d: desired(Some(sync_master(&[])), converged.clone()),
            o: stopped(DataDir::Present),
            want: vec![Start],
        },
        Case {
            name: "running sync master (not restarted) whose standby fell out of sync: clients stay in",
            d: desired(Some(sync_master(&["db2"])), converged),
            o: Observed { in_sync_standbys: Some(slots(&[])), ..running_master() },
            want: vec![],
        },
    ]
}

fn restarted(d: Desired) -> Desired {
    Desired { boot_recorded: false, ..d }
}

/// Safety review §14e (Stolon keeper.go: the keeper waits for the sentinel to record its new
/// bootUUID): a restarted keeper does not act as a master on clusterdata written about its
/// previous incarnation (e.g. the master role just before it was failed over).
pub(super) fn boot_cases() -> Vec<Case> {
    let converged = rec("db1", Some(3));
    let wait = vec![Wait(WaitReason::BootUuidNotRecorded)];
    vec![
        Case {
            name: "restarted keeper, master db stopped, bootUUID not recorded yet: not started",
            d: restarted(desired(Some(master(M::None)), converged.clone())),
            o: stopped(DataDir::Present),
            want: wait.clone(),
        },
        Case {
            name: "restarted keeper, master db in recovery, bootUUID not recorded yet: not promoted",
            d: restarted(desired(Some(master(M::None)), converged.clone())),
            o: running_standby(),
            want: wait.clone(),
        },
        Case {
            name: "restarted keeper, primary still running, bootUUID not recorded yet: left as it is",
            d: restarted(desired(Some(master(M::None)), converged.clone())),
            o: Observed { conf_applied: None, ..running_master() },
            want: wait.clone(),
        },
        Case {
            name: "restarted keeper, new master db, bootUUID not recorded yet: no initdb",
            d: restarted(desired(Some(master(M::New)), None)),
            o: stopped(DataDir::Missing),
            want: wait,
        },
        Case {
            name: "restarted keeper, bootUUID recorded: the master is started",
            d: desired(Some(master(M::None)), converged.clone()),
            o: stopped(DataDir::Present),
            want: vec![Start],
        },
        Case {
            name: "restarted keeper of a standby, bootUUID not recorded yet: proceeds",
            d: restarted(desired(Some(standby(M::None, src(Some("sys1"), true))), converged.clone())),
            o: Observed { standby_signal: true, ..stopped(DataDir::Present) },
            want: vec![Start],
        },
        Case {
            name: "restarted keeper of a deposed master, bootUUID not recorded yet: still stopped",
            d: restarted(desired(Some(deposed(M::None)), converged)),
            o: running_master(),
            want: vec![Stop, Wait(WaitReason::Deposed)],
        },
    ]
}

#[test]
fn a_deposed_master_only_stops_and_waits() {
    for (d, o) in all_situations() {
        let Some(db) = d.db.clone().filter(|db| db.role == DbRole::Master) else { continue };
        let d = Desired { db: Some(DesiredDb { deposed: true, ..db }), ..d };
        let steps = plan(&d, &o);
        let want = if o.running { vec![Stop, Wait(WaitReason::Deposed)] } else { vec![Wait(WaitReason::Deposed)] };
        assert_eq!(steps, want, "{d:?} {o:?}");
    }
}

/// Safety review §3: without --allow-reinit, initdb never runs over PostgreSQL data (except the
/// remains of this db's own interrupted initdb), nor over a keeper that recorded a db of another
/// or an unknown cluster; nothing is copied over the data of another cluster.
#[test]
fn data_of_another_cluster_is_never_destroyed_without_allow_reinit() {
    let records = [
        None,
        Some(DbState { init_pending: true, ..rec("db1", None).unwrap() }),
        rec("db0", None),
        rec_of("old", Some("old-cluster"), Some(4)),
        rec_of("old", None, Some(4)),
    ];
    let mut refused = 0;
    for mode in [M::None, M::New, M::Resync, M::Existing] {
        for role in [DbRole::Master, DbRole::Standby] {
            for recorded in &records {
                for (data_dir, holds_data) in [(DataDir::Missing, false), (DataDir::Empty, false), (DataDir::Partial, false), (DataDir::Partial, true), (DataDir::Present, true)] {
                    for (running, in_recovery) in [(false, None), (true, Some(false)), (true, Some(true))] {
                        let db = DesiredDb { role, ..standby(mode, src(Some("other"), true)) };
                        let d = desired(Some(db), recorded.clone());
                        let o = Observed { running, in_recovery, holds_data, healthy: running, ..stopped(data_dir) };
                        let steps = plan(&d, &o);
                        let own_pending = recorded.as_ref().is_some_and(|r| r.db_uid == "db1" && r.init_pending);
                        let foreign = recorded.as_ref().is_some_and(|r| r.db_uid != "db1" && r.cluster_uid.as_deref() != Some("c1"));
                        if steps.contains(&InitDb) {
                            assert!(!foreign && (!holds_data || own_pending), "initdb over data: {d:?} {o:?}");
                        }
                        let copies = steps.iter().any(|s| matches!(s, RemoveDataDir | BaseBackup | Rewind));
                        let other_cluster = recorded.as_ref().is_some_and(|r| r.cluster_uid.as_deref() == Some("old-cluster"));
                        assert!(!(copies && other_cluster && holds_data), "copy over another cluster's data: {steps:?} for {d:?} {o:?}");
                        if steps.iter().any(|s| matches!(s, Wait(WaitReason::WouldDestroyData { .. }))) {
                            assert_eq!(steps.len(), 1, "a refusal touches nothing: {steps:?}");
                            refused += 1;
                            assert!(!plan(&allow_reinit(d.clone()), &o).iter().any(|s| matches!(s, Wait(_))), "--allow-reinit goes on: {d:?} {o:?}");
                        }
                    }
                }
            }
        }
    }
    assert!(refused > 0);
}

