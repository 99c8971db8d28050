//! The `failover` benchmark's client: a writer that inserts one row with a fresh id every
//! 50-100 ms through the proxy, reconnecting after any error, and records every acknowledged
//! insert with when it was sent and when it was acknowledged.
//!
//! It runs on its own OS thread with its own single-threaded tokio runtime, so the benchmark's
//! blocking calls (the harness's `kill -9` waits for the process group to vanish) cannot delay
//! it: the timestamps measure the cluster, not our scheduling. Ids are never retried, so an
//! insert whose outcome is unknown (error or timeout) is simply not counted as acknowledged.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use stolon_tests::cluster::SU_PASSWORD;
use stolon_tests::postgres::connect;
use tokio_postgres::Client;

/// Bounds of the pause between two inserts.
const MIN_PAUSE_MS: u64 = 50;
const MAX_PAUSE_MS: u64 = 100;
/// An insert (or connect) still pending after this is abandoned as failed.
const OP_TIMEOUT: Duration = Duration::from_secs(5);
/// How often [`Writer::wait_for`] looks at the acknowledgements.
const POLL: Duration = Duration::from_millis(10);

/// One acknowledged insert.
#[derive(Debug, Clone, Copy)]
pub struct Ack {
    pub id: i32,
    /// When the INSERT was sent.
    pub sent: Instant,
    /// When its acknowledgement arrived.
    pub acked: Instant,
}

/// A running writer; see the module docs. Stopped by [`Writer::stop`] or on drop.
pub struct Writer {
    /// Every acknowledged insert so far, in order.
    acks: Arc<Mutex<Vec<Ack>>>,
    /// Inserts and connection attempts that failed or timed out.
    failures: Arc<AtomicU64>,
    /// Set to make the writer thread return.
    stop: Arc<AtomicBool>,
    /// The writer thread; `None` once joined.
    thread: Option<JoinHandle<Result<(), String>>>,
}

impl Writer {
    /// Starts writing into table `t` through 127.0.0.1:`port` as the superuser.
    pub fn start(port: u16) -> Writer {
        let acks = Arc::new(Mutex::new(Vec::new()));
        let failures = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, f, s) = (acks.clone(), failures.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("writer: cannot build its runtime: {e}"))?;
            rt.block_on(write_loop(port, a, f, s));
            Ok(())
        });
        Writer { acks, failures, stop, thread: Some(thread) }
    }

    /// A copy of the acknowledgements so far.
    pub fn acks(&self) -> Vec<Ack> {
        lock(&self.acks).clone()
    }

    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Polls until `found` picks an acknowledgement, for at most `timeout`.
    pub async fn wait_for(&self, what: &str, timeout: Duration, found: impl Fn(&[Ack]) -> Option<Ack>) -> Result<Ack, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(ack) = found(&lock(&self.acks)) {
                return Ok(ack);
            }
            if Instant::now() >= deadline {
                return Err(format!("writer: no {what} within {timeout:?} ({} failed attempts)", self.failures()));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Stops the writer and returns every acknowledgement.
    pub fn stop(mut self) -> Result<Vec<Ack>, String> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().map_err(|_| "writer thread panicked".to_string())??;
        }
        Ok(self.acks())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Locks the acknowledgements; a poisoned lock only means the other side panicked mid-push,
/// and the list is still valid.
fn lock(acks: &Mutex<Vec<Ack>>) -> MutexGuard<'_, Vec<Ack>> {
    acks.lock().unwrap_or_else(|poison| poison.into_inner())
}

async fn write_loop(port: u16, acks: Arc<Mutex<Vec<Ack>>>, failures: Arc<AtomicU64>, stop: Arc<AtomicBool>) {
    let mut client: Option<Client> = None;
    let mut next_id: i32 = 0;
    // xorshift64 for the pause; any seed but 0 works.
    let mut rng: u64 = 0x9E37_79B9_7F4A_7C15;
    while !stop.load(Ordering::Relaxed) {
        if client.is_none() {
            match tokio::time::timeout(OP_TIMEOUT, connect("127.0.0.1", port, "postgres", Some(SU_PASSWORD), "postgres")).await {
                Ok(Ok(c)) => client = Some(c),
                _ => {
                    failures.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(MIN_PAUSE_MS)).await;
                    continue;
                }
            }
        }
        if let Some(c) = &client {
            next_id += 1;
            let id = next_id;
            let sent = Instant::now();
            match tokio::time::timeout(OP_TIMEOUT, c.execute("INSERT INTO t (id) VALUES ($1)", &[&id])).await {
                Ok(Ok(_)) => lock(&acks).push(Ack { id, sent, acked: Instant::now() }),
                _ => {
                    failures.fetch_add(1, Ordering::Relaxed);
                    client = None;
                }
            }
        }
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let pause = MIN_PAUSE_MS + rng % (MAX_PAUSE_MS - MIN_PAUSE_MS + 1);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}
