//! A fault-injecting HTTP proxy in front of moto: it forwards every request as it
//! came (method, path, query, headers with the SigV4 `Authorization` and the
//! original `Host`, body) and can be told to refuse the next N requests of a kind
//! with a throttling error in the service's own wire format, the way AWS does
//! when a caller goes too fast. It counts what it passed and what it refused.
//!
//! It can also make a share of the calls fail at random (`chaos`): answered with
//! throttling or a server error, answered late, or cut off (the connection is
//! closed before the request reaches moto, and nothing is answered), and it
//! tallies the faults it injected by kind.
//!
//! Clients point at `proxy.url` (or `proxy.sdk_config()`); the SDK then signs for
//! the proxy's address, and the proxy forwards that `Host` unchanged, so the
//! signature stays valid for whoever checks it (moto does not).
//!
//! It runs on its own thread and runtime, so it serves sync tests and
//! `#[tokio::test]`s alike and outlives no test: dropping it stops it.

use axum::{
    body::{Body, Bytes},
    extract::{connect_info::ConnectInfo, Request, State},
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode},
    response::Response,
};
use rand::{Rng, SeedableRng};
use std::{
    collections::{BTreeMap, HashSet},
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    thread::JoinHandle,
    time::Duration,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Which requests a fault applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// Every request signed for S3 in its `Authorization` header (the
    /// controller's blob calls; presigned uploads are not matched).
    AnyS3,
    /// Every SNS (query protocol) request.
    AnySns,
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
    /// An S3 call signed in its headers: the HTTP method.
    S3(String),
    /// An upload to a presigned S3 URL (the frontend's): the HTTP method.
    S3Presigned(String),
    /// An SNS call: its `Action`.
    Sns(String),
    Other {
        method: String,
        path: String,
    },
}

impl Match {
    fn matches(&self, kind: &Kind) -> bool {
        match (self, kind) {
            (Match::AnyEc2, Kind::Ec2(_))
            | (Match::AnyDynamoDb, Kind::DynamoDb(_))
            | (Match::AnyS3, Kind::S3(_))
            | (Match::AnySns, Kind::Sns(_)) => true,
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
    /// Answered with an error or cut off: it never reached moto.
    pub refused: bool,
    /// The fault injected, if any (a slow answer is a fault that still passes).
    pub fault: Option<Fault>,
}

/// A fault `chaos` may inject into a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    /// The service's throttling error.
    Throttle,
    /// HTTP 500 with the service's internal-error code.
    ServerError,
    /// Forwarded, and answered this much later.
    Slow(Duration),
    /// The connection is closed before the request is forwarded: no answer.
    Drop,
}

impl Fault {
    pub fn name(&self) -> &'static str {
        match self {
            Fault::Throttle => "throttle",
            Fault::ServerError => "server_error",
            Fault::Slow(_) => "slow",
            Fault::Drop => "dropped_connection",
        }
    }
}

/// Random faults on a share of the calls that match.
struct Chaos {
    faults: Vec<Fault>,
    /// The calls that may meet a fault, each kind with its share.
    what: Vec<(Match, f64)>,
    rng: rand::rngs::StdRng,
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
    chaos: Option<Chaos>,
    seen: Vec<Seen>,
}

struct Shared {
    upstream: String,
    client: reqwest::Client,
    faults: Mutex<Faults>,
    /// Connections (by the caller's address) to cut before anything is answered.
    doomed: Arc<Mutex<HashSet<SocketAddr>>>,
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
            doomed: Arc::default(),
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
                let listener = Cuttable {
                    inner: tokio::net::TcpListener::from_std(listener).expect("a tokio listener"),
                    doomed: state.doomed.clone(),
                };
                let app = axum::Router::new()
                    .fallback(forward)
                    .with_state(state)
                    .into_make_service_with_connect_info::<Peer>();
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

