//! One set of behaviours of the `Store` trait, written once and run against both
//! stores: SQLite on a temporary file, and DynamoDB on a fresh moto server with
//! tables made by `create_tables`. A behaviour that only one store can show (a
//! raw look at DynamoDB's items) asks the fixture, which answers `None` for SQLite.

// Only the moto helper: the rest of tests/common is about processes.
#[path = "common/moto.rs"]
#[allow(dead_code)]
mod moto;

use aws_sdk_dynamodb::types::AttributeValue;
use drover::store::{
    dynamodb::DynamoStore, sqlite::SqliteStore, Heartbeat, JobFilter, Store, StoreError,
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
    a_taken_id_is_refused_and_an_update_of_an_unknown_job_is_not_found,
    a_stale_update_is_refused_and_changes_nothing,
    concurrent_updaters_from_the_same_version_exactly_one_wins,
    update_jobs_mixes_successes_conflicts_and_unknown_jobs_in_order,
    attempts_round_trip_with_every_field,
    active_jobs_are_queued_assigned_and_running_in_queue_order,
    active_jobs_returns_all_of_1200_jobs_across_pages_and_shards,
    jobs_on_worker_are_those_its_current_attempt_holds,
    list_jobs_filters_by_state_newest_first_with_a_limit,
    list_jobs_merges_many_partitions_exactly,
    delete_abandoned_jobs_removes_only_old_created_jobs,
    workers_are_put_replaced_listed_and_deleted,
    heartbeats_are_monotonic_and_never_revive_a_lost_worker,
    a_late_heartbeat_through_another_controller_does_not_move_last_ping_back,
    sixty_heartbeats_in_one_call_all_land,
    instances_and_fleet_settings_round_trip,
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
// Jobs
// ---------------------------------------------------------------------------

async fn a_created_job_reads_back_as_written_and_an_unknown_one_is_none(f: Fixture) {
    let mut j = on_worker("j-1", JobState::Running, 7, "w-1");
    j.version = 41;
    j.reason = Some(String::new());
    f.store.create_job(&j).await.unwrap();
    assert_eq!(f.store.get_job(&j.id).await.unwrap(), Some(j));
    assert_eq!(f.store.get_job(&JobId::new("nope")).await.unwrap(), None);
}

async fn a_taken_id_is_refused_and_an_update_of_an_unknown_job_is_not_found(f: Fixture) {
    let j = job("j-1", JobState::Created, 1);
    let err = f.store.update_job(&j).await.unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound(ref id) if *id == j.id),
        "{err}"
    );
    f.store.create_job(&j).await.unwrap();
    let mut again = j.clone();
    again.reason = Some("second".into());
    let err = f.store.create_job(&again).await.unwrap_err();
    assert!(
        matches!(err, StoreError::AlreadyExists(ref id) if *id == j.id),
        "{err}"
    );
    assert_eq!(f.store.get_job(&j.id).await.unwrap(), Some(j));
}

async fn a_stale_update_is_refused_and_changes_nothing(f: Fixture) {
    let created = on_worker("j-1", JobState::Queued, 100, "w-1");
    f.store.create_job(&created).await.unwrap();
    let mut fresh = created.clone();
    fresh.state = JobState::Assigned;
    assert_eq!(f.store.update_job(&fresh).await.unwrap(), 1);
    let stored = f.store.get_job(&fresh.id).await.unwrap().unwrap();
    assert_eq!((stored.version, stored.state), (1, JobState::Assigned));

    let mut stale = created.clone();
    stale.state = JobState::Failed;
    stale.reason = Some("decided on old data".into());
    stale.attempts[0].outcome = Some(AttemptOutcome::WorkerLost);
    stale.attempts.push(attempt(2, "w-2"));
    let err = f.store.update_job(&stale).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { expected: 0, .. }),
        "{err}"
    );
    assert_eq!(f.store.get_job(&fresh.id).await.unwrap().unwrap(), stored);
    // The refused job is still where it was in the indexes.
    assert_eq!(ids(&f.store.active_jobs().await.unwrap()), ["j-1"]);
    let on_w1 = f.store.jobs_on_worker(&WorkerId::new("w-1")).await.unwrap();
    assert_eq!(ids(&on_w1), ["j-1"]);
}

