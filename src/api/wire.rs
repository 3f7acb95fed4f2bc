//! Request and response bodies of the HTTP API, shared by the controller and its
//! clients (the CLI and the worker agent).

use reconcilers::{
    messages::HeldJob,
    model::{InstanceId, JobId, WorkerId},
};
use serde::{Deserialize, Serialize};

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
}

/// One attempt for a worker to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Assignment {
    pub job: JobId,
    pub attempt: u32,
}
