//! The durable store of desired state: jobs (with their attempts), workers,
//! instances and fleet settings. SQLite is the embedded default; DynamoDB is the
//! AWS one. Every job-state change is a conditional write on the job's version.

#[cfg(feature = "aws")]
pub mod dynamodb;
pub mod sqlite;

mod lease;
mod records;

pub use lease::{Fence, Lease};
pub use records::{JobRecords, RecordWrite};

use async_trait::async_trait;
use reconcilers::dispatch::DispatchView;
use reconcilers::model::{
    FleetSettings, Instance, InstanceId, Job, JobId, JobState, Timestamp, Worker, WorkerId,
    WorkerState,
};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The record changed since it was read: the write was refused, nothing changed.
    #[error(
        "job {job} changed since it was read (expected version {expected}); the write was refused"
    )]
    Conflict { job: JobId, expected: u64 },
    #[error("job {0} already exists")]
    AlreadyExists(JobId),
    #[error("job {0} not found")]
    NotFound(JobId),
    /// A leader's write made after its lease changed hands: refused, nothing changed.
    #[error(
        "the leader lease moved on (this controller held token {token}): the write was refused"
    )]
    Fenced { token: u64 },
    #[error("store backend: {0}")]
    Backend(String),
}

impl StoreError {
    pub fn backend(context: &str, err: impl std::fmt::Display) -> StoreError {
        StoreError::Backend(format!("{context}: {err}"))
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A heartbeat as buffered by the API: monotonic data, safe to batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    pub worker: WorkerId,
    pub at: Timestamp,
    /// Since when the worker holds no job; `None` while it runs something.
    pub idle_since: Option<Timestamp>,
}

/// Which jobs `list_jobs` returns, newest first.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub states: Vec<JobState>,
    pub limit: Option<usize>,
}

/// How many queued jobs a `Store::dispatch_view` holds, decided from the jobs on
/// workers it read: the jobs loop answers `reconcilers::dispatch::free_slots`,
/// the fleet loop 0. Asked inside the read, so that both lists are one snapshot.
pub type QueuedWanted = Box<dyn FnOnce(&[Job]) -> usize + Send>;

