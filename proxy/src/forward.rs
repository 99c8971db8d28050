//! Forwarding one client connection to one backend: connect with a bound, set TCP keepalive, then
//! copy both ways until either side closes, the connection's epoch is cancelled (a master
//! change), or the proxy's fencing deadline passes, whichever comes first.
//!
//! Every chunk read is checked against the fencing deadline before it is written (safety rule 2):
//! after a freeze (SIGSTOP, a stalled VM) longer than proxyTimeout, a client's buffered
//! `INSERT ... COMMIT` must not reach a master a sentinel may have deposed meanwhile, even if
//! this task runs before the control loop had a chance to fence. The cancel branch is polled
//! first (`biased`) for the same reason.
//!
//! Memory per connection is bounded: two fixed buffers of `BUF_SIZE`, allocated once, and no
//! allocation per read. Bytes are counted as they pass, with one atomic add per read, so
//! `/metrics` shows long-lived connections' traffic too.

use crate::fencing::Deadline;
use crate::metrics::PortMetrics;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// Buffer size of each direction of a forwarded connection.
const BUF_SIZE: usize = 16 * 1024;

/// TCP keepalive settings applied to both sockets of a forwarded connection.
#[derive(Debug, Clone, Copy)]
pub struct Keepalive {
    pub idle: Duration,
    pub interval: Duration,
    pub count: u32,
}

impl Keepalive {
    pub fn apply(&self, stream: &TcpStream) {
        let ka = socket2::TcpKeepalive::new().with_time(self.idle).with_interval(self.interval).with_retries(self.count);
        if let Err(err) = socket2::SockRef::from(stream).set_tcp_keepalive(&ka) {
            tracing::warn!(error = %err, "cannot set TCP keepalive");
        }
    }
}

/// Why a forwarded connection ended (for logs and metrics).
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// One side closed, normally or with an error.
    Closed,
    /// The master changed (or the proxy fenced itself): closed by us.
    Fenced,
    /// The backend could not be reached.
    ConnectFailed,
}

/// Everything one connection task needs.
pub struct Forward {
    pub client: TcpStream,
    pub backend: String,
    pub connect_timeout: Duration,
    /// `None`: keepalive off (`--tcp-keepalive-idle 0`).
    pub keepalive: Option<Keepalive>,
    pub cancel: CancellationToken,
    /// The proxy's fencing deadline: nothing is copied once it has passed.
    pub deadline: Arc<Deadline>,
    pub metrics: Arc<PortMetrics>,
}

/// Why one direction of the copy stopped early.
enum Stop {
    Fenced,
    Io(io::Error),
}

impl Forward {
    pub async fn run(self) -> Ended {
        let Forward { client, backend, connect_timeout, keepalive, cancel, deadline, metrics } = self;
        let connect = tokio::time::timeout(connect_timeout, TcpStream::connect(backend.as_str()));
        let mut server = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Ended::Fenced,
            res = connect => match res {
                Ok(Ok(server)) => server,
                Ok(Err(err)) => {
                    tracing::warn!(backend = %backend, error = %err, "cannot connect to backend");
                    metrics.backend_errors.fetch_add(1, Ordering::Relaxed);
                    return Ended::ConnectFailed;
                }
                Err(_) => {
                    tracing::warn!(backend = %backend, timeout = ?connect_timeout, "backend connect timed out");
                    metrics.backend_errors.fetch_add(1, Ordering::Relaxed);
                    return Ended::ConnectFailed;
                }
            },
        };
        let mut client = client;
        let _ = server.set_nodelay(true);
        let _ = client.set_nodelay(true);
        if let Some(keepalive) = keepalive {
            keepalive.apply(&client);
            keepalive.apply(&server);
        }
        let gate = Gate { cancel: &cancel, deadline: &deadline };
        let (client_read, client_write) = client.split();
        let (server_read, server_write) = server.split();
        let both = async {
            tokio::try_join!(
                pump(client_read, server_write, &gate, &metrics.bytes_from_clients),
                pump(server_read, client_write, &gate, &metrics.bytes_from_backends),
            )
        };
        tokio::select! {
            biased;
            _ = cancel.cancelled() => Ended::Fenced,
            res = both => match res {
                Ok(_) => Ended::Closed,
                Err(Stop::Fenced) => Ended::Fenced,
                Err(Stop::Io(err)) => {
                    tracing::debug!(error = %err, "forwarded connection ended with an error");
                    Ended::Closed
                }
            },
        }
    }
}

