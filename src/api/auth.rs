//! The API's door: every route but `/healthz`, `/metrics` and `/sns` needs a
//! bearer token (see `crate::auth`). No token is 401; a token that is not ours,
//! or ours but for another role, is 403; either way the handler never runs, so
//! nothing changes. Worker handlers then check that the worker acts only for
//! itself and its jobs (`CallerWorker`, `same_worker`).

use super::{ApiError, Ctx};
use crate::auth::Caller;
use axum::{
    extract::{FromRequestParts, MatchedPath, Request, State},
    http::{header, request::Parts, HeaderValue, Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use reconcilers::model::WorkerId;

/// The routes workers call; every other protected route is for submitters. So a
/// route added later is closed to workers unless it is named here.
fn is_worker_route(method: &Method, route: &str) -> bool {
    matches!(
        (method.as_str(), route),
        ("POST", "/v1/workers/register")
            | ("GET", "/v1/workers/{id}/assignments")
            | ("GET", "/v1/jobs/{id}/input")
            | ("PUT", "/v1/jobs/{id}/attempts/{n}/{blob}")
    )
}

/// Messages come from workers (reports) and from controllers (hints): the
/// handler decides per message.
fn is_shared_route(route: &str) -> bool {
    route == "/v1/messages"
}

fn bearer(req: &Request) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn unauthorized() -> Response {
    let mut resp = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "this API needs a token: send `Authorization: Bearer <token>`. The CLI reads it from \
         DROVER_TOKEN or from submit.token in the controller's data folder (--data-dir)",
    )
    .into_response();
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

fn forbidden(message: &str) -> Response {
    ApiError::new(StatusCode::FORBIDDEN, message).into_response()
}

/// The middleware (a `route_layer` over the protected routes).
pub async fn guard(State(c): State<Ctx>, mut req: Request, next: Next) -> Response {
    let Some(token) = bearer(&req) else {
        crate::metrics::auth_refused("no_token");
        return unauthorized();
    };
    let Some(caller) = c.auth.identify(token) else {
        // Counted, and logged at debug only: anyone who can reach the port
        // could otherwise fill the log. The path only: a token, even a wrong
        // one, never goes to the log.
        crate::metrics::auth_refused("unknown_token");
        tracing::debug!(path = %req.uri().path(), "refused a request with an unknown token");
        return forbidden("this token is not valid for this controller");
    };
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    let allowed = is_shared_route(&route)
        || match &caller {
            Caller::Submitter => !is_worker_route(req.method(), &route),
            Caller::Worker(_) => is_worker_route(req.method(), &route),
        };
    if !allowed {
        crate::metrics::auth_refused("wrong_role");
        let message = match caller {
            Caller::Submitter => "this route is for workers: the submit token cannot call it",
            Caller::Worker(_) => "a worker token cannot call the submitter API",
        };
        return forbidden(message);
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// The worker a request was authenticated as (403 for anyone else).
pub struct CallerWorker(pub WorkerId);

impl<S: Send + Sync> FromRequestParts<S> for CallerWorker {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Caller>() {
            Some(Caller::Worker(w)) => Ok(CallerWorker(w.clone())),
            _ => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "only a worker, with its own token, may call this",
            )),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this request was not authenticated",
            )
        })
    }
}

/// 403 unless the worker a request names is the one its token proves.
pub fn same_worker(caller: &WorkerId, named: &WorkerId) -> Result<(), ApiError> {
    if caller == named {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("the token of worker {caller} cannot act for worker {named}"),
        ))
    }
}
