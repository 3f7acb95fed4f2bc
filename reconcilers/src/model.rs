//! The domain model: ids, jobs and their attempts, workers, instances, fleet settings.
//!
//! Everything here is plain data. The store persists it, the reconcilers decide over
//! it, the API serialises it; none of them needs anything but these types.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Milliseconds since the Unix epoch. Time is passed in, never read, so that the
/// reconcilers can be driven by a deterministic clock.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub fn millis(self) -> u64 {
        self.0
    }
    pub fn plus_ms(self, ms: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(ms))
    }
    /// Milliseconds from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            pub fn new(s: impl Into<String>) -> Self {
                Self(s.into())
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_id!(
    /// A job's id, allocated by the controller before anything is uploaded.
    JobId
);
string_id!(
    /// A worker agent's id. Locally and on EC2 a worker is named after its instance.
    WorkerId
);
string_id!(
    /// An instance: a local worker process or an EC2 instance.
    InstanceId
);
string_id!(
    /// The idempotency key of one launch decision (EC2 ClientToken is derived from it),
    /// so that a retried or repeated launch never doubles an instance.
    LaunchKey
);

impl JobId {
    /// Job ids travel in URLs and blob keys: only `[A-Za-z0-9_-]`, 1 to 64 characters.
    pub fn is_valid(s: &str) -> bool {
        !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }
}

/// The lifecycle of a job (see DESIGN.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Id allocated, inputs uploading.
    Created,
    /// Waiting for a worker.
    Queued,
    /// Given to a worker for an attempt; the worker has not said it started.
    Assigned,
    /// The worker is running the attempt.
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 7] = [
        JobState::Created,
        JobState::Queued,
        JobState::Assigned,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
    ];

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }

    /// Holding a worker's slot.
    pub fn is_on_worker(self) -> bool {
        matches!(self, JobState::Assigned | JobState::Running)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Created => "created",
            JobState::Queued => "queued",
            JobState::Assigned => "assigned",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        JobState::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the controller needs to know of a job's JDL to schedule it. The JDL itself
/// is a blob; the worker reads it from the input archive.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct JobSpec {
    pub name: Option<String>,
    /// RetryCount: retries of attempts in which the job ran and failed.
    pub retry_count: u32,
    /// ShallowRetryCount: retries of attempts that failed before the job ran
    /// (lost worker, failed download, failed prologue).
    pub shallow_retry_count: u32,
    /// MaxWallTime in seconds; the worker enforces it.
    pub max_wall_time_secs: Option<u64>,
    /// The name the output archive is fetched under (`output.tar.gz`, or the seed's
    /// single `OutputSandbox = {result.tar.gz}` entry).
    pub output_archive: String,
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// The Executable ran and exited 0 (and the Epilogue, if any, too).
    Succeeded,
    /// The Executable ran and failed: non-zero exit, killed, or over MaxWallTime.
    Failed,
    /// The attempt failed before the Executable ran: download, unpack, prologue,
    /// missing executable. Counted against ShallowRetryCount.
    FailedBeforeRun,
    /// The worker was declared lost during the attempt.
    WorkerLost,
    /// The job was cancelled during the attempt.
    Cancelled,
}

impl AttemptOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Succeeded => "succeeded",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::FailedBeforeRun => "failed_before_run",
            AttemptOutcome::WorkerLost => "worker_lost",
            AttemptOutcome::Cancelled => "cancelled",
        }
    }

    /// Shallow failures are those in which the job itself never ran.
    pub fn is_shallow(self) -> bool {
        matches!(
            self,
            AttemptOutcome::FailedBeforeRun | AttemptOutcome::WorkerLost
        )
    }
}

/// One try at running a job on one worker. Attempts are numbered from 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub number: u32,
    pub worker: WorkerId,
    pub assigned_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub exit_code: Option<i32>,
    pub outcome: Option<AttemptOutcome>,
    pub reason: Option<String>,
    /// Whether this attempt uploaded an output archive.
    pub has_output: bool,
    /// The logs its worker reported empty and so did not upload. Only these read
    /// as empty when missing: another missing log was never uploaded.
    #[serde(default, skip_serializing_if = "EmptyLogs::is_none")]
    pub empty_logs: EmptyLogs,
}

/// Which of an attempt's logs were empty. A worker does not upload an empty log
/// (a quiet job saves three requests), so the controller needs its word for it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EmptyLogs {
    pub stdout: bool,
    pub stderr: bool,
    pub worker: bool,
}

impl EmptyLogs {
    pub fn is_none(&self) -> bool {
        *self == EmptyLogs::default()
    }

    /// As one small integer (stdout 1, stderr 2, worker 4), for a table column.
    pub fn bits(self) -> u8 {
        u8::from(self.stdout) | u8::from(self.stderr) << 1 | u8::from(self.worker) << 2
    }

    pub fn from_bits(bits: u8) -> EmptyLogs {
        EmptyLogs {
            stdout: bits & 1 != 0,
            stderr: bits & 2 != 0,
            worker: bits & 4 != 0,
        }
    }
}

