//! The initializing phase: give the cluster its first db, then wait for it.
//!
//! - `initMode: new` (and `pitr`): pick a usable keeper with `canBeMaster != false`, lowest uid,
//!   and make it a master db with initMode `new` (`pitr`).
//! - `initMode: existing`: make `existingConfig.keeperUID`'s keeper the master with initMode
//!   `existing`, once that keeper publishes.
//!
//! The phase becomes `normal` once the db reports healthy at its generation. A db that does not
//! within `initTimeout` (counted from when this term first saw it) is dropped and another keeper
//! is picked in the same decision (the same keeper again only when it is the only candidate).

use super::ctx::Ctx;
use super::Event;
use clusterview::data::{ClusterData, ClusterPhase, Db, DbInitMode, DbRole, DbSpec, DbStatus};
use clusterview::spec::{ClusterRole, InitMode};

pub(super) fn step(cd: &mut ClusterData, ctx: &mut Ctx<'_>) {
    if cd.cluster.status.phase != ClusterPhase::Initializing {
        return;
    }
    if ctx.spec().role() == ClusterRole::Standby {
        // TODO: standby clusters (a master db following an external primary) are not supported yet.
        ctx.push(Event::Unsupported { what: "cluster role standby" });
        return;
    }
    let Some(mode) = ctx.spec().init_mode else {
        ctx.push(Event::InitWaiting { reason: "the cluster spec has no initMode".into() });
        return;
    };
    let mut exclude = None;
    if let Some(db) = cd.master_db() {
        if db.status.healthy && db.status.current_generation == Some(db.generation) {
            let (keeper, uid) = (db.spec.keeper_uid.clone(), db.uid.clone());
            cd.cluster.status.phase = ClusterPhase::Normal;
            ctx.push(Event::InitCompleted { keeper, db: uid });
            return;
        }
        let waited = ctx.now().saturating_sub(ctx.obs.memory.db_first_seen(&db.uid, ctx.now()));
        if waited <= ctx.spec().init_timeout() {
            return;
        }
        let (keeper, uid) = (db.spec.keeper_uid.clone(), db.uid.clone());
        cd.dbs.remove(&uid);
        cd.cluster.status.master = None;
        ctx.push(Event::InitTimedOut { keeper: keeper.clone(), db: uid });
        exclude = Some(keeper);
    }
    let picked = match mode {
        InitMode::New | InitMode::Pitr => pick_keeper(cd, ctx, exclude.as_deref()),
        InitMode::Existing => existing_keeper(cd, ctx),
    };
    let Some(keeper) = picked else { return };
    let db_mode = match mode {
        InitMode::New => DbInitMode::New,
        InitMode::Existing => DbInitMode::Existing,
        InitMode::Pitr => DbInitMode::Pitr,
    };
    let uid = ctx.fresh_uid(cd);
    cd.dbs.insert(uid.clone(), init_db(&uid, &keeper, db_mode, ctx));
    cd.cluster.status.master = Some(uid.clone());
    ctx.push(Event::InitStarted { keeper, db: uid, mode: db_mode });
}

/// The lowest-uid usable keeper that may be master, preferring any other than `exclude`.
fn pick_keeper(cd: &ClusterData, ctx: &mut Ctx<'_>, exclude: Option<&str>) -> Option<String> {
    let candidates: Vec<&String> = cd
        .keepers
        .keys()
        .filter(|uid| ctx.keeper_usable(cd, uid))
        .filter(|uid| ctx.info(uid).is_some_and(|info| info.can_be_master != Some(false)))
        .collect();
    let picked = candidates
        .iter()
        .find(|uid| Some(uid.as_str()) != exclude)
        .or_else(|| candidates.first())
        .map(|uid| uid.to_string());
    if picked.is_none() {
        ctx.push(Event::InitWaiting { reason: "no alive keeper that can be master".into() });
    }
    picked
}

/// The keeper named by `existingConfig.keeperUID`, once it is usable.
fn existing_keeper(cd: &ClusterData, ctx: &mut Ctx<'_>) -> Option<String> {
    let uid = ctx.spec().existing_config.as_ref().map(|c| c.keeper_uid.clone()).unwrap_or_default();
    if uid.is_empty() {
        ctx.push(Event::InitWaiting { reason: "initMode existing needs existingConfig.keeperUID".into() });
        return None;
    }
    if !ctx.keeper_usable(cd, &uid) {
        ctx.push(Event::InitWaiting { reason: format!("keeper {uid} (existingConfig.keeperUID) is not alive") });
        return None;
    }
    Some(uid)
}

fn init_db(uid: &str, keeper: &str, init_mode: DbInitMode, ctx: &Ctx<'_>) -> Db {
    Db {
        uid: uid.to_string(),
        generation: 1,
        change_time: ctx.obs.wall,
        spec: DbSpec {
            keeper_uid: keeper.to_string(),
            role: DbRole::Master,
            init_mode,
            follow_config: None,
            followers: Vec::new(),
            synchronous_replication: false,
            synchronous_standbys: Vec::new(),
        },
        status: DbStatus::default(),
    }
}
