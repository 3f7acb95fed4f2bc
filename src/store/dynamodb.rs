//! The DynamoDB store (AWS): the same `Store` as SQLite, on five DynamoDB tables
//! (`PREFIX-jobs`, `-workers`, `-instances`, `-settings`, `-records`).
//! docs/aws-dynamodb.md describes the tables, keys, indexes and item shapes, and why they are so.
//!
//! Every change of a job is one conditional PutItem on its version (a stale
//! decision is refused, never applied); heartbeats, the one kind of monotonic
//! data, go in BatchWriteItem batches of 25; every Query and Scan follows its
//! pages to the end. The leader's reconciler writes are the same writes inside
//! transactions that check its lease (`writes.rs`).

mod conflicts;
mod fleet;
mod items;
mod jobs;
mod lease;
mod paging;
mod records;
mod tables;
mod workers;
mod writes;

use super::{Fence, Heartbeat, JobFilter, Lease, QueuedWanted, Store, StoreResult};
use async_trait::async_trait;
use aws_sdk_dynamodb::config::{retry::RetryConfig, timeout::TimeoutConfig};
use aws_sdk_dynamodb::Client;
use reconcilers::dispatch::DispatchView;
use reconcilers::model::{
    FleetSettings, Instance, InstanceId, Job, JobId, Timestamp, Worker, WorkerId, WorkerState,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The names of drover's tables under one prefix.
#[derive(Debug)]
struct Tables {
    jobs: String,
    workers: String,
    instances: String,
    settings: String,
    /// Declarative job records (`drover apply`), by name.
    records: String,
}

/// The DynamoDB store. Cheap to clone: clones share the client and the memory of
/// the heartbeats written.
#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    tables: Arc<Tables>,
    /// `Limit` of every Query and Scan page; `None` lets DynamoDB cut pages at
    /// 1 MB. Small pages are for tests, which must see more than one page.
    page_size: Option<i32>,
    /// The newest heartbeat this process wrote per worker (see `workers.rs`); the
    /// lock also makes this process's heartbeat flushes run one at a time.
    beats: Arc<tokio::sync::Mutex<HashMap<WorkerId, Timestamp>>>,
    /// Set in the leader's view: its reconciler writes (jobs, worker states,
    /// worker and instance records, fleet settings, abandoned jobs) are
    /// transactions that check the lease (`lease.rs`). Job creation, worker
    /// registration and heartbeats come from the API and are never fenced.
    fence: Option<Arc<Fence>>,
    /// Held while a fenced transaction is sent: all of them check the lease
    /// item, and two open at once would cancel each other (`writes.rs`).
    tx_lock: Arc<tokio::sync::Mutex<()>>,
}

impl DynamoStore {
    /// A store on the tables `{table_prefix}-jobs`, `-workers`, `-instances`,
    /// `-settings` and `-records` (`drover init` creates them: `create_tables`).
    pub fn new(sdk: &aws_config::SdkConfig, table_prefix: &str) -> DynamoStore {
        // Throttling (ProvisionedThroughputExceededException, ThrottlingException,
        // RequestLimitExceeded) and transient errors are retried by the SDK's
        // standard mode with exponential backoff and jitter; 8 attempts (the
        // default is 3) ride out a burst of throttling, which on-demand tables
        // show while they scale. An attempt that hangs is cut at 10 s so that a
        // reconcile loop never waits on one request for ever.
        let config = crate::aws::dynamodb_config(sdk)
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(8)
                    .with_initial_backoff(Duration::from_millis(50))
                    .with_max_backoff(Duration::from_secs(5)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .operation_attempt_timeout(Duration::from_secs(10))
                    .build(),
            )
            .build();
        let name = |table: &str| format!("{table_prefix}-{table}");
        DynamoStore {
            client: Client::from_conf(config),
            tables: Arc::new(Tables {
                jobs: name("jobs"),
                workers: name("workers"),
                instances: name("instances"),
                settings: name("settings"),
                records: name("records"),
            }),
            page_size: None,
            beats: Arc::default(),
            fence: None,
            tx_lock: Arc::default(),
        }
    }

    /// Asks for pages of at most `items` items (tests use this to read across
    /// many pages with few items).
    pub fn with_page_size(mut self, items: i32) -> DynamoStore {
        self.page_size = Some(items.max(1));
        self
    }

    /// The table names, for messages and for `drover init` to print.
    pub fn table_names(&self) -> [&str; 5] {
        let t = &self.tables;
        [&t.jobs, &t.workers, &t.instances, &t.settings, &t.records]
    }
}