/// What every chunk must pass: the epoch is not cancelled and the fencing deadline has not passed.
struct Gate<'a> {
    cancel: &'a CancellationToken,
    deadline: &'a Deadline,
}

impl Gate<'_> {
    fn open(&self) -> bool {
        !self.cancel.is_cancelled() && self.deadline.is_open()
    }
}

/// Copies `from` to `to` until `from` ends (then shuts `to`'s write side, as a half-close), a
/// chunk finds the gate shut, or an I/O error.
async fn pump<R, W>(mut from: R, mut to: W, gate: &Gate<'_>, counter: &AtomicU64) -> Result<(), Stop>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        let n = from.read(&mut buf).await.map_err(Stop::Io)?;
        if n == 0 {
            let _ = to.shutdown().await;
            return Ok(());
        }
        counter.fetch_add(n as u64, Ordering::Relaxed);
        // Checked after the read returned, i.e. with the clock of the moment the bytes are
        // about to leave: a read that waited through a freeze finds the deadline passed.
        if !gate.open() {
            return Err(Stop::Fenced);
        }
        to.write_all(&buf[..n]).await.map_err(Stop::Io)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A backend recording what it receives and echoing it; returns its address and the record.
    async fn recording_backend() -> (String, Arc<std::sync::Mutex<Vec<u8>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let record = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = record.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let sink = sink.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 256];
                    while let Ok(n) = sock.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        sink.lock().unwrap().extend_from_slice(&buf[..n]);
                        if sock.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        (addr, record)
    }

    /// A client socket and the proxy's side of it.
    async fn client_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        (client, accepted)
    }

    fn forward(client: TcpStream, backend: String, deadline: Arc<Deadline>) -> Forward {
        Forward {
            client,
            backend,
            connect_timeout: Duration::from_secs(2),
            keepalive: None,
            cancel: CancellationToken::new(),
            deadline,
            metrics: Arc::new(PortMetrics::default()),
        }
    }

    #[tokio::test]
    async fn forwards_both_ways_while_the_deadline_is_ahead() {
        let (backend, record) = recording_backend().await;
        let (mut client, accepted) = client_pair().await;
        let deadline = Arc::new(Deadline::closed());
        deadline.set(tokio::time::Instant::now() + Duration::from_secs(60));
        let task = tokio::spawn(forward(accepted, backend, deadline).run());
        client.write_all(b"hello").await.unwrap();
        let mut echo = [0u8; 5];
        client.read_exact(&mut echo).await.unwrap();
        assert_eq!(&echo, b"hello");
        drop(client);
        assert_eq!(task.await.unwrap(), Ended::Closed);
        assert_eq!(record.lock().unwrap().as_slice(), b"hello");
    }

    /// An open connection whose deadline passes (the process was frozen, or the control loop
    /// is late): the next chunk is not forwarded, and the connection is closed.
    #[tokio::test]
    async fn nothing_is_forwarded_once_the_deadline_has_passed() {
        let (backend, record) = recording_backend().await;
        let (mut client, accepted) = client_pair().await;
        let deadline = Arc::new(Deadline::closed());
        deadline.set(tokio::time::Instant::now() + Duration::from_secs(60));
        let task = tokio::spawn(forward(accepted, backend, deadline.clone()).run());
        client.write_all(b"before;").await.unwrap();
        let mut echo = [0u8; 7];
        client.read_exact(&mut echo).await.unwrap();
        // The deadline passes with nobody cancelling the epoch.
        deadline.set(tokio::time::Instant::now());
        client.write_all(b"COMMIT;").await.unwrap();
        assert_eq!(tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap(), Ended::Fenced);
        let mut rest = Vec::new();
        let _ = client.read_to_end(&mut rest).await;
        assert!(rest.is_empty());
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(record.lock().unwrap().as_slice(), b"before;", "bytes went through after the deadline");
    }
}
