//! Serving the API over HTTP/1.1 with limits for slow clients, which
//! `axum::serve` does not set: a client must send its request headers within
//! `header_timeout` (hyper's header read timeout, which also closes a keep-alive
//! connection left idle that long), and a request body may pause at most
//! `body_idle_timeout` between two pieces (tower-http's `TimeoutBody`).
//!
//! Neither limit bounds how long a request lasts: long polls (`/wait`,
//! `/assignments`) and large uploads that keep moving are untouched.
//!
//! Two bounds on the whole server: at most `MAX_CONNECTIONS` connections at
//! once (more wait in the listen backlog instead of taking a task and buffers
//! each), and a shutdown waits at most `DRAIN_TIMEOUT` for the requests in
//! flight (a client that stopped reading a download must not hold a restart).

use axum::{body::Body, extract::Request, Router};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
};
use std::{sync::Arc, time::Duration};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;
use tower_http::timeout::TimeoutBody;

/// What a slow client may get away with.
#[derive(Debug, Clone, Copy)]
pub struct SlowClientLimits {
    pub header_timeout: Duration,
    pub body_idle_timeout: Duration,
}

/// Connections served at once. Each worker keeps one or two (a long poll and
/// its reports), each CLI one: thousands of workers fit, a flood of idle
/// sockets does not take the controller's memory and file descriptors.
pub const MAX_CONNECTIONS: usize = 8192;

/// How long a shutdown waits for the requests in flight before it drops them.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `stop` is cancelled, then lets the requests
/// in flight finish (connections close after their current response), for at
/// most `DRAIN_TIMEOUT`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: SlowClientLimits,
    stop: CancellationToken,
) {
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        // At the cap, stop accepting: new clients wait in the backlog.
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break, // never closed
            },
            _ = stop.cancelled() => break,
        };
        let (socket, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %e, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        let _ = socket.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let req = req.map(|body| Body::new(TimeoutBody::new(limits.body_idle_timeout, body)));
            app.clone().oneshot(req)
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .serve_connection(TokioIo::new(socket), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "shutting down with requests still in flight after {DRAIN_TIMEOUT:?} (a client not reading its answer?): they are dropped"
        );
    }
}

/// Whether a blob upload failed because its body paused past
/// `body_idle_timeout` (then the answer is 408, not a storage error).
pub(super) fn body_stalled(e: &crate::blobs::BlobError) -> bool {
    let crate::blobs::BlobError::Io { source, .. } = e else {
        return false;
    };
    // `io::Error::source` skips the error it wraps: start from `get_ref`.
    let mut cause: Option<&(dyn std::error::Error + 'static)> = source
        .get_ref()
        .map(|e| e as &(dyn std::error::Error + 'static));
    while let Some(e) = cause {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// The 408 for an upload whose body stalled.
pub(super) fn stalled(what: &str) -> super::ApiError {
    super::ApiError::new(
        axum::http::StatusCode::REQUEST_TIMEOUT,
        format!("the upload of {what} stalled: its body paused longer than the controller waits (limits.body_idle_timeout)"),
    )
}
