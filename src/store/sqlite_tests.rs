//! Tests of the SQLite store, on a temporary file and in memory.

use super::*;
use proptest::prelude::*;
use reconcilers::model::{AttemptOutcome, InstanceState, JobSpec};
use std::time::Instant;

/// A store and, for a file store, the folder that must outlive it.
struct Fixture {
    kind: &'static str,
    store: SqliteStore,
    _dir: Option<tempfile::TempDir>,
}

fn file_store() -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("state/drover.db")).expect("open file store");
    (store, dir)
}

/// Each test runs on both kinds: the file exercises WAL and the on-disk schema.
fn stores() -> Vec<Fixture> {
    let (store, dir) = file_store();
    vec![
        Fixture {
            kind: "file",
            store,
            _dir: Some(dir),
        },
        Fixture {
            kind: "memory",
            store: SqliteStore::open_in_memory().expect("open memory store"),
            _dir: None,
        },
    ]
}

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

fn ids(jobs: &[Job]) -> Vec<&str> {
    jobs.iter().map(|j| j.id.as_str()).collect()
}

#[tokio::test]
async fn a_stale_update_is_refused_and_changes_nothing() {
    for f in stores() {
        let created = on_worker("j-1", JobState::Queued, 100, "w-1");
        f.store.create_job(&created).await.unwrap();

        let mut fresh = created.clone();
        fresh.state = JobState::Assigned;
        assert_eq!(f.store.update_job(&fresh).await.unwrap(), 1, "{}", f.kind);
        let stored = f.store.get_job(&fresh.id).await.unwrap().unwrap();

        let mut stale = created.clone();
        stale.state = JobState::Failed;
        stale.reason = Some("decided on old data".into());
        stale.attempts[0].outcome = Some(AttemptOutcome::WorkerLost);
        stale.attempts.push(attempt(2, "w-2"));
        let err = f.store.update_job(&stale).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Conflict { expected: 0, .. }),
            "{}: {err}",
            f.kind
        );
        assert_eq!(
            f.store.get_job(&fresh.id).await.unwrap().unwrap(),
            stored,
            "{}",
            f.kind
        );
        assert_eq!(stored.version, 1);
        assert_eq!(stored.state, JobState::Assigned);
    }
}