#[async_trait]
impl Store for DynamoStore {
    async fn create_job(&self, job: &Job) -> StoreResult<()> {
        self.put_new_job(job).await
    }

    async fn get_job(&self, id: &JobId) -> StoreResult<Option<Job>> {
        self.read_job(id).await
    }

    async fn update_job(&self, job: &Job) -> StoreResult<u64> {
        self.write_job(job).await
    }

    async fn update_jobs(&self, jobs: &[Job]) -> StoreResult<Vec<StoreResult<u64>>> {
        self.write_jobs(jobs).await
    }

    async fn active_jobs(&self) -> StoreResult<Vec<Job>> {
        self.read_active_jobs().await
    }

    /// Derived from the full read of the `active` index, as the trait's default
    /// does: that index is sorted by `queued_at` within 16 shards, not in dispatch
    /// order (jobs already tried first), and no index counts the jobs by state,
    /// so a bounded read would still have to page through every queued job. The
    /// DynamoDB answer is a GSI in dispatch order: a sparse index of the queued
    /// jobs keyed `queued#NN` / `<0 if tried, else 1>#<queued_at>#<id>`, read with
    /// `Limit` per shard and merged, another sparse one of the jobs on workers,
    /// and the queued count kept in a counter item (a Query cannot count without
    /// reading). Until then a controller on DynamoDB reads the whole queue per tick.
    async fn dispatch_view(&self, wanted: QueuedWanted) -> StoreResult<DispatchView> {
        Ok(DispatchView::from_active(
            self.read_active_jobs().await?,
            wanted,
        ))
    }

    async fn jobs_on_worker(&self, worker: &WorkerId) -> StoreResult<Vec<Job>> {
        self.read_jobs_on_worker(worker).await
    }

    async fn list_jobs(&self, filter: &JobFilter) -> StoreResult<Vec<Job>> {
        self.read_list_jobs(filter).await
    }

    async fn delete_abandoned_jobs(&self, before: Timestamp) -> StoreResult<Vec<JobId>> {
        self.remove_abandoned_jobs(before).await
    }

    async fn put_worker(&self, worker: &Worker) -> StoreResult<()> {
        self.put_worker_item(worker).await
    }

    async fn get_worker(&self, id: &WorkerId) -> StoreResult<Option<Worker>> {
        self.read_worker(id).await
    }

    async fn list_workers(&self) -> StoreResult<Vec<Worker>> {
        self.read_workers().await
    }

    async fn record_heartbeats(&self, beats: &[Heartbeat]) -> StoreResult<()> {
        self.write_heartbeats(beats).await
    }

    async fn set_worker_state(&self, id: &WorkerId, state: WorkerState) -> StoreResult<()> {
        self.write_worker_state(id, state).await
    }

    async fn delete_worker(&self, id: &WorkerId) -> StoreResult<()> {
        self.remove_worker(id).await
    }

    async fn put_instance(&self, instance: &Instance) -> StoreResult<()> {
        self.put_instance_item(instance).await
    }

    async fn list_instances(&self) -> StoreResult<Vec<Instance>> {
        self.read_instances().await
    }

    async fn delete_instance(&self, id: &InstanceId) -> StoreResult<()> {
        self.remove_instance(id).await
    }

    async fn fleet_settings(&self) -> StoreResult<Option<FleetSettings>> {
        self.read_fleet_settings().await
    }

    async fn put_fleet_settings(&self, settings: &FleetSettings) -> StoreResult<()> {
        self.put_fleet_settings_item(settings).await
    }

    async fn acquire_lease(
        &self,
        holder: &str,
        address: &str,
        now: Timestamp,
        duration_ms: u64,
    ) -> StoreResult<Lease> {
        self.take_lease(holder, address, now, duration_ms).await
    }

    async fn release_lease(&self, fence: &Fence) -> StoreResult<()> {
        self.give_up_lease(fence).await
    }

    async fn announce_controller(
        &self,
        holder: &str,
        address: &str,
        now: Timestamp,
        duration_ms: u64,
    ) -> StoreResult<Vec<String>> {
        self.announce(holder, address, now, duration_ms).await
    }

    fn fenced(&self, fence: Fence) -> Arc<dyn Store> {
        Arc::new(DynamoStore {
            fence: Some(Arc::new(fence)),
            ..self.clone()
        })
    }
}