    /// From now on, each call that matches one of `what` gets, with that
    /// match's probability (the first that matches), one of `faults` drawn at
    /// random (seeded: a run can be replayed).
    pub fn chaos(&self, what: &[(Match, f64)], faults: &[Fault], seed: u64) {
        self.faults().chaos = Some(Chaos {
            faults: faults.to_vec(),
            what: what.to_vec(),
            rng: rand::rngs::StdRng::seed_from_u64(seed),
        });
    }

    /// No more random faults (the rules of `refuse_next` and `fail_next` stay).
    pub fn calm(&self) {
        self.faults().chaos = None;
    }

    /// The faults injected so far, by kind.
    pub fn tally(&self) -> BTreeMap<&'static str, usize> {
        let mut t = BTreeMap::new();
        for f in self.faults().seen.iter().filter_map(|s| s.fault) {
            *t.entry(f.name()).or_default() += 1;
        }
        t
    }

    /// Calls seen so far by service: (calls, faults injected).
    pub fn calls_by_service(&self) -> BTreeMap<&'static str, (usize, usize)> {
        let mut t = BTreeMap::new();
        for s in self.faults().seen.iter() {
            let service = match s.kind {
                Kind::Ec2(_) => "ec2",
                Kind::DynamoDb(_) => "dynamodb",
                Kind::S3(_) | Kind::S3Presigned(_) => "s3",
                Kind::Sns(_) => "sns",
                Kind::Other { .. } => "other",
            };
            let entry: &mut (usize, usize) = t.entry(service).or_default();
            entry.0 += 1;
            entry.1 += usize::from(s.fault.is_some());
        }
        t
    }

    /// Whether every request refused so far was sent again later, and passed.
    pub fn every_refusal_retried(&self) -> bool {
        let seen = self.seen();
        seen.iter()
            .enumerate()
            .filter(|(_, s)| s.refused)
            .all(|(i, s)| {
                seen[i + 1..]
                    .iter()
                    .any(|later| later.kind == s.kind && !later.refused)
            })
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

fn classify(method: &str, path: &str, query: &str, headers: &HeaderMap, body: &[u8]) -> Kind {
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
        let is_sns = url::form_urlencoded::parse(body)
            .any(|(k, v)| k == "Version" && v.starts_with("2010-03-31"));
        if let (Some((_, action)), true) = (
            url::form_urlencoded::parse(body).find(|(k, _)| k == "Action"),
            is_sns,
        ) {
            return Kind::Sns(action.into_owned());
        }
    }
    // SigV4 names the service in the credential scope: `.../us-east-1/s3/aws4_request`.
    let signed_for_s3 = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("/s3/aws4_request"));
    if signed_for_s3 {
        return Kind::S3(method.to_string());
    }
    if query.contains("X-Amz-Credential=") && query.contains("%2Fs3%2Faws4_request") {
        return Kind::S3Presigned(method.to_string());
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
        (Answer::Throttle, Kind::S3(_) | Kind::S3Presigned(_)) => (
            503,
            "SlowDown",
            "Please reduce your request rate (fault proxy).",
        ),
        (Answer::Throttle, Kind::Sns(_)) => (400, "Throttling", "Rate exceeded (fault proxy)."),
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
        Kind::S3(_) | Kind::S3Presigned(_) => (
            "application/xml",
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>{request_id}</RequestId></Error>"
            ),
        ),
        Kind::Sns(_) => (
            "text/xml",
            format!(
                "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
            ),
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

/// What the proxy does with one request.
enum Decision {
    Pass,
    Answer(Answer),
    Slow(Duration),
    Drop,
}

impl Faults {
    /// The pending rules first (in the order they were given), then chaos.
    fn decide(&mut self, kind: &Kind) -> (Decision, Option<Fault>) {
        let rule = self
            .rules
            .iter_mut()
            .find(|r| r.left > 0 && r.what.matches(kind));
        if let Some(r) = rule {
            r.left -= 1;
            let fault = match r.answer {
                Answer::Throttle => Fault::Throttle,
                Answer::Error { .. } => Fault::ServerError,
            };
            return (Decision::Answer(r.answer.clone()), Some(fault));
        }
        let Some(chaos) = self.chaos.as_mut() else {
            return (Decision::Pass, None);
        };
        let share = chaos
            .what
            .iter()
            .find(|(m, _)| m.matches(kind))
            .map_or(0.0, |(_, share)| *share);
        if chaos.faults.is_empty() || !chaos.rng.random_bool(share.clamp(0.0, 1.0)) {
            return (Decision::Pass, None);
        }
        let fault = chaos.faults[chaos.rng.random_range(0..chaos.faults.len())];
        let decision = match fault {
            Fault::Throttle => Decision::Answer(Answer::Throttle),
            Fault::ServerError => Decision::Answer(Answer::Error {
                status: 500,
                code: internal_error_code(kind).to_string(),
            }),
            Fault::Slow(d) => Decision::Slow(d),
            Fault::Drop => Decision::Drop,
        };
        (decision, Some(fault))
    }
}

/// The code each service gives its own internal errors.
fn internal_error_code(kind: &Kind) -> &'static str {
    match kind {
        Kind::DynamoDb(_) => "InternalServerError",
        Kind::Sns(_) => "InternalFailure",
        _ => "InternalError",
    }
}

