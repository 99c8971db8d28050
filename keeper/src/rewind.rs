//! When to give up on pg_rewind for a db and fall back to a full resync (pg_basebackup).
//!
//! A resync tries pg_rewind first because it copies only what diverged. But a rewind that can
//! never succeed (the new master refuses the superuser: wrong password, pg_hba.conf) must not be
//! retried forever: the standby would stay down for good while a pg_basebackup, which connects as
//! the replication user, could bring it back. So every failed attempt is classified:
//! - the source is not ready (no address, not promoted, unreachable, starting or shutting down):
//!   a pg_basebackup needs the same source, so switching gains nothing and would only turn a cheap
//!   rewind into a full copy once the source is back; not counted;
//! - the source answered and refused, or a local step failed: maybe a blip (a master reloading its
//!   pg_hba.conf), maybe lasting; counted, and the keeper gives up after `REWIND_ATTEMPTS` in a row;
//! - pg_rewind itself failed: it may have changed the data dir half way, and PostgreSQL's docs then
//!   advise a fresh copy; the keeper gives up at once.
//!
//! The count lives in the executor's memory (lost on restart, like `rewind_failed_for`).

use crate::error::StepError;
use std::error::Error as _;
use tokio_postgres::error::SqlState;

/// Refused attempts in a row, for one db, before the keeper falls back to pg_basebackup.
pub const REWIND_ATTEMPTS: u32 = 3;

/// How one failed attempt of the rewind step counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewindFailure {
    /// The source cannot take part yet; retry without counting.
    SourceNotReady,
    /// Counted toward `REWIND_ATTEMPTS`.
    Refused,
    /// Give up on pg_rewind for this db now.
    RewindFailed,
}

/// Classifies a failure of the rewind step.
pub fn classify(err: &StepError) -> RewindFailure {
    match err {
        // No address for the source yet, or the source is not promoted yet.
        StepError::Precondition { .. } => RewindFailure::SourceNotReady,
        // The source did not answer in time (frozen, overloaded): not a refusal.
        StepError::Timeout { .. } => RewindFailure::SourceNotReady,
        StepError::RewindSource { source, .. } => classify_source_error(source),
        StepError::Tool { .. } | StepError::ToolTimeout { .. } | StepError::Spawn { .. } => RewindFailure::RewindFailed,
        _ => RewindFailure::Refused,
    }
}

/// Classifies an error talking to the rewind source: a server that answered with an error counts,
/// unless the error says it cannot take connections right now; a server that could not be reached
/// (no route, refused, timed out, connection dropped) does not.
pub fn classify_source_error(err: &tokio_postgres::Error) -> RewindFailure {
    const NOT_READY: [SqlState; 4] = [SqlState::CANNOT_CONNECT_NOW, SqlState::ADMIN_SHUTDOWN, SqlState::CRASH_SHUTDOWN, SqlState::TOO_MANY_CONNECTIONS];
    match err.code() {
        Some(code) if NOT_READY.contains(code) => RewindFailure::SourceNotReady,
        Some(_) => RewindFailure::Refused,
        None if err.is_closed() || err.source().is_some_and(|s| s.is::<std::io::Error>()) => RewindFailure::SourceNotReady,
        // Authentication the keeper cannot answer (no password configured), protocol errors.
        None => RewindFailure::Refused,
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Try pg_rewind again on the next pass; `counted` failures so far.
    Retry { counted: u32 },
    /// Stop trying pg_rewind for this db: resync with pg_basebackup.
    FallBack { counted: u32 },
}

/// Consecutive counted failures of the rewind step for one db.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RewindAttempts {
    /// The db the count is for; another db starts from zero.
    db: Option<String>,
    failures: u32,
}

impl RewindAttempts {
    /// Records a failed attempt for `db`.
    pub fn failed(&mut self, db: &str, why: RewindFailure) -> Verdict {
        if self.db.as_deref() != Some(db) {
            *self = RewindAttempts { db: Some(db.to_string()), failures: 0 };
        }
        match why {
            RewindFailure::SourceNotReady => {}
            RewindFailure::Refused => self.failures += 1,
            RewindFailure::RewindFailed => self.failures = self.failures.max(REWIND_ATTEMPTS),
        }
        if self.failures >= REWIND_ATTEMPTS {
            Verdict::FallBack { counted: self.failures }
        } else {
            Verdict::Retry { counted: self.failures }
        }
    }

