//! The controller's HTTP API (axum): for submitters (allocate an id, upload the
//! input, submit, status, list, wait, cancel, output, logs), for workers (register,
//! messages, assignments, uploads), and `/metrics`, `/healthz`.
//!
//! The request and response bodies are in `wire`, shared with the clients.

mod batch;
mod error;
mod jobs;
pub mod records;
pub mod wire;
mod workers;

pub use error::ApiError;

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
    let router = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(|| async { crate::metrics::render() }))
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
        .route("/v1/records/{name}/plan", post(records::plan));
    #[cfg(feature = "aws")]
    let router = router.route("/sns", post(crate::hints::receive::handler));
    router
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        .with_state(c)
}
