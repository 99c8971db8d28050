//! One look at the cluster per refresh, the way an operator would look: the clusterview from
//! `stolonctl status --format json` (who is master, each keeper's role, health and lag), and
//! SQL on each keeper's own postgres (rows in the demo table, in-recovery flag). Every probe is
//! bounded, so a dead or frozen keeper cannot stall the screen.
//!
//! [`Tracker`] turns changes between two looks (a new master, a keeper changing role) into
//! events for the screen.

use super::Events;
use futures::future::join_all;
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;
use stolon_tests::cluster::TestCluster;
use stolon_tests::postgres::query_i64;
use tokio::time::timeout;

/// Bound on connecting to one keeper's postgres and running both queries.
const PROBE_TIMEOUT: Duration = Duration::from_millis(800);

/// A keeper as the clusterview describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct KeeperStatus {
    /// "master", "standby", "none" (no db yet) or "master (deposed)".
    pub role: String,
    /// The sentinel's verdict, in words: "ok", "pg unhealthy", "unhealthy", plus ", silent" when
    /// the keeper is not publishing its state.
    pub health: String,
    /// Bytes of WAL behind the master (standbys only).
    pub lag: Option<u64>,
}

/// The parts of `stolonctl status --format json` the screen shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatusView {
    /// Uid of the keeper running the elected master.
    pub master: Option<String>,
    /// Uid of the sentinel leader.
    pub leader: Option<String>,
    /// By keeper uid.
    pub keepers: HashMap<String, KeeperStatus>,
}

/// Reads the clusterview through `stolonctl`; `None` when stolonctl fails (e.g. before init).
pub fn status(cluster: &TestCluster) -> Option<StatusView> {
    // stolonctl is a blocking subprocess; keep the runtime's other tasks (the writer) running.
    let json = tokio::task::block_in_place(|| cluster.status())?;
    Some(parse_status(&json))
}

/// Extracts a [`StatusView`] from the JSON document; missing fields read as absent.
pub fn parse_status(json: &Value) -> StatusView {
    let text = |v: &Value| v.as_str().map(str::to_string);
    let flag = |v: &Value| v.as_bool().unwrap_or(false);
    let keepers = json["keepers"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let sentinels = json["sentinels"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    StatusView {
        master: text(&json["cluster"]["master_keeper_uid"]),
        leader: sentinels
            .iter()
            .find(|s| flag(&s["leader"]))
            .and_then(|s| text(&s["uid"])),
        keepers: keepers
            .iter()
            .filter_map(|k| {
                let health = match (flag(&k["healthy"]), flag(&k["pg_healthy"])) {
                    (true, true) => "ok",
                    (true, false) => "pg unhealthy",
                    (false, _) => "unhealthy",
                };
                let silent = if flag(&k["active"]) { "" } else { ", silent" };
                let status = KeeperStatus {
                    role: text(&k["role"]).unwrap_or_else(|| "?".into()),
                    health: format!("{health}{silent}"),
                    lag: k["lag"].as_u64(),
                };
                Some((text(&k["uid"])?, status))
            })
            .collect(),
    }
}

/// What SQL on one keeper's postgres says; `None` where it did not answer.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Probe {
    /// `pg_is_in_recovery()`: a standby (or a master still being promoted).
    pub in_recovery: Option<bool>,
    /// `count(*)` of the demo table (absent before the writer created it).
    pub rows: Option<i64>,
}

/// Probes every keeper's postgres concurrently, in keeper order.
pub async fn probe_keepers(cluster: &TestCluster) -> Vec<Probe> {
    join_all((0..cluster.keepers.len()).map(|i| async move {
        timeout(PROBE_TIMEOUT, probe(cluster, i))
            .await
            .unwrap_or_default()
    }))
    .await
}

async fn probe(cluster: &TestCluster, i: usize) -> Probe {
    let Ok(client) = cluster.keeper_client(i).await else {
        return Probe::default();
    };
    let in_recovery = query_i64(&client, "SELECT pg_is_in_recovery()::int::bigint")
        .await
        .ok()
        .map(|v| v != 0);
    let rows = query_i64(&client, "SELECT count(*) FROM demo").await.ok();
    Probe { in_recovery, rows }
}

/// Remembers the last look to report what changed.
#[derive(Debug, Default)]
pub struct Tracker {
    /// Master keeper of the last look, once one was seen.
    master: Option<String>,
    /// Role of each keeper in the last look.
    roles: HashMap<String, String>,
}

impl Tracker {
    /// Pushes an event for a new master and for each keeper whose role changed.
    pub fn note(&mut self, view: &StatusView, events: &Events) {
        if view.master.is_some() && view.master != self.master {
            match (&self.master, &view.master) {
                (Some(old), Some(new)) => {
                    events.push(format!("FAILOVER: the master is now {new} (was {old})"))
                }
                (None, Some(new)) => events.push(format!("{new} is elected master")),
                _ => {}
            }
            self.master.clone_from(&view.master);
        }
        let mut uids: Vec<&String> = view.keepers.keys().collect();
        uids.sort();
        for uid in uids {
            let role = &view.keepers[uid].role;
            let old = self.roles.insert(uid.clone(), role.clone());
            // A new master's own change is already told by the master event above.
            let is_master = view.master.as_ref() == Some(uid) && role == "master";
            if old.as_ref().is_some_and(|old| old != role) && !is_master {
                events.push(format!("{uid} is now {role}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_roles_health_lag_and_leader() {
        let json = json!({
            "sentinels": [{"uid": "s0", "leader": false}, {"uid": "s1", "leader": true}],
            "keepers": [
                {"uid": "keeper0", "healthy": true, "pg_healthy": true, "role": "master", "lag": null, "active": true},
                {"uid": "keeper1", "healthy": false, "pg_healthy": false, "role": "standby", "lag": 42, "active": false},
            ],
            "cluster": {"master_keeper_uid": "keeper0"},
        });
        let view = parse_status(&json);
        assert_eq!(view.master.as_deref(), Some("keeper0"));
        assert_eq!(view.leader.as_deref(), Some("s1"));
        assert_eq!(
            view.keepers["keeper0"],
            KeeperStatus {
                role: "master".into(),
                health: "ok".into(),
                lag: None
            }
        );
        assert_eq!(view.keepers["keeper1"].health, "unhealthy, silent");
        assert_eq!(view.keepers["keeper1"].lag, Some(42));
    }

    #[test]
    fn tracker_reports_the_failover_once() {
        let events = Events::new();
        let mut tracker = Tracker::default();
        let keeper = |role: &str| KeeperStatus {
            role: role.into(),
            health: "ok".into(),
            lag: None,
        };
        let mut view = StatusView {
            master: Some("keeper0".into()),
            ..StatusView::default()
        };
        view.keepers.insert("keeper0".into(), keeper("master"));
        view.keepers.insert("keeper1".into(), keeper("standby"));
        tracker.note(&view, &events);
        view.master = Some("keeper1".into());
        view.keepers.insert("keeper0".into(), keeper("none"));
        view.keepers.insert("keeper1".into(), keeper("master"));
        tracker.note(&view, &events);
        tracker.note(&view, &events);
        let lines = events.recent();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(
            lines[1].ends_with("FAILOVER: the master is now keeper1 (was keeper0)"),
            "{lines:?}"
        );
        assert!(lines[2].ends_with("keeper0 is now none"), "{lines:?}");
    }
}
