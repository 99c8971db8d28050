//! The master's synchronous standbys (cluster spec `synchronousReplication`).
//!
//! With synchronous replication on, the master db gets `synchronousReplication: true` and a set
//! of at most `maxSynchronousStandbys` standbys: the current members that are still healthy come
//! first (changing the set costs a reconfiguration and, on failover, only members are electable),
//! then other healthy standbys of keepers with `canBeSynchronousReplica != false`, highest WAL
//! position first. When fewer than `minSynchronousStandbys` are healthy, unhealthy current members
//! are kept to make up the number: the master then waits for them instead of acknowledging writes
//! that too few standbys hold (never shrink below the minimum). The set is stored sorted, so its
//! order never causes a generation bump by itself.
//!
//! With synchronous replication off, the master's flag is cleared and its set emptied.

use super::ctx::Ctx;
use super::Event;
use clusterview::data::{ClusterData, ClusterPhase, Db, DbRole};

pub(super) fn step(cd: &mut ClusterData, ctx: &mut Ctx<'_>) {
    if cd.cluster.status.phase != ClusterPhase::Normal {
        return;
    }
    let Some(master) = cd.master_db() else { return };
    let master_uid = master.uid.clone();
    let current = master.spec.synchronous_standbys.clone();
    let wanted_on = ctx.spec().synchronous_replication();
    let wanted = if wanted_on { choose(cd, master, &current, ctx) } else { Vec::new() };
    if wanted != current {
        ctx.push(Event::SyncStandbysChanged { master: master_uid.clone(), from: current, to: wanted.clone() });
    }
    if let Some(master) = cd.dbs.get_mut(&master_uid) {
        master.spec.synchronous_replication = wanted_on;
        master.spec.synchronous_standbys = wanted;
    }
}

fn choose(cd: &ClusterData, master: &Db, current: &[String], ctx: &Ctx<'_>) -> Vec<String> {
    let spec = ctx.spec();
    let max = usize::from(spec.max_synchronous_standbys());
    let min = usize::from(spec.min_synchronous_standbys());
    let good = |uid: &String| cd.dbs.get(uid).is_some_and(|db| can_be_sync(cd, master, db));

    let mut chosen: Vec<String> = current.iter().filter(|uid| good(uid)).take(max).cloned().collect();
    let mut others: Vec<&Db> =
        cd.dbs.values().filter(|db| !chosen.contains(&db.uid) && can_be_sync(cd, master, db)).collect();
    others.sort_by(|a, b| b.status.xlog_pos.cmp(&a.status.xlog_pos).then_with(|| a.spec.keeper_uid.cmp(&b.spec.keeper_uid)));
    for db in others {
        if chosen.len() >= max {
            break;
        }
        chosen.push(db.uid.clone());
    }
    // Too few healthy: keep the current members (that still exist) rather than shrink.
    for uid in current {
        if chosen.len() >= min {
            break;
        }
        if !chosen.contains(uid) && cd.dbs.get(uid).is_some_and(|db| db.uid != master.uid && db.spec.role == DbRole::Standby) {
            chosen.push(uid.clone());
        }
    }
    chosen.sort();
    chosen
}

/// A healthy standby following the master whose keeper accepts being a synchronous replica, and
/// whose WAL did not fork off the master's history (`timeline::forked`: it could never ack).
fn can_be_sync(cd: &ClusterData, master: &Db, db: &Db) -> bool {
    let follows_master = db.spec.follow_config.as_ref().and_then(|f| f.db_uid.as_deref()) == Some(master.uid.as_str());
    let allowed = cd.keepers.get(&db.spec.keeper_uid).and_then(|k| k.status.can_be_synchronous_replica) != Some(false);
    db.uid != master.uid && db.spec.role == DbRole::Standby && follows_master && db.status.healthy && allowed && !super::timeline::forked(master, db)
}
