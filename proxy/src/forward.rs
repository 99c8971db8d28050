//! Forwarding one client connection to one backend: connect with a bound, set TCP keepalive, then
//! copy both ways until either side closes or the connection's epoch is cancelled (a master
//! change), whichever comes first.
//!
//! Memory per connection is bounded: two fixed buffers of `BUF_SIZE`, allocated once by
//! `copy_bidirectional_with_sizes`, and no allocation per read. Bytes are counted as they pass,
//! with one atomic add per read, so `/metrics` shows long-lived connections' traffic too.

use crate::metrics::PortMetrics;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
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
    pub metrics: Arc<PortMetrics>,
}

impl Forward {
    pub async fn run(self) -> Ended {
        let Forward { client, backend, connect_timeout, keepalive, cancel, metrics } = self;
        let connect = tokio::time::timeout(connect_timeout, TcpStream::connect(backend.as_str()));
        let server = tokio::select! {
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
        let _ = server.set_nodelay(true);
        let _ = client.set_nodelay(true);
        if let Some(keepalive) = keepalive {
            keepalive.apply(&client);
            keepalive.apply(&server);
        }
        let mut client = Counted { inner: client, read: metrics.bytes_from_clients.clone() };
        let mut server = Counted { inner: server, read: metrics.bytes_from_backends.clone() };
        tokio::select! {
            _ = cancel.cancelled() => Ended::Fenced,
            res = tokio::io::copy_bidirectional_with_sizes(&mut client, &mut server, BUF_SIZE, BUF_SIZE) => {
                if let Err(err) = res {
                    tracing::debug!(error = %err, "forwarded connection ended with an error");
                }
                Ended::Closed
            }
        }
    }
}

/// A stream that counts the bytes read from it.
struct Counted {
    inner: TcpStream,
    read: Arc<AtomicU64>,
}

impl AsyncRead for Counted {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before);
        if n > 0 {
            self.read.fetch_add(n as u64, Ordering::Relaxed);
        }
        res
    }
}

impl AsyncWrite for Counted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
