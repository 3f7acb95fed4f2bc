use super::*;
use crate::model::{InstanceId, JobSpec};
use proptest::prelude::*;

const HB: u64 = 15_000;

fn worker(id: &str, slots: u32, last_ping: u64) -> Worker {
    Worker {
        id: WorkerId::new(id),
        instance: InstanceId::new(id),
        slots,
        state: WorkerState::Active,
        registered_at: Timestamp(0),
        last_ping: Timestamp(last_ping),
        idle_since: None,
    }
}

fn queued(id: &str, at: u64) -> Job {
    let mut j = Job::new(JobId::new(id), Timestamp(at));
    j.state = JobState::Queued;
    j.queued_at = Some(Timestamp(at));
    j.spec = JobSpec {
        shallow_retry_count: 2,
        output_archive: "output.tar.gz".into(),
        ..JobSpec::default()
    };
    j
}

fn on_worker(id: &str, w: &str, state: JobState) -> Job {
    let mut j = assign(&queued(id, 0), &WorkerId::new(w), Timestamp(1));
    j.state = state;
    j
}

fn report(w: &str, attempt: u32, outcome: AttemptOutcome, code: Option<i32>) -> Report {
    Report {
        worker: WorkerId::new(w),
        attempt,
        outcome,
        exit_code: code,
        reason: code.map(|c| format!("exit code {c}")),
        has_output: true,
        empty_logs: EmptyLogs::default(),
    }
}

fn written(c: Result<Change, Refusal>) -> Job {
    match c {
        Ok(Change::Write(j)) => *j,
        other => panic!("expected a write, got {other:?}"),
    }
}

fn reconcile_at_100(jobs: &[Job], workers: &[Worker]) -> JobsPlan {
    prefetching_at_100(jobs, workers, 0)
}

fn prefetching_at_100(jobs: &[Job], workers: &[Worker], prefetch_per_slot: u32) -> JobsPlan {
    reconcile(&JobsSnapshot {
        now: Timestamp(100),
        jobs,
        workers,
        heartbeat_timeout_ms: HB,
        prefetch_per_slot,
    })
}

fn assigned_to(plan: &JobsPlan) -> Vec<(&str, &str)> {
    plan.assigned
        .iter()
        .map(|(j, w)| (j.as_str(), w.as_str()))
        .collect()
}

#[test]
fn free_slots_fill_first_then_each_slot_prefetches_one_job() {
    let workers = [worker("busy", 2, 90), worker("idle", 2, 90)];
    let mut jobs = vec![
        on_worker("r1", "busy", JobState::Running),
        on_worker("r2", "busy", JobState::Running),
    ];
    jobs.extend((1..=7).map(|i| queued(&format!("q{i}"), i)));
    let plan = prefetching_at_100(&jobs, &workers, 1);
    // The idle worker's two free slots take the two oldest; then two waiting
    // jobs per worker (2 slots x 1); the seventh job stays queued.
    assert_eq!(
        assigned_to(&plan),
        [
            ("q1", "idle"),
            ("q2", "idle"),
            ("q3", "busy"),
            ("q4", "idle"),
            ("q5", "busy"),
            ("q6", "idle"),
        ]
    );
    assert_eq!(prefetching_at_100(&jobs, &workers, 0).assigned.len(), 2);
}

#[test]
fn a_prefetched_job_moves_to_an_idle_worker_when_the_queue_is_empty() {
    let workers = [worker("busy", 1, 90), worker("idle", 1, 90)];
    let waiting = on_worker("waiting", "busy", JobState::Assigned);
    let jobs = vec![on_worker("r1", "busy", JobState::Running), waiting.clone()];
    let plan = prefetching_at_100(&jobs, &workers, 1);
    assert_eq!(assigned_to(&plan), [("waiting", "idle")]);
    let moved = &plan.writes[0];
    assert_eq!(moved.state, JobState::Assigned);
    assert_eq!(moved.version, waiting.version, "a conditional write");
    let attempt = moved.current_attempt().expect("attempt");
    assert_eq!(attempt.number, 1, "the same attempt, on another worker");
    assert_eq!(attempt.worker, WorkerId::new("idle"));
    // The busy worker can no longer start it; the idle one can.
    assert!(check_current(moved, &WorkerId::new("busy"), 1).is_err());
    assert!(check_current(moved, &WorkerId::new("idle"), 1).is_ok());
}

