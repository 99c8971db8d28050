//! [`Relay`]: a TCP relay on loopback between one component and its etcd, which a test can
//! pause: bytes already sent wait in the relay until it resumes, connections stay open. That is a
//! store link that suddenly takes seconds (a slow network path, an overloaded etcd seen from one
//! node) for one component only, while everybody else reaches etcd directly.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A pausable relay from `127.0.0.1:<port>` to a target port; stops when dropped.
pub struct Relay {
    pub port: u16,
    paused: Arc<AtomicBool>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Relay {
    /// Starts relaying `127.0.0.1:<new port>` to `127.0.0.1:<target>`.
    ///
    /// # Panics
    /// If no loopback port can be bound.
    pub async fn start(target: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a relay port");
        let port = listener.local_addr().expect("relay address").port();
        let paused = Arc::new(AtomicBool::new(false));
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::new(Mutex::new(Vec::new()));
        let (p, t) = (paused.clone(), tasks.clone());
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else { continue };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                let up = tokio::spawn(pump(cr, sw, p.clone()));
                let down = tokio::spawn(pump(sr, cw, p.clone()));
                if let Ok(mut tasks) = t.lock() {
                    tasks.extend([up, down]);
                }
            }
        });
        if let Ok(mut t) = tasks.lock() {
            t.push(accept);
        }
        Relay { port, paused, tasks }
    }

    /// `http://127.0.0.1:<port>`, for `--store-endpoints`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Holds every byte from now on until [`Relay::resume`].
    pub fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
    }

    pub fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
    }

    /// A handle that resumes the relay after `delay`, from a background task.
    pub fn resume_after(&self, delay: Duration) {
        let paused = self.paused.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            paused.store(false, Ordering::SeqCst);
        });
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Ok(tasks) = self.tasks.lock() {
            for t in tasks.iter() {
                t.abort();
            }
        }
    }
}

async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, paused: Arc<AtomicBool>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        while paused.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