async fn concurrent_updaters_from_the_same_version_exactly_one_wins(f: Fixture) {
    let base = job("j-1", JobState::Queued, 1);
    f.store.create_job(&base).await.unwrap();
    // Two controllers, four updaters each, all from version 0.
    let stores = [f.store.clone(), f.another_controller()];
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = stores[i % 2].clone();
            let mine = on_worker("j-1", JobState::Assigned, 1, &format!("w-{i}"));
            tokio::spawn(async move { store.update_job(&mine).await.map(|v| (v, i)) })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(won) => winners.push(won),
            Err(StoreError::Conflict { expected: 0, .. }) => {}
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let stored = f.store.get_job(&base.id).await.unwrap().unwrap();
    assert_eq!(stored.version, 1);
    assert_eq!(
        stored.attempts[0].worker.as_str(),
        format!("w-{}", winners[0].1)
    );
}

async fn update_jobs_mixes_successes_conflicts_and_unknown_jobs_in_order(f: Fixture) {
    let a = job("a", JobState::Queued, 1);
    let b = job("b", JobState::Queued, 2);
    f.store.create_job(&a).await.unwrap();
    f.store.create_job(&b).await.unwrap();
    let mut stale_b = b.clone();
    stale_b.version = 7;
    let a2 = on_worker("a", JobState::Assigned, 1, "w");
    let batch = [a2.clone(), stale_b, job("ghost", JobState::Queued, 3), a2];
    let results = f.store.update_jobs(&batch).await.unwrap();
    assert_eq!(results.len(), 4);
    assert!(matches!(results[0], Ok(1)), "{results:?}");
    assert!(
        matches!(results[1], Err(StoreError::Conflict { expected: 7, .. })),
        "{results:?}"
    );
    assert!(
        matches!(results[2], Err(StoreError::NotFound(_))),
        "{results:?}"
    );
    // The same version twice: only one of them landed (results[0]).
    assert!(
        matches!(results[3], Err(StoreError::Conflict { expected: 0, .. })),
        "{results:?}"
    );
    let stored_a = f.store.get_job(&a.id).await.unwrap().unwrap();
    assert_eq!((stored_a.version, stored_a.attempts.len()), (1, 1));
    assert_eq!(f.store.get_job(&b.id).await.unwrap(), Some(b));
    assert_eq!(f.store.get_job(&JobId::new("ghost")).await.unwrap(), None);
    assert!(f.store.update_jobs(&[]).await.unwrap().is_empty());
}

async fn attempts_round_trip_with_every_field(f: Fixture) {
    let mut j = job("j-1", JobState::Running, 5);
    let outcomes = [
        AttemptOutcome::Succeeded,
        AttemptOutcome::Failed,
        AttemptOutcome::FailedBeforeRun,
        AttemptOutcome::WorkerLost,
        AttemptOutcome::Cancelled,
    ];
    for (i, outcome) in outcomes.into_iter().enumerate() {
        let n = i as u32 + 1;
        j.attempts.push(Attempt {
            number: n,
            worker: WorkerId::new(format!("w-{n}")),
            assigned_at: Timestamp(100 * u64::from(n)),
            started_at: Some(Timestamp(100 * u64::from(n) + 1)),
            finished_at: Some(Timestamp(100 * u64::from(n) + 2)),
            exit_code: Some(-(n as i32)),
            outcome: Some(outcome),
            reason: Some(format!("reason {n} with 'quotes', \"double\" and ünicode")),
            has_output: n % 2 == 0,
        });
    }
    j.attempts.push(attempt(6, "w-6"));
    j.exit_code = Some(i32::MIN);
    // The largest time SQLite holds (its integers are i64).
    j.finished_at = Some(Timestamp(i64::MAX as u64));
    j.reason = Some("exit code 3".into());
    j.spec.max_wall_time_secs = None;
    j.spec.name = None;
    f.store.create_job(&j).await.unwrap();
    assert_eq!(f.store.get_job(&j.id).await.unwrap().as_ref(), Some(&j));

    // An update rewrites the attempts, including a list that shrank.
    j.attempts.truncate(2);
    j.attempts[1].reason = None;
    j.version = f.store.update_job(&j).await.unwrap();
    assert_eq!(f.store.get_job(&j.id).await.unwrap(), Some(j));
}

