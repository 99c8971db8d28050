//! `stolonctl status`: a view of the cluster built purely from what the store holds (clusterdata,
//! the live infos and the election leader), rendered as tables or as the JSON shape of README ("stolonctl").
//!
//! The view is built by `build`, a pure function, so its rules (who is "available", how lag is
//! computed, which keepers are listed) are table-tested without etcd.

use clusterview::data::{ClusterData, ClusterPhase, DbRole};
use clusterview::info::{KeeperInfo, ProxyInfo, SentinelInfo};
use clusterview::store::{InfoKind, Store, StoreError};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

#[derive(Debug, Serialize, PartialEq)]
pub struct Status {
    pub sentinels: Vec<SentinelView>,
    pub proxies: Vec<ProxyView>,
    pub keepers: Vec<KeeperView>,
    pub cluster: ClusterView,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct SentinelView {
    pub uid: String,
    pub leader: bool,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct ProxyView {
    pub uid: String,
    /// The proxy generation this proxy has applied (null before its first).
    pub generation: Option<u64>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct KeeperView {
    pub uid: String,
    /// Advertised postgres address, host:port.
    pub listen_address: Option<String>,
    /// The sentinel's verdict on the keeper.
    pub healthy: bool,
    /// The sentinel's verdict on the keeper's postgres.
    pub pg_healthy: bool,
    pub pg_wanted_generation: Option<u64>,
    pub pg_current_generation: Option<u64>,
    /// master, standby or none (no db assigned).
    pub role: String,
    pub db_uid: Option<String>,
    /// The keeper this keeper's db follows.
    pub follows: Option<String>,
    /// Bytes of WAL behind the master (standbys only, when both positions are known).
    pub lag: Option<u64>,
    /// The keeper is publishing infos right now.
    pub active: bool,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct ClusterView {
    pub uid: String,
    pub phase: String,
    /// A master db is elected and its postgres is healthy.
    pub available: bool,
    pub master_keeper_uid: Option<String>,
    pub master_db_uid: Option<String>,
    /// The db proxies forward to (may lag master_db_uid during the fencing handshake).
    pub proxy_master_db_uid: Option<String>,
    pub proxy_generation: u64,
}

/// Reads everything `build` needs; `None` when the cluster has no clusterdata.
pub async fn gather(store: &Store) -> Result<Option<Status>, StoreError> {
    let Some(cd) = store.get_cluster_data().await? else {
        return Ok(None);
    };
    let keepers: BTreeMap<String, KeeperInfo> = store.list_infos(InfoKind::Keeper).await?;
    let sentinels: BTreeMap<String, SentinelInfo> = store.list_infos(InfoKind::Sentinel).await?;
    let proxies: BTreeMap<String, ProxyInfo> = store.list_infos(InfoKind::Proxy).await?;
    let leader = store.leader().await?;
    Ok(Some(build(&cd.value, &keepers, &sentinels, &proxies, leader.as_deref())))
}

pub fn build(
    cd: &ClusterData,
    keeper_infos: &BTreeMap<String, KeeperInfo>,
    sentinel_infos: &BTreeMap<String, SentinelInfo>,
    proxy_infos: &BTreeMap<String, ProxyInfo>,
    leader: Option<&str>,
) -> Status {
    let mut sentinels: Vec<SentinelView> =
        sentinel_infos.keys().map(|uid| SentinelView { uid: uid.clone(), leader: Some(uid.as_str()) == leader }).collect();
    // A leader whose info expired (e.g. frozen) is still worth showing.
    if let Some(leader) = leader {
        if !sentinel_infos.contains_key(leader) {
            sentinels.push(SentinelView { uid: leader.to_string(), leader: true });
        }
    }
    let proxies = proxy_infos.values().map(|p| ProxyView { uid: p.uid.clone(), generation: p.generation }).collect();

    let master_db = cd.master_db();
    let master_pos = cd.master_xlog_pos(keeper_infos);
    let uids: BTreeSet<&String> = cd.keepers.keys().chain(keeper_infos.keys()).collect();
    let keepers = uids
        .into_iter()
        .map(|uid| {
            let info = keeper_infos.get(uid);
            let db = cd.db_of_keeper(uid);
            let is_master = db.is_some_and(|d| Some(&d.uid) == cd.cluster.status.master.as_ref());
            let role = match db.map(|d| d.spec.role) {
                None => "none",
                Some(DbRole::Master) if is_master => "master",
                Some(DbRole::Master) => "master (deposed)",
                Some(DbRole::Standby) => "standby",
            };
            let pos = info.and_then(|i| i.postgres_state.as_ref()).map(|s| s.xlog_pos).or(db.map(|d| d.status.xlog_pos));
            let lag = match (is_master, db.map(|d| d.spec.role), master_pos, pos) {
                (false, Some(DbRole::Standby), Some(m), Some(p)) => Some(m.saturating_sub(p)),
                _ => None,
            };
            let follows = db
                .and_then(|d| d.spec.follow_config.as_ref())
                .and_then(|f| f.db_uid.as_ref())
                .and_then(|followed| cd.dbs.get(followed))
                .map(|d| d.spec.keeper_uid.clone());
            KeeperView {
                uid: uid.clone(),
                listen_address: info
                    .map(|i| format!("{}:{}", i.pg_listen_address, i.pg_port))
                    .or_else(|| db.and_then(|d| Some(format!("{}:{}", d.status.listen_address.as_ref()?, d.status.port?)))),
                healthy: cd.keepers.get(uid).is_some_and(|k| k.status.healthy),
                pg_healthy: db.is_some_and(|d| d.status.healthy),
                pg_wanted_generation: db.map(|d| d.generation),
                pg_current_generation: db.and_then(|d| d.status.current_generation),
                role: role.to_string(),
                db_uid: db.map(|d| d.uid.clone()),
                follows,
                lag,
                active: info.is_some(),
            }
        })
        .collect();

    let cluster = ClusterView {
        uid: cd.cluster.uid.clone(),
        phase: match cd.cluster.status.phase {
            ClusterPhase::Initializing => "initializing".into(),
            ClusterPhase::Normal => "normal".into(),
        },
        available: master_db.is_some_and(|db| db.status.healthy),
        master_keeper_uid: master_db.map(|db| db.spec.keeper_uid.clone()),
        master_db_uid: master_db.map(|db| db.uid.clone()),
        proxy_master_db_uid: cd.proxy.spec.master_db_uid.clone(),
        proxy_generation: cd.proxy.generation,
    };
    Status { sentinels, proxies, keepers, cluster }
}

/// Aligned columns with a header row.
fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        padded.join("  ").trim_end().to_string()
    };
    let _ = writeln!(out, "{}", line(header.to_vec()));
    for row in rows {
        let _ = writeln!(out, "{}", line(row.iter().map(String::as_str).collect()));
    }
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(ToString::to_string).unwrap_or_else(|| "-".into())
}

pub fn render_text(status: &Status) -> String {
    let mut out = String::new();
    let c = &status.cluster;
    let _ = writeln!(out, "=== Cluster ===");
    let _ = writeln!(out, "uid: {}   phase: {}   available: {}", c.uid, c.phase, if c.available { "yes" } else { "NO" });
    let _ = writeln!(
        out,
        "master: keeper {} (db {})   proxies forward to db {} (proxy generation {})",
        opt(&c.master_keeper_uid),
        opt(&c.master_db_uid),
        opt(&c.proxy_master_db_uid),
        c.proxy_generation
    );

    let _ = writeln!(out, "\n=== Sentinels ===");
    let rows: Vec<Vec<String>> = status
        .sentinels
        .iter()
        .map(|s| vec![s.uid.clone(), if s.leader { "yes".into() } else { "no".into() }])
        .collect();
    table(&mut out, &["UID", "LEADER"], &rows);

    let _ = writeln!(out, "\n=== Proxies ===");
    let rows: Vec<Vec<String>> = status.proxies.iter().map(|p| vec![p.uid.clone(), opt(&p.generation)]).collect();
    table(&mut out, &["UID", "GENERATION"], &rows);

    let _ = writeln!(out, "\n=== Keepers ===");
    let rows: Vec<Vec<String>> = status
        .keepers
        .iter()
        .map(|k| {
            let marker = if k.role == "master" { "* " } else { "  " };
            vec![
                format!("{marker}{}", k.uid),
                k.role.clone(),
                opt(&k.listen_address),
                yes_no(k.healthy),
                yes_no(k.pg_healthy),
                format!("{}/{}", opt(&k.pg_current_generation), opt(&k.pg_wanted_generation)),
                opt(&k.follows),
                k.lag.map(format_bytes).unwrap_or_else(|| "-".into()),
                yes_no(k.active),
            ]
        })
        .collect();
    table(
        &mut out,
        &["  UID", "ROLE", "PG ADDRESS", "HEALTHY", "PG HEALTHY", "GEN (CUR/WANT)", "FOLLOWS", "LAG", "ACTIVE"],
        &rows,
    );
    out
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

fn format_bytes(b: u64) -> String {
    match b {
        b if b >= 1 << 30 => format!("{:.1}GiB", b as f64 / f64::from(1u32 << 30)),
        b if b >= 1 << 20 => format!("{:.1}MiB", b as f64 / f64::from(1u32 << 20)),
        b if b >= 1 << 10 => format!("{:.1}KiB", b as f64 / 1024.0),
        b => format!("{b}B"),
    }
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
