//! `IDENTIFY_SYSTEM` over a replication connection to the local postgres, as Stolon does
//! (`GetSystemData`): on a standby it answers the timeline being *replayed*, which SQL cannot
//! tell. `pg_control_checkpoint()` moves only at a restartpoint and `pg_stat_wal_receiver` has
//! no row while the walreceiver is disconnected, which is exactly when the master has died: a
//! standby that follows timeline 2 would report 1 and never be elected.
//!
//! tokio-postgres has no replication mode, so this speaks the startup and simple-query
//! messages itself (postgres-protocol's encoders and decoders) over the unix socket. The
//! connection asks for `replication=database`: a "logical" walsender, which pg_hba matches
//! like a normal connection to database `postgres`, so the keeper's own `local all <su>
//! trust` line admits it (a physical `replication=true` connection needs a `replication`
//! line). It takes one walsender slot for a moment; IDENTIFY_SYSTEM needs no wal_level
//! beyond what a standby has.

use crate::config::KeeperConfig;
use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::message::{backend, frontend};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// What IDENTIFY_SYSTEM answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub system_id: String,
    /// On a standby: the timeline of the last replayed record.
    pub timeline_id: u32,
    /// On a standby: the replay position, or the flushed received one when it is further on
    /// the same timeline.
    pub xlog_pos: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentifyError {
    #[error("cannot talk to postgres over {socket}: {source}")]
    Io { socket: String, source: std::io::Error },
    #[error("postgres asked for authentication on the replication connection; the keeper's pg_hba.conf must trust the superuser on the local socket")]
    Auth,
    #[error("postgres refused IDENTIFY_SYSTEM: {0}")]
    Server(String),
    #[error("unexpected answer to IDENTIFY_SYSTEM: {0}")]
    Protocol(String),
}

/// Runs IDENTIFY_SYSTEM on the local postgres. Not bounded here: the caller bounds the whole
/// status check by requestTimeout.
pub async fn identify_system(cfg: &KeeperConfig) -> Result<Identity, IdentifyError> {
    let socket = cfg.socket_dir().join(format!(".s.PGSQL.{}", cfg.port));
    let io = |source| IdentifyError::Io { socket: socket.display().to_string(), source };
    let mut conn = Conn { stream: UnixStream::connect(&socket).await.map_err(io)?, read: BytesMut::with_capacity(1024) };
    let mut out = BytesMut::new();
    let params = [("user", cfg.su_username.as_str()), ("database", "postgres"), ("replication", "database"), ("application_name", "stolon-keeper")];
    frontend::startup_message(params, &mut out).map_err(io)?;
    conn.stream.write_all(&out).await.map_err(io)?;
    loop {
        match conn.next().await.map_err(io)? {
            backend::Message::AuthenticationOk | backend::Message::ParameterStatus(_) | backend::Message::BackendKeyData(_) | backend::Message::NoticeResponse(_) => {}
            backend::Message::ReadyForQuery(_) => break,
            backend::Message::ErrorResponse(body) => return Err(IdentifyError::Server(error_text(&body))),
            backend::Message::AuthenticationCleartextPassword | backend::Message::AuthenticationMd5Password(_) | backend::Message::AuthenticationSasl(_) => return Err(IdentifyError::Auth),
            _ => return Err(IdentifyError::Protocol("unexpected message during startup".into())),
        }
    }
    out.clear();
    frontend::query("IDENTIFY_SYSTEM", &mut out).map_err(io)?;
    conn.stream.write_all(&out).await.map_err(io)?;
    let mut identity = None;
    loop {
        match conn.next().await.map_err(io)? {
            backend::Message::RowDescription(_) | backend::Message::CommandComplete(_) | backend::Message::NoticeResponse(_) | backend::Message::ParameterStatus(_) => {}
            backend::Message::DataRow(row) => identity = Some(parse_row(&row)?),
            backend::Message::ErrorResponse(body) => return Err(IdentifyError::Server(error_text(&body))),
            backend::Message::ReadyForQuery(_) => break,
            _ => return Err(IdentifyError::Protocol("unexpected message".into())),
        }
    }
    out.clear();
    frontend::terminate(&mut out);
    let _ = conn.stream.write_all(&out).await;
    identity.ok_or_else(|| IdentifyError::Protocol("no row".into()))
}

struct Conn {
    stream: UnixStream,
    read: BytesMut,
}

impl Conn {
    /// The next backend message, reading more as needed.
    async fn next(&mut self) -> std::io::Result<backend::Message> {
        loop {
            if let Some(message) = backend::Message::parse(&mut self.read)? {
                return Ok(message);
            }
            if self.stream.read_buf(&mut self.read).await? == 0 {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "postgres closed the connection"));
            }
        }
    }
}

/// The row's columns: systemid, timeline, xlogpos, dbname.
fn parse_row(row: &backend::DataRowBody) -> Result<Identity, IdentifyError> {
    let columns: Vec<Option<String>> = row
        .ranges()
        .map(|r| Ok(r.map(|r| String::from_utf8_lossy(&row.buffer()[r]).into_owned())))
        .collect()
        .map_err(|e: std::io::Error| IdentifyError::Protocol(e.to_string()))?;
    parse_columns(&columns)
}

fn parse_columns(columns: &[Option<String>]) -> Result<Identity, IdentifyError> {
    let column = |i: usize| columns.get(i).and_then(Option::as_deref).ok_or_else(|| IdentifyError::Protocol(format!("column {i} missing in {columns:?}")));
    let timeline_id = column(1)?.parse().map_err(|_| IdentifyError::Protocol(format!("timeline {:?}", columns[1])))?;
    let xlog_pos = crate::info::parse_lsn(column(2)?).ok_or_else(|| IdentifyError::Protocol(format!("xlogpos {:?}", columns[2])))?;
    Ok(Identity { system_id: column(0)?.to_string(), timeline_id, xlog_pos })
}

fn error_text(body: &backend::ErrorResponseBody) -> String {
    let mut fields = body.fields();
    let mut text = Vec::new();
    while let Ok(Some(field)) = fields.next() {
        // S: severity, C: SQLSTATE, M: message.
        if matches!(field.type_(), b'S' | b'C' | b'M') {
            text.push(String::from_utf8_lossy(field.value_bytes()).into_owned());
        }
    }
    text.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_columns() {
        let row = |v: &[&str]| v.iter().map(|s| Some(s.to_string())).collect::<Vec<_>>();
        let id = parse_columns(&row(&["7351234567890123456", "2", "0/5000148", ""])).unwrap();
        assert_eq!(id, Identity { system_id: "7351234567890123456".into(), timeline_id: 2, xlog_pos: 0x500_0148 });
        assert!(parse_columns(&row(&["1", "x", "0/1"])).is_err());
        assert!(parse_columns(&row(&["1", "2"])).is_err());
        assert!(parse_columns(&[Some("1".into()), None, Some("0/1".into())]).is_err());
    }
}
