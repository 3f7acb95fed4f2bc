//! One set of behaviours of the `Store` trait, written once and run against both
//! stores: SQLite on a temporary file, and DynamoDB on a fresh moto server with
//! tables made by `create_tables`. A behaviour that only one store can show (a
//! raw look at DynamoDB's items) asks the fixture, which answers `None` for SQLite.

#![cfg(feature = "aws")]

// Only the moto helper: the rest of tests/common is about processes.
#[path = "common/moto.rs"]
#[allow(dead_code)]
mod moto;

// The behaviours, each an `async fn(Fixture)`, instantiated below for both stores.
#[path = "store_conformance/dispatch.rs"]
mod dispatch;
#[path = "store_conformance/jobs.rs"]
mod jobs;
#[path = "store_conformance/lease.rs"]
mod lease;
#[path = "store_conformance/records.rs"]
mod records;
#[path = "store_conformance/workers.rs"]
mod workers;
use dispatch::*;
use jobs::*;
use lease::*;
use records::*;
use workers::*;

use aws_sdk_dynamodb::types::AttributeValue;
use drover::store::{
    dynamodb::DynamoStore, sqlite::SqliteStore, Heartbeat, JobFilter, Store, StoreError,
    StoreResult,
};
use futures::{stream, StreamExt};
use moto::Moto;
use reconcilers::model::{
    Attempt, AttemptOutcome, FleetSettings, Instance, InstanceId, InstanceState, Job, JobId,
    JobSpec, JobState, LaunchKey, Timestamp, Worker, WorkerId, WorkerState,
};
use std::{path::PathBuf, sync::Arc};

const PREFIX: &str = "drover";

/// A store under test, and what must outlive it.
struct Fixture {
    store: Arc<dyn Store>,
    sqlite_path: Option<PathBuf>,
    moto: Option<Moto>,
    _dir: Option<tempfile::TempDir>,
}

impl Fixture {
    async fn sqlite() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("drover.db");
        let store = SqliteStore::open(&path).expect("open the SQLite store");
        Fixture {
            store: Arc::new(store),
            sqlite_path: Some(path),
            moto: None,
            _dir: Some(dir),
        }
    }

    async fn dynamodb() -> Fixture {
        let moto = tokio::task::spawn_blocking(Moto::start)
            .await
            .expect("start moto");
        let store = dynamo(&moto);
        store.create_tables().await.expect("create the tables");
        Fixture {
            store: Arc::new(store),
            sqlite_path: None,
            moto: Some(moto),
            _dir: None,
        }
    }

    /// A second store on the same data: another controller sharing the tables.
    fn another_controller(&self) -> Arc<dyn Store> {
        match (&self.sqlite_path, &self.moto) {
            (Some(path), _) => Arc::new(SqliteStore::open(path).expect("reopen")),
            (None, Some(moto)) => Arc::new(dynamo(moto)),
            (None, None) => unreachable!("a fixture is one or the other"),
        }
    }

    /// How many items the DynamoDB table `PREFIX-{table}` holds (None on SQLite).
    async fn item_count(&self, table: &str) -> Option<usize> {
        let moto = self.moto.as_ref()?;
        let client = aws_sdk_dynamodb::Client::new(&moto.sdk_config());
        let scan = client
            .scan()
            .table_name(format!("{PREFIX}-{table}"))
            .send()
            .await
            .expect("scan");
        Some(scan.items().len())
    }
}

/// Pages of 25 items, so that every listing of the tests crosses pages.
fn dynamo(moto: &Moto) -> DynamoStore {
    DynamoStore::new(&moto.sdk_config(), PREFIX).with_page_size(25)
}

/// Instantiates each behaviour once per store, as `sqlite::NAME` and `dynamodb::NAME`.
macro_rules! on_both_stores {
    ($($behaviour:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $behaviour() {
                    super::$behaviour(super::Fixture::sqlite().await).await;
                }
            )*
        }
        mod dynamodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $behaviour() {
                    super::$behaviour(super::Fixture::dynamodb().await).await;
                }
            )*
        }
    };
}

on_both_stores!(
    a_created_job_reads_back_as_written_and_an_unknown_one_is_none,
    get_jobs_reads_many_in_the_order_asked_none_for_the_unknown,
    a_taken_id_is_refused_and_an_update_of_an_unknown_job_is_not_found,
    a_stale_update_is_refused_and_changes_nothing,
    concurrent_updaters_from_the_same_version_exactly_one_wins,
    update_jobs_mixes_successes_conflicts_and_unknown_jobs_in_order,
    attempts_round_trip_with_every_field,
    active_jobs_are_queued_assigned_and_running_in_queue_order,
    active_jobs_returns_all_of_1200_jobs_across_pages_and_shards,
    dispatch_view_shows_what_a_full_read_shows_and_decides_the_same,
    dispatch_view_follows_updates_a_job_tried_again_goes_first,
    jobs_on_worker_are_those_its_current_attempt_holds,
    list_jobs_filters_by_state_newest_first_with_a_limit,
    list_jobs_merges_many_partitions_exactly,
    delete_abandoned_jobs_removes_only_old_created_jobs,
    workers_are_put_replaced_listed_and_deleted,
    heartbeats_are_monotonic_and_never_revive_a_lost_worker,
    a_late_heartbeat_through_another_controller_does_not_move_last_ping_back,
    sixty_heartbeats_in_one_call_all_land,
    instances_and_fleet_settings_round_trip,
    a_record_is_created_once_read_back_and_listed_by_name,
    a_record_update_is_conditional_on_the_version_read,
    of_applies_racing_from_the_same_version_exactly_one_wins,
    a_record_delete_is_conditional_on_the_version_read,
    a_free_lease_is_taken_renewed_and_refused_to_others_until_it_expires,
    of_controllers_racing_for_a_free_lease_exactly_one_wins,
    a_released_lease_is_taken_at_once_and_a_stale_release_changes_nothing,
    a_deposed_leaders_fenced_writes_are_refused_and_change_nothing,
    announced_controllers_are_listed_until_they_expire_and_a_restart_replaces_its_entry,
    a_leaders_update_jobs_across_transactions_answers_each_write_in_order,
    controllers_gone_for_a_day_are_forgotten,
    a_controller_stopping_is_not_counted_by_the_next_one_to_stop,
);

