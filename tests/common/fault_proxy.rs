//! A fault-injecting HTTP proxy in front of moto: it forwards every request as it
//! came (method, path, query, headers with the SigV4 `Authorization` and the
//! original `Host`, body) and can be told to refuse the next N requests of a kind
//! with a throttling error in the service's own wire format, the way AWS does
//! when a caller goes too fast. It counts what it passed and what it refused.
//!
//! Clients point at `proxy.url` (or `proxy.sdk_config()`); the SDK then signs for
//! the proxy's address, and the proxy forwards that `Host` unchanged, so the
//! signature stays valid for whoever checks it (moto does not).
//!
//! It runs on its own thread and runtime, so it serves sync tests and
//! `#[tokio::test]`s alike and outlives no test: dropping it stops it.

use axum::{
    body::{Body, Bytes},
    extract::{Request, State},
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode},
    response::Response,
};
use std::{
    sync::{Arc, Mutex},
    thread::JoinHandle,
};

/// Which requests a fault applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// Every EC2 (query protocol) request.
    AnyEc2,
    /// EC2 requests with this `Action` (`RunInstances`, `DescribeInstances`, ...).
    Ec2Action(String),
    /// Every DynamoDB (JSON protocol) request.
    AnyDynamoDb,
    /// DynamoDB requests with this operation (`PutItem`, `BatchWriteItem`, ...).
    DynamoDbOperation(String),
}

/// What one request was, as the proxy classifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Ec2(String),
    DynamoDb(String),
    Other { method: String, path: String },
}

impl Match {
    fn matches(&self, kind: &Kind) -> bool {
        match (self, kind) {
            (Match::AnyEc2, Kind::Ec2(_)) | (Match::AnyDynamoDb, Kind::DynamoDb(_)) => true,
            (Match::Ec2Action(a), Kind::Ec2(b))
            | (Match::DynamoDbOperation(a), Kind::DynamoDb(b)) => a == b,
            _ => false,
        }
    }
}

/// One request the proxy handled, and whether it refused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub kind: Kind,
    pub refused: bool,
}

/// How a refused request is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    /// The service's throttling error (EC2: RequestLimitExceeded, HTTP 503;
    /// DynamoDB: ThrottlingException, HTTP 400).
    Throttle,
    /// Any error code with any status, in the service's wire format.
    Error { status: u16, code: String },
}

struct Rule {
    what: Match,
    left: usize,
    answer: Answer,
}

#[derive(Default)]
struct Faults {
    rules: Vec<Rule>,
    seen: Vec<Seen>,
}

struct Shared {
    upstream: String,
    client: reqwest::Client,
    faults: Mutex<Faults>,
}

pub struct FaultProxy {
    pub url: String,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy on 127.0.0.1:<free port> forwarding to `upstream` (moto's URL).
    pub fn start(upstream: &str) -> FaultProxy {
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_string(),
            // No proxy from the environment: the test talks to loopback only.
            client: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("an HTTP client"),
            faults: Mutex::new(Faults::default()),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the fault proxy");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let url = format!("http://{}", listener.local_addr().expect("proxy address"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = shared.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the proxy's runtime");
            rt.block_on(async move {
                let listener =
                    tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
                let app = axum::Router::new().fallback(forward).with_state(state);
                // Not graceful: SDK clients keep idle connections open forever.
                tokio::select! {
                    served = axum::serve(listener, app) => {
                        if let Err(e) = served { eprintln!("fault proxy: {e}"); }
                    }
                    _ = stopped => {}
                }
            });
        });
        FaultProxy {
            url,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Refuses the next `n` requests that match (added to any refusals pending).
    pub fn refuse_next(&self, n: usize, what: Match) {
        self.faults().rules.push(Rule {
            what,
            left: n,
            answer: Answer::Throttle,
        });
    }

    /// Answers the next `n` requests that match with this error code and status
    /// (`InsufficientInstanceCapacity` with 500, say).
    pub fn fail_next(&self, n: usize, what: Match, status: u16, code: &str) {
        self.faults().rules.push(Rule {
            what,
            left: n,
            answer: Answer::Error {
                status,
                code: code.to_string(),
            },
        });
    }

    /// Every request so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.faults().seen.clone()
    }

    /// (passed, refused) among the requests that match.
    pub fn count(&self, what: &Match) -> (usize, usize) {
        let f = self.faults();
        let matching = f.seen.iter().filter(|s| what.matches(&s.kind));
        matching.fold(
            (0, 0),
            |(p, r), s| if s.refused { (p, r + 1) } else { (p + 1, r) },
        )
    }

    pub fn passed(&self) -> usize {
        self.faults().seen.iter().filter(|s| !s.refused).count()
    }