/// A job prefetched behind a long job does not wait there while newer jobs
/// take the free slots elsewhere: a free slot takes the oldest of the queued
/// and the waiting jobs.
#[test]
fn a_free_slot_takes_a_waiting_prefetched_job_before_a_newer_queued_one() {
    let workers = [worker("busy", 1, 90), worker("idle", 1, 90)];
    let jobs = vec![
        on_worker("long", "busy", JobState::Running),
        on_worker("waiting", "busy", JobState::Assigned),
        queued("newer", 50),
    ];
    let plan = prefetching_at_100(&jobs, &workers, 1);
    assert_eq!(
        assigned_to(&plan),
        [("waiting", "idle"), ("newer", "idle")],
        "the waiting job runs now; the newer one waits for it"
    );
    assert_eq!(plan.writes[1].state, JobState::Assigned);
}

#[test]
fn a_job_assigned_within_its_workers_slots_is_about_to_start_and_stays() {
    let workers = [worker("w1", 2, 90), worker("idle", 1, 90)];
    let jobs = vec![
        on_worker("r1", "w1", JobState::Running),
        on_worker("next", "w1", JobState::Assigned),
    ];
    assert_eq!(prefetching_at_100(&jobs, &workers, 1), JobsPlan::default());
}

#[test]
fn queued_jobs_go_oldest_first_to_free_slots() {
    let jobs = vec![queued("j3", 30), queued("j1", 10), queued("j2", 20)];
    let workers = vec![worker("w1", 2, 100)];
    let plan = reconcile_at_100(&jobs, &workers);
    let ids: Vec<&str> = plan.assigned.iter().map(|(j, _)| j.as_str()).collect();
    assert_eq!(ids, ["j1", "j2"]);
    assert!(plan
        .writes
        .iter()
        .all(|j| j.state == JobState::Assigned && j.attempts[0].number == 1));
}

#[test]
fn requeued_work_goes_before_jobs_that_waited_longer() {
    // j-lost ran on a worker that died; it was requeued after j-old was queued.
    let mut lost = worker_lost(
        &on_worker("j-lost", "w-dead", JobState::Running),
        "worker w-dead lost",
        Timestamp(90),
    );
    assert_eq!(lost.state, JobState::Queued);
    lost.queued_at = Some(Timestamp(90));
    let jobs = vec![queued("j-old", 10), queued("j-older", 5), lost];
    let workers = vec![worker("w1", 2, 100)];
    let plan = reconcile_at_100(&jobs, &workers);
    let ids: Vec<&str> = plan.assigned.iter().map(|(j, _)| j.as_str()).collect();
    assert_eq!(ids, ["j-lost", "j-older"]);
}

#[test]
fn work_spreads_over_workers_and_never_exceeds_their_slots() {
    let jobs: Vec<Job> = (0..10).map(|i| queued(&format!("j{i}"), i)).collect();
    let mut busy = worker("w2", 3, 100);
    busy.slots = 3;
    let workers = vec![worker("w1", 2, 100), busy];
    let mut all = jobs.clone();
    all.push(on_worker("running", "w2", JobState::Running));
    let plan = reconcile(&JobsSnapshot {
        now: Timestamp(100),
        jobs: &all,
        workers: &workers,
        heartbeat_timeout_ms: HB,
        prefetch_per_slot: 0,
    });
    let on = |w: &str| {
        plan.assigned
            .iter()
            .filter(|(_, x)| x.as_str() == w)
            .count()
    };
    assert_eq!((on("w1"), on("w2")), (2, 2));
}

