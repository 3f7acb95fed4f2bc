//! The HTTP client of the controller's API, used by the CLI and the worker agent.

mod records;

use crate::api::wire::*;
use reconcilers::{
    messages::{HeldJob, Message},
    model::{InstanceId, Job, JobId, WorkerId},
};
use reqwest::{Body, StatusCode};
use serde::de::DeserializeOwned;
use std::time::Duration;

pub const CONTROLLER_ENV: &str = "DROVER_CONTROLLER";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach the drover controller at {url}: {detail}\n\
         Start one with `drover controller` (or run a job at once with `drover run FILE`), \
         or point {CONTROLLER_ENV} / --controller at a running one."
    )]
    Unreachable { url: String, detail: String },
    /// The controller answered with an error status and message.
    #[error("{message}")]
    Api { status: StatusCode, message: String },
    #[error("talking to the controller at {url}: {detail}")]
    Other { url: String, detail: String },
    /// A presigned upload did not reach S3 (`host` only: the URL's query is a signature).
    #[error("uploading to S3 at {host}: {detail}")]
    Storage { host: String, detail: String },
}

/// At most this much of an error answer's body is read: a message is short, and
/// a body without end (a proxy's page, a stream) must not be held in memory.
const CONTROLLER_ERROR_BYTES: usize = 64 * 1024;
const S3_ERROR_BYTES: usize = 4 * 1024;

/// The first `limit` bytes of a body, as text; `[...]` marks a cut.
async fn read_capped(mut resp: reqwest::Response, limit: usize) -> String {
    let mut body = Vec::new();
    let mut cut = false;
    // A body that breaks off is reported as far as it came.
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = limit - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            cut = true;
            break;
        }
        body.extend_from_slice(&chunk);
    }
    let mut text = String::from_utf8_lossy(&body).trim().to_string();
    if cut {
        text.push_str(" [...]");
    }
    text
}

/// The controller answers `{"error": "..."}`; anything else (a proxy) is shown as is.
fn controller_message(status: StatusCode, text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or_else(|| format!("controller answered {status}: {text}"))
}

/// S3 answers `<Error><Code>..</Code><Message>..</Message>..</Error>`.
fn s3_message(status: StatusCode, text: &str) -> String {
    let element = |name: &str| {
        let (_, rest) = text.split_once(&format!("<{name}>"))?;
        let (value, _) = rest.split_once(&format!("</{name}>"))?;
        Some(value.trim())
    };
    match (element("Code"), element("Message")) {
        (Some(code), Some(message)) => format!("S3 answered {status}: {code}: {message}"),
        _ => format!("S3 answered {status}: {text}"),
    }
}

/// Where a presigned URL points, without its path and signed query.
fn host_of(url: &str) -> String {
    let parsed = reqwest::Url::parse(url).ok();
    let host = parsed.as_ref().and_then(|u| {
        let host = u.host_str()?;
        Some(match u.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        })
    });
    host.unwrap_or_else(|| "a presigned URL".to_string())
}

impl ClientError {
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Cheap to clone; clones share the controller's address, which a worker may
/// change when its controller comes back elsewhere.
#[derive(Clone)]
pub struct Client {
    base: std::sync::Arc<std::sync::RwLock<String>>,
    http: reqwest::Client,
    /// Sent as `Authorization: Bearer` to the controller (never to a presigned URL).
    token: Option<crate::auth::Token>,
}

fn normalise(base: &str) -> String {
    let base = base.trim().trim_end_matches('/');
    if base.contains("://") {
        base.to_string()
    } else {
        format!("http://{base}")
    }
}

impl Client {
    pub fn new(base: &str) -> Client {
        let base = std::sync::Arc::new(std::sync::RwLock::new(normalise(base)));
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            // Below the controller's header timeout (30s by default), which also
            // closes idle connections: the client lets go of one first rather
            // than send a request on a connection the server is closing.
            .pool_idle_timeout(Duration::from_secs(20))
            .build()
            .unwrap_or_default();
        Client {
            base,
            http,
            token: None,
        }
    }

    /// Authenticates every request to the controller with this token.
    pub fn with_token(mut self, token: Option<crate::auth::Token>) -> Client {
        self.token = token;
        self
    }

