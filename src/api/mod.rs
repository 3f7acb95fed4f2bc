//! The controller's HTTP API (axum): for submitters (allocate an id, upload the
//! input, submit, status, list, wait, cancel, output, logs), for workers (register,
//! messages, assignments, uploads), and `/metrics`, `/healthz`.
//!
//! Callers prove who they are with bearer tokens (`auth`); slow clients are cut
//! off (`serve`). The request and response bodies are in `wire`, shared with
//! the clients.

mod auth;
mod batch;
mod error;
mod jobs;
pub mod records;
mod serve;
pub mod wire;
mod workers;

pub use error::ApiError;
pub use serve::{serve, SlowClientLimits};

use crate::runtime::Controller;
use axum::{
    extract::DefaultBodyLimit,
    routing::{get, post, put},
    Router,
};
use std::sync::Arc;

pub type Ctx = Arc<Controller>;

/// JSON bodies are small; archives are streamed with their own limits.
const JSON_BODY_LIMIT: usize = 2 << 20;

pub fn router(c: Ctx) -> Router {
    // Every route added here needs a token (see `auth`); the open ones come after
    // the `route_layer`, which covers only the routes above it.
    let router = Router::new()
        .route("/v1/jobs", post(jobs::allocate).get(jobs::list))
        .route("/v1/jobs/{id}", get(jobs::status))
        .route(
            "/v1/jobs/{id}/input",
            put(jobs::upload_input).get(workers::download_input),
        )
        .route("/v1/jobs/{id}/submit", post(jobs::submit))
        .route("/v1/batches", post(batch::allocate))
        .route("/v1/batches/submit", post(batch::submit))
        .route("/v1/jobs/{id}/input-url", post(jobs::input_url))
        .route("/v1/jobs/{id}/wait", get(jobs::wait))
        .route("/v1/jobs/{id}/cancel", post(jobs::cancel))
        .route("/v1/jobs/{id}/output", get(jobs::output))
        .route("/v1/jobs/{id}/logs", get(jobs::logs))
        .route("/v1/workers/register", post(workers::register))
        .route("/v1/workers/{id}/assignments", get(workers::assignments))
        .route(
            "/v1/jobs/{id}/attempts/{n}/{blob}",
            put(workers::upload_attempt_blob),
        )
        .route("/v1/messages", post(workers::message))
        .route("/v1/records", get(records::list))
        .route(
            "/v1/records/{name}",
            get(records::get)
                .put(records::apply)
                .delete(records::delete),
        )
        .route("/v1/records/{name}/plan", post(records::plan))
        .route_layer(axum::middleware::from_fn_with_state(c.clone(), auth::guard))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(|| async { crate::metrics::render() }));
    // SNS signs its messages itself (checked by the receiver).
    #[cfg(feature = "aws")]
    let router = router.route("/sns", post(crate::hints::receive::handler));
    router
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        .with_state(c)
}