#[test]
fn lost_worker_jobs_are_requeued_with_next_attempt() {
    let jobs = vec![on_worker("j1", "w1", JobState::Running)];
    let workers = vec![worker("w1", 1, 0)];
    let plan = reconcile(&JobsSnapshot {
        now: Timestamp(HB + 1),
        jobs: &jobs,
        workers: &workers,
        heartbeat_timeout_ms: HB,
        prefetch_per_slot: 0,
    });
    assert_eq!(plan.lost_workers, vec![WorkerId::new("w1")]);
    let j = &plan.writes[0];
    assert_eq!(j.state, JobState::Queued);
    assert_eq!(j.attempts[0].outcome, Some(AttemptOutcome::WorkerLost));
    assert_eq!(j.next_attempt_number(), 2);
    // No live worker: nothing is assigned in the same tick.
    assert!(plan.assigned.is_empty());
}

#[test]
fn jobs_of_an_unknown_worker_are_requeued() {
    let jobs = vec![on_worker("j1", "gone", JobState::Assigned)];
    let plan = reconcile(&JobsSnapshot {
        now: Timestamp(5),
        jobs: &jobs,
        workers: &[],
        heartbeat_timeout_ms: HB,
        prefetch_per_slot: 0,
    });
    assert_eq!(plan.writes[0].state, JobState::Queued);
}

#[test]
fn shallow_retries_run_out_and_the_job_fails_with_the_reason() {
    let mut j = on_worker("j1", "w1", JobState::Running);
    for round in 0..3 {
        j = worker_lost(&j, "worker w1 lost", Timestamp(10));
        if round < 2 {
            assert_eq!(j.state, JobState::Queued, "round {round}");
            j = assign(&j, &WorkerId::new("w1"), Timestamp(11));
        }
    }
    assert_eq!(j.state, JobState::Failed);
    assert_eq!(j.attempts.len(), 3);
    assert!(
        j.reason
            .as_deref()
            .unwrap_or("")
            .contains("ShallowRetryCount = 2 exhausted"),
        "{:?}",
        j.reason
    );
}

#[test]
fn a_failed_run_is_retried_only_within_retry_count() {
    let mut j = on_worker("j1", "w1", JobState::Running);
    j.spec.retry_count = 1;
    let j = written(finish(
        &j,
        &report("w1", 1, AttemptOutcome::Failed, Some(3)),
        Timestamp(5),
    ));
    assert_eq!(j.state, JobState::Queued);
    let j = assign(&j, &WorkerId::new("w2"), Timestamp(6));
    let j = written(finish(
        &j,
        &report("w2", 2, AttemptOutcome::Failed, Some(3)),
        Timestamp(7),
    ));
    assert_eq!((j.state, j.exit_code), (JobState::Failed, Some(3)));
}

#[test]
fn a_report_from_an_older_attempt_is_refused() {
    let j = on_worker("j1", "w1", JobState::Running);
    let j = worker_lost(&j, "lost", Timestamp(5));
    let j = assign(&j, &WorkerId::new("w2"), Timestamp(6));
    let late = finish(
        &j,
        &report("w1", 1, AttemptOutcome::Succeeded, Some(0)),
        Timestamp(7),
    );
    assert!(
        matches!(
            late,
            Err(Refusal::StaleAttempt {
                reported: 1,
                current: 2,
                ..
            })
        ),
        "{late:?}"
    );
    assert!(matches!(
        start(&j, &WorkerId::new("w1"), 1, Timestamp(7)),
        Err(Refusal::StaleAttempt { .. })
    ));
}

#[test]
fn a_report_for_another_workers_attempt_is_refused() {
    let j = on_worker("j1", "w1", JobState::Running);
    let r = finish(
        &j,
        &report("w2", 1, AttemptOutcome::Succeeded, Some(0)),
        Timestamp(7),
    );
    assert!(matches!(r, Err(Refusal::WrongWorker { .. })), "{r:?}");
}