// ---------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------

fn job(id: &str, state: JobState, created: u64) -> Job {
    let mut job = Job::new(JobId::new(id), Timestamp(created));
    job.state = state;
    job.spec = JobSpec {
        name: Some(format!("name of {id}")),
        retry_count: 2,
        shallow_retry_count: 3,
        max_wall_time_secs: Some(60),
        output_archive: "output.tar.gz".into(),
    };
    if state != JobState::Created {
        job.queued_at = Some(Timestamp(created + 1));
    }
    job
}

fn attempt(number: u32, worker: &str) -> Attempt {
    Attempt {
        number,
        worker: WorkerId::new(worker),
        assigned_at: Timestamp(1_000 + u64::from(number)),
        started_at: None,
        finished_at: None,
        exit_code: None,
        outcome: None,
        reason: None,
        has_output: false,
        empty_logs: Default::default(),
    }
}

fn on_worker(id: &str, state: JobState, created: u64, worker: &str) -> Job {
    let mut j = job(id, state, created);
    j.attempts.push(attempt(1, worker));
    j
}

fn worker(id: &str, last_ping: u64) -> Worker {
    Worker {
        id: WorkerId::new(id),
        instance: InstanceId::new(format!("i-{id}")),
        slots: 2,
        state: WorkerState::Active,
        registered_at: Timestamp(10),
        last_ping: Timestamp(last_ping),
        idle_since: Some(Timestamp(10)),
    }
}

fn beat(w: &str, at: u64, idle: Option<u64>) -> Heartbeat {
    Heartbeat {
        worker: WorkerId::new(w),
        at: Timestamp(at),
        idle_since: idle.map(Timestamp),
    }
}

fn ids(jobs: &[Job]) -> Vec<&str> {
    jobs.iter().map(|j| j.id.as_str()).collect()
}

async fn create_all(store: &dyn Store, jobs: &[Job]) {
    let creates: Vec<_> = jobs.iter().map(|j| store.create_job(j)).collect();
    let results: Vec<_> = stream::iter(creates).buffer_unordered(16).collect().await;
    for r in results {
        r.expect("create a job");
    }
}

async fn get_worker(store: &dyn Store, id: &str) -> Option<Worker> {
    store.get_worker(&WorkerId::new(id)).await.unwrap()
}

// ---------------------------------------------------------------------------
// DynamoDB only
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_tables_twice_is_fine_and_keeps_the_data() {
    let f = Fixture::dynamodb().await;
    let moto = f.moto.as_ref().unwrap();
    f.store
        .create_job(&job("j-1", JobState::Queued, 1))
        .await
        .unwrap();
    let again = dynamo(moto);
    again.create_tables().await.unwrap();
    assert_eq!(
        again.table_names(),
        [
            "drover-jobs",
            "drover-workers",
            "drover-instances",
            "drover-settings",
            "drover-records"
        ]
    );
    assert_eq!(ids(&again.active_jobs().await.unwrap()), ["j-1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_of_another_shape_is_refused_with_what_to_do() {
    let moto = tokio::task::spawn_blocking(Moto::start).await.unwrap();
    let client = aws_sdk_dynamodb::Client::new(&moto.sdk_config());
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    client
        .create_table()
        .table_name("other-jobs")
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let store = DynamoStore::new(&moto.sdk_config(), "other");
    let err = store.create_tables().await.unwrap_err().to_string();
    assert!(
        err.contains("table other-jobs exists without index active"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_call_names_what_was_done_the_table_and_the_service_error() {
    let moto = tokio::task::spawn_blocking(Moto::start).await.unwrap();
    let store = DynamoStore::new(&moto.sdk_config(), "missing");
    let err = store
        .get_job(&JobId::new("j-1"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("reading job j-1 in table missing-jobs")
            && err.contains("ResourceNotFoundException"),
        "{err}"
    );
    let err = store
        .record_heartbeats(&[beat("w-1", 1, None)])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("recording 1 heartbeats in table missing-workers")
            && err.contains("ResourceNotFoundException"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_item_keeps_index_attributes_only_while_it_qualifies() {
    let f = Fixture::dynamodb().await;
    let moto = f.moto.as_ref().unwrap();
    let client = aws_sdk_dynamodb::Client::new(&moto.sdk_config());
    let attributes = || async {
        let item = client
            .get_item()
            .table_name("drover-jobs")
            .key("id", AttributeValue::S("j-1".into()))
            .send()
            .await
            .unwrap()
            .item
            .unwrap();
        let mut names: Vec<String> = item.into_keys().filter(|k| k.starts_with("gsi_")).collect();
        names.sort();
        names
    };
    let mut j = on_worker("j-1", JobState::Running, 1, "w-1");
    f.store.create_job(&j).await.unwrap();
    assert_eq!(
        attributes().await,
        [
            "gsi_active",
            "gsi_active_sk",
            "gsi_state",
            "gsi_state_sk",
            "gsi_worker"
        ]
    );
    j.state = JobState::Succeeded;
    f.store.update_job(&j).await.unwrap();
    assert_eq!(attributes().await, ["gsi_state", "gsi_state_sk"]);
}