    /// A rewind succeeded: a later one starts from zero.
    pub fn succeeded(&mut self) {
        *self = RewindAttempts::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Tool;
    use RewindFailure::*;

    fn precondition() -> StepError {
        StepError::Precondition { step: "rewind", reason: "not promoted yet".into() }
    }

    #[test]
    fn step_errors() {
        assert_eq!(classify(&precondition()), SourceNotReady);
        let tool = StepError::Tool { step: "rewind", tool: Tool::Rewind, status: "exit status: 1".into(), tail: String::new() };
        assert_eq!(classify(&tool), RewindFailed);
        let timeout = StepError::ToolTimeout { step: "rewind", tool: Tool::Rewind, timeout: std::time::Duration::from_secs(1) };
        assert_eq!(classify(&timeout), RewindFailed);
        let io = StepError::Io { step: "rewind", what: "write", path: "/x/pgpass".into(), source: std::io::Error::other("disk full") };
        assert_eq!(classify(&io), Refused);
    }

    /// Failed attempts in order: (db, why).
    type Attempts = &'static [(&'static str, RewindFailure)];

    #[test]
    fn counting() {
        // (attempts in order, the verdict after the last one)
        let rows: &[(&str, Attempts, Verdict)] = &[
            ("one refusal is a blip", &[("db1", Refused)], Verdict::Retry { counted: 1 }),
            ("three refusals in a row", &[("db1", Refused), ("db1", Refused), ("db1", Refused)], Verdict::FallBack { counted: 3 }),
            ("an unready source is never counted", &[("db1", SourceNotReady); 10], Verdict::Retry { counted: 0 }),
            ("... nor does it break a streak", &[("db1", Refused), ("db1", SourceNotReady), ("db1", Refused), ("db1", Refused)], Verdict::FallBack { counted: 3 }),
            ("pg_rewind itself failed: at once", &[("db1", RewindFailed)], Verdict::FallBack { counted: 3 }),
            ("another db starts from zero", &[("db1", Refused), ("db1", Refused), ("db2", Refused)], Verdict::Retry { counted: 1 }),
            ("counts on past the threshold", &[("db1", Refused); 4], Verdict::FallBack { counted: 4 }),
        ];
        for (name, attempts, want) in rows {
            let mut a = RewindAttempts::default();
            let got = attempts.iter().map(|(db, why)| a.failed(db, *why)).last();
            assert_eq!(got, Some(*want), "{name}");
        }
    }

    #[test]
    fn success_resets_the_streak() {
        let mut a = RewindAttempts::default();
        a.failed("db1", Refused);
        a.failed("db1", Refused);
        a.succeeded();
        assert_eq!(a.failed("db1", Refused), Verdict::Retry { counted: 1 });
    }

    /// A server that answers every startup message with a FATAL error of SQLSTATE `code`.
    async fn refusing_server(code: &'static str) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let len = conn.read_i32().await.unwrap();
            let mut startup = vec![0; usize::try_from(len - 4).unwrap()];
            conn.read_exact(&mut startup).await.unwrap();
            let mut fields = Vec::new();
            for (tag, value) in [(b'S', "FATAL"), (b'V', "FATAL"), (b'C', code), (b'M', "refused by the test")] {
                fields.push(tag);
                fields.extend_from_slice(value.as_bytes());
                fields.push(0);
            }
            fields.push(0);
            let mut msg = vec![b'E'];
            msg.extend_from_slice(&i32::try_from(fields.len() + 4).unwrap().to_be_bytes());
            msg.extend_from_slice(&fields);
            conn.write_all(&msg).await.unwrap();
        });
        port
    }

    async fn connect_error(port: u16) -> tokio_postgres::Error {
        let mut pg = tokio_postgres::Config::new();
        pg.host("127.0.0.1").port(port).user("postgres").dbname("postgres").connect_timeout(std::time::Duration::from_secs(5));
        pg.connect(tokio_postgres::NoTls).await.err().unwrap()
    }

    #[tokio::test]
    async fn source_errors_from_real_connections() {
        for (code, want) in [
            ("28P01", Refused),        // password authentication failed
            ("28000", Refused),        // no pg_hba.conf entry
            ("57P03", SourceNotReady), // the database system is starting up
            ("53300", SourceNotReady), // too many connections
        ] {
            let port = refusing_server(code).await;
            assert_eq!(classify_source_error(&connect_error(port).await), want, "SQLSTATE {code}");
        }
        // Nobody listening: connection refused.
        let port = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
        assert_eq!(classify_source_error(&connect_error(port).await), SourceNotReady);
    }
}
