//! [`wait_until`]: the one polling loop of the tests. Distributed components
//! converge eventually, so tests poll a probe until it succeeds or a deadline
//! passes, and the timeout error says what was awaited, how often it was
//! tried and the last error seen, which is usually the cause.
//!
//! A probe returns anything implementing [`Attempt`]: `bool`, `Option<T>`
//! or `Result<T, E>`. Each attempt is itself bounded by the remaining time,
//! so a probe hanging on a frozen server cannot overrun the deadline.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// The outcome of one probe: done with a value, or not yet (with an optional
/// reason kept for the timeout message).
pub trait Attempt {
    /// What the wait yields once the probe succeeds.
    type Output;
    /// `Ok(value)` when done, `Err(reason)` to try again.
    fn into_attempt(self) -> Result<Self::Output, Option<String>>;
}

impl Attempt for bool {
    type Output = ();
    fn into_attempt(self) -> Result<(), Option<String>> {
        if self {
            Ok(())
        } else {
            Err(None)
        }
    }
}

impl<T> Attempt for Option<T> {
    type Output = T;
    fn into_attempt(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

impl<T, E: Display> Attempt for Result<T, E> {
    type Output = T;
    fn into_attempt(self) -> Result<T, Option<String>> {
        self.map_err(|e| Some(e.to_string()))
    }
}

/// Polls `probe` every `interval` until it succeeds, for at most `timeout`.
/// The probe is always tried at least once.
///
/// ```text
/// let leader = wait_until(Duration::from_secs(30), Duration::from_millis(200), || async {
///     read_cluster_data(&etcd).await.ok()?.master_keeper()
/// }).await?;
/// ```
pub async fn wait_until<F, Fut>(
    timeout: Duration,
    interval: Duration,
    probe: F,
) -> Result<<Fut::Output as Attempt>::Output, String>
where
    F: FnMut() -> Fut,
    Fut: Future,
    Fut::Output: Attempt,
{
    wait_until_desc("condition", timeout, interval, probe).await
}

/// [`wait_until`] whose timeout error names `what` was awaited.
pub async fn wait_until_desc<F, Fut>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut probe: F,
) -> Result<<Fut::Output as Attempt>::Output, String>
where
    F: FnMut() -> Fut,
    Fut: Future,
    Fut::Output: Attempt,
{
    let start = Instant::now();
    let deadline = start + timeout;
    let mut attempts = 0u32;
    let mut last_error: Option<String> = None;
    loop {
        attempts += 1;
        // At least a short slice even past the deadline, so the first
        // attempt of a zero timeout still runs.
        let budget = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(10));
        match tokio::time::timeout(budget, probe()).await {
            Ok(outcome) => match outcome.into_attempt() {
                Ok(value) => return Ok(value),
                Err(Some(reason)) => last_error = Some(reason),
                Err(None) => {}
            },
            Err(_) => last_error = Some(format!("attempt still running after {budget:?}")),
        }
        let now = Instant::now();
        if now >= deadline {
            let last = last_error
                .map(|e| format!("; last error: {e}"))
                .unwrap_or_default();
            return Err(format!(
                "timed out after {:?} waiting for {what} ({attempts} attempts){last}",
                start.elapsed()
            ));
        }
        // The last sleep is cut short so one final attempt runs at the deadline.
        tokio::time::sleep(interval.min(deadline - now)).await;
    }
}
