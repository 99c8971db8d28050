//! Which standbys a master may report *in sync*: the ones that hold every commit it ever
//! acknowledged, not merely the ones `pg_stat_replication` marks `sync`.
//!
//! `sync_state = 'sync'` (and `state = 'streaming'`) says that the master waits for the standby
//! *from now on*. It says nothing about the commits acknowledged before the standby was listed:
//! those waited only for the standbys listed then. When the sentinel grows the set from `[A]` to
//! `[A, B]` and later drops A, B must already hold what A alone confirmed, or a failover to B
//! loses it (the scenario of safety review §1 with a live but lagging B).
//!
//! So each listed standby is confirmed only once its flushed position has reached the master's
//! WAL position *when this keeper first saw it listed in sync* (without interruption). Every
//! commit acknowledged before that moment ends at or below that position (it was flushed), and
//! every commit after it waited for the standby itself. The first sighting after a keeper restart
//! starts the clock again, which can only delay a confirmation, never make one early.

use std::collections::BTreeMap;

/// The standbys seen listed in sync, each with the master's position when first seen so.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncConfirmations {
    since: BTreeMap<String, u64>,
}

impl SyncConfirmations {
    /// Folds in one observation of the master: its current WAL position and the standbys
    /// `pg_stat_replication` lists in sync with their flushed positions. Returns the db uids
    /// confirmed in sync, sorted.
    pub fn confirm(&mut self, master_pos: u64, listed: &[(String, u64)]) -> Vec<String> {
        self.since.retain(|uid, _| listed.iter().any(|(l, _)| l == uid));
        let mut confirmed: Vec<String> = listed
            .iter()
            .filter(|(uid, flushed)| *flushed >= *self.since.entry(uid.clone()).or_insert(master_pos))
            .map(|(uid, _)| uid.clone())
            .collect();
        confirmed.sort();
        confirmed.dedup();
        confirmed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(rows: &[(&str, u64)]) -> Vec<(String, u64)> {
        rows.iter().map(|(u, p)| (u.to_string(), *p)).collect()
    }

    #[test]
    fn a_standby_is_confirmed_once_it_flushed_what_the_master_had_when_it_was_listed() {
        let mut c = SyncConfirmations::default();
        // B is listed in sync at master position 1000 but has flushed only 900: the commits
        // between 900 and 1000 were confirmed by A alone.
        assert_eq!(c.confirm(1000, &listed(&[("a", 1000), ("b", 900)])), vec!["a"]);
        // Writes go on; B catches up past 1000 (not past the current 1500): confirmed.
        assert_eq!(c.confirm(1500, &listed(&[("a", 1500), ("b", 1001)])), vec!["a", "b"]);
        // It stays confirmed while listed, even while it lags the current position.
        assert_eq!(c.confirm(3000, &listed(&[("a", 3000), ("b", 1200)])), vec!["a", "b"]);
    }

    #[test]
    fn a_standby_that_drops_out_of_the_list_starts_over() {
        let mut c = SyncConfirmations::default();
        assert_eq!(c.confirm(100, &listed(&[("b", 100)])), vec!["b"]);
        // Its walsender reconnects: not listed for one observation.
        assert_eq!(c.confirm(500, &listed(&[])), Vec::<String>::new());
        // Listed again at 800 with 600 flushed: not confirmed until it reaches 800.
        assert_eq!(c.confirm(800, &listed(&[("b", 600)])), Vec::<String>::new());
        assert_eq!(c.confirm(900, &listed(&[("b", 800)])), vec!["b"]);
    }

    #[test]
    fn an_idle_master_confirms_a_caught_up_standby_at_once() {
        let mut c = SyncConfirmations::default();
        assert_eq!(c.confirm(42, &listed(&[("b", 42), ("c", 41)])), vec!["b"]);
    }
}
