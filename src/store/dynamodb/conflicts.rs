//! Transaction conflicts, retried. DynamoDB refuses a write to an item that an
//! open transaction holds (`TransactionConflictException`), and cancels a
//! transaction that meets another one on one of its items (reason
//! `TransactionConflict`). Every fenced write is a transaction that checks the
//! single lease item, so the leader's writes and its lease renewals meet there
//! under load; neither is a failure, both are sent again after a short, jittered
//! wait. Moto does not model conflicts: the loop is tested here, on its own.

use crate::store::{StoreError, StoreResult};
use backon::{BackoffBuilder, ExponentialBuilder};
use std::future::Future;
use std::time::Duration;

/// How often a conflicting write is sent before the call fails: the waits add up
/// to about 2 s at most, well within the lease (10 s by default).
const CONFLICT_TRIES: usize = 6;

/// One try of a write that may meet a transaction.
pub(super) enum Try<T> {
    /// Done, or failed for good.
    Done(StoreResult<T>),
    /// Met another transaction: nothing was written, send it again.
    Conflict(StoreError),
}

/// The waits between tries: 20 ms doubling to 640 ms, with jitter, so that the
/// writes that met do not meet again at the next try.
pub(super) fn conflict_backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(20))
        .with_max_delay(Duration::from_millis(640))
        .with_max_times(CONFLICT_TRIES - 1)
        .with_jitter()
        .build()
}

/// Runs `attempt` until it is done, waiting out the next of `delays` after each
/// conflict; when the delays run out, the last conflict is the error, with the
/// number of tries.
pub(super) async fn retry_conflicts<T, F, Fut>(
    mut delays: impl Iterator<Item = Duration>,
    mut attempt: F,
) -> StoreResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Try<T>>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        match attempt().await {
            Try::Done(result) => return result,
            Try::Conflict(e) => match delays.next() {
                Some(delay) => {
                    tracing::debug!(error = %e, tries, "transaction conflict: sending again");
                    tokio::time::sleep(delay).await;
                }
                None => {
                    return Err(StoreError::Backend(format!(
                        "{e} (still conflicting after {tries} tries)"
                    )))
                }
            },
        }
    }
}

/// Whether a transaction's cancellation reason says "try again": it met another
/// transaction, or was throttled (the SDK does not retry a cancelled transaction).
pub(super) fn is_transient_reason(code: &str) -> bool {
    matches!(
        code,
        "TransactionConflict" | "ThrottlingError" | "ProvisionedThroughputExceeded"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quick() -> impl Iterator<Item = Duration> {
        std::iter::repeat_n(Duration::from_millis(1), CONFLICT_TRIES - 1)
    }

    fn conflict() -> StoreError {
        StoreError::Backend("writing job j-1: TransactionConflict".into())
    }

    #[tokio::test]
    async fn a_conflict_is_sent_again_until_the_write_lands() {
        let mut tries = 0;
        let result = retry_conflicts(quick(), || {
            tries += 1;
            let outcome = if tries < 3 {
                Try::Conflict(conflict())
            } else {
                Try::Done(Ok(tries))
            };
            async move { outcome }
        })
        .await;
        assert_eq!(result.unwrap(), 3);
    }

    #[tokio::test]
    async fn a_write_that_keeps_conflicting_fails_after_the_bounded_tries() {
        let mut tries = 0;
        let result: StoreResult<()> = retry_conflicts(quick(), || {
            tries += 1;
            async { Try::Conflict(conflict()) }
        })
        .await;
        let err = result.unwrap_err().to_string();
        assert!(
            err.contains("TransactionConflict (still conflicting after 6 tries)"),
            "{err}"
        );
        assert_eq!(tries, CONFLICT_TRIES);
    }

    #[tokio::test]
    async fn any_other_outcome_is_returned_at_once() {
        let mut tries = 0;
        let result: StoreResult<()> = retry_conflicts(quick(), || {
            tries += 1;
            async { Try::Done(Err(StoreError::Fenced { token: 4 })) }
        })
        .await;
        assert!(matches!(result, Err(StoreError::Fenced { token: 4 })));
        assert_eq!(tries, 1);
    }

    #[test]
    fn the_waits_are_jittered_and_bounded() {
        let delays: Vec<Duration> = conflict_backoff().collect();
        assert_eq!(delays.len(), CONFLICT_TRIES - 1);
        for (i, delay) in delays.iter().enumerate() {
            let base = Duration::from_millis(20 << i).min(Duration::from_millis(640));
            assert!(*delay >= base && *delay <= base * 2, "{i}: {delay:?}");
        }
        assert!(delays.iter().sum::<Duration>() < Duration::from_secs(3));
    }

    #[test]
    fn conflicts_and_throttling_are_transient_a_failed_condition_is_not() {
        assert!(is_transient_reason("TransactionConflict"));
        assert!(is_transient_reason("ThrottlingError"));
        assert!(!is_transient_reason("ConditionalCheckFailed"));
        assert!(!is_transient_reason("ValidationError"));
    }
}