async fn active_jobs_are_queued_assigned_and_running_in_queue_order(f: Fixture) {
    let mut all = vec![
        job("created", JobState::Created, 1),
        job("queued-late", JobState::Queued, 50),
        job("queued-early", JobState::Queued, 2),
        on_worker("assigned", JobState::Assigned, 10, "w-1"),
        on_worker("running", JobState::Running, 20, "w-2"),
        on_worker("done", JobState::Succeeded, 3, "w-1"),
        on_worker("failed", JobState::Failed, 4, "w-1"),
        job("cancelled", JobState::Cancelled, 5),
    ];
    all[1].attempts = vec![attempt(1, "w-9"), attempt(2, "w-8")];
    create_all(f.store.as_ref(), &all).await;
    let active = f.store.active_jobs().await.unwrap();
    assert_eq!(
        ids(&active),
        ["queued-early", "assigned", "running", "queued-late"]
    );
    assert_eq!(active[3], all[1]);
    assert_eq!(active[1], all[3]);

    // A job that ends leaves the active jobs with the same write.
    let mut done = active[2].clone();
    done.state = JobState::Succeeded;
    f.store.update_job(&done).await.unwrap();
    let active = f.store.active_jobs().await.unwrap();
    assert_eq!(ids(&active), ["queued-early", "assigned", "queued-late"]);
}

async fn active_jobs_returns_all_of_1200_jobs_across_pages_and_shards(f: Fixture) {
    let states = [
        JobState::Queued,
        JobState::Assigned,
        JobState::Running,
        JobState::Succeeded,
    ];
    let all: Vec<Job> = (0..1200u64)
        .map(|i| {
            let state = states[i as usize % 4];
            // Queue times repeat, so the order falls back on the id.
            on_worker(
                &format!("job-{i:04}"),
                state,
                i % 97,
                &format!("w-{}", i % 7),
            )
        })
        .collect();
    create_all(f.store.as_ref(), &all).await;
    let mut expected: Vec<&Job> = all
        .iter()
        .filter(|j| j.state != JobState::Succeeded)
        .collect();
    expected.sort_by(|a, b| (a.queued_at, &a.id).cmp(&(b.queued_at, &b.id)));
    let active = f.store.active_jobs().await.unwrap();
    assert_eq!(active.len(), 900);
    assert!(active.iter().zip(&expected).all(|(a, e)| a == *e));

    // 100 of them finish in one batch: they leave the listing, the others stay.
    let finished: Vec<Job> = expected[..100]
        .iter()
        .map(|j| {
            let mut next = (*j).clone();
            next.state = JobState::Failed;
            next
        })
        .collect();
    let results = f.store.update_jobs(&finished).await.unwrap();
    assert!(results.iter().all(|r| matches!(r, Ok(1))), "{results:?}");
    let active = f.store.active_jobs().await.unwrap();
    let rest: Vec<&str> = expected[100..].iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids(&active), rest);
}

async fn jobs_on_worker_are_those_its_current_attempt_holds(f: Fixture) {
    let mut requeued = on_worker("requeued", JobState::Queued, 1, "w-1");
    requeued.attempts[0].outcome = Some(AttemptOutcome::WorkerLost);
    let mut moved = on_worker("moved", JobState::Running, 2, "w-1");
    moved.attempts.push(attempt(2, "w-2"));
    let all = [
        requeued,
        moved,
        on_worker("a", JobState::Assigned, 3, "w-1"),
        on_worker("r", JobState::Running, 4, "w-1"),
        on_worker("done", JobState::Succeeded, 5, "w-1"),
        on_worker("other", JobState::Running, 6, "w-3"),
    ];
    create_all(f.store.as_ref(), &all).await;
    let on_w1 = f.store.jobs_on_worker(&WorkerId::new("w-1")).await.unwrap();
    assert_eq!(ids(&on_w1), ["a", "r"]);
    let on_w2 = f.store.jobs_on_worker(&WorkerId::new("w-2")).await.unwrap();
    assert_eq!(ids(&on_w2), ["moved"]);
    assert_eq!(on_w2[0], all[1]);
    assert!(f
        .store
        .jobs_on_worker(&WorkerId::new("w-9"))
        .await
        .unwrap()
        .is_empty());

    // Once the job leaves the worker, so does the listing.
    let mut finished = on_w1[0].clone();
    finished.state = JobState::Succeeded;
    f.store.update_job(&finished).await.unwrap();
    let on_w1 = f.store.jobs_on_worker(&WorkerId::new("w-1")).await.unwrap();
    assert_eq!(ids(&on_w1), ["r"]);
}

