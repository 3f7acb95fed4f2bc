//! The jobs loop's bounded read (`Store::dispatch_view`): on the same data it
//! shows what a full read of the active jobs would (`DispatchView::from_active`),
//! and the jobs reconciler decides the same on it.

use super::*;
use reconcilers::dispatch::{free_slots, DispatchView};
use reconcilers::jobs::{assign, reconcile, worker_lost, JobsPlan, JobsSnapshot};
use std::sync::Mutex;

const NOW: Timestamp = Timestamp(100_000);
const HB: u64 = 15_000;

/// Every kind of job the loop meets, and which are not its business.
fn jobs() -> Vec<Job> {
    let mut requeued = on_worker("requeued", JobState::Queued, 60, "w-dead");
    requeued.attempts[0].outcome = Some(AttemptOutcome::WorkerLost);
    let mut no_worker = job("no-worker", JobState::Assigned, 8);
    no_worker.attempts.clear();
    vec![
        job("created", JobState::Created, 1),
        job("q-b", JobState::Queued, 20),
        job("q-a", JobState::Queued, 20),
        job("q-old", JobState::Queued, 3),
        job("q-late", JobState::Queued, 40),
        requeued,
        on_worker("assigned", JobState::Assigned, 10, "w-1"),
        on_worker("running", JobState::Running, 5, "w-2"),
        on_worker("on-dead", JobState::Running, 7, "w-dead"),
        no_worker,
        on_worker("done", JobState::Succeeded, 2, "w-1"),
        on_worker("failed", JobState::Failed, 4, "w-2"),
        job("cancelled", JobState::Cancelled, 6),
    ]
}

fn workers() -> Vec<Worker> {
    let mut w2 = worker("w-2", NOW.0);
    w2.slots = 3;
    vec![worker("w-1", NOW.0), w2, worker("w-dead", 0)]
}

fn decide(jobs: &[Job], workers: &[Worker]) -> JobsPlan {
    reconcile(&JobsSnapshot {
        now: NOW,
        jobs,
        workers,
        heartbeat_timeout_ms: HB,
        prefetch_per_slot: PREFETCH,
    })
}

/// No prefetch: the slot arithmetic below counts one job per slot (the
/// reconcilers' property test covers the view with prefetch).
const PREFETCH: u32 = 0;

/// The view and the full read agree for any number of queued jobs asked for.
async fn agrees_with_a_full_read(store: &dyn Store) {
    let all = store.active_jobs().await.unwrap();
    for k in [0, 1, 2, 3, 5, 100] {
        let view = store.dispatch_view(Box::new(move |_| k)).await.unwrap();
        assert_eq!(
            view,
            DispatchView::from_active(all.clone(), |_| k),
            "k = {k}"
        );
    }
}

pub async fn dispatch_view_shows_what_a_full_read_shows_and_decides_the_same(f: Fixture) {
    create_all(f.store.as_ref(), &jobs()).await;
    agrees_with_a_full_read(f.store.as_ref()).await;

    // What the jobs loop asks: as many queued jobs as free slots.
    let (workers, seen) = (workers(), Arc::new(Mutex::new(Vec::new())));
    let (w, s) = (workers.clone(), Arc::clone(&seen));
    let view = f
        .store
        .dispatch_view(Box::new(move |on| {
            *s.lock().unwrap() = on.to_vec();
            free_slots(&w, on, NOW, HB, PREFETCH)
        }))
        .await
        .unwrap();
    let on_workers = ["running", "on-dead", "no-worker", "assigned"];
    assert_eq!(ids(&seen.lock().unwrap()), on_workers);
    assert_eq!(ids(view.on_workers()), on_workers);
    // w-1 has 1 of 2 slots free, w-2 2 of 3; w-dead is not trusted. The requeued
    // job goes first though queued last.
    assert_eq!(ids(view.queued()), ["requeued", "q-old", "q-a"]);
    let c = view.counts();
    assert_eq!(
        (c.queued.jobs, c.assigned.jobs, c.running.jobs, c.active()),
        (5, 2, 2, 9)
    );
    assert_eq!(c.queued.oldest, Some(Timestamp(4)));

    let all = f.store.active_jobs().await.unwrap();
    let plan = decide(view.jobs(), &workers);
    assert_eq!(plan, decide(&all, &workers));
    // Lost and orphaned work is requeued as before; the free slots are filled.
    let requeued: Vec<&str> = plan
        .writes
        .iter()
        .filter(|j| j.state == JobState::Queued)
        .map(|j| j.id.as_str())
        .collect();
    assert_eq!(requeued, ["on-dead", "no-worker"]);
    assert_eq!(plan.assigned.len(), 3);
    assert_eq!(plan.lost_workers, [WorkerId::new("w-dead")]);
}

pub async fn dispatch_view_follows_updates_a_job_tried_again_goes_first(f: Fixture) {
    create_all(f.store.as_ref(), &jobs()).await;
    // The youngest first try is assigned, then its worker is lost: queued again
    // with an attempt, it now goes before every first try.
    let q_late = f
        .store
        .get_job(&JobId::new("q-late"))
        .await
        .unwrap()
        .unwrap();
    let mut assigned = assign(&q_late, &WorkerId::new("w-1"), Timestamp(90));
    assigned.version = f.store.update_job(&assigned).await.unwrap();
    agrees_with_a_full_read(f.store.as_ref()).await;
    let view = f.store.dispatch_view(Box::new(|_| 10)).await.unwrap();
    assert!(ids(view.on_workers()).contains(&"q-late"));
    assert!(!ids(view.queued()).contains(&"q-late"));

    let lost = worker_lost(&assigned, "worker w-1 lost", Timestamp(95));
    assert_eq!(lost.state, JobState::Queued);
    f.store.update_job(&lost).await.unwrap();
    agrees_with_a_full_read(f.store.as_ref()).await;
    let view = f.store.dispatch_view(Box::new(|_| 3)).await.unwrap();
    assert_eq!(ids(view.queued()), ["requeued", "q-late", "q-old"]);

    // A cancelled job leaves the view and its counts.
    let mut cancelled = f
        .store
        .get_job(&JobId::new("q-old"))
        .await
        .unwrap()
        .unwrap();
    cancelled.state = JobState::Cancelled;
    f.store.update_job(&cancelled).await.unwrap();
    agrees_with_a_full_read(f.store.as_ref()).await;
    let view = f.store.dispatch_view(Box::new(|_| 3)).await.unwrap();
    assert_eq!(ids(view.queued()), ["requeued", "q-late", "q-a"]);
    assert_eq!(view.counts().queued.jobs, 4);
}
