//! Every EC2 API call goes through `Calls::call`: one place that counts calls,
//! turns SDK errors into `ApiError`s that say what failed, and retries
//! throttling and server errors with exponential backoff and jitter.
//!
//! The SDK's own retries are off for EC2 (see `Ec2Fleet::new`): two retry layers
//! would multiply into each other and hide how often EC2 pushed back.

use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use backon::{ExponentialBuilder, Retryable};
use std::{
    future::Future,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

/// Error codes EC2 answers when a caller goes too fast: worth waiting out.
/// (`InsufficientInstanceCapacity` is not one: it is a launch failure.)
const THROTTLING: &[&str] = &[
    "RequestLimitExceeded",
    "RequestResourceCountExceeded",
    "Throttling",
    "ThrottlingException",
    "RequestThrottled",
];

/// Error codes of EC2's own trouble, also worth retrying.
const TRANSIENT: &[&str] = &["InternalError", "ServiceUnavailable", "Unavailable"];

/// The EC2 calls one fleet made (and its launch batches); the controller
/// exports them as metrics.
#[derive(Debug, Default)]
pub struct Ec2CallStats {
    calls: AtomicU64,
    throttled: AtomicU64,
    retried: AtomicU64,
    failed: AtomicU64,
    pub(super) batches: AtomicU64,
}

impl Ec2CallStats {
    /// Requests sent, retries included.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
    /// Requests EC2 refused as too many (RequestLimitExceeded and kin).
    pub fn throttled(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }
    /// Requests sent again after a retryable error.
    pub fn retried(&self) -> u64 {
        self.retried.load(Ordering::Relaxed)
    }
    /// Calls that failed for good (after their retries).
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
    /// Launch batches sent (each: one lookup of its launch keys, then one
    /// RunInstances per new instance).
    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }
}

/// A failed EC2 call, after its retries.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{operation}: {}{message}", code.as_deref().map(|c| format!("{c}: ")).unwrap_or_default())]
pub struct ApiError {
    pub operation: &'static str,
    /// EC2's error code (`InvalidInstanceID.NotFound`, `RequestLimitExceeded`, ...).
    pub code: Option<String>,
    pub message: String,
    pub status: Option<u16>,
    retryable: bool,
    throttled: bool,
}

impl ApiError {
    pub fn is_code(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }

    fn from_sdk<E>(operation: &'static str, err: SdkError<E>) -> ApiError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = err.raw_response().map(|r| r.status().as_u16());
        let code = err.code().map(str::to_string);
        let throttled = code.as_deref().is_some_and(|c| THROTTLING.contains(&c));
        let retryable = match &err {
            SdkError::ServiceError(_) => {
                // EC2 answers a lack of capacity with a 5xx too, but waiting
                // does not make capacity: that launch fails with its message.
                let no_capacity = code
                    .as_deref()
                    .is_some_and(|c| c.starts_with("Insufficient"));
                throttled
                    || code.as_deref().is_some_and(|c| TRANSIENT.contains(&c))
                    || (status.is_some_and(|s| s >= 500) && !no_capacity)
            }
            // The request may not have arrived, or its answer did not: both
            // are safe to send again (RunInstances carries a ClientToken).
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => true,
            SdkError::ResponseError(_) => status.is_none_or(|s| s >= 500),
            _ => false,
        };
        let message = match (&err, err.message()) {
            (SdkError::ServiceError(_), Some(m)) => m.to_string(),
            _ => DisplayErrorContext(&err).to_string(),
        };
        ApiError {
            operation,
            code,
            message,
            status,
            retryable,
            throttled,
        }
    }
}

/// The backoff: 200 ms doubling to 20 s, with jitter, 8 tries in all.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub min_delay: Duration,
    pub max_delay: Duration,
    pub max_tries: usize,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            min_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(20),
            max_tries: 8,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Calls {
    pub stats: Arc<Ec2CallStats>,
    pub backoff: Backoff,
    /// For the logs: which cluster's calls these are.
    pub cluster: String,
}

impl Calls {
    /// Sends the request `make` builds until it succeeds, fails for good, or the
    /// tries run out.
    pub async fn call<T, E, F, Fut>(
        &self,
        operation: &'static str,
        mut make: F,
    ) -> Result<T, ApiError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let stats = &self.stats;
        let attempt = || {
            stats.calls.fetch_add(1, Ordering::Relaxed);
            let sent = make();
            async move {
                sent.await.map_err(|e| {
                    let e = ApiError::from_sdk(operation, e);
                    if e.throttled {
                        stats.throttled.fetch_add(1, Ordering::Relaxed);
                    }
                    e
                })
            }
        };
        let policy = ExponentialBuilder::default()
            .with_min_delay(self.backoff.min_delay)
            .with_max_delay(self.backoff.max_delay)
            .with_max_times(self.backoff.max_tries.saturating_sub(1))
            .with_jitter();
        let result = attempt
            .retry(policy)
            .when(|e: &ApiError| e.retryable)
            .notify(|e: &ApiError, wait: Duration| {
                stats.retried.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(cluster = %self.cluster, error = %e, ?wait, "EC2 call failed; retrying");
            })
            .await;
        if result.is_err() {
            stats.failed.fetch_add(1, Ordering::Relaxed);
        }
        result
    }
}