#[tokio::test]
async fn an_update_of_an_unknown_job_is_not_found_and_a_taken_id_is_refused() {
    for f in stores() {
        let j = job("j-1", JobState::Created, 1);
        assert!(
            matches!(f.store.update_job(&j).await, Err(StoreError::NotFound(_))),
            "{}",
            f.kind
        );
        f.store.create_job(&j).await.unwrap();
        let mut again = j.clone();
        again.reason = Some("second".into());
        assert!(
            matches!(
                f.store.create_job(&again).await,
                Err(StoreError::AlreadyExists(_))
            ),
            "{}",
            f.kind
        );
        assert_eq!(f.store.get_job(&j.id).await.unwrap(), Some(j));
        assert_eq!(f.store.get_job(&JobId::new("nope")).await.unwrap(), None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_updaters_from_the_same_version_exactly_one_wins() {
    for f in stores() {
        let base = job("j-1", JobState::Queued, 1);
        f.store.create_job(&base).await.unwrap();
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let store = f.store.clone();
                let mut mine = on_worker("j-1", JobState::Assigned, 1, &format!("w-{i}"));
                mine.version = base.version;
                tokio::spawn(async move { store.update_job(&mine).await.map(|v| (v, i)) })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            match task.await.unwrap() {
                Ok(won) => winners.push(won),
                Err(StoreError::Conflict { .. }) => {}
                Err(other) => panic!("{}: unexpected {other}", f.kind),
            }
        }
        assert_eq!(winners.len(), 1, "{}: {winners:?}", f.kind);
        let stored = f.store.get_job(&base.id).await.unwrap().unwrap();
        assert_eq!(stored.version, 1);
        assert_eq!(
            stored.attempts[0].worker,
            WorkerId::new(format!("w-{}", winners[0].1))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_controllers_sharing_the_file_cannot_both_win_the_same_version() {
    let (first, dir) = file_store();
    let second = SqliteStore::open(&dir.path().join("state/drover.db")).unwrap();
    let updates: Vec<Job> = (0..200)
        .map(|i| on_worker(&format!("j-{i}"), JobState::Queued, i, "w"))
        .collect();
    for u in &updates {
        first
            .create_job(&job(u.id.as_str(), JobState::Queued, 0))
            .await
            .unwrap();
    }
    let (a, b) = tokio::join!(first.update_jobs(&updates), second.update_jobs(&updates));
    let (a, b) = (a.unwrap(), b.unwrap());
    for (x, y) in a.iter().zip(&b) {
        assert!(
            x.is_ok() != y.is_ok(),
            "exactly one controller wins each job: {x:?} {y:?}"
        );
    }
    let stored = second.active_jobs().await.unwrap();
    assert!(stored
        .iter()
        .all(|j| j.version == 1 && j.attempts.len() == 1));
}

#[tokio::test]
async fn attempts_round_trip_with_all_fields() {
    for f in stores() {
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
                reason: Some(format!("reason {n} with 'quotes' and ünicode")),
                has_output: n % 2 == 0,
            });
        }
        j.attempts.push(attempt(6, "w-6"));
        j.exit_code = Some(3);
        j.finished_at = Some(Timestamp(999));
        j.reason = Some("exit code 3".into());
        f.store.create_job(&j).await.unwrap();
        assert_eq!(
            f.store.get_job(&j.id).await.unwrap().as_ref(),
            Some(&j),
            "{}",
            f.kind
        );

        // An update rewrites attempts, including one that shrank (stored == written).
        j.attempts.truncate(2);
        j.attempts[1].reason = None;
        let v = f.store.update_job(&j).await.unwrap();
        j.version = v;
        assert_eq!(f.store.get_job(&j.id).await.unwrap(), Some(j), "{}", f.kind);
    }
}

#[tokio::test]
async fn active_jobs_are_queued_assigned_and_running_with_their_attempts_in_queue_order() {
    for f in stores() {
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
        for j in &all {
            f.store.create_job(j).await.unwrap();
        }
        let active = f.store.active_jobs().await.unwrap();
        assert_eq!(
            ids(&active),
            ["queued-early", "assigned", "running", "queued-late"],
            "{}",
            f.kind
        );
        assert_eq!(active[3], all[1]);
        assert_eq!(active[1], all[3]);
    }
}

#[tokio::test]
async fn jobs_on_worker_are_those_its_current_attempt_holds() {
    for f in stores() {
        let mut requeued = on_worker("requeued", JobState::Queued, 1, "w-1");
        requeued.attempts[0].outcome = Some(AttemptOutcome::WorkerLost);
        let mut moved = on_worker("moved", JobState::Running, 2, "w-1");
        moved.attempts.push(attempt(2, "w-2"));
        for j in [
            requeued,
            moved,
            on_worker("a", JobState::Assigned, 3, "w-1"),
            on_worker("r", JobState::Running, 4, "w-1"),
            on_worker("done", JobState::Succeeded, 5, "w-1"),
            on_worker("other", JobState::Running, 6, "w-3"),
        ] {
            f.store.create_job(&j).await.unwrap();
        }
        let on_w1 = f.store.jobs_on_worker(&WorkerId::new("w-1")).await.unwrap();
        assert_eq!(ids(&on_w1), ["a", "r"], "{}", f.kind);
        let on_w2 = f.store.jobs_on_worker(&WorkerId::new("w-2")).await.unwrap();
        assert_eq!(ids(&on_w2), ["moved"]);
        assert_eq!(on_w2[0].attempts.len(), 2);

        // Once the job leaves the worker, the index follows.
        let mut finished = on_w1[0].clone();
        finished.state = JobState::Succeeded;
        f.store.update_job(&finished).await.unwrap();
        assert_eq!(
            ids(&f.store.jobs_on_worker(&WorkerId::new("w-1")).await.unwrap()),
            ["r"]
        );
    }
}

#[tokio::test]
async fn list_jobs_filters_by_state_newest_first_then_by_id_with_a_limit() {
    for f in stores() {
        for j in [
            job("a", JobState::Queued, 10),
            job("b", JobState::Succeeded, 30),
            job("c", JobState::Queued, 30),
            job("d", JobState::Failed, 20),
            job("e", JobState::Created, 40),
        ] {
            f.store.create_job(&j).await.unwrap();
        }
        let all = f.store.list_jobs(&JobFilter::default()).await.unwrap();
        assert_eq!(ids(&all), ["e", "c", "b", "d", "a"], "{}", f.kind);
        let filter = JobFilter {
            states: vec![JobState::Queued, JobState::Failed],
            limit: None,
        };
        assert_eq!(
            ids(&f.store.list_jobs(&filter).await.unwrap()),
            ["c", "d", "a"]
        );
        let filter = JobFilter {
            states: vec![JobState::Queued, JobState::Failed],
            limit: Some(2),
        };
        assert_eq!(ids(&f.store.list_jobs(&filter).await.unwrap()), ["c", "d"]);
        let filter = JobFilter {
            states: vec![],
            limit: Some(0),
        };
        assert!(f.store.list_jobs(&filter).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn heartbeats_are_monotonic_and_do_not_revive_a_lost_worker() {
    for f in stores() {
        f.store.put_worker(&worker("w-1", 100)).await.unwrap();
        f.store.put_worker(&worker("w-lost", 100)).await.unwrap();
        f.store
            .set_worker_state(&WorkerId::new("w-lost"), WorkerState::Lost)
            .await
            .unwrap();
        let beat = |w: &str, at: u64, idle: Option<u64>| Heartbeat {
            worker: WorkerId::new(w),
            at: Timestamp(at),
            idle_since: idle.map(Timestamp),
        };
        f.store
            .record_heartbeats(&[
                beat("w-1", 300, None),
                beat("w-1", 200, Some(150)), // delivered late: changes nothing
                beat("w-lost", 400, Some(400)),
                beat("w-unknown", 500, None),
            ])
            .await
            .unwrap();
        let w1 = f
            .store
            .get_worker(&WorkerId::new("w-1"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (w1.last_ping, w1.idle_since),
            (Timestamp(300), None),
            "{}",
            f.kind
        );
        let lost = f
            .store
            .get_worker(&WorkerId::new("w-lost"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(lost.state, WorkerState::Lost);
        assert_eq!(lost.last_ping, Timestamp(400));
        assert_eq!(
            f.store
                .get_worker(&WorkerId::new("w-unknown"))
                .await
                .unwrap(),
            None
        );

        f.store
            .record_heartbeats(&[beat("w-1", 300, Some(300))])
            .await
            .unwrap();
        let w1 = f
            .store
            .get_worker(&WorkerId::new("w-1"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(w1.idle_since, Some(Timestamp(300)), "{}", f.kind);
    }
}

#[tokio::test]
async fn workers_instances_and_fleet_settings_round_trip() {
    for f in stores() {
        let mut w = worker("w-2", 5);
        f.store.put_worker(&worker("w-1", 5)).await.unwrap();
        f.store.put_worker(&w).await.unwrap();
        w.slots = 8;
        w.idle_since = None;
        f.store.put_worker(&w).await.unwrap();
        assert_eq!(
            f.store.list_workers().await.unwrap(),
            vec![worker("w-1", 5), w.clone()],
            "{}",
            f.kind
        );
        f.store.delete_worker(&WorkerId::new("w-1")).await.unwrap();
        f.store.delete_worker(&WorkerId::new("w-1")).await.unwrap();
        f.store
            .set_worker_state(&WorkerId::new("w-1"), WorkerState::Lost)
            .await
            .unwrap();
        assert_eq!(f.store.list_workers().await.unwrap(), vec![w]);

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
        for i in &instances {
            f.store.put_instance(i).await.unwrap();
        }
        assert_eq!(f.store.list_instances().await.unwrap(), instances);
        f.store.delete_instance(&instances[0].id).await.unwrap();
        assert_eq!(f.store.list_instances().await.unwrap(), instances[1..]);

        assert_eq!(f.store.fleet_settings().await.unwrap(), None);
        let mut settings = FleetSettings::default();
        f.store.put_fleet_settings(&settings).await.unwrap();
        settings.max_workers = 40;
        f.store.put_fleet_settings(&settings).await.unwrap();
        assert_eq!(f.store.fleet_settings().await.unwrap(), Some(settings));
    }
}

#[tokio::test]
async fn delete_abandoned_jobs_removes_only_old_created_jobs_and_their_attempts() {
    for f in stores() {
        let mut old = job("old", JobState::Created, 10);
        old.attempts.push(attempt(1, "w"));
        for j in [
            old,
            job("young", JobState::Created, 100),
            job("queued-old", JobState::Queued, 5),
        ] {
            f.store.create_job(&j).await.unwrap();
        }
        let deleted = f.store.delete_abandoned_jobs(Timestamp(50)).await.unwrap();
        assert_eq!(deleted, vec![JobId::new("old")], "{}", f.kind);
        assert_eq!(f.store.get_job(&JobId::new("old")).await.unwrap(), None);
        // A job created again under the same id starts with no stale attempts.
        f.store
            .create_job(&job("old", JobState::Created, 60))
            .await
            .unwrap();
        assert!(f
            .store
            .get_job(&JobId::new("old"))
            .await
            .unwrap()
            .unwrap()
            .attempts
            .is_empty());
        assert_eq!(
            ids(&f.store.list_jobs(&JobFilter::default()).await.unwrap()),
            ["young", "old", "queued-old"]
        );
    }
}

#[tokio::test]
async fn data_survives_reopening_the_file() {
    let (store, dir) = file_store();
    let j = on_worker("j-1", JobState::Running, 7, "w-1");
    store.create_job(&j).await.unwrap();
    store.put_worker(&worker("w-1", 9)).await.unwrap();
    store
        .put_fleet_settings(&FleetSettings::default())
        .await
        .unwrap();
    drop(store);
    let reopened = SqliteStore::open(&dir.path().join("state/drover.db")).unwrap();
    assert_eq!(reopened.get_job(&j.id).await.unwrap(), Some(j));
    assert_eq!(
        reopened.list_workers().await.unwrap(),
        vec![worker("w-1", 9)]
    );
    assert_eq!(
        reopened.fleet_settings().await.unwrap(),
        Some(FleetSettings::default())
    );
}

#[tokio::test]
async fn update_jobs_mixes_successes_conflicts_and_unknown_jobs_in_order() {
    for f in stores() {
        let a = job("a", JobState::Queued, 1);
        let b = job("b", JobState::Queued, 2);
        f.store.create_job(&a).await.unwrap();
        f.store.create_job(&b).await.unwrap();
        let mut stale_b = b.clone();
        stale_b.version = 7;
        let mut a2 = on_worker("a", JobState::Assigned, 1, "w");
        a2.version = 0;
        let results = f
            .store
            .update_jobs(&[a2.clone(), stale_b, job("ghost", JobState::Queued, 3), a2])
            .await
            .unwrap();
        assert!(matches!(results[0], Ok(1)), "{}: {results:?}", f.kind);
        assert!(matches!(
            results[1],
            Err(StoreError::Conflict { expected: 7, .. })
        ));
        assert!(matches!(results[2], Err(StoreError::NotFound(_))));
        assert!(
            matches!(results[3], Err(StoreError::Conflict { expected: 0, .. })),
            "the same version twice"
        );
        assert_eq!(
            f.store
                .get_job(&a.id)
                .await
                .unwrap()
                .unwrap()
                .attempts
                .len(),
            1
        );
        assert_eq!(f.store.get_job(&b.id).await.unwrap(), Some(b));
        assert!(f.store.update_jobs(&[]).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn an_unknown_state_in_the_file_is_a_backend_error_not_a_panic() {
    let store = SqliteStore::open_in_memory().unwrap();
    store
        .create_job(&job("j-1", JobState::Queued, 1))
        .await
        .unwrap();
    lock(&store.conn)
        .execute("UPDATE jobs SET state = 'exploded'", [])
        .unwrap();
    let err = store.get_job(&JobId::new("j-1")).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("reading job j-1: unknown job state \"exploded\""),
        "{err}"
    );
}

#[tokio::test]
async fn a_file_from_a_newer_drover_is_refused_with_a_hint() {
    let (store, dir) = file_store();
    lock(&store.conn)
        .pragma_update(None, "user_version", 99)
        .unwrap();
    drop(store);
    let err = SqliteStore::open(&dir.path().join("state/drover.db"))
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("not one this drover knows (0 to 1); was it written by a newer drover"),
        "{err}"
    );
}

#[test]
fn the_active_jobs_query_uses_the_partial_index() {
    let store = SqliteStore::open_in_memory().unwrap();
    let conn = lock(&store.conn);
    let sql = concat!(
        "EXPLAIN QUERY PLAN SELECT id FROM jobs WHERE ",
        active_states!(),
        " ORDER BY queued_at, id"
    );
    let plan: Vec<String> = conn
        .prepare(sql)
        .unwrap()
        .query_map([], |row| row.get::<_, String>(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(plan.iter().any(|p| p.contains("jobs_active")), "{plan:?}");
    assert!(
        !plan.iter().any(|p| p.contains("TEMP B-TREE")),
        "no sort: {plan:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Each write is made from a version that is either the current one (fresh) or
    /// off by some amount (stale, or from the future); only the fresh ones land.
    #[test]
    fn the_final_version_counts_exactly_the_accepted_writes(offsets in prop::collection::vec(-3i64..=3, 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let store = SqliteStore::open_in_memory().unwrap();
            let created = job("j", JobState::Queued, 1);
            store.create_job(&created).await.unwrap();
            let (mut current, mut accepted) = (created.version, 0u64);
            for (i, offset) in offsets.iter().enumerate() {
                let mut write = created.clone();
                write.version = current.saturating_add_signed(*offset);
                write.reason = Some(format!("write {i}"));
                match store.update_job(&write).await {
                    Ok(v) => {
                        prop_assert_eq!(write.version, current);
                        prop_assert_eq!(v, current + 1);
                        current = v;
                        accepted += 1;
                    }
                    Err(StoreError::Conflict { .. }) => prop_assert_ne!(write.version, current),
                    Err(other) => prop_assert!(false, "unexpected {}", other),
                }
            }
            let stored = store.get_job(&created.id).await.unwrap().unwrap();
            prop_assert_eq!(stored.version, created.version + accepted);
            Ok(())
        })?;
    }
}

/// `cargo test --release -- --ignored --nocapture measure` prints the figures.
#[tokio::test]
#[ignore]
async fn measure_update_jobs_and_active_jobs_at_scale() {
    let (store, _dir) = file_store();
    let jobs: Vec<Job> = (0..100_000)
        .map(|i| job(&format!("job-{i:06}"), JobState::Queued, i))
        .collect();
    let t = Instant::now();
    for j in &jobs {
        store.create_job(j).await.unwrap();
    }
    println!("create_job x100000 one by one: {:?}", t.elapsed());

    let assigned: Vec<Job> = jobs[..10_000]
        .iter()
        .map(|j| {
            let mut next = j.clone();
            next.state = JobState::Assigned;
            next.attempts.push(attempt(1, "w-1"));
            next
        })
        .collect();
    let t = Instant::now();
    let results = store.update_jobs(&assigned).await.unwrap();
    println!("update_jobs x10000 in one call: {:?}", t.elapsed());
    assert!(results.iter().all(|r| matches!(r, Ok(1))));

    for _ in 0..3 {
        let t = Instant::now();
        let active = store.active_jobs().await.unwrap();
        println!("active_jobs over {} jobs: {:?}", active.len(), t.elapsed());
        assert_eq!(active.len(), 100_000);
    }
}