async fn list_jobs_filters_by_state_newest_first_with_a_limit(f: Fixture) {
    let all = [
        job("a", JobState::Queued, 10),
        job("b", JobState::Succeeded, 30),
        job("c", JobState::Queued, 30),
        job("d", JobState::Failed, 20),
        job("e", JobState::Created, 40),
    ];
    create_all(f.store.as_ref(), &all).await;
    let list = |states: Vec<JobState>, limit| {
        let store = f.store.clone();
        async move { store.list_jobs(&JobFilter { states, limit }).await.unwrap() }
    };
    assert_eq!(ids(&list(vec![], None).await), ["e", "c", "b", "d", "a"]);
    let some = vec![JobState::Queued, JobState::Failed];
    assert_eq!(ids(&list(some.clone(), None).await), ["c", "d", "a"]);
    assert_eq!(ids(&list(some.clone(), Some(2)).await), ["c", "d"]);
    assert_eq!(ids(&list(vec![], Some(1)).await), ["e"]);
    assert!(list(vec![], Some(0)).await.is_empty());
    assert!(list(vec![JobState::Running], Some(10)).await.is_empty());
    assert_eq!(
        list(vec![JobState::Failed], None).await,
        vec![all[3].clone()]
    );
}

/// Many jobs over every state and shard with repeated creation times: every
/// filter and limit gives exactly the reference answer (newest first, then id).
async fn list_jobs_merges_many_partitions_exactly(f: Fixture) {
    let all: Vec<Job> = (0..140u64)
        .map(|i| {
            job(
                &format!("j{i:03}"),
                JobState::ALL[(i * 5 % 7) as usize],
                i % 11,
            )
        })
        .collect();
    create_all(f.store.as_ref(), &all).await;
    let cases: [(&[JobState], Option<usize>); 5] = [
        (&[], Some(7)),
        (&[], Some(60)),
        (&[JobState::Queued, JobState::Failed], Some(13)),
        (&[JobState::Created], None),
        (
            &[JobState::Cancelled, JobState::Running, JobState::Cancelled],
            Some(1000),
        ),
    ];
    for (states, limit) in cases {
        let mut expected: Vec<&Job> = all
            .iter()
            .filter(|j| states.is_empty() || states.contains(&j.state))
            .collect();
        expected.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        expected.truncate(limit.unwrap_or(usize::MAX));
        let filter = JobFilter {
            states: states.to_vec(),
            limit,
        };
        let listed = f.store.list_jobs(&filter).await.unwrap();
        let expected: Vec<&str> = expected.iter().map(|j| j.id.as_str()).collect();
        assert_eq!(ids(&listed), expected, "{states:?} {limit:?}");
    }
}

async fn delete_abandoned_jobs_removes_only_old_created_jobs(f: Fixture) {
    let mut old = job("old", JobState::Created, 10);
    old.attempts.push(attempt(1, "w"));
    let all = [
        old,
        job("old-2", JobState::Created, 49),
        job("at-cutoff", JobState::Created, 50),
        job("young", JobState::Created, 100),
        job("queued-old", JobState::Queued, 5),
    ];
    create_all(f.store.as_ref(), &all).await;
    let deleted = f.store.delete_abandoned_jobs(Timestamp(50)).await.unwrap();
    assert_eq!(deleted, [JobId::new("old"), JobId::new("old-2")]);
    assert_eq!(f.store.get_job(&JobId::new("old")).await.unwrap(), None);
    // A job created again under the same id starts with no stale attempts.
    f.store
        .create_job(&job("old", JobState::Created, 60))
        .await
        .unwrap();
    let again = f.store.get_job(&JobId::new("old")).await.unwrap().unwrap();
    assert!(again.attempts.is_empty());
    let listed = f.store.list_jobs(&JobFilter::default()).await.unwrap();
    assert_eq!(ids(&listed), ["young", "old", "at-cutoff", "queued-old"]);
    assert!(f
        .store
        .delete_abandoned_jobs(Timestamp(50))
        .await
        .unwrap()
        .is_empty());
}