/// Every store keeps the declarative job records too (`records.rs`).
#[async_trait]
pub trait Store: JobRecords + Send + Sync + 'static {
    /// Inserts a new job; refuses with `AlreadyExists` if the id is taken.
    async fn create_job(&self, job: &Job) -> StoreResult<()>;

    /// Inserts many new jobs (bulk submission). SQLite inserts them all or none in
    /// one transaction (one commit for the batch); the default inserts them one by
    /// one and stops at the first failure. `AlreadyExists` names a taken id.
    async fn create_jobs(&self, jobs: &[Job]) -> StoreResult<()> {
        for job in jobs {
            self.create_job(job).await?;
        }
        Ok(())
    }

    async fn get_job(&self, id: &JobId) -> StoreResult<Option<Job>>;

    /// Many jobs by id, in the order asked (`None` for those not found). SQLite
    /// reads them in one go; the default reads them one by one.
    async fn get_jobs(&self, ids: &[JobId]) -> StoreResult<Vec<Option<Job>>> {
        let mut jobs = Vec::with_capacity(ids.len());
        for id in ids {
            jobs.push(self.get_job(id).await?);
        }
        Ok(jobs)
    }

    /// Writes `job` only if the stored version still equals `job.version`, and
    /// stores it with version + 1, which it returns. A stale write gets `Conflict`.
    async fn update_job(&self, job: &Job) -> StoreResult<u64>;

    /// Many conditional writes, each checked on its own, the result of each
    /// returned in order. SQLite commits them in one transaction (group commit);
    /// DynamoDB runs them concurrently.
    async fn update_jobs(&self, jobs: &[Job]) -> StoreResult<Vec<StoreResult<u64>>>;

    /// Jobs that are queued, assigned or running.
    async fn active_jobs(&self) -> StoreResult<Vec<Job>>;

    /// What the jobs and fleet loops read each tick, bounded by the fleet's size
    /// and not the queue's: every job assigned or running (in `queued_at`, id
    /// order, as `active_jobs`), then the first `wanted(those jobs)` queued jobs
    /// in dispatch order (`reconcilers::dispatch::dispatch_order`), and the counts
    /// of every active job. The jobs reconciler decides on it exactly as on
    /// `active_jobs` (see `reconcilers::dispatch`).
    ///
    /// The default derives it from `active_jobs`, a full read: correct for any
    /// store, cheap only for a short queue. SQLite answers from indexes.
    async fn dispatch_view(&self, wanted: QueuedWanted) -> StoreResult<DispatchView> {
        Ok(DispatchView::from_active(self.active_jobs().await?, wanted))
    }

    /// Jobs assigned to or running on `worker`.
    async fn jobs_on_worker(&self, worker: &WorkerId) -> StoreResult<Vec<Job>>;

    async fn list_jobs(&self, filter: &JobFilter) -> StoreResult<Vec<Job>>;

    /// Deletes jobs still `Created` (their submit never finished) created before `before`.
    async fn delete_abandoned_jobs(&self, before: Timestamp) -> StoreResult<Vec<JobId>>;

    /// Inserts or replaces a worker record (registration).
    async fn put_worker(&self, worker: &Worker) -> StoreResult<()>;

    async fn get_worker(&self, id: &WorkerId) -> StoreResult<Option<Worker>>;

    async fn list_workers(&self) -> StoreResult<Vec<Worker>>;

    /// Applies a batch of heartbeats; `last_ping` only ever moves forward, and a
    /// heartbeat never revives a lost worker.
    async fn record_heartbeats(&self, beats: &[Heartbeat]) -> StoreResult<()>;

    async fn set_worker_state(&self, id: &WorkerId, state: WorkerState) -> StoreResult<()>;

    async fn delete_worker(&self, id: &WorkerId) -> StoreResult<()>;

    /// Inserts or replaces an instance record. A launch is recorded before it happens.
    async fn put_instance(&self, instance: &Instance) -> StoreResult<()>;

    async fn list_instances(&self) -> StoreResult<Vec<Instance>>;

    async fn delete_instance(&self, id: &InstanceId) -> StoreResult<()>;

    async fn fleet_settings(&self) -> StoreResult<Option<FleetSettings>>;

    async fn put_fleet_settings(&self, settings: &FleetSettings) -> StoreResult<()>;

    /// The leader lease, in one conditional write: taken (token + 1) when it is
    /// free or expired at `now`, renewed (same token) when `holder` holds it,
    /// untouched otherwise. Returns the lease as it stands after the call:
    /// `holder` leads until `expires_at` exactly when `lease.holder == holder`.
    async fn acquire_lease(
        &self,
        holder: &str,
        address: &str,
        now: Timestamp,
        duration_ms: u64,
    ) -> StoreResult<Lease>;

    /// Ends the lease at once if `fence` still holds it (a graceful shutdown), so
    /// that another controller takes over without waiting for the expiry.
    async fn release_lease(&self, fence: &Fence) -> StoreResult<()>;

    /// Records that controller `holder` (its lease name) answers at `address`
    /// until `now + duration_ms`, and returns the addresses of every controller
    /// not expired at `now` (this one included): the list workers fail over
    /// along. A controller restarted under the same name replaces its entry.
    async fn announce_controller(
        &self,
        holder: &str,
        address: &str,
        now: Timestamp,
        duration_ms: u64,
    ) -> StoreResult<Vec<String>>;

    /// This store as the leader holding `fence` writes to it: every write is
    /// refused with `Fenced` unless the lease's token is still `fence.token`,
    /// checked atomically with the write. Reads are as usual.
    fn fenced(&self, fence: Fence) -> Arc<dyn Store>;
}
