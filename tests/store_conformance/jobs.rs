//! The behaviours of jobs: creation, conditional updates, attempts, and the
//! listings (active jobs, jobs on a worker, jobs by state, abandoned jobs).

use super::*;

pub async fn a_created_job_reads_back_as_written_and_an_unknown_one_is_none(f: Fixture) {
    let mut j = on_worker("j-1", JobState::Running, 7, "w-1");
    j.version = 41;
    j.reason = Some(String::new());
    f.store.create_job(&j).await.unwrap();
    assert_eq!(f.store.get_job(&j.id).await.unwrap(), Some(j));
    assert_eq!(f.store.get_job(&JobId::new("nope")).await.unwrap(), None);
}

pub async fn get_jobs_reads_many_in_the_order_asked_none_for_the_unknown(f: Fixture) {
    let a = on_worker("j-a", JobState::Running, 7, "w-1");
    let b = job("j-b", JobState::Created, 3);
    f.store.create_jobs(&[a.clone(), b.clone()]).await.unwrap();
    let asked = [JobId::new("j-b"), JobId::new("nope"), JobId::new("j-a")];
    assert_eq!(
        f.store.get_jobs(&asked).await.unwrap(),
        [Some(b), None, Some(a)]
    );
    assert_eq!(f.store.get_jobs(&[]).await.unwrap(), []);
}

pub async fn a_taken_id_is_refused_and_an_update_of_an_unknown_job_is_not_found(f: Fixture) {
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

pub async fn a_stale_update_is_refused_and_changes_nothing(f: Fixture) {
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

pub async fn concurrent_updaters_from_the_same_version_exactly_one_wins(f: Fixture) {
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

pub async fn update_jobs_mixes_successes_conflicts_and_unknown_jobs_in_order(f: Fixture) {
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
    assert!(
        matches!(results[1], Err(StoreError::Conflict { expected: 7, .. })),
        "{results:?}"
    );
    assert!(
        matches!(results[2], Err(StoreError::NotFound(_))),
        "{results:?}"
    );
    // The same version twice: exactly one of them landed. Which one is the
    // store's affair: DynamoDB runs the writes of a batch concurrently.
    let (first, last) = (&results[0], &results[3]);
    let one_won = |won: &StoreResult<u64>, lost: &StoreResult<u64>| {
        matches!(won, Ok(1)) && matches!(lost, Err(StoreError::Conflict { expected: 0, .. }))
    };
    assert!(one_won(first, last) || one_won(last, first), "{results:?}");
    let stored_a = f.store.get_job(&a.id).await.unwrap().unwrap();
    assert_eq!((stored_a.version, stored_a.attempts.len()), (1, 1));
    assert_eq!(f.store.get_job(&b.id).await.unwrap(), Some(b));
    assert_eq!(f.store.get_job(&JobId::new("ghost")).await.unwrap(), None);
    assert!(f.store.update_jobs(&[]).await.unwrap().is_empty());
}

pub async fn attempts_round_trip_with_every_field(f: Fixture) {
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
            // Every combination of empty logs over the attempts.
            empty_logs: reconcilers::model::EmptyLogs::from_bits(n as u8 + 2),
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

pub async fn active_jobs_are_queued_assigned_and_running_in_queue_order(f: Fixture) {
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

pub async fn active_jobs_returns_all_of_1200_jobs_across_pages_and_shards(f: Fixture) {
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

pub async fn jobs_on_worker_are_those_its_current_attempt_holds(f: Fixture) {
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

pub async fn list_jobs_filters_by_state_newest_first_with_a_limit(f: Fixture) {
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
pub async fn list_jobs_merges_many_partitions_exactly(f: Fixture) {
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

pub async fn delete_abandoned_jobs_removes_only_old_created_jobs(f: Fixture) {
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
