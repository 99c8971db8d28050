//! The local demo behind `scripts/demo.sh`: a whole cluster of real processes (etcd, three
//! keepers, two sentinels, a proxy) started with the test harness's `TestCluster`, a client
//! inserting through the proxy, and a terminal table refreshed every second, so a newcomer can
//! `kill -9` the master from another terminal and watch the failover and the rejoin.
//!
//! These modules are compiled into the `stolon-demo` binary only (through `#[path]` from
//! `src/bin/stolon-demo.rs`), not into the harness library. Module map:
//! - [`writer`]: the client inserting one row every 100 ms through the proxy, with its counters.
//! - [`observe`]: one look at the cluster per refresh: `stolonctl status` and SQL on each keeper.
//! - [`screen`]: [`screen::Frame`], everything shown in one refresh, and the pure `render`.
//!
//! Also here: [`Events`], the short log of what happened (deaths, restarts, failovers, outages)
//! shown under the table.

pub mod observe;
pub mod screen;
pub mod writer;

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// How many events the screen shows.
const EVENTS_SHOWN: usize = 8;

/// Locks `mutex`, also when a panicking holder poisoned it: the demo's shared values are plain
/// counters and lines, valid after any partial update.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The most recent events, each stamped with the time since the demo started.
#[derive(Debug)]
pub struct Events {
    /// When the demo started: stamps are relative to it, easier to read than wall-clock times.
    start: Instant,
    /// The last [`EVENTS_SHOWN`] lines, oldest first.
    lines: Mutex<VecDeque<String>>,
}

impl Events {
    /// An empty log starting now.
    pub fn new() -> Events {
        Events {
            start: Instant::now(),
            lines: Mutex::new(VecDeque::new()),
        }
    }

    /// Appends `text`, dropping the oldest line beyond [`EVENTS_SHOWN`].
    pub fn push(&self, text: impl AsRef<str>) {
        let line = format!(
            "[{}] {}",
            screen::clock(self.start.elapsed()),
            text.as_ref()
        );
        let mut lines = lock(&self.lines);
        lines.push_back(line);
        while lines.len() > EVENTS_SHOWN {
            lines.pop_front();
        }
    }

    /// The lines to show, oldest first.
    pub fn recent(&self) -> Vec<String> {
        lock(&self.lines).iter().cloned().collect()
    }

    /// Time since the demo started.
    pub fn uptime(&self) -> std::time::Duration {
        self.start.elapsed()
    }
}
