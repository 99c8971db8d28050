//! The deposed master (docs/protocol.md "Failover and proxy fencing"): what happens between the
//! failover write and the moment the new master is established.
//!
//! - The failover write keeps the old master's db as it was: role master, no longer
//!   `cluster.status.master`. That is what *deposed* means; its keeper stops postgres and waits,
//!   touching no data, so the old master can be elected again if the new one fails first.
//! - The elected db stays a standby (the cluster master, but role standby) until every deposed
//!   master is *stopped or fenced*; only then does it get role master, which makes its keeper
//!   promote it (`step`). Two primaries never run at once with both reachable.
//! - A deposed db is removed (its keeper then gets a resync db: rewind, else basebackup) only
//!   once the new master is *established*: role master in the stored clusterdata, healthy, and
//!   converged to its generation or reporting itself a primary. Proxies publish a master only
//!   when no deposed db is left, so the new master never served a write through a proxy while
//!   the old one is still electable.
//! - When the cluster master fails before it is established, the deposed master, if there is
//!   exactly one and its keeper still holds its data, is elected again (`reelection`), in async
//!   and sync mode alike: it has every write it acknowledged, and the failed one served none.
//!
//! *Stopped or fenced* is one of:
//! - its keeper published, after the deposition was stored, that its postgres is not running as
//!   a primary for that db;
//! - its keeper's `/primary` answers 200 only while the clusterdata it read within
//!   `min(failInterval, proxyTimeout)` names its db the master, and proxies are fenced already.
//!   The keeper's last read naming it the master was before the deposition was stored, and, for a
//!   silent keeper, at most one `sleepInterval` after its last published info. Once that window
//!   has passed since the earlier of the two, it is fenced.

use super::ctx::Ctx;
use super::Event;
use clusterview::data::{ClusterData, ClusterPhase, Db, DbInitMode, DbRole};
use clusterview::info::KeeperInfo;
use std::time::Duration;

/// Promotes the elected master once every deposed master is stopped or fenced.
pub(super) fn step(cd: &mut ClusterData, ctx: &mut Ctx<'_>) {
    if cd.cluster.status.phase != ClusterPhase::Normal {
        return;
    }
    let Some(master) = cd.master_db() else { return };
    if master.spec.role != DbRole::Standby {
        return;
    }
    let uid = master.uid.clone();
    let pending: Vec<String> = deposed(cd).filter(|db| !stopped_or_fenced(ctx, db)).map(|db| db.uid.clone()).collect();
    if !pending.is_empty() {
        ctx.push(Event::WaitingForOldMaster { new_master: uid, old_masters: pending });
        return;
    }
    // A db whose keeper cannot act now is not asked to promote: if that lasts, it is failed and
    // the old master elected again, which is simpler while it never became a primary.
    if !ctx.db_healthy(cd, master) {
        return;
    }
    let keeper = master.spec.keeper_uid.clone();
    let Some(new) = cd.dbs.get_mut(&uid) else { return };
    new.spec.role = DbRole::Master;
    new.spec.follow_config = None;
    new.spec.init_mode = DbInitMode::None;
    ctx.push(Event::MasterPromoted { db: uid, keeper });
}

/// Dbs with role master that are not the cluster master.
pub(super) fn deposed(cd: &ClusterData) -> impl Iterator<Item = &Db> {
    let master = cd.cluster.status.master.clone();
    cd.dbs.values().filter(move |db| db.spec.role == DbRole::Master && Some(&db.uid) != master.as_ref())
}

/// The cluster master `master` is established: no deposed master is needed any more. The same
/// test as the proxies' readiness to publish it: role master in the stored clusterdata, healthy,
/// and converged to its generation or reporting itself a primary (its keeper writes the
/// synchronous settings before it promotes, so a later spec change not applied yet, e.g. a new
/// follower, changes nothing here).
pub(super) fn established(cd: &ClusterData, ctx: &Ctx<'_>, master: &str) -> bool {
    let Some(db) = cd.dbs.get(master) else { return false };
    let was_master = ctx.original.dbs.get(master).is_some_and(|db| db.spec.role == DbRole::Master);
    let converged = db.status.current_generation == Some(db.generation);
    let reports_primary = ctx.info(&db.spec.keeper_uid).is_some_and(|info| runs_primary(info, master));
    was_master && db.spec.role == DbRole::Master && ctx.db_healthy(cd, db) && (converged || reports_primary)
}