    pub fn refused(&self) -> usize {
        self.faults().seen.iter().filter(|s| s.refused).count()
    }

    /// An SDK configuration pointed at the proxy (credentials and region as moto's).
    pub fn sdk_config(&self) -> aws_config::SdkConfig {
        let creds =
            aws_sdk_dynamodb::config::Credentials::new("testing", "testing", None, None, "proxy");
        aws_config::SdkConfig::builder()
            .region(aws_config::Region::new(super::moto::REGION))
            .endpoint_url(&self.url)
            .credentials_provider(aws_sdk_dynamodb::config::SharedCredentialsProvider::new(
                creds,
            ))
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build()
    }

    fn faults(&self) -> std::sync::MutexGuard<'_, Faults> {
        self.shared.faults.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Headers that belong to one connection, not to the request.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
    )
}

fn classify(method: &str, path: &str, headers: &HeaderMap, body: &[u8]) -> Kind {
    if let Some(target) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        if let Some(op) = target.strip_prefix("DynamoDB_20120810.") {
            return Kind::DynamoDb(op.to_string());
        }
    }
    let form = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if form {
        let action = url::form_urlencoded::parse(body).find(|(k, _)| k == "Action");
        let is_ec2 = url::form_urlencoded::parse(body)
            .any(|(k, v)| k == "Version" && v.starts_with("2016-11-15"));
        if let (Some((_, action)), true) = (action, is_ec2) {
            return Kind::Ec2(action.into_owned());
        }
    }
    Kind::Other {
        method: method.to_string(),
        path: path.to_string(),
    }
}

/// The error answer the service itself would give.
fn refusal(kind: &Kind, answer: &Answer, n: usize) -> Response {
    let request_id = format!("fault-proxy-{n}");
    let (status, code, message) = match (answer, kind) {
        (Answer::Throttle, Kind::DynamoDb(_)) => (
            400,
            "ThrottlingException",
            "Rate of requests exceeds the allowed throughput (fault proxy).",
        ),
        (Answer::Throttle, _) => (
            503,
            "RequestLimitExceeded",
            "Request limit exceeded (fault proxy).",
        ),
        (Answer::Error { status, code }, _) => {
            (*status, code.as_str(), "Injected by the fault proxy.")
        }
    };
    let (content_type, body) = match kind {
        Kind::DynamoDb(_) => (
            "application/x-amz-json-1.0",
            serde_json::json!({
                "__type": format!("com.amazonaws.dynamodb.v20120810#{code}"),
                "message": message,
            })
            .to_string(),
        ),
        _ => (
            "text/xml;charset=UTF-8",
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>"
            ),
        ),
    };
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert("x-amzn-requestid", v);
    }
    resp
}

fn bad_gateway(message: String) -> Response {
    let mut resp = Response::new(Body::from(message));
    *resp.status_mut() = StatusCode::BAD_GATEWAY;
    resp
}

async fn forward(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body: Bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => return bad_gateway(format!("fault proxy: reading the request body: {e}")),
    };
    let kind = classify(
        parts.method.as_str(),
        parts.uri.path(),
        &parts.headers,
        &body,
    );
    let refuse = {
        let mut f = shared.faults.lock().unwrap_or_else(|p| p.into_inner());
        let rule = f
            .rules
            .iter_mut()
            .find(|r| r.left > 0 && r.what.matches(&kind));
        let answer = rule.map(|r| {
            r.left -= 1;
            r.answer.clone()
        });
        f.seen.push(Seen {
            kind: kind.clone(),
            refused: answer.is_some(),
        });
        answer.map(|a| (a, f.seen.len()))
    };
    if let Some((answer, n)) = refuse {
        return refusal(&kind, &answer, n);
    }
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let url = format!("{}{}", shared.upstream, path_and_query);
    let mut headers = HeaderMap::new();
    for (name, value) in &parts.headers {
        if !hop_by_hop(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    let sent = shared
        .client
        .request(parts.method.clone(), &url)
        .headers(headers)
        .body(body)
        .send()
        .await;
    let upstream = match sent {
        Ok(r) => r,
        Err(e) => return bad_gateway(format!("fault proxy: forwarding to {url}: {e}")),
    };
    let status = upstream.status();
    let mut resp_headers = HeaderMap::new();
    for (name, value) in upstream.headers() {
        if !hop_by_hop(name) {
            resp_headers.append(name.clone(), value.clone());
        }
    }
    let bytes = match upstream.bytes().await {
        Ok(b) => b,
        Err(e) => return bad_gateway(format!("fault proxy: reading the answer of {url}: {e}")),
    };
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = status;
    *resp.headers_mut() = resp_headers;
    resp
}
