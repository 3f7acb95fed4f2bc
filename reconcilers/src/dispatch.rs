//! What the jobs and fleet loops see of the jobs, bounded by the size of the fleet
//! instead of the length of the queue: every job on a worker, the first queued jobs
//! in dispatch order (as many as there are free slots), and counts per state.
//!
//! The jobs reconciler decides the same on this view as on every active job: it
//! gives a queued job only to a free slot, and takes them in dispatch order, so a
//! queued job past the free slots never changes its decision. With 100,000 jobs
//! queued and 1,000 workers, the view holds the few thousand on workers instead of
//! all of them (docs/performance.md).

use crate::jobs::worker_alive;
use crate::model::{Job, JobId, JobState, Timestamp, Worker, WorkerId};
use std::cmp::Ordering;
use std::collections::HashMap;

/// The order queued jobs are dispatched in. Work that already started once
/// (requeued from a lost worker, or retried) goes first, so that a lost worker's
/// jobs run elsewhere within a tick even behind a long queue; then the longest
/// queued; the id last, so that the order is total and every store agrees on it.
pub fn dispatch_key(job: &Job) -> (bool, Option<Timestamp>, &JobId) {
    (job.attempts.is_empty(), job.queued_at, &job.id)
}

pub fn dispatch_order(a: &Job, b: &Job) -> Ordering {
    dispatch_key(a).cmp(&dispatch_key(b))
}

/// How many jobs a worker may hold (assigned or running): one per slot, plus
/// `prefetch_per_slot` per slot waiting there for a slot to free, so that a
/// worker starts its next job as soon as one ends instead of a tick later.
/// A prefetched job moves to a free slot elsewhere when it is the oldest
/// waiting for one (`jobs::reconcile`).
pub fn capacity(w: &Worker, prefetch_per_slot: u32) -> u32 {
    w.slots.saturating_mul(prefetch_per_slot.saturating_add(1))
}

/// How many queued jobs the jobs reconciler can hand out at `now`: the room
/// (`capacity`) of the workers it trusts, once the jobs on them (`on_workers`,
/// every job assigned or running) are counted. The store reads this many queued jobs.
pub fn free_slots(
    workers: &[Worker],
    on_workers: &[Job],
    now: Timestamp,
    heartbeat_timeout_ms: u64,
    prefetch_per_slot: u32,
) -> usize {
    // Keyed by id as the reconciler's own map is: a duplicate id counts once.
    let alive: HashMap<&WorkerId, u32> = workers
        .iter()
        .filter(|w| worker_alive(w, now, heartbeat_timeout_ms))
        .map(|w| (&w.id, capacity(w, prefetch_per_slot)))
        .collect();
    let mut used: HashMap<&WorkerId, u32> = HashMap::new();
    for w in on_workers.iter().filter_map(Job::worker) {
        if alive.contains_key(w) {
            *used.entry(w).or_default() += 1;
        }
    }
    alive
        .iter()
        .map(|(w, room)| room.saturating_sub(used.get(w).copied().unwrap_or(0)) as usize)
        .sum()
}

/// When a job entered the state it is in, as far as its record tells.
pub fn entered_state_at(job: &Job) -> Option<Timestamp> {
    match job.state {
        JobState::Created => Some(job.created_at),
        JobState::Queued => job.queued_at,
        JobState::Assigned => job.current_attempt().map(|a| a.assigned_at),
        JobState::Running => job.current_attempt().and_then(|a| a.started_at),
        _ => None,
    }
}

/// The jobs in one state: how many, and when the one longest in it entered it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateCount {
    pub jobs: u64,
    /// The earliest `entered_state_at` among them (`None` if none tells).
    pub oldest: Option<Timestamp>,
}

impl StateCount {
    fn add(&mut self, since: Option<Timestamp>) {
        self.jobs += 1;
        self.oldest = match (self.oldest, since) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

/// The active jobs (queued, assigned, running) counted by state: the demand for
/// workers, and the metrics of the queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobCounts {
    pub queued: StateCount,
    pub assigned: StateCount,
    pub running: StateCount,
}

impl JobCounts {
    pub fn of(jobs: &[Job]) -> JobCounts {
        let mut counts = JobCounts::default();
        for job in jobs {
            counts.add(job);
        }
        counts
    }

    /// Counts `job` if it is active; any other job is not counted.
    pub fn add(&mut self, job: &Job) {
        let since = entered_state_at(job);
        match job.state {
            JobState::Queued => self.queued.add(since),
            JobState::Assigned => self.assigned.add(since),
            JobState::Running => self.running.add(since),
            _ => {}
        }
    }

    /// The count of `state`; zero for a state that is not active.
    pub fn get(&self, state: JobState) -> StateCount {
        match state {
            JobState::Queued => self.queued,
            JobState::Assigned => self.assigned,
            JobState::Running => self.running,
            _ => StateCount::default(),
        }
    }

    /// Jobs queued, assigned or running: what the fleet is sized for.
    pub fn active(&self) -> u64 {
        self.queued.jobs + self.assigned.jobs + self.running.jobs
    }
}

/// What a store answers for `Store::dispatch_view`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DispatchView {
    /// The jobs on workers, then the queued ones: one slice for `JobsSnapshot`.
    jobs: Vec<Job>,
    on_workers: usize,
    counts: JobCounts,
}

impl DispatchView {
    /// `on_workers`: every job assigned or running, in queue order (`queued_at`,
    /// then id). `queued`: the first queued jobs in dispatch order. `counts`: of
    /// every active job, not only of those two lists.
    pub fn new(mut on_workers: Vec<Job>, queued: Vec<Job>, counts: JobCounts) -> DispatchView {
        let n = on_workers.len();
        on_workers.extend(queued);
        DispatchView {
            jobs: on_workers,
            on_workers: n,
            counts,
        }
    }

    /// The view of a full read of the active jobs (in queue order), for a store
    /// with no index in dispatch order: `wanted` says, from the jobs on workers,
    /// how many queued jobs to keep.
    pub fn from_active(jobs: Vec<Job>, wanted: impl FnOnce(&[Job]) -> usize) -> DispatchView {
        let counts = JobCounts::of(&jobs);
        let (on_workers, rest): (Vec<Job>, Vec<Job>) =
            jobs.into_iter().partition(|j| j.state.is_on_worker());
        let mut queued: Vec<Job> = rest
            .into_iter()
            .filter(|j| j.state == JobState::Queued)
            .collect();
        let take = wanted(&on_workers).min(queued.len());
        // A partial selection, as the reconciler does: only the first `take` matter.
        if take < queued.len() {
            queued.select_nth_unstable_by(take, dispatch_order);
            queued.truncate(take);
        }
        queued.sort_by(dispatch_order);
        DispatchView::new(on_workers, queued, counts)
    }

    /// What the jobs reconciler reads (`JobsSnapshot::jobs`).
    pub fn jobs(&self) -> &[Job] {
        &self.jobs
    }

    /// Every job assigned or running, in queue order.
    pub fn on_workers(&self) -> &[Job] {
        &self.jobs[..self.on_workers]
    }

    /// The first queued jobs in dispatch order.
    pub fn queued(&self) -> &[Job] {
        &self.jobs[self.on_workers..]
    }

    pub fn counts(&self) -> &JobCounts {
        &self.counts
    }
}

#[cfg(test)]
#[path = "dispatch_tests.rs"]
mod tests;
