//! The master's synchronous standbys (`spec.synchronousStandbys`), managed as Stolon does so that
//! every commit the master acknowledged is on each standby an election may pick (safety rule 3).
//!
//! - *Known in sync* (`status.synchronousStandbys` of the master) is what the master itself
//!   reported in sync (pg_stat_replication: `sync`/`quorum` and `streaming`), kept while the
//!   standby stays listed in the spec: the keeper makes every listed standby confirm each commit
//!   (`N (a, b)` with N = all of them), so nothing is acknowledged without it once it has caught
//!   up. Reports are folded in only when the master has applied its current spec.
//! - The set changes only while the master is healthy and has applied its spec, and only when
//!   every listed standby is known in sync. Listed standbys not in sync yet are waited for; one
//!   that fails meanwhile is dropped, leaving the ones in sync (never counted for an election,
//!   it cannot be missed).
//! - A new member is added *next to* the current ones (`[A]` -> `[A, B]`); A leaves only in a
//!   later change, once the master reports B in sync. At every instant some listed, known in sync
//!   standby holds every acknowledged commit.
//! - A member leaves after `failInterval` without a healthy, streaming report (`Ctx::
//!   sync_standby_failed`), when its keeper refuses (`canBeSynchronousReplica: false`), when its
//!   db is removed, or when there are more than `maxSynchronousStandbys`, the one furthest behind
//!   first. Failed members stay while fewer than `minSynchronousStandbys` would remain (they may
//!   come back, and the keeper pads the list with a fake standby anyway).
//! - Candidates (`can_be_sync`): a standby following the master, converged, healthy, streaming,
//!   on the master's timeline, whose keeper accepts being a synchronous replica; highest WAL
//!   position first. `canBeMaster` is not considered (see docs/protocol.md).
//! - On failover the new master inherits the old set with itself replaced by the old master
//!   (`inherited_set`), so it starts with as many names as the old one had.
//!
//! Disabling synchronous replication empties the set at once (nothing is promised any more).

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
    let wanted = if !wanted_on {
        Vec::new()
    } else if settled(cd, ctx, master) {
        next_set(cd, master, ctx)
    } else {
        current.clone()
    };
    if wanted != current {
        ctx.push(Event::SyncStandbysChanged { master: master_uid.clone(), from: current, to: wanted.clone() });
    }
    if let Some(master) = cd.dbs.get_mut(&master_uid) {
        master.spec.synchronous_replication = wanted_on;
        master.spec.synchronous_standbys = wanted;
        master.status.synchronous_standbys.retain(|uid| master.spec.synchronous_standbys.contains(uid));
    }
}

/// The master's known in-sync standbys after its keeper's report: the ones known before plus the
/// ones it `reported` in sync, limited to the ones listed in its spec. `applied`: the report was
/// made with the spec's current generation applied (an older report may describe a set the
/// sentinel has changed since).
pub(super) fn known_in_sync(spec_set: &[String], known: &[String], reported: &[String], applied: bool) -> Vec<String> {
    let mut out: Vec<String> = known.iter().filter(|uid| spec_set.contains(uid)).cloned().collect();
    if applied {
        out.extend(reported.iter().filter(|uid| spec_set.contains(uid) && !known.contains(uid)).cloned());
    }
    out.sort();
    out.dedup();
    out
}

/// The synchronous set of a new master: the old master's set with the new master replaced by the
/// old master (as Stolon does). The new master starts with as many names as the old one had, so
/// `minSynchronousStandbys` keeps holding, and the old master, once back as a standby, can be a
/// synchronous standby again at once.
pub(super) fn inherited_set(old_set: &[String], old_master: &str, new_master: &str) -> Vec<String> {
    let mut set: Vec<String> =
        old_set.iter().map(|uid| if uid == new_master { old_master.to_string() } else { uid.clone() }).collect();
    set.sort();
    set.dedup();
    set
}

/// The set may change: the master was already the master when this decision started, its keeper
/// had applied its spec, and it is healthy now. Otherwise its report says nothing reliable about
/// the set it runs with (a new master has not even promoted yet).
fn settled(cd: &ClusterData, ctx: &Ctx<'_>, master: &Db) -> bool {
    let was_master = ctx.original.cluster.status.master.as_deref() == Some(master.uid.as_str())
        && ctx.original.dbs.get(&master.uid).is_some_and(|db| db.spec.role == DbRole::Master);
    was_master && master.status.current_generation == Some(master.generation) && ctx.db_healthy(cd, master)
}

