//! Everything about the dbs around the master: forceFail clearing, dead keeper removal, standby
//! assignment and re-pointing, the master's `followers`, and clearing a converged db's initMode.
//!
//! - A force-failed keeper is cleared once its db is no longer the master (the failover rule ran
//!   before this one in the same pass).
//! - A keeper is removed with its dbs once its info has been gone for
//!   `deadKeeperRemovalInterval`; never the master's keeper nor a deposed master's, never one
//!   whose info is still published (it would be re-added at once).
//! - A db other than the master is dropped when its keeper is gone; when it is a deposed master
//!   and the new master is established (`deposed`); when its keeper has said for `failInterval`
//!   that its data dir is missing (for a db already created, initMode none); when, on fresh
//!   evidence, its WAL forked off the master's history (`timeline::forked`, and its walreceiver
//!   is not streaming); or when its keeper, alive, has not converged it within `syncTimeout`
//!   (initMode resync) or `convergenceTimeout`. The keeper then gets a new db and starts over
//!   (a new uid, because a keeper applies an initMode once per db uid).
//! - Every usable keeper without a db gets a standby db (new uid, initMode `resync`, following the
//!   master) while there are fewer than `maxStandbys` standbys; lowest keeper uid first.
//! - Standbys following anything but the master are re-pointed to it.
//! - A db converged (healthy at its generation) with an initMode other than `none` gets `none`,
//!   so a keeper that lost its state can never repeat an initdb over a live cluster (safety rule 4).

use super::ctx::Ctx;
use super::{deposed, timeline, Event};
use clusterview::data::{ClusterData, ClusterPhase, Db, DbInitMode, DbRole, DbSpec, DbStatus, FollowConfig, FollowType};

pub(super) fn step(cd: &mut ClusterData, ctx: &mut Ctx<'_>) {
    clear_force_fail(cd, ctx);
    remove_dead_keepers(cd, ctx);
    if cd.cluster.status.phase != ClusterPhase::Normal {
        return;
    }
    let Some(master) = cd.master_db().map(|db| db.uid.clone()) else { return };
    drop_unusable_dbs(cd, ctx, &master);
    repoint(cd, ctx, &master);
    assign(cd, ctx, &master);
    set_followers(cd, &master);
    clear_init_modes(cd, ctx);
}

fn master_keeper(cd: &ClusterData) -> Option<String> {
    cd.master_db().map(|db| db.spec.keeper_uid.clone())
}

fn clear_force_fail(cd: &mut ClusterData, ctx: &mut Ctx<'_>) {
    let master_keeper = master_keeper(cd);
    for keeper in cd.keepers.values_mut() {
        if keeper.status.force_fail && master_keeper.as_deref() != Some(keeper.uid.as_str()) {
            keeper.status.force_fail = false;
            ctx.push(Event::ForceFailCleared { keeper: keeper.uid.clone() });
        }
    }
}

fn remove_dead_keepers(cd: &mut ClusterData, ctx: &mut Ctx<'_>) {
    if ctx.in_grace() {
        return;
    }
    let master_keeper = master_keeper(cd);
    // A deposed master's keeper holds the data the cluster falls back on until the new master
    // is established: its db is not dropped with it.
    let deposed_keepers: Vec<String> = deposed::deposed(cd).map(|db| db.spec.keeper_uid.clone()).collect();
    let interval = ctx.spec().dead_keeper_removal_interval();
    let dead: Vec<String> = cd
        .keepers
        .keys()
        .filter(|uid| master_keeper.as_deref() != Some(uid.as_str()) && ctx.info(uid).is_none())
        .filter(|uid| !deposed_keepers.contains(uid))
        .filter(|uid| ctx.now().saturating_sub(ctx.obs.memory.keeper_last_change(uid)) > interval)
        .cloned()
        .collect();
    for uid in dead {
        cd.keepers.remove(&uid);
        let dbs: Vec<String> = cd.dbs.values().filter(|db| db.spec.keeper_uid == uid).map(|db| db.uid.clone()).collect();
        for db in &dbs {
            cd.dbs.remove(db);
        }
        ctx.push(Event::KeeperRemoved { keeper: uid, dbs });
    }
}