// ---------------------------------------------------------------------------
// Workers, heartbeats, instances, settings
// ---------------------------------------------------------------------------

async fn workers_are_put_replaced_listed_and_deleted(f: Fixture) {
    let mut w = worker("w-2", 5);
    f.store.put_worker(&worker("w-1", 5)).await.unwrap();
    f.store.put_worker(&w).await.unwrap();
    w.slots = 8;
    w.idle_since = None;
    f.store.put_worker(&w).await.unwrap();
    assert_eq!(
        f.store.list_workers().await.unwrap(),
        vec![worker("w-1", 5), w.clone()]
    );
    assert_eq!(get_worker(f.store.as_ref(), "w-2").await, Some(w.clone()));
    assert_eq!(get_worker(f.store.as_ref(), "w-none").await, None);

    f.store
        .set_worker_state(&w.id, WorkerState::Lost)
        .await
        .unwrap();
    let lost = get_worker(f.store.as_ref(), "w-2").await.unwrap();
    assert_eq!(lost.state, WorkerState::Lost);
    assert_eq!(
        Worker {
            state: WorkerState::Active,
            ..lost
        },
        w
    );

    f.store
        .record_heartbeats(&[beat("w-1", 50, None)])
        .await
        .unwrap();
    f.store.delete_worker(&WorkerId::new("w-1")).await.unwrap();
    f.store.delete_worker(&WorkerId::new("w-1")).await.unwrap();
    // Marking a deleted worker does not bring it back.
    f.store
        .set_worker_state(&WorkerId::new("w-1"), WorkerState::Lost)
        .await
        .unwrap();
    assert_eq!(get_worker(f.store.as_ref(), "w-1").await, None);
    let listed = f.store.list_workers().await.unwrap();
    assert_eq!(ids_of_workers(&listed), ["w-2"]);
    // Registered again, it starts from its new record, not its old beats.
    f.store.put_worker(&worker("w-1", 20)).await.unwrap();
    assert_eq!(
        get_worker(f.store.as_ref(), "w-1").await,
        Some(worker("w-1", 20))
    );
    if let Some(items) = f.item_count("workers").await {
        assert_eq!(items, 2, "the deleted worker's beat went with it");
    }
}

fn ids_of_workers(workers: &[Worker]) -> Vec<&str> {
    workers.iter().map(|w| w.id.as_str()).collect()
}

async fn heartbeats_are_monotonic_and_never_revive_a_lost_worker(f: Fixture) {
    f.store.put_worker(&worker("w-1", 100)).await.unwrap();
    f.store.put_worker(&worker("w-lost", 100)).await.unwrap();
    f.store
        .set_worker_state(&WorkerId::new("w-lost"), WorkerState::Lost)
        .await
        .unwrap();
    f.store
        .record_heartbeats(&[
            beat("w-1", 300, None),
            beat("w-1", 200, Some(150)), // delivered late: changes nothing
            beat("w-lost", 400, Some(400)),
            beat("w-unknown", 500, None),
        ])
        .await
        .unwrap();
    let w1 = get_worker(f.store.as_ref(), "w-1").await.unwrap();
    assert_eq!((w1.last_ping, w1.idle_since), (Timestamp(300), None));
    let lost = get_worker(f.store.as_ref(), "w-lost").await.unwrap();
    assert_eq!(
        (lost.state, lost.last_ping),
        (WorkerState::Lost, Timestamp(400))
    );
    assert_eq!(get_worker(f.store.as_ref(), "w-unknown").await, None);

    // Later, in another call: an older beat still changes nothing, one of the
    // same time updates idle_since, and the listing agrees with the reads.
    f.store
        .record_heartbeats(&[beat("w-1", 250, Some(250))])
        .await
        .unwrap();
    assert_eq!(get_worker(f.store.as_ref(), "w-1").await, Some(w1.clone()));
    f.store
        .record_heartbeats(&[beat("w-1", 300, Some(300))])
        .await
        .unwrap();
    let w1 = get_worker(f.store.as_ref(), "w-1").await.unwrap();
    assert_eq!(
        (w1.last_ping, w1.idle_since),
        (Timestamp(300), Some(Timestamp(300)))
    );
    let listed = f.store.list_workers().await.unwrap();
    assert_eq!(ids_of_workers(&listed), ["w-1", "w-lost"]);
    assert_eq!(listed[0], w1);
    assert_eq!(listed[1].state, WorkerState::Lost);
}

