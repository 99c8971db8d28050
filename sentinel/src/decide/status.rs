//! Keepers added to clusterdata as they appear, and the status parts of clusterdata copied from
//! the infos: keeper health and capabilities, db address, health and WAL position.
//!
//! A db's postgres facts (health, converged generation, system id, timeline, WAL position, sync
//! standbys in sync, folded in by `sync::known_in_sync`) are copied only when the keeper reports them for *that* db uid: a keeper assigned a
//! new db still reports its old data directory until it has resynced, and those facts must not
//! make the new db look electable. Address and port are the keeper's and are always copied.
//! When a keeper's info is missing, the last known facts stay (the master's last known timeline
//! and WAL position are what the election compares against) and only `healthy` drops.

use super::ctx::Ctx;
use super::{sync, Event};
use clusterview::data::{ClusterData, Keeper, KeeperStatus};

/// Applies the infos to `cd`'s keepers and dbs.
pub(super) fn refresh(cd: &mut ClusterData, ctx: &mut Ctx<'_>) {
    add_new_keepers(cd, ctx);
    refresh_keepers(cd, ctx);
    refresh_dbs(cd, ctx);
}

fn add_new_keepers(cd: &mut ClusterData, ctx: &mut Ctx<'_>) {
    for uid in ctx.obs.keepers.keys() {
        if !cd.keepers.contains_key(uid) {
            cd.keepers.insert(
                uid.clone(),
                Keeper { uid: uid.clone(), generation: 1, change_time: ctx.obs.wall, status: KeeperStatus::default() },
            );
            ctx.push(Event::KeeperAdded { keeper: uid.clone() });
        }
    }
}

fn refresh_keepers(cd: &mut ClusterData, ctx: &mut Ctx<'_>) {
    let uids: Vec<String> = cd.keepers.keys().cloned().collect();
    for uid in uids {
        let info = ctx.info(&uid);
        let force_fail = ctx.force_failed(cd, &uid);
        let alive = ctx.keeper_alive(&uid);
        let in_grace = ctx.in_grace();
        let Some(keeper) = cd.keepers.get_mut(&uid) else { continue };
        let status = &mut keeper.status;
        // Without an info during the grace window there is no evidence either way: keep the verdict.
        let healthy = if info.is_none() && in_grace { status.healthy } else { info.is_some() && alive && !force_fail };
        if status.healthy && !healthy {
            status.last_healthy_time = Some(ctx.obs.wall);
        }
        if status.healthy != healthy {
            status.healthy = healthy;
            ctx.push(Event::KeeperHealthChanged { keeper: uid.clone(), healthy });
        }
        if let Some(info) = info {
            status.boot_uuid = Some(info.boot_uuid.clone());
            status.can_be_master = info.can_be_master;
            status.can_be_synchronous_replica = info.can_be_synchronous_replica;
        }
    }
}

fn refresh_dbs(cd: &mut ClusterData, ctx: &mut Ctx<'_>) {
    let uids: Vec<String> = cd.dbs.keys().cloned().collect();
    for uid in uids {
        let Some(db) = cd.dbs.get(&uid) else { continue };
        let healthy = ctx.db_healthy(cd, db);
        let info = ctx.info(&db.spec.keeper_uid);
        let Some(db) = cd.dbs.get_mut(&uid) else { continue };
        let status = &mut db.status;
        status.healthy = healthy;
        let Some(info) = info else { continue };
        status.listen_address = Some(info.pg_listen_address.clone());
        status.port = Some(info.pg_port);
        let Some(state) = info.postgres_state.as_ref().filter(|s| s.db_uid.as_deref() == Some(uid.as_str())) else {
            continue;
        };
        status.current_generation = state.generation;
        // Postgres facts only from a postgres that answered: a keeper whose postgres is down or
        // whose data dir vanished reports zeros, and the last known timeline, WAL position and
        // synchronous set of a failed master are exactly what the failover decision needs.
        if !state.healthy || info.data_dir_missing {
            continue;
        }
        status.system_id = state.system_id.clone();
        status.timeline_id = state.timeline_id;
        status.xlog_pos = state.xlog_pos;
        status.timelines_history = state.timelines_history.clone();
        // In sync = what the master reports, kept while listed (see `sync`): a report that
        // misses a standby (its walsender reconnecting) does not make it less safe to elect.
        let reported: Vec<String> = state.synchronous_standbys.iter().map(|s| db_uid_of_standby_name(s)).collect();
        let applied = state.generation == Some(db.generation);
        status.synchronous_standbys =
            sync::known_in_sync(&db.spec.synchronous_standbys, &status.synchronous_standbys, &reported, applied);
    }
}

/// Keepers may report synchronous standbys by application name (`stolon_<db uid>`) or by db uid.
fn db_uid_of_standby_name(name: &str) -> String {
    name.strip_prefix("stolon_").unwrap_or(name).to_string()
}