#[test]
fn the_same_report_twice_is_harmless() {
    let j = on_worker("j1", "w1", JobState::Running);
    let r = report("w1", 1, AttemptOutcome::Succeeded, Some(0));
    let done = written(finish(&j, &r, Timestamp(5)));
    assert_eq!(done.state, JobState::Succeeded);
    assert_eq!(finish(&done, &r, Timestamp(6)), Ok(Change::AlreadyDone));
    let started = written(start(
        &on_worker("j2", "w1", JobState::Assigned),
        &WorkerId::new("w1"),
        1,
        Timestamp(1),
    ));
    assert_eq!(
        start(&started, &WorkerId::new("w1"), 1, Timestamp(2)),
        Ok(Change::AlreadyDone)
    );
}

#[test]
fn cancelling_ends_the_attempt_and_a_finished_job_stays_finished() {
    let j = on_worker("j1", "w1", JobState::Running);
    let Change::Write(c) = cancel(&j, Timestamp(5)) else {
        panic!("expected a write")
    };
    assert_eq!(c.state, JobState::Cancelled);
    assert_eq!(c.attempts[0].outcome, Some(AttemptOutcome::Cancelled));
    assert_eq!(cancel(&c, Timestamp(6)), Change::AlreadyDone);
    // The worker's report after the cancel changes nothing: its own "cancelled"
    // is a duplicate, and a late "succeeded" is refused.
    assert_eq!(
        finish(
            &c,
            &report("w1", 1, AttemptOutcome::Cancelled, None),
            Timestamp(7)
        ),
        Ok(Change::AlreadyDone)
    );
    assert!(finish(
        &c,
        &report("w1", 1, AttemptOutcome::Succeeded, Some(0)),
        Timestamp(7)
    )
    .is_err());
}

#[test]
fn submit_is_refused_once_the_job_is_past_created() {
    let j = queued("j1", 0);
    let spec = JobSpec {
        retry_count: 9,
        ..j.spec.clone()
    };
    assert!(matches!(
        submit(&j, spec, Timestamp(1)),
        Err(Refusal::WrongState { .. })
    ));
    assert_eq!(
        submit(&j, j.spec.clone(), Timestamp(1)),
        Ok(Change::AlreadyDone)
    );
}

proptest! {
    /// Whatever the mix of jobs and workers, a tick never gives a worker more jobs
    /// than its slots, never assigns to a dead worker, and never assigns a job twice.
    #[test]
    fn dispatch_respects_slots_and_liveness(
        n_jobs in 0usize..60,
        workers_spec in proptest::collection::vec((1u32..5, any::<bool>()), 0..8),
        running in proptest::collection::vec(0usize..8, 0..10),
    ) {
        let now = Timestamp(100_000);
        let workers: Vec<Worker> = workers_spec.iter().enumerate()
            .map(|(i, (slots, alive))| worker(&format!("w{i}"), *slots, if *alive { now.0 } else { 0 }))
            .collect();
        let mut jobs: Vec<Job> = (0..n_jobs).map(|i| queued(&format!("q{i}"), i as u64)).collect();
        for (k, w) in running.iter().enumerate() {
            if *w < workers.len() {
                jobs.push(on_worker(&format!("r{k}"), &format!("w{w}"), JobState::Running));
            }
        }
        let plan = reconcile(&JobsSnapshot { now, jobs: &jobs, workers: &workers, heartbeat_timeout_ms: HB, prefetch_per_slot: 0 });
        let mut ids = std::collections::HashSet::new();
        for j in &plan.writes {
            prop_assert!(ids.insert(j.id.clone()), "job written twice");
        }
        for w in &workers {
            let alive = worker_alive(w, now, HB);
            let kept = jobs.iter().filter(|j| alive && j.state == JobState::Running && j.worker() == Some(&w.id)).count();
            let given = plan.assigned.iter().filter(|(_, x)| x == &w.id).count();
            prop_assert!(alive || given == 0, "assigned to a dead worker");
            // Jobs already over the slots (a shrunk worker) are kept; no new ones join them.
            prop_assert!(given <= (w.slots as usize).saturating_sub(kept), "over the slots of {}", w.id);
        }
    }
}