    pub fn base(&self) -> String {
        self.base.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Points this client (and its clones) at another controller address.
    pub fn set_base(&self, base: &str) {
        *self.base.write().unwrap_or_else(|p| p.into_inner()) = normalise(base);
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    fn transport_error(&self, e: reqwest::Error) -> ClientError {
        let url = self.base();
        let detail = std::error::Error::source(&e).map_or_else(|| e.to_string(), |s| s.to_string());
        if e.is_connect() {
            ClientError::Unreachable { url, detail }
        } else {
            ClientError::Other {
                url,
                detail: format!("{e}: {detail}"),
            }
        }
    }

    /// A request to the controller, with the token.
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, ClientError> {
        let req = match &self.token {
            Some(token) => req.bearer_auth(token.expose()),
            None => req,
        };
        let resp = req.send().await.map_err(|e| self.transport_error(e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let text = read_capped(resp, CONTROLLER_ERROR_BYTES).await;
        let message = controller_message(status, &text);
        Err(ClientError::Api { status, message })
    }

    async fn json<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let resp = self.send(req).await?;
        resp.json().await.map_err(|e| self.transport_error(e))
    }

    /// A job id for an input of `input_bytes`: refused (413) before anything
    /// is made when the input is over the controller's limit.
    pub async fn allocate_for_input(&self, input_bytes: u64) -> Result<JobId, ClientError> {
        let body = AllocateRequest {
            input_bytes: Some(input_bytes),
        };
        let req = self.http.post(self.url("/v1/jobs")).json(&body);
        let a: Allocated = self.json(req).await?;
        Ok(a.id)
    }

    pub async fn allocate(&self) -> Result<JobId, ClientError> {
        let a: Allocated = self.json(self.http.post(self.url("/v1/jobs"))).await?;
        Ok(a.id)
    }

    pub async fn upload_input(&self, id: &JobId, body: impl Into<Body>) -> Result<(), ClientError> {
        self.send(
            self.http
                .put(self.url(&format!("/v1/jobs/{id}/input")))
                .body(body),
        )
        .await
        .map(|_| ())
    }

    /// A presigned upload URL for the job's input, `None` when the controller's
    /// blobs are local (then the input goes through `upload_input`).
    pub async fn input_url(&self, id: &JobId) -> Result<Option<String>, ClientError> {
        let req = self
            .http
            .post(self.url(&format!("/v1/jobs/{id}/input-url")));
        match self.json::<InputUrl>(req).await {
            Ok(u) => Ok(Some(u.url)),
            Err(ClientError::Api { status, .. }) if status == StatusCode::NOT_FOUND => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// PUTs a body of `len` bytes to a presigned S3 URL (S3 wants the length up
    /// front), without the controller's token: S3 is a third party.
    pub async fn upload_presigned_body(
        &self,
        url: &str,
        body: Body,
        len: u64,
    ) -> Result<(), ClientError> {
        let req = self
            .http
            .put(url)
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(body);
        let resp = req.send().await.map_err(|e| {
            // Its URL would print the signature.
            let e = e.without_url();
            let detail = std::error::Error::source(&e)
                .map_or_else(|| e.to_string(), |s| format!("{e}: {s}"));
            ClientError::Storage {
                host: host_of(url),
                detail,
            }
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let text = read_capped(resp, S3_ERROR_BYTES).await;
        let message = s3_message(status, &text);
        Err(ClientError::Api { status, message })
    }

    /// Queues job `id` with its JDL; `input`: its input archive (base64), if
    /// small and not uploaded.
    pub async fn submit(
        &self,
        id: &JobId,
        jdl: String,
        input: Option<String>,
    ) -> Result<Job, ClientError> {
        let req = self
            .http
            .post(self.url(&format!("/v1/jobs/{id}/submit")))
            .json(&SubmitRequest { jdl, input });
        self.json(req).await
    }

    /// `count` new job ids in one request (bulk submission).
    pub async fn allocate_batch(&self, count: usize) -> Result<Vec<JobId>, ClientError> {
        let req = self
            .http
            .post(self.url("/v1/batches"))
            .json(&BatchAllocate { count });
        let a: BatchAllocated = self.json(req).await?;
        Ok(a.ids)
    }

    /// Queues every job of the batch (inputs uploaded), or none.
    pub async fn submit_batch(&self, jobs: Vec<BatchEntry>) -> Result<Vec<JobId>, ClientError> {
        let req = self
            .http
            .post(self.url("/v1/batches/submit"))
            .json(&BatchSubmit { jobs });
        let s: BatchSubmitted = self.json(req).await?;
        Ok(s.submitted)
    }

    pub async fn job(&self, id: &JobId) -> Result<Job, ClientError> {
        self.json(self.http.get(self.url(&format!("/v1/jobs/{id}"))))
            .await
    }

    pub async fn jobs(&self, states: &str, limit: usize) -> Result<Vec<Job>, ClientError> {
        let req = self
            .http
            .get(self.url("/v1/jobs"))
            .query(&[("state", states), ("limit", &limit.to_string())]);
        self.json(req).await
    }

    /// Waits up to `timeout` for the job to finish; returns it in whatever state.
    pub async fn wait(&self, id: &JobId, timeout: Duration) -> Result<Job, ClientError> {
        let req = self
            .http
            .get(self.url(&format!("/v1/jobs/{id}/wait")))
            .query(&[("timeout_ms", timeout.as_millis().to_string())])
            .timeout(timeout + Duration::from_secs(30));
        self.json(req).await
    }

    pub async fn cancel(&self, id: &JobId) -> Result<Job, ClientError> {
        self.json(self.http.post(self.url(&format!("/v1/jobs/{id}/cancel"))))
            .await
    }

    pub async fn output(&self, id: &JobId) -> Result<reqwest::Response, ClientError> {
        self.send(self.http.get(self.url(&format!("/v1/jobs/{id}/output"))))
            .await
    }

    pub async fn logs(
        &self,
        id: &JobId,
        stream: &str,
        attempt: Option<u32>,
    ) -> Result<String, ClientError> {
        let mut req = self
            .http
            .get(self.url(&format!("/v1/jobs/{id}/logs")))
            .query(&[("stream", stream)]);
        if let Some(n) = attempt {
            req = req.query(&[("attempt", n)]);
        }
        let resp = self.send(req).await?;
        resp.text().await.map_err(|e| self.transport_error(e))
    }

    // ---- worker side ----

    pub async fn register(
        &self,
        instance: &InstanceId,
        slots: u32,
    ) -> Result<Registered, ClientError> {
        let body = RegisterRequest {
            instance: instance.clone(),
            slots,
        };
        self.json(self.http.post(self.url("/v1/workers/register")).json(&body))
            .await
    }

    /// Sends a message; the reply's JSON is returned as is.
    pub async fn message<T: DeserializeOwned>(&self, msg: &Message) -> Result<T, ClientError> {
        let req = self
            .http
            .post(self.url("/v1/messages"))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(msg.to_json());
        self.json(req).await
    }

    /// The attempts assigned to `worker` beyond those it `held` already,
    /// waiting up to `wait` for one.
    pub async fn assignments(
        &self,
        worker: &WorkerId,
        wait: Duration,
        held: &[HeldJob],
    ) -> Result<Vec<Assignment>, ClientError> {
        let held = held
            .iter()
            .take(HELD_MAX)
            .map(|h| format!("{}.{}", h.job, h.attempt))
            .collect::<Vec<_>>()
            .join(",");
        let req = self
            .http
            .get(self.url(&format!("/v1/workers/{worker}/assignments")))
            .query(&[("wait_ms", wait.as_millis().to_string()), ("held", held)])
            .timeout(wait + Duration::from_secs(30));
        self.json(req).await
    }

    pub async fn download_input(&self, id: &JobId) -> Result<reqwest::Response, ClientError> {
        self.send(self.http.get(self.url(&format!("/v1/jobs/{id}/input"))))
            .await
    }

    /// Uploads an attempt's output archive (`blob = "output"`) or a log.
    pub async fn upload_attempt_blob(
        &self,
        id: &JobId,
        attempt: u32,
        blob: &str,
        worker: &WorkerId,
        body: impl Into<Body>,
    ) -> Result<(), ClientError> {
        let req = self
            .http
            .put(self.url(&format!("/v1/jobs/{id}/attempts/{attempt}/{blob}")))
            .query(&[("worker", worker.as_str())])
            .body(body);
        self.send(req).await.map(|_| ())
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
