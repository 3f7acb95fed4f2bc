//! API errors: an HTTP status and a message that says what went wrong and, where
//! it can, what to do. The body is `{"error": "..."}`.

use crate::{blobs::BlobError, store::StoreError};
use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use reconcilers::jobs::Refusal;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, error = %self.message, "request failed");
        } else {
            tracing::debug!(status = %self.status, error = %self.message, "request refused");
        }
        (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        let status = match e {
            StoreError::NotFound(_) => StatusCode::NOT_FOUND,
            StoreError::Conflict { .. } | StoreError::AlreadyExists(_) => StatusCode::CONFLICT,
            StoreError::Backend(_) | StoreError::Fenced { .. } => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<BlobError> for ApiError {
    fn from(e: BlobError) -> ApiError {
        let status = match e {
            BlobError::NotFound(_) => StatusCode::NOT_FOUND,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(status, e.to_string())
    }
}

/// A refused report or request: stale attempts and wrong states are conflicts
/// (409), a worker acting for another is forbidden (403).
impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> ApiError {
        let status = match r {
            Refusal::WrongWorker { .. } => StatusCode::FORBIDDEN,
            Refusal::StaleAttempt { .. } | Refusal::WrongState { .. } => StatusCode::CONFLICT,
        };
        ApiError::new(status, r.to_string())
    }
}