fn drop_unusable_dbs(cd: &mut ClusterData, ctx: &mut Ctx<'_>, master: &str) {
    let established = deposed::established(cd, ctx, master);
    let master_db = cd.dbs.get(master);
    let mut dropped = Vec::new();
    for db in cd.dbs.values().filter(|db| db.uid != master) {
        let keeper = db.spec.keeper_uid.as_str();
        let info = ctx.info(keeper);
        let why = if !cd.keepers.contains_key(keeper) {
            "keeper removed"
        } else if db.spec.role == DbRole::Master {
            // A deposed master holds the data the cluster falls back on until the new master is
            // established (`deposed`): only then does its keeper get a resync db.
            if !established {
                continue;
            }
            "deposed master"
        } else if db.spec.init_mode == DbInitMode::None
            && ctx.keeper_usable(cd, keeper)
            && info.is_some_and(|i| i.data_dir_missing)
            && ctx.obs.memory.data_dir_missing_for(keeper, ctx.now()).is_some_and(|d| d > ctx.fail_interval())
        {
            // One report may be a transient error reading the directory: only one that
            // persisted for failInterval means the data is gone.
            "data dir missing"
        } else if ctx.keeper_usable(cd, keeper)
            && !info.and_then(|i| i.postgres_state.as_ref()).is_some_and(|s| s.streaming)
            && master_db.is_some_and(|m| timeline::forked(m, db))
        {
            // It can never stream from the master again (a walreceiver that streams could not
            // have forked: then the position is only ahead of a delayed replay). A new db makes
            // its keeper rewind it, else copy it, from the master.
            "diverged from the master's timeline"
        } else if db.spec.role == DbRole::Standby && ctx.keeper_usable(cd, keeper) && ctx.convergence_overdue(db) {
            // Its keeper publishes but cannot bring it where it should be (a rewind or copy that
            // keeps failing): a new db makes the keeper start over with a fresh resync. A dead
            // keeper's db is left alone: it could act on a new one no more than on this one.
            if db.spec.init_mode == DbInitMode::Resync {
                "not converged within syncTimeout"
            } else {
                "not converged within convergenceTimeout"
            }
        } else {
            continue;
        };
        dropped.push((db.uid.clone(), keeper.to_string(), why));
    }
    for (db, keeper, why) in dropped {
        cd.dbs.remove(&db);
        ctx.push(Event::DbRemoved { keeper, db, why });
    }
}

fn repoint(cd: &mut ClusterData, ctx: &mut Ctx<'_>, master: &str) {
    let wanted = FollowConfig { kind: FollowType::Internal, db_uid: Some(master.to_string()) };
    for db in cd.dbs.values_mut().filter(|db| db.uid != master && db.spec.role == DbRole::Standby) {
        if db.spec.follow_config.as_ref() != Some(&wanted) {
            let from = db.spec.follow_config.as_ref().and_then(|f| f.db_uid.clone());
            db.spec.follow_config = Some(wanted.clone());
            ctx.push(Event::Repointed { db: db.uid.clone(), from, to: master.to_string() });
        }
    }
}

fn assign(cd: &mut ClusterData, ctx: &mut Ctx<'_>, master: &str) {
    let standbys = cd.dbs.values().filter(|db| db.spec.role == DbRole::Standby).count();
    let room = usize::from(ctx.spec().max_standbys()).saturating_sub(standbys);
    let without_db: Vec<String> = cd
        .keepers
        .keys()
        .filter(|uid| cd.db_of_keeper(uid).is_none() && ctx.keeper_usable(cd, uid))
        .take(room)
        .cloned()
        .collect();
    for keeper in without_db {
        let uid = ctx.fresh_uid(cd);
        cd.dbs.insert(uid.clone(), standby_db(&uid, &keeper, master, ctx));
        ctx.push(Event::StandbyAssigned { keeper, db: uid, follows: master.to_string() });
    }
}

fn standby_db(uid: &str, keeper: &str, master: &str, ctx: &Ctx<'_>) -> Db {
    Db {
        uid: uid.to_string(),
        generation: 1,
        change_time: ctx.obs.wall,
        spec: DbSpec {
            keeper_uid: keeper.to_string(),
            role: DbRole::Standby,
            init_mode: DbInitMode::Resync,
            follow_config: Some(FollowConfig { kind: FollowType::Internal, db_uid: Some(master.to_string()) }),
            followers: Vec::new(),
            synchronous_replication: false,
            synchronous_standbys: Vec::new(),
        },
        status: DbStatus::default(),
    }
}

fn set_followers(cd: &mut ClusterData, master: &str) {
    let followers: Vec<String> = cd
        .dbs
        .values()
        .filter(|db| db.uid != master && db.spec.role == DbRole::Standby)
        .filter(|db| db.spec.follow_config.as_ref().and_then(|f| f.db_uid.as_deref()) == Some(master))
        .map(|db| db.uid.clone())
        .collect();
    if let Some(db) = cd.dbs.get_mut(master) {
        db.spec.followers = followers;
    }
}

fn clear_init_modes(cd: &mut ClusterData, ctx: &mut Ctx<'_>) {
    for db in cd.dbs.values_mut() {
        let converged = db.status.healthy && db.status.current_generation == Some(db.generation);
        if db.spec.init_mode != DbInitMode::None && converged {
            db.spec.init_mode = DbInitMode::None;
            ctx.push(Event::InitModeCleared { db: db.uid.clone() });
        }
    }
}
