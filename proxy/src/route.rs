//! Where connections go, decided purely from clusterdata and keeper infos.
//!
//! Read-write: the elected master's advertised address, but only when this proxy is listed in
//! `proxy.spec.enabledProxies` and a master is published (`proxy.spec.masterDbUid`). Anything
//! else means "no master": refuse new connections and close the forwarded ones.
//!
//! Read-only: standby dbs that the sentinel considers healthy, whose keeper reports a streaming
//! walreceiver, and that lag the master by at most `maxStandbyLag` bytes. When none qualifies the
//! read-only port refuses connections (it never falls back to the master: a client of the
//! read-only port must never be able to write).

use clusterview::data::{ClusterData, DbRole};
use clusterview::info::KeeperInfo;
use std::collections::BTreeMap;

/// A postgres to forward to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Backend {
    pub db_uid: String,
    /// host:port, as advertised by the db's keeper.
    pub address: String,
}

/// The read-write target for proxy `uid`, if it may forward at all.
pub fn rw_target(cd: &ClusterData, uid: &str) -> Option<Backend> {
    if !cd.proxy.spec.enabled_proxies.iter().any(|p| p == uid) {
        return None;
    }
    let master_uid = cd.proxy.spec.master_db_uid.as_ref()?;
    let db = cd.dbs.get(master_uid)?;
    backend_of(db)
}

fn backend_of(db: &clusterview::data::Db) -> Option<Backend> {
    let host = db.status.listen_address.as_ref()?;
    let port = db.status.port?;
    let address = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    Some(Backend { db_uid: db.uid.clone(), address })
}

/// Standbys fit to serve reads, in db uid order.
pub fn ro_targets(cd: &ClusterData, keeper_infos: &BTreeMap<String, KeeperInfo>) -> Vec<Backend> {
    let max_lag = cd.cluster.spec.max_standby_lag();
    let master_pos = cd.master_xlog_pos(keeper_infos);
    cd.dbs
        .values()
        .filter(|db| db.spec.role == DbRole::Standby && db.status.healthy)
        .filter(|db| Some(&db.uid) != cd.cluster.status.master.as_ref())
        .filter(|db| {
            let Some(state) = keeper_infos.get(&db.spec.keeper_uid).and_then(|i| i.postgres_state.as_ref()) else {
                return false;
            };
            let in_recovery = state.role == Some(DbRole::Standby);
            let same_db = state.db_uid.as_deref() == Some(db.uid.as_str());
            let lag_ok = master_pos.is_some_and(|m| m.saturating_sub(state.xlog_pos) <= max_lag);
            state.healthy && in_recovery && same_db && state.streaming && lag_ok
        })
        .filter_map(backend_of)
        .collect()
}

#[cfg(test)]
#[path = "route_tests.rs"]
mod tests;
