use super::*;
use crate::jobs::{assign, reconcile, worker_lost, JobsSnapshot};
use crate::model::{InstanceId, JobSpec, WorkerState};
use proptest::prelude::*;

const HB: u64 = 15_000;
const NOW: Timestamp = Timestamp(100_000);

fn worker(id: &str, slots: u32, alive: bool) -> Worker {
    Worker {
        id: WorkerId::new(id),
        instance: InstanceId::new(id),
        slots,
        state: WorkerState::Active,
        registered_at: Timestamp(0),
        last_ping: if alive { NOW } else { Timestamp(0) },
        idle_since: None,
    }
}

fn queued(id: &str, at: u64) -> Job {
    let mut j = Job::new(JobId::new(id), Timestamp(0));
    j.state = JobState::Queued;
    j.queued_at = Some(Timestamp(at));
    j.spec = JobSpec {
        shallow_retry_count: 5,
        ..JobSpec::default()
    };
    j
}

fn on_worker(id: &str, at: u64, w: &str, state: JobState) -> Job {
    let mut j = assign(&queued(id, at), &WorkerId::new(w), Timestamp(at + 1));
    j.state = state;
    if state == JobState::Running {
        j.current_attempt_mut().unwrap().started_at = Some(Timestamp(at + 2));
    }
    j
}

/// Queued again at `at` after its worker was lost: it has an attempt.
fn requeued(id: &str, at: u64) -> Job {
    let j = on_worker(id, 0, "gone", JobState::Running);
    let mut j = worker_lost(&j, "worker gone lost", Timestamp(at));
    assert_eq!(j.state, JobState::Queued);
    j.queued_at = Some(Timestamp(at));
    j
}

fn ids(jobs: &[Job]) -> Vec<&str> {
    jobs.iter().map(|j| j.id.as_str()).collect()
}

fn full_view(jobs: &[Job]) -> DispatchView {
    DispatchView::from_active(jobs.to_vec(), |_| usize::MAX)
}

#[test]
fn a_requeued_job_is_dispatched_before_older_first_tries() {
    let jobs = vec![
        queued("q1", 10),
        queued("q2", 20),
        requeued("r1", 500),
        queued("q3", 30),
    ];
    let view = DispatchView::from_active(jobs, |_| 2);
    assert_eq!(ids(view.queued()), ["r1", "q1"]);
    assert_eq!(view.counts().queued.jobs, 4);
}

#[test]
fn the_view_keeps_every_job_on_a_worker_in_queue_order_and_counts_all() {
    let jobs = vec![
        on_worker("a1", 5, "w1", JobState::Assigned),
        queued("q1", 10),
        on_worker("r1", 15, "dead", JobState::Running),
        queued("q2", 20),
    ];
    let view = DispatchView::from_active(jobs, |on| {
        assert_eq!(ids(on), ["a1", "r1"]);
        0
    });
    assert_eq!(ids(view.on_workers()), ["a1", "r1"]);
    assert!(view.queued().is_empty());
    assert_eq!(ids(view.jobs()), ["a1", "r1"]);
    let c = view.counts();
    assert_eq!(
        (c.queued.jobs, c.assigned.jobs, c.running.jobs, c.active()),
        (2, 1, 1, 4)
    );
    assert_eq!(c.queued.oldest, Some(Timestamp(10)));
    assert_eq!(c.assigned.oldest, Some(Timestamp(6)), "its assigned_at");
    assert_eq!(c.running.oldest, Some(Timestamp(17)), "its started_at");
    assert_eq!(c.get(JobState::Created), StateCount::default());
}

#[test]
fn free_slots_are_those_of_live_workers_less_their_jobs() {
    let workers = [
        worker("w1", 4, true),
        worker("w2", 2, true),
        worker("dead", 8, false),
    ];
    let on = [
        on_worker("a", 0, "w1", JobState::Running),
        on_worker("b", 0, "w2", JobState::Assigned),
        on_worker("c", 0, "w2", JobState::Running),
        // A shrunk worker's extra job frees nothing elsewhere.
        on_worker("d", 0, "w2", JobState::Running),
        on_worker("e", 0, "dead", JobState::Running),
    ];
    assert_eq!(free_slots(&workers, &on, NOW, HB, 0), 3);
    assert_eq!(free_slots(&workers, &[], NOW, HB, 0), 6);
    assert_eq!(free_slots(&[], &on, NOW, HB, 0), 0);
}

/// Jobs of every kind the reconciler meets: first tries and requeued jobs queued
/// at colliding times, and jobs on live, dead, unknown or no workers.
fn arb_jobs(n_workers: usize) -> impl Strategy<Value = Vec<Job>> {
    let one = (0u8..6, 0u64..40, 0usize..n_workers + 2);
    proptest::collection::vec(one, 0..80).prop_map(move |specs| {
        specs
            .into_iter()
            .enumerate()
            .map(|(i, (kind, at, w))| {
                let id = format!("j{i:02}");
                let w = format!("w{w}");
                match kind {
                    0 | 1 => queued(&id, at),
                    2 => requeued(&id, at),
                    3 => on_worker(&id, at, &w, JobState::Running),
                    4 => on_worker(&id, at, &w, JobState::Assigned),
                    _ => {
                        // Assigned with no attempt: "job had no worker".
                        let mut j = queued(&id, at);
                        j.state = JobState::Assigned;
                        j
                    }
                }
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    /// The bounded view with `free_slots` queued jobs decides exactly as the full
    /// read: the same lost workers, the same writes, in the same order.
    #[test]
    fn reconciling_the_view_decides_as_reconciling_every_active_job(
        workers_spec in proptest::collection::vec((0u32..5, any::<bool>()), 0..6),
        jobs in arb_jobs(6),
        prefetch in 0u32..3,
    ) {
        let workers: Vec<Worker> = workers_spec.iter().enumerate()
            .map(|(i, (slots, alive))| worker(&format!("w{i}"), *slots, *alive))
            .collect();
        // In queue order, as the stores read every active job.
        let mut jobs = jobs;
        jobs.sort_by(|a, b| (a.queued_at, &a.id).cmp(&(b.queued_at, &b.id)));
        let snapshot = |jobs: &[Job]| reconcile(&JobsSnapshot {
            now: NOW, jobs, workers: &workers, heartbeat_timeout_ms: HB,
            prefetch_per_slot: prefetch,
        });
        let full = snapshot(&jobs);
        let view = DispatchView::from_active(jobs.clone(), |on| free_slots(&workers, on, NOW, HB, prefetch));
        prop_assert_eq!(&snapshot(view.jobs()), &full);
        let whole = full_view(&jobs);
        prop_assert_eq!(view.counts(), whole.counts());
        prop_assert_eq!(view.counts(), &JobCounts::of(&jobs));
        // Never more queued jobs read than there are free slots.
        prop_assert!(view.queued().len() <= free_slots(&workers, view.on_workers(), NOW, HB, prefetch));
    }
}