async fn forward(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let body: Bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => return bad_gateway(format!("fault proxy: reading the request body: {e}")),
    };
    let kind = classify(
        parts.method.as_str(),
        parts.uri.path(),
        parts.uri.query().unwrap_or(""),
        &parts.headers,
        &body,
    );
    let (decision, n) = {
        let mut f = shared.faults.lock().unwrap_or_else(|p| p.into_inner());
        let (decision, fault) = f.decide(&kind);
        f.seen.push(Seen {
            kind: kind.clone(),
            refused: matches!(decision, Decision::Answer(_) | Decision::Drop),
            fault,
        });
        (decision, f.seen.len())
    };
    match decision {
        Decision::Pass => {}
        Decision::Answer(answer) => return refusal(&kind, &answer, n),
        Decision::Slow(d) => tokio::time::sleep(d).await,
        Decision::Drop => {
            // The connection's next write fails and closes it: the caller gets
            // no answer at all, as when a connection breaks mid-call.
            shared
                .doomed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(peer.0);
            return bad_gateway("fault proxy: connection cut".to_string());
        }
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

/// The caller's address, which identifies its connection.
#[derive(Debug, Clone, Copy)]
struct Peer(SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, Cuttable>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, Cuttable>) -> Peer {
        Peer(*stream.remote_addr())
    }
}

/// A TCP listener whose connections can be cut from a request handler.
struct Cuttable {
    inner: tokio::net::TcpListener,
    doomed: Arc<Mutex<HashSet<SocketAddr>>>,
}

impl axum::serve::Listener for Cuttable {
    type Io = CuttableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (CuttableStream, SocketAddr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, peer)) => {
                    let doomed = self.doomed.clone();
                    return (
                        CuttableStream {
                            stream,
                            peer,
                            doomed,
                        },
                        peer,
                    );
                }
                // Out of file descriptors and the like: try again shortly.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// A connection whose writes fail once its peer is doomed: the server then
/// drops it before any byte of the answer went out.
struct CuttableStream {
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    doomed: Arc<Mutex<HashSet<SocketAddr>>>,
}

impl CuttableStream {
    fn cut(&self) -> Option<std::io::Error> {
        let mut doomed = self.doomed.lock().unwrap_or_else(|p| p.into_inner());
        doomed.remove(&self.peer).then(|| {
            std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "cut by the fault proxy",
            )
        })
    }
}

impl AsyncRead for CuttableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for CuttableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if let Some(e) = self.cut() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if let Some(e) = self.cut() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