/// The durable record of a job. `version` is the optimistic-concurrency token: every
/// change is written only if the stored version is still the one that was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub id: JobId,
    pub state: JobState,
    pub version: u64,
    pub spec: JobSpec,
    pub created_at: Timestamp,
    /// When the job last entered `Queued` (dispatch order and latency).
    pub queued_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    /// Every attempt so far, oldest first; the last one is the current one.
    pub attempts: Vec<Attempt>,
    pub exit_code: Option<i32>,
    /// Why the job is in its state, for people: "worker w-3 lost", "exit code 3", ...
    pub reason: Option<String>,
}

impl Job {
    pub fn new(id: JobId, now: Timestamp) -> Job {
        Job {
            id,
            state: JobState::Created,
            version: 0,
            spec: JobSpec::default(),
            created_at: now,
            queued_at: None,
            finished_at: None,
            attempts: Vec::new(),
            exit_code: None,
            reason: None,
        }
    }

    pub fn current_attempt(&self) -> Option<&Attempt> {
        self.attempts.last()
    }

    pub fn current_attempt_mut(&mut self) -> Option<&mut Attempt> {
        self.attempts.last_mut()
    }

    /// The number the next attempt will get.
    pub fn next_attempt_number(&self) -> u32 {
        self.attempts.last().map_or(1, |a| a.number + 1)
    }

    /// The worker holding this job, if it is assigned or running.
    pub fn worker(&self) -> Option<&WorkerId> {
        if self.state.is_on_worker() {
            self.current_attempt().map(|a| &a.worker)
        } else {
            None
        }
    }

    /// The attempt whose output archive is the job's output: the last one that
    /// uploaded one, once the job has finished.
    pub fn output_attempt(&self) -> Option<u32> {
        if !self.state.is_terminal() {
            return None;
        }
        self.attempts
            .iter()
            .rev()
            .find(|a| a.has_output)
            .map(|a| a.number)
    }

    pub fn shallow_failures(&self) -> u32 {
        self.count_attempts(|o| o.is_shallow())
    }

    pub fn deep_failures(&self) -> u32 {
        self.count_attempts(|o| o == AttemptOutcome::Failed)
    }

    fn count_attempts(&self, pred: impl Fn(AttemptOutcome) -> bool) -> u32 {
        self.attempts
            .iter()
            .filter(|a| a.outcome.is_some_and(&pred))
            .count() as u32
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    /// Registered and pinging.
    Active,
    /// Missed its heartbeats; its jobs were requeued. It may never act again.
    Lost,
}

impl WorkerState {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Active => "active",
            WorkerState::Lost => "lost",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Worker {
    pub id: WorkerId,
    pub instance: InstanceId,
    /// Jobs it runs at once.
    pub slots: u32,
    pub state: WorkerState,
    pub registered_at: Timestamp,
    pub last_ping: Timestamp,
    /// Last time it held no job, for idle scale-down; `None` while busy.
    pub idle_since: Option<Timestamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    /// Recorded, launch requested; the provider may not show it yet.
    Launching,
    /// The provider shows it running.
    Running,
    /// Termination decided; kept until the provider confirms it is gone.
    Terminating,
}

impl InstanceState {
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Launching => "launching",
            InstanceState::Running => "running",
            InstanceState::Terminating => "terminating",
        }
    }
}

/// Why an instance is terminated; also the `reason` label of the metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TerminateReason {
    /// More instances than needed and this one was idle for `idle_timeout`.
    Idle,
    /// Its worker stopped pinging, or its process died.
    Lost,
    /// Launched but its worker never registered.
    NeverRegistered,
    /// The provider shows it but the store does not know it.
    Leaked,
    /// The controller is shutting its fleet down.
    Shutdown,
}

impl TerminateReason {
    pub fn as_str(self) -> &'static str {
        match self {
            TerminateReason::Idle => "idle",
            TerminateReason::Lost => "lost",
            TerminateReason::NeverRegistered => "never_registered",
            TerminateReason::Leaked => "leaked",
            TerminateReason::Shutdown => "shutdown",
        }
    }
}

/// The store's record of an instance the controller launched. It is written before
/// the launch, so a restarted controller knows everything it may have started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub id: InstanceId,
    pub launch_key: LaunchKey,
    pub state: InstanceState,
    pub launched_at: Timestamp,
    /// The provider's handle: the process id locally, the EC2 instance id (`i-...`) on EC2.
    pub provider_ref: Option<String>,
}

/// What the provider says exists right now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedInstance {
    pub id: InstanceId,
    pub launch_key: Option<LaunchKey>,
    pub launched_at: Timestamp,
}

/// The fleet's desired shape, stored so that it can be changed while running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetSettings {
    pub min_workers: u32,
    pub max_workers: u32,
    /// Jobs one worker runs at once.
    pub slots_per_worker: u32,
    /// How long a worker may stay idle before it is terminated (above `min_workers`).
    pub idle_timeout_ms: u64,
}

impl Default for FleetSettings {
    fn default() -> Self {
        FleetSettings {
            min_workers: 0,
            max_workers: 2,
            slots_per_worker: 1,
            idle_timeout_ms: 60_000,
        }
    }
}
