//! Timelines: is a standby's WAL a prefix of the master's history, or did it fork off it?
//!
//! A promotion starts a new timeline that forks off its parent at the promoted db's end of WAL
//! (the *switch point*); `timelinesHistory` lists, for each ancestor timeline, where it ended. A
//! standby on timeline T at position P holds WAL the master does not have (it *diverged*, and can
//! never stream from the master again) when (Stolon's `isDifferentTimelineBranch`, plus the
//! "not in the history" case):
//! - T is later than the master's timeline;
//! - T is the master's timeline, but T forked off its parent at a different switch point (another
//!   branch that got the same number);
//! - T is an ancestor of the master's timeline, and P is past the point where the master's
//!   history left T;
//! - T is earlier than the master's timeline and not in its (known) history at all.
//!
//! Without history (timeline 1, or a keeper that did not report it) there is no evidence and the
//! standby is not called diverged. A standby behind the switch point on an ancestor timeline is
//! simply lagging: it follows the timeline switch once it streams.
//!
//! `diverged` judges two statuses as they are; `forked` adds the evidence the sentinel needs
//! before it acts on a standby (excludes it from the synchronous set, drops it): both statuses
//! fresh, and the master's taken after it became a primary.

use clusterview::data::{Db, DbRole, DbStatus};

/// The standby `db`'s WAL forked off `master`'s history (see the module comment).
pub(super) fn diverged(master: &DbStatus, db: &DbStatus) -> bool {
    let switch_point = |status: &DbStatus, timeline: u32| {
        status.timelines_history.iter().find(|h| h.timeline_id == timeline).map(|h| h.switch_point)
    };
    let (m, t) = (master.timeline_id, db.timeline_id);
    if t > m {
        return true;
    }
    if t == m {
        if t <= 1 {
            return false;
        }
        return match (switch_point(master, t - 1), switch_point(db, t - 1)) {
            (Some(a), Some(b)) => a != b,
            _ => false,
        };
    }
    match switch_point(master, t) {
        Some(left_at) => db.xlog_pos > left_at,
        // An earlier timeline the master's history does not list: another branch (postgres
        // history files list every ancestor). With no history known, no evidence.
        None => !master.timelines_history.is_empty(),
    }
}

/// `db`, a standby, diverged from `master`, on fresh evidence: both report healthy now (a db's
/// timeline and position are copied only from a healthy report on its uid) and the master has
/// converged to its current generation as a master, so its timeline is the one it has run on
/// since it promoted (not the one it reported as a standby a moment before).
pub(super) fn forked(master: &Db, db: &Db) -> bool {
    let master_fresh = master.spec.role == DbRole::Master
        && master.status.healthy
        && master.status.current_generation == Some(master.generation);
    let db_fresh = db.spec.role == DbRole::Standby && db.status.healthy && db.uid != master.uid;
    master_fresh && db_fresh && diverged(&master.status, &db.status)
}