/// What the failover rule does when the cluster master `failing` has failed.
pub(super) enum Reelection {
    /// Elect this deposed master again.
    Elect(String),
    /// The deposed master can be elected again once the failing master (a primary whose keeper
    /// went silent) has fenced itself: wait rather than elect a standby now.
    Wait { candidate: String, failing: String },
    /// No deposed master to elect: elect the best standby.
    None,
}

/// Whether the one deposed master can replace the failing cluster master (see module comment).
pub(super) fn reelection(cd: &ClusterData, ctx: &Ctx<'_>, failing: &Db) -> Reelection {
    let candidates: Vec<&Db> = deposed(cd).collect();
    // Several deposed masters: no single db is known to hold every acknowledged write.
    let [candidate] = candidates[..] else { return Reelection::None };
    if !reelectable(cd, ctx, candidate) {
        return Reelection::None;
    }
    let keeper = failing.spec.keeper_uid.as_str();
    // Never promoted, or promoted and now not running as a primary (its keeper, alive, will stop
    // it for good once it reads that it is deposed), or silent long enough to have fenced itself.
    let not_primary = ctx.info(keeper).is_some_and(|info| !runs_primary(info, &failing.uid));
    if failing.spec.role == DbRole::Standby || not_primary || fenced_by_silence(ctx, keeper, ctx.now()) {
        return Reelection::Elect(candidate.uid.clone());
    }
    if !ctx.keeper_alive(keeper) {
        return Reelection::Wait { candidate: candidate.uid.clone(), failing: failing.uid.clone() };
    }
    Reelection::None
}

/// A deposed master may be the master again: its keeper is usable, may be master, and still
/// holds that db's data (it did not start a resync: nothing was given to it).
fn reelectable(cd: &ClusterData, ctx: &Ctx<'_>, db: &Db) -> bool {
    let keeper = db.spec.keeper_uid.as_str();
    let Some(info) = ctx.info(keeper) else { return false };
    let can_be_master = info.can_be_master.or(cd.keepers.get(keeper).and_then(|k| k.status.can_be_master));
    let holds_data = info.postgres_state.as_ref().is_some_and(|s| s.db_uid.as_deref() == Some(db.uid.as_str()));
    ctx.keeper_usable(cd, keeper) && !info.data_dir_missing && holds_data && can_be_master != Some(false)
}

/// The deposed db `db` cannot be a reachable primary any more (see module comment).
fn stopped_or_fenced(ctx: &Ctx<'_>, db: &Db) -> bool {
    let keeper = db.spec.keeper_uid.as_str();
    // Deposed by the decision now running: stored no earlier than now.
    let deposed_at = ctx.obs.memory.db_deposed_since(&db.uid).unwrap_or(ctx.now());
    let reported_since = ctx.obs.memory.keeper_last_change(keeper) > deposed_at;
    if reported_since && ctx.info(keeper).is_some_and(|info| !runs_primary(info, &db.uid)) {
        return true;
    }
    fenced_by_silence(ctx, keeper, deposed_at)
}

/// The keeper's last clusterdata read naming its db the master was no later than `deposed_at`
/// and than one `sleepInterval` after its last published info; a keeper fences its `/primary`
/// `min(failInterval, proxyTimeout)` after such a read.
fn fenced_by_silence(ctx: &Ctx<'_>, keeper: &str, deposed_at: Duration) -> bool {
    let spec = ctx.spec();
    let last_info = ctx.obs.memory.keeper_last_change(keeper);
    let last_read = deposed_at.min(last_info.saturating_add(spec.sleep_interval()));
    let window = spec.fail_interval().min(spec.proxy_timeout());
    ctx.now() > last_read.saturating_add(window)
}

/// The keeper reports postgres running as a primary for `db_uid`.
fn runs_primary(info: &KeeperInfo, db_uid: &str) -> bool {
    info.postgres_state
        .as_ref()
        .is_some_and(|s| s.db_uid.as_deref() == Some(db_uid) && s.role == Some(DbRole::Master))
}
