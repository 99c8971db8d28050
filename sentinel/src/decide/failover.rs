//! Master failure and failover (docs/protocol.md "Failover and proxy fencing", steps 1 and 2).
//!
//! The master is failed when its keeper is force-failed, its keeper's info stopped changing for
//! `failInterval`, or its keeper has not reported it healthy for `failInterval`; never during the
//! grace window of a new term. The new master is the best *eligible* standby following it:
//! keeper usable and `canBeMaster != false`, data dir present, db healthy, not diverged from the
//! master's last known timeline history (`timeline`: a standby behind on an ancestor timeline is
//! fine), at most `maxStandbyLag` bytes behind the master's last known WAL position; highest WAL
//! position (received or replayed) wins, ties go to the lowest keeper uid. When the old master
//! ran with synchronous replication, only a db in its synchronous set qualifies: listed in its
//! `spec.synchronousStandbys` *and* known in sync in its `status.synchronousStandbys`, since a db
//! only just added to the spec may not have been waited for yet (safety rule 3); `maxStandbyLag` is
//! then ignored (a synchronous standby has received every acknowledged commit, whatever its
//! replay lag). With no eligible standby nothing changes: a bad election is worse than a failed
//! master.
//!
//! Electing: the cluster master moves to the new db and its synchronous set is the old master's
//! with the new master replaced by the old one (`sync::inherited_set`, as Stolon). The new db keeps role standby until the old master is stopped or
//! fenced (`deposed::step` then gives it role master, and its keeper promotes it); the old
//! master's db stays as it is, deposed, until the new master is established (`deposed`).
//! Re-pointing the other standbys and fencing the proxies follow from the `standbys` and `proxy`
//! rules of the same decision. When the failed master is one elected but never established, the
//! deposed master before it is elected again instead (`deposed::reelection`).

use super::ctx::Ctx;
use super::deposed::{self, Reelection};
use super::{sync, Event};
use clusterview::data::{ClusterData, ClusterPhase, Db, DbRole};

pub(super) fn step(cd: &mut ClusterData, ctx: &mut Ctx<'_>) {
    if cd.cluster.status.phase != ClusterPhase::Normal {
        return;
    }
    let Some(master) = cd.master_db() else { return };
    let Some(reason) = ctx.master_failure(cd, master) else { return };
    let (old_master, old_keeper) = (master.uid.clone(), master.spec.keeper_uid.clone());
    match deposed::reelection(cd, ctx, master) {
        Reelection::Elect(again) => {
            let new_keeper = cd.dbs.get(&again).map(|db| db.spec.keeper_uid.clone()).unwrap_or_default();
            cd.cluster.status.master = Some(again.clone());
            ctx.push(Event::Failover { old_master, old_keeper, new_master: again, new_keeper, reason });
            return;
        }
        Reelection::Wait { candidate, failing } => {
            ctx.push(Event::WaitingForOldMaster { new_master: candidate, old_masters: vec![failing] });
            return;
        }
        Reelection::None => {}
    }
    let Some(new_master) = best_standby(cd, ctx, master) else {
        ctx.push(Event::NoEligibleStandby { master: old_master, keeper: old_keeper, reason });
        return;
    };
    // The old master's db stays as it is (deposed); the new one is promoted by `deposed::step`.
    let old = master.clone();
    let Some(new) = cd.dbs.get_mut(&new_master) else { return };
    new.spec.synchronous_standbys = sync::inherited_set(&old.spec.synchronous_standbys, &old_master, &new_master);
    new.spec.synchronous_replication = old.spec.synchronous_replication;
    let new_keeper = new.spec.keeper_uid.clone();
    cd.cluster.status.master = Some(new_master.clone());
    ctx.push(Event::Failover { old_master, old_keeper, new_master, new_keeper, reason });
}

/// The eligible standby with the highest WAL position (ties: lowest keeper uid).
pub(super) fn best_standby(cd: &ClusterData, ctx: &Ctx<'_>, master: &Db) -> Option<String> {
    cd.dbs
        .values()
        .filter(|db| eligible(cd, ctx, master, db))
        .max_by(|a, b| {
            a.status.xlog_pos.cmp(&b.status.xlog_pos).then_with(|| b.spec.keeper_uid.cmp(&a.spec.keeper_uid))
        })
        .map(|db| db.uid.clone())
}

/// Whether `db` may replace the failed `master`.
pub(super) fn eligible(cd: &ClusterData, ctx: &Ctx<'_>, master: &Db, db: &Db) -> bool {
    if db.uid == master.uid || db.spec.role != DbRole::Standby {
        return false;
    }
    let follows_master = db.spec.follow_config.as_ref().and_then(|f| f.db_uid.as_deref()) == Some(master.uid.as_str());
    let keeper = db.spec.keeper_uid.as_str();
    let Some(info) = ctx.info(keeper) else { return false };
    let can_be_master = info.can_be_master.or(cd.keepers.get(keeper).and_then(|k| k.status.can_be_master));
    if !follows_master || can_be_master == Some(false) || info.data_dir_missing || !ctx.db_healthy(cd, db) {
        return false;
    }
    if super::timeline::diverged(&master.status, &db.status) {
        return false;
    }
    if master.spec.synchronous_replication {
        // Listed and known in sync (see `sync`): it confirmed every commit the master
        // acknowledged. Its position is not compared with the master's: it has *received*
        // everything acknowledged even when its replay lags (a promotion replays it), and a
        // lag limit could only leave the cluster without a master (as Stolon).
        let in_spec = master.spec.synchronous_standbys.contains(&db.uid);
        let in_status = master.status.synchronous_standbys.contains(&db.uid);
        return in_spec && in_status;
    }
    master.status.xlog_pos.saturating_sub(db.status.xlog_pos) <= ctx.spec().max_standby_lag()
}