fn next_set(cd: &ClusterData, master: &Db, ctx: &mut Ctx<'_>) -> Vec<String> {
    let spec = ctx.spec();
    let max = usize::from(spec.max_synchronous_standbys());
    let min = usize::from(spec.min_synchronous_standbys());
    let listed = &master.spec.synchronous_standbys;
    let in_sync = &master.status.synchronous_standbys;
    let pending: Vec<&String> = listed.iter().filter(|uid| !in_sync.contains(uid)).collect();
    // Otherwise a standby not in sync yet failed: fall back to the ones in sync, so that another
    // can be added.
    if !pending.is_empty() && pending.iter().all(|uid| member_ok(cd, ctx, master, uid)) {
        ctx.push(Event::WaitingForSyncStandbys { master: master.uid.clone(), in_sync: in_sync.clone(), listed: listed.clone() });
        return listed.clone();
    }
    let previous: Vec<String> = in_sync.clone();
    let is_standby = |uid: &String| cd.dbs.get(uid).is_some_and(|db| db.uid != master.uid && db.spec.role == DbRole::Standby);

    let mut chosen: Vec<&Db> =
        previous.iter().filter(|uid| member_ok(cd, ctx, master, uid)).filter_map(|uid| cd.dbs.get(uid)).collect();
    chosen.sort_by(|a, b| best_first(a, b));
    chosen.truncate(max);
    let mut chosen: Vec<String> = chosen.into_iter().map(|db| db.uid.clone()).collect();

    let mut candidates: Vec<&Db> =
        cd.dbs.values().filter(|db| !chosen.contains(&db.uid) && can_be_sync(cd, ctx, master, db)).collect();
    candidates.sort_by(|a, b| best_first(a, b));
    for db in candidates {
        if chosen.len() >= max {
            break;
        }
        chosen.push(db.uid.clone());
    }
    // Too few: keep failed members (that still exist) rather than shrink below min.
    for uid in &previous {
        if chosen.len() >= min {
            break;
        }
        if !chosen.contains(uid) && is_standby(uid) {
            chosen.push(uid.clone());
        }
    }
    // Something new: keep every previous member until the master reports the new ones in sync.
    if chosen.iter().any(|uid| !previous.contains(uid)) {
        for uid in &previous {
            if !chosen.contains(uid) && is_standby(uid) {
                chosen.push(uid.clone());
            }
        }
    }
    chosen.sort();
    chosen
}

/// Highest WAL position first, ties to the lowest keeper uid.
fn best_first(a: &Db, b: &Db) -> std::cmp::Ordering {
    b.status.xlog_pos.cmp(&a.status.xlog_pos).then_with(|| a.spec.keeper_uid.cmp(&b.spec.keeper_uid))
}

/// A listed standby may stay: its db exists as a standby of this master, its keeper accepts
/// being a synchronous replica, and it has not failed for `failInterval`.
fn member_ok(cd: &ClusterData, ctx: &Ctx<'_>, master: &Db, uid: &str) -> bool {
    cd.dbs.get(uid).is_some_and(|db| {
        db.uid != master.uid && db.spec.role == DbRole::Standby && sync_allowed(cd, db) && !ctx.sync_standby_failed(cd, db)
    })
}

fn sync_allowed(cd: &ClusterData, db: &Db) -> bool {
    cd.keepers.get(&db.spec.keeper_uid).and_then(|k| k.status.can_be_synchronous_replica) != Some(false)
}

/// A standby that may be added to the set now: following the master, converged to its spec,
/// healthy, streaming, on the master's timeline, and its keeper accepts being a synchronous
/// replica.
fn can_be_sync(cd: &ClusterData, ctx: &Ctx<'_>, master: &Db, db: &Db) -> bool {
    let follows_master = db.spec.follow_config.as_ref().and_then(|f| f.db_uid.as_deref()) == Some(master.uid.as_str());
    let converged = db.status.current_generation == Some(db.generation);
    let streaming = ctx.info(&db.spec.keeper_uid).and_then(|i| i.postgres_state.as_ref()).is_some_and(|s| s.streaming);
    let same_timeline = db.status.timeline_id == master.status.timeline_id;
    // A standby whose WAL forked off the master's history can never acknowledge its commits
    // (`timeline::forked`).
    db.uid != master.uid
        && db.spec.role == DbRole::Standby
        && follows_master
        && converged
        && ctx.db_healthy(cd, db)
        && streaming
        && same_timeline
        && !super::timeline::forked(master, db)
        && sync_allowed(cd, db)
}
