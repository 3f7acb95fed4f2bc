//! The shape of every reconcile loop: run a tick, then wait for the interval, a
//! hint or shutdown, whichever comes first. A successful tick still runs again
//! after the interval (level-triggered: a missed hint only delays work); a failed
//! tick is retried after an exponential backoff with jitter.

use backon::{BackoffBuilder, ExponentialBuilder};
use std::{future::Future, sync::Arc, time::Duration};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub fn error_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_jitter()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(30))
        .without_max_times()
}

pub async fn run_loop<F, Fut>(
    name: &'static str,
    interval: Duration,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
    mut tick: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let mut backoff = error_backoff().build();
    loop {
        let started = std::time::Instant::now();
        match tick().await {
            Ok(()) => {
                backoff = error_backoff().build();
                crate::metrics::reconcile_done(name, "ok", started.elapsed());
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = wake.notified() => {}
                    _ = shutdown.cancelled() => break,
                }
            }
            Err(e) => {
                crate::metrics::reconcile_done(name, "error", started.elapsed());
                let wait = backoff.next().unwrap_or(Duration::from_secs(30));
                tracing::warn!(reconciler = name, error = %format!("{e:#}"), retry_in = ?wait, "reconcile failed");
                // Hints do not cut a backoff short: a failing backend is not hammered.
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.cancelled() => break,
                }
            }
        }
    }
    tracing::debug!(reconciler = name, "loop stopped");
}
