//! The KeeperInfo the keeper publishes every sleepInterval, and the parsers it needs: WAL
//! positions (`16/B374D848`) and timeline history files (`pg_wal/00000002.history`).
//!
//! `postgresState.uid` / `generation` are what dbstate.json records as applied and converged, so
//! the sentinel never counts a db as converged before the keeper has finished with it.

use crate::config::KeeperConfig;
use crate::sql::PgStatus;
use crate::state::DbState;
use clusterview::data::{DbRole, TimelineHistoryEntry};
use clusterview::info::{KeeperInfo, PostgresState};
use std::path::Path;

/// A WAL position as PostgreSQL prints it (`X/Y`, both hex) to its 64-bit value.
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.trim().split_once('/')?;
    let hi = u64::from_str_radix(hi, 16).ok()?;
    let lo = u64::from_str_radix(lo, 16).ok()?;
    (hi <= u64::from(u32::MAX) && lo <= u64::from(u32::MAX)).then_some((hi << 32) | lo)
}

/// Parses a timeline history file: `<parent tli>\t<switch lsn>\t<reason>` per line, `#` comments.
pub fn parse_timeline_history(text: &str) -> Vec<TimelineHistoryEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let mut fields = l.splitn(3, char::is_whitespace).filter(|f| !f.is_empty());
            let timeline_id = fields.next()?.parse().ok()?;
            let switch_point = parse_lsn(fields.next()?)?;
            let reason = fields.next().unwrap_or_default().trim().to_string();
            Some(TimelineHistoryEntry { timeline_id, switch_point, reason })
        })
        .collect()
}

/// The history of timeline `tli` from `pg_wal/<TLI>.history` (none for timeline 1).
pub fn read_timeline_history(pgdata: &Path, tli: u32) -> Vec<TimelineHistoryEntry> {
    if tli <= 1 {
        return Vec::new();
    }
    let path = pgdata.join("pg_wal").join(format!("{tli:08X}.history"));
    std::fs::read_to_string(path).map(|t| parse_timeline_history(&t)).unwrap_or_default()
}

/// What goes into one publication besides the static config.
#[derive(Debug, Clone, Default)]
pub struct InfoInput<'a> {
    pub cluster_uid: Option<&'a str>,
    pub boot_uuid: &'a str,
    pub recorded: Option<&'a DbState>,
    pub data_dir_missing: bool,
    /// postgres' status when it answered, with the timeline history read from disk.
    pub pg: Option<(&'a PgStatus, Vec<TimelineHistoryEntry>)>,
}

/// Builds the KeeperInfo, with a fresh infoUID.
pub fn keeper_info(cfg: &KeeperConfig, input: InfoInput<'_>) -> KeeperInfo {
    // An initdb that has not finished has applied nothing: report no db until it has.
    let recorded = input.recorded.filter(|r| !r.init_pending);
    let mut state = PostgresState {
        db_uid: recorded.map(|r| r.db_uid.clone()),
        generation: recorded.and_then(|r| r.generation),
        ..Default::default()
    };
    if let Some((pg, history)) = input.pg {
        state.healthy = true;
        state.role = Some(if pg.in_recovery { DbRole::Standby } else { DbRole::Master });
        state.system_id = Some(pg.system_id.clone());
        state.timeline_id = pg.timeline_id;
        state.xlog_pos = pg.xlog_pos;
        state.timelines_history = history;
        state.synchronous_standbys = pg.synchronous_standbys.clone();
        state.streaming = pg.streaming;
        state.pg_parameters = pg.pg_parameters.clone();
    }
    KeeperInfo {
        info_uid: clusterview::new_info_uid(),
        uid: cfg.uid.clone(),
        cluster_uid: input.cluster_uid.map(str::to_string),
        boot_uuid: input.boot_uuid.to_string(),
        postgres_binary_version: Some(cfg.pg_version.clone()),
        pg_listen_address: cfg.advertise_address.clone(),
        pg_port: cfg.advertise_port,
        can_be_master: Some(cfg.can_be_master),
        can_be_synchronous_replica: Some(cfg.can_be_synchronous_replica),
        data_dir_missing: input.data_dir_missing,
        postgres_state: Some(state),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns() {
        assert_eq!(parse_lsn("0/0"), Some(0));
        assert_eq!(parse_lsn("16/B374D848"), Some((0x16 << 32) | 0xB374_D848));
        assert_eq!(parse_lsn("0/3000158"), Some(0x300_0158));
        assert_eq!(parse_lsn("nope"), None);
        assert_eq!(parse_lsn("1/"), None);
    }

    #[test]
    fn history_files() {
        let text = "1\t0/3000158\tno recovery target specified\n\n# comment\n2\t0/5000000\tat restore point \"x\"\n";
        let h = parse_timeline_history(text);
        assert_eq!(h.len(), 2);
        assert_eq!(h[0], TimelineHistoryEntry { timeline_id: 1, switch_point: 0x300_0158, reason: "no recovery target specified".into() });
        assert_eq!(h[1].timeline_id, 2);
        assert_eq!(h[1].reason, "at restore point \"x\"");
        assert!(parse_timeline_history("garbage\n").is_empty());
    }

    #[test]
    fn history_read_from_pg_wal() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("pg_wal")).unwrap();
        std::fs::write(dir.path().join("pg_wal/0000000A.history"), "9\t0/10\tx\n").unwrap();
        assert_eq!(read_timeline_history(dir.path(), 10).len(), 1);
        assert!(read_timeline_history(dir.path(), 1).is_empty());
        assert!(read_timeline_history(dir.path(), 3).is_empty());
    }

    #[test]
    fn info_reports_converged_db_and_advertised_address() {
        let mut cfg = crate::desired::tests::config("k1");
        cfg.advertise_address = "pg1.example".into();
        cfg.advertise_port = 6432;
        let rec = DbState { db_uid: "db1".into(), generation: Some(4), cluster_uid: None, init_pending: false };
        let pg = PgStatus { in_recovery: true, system_id: "77".into(), timeline_id: 2, xlog_pos: 99, streaming: true, ..Default::default() };
        let a = keeper_info(&cfg, InfoInput { boot_uuid: "b", recorded: Some(&rec), pg: Some((&pg, vec![])), ..Default::default() });
        let b = keeper_info(&cfg, InfoInput { boot_uuid: "b", recorded: Some(&rec), pg: None, data_dir_missing: true, ..Default::default() });
        assert_ne!(a.info_uid, b.info_uid);
        assert_eq!(a.pg_listen_address, "pg1.example");
        assert_eq!(a.pg_port, 6432);
        let s = a.postgres_state.unwrap();
        assert_eq!((s.db_uid.as_deref(), s.generation, s.healthy, s.role), (Some("db1"), Some(4), true, Some(DbRole::Standby)));
        assert_eq!((s.timeline_id, s.xlog_pos, s.streaming), (2, 99, true));
        assert!(b.data_dir_missing);
        assert!(!b.postgres_state.unwrap().healthy);
        // An initdb that has not finished is no db yet.
        let pending = DbState { init_pending: true, generation: None, ..rec };
        let c = keeper_info(&cfg, InfoInput { boot_uuid: "b", recorded: Some(&pending), ..Default::default() });
        assert_eq!(c.postgres_state.unwrap().db_uid, None);
    }
}
