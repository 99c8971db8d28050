//! The proxy section: the fencing handshake of safety rule 2 and `enabledProxies`.
//!
//! 1. When the proxies forward to a db that is not the cluster master (a failover happened, or
//!    the phase is not normal), publish *no master* and no enabled proxies. This bumps
//!    `proxy.generation` (at the end of the decision).
//! 2. While no master is published, wait until every *active* proxy (info changed within its own
//!    advertised `proxyTimeout`) reports `generation >=` the published proxy generation, i.e.
//!    has closed its connections to the old master. A proxy silent for longer than its
//!    `proxyTimeout` has closed them by itself and is skipped. The master must also be ready:
//!    healthy, and converged to its generation or reporting itself a primary, and no deposed
//!    master left (it could still be elected again: see `deposed`). Then publish the
//!    master and `enabledProxies` = the active proxies. Never in the same decision that published
//!    "no master": that publication's generation has not reached any proxy yet. Nor during the
//!    first `proxyTimeout` of a term: proxies the new leader has never seen may still forward.
//! 3. While the master is published, `enabledProxies` follows the active proxies: a proxy that
//!    appears is added (a proxy not listed forwards nothing), one past its timeout is dropped.

use super::ctx::Ctx;
use super::{deposed, Event};
use clusterview::data::{ClusterData, ClusterPhase, Db, DbRole};
use clusterview::info::ProxyInfo;

pub(super) fn step(cd: &mut ClusterData, ctx: &mut Ctx<'_>) {
    let master = match cd.cluster.status.phase {
        ClusterPhase::Normal => cd.master_db().map(|db| db.uid.clone()),
        ClusterPhase::Initializing => None,
    };
    let published = cd.proxy.spec.master_db_uid.clone();
    match (published, master) {
        (Some(published), master) if Some(&published) != master.as_ref() => fence(cd, ctx),
        (Some(_), Some(_)) => follow_active(cd, ctx),
        (None, Some(master)) => publish(cd, ctx, master),
        (_, None) => {}
    }
}

/// Step 1: no master, nobody enabled.
fn fence(cd: &mut ClusterData, ctx: &mut Ctx<'_>) {
    cd.proxy.spec.master_db_uid = None;
    cd.proxy.spec.enabled_proxies.clear();
    ctx.push(Event::ProxiesFenced { generation: ctx.original.proxy.generation + 1 });
}

/// Step 2: publish the master once the active proxies acknowledged "no master".
fn publish(cd: &mut ClusterData, ctx: &mut Ctx<'_>, master: String) {
    // The "no master" publication of this very decision is not stored yet: wait for it.
    if cd.proxy.spec != ctx.original.proxy.spec {
        return;
    }
    // Ready: master in the stored clusterdata (not promoted by this very decision), healthy, and
    // either converged to its generation or reporting itself promoted (a later spec change, e.g.
    // a new follower, must not hold the publication back).
    let was_master = ctx.original.dbs.get(&master).is_some_and(|db| db.spec.role == DbRole::Master);
    let ready = was_master
        && cd.dbs.get(&master).is_some_and(|db| {
            let converged = db.status.current_generation == Some(db.generation);
            db.status.healthy && (converged || reports_promoted(ctx, db))
        });
    // While a deposed master is kept it may be elected again: the new master must not have
    // served a write through a proxy by then (`deposed`).
    if !ready || deposed::deposed(cd).next().is_some() {
        return;
    }
    // A new term cannot know the proxies it has not seen: one cut off from the store since before
    // this term may still forward until its proxyTimeout passes. Wait that long once per term.
    let term_wait = ctx.obs.memory.leader_since.saturating_add(ctx.spec().proxy_timeout());
    if ctx.now() <= term_wait {
        ctx.push(Event::WaitingForNewTerm { db: master });
        return;
    }
    let generation = ctx.original.proxy.generation;
    let active = ctx.active_proxies(cd);
    let pending: Vec<String> = active
        .iter()
        .filter(|uid| !acknowledged(ctx.obs.proxies.get(*uid), generation))
        .cloned()
        .collect();
    if !pending.is_empty() {
        ctx.push(Event::WaitingForProxies { db: master, generation, pending });
        return;
    }
    let enabled: Vec<String> = active.into_iter().collect();
    cd.proxy.spec.master_db_uid = Some(master.clone());
    cd.proxy.spec.enabled_proxies = enabled.clone();
    ctx.push(Event::MasterPublished { db: master, enabled_proxies: enabled });
}

/// Step 3: the enabled proxies are the active ones.
fn follow_active(cd: &mut ClusterData, ctx: &mut Ctx<'_>) {
    let active: Vec<String> = ctx.active_proxies(cd).into_iter().collect();
    let current = &cd.proxy.spec.enabled_proxies;
    if *current == active {
        return;
    }
    let added: Vec<String> = active.iter().filter(|p| !current.contains(p)).cloned().collect();
    let removed: Vec<String> = current.iter().filter(|p| !active.contains(p)).cloned().collect();
    cd.proxy.spec.enabled_proxies = active;
    ctx.push(Event::EnabledProxiesChanged { added, removed });
}

/// The db's keeper reports its postgres running as a primary for this db.
fn reports_promoted(ctx: &Ctx<'_>, db: &Db) -> bool {
    ctx.info(&db.spec.keeper_uid)
        .and_then(|info| info.postgres_state.as_ref())
        .is_some_and(|s| s.db_uid.as_deref() == Some(db.uid.as_str()) && s.role == Some(DbRole::Master))
}

fn acknowledged(info: Option<&ProxyInfo>, generation: u64) -> bool {
    info.and_then(|i| i.generation).is_some_and(|g| g >= generation)
}
