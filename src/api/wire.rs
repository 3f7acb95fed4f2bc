//! Request and response bodies of the HTTP API, shared by the controller and its
//! clients (the CLI and the worker agent).

use reconcilers::{
    messages::HeldJob,
    model::{InstanceId, JobId, WorkerId},
};
use serde::{Deserialize, Serialize};

/// `POST /v1/jobs` (optional body): what the client is about to upload, so an
/// input over the limit is refused before it is sent.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct AllocateRequest {
    /// The input sandbox's size (its files plus the JDL), in bytes.
    #[serde(default)]
    pub input_bytes: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Allocated {
    pub id: JobId,
}

/// Where to upload an input archive directly.
#[derive(Debug, Serialize, Deserialize)]
pub struct InputUrl {
    pub url: String,
    pub expires_in_secs: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SubmitRequest {
    /// The job's JDL (canonical form, as packed into the input archive).
    pub jdl: String,
    /// The input archive itself (base64) when it is small, instead of an
    /// upload of its own (`PUT /v1/jobs/{id}/input`) before the submit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RegisterRequest {
    pub instance: InstanceId,
    pub slots: u32,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Registered {
    pub worker: WorkerId,
    pub ping_interval_ms: u64,
    pub heartbeat_timeout_ms: u64,
}

/// The answer to a PING: which of the attempts the worker holds it must stop
/// (cancelled, or given to another worker), and whether the worker itself was
/// declared lost (then it must stop everything and register again).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct PingReply {
    pub lost: bool,
    pub stop: Vec<HeldJob>,
    /// Every controller of the cluster (they share one store): where the worker
    /// goes when the one it talks to cannot be reached.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub controllers: Vec<String>,
}

/// The most attempts an assignments poll may name as held (`held=`): more
/// slots than a worker has, and short enough for a URL (job ids may take 64
/// bytes). A worker holding more names the first ones; the others only make
/// the poll answer early.
pub const HELD_MAX: usize = 512;

/// Archives and logs up to this size travel inside a request (base64) instead
/// of as an upload or download of their own: an input with its submit or its
/// assignment, logs and an output with the worker's report.
pub const INLINE_MAX_BYTES: usize = 64 * 1024;

/// Bytes inside a JSON request or reply: standard base64.
pub fn encode_inline(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

pub fn decode_inline(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(text)
}

/// One attempt for a worker to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Assignment {
    pub job: JobId,
    pub attempt: u32,
    /// The input archive itself (base64) when it is small, which saves the
    /// worker a download; absent, the worker fetches `GET /v1/jobs/{id}/input`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
}

/// `POST /v1/batches`: how many job ids to allocate at once.
#[derive(Debug, Serialize, Deserialize)]
pub struct BatchAllocate {
    pub count: usize,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct BatchAllocated {
    pub ids: Vec<JobId>,
}

/// One job of a batch: its id (allocated, input uploaded) and its plain JDL.
#[derive(Debug, Serialize, Deserialize)]
pub struct BatchEntry {
    pub id: JobId,
    pub jdl: String,
    /// The input archive itself (base64) when it is small: stored with the
    /// batch, so that a batch of small jobs takes two requests in all. Absent:
    /// uploaded before (`PUT /v1/jobs/{id}/input`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
}

/// `POST /v1/batches/submit`: every job is queued, or none.
#[derive(Debug, Serialize, Deserialize)]
pub struct BatchSubmit {
    pub jobs: Vec<BatchEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct BatchSubmitted {
    pub submitted: Vec<JobId>,
}