async fn a_late_heartbeat_through_another_controller_does_not_move_last_ping_back(f: Fixture) {
    f.store.put_worker(&worker("w-1", 100)).await.unwrap();
    f.store
        .record_heartbeats(&[beat("w-1", 300, None)])
        .await
        .unwrap();
    let other = f.another_controller();
    other
        .record_heartbeats(&[beat("w-1", 200, Some(200))])
        .await
        .unwrap();
    let w1 = get_worker(f.store.as_ref(), "w-1").await.unwrap();
    assert_eq!((w1.last_ping, w1.idle_since), (Timestamp(300), None));
    assert_eq!(other.list_workers().await.unwrap(), vec![w1.clone()]);
    // The newer controller's beats win from then on, whichever wrote them.
    other
        .record_heartbeats(&[beat("w-1", 400, Some(350))])
        .await
        .unwrap();
    f.store
        .record_heartbeats(&[beat("w-1", 500, None)])
        .await
        .unwrap();
    let w1 = get_worker(f.store.as_ref(), "w-1").await.unwrap();
    assert_eq!((w1.last_ping, w1.idle_since), (Timestamp(500), None));
    assert_eq!(f.store.list_workers().await.unwrap(), vec![w1]);
    if let Some(items) = f.item_count("workers").await {
        // The listing deleted the beats that newer ones superseded.
        assert_eq!(items, 2, "one registration and one beat");
    }
}

async fn sixty_heartbeats_in_one_call_all_land(f: Fixture) {
    let names: Vec<String> = (0..60).map(|i| format!("w-{i:02}")).collect();
    for name in &names {
        f.store.put_worker(&worker(name, 1)).await.unwrap();
    }
    for round in [1_000u64, 2_000] {
        let beats: Vec<Heartbeat> = (names.iter().enumerate())
            .map(|(i, name)| beat(name, round + i as u64, (i % 2 == 0).then_some(round)))
            .collect();
        f.store.record_heartbeats(&beats).await.unwrap();
        let listed = f.store.list_workers().await.unwrap();
        assert_eq!(listed.len(), 60);
        for (i, w) in listed.iter().enumerate() {
            assert_eq!(w.id.as_str(), names[i]);
            assert_eq!(w.last_ping, Timestamp(round + i as u64));
            assert_eq!(w.idle_since, (i % 2 == 0).then_some(Timestamp(round)));
        }
    }
    if let Some(items) = f.item_count("workers").await {
        assert_eq!(items, 120, "60 registrations and each worker's newest beat");
    }
}

async fn instances_and_fleet_settings_round_trip(f: Fixture) {
    let instances: Vec<Instance> = [
        InstanceState::Launching,
        InstanceState::Running,
        InstanceState::Terminating,
    ]
    .into_iter()
    .enumerate()
    .map(|(i, state)| Instance {
        id: InstanceId::new(format!("i-{i}")),
        launch_key: LaunchKey::new(format!("k-{i}")),
        state,
        launched_at: Timestamp(i as u64),
        provider_ref: (i > 0).then(|| format!("pid {i}")),
    })
    .collect();
    for i in instances.iter().rev() {
        f.store.put_instance(i).await.unwrap();
    }
    assert_eq!(f.store.list_instances().await.unwrap(), instances);
    let mut replaced = instances[1].clone();
    replaced.state = InstanceState::Terminating;
    f.store.put_instance(&replaced).await.unwrap();
    f.store.delete_instance(&instances[0].id).await.unwrap();
    f.store.delete_instance(&instances[0].id).await.unwrap();
    assert_eq!(
        f.store.list_instances().await.unwrap(),
        [replaced, instances[2].clone()]
    );

    assert_eq!(f.store.fleet_settings().await.unwrap(), None);
    let mut settings = FleetSettings::default();
    f.store.put_fleet_settings(&settings).await.unwrap();
    settings.max_workers = 40;
    settings.idle_timeout_ms = i64::MAX as u64;
    f.store.put_fleet_settings(&settings).await.unwrap();
    assert_eq!(f.store.fleet_settings().await.unwrap(), Some(settings));
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
            "drover-settings"
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
