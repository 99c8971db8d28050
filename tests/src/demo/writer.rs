//! The demo's client: inserts one row through the proxy every 100 ms, as an application would,
//! and opens a new connection after any error (the proxy closes every connection to a master
//! that is no longer elected, so a failover shows up here as a few failed inserts).
//!
//! It counts attempts, acknowledged inserts and failures. An outage runs from the first failed
//! insert after a success to the next success; failures before the very first success are the
//! cluster starting up, not an outage.

use super::{lock, Events};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use stolon_tests::cluster::SU_PASSWORD;
use stolon_tests::postgres::connect;
use tokio::time::{timeout, MissedTickBehavior};
use tokio_postgres::Client;

/// One insert per this period.
pub const INSERT_EVERY: Duration = Duration::from_millis(100);
/// Bound on connecting (and creating the table); a frozen proxy or master must not stall us.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on one insert: with synchronous replication an insert waits for a standby.
const INSERT_TIMEOUT: Duration = Duration::from_secs(2);
/// The demo table; `bigserial` so that no client-side id has to survive a failover.
const CREATE_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS demo (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())";
const INSERT: &str = "INSERT INTO demo DEFAULT VALUES";

/// The writer's counters, read by the screen every refresh.
#[derive(Debug, Clone, Default)]
pub struct WriterStats {
    /// Inserts tried (including those that could not even connect).
    pub attempts: u64,
    /// Inserts the server acknowledged (committed).
    pub acked: u64,
    /// Inserts that failed or timed out; a timed-out one may still have committed.
    pub failures: u64,
    /// Start of the current outage, if writes are failing after having worked.
    pub failing_since: Option<Instant>,
    /// The last error, shown while writes fail.
    pub last_error: Option<String>,
    /// Length of the last finished outage.
    pub last_outage: Option<Duration>,
}

/// Inserts through the proxy on 127.0.0.1:`port` forever; stopped by aborting its task.
pub async fn run(port: u16, stats: Arc<Mutex<WriterStats>>, events: Arc<Events>) {
    let mut client = None;
    let mut ticker = tokio::time::interval(INSERT_EVERY);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let result = insert(&mut client, port).await;
        record(&mut lock(&stats), result, Instant::now(), &events);
    }
}

/// One insert on `client`, connecting first if there is none; the connection is kept only
/// while it works.
async fn insert(client: &mut Option<Client>, port: u16) -> Result<(), String> {
    let conn = match client.take() {
        Some(conn) => conn,
        None => open(port).await?,
    };
    match timeout(INSERT_TIMEOUT, conn.execute(INSERT, &[])).await {
        Ok(Ok(_)) => {
            *client = Some(conn);
            Ok(())
        }
        Ok(Err(e)) => Err(describe(&e)),
        Err(_) => Err(format!("no answer within {} s", INSERT_TIMEOUT.as_secs())),
    }
}

/// A new connection through the proxy, with the demo table created if missing.
async fn open(port: u16) -> Result<Client, String> {
    let attempt = async {
        let conn = connect("127.0.0.1", port, "postgres", Some(SU_PASSWORD), "postgres").await?;
        conn.batch_execute(CREATE_TABLE).await?;
        Ok::<_, tokio_postgres::Error>(conn)
    };
    match timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(describe(&e)),
        Err(_) => Err(format!(
            "cannot connect within {} s",
            CONNECT_TIMEOUT.as_secs()
        )),
    }
}

/// The server's message for database errors (tokio-postgres only says "db error"), else the
/// error with its cause.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => e.to_string(),
    }
}

/// Counts one insert's `result` at `now`, noting the start and end of outages in `events`.
fn record(stats: &mut WriterStats, result: Result<(), String>, now: Instant, events: &Events) {
    stats.attempts += 1;
    match result {
        Ok(()) => {
            if stats.acked == 0 {
                events.push("first insert through the proxy acknowledged");
            }
            stats.acked += 1;
            if let Some(since) = stats.failing_since.take() {
                let outage = now.saturating_duration_since(since);
                stats.last_outage = Some(outage);
                events.push(format!(
                    "writes work again, after {:.1} s of failures",
                    outage.as_secs_f64()
                ));
            }
        }
        Err(error) => {
            stats.failures += 1;
            if stats.acked > 0 && stats.failing_since.is_none() {
                stats.failing_since = Some(now);
                events.push(format!("writes start failing: {error}"));
            }
            stats.last_error = Some(error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_failures_are_not_an_outage_but_later_ones_are() {
        let events = Events::new();
        let mut stats = WriterStats::default();
        let t0 = Instant::now();
        record(&mut stats, Err("refused".into()), t0, &events);
        assert_eq!((stats.failures, stats.failing_since), (1, None));
        record(&mut stats, Ok(()), t0, &events);
        record(
            &mut stats,
            Err("closed".into()),
            t0 + Duration::from_secs(1),
            &events,
        );
        assert_eq!(stats.failing_since, Some(t0 + Duration::from_secs(1)));
        record(
            &mut stats,
            Err("refused".into()),
            t0 + Duration::from_secs(2),
            &events,
        );
        record(&mut stats, Ok(()), t0 + Duration::from_secs(4), &events);
        assert_eq!((stats.attempts, stats.acked, stats.failures), (5, 2, 3));
        assert_eq!(
            (stats.failing_since, stats.last_outage),
            (None, Some(Duration::from_secs(3)))
        );
        assert_eq!(
            events.recent().len(),
            3,
            "first ack, outage start, outage end"
        );
    }
}
