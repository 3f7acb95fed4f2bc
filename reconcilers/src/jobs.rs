//! The jobs reconciler and the job state machine.
//!
//! Every change of a job is a pure function from the record as read to the record
//! to write; the runtime writes it only if the stored version is still the one read,
//! so a decision taken on stale data is refused by the store, never applied.

use crate::model::{
    Attempt, AttemptOutcome, EmptyLogs, Job, JobId, JobState, Timestamp, Worker, WorkerId,
    WorkerState,
};
use std::collections::HashMap;

/// Why a report or request about a job was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A report from an attempt that is no longer the current one (a worker that
    /// was presumed lost and came back, or a duplicate after a retry).
    #[error("attempt {reported} of job {job} is stale: the job is {state} at attempt {current}")]
    StaleAttempt {
        job: JobId,
        reported: u32,
        current: u32,
        state: JobState,
    },
    #[error("job {job} attempt {attempt} belongs to worker {owner}, not {caller}")]
    WrongWorker {
        job: JobId,
        attempt: u32,
        owner: WorkerId,
        caller: WorkerId,
    },
    #[error("job {job} is {state}; {action} needs it {needed}")]
    WrongState {
        job: JobId,
        state: JobState,
        action: &'static str,
        needed: &'static str,
    },
}

/// What a change does: a record to write, or nothing because it was already done
/// (duplicates are harmless).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Write(Box<Job>),
    AlreadyDone,
}

/// Created -> Queued, once the inputs are uploaded.
pub fn submit(job: &Job, spec: crate::model::JobSpec, now: Timestamp) -> Result<Change, Refusal> {
    match job.state {
        JobState::Created => {
            let mut next = job.clone();
            next.spec = spec;
            next.state = JobState::Queued;
            next.queued_at = Some(now);
            Ok(Change::Write(Box::new(next)))
        }
        JobState::Queued if job.spec == spec => Ok(Change::AlreadyDone),
        state => Err(Refusal::WrongState {
            job: job.id.clone(),
            state,
            action: "submit",
            needed: "created",
        }),
    }
}

/// Queued -> Assigned to `worker` with the next attempt number.
pub fn assign(job: &Job, worker: &WorkerId, now: Timestamp) -> Job {
    let mut next = job.clone();
    next.attempts.push(Attempt {
        number: job.next_attempt_number(),
        worker: worker.clone(),
        assigned_at: now,
        started_at: None,
        finished_at: None,
        exit_code: None,
        outcome: None,
        reason: None,
        has_output: false,
        empty_logs: EmptyLogs::default(),
    });
    next.state = JobState::Assigned;
    next.reason = None;
    next
}

/// Checks that `worker` holds the current attempt `attempt` of an active job:
/// the fence on every report and upload of a worker.
pub fn check_current(job: &Job, worker: &WorkerId, attempt: u32) -> Result<(), Refusal> {
    let current = job.current_attempt();
    let current_no = current.map_or(0, |a| a.number);
    if attempt != current_no || !job.state.is_on_worker() {
        return Err(Refusal::StaleAttempt {
            job: job.id.clone(),
            reported: attempt,
            current: current_no,
            state: job.state,
        });
    }
    match current {
        Some(a) if &a.worker != worker => Err(Refusal::WrongWorker {
            job: job.id.clone(),
            attempt,
            owner: a.worker.clone(),
            caller: worker.clone(),
        }),
        _ => Ok(()),
    }
}

/// Assigned -> Running.
pub fn start(
    job: &Job,
    worker: &WorkerId,
    attempt: u32,
    now: Timestamp,
) -> Result<Change, Refusal> {
    check_current(job, worker, attempt)?;
    if job.state == JobState::Running {
        return Ok(Change::AlreadyDone);
    }
    let mut next = job.clone();
    next.state = JobState::Running;
    if let Some(a) = next.current_attempt_mut() {
        a.started_at = Some(now);
    }
    Ok(Change::Write(Box::new(next)))
}

/// What a worker says of a finished attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub worker: WorkerId,
    pub attempt: u32,
    pub outcome: AttemptOutcome,
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
    pub has_output: bool,
    pub empty_logs: EmptyLogs,
}

/// Assigned|Running -> Succeeded | Failed | Cancelled, or back to Queued for a retry.
pub fn finish(job: &Job, report: &Report, now: Timestamp) -> Result<Change, Refusal> {
    if let Some(a) = job.attempts.iter().find(|a| a.number == report.attempt) {
        // The same report twice: the first one already ended this attempt.
        if a.worker == report.worker && a.outcome == Some(report.outcome) && a.finished_at.is_some()
        {
            return Ok(Change::AlreadyDone);
        }
    }
    check_current(job, &report.worker, report.attempt)?;
    let mut next = job.clone();
    if let Some(a) = next.current_attempt_mut() {
        a.finished_at = Some(now);
        a.started_at.get_or_insert(now);
        a.exit_code = report.exit_code;
        a.outcome = Some(report.outcome);
        a.reason = report.reason.clone();
        a.has_output = report.has_output;
        a.empty_logs = report.empty_logs;
    }
    next.exit_code = report.exit_code;
    let reason = report.reason.clone();
    match report.outcome {
        AttemptOutcome::Succeeded => end(&mut next, JobState::Succeeded, None, now),
        AttemptOutcome::Cancelled => end(&mut next, JobState::Cancelled, reason, now),
        _ => retry_or_fail(&mut next, reason, now),
    }
    Ok(Change::Write(Box::new(next)))
}

/// The job's worker is lost: the current attempt ends as `WorkerLost`.
pub fn worker_lost(job: &Job, reason: &str, now: Timestamp) -> Job {
    let mut next = job.clone();
    if let Some(a) = next.current_attempt_mut() {
        a.finished_at = Some(now);
        a.outcome = Some(AttemptOutcome::WorkerLost);
        a.reason = Some(reason.to_string());
    }
    retry_or_fail(&mut next, Some(reason.to_string()), now);
    next
}

/// Any non-terminal state -> Cancelled. Its worker learns it from its next ping.
pub fn cancel(job: &Job, now: Timestamp) -> Change {
    if job.state.is_terminal() {
        return Change::AlreadyDone;
    }
    let mut next = job.clone();
    if job.state.is_on_worker() {
        if let Some(a) = next.current_attempt_mut() {
            a.finished_at = Some(now);
            a.outcome = Some(AttemptOutcome::Cancelled);
            a.reason = Some("cancelled by user".into());
        }
    }
    end(
        &mut next,
        JobState::Cancelled,
        Some("cancelled by user".into()),
        now,
    );
    Change::Write(Box::new(next))
}

fn end(job: &mut Job, state: JobState, reason: Option<String>, now: Timestamp) {
    job.state = state;
    job.reason = reason;
    job.finished_at = Some(now);
}

/// After a failed attempt: requeue while the matching retry budget lasts.
fn retry_or_fail(job: &mut Job, reason: Option<String>, now: Timestamp) {
    let shallow = job
        .current_attempt()
        .and_then(|a| a.outcome)
        .is_some_and(|o| o.is_shallow());
    let (used, budget, name) = if shallow {
        (
            job.shallow_failures(),
            job.spec.shallow_retry_count,
            "ShallowRetryCount",
        )
    } else {
        (job.deep_failures(), job.spec.retry_count, "RetryCount")
    };
    let reason = reason.unwrap_or_else(|| "attempt failed".into());
    if used <= budget {
        job.state = JobState::Queued;
        job.queued_at = Some(now);
        job.reason = Some(format!(
            "retrying after: {reason} ({used} of {name} = {budget})"
        ));
    } else {
        let note = if budget == 0 {
            reason
        } else {
            format!("{reason} ({name} = {budget} exhausted)")
        };
        end(job, JobState::Failed, Some(note), now);
    }
}

/// What the jobs loop sees.
pub struct JobsSnapshot<'a> {
    pub now: Timestamp,
    /// Every job assigned or running, and the queued jobs: all of them, or at
    /// least the first `dispatch::free_slots` in dispatch order (a
    /// `dispatch::DispatchView`), which decides the same.
    pub jobs: &'a [Job],
    pub workers: &'a [Worker],
    /// A worker that has not pinged for this long is lost.
    pub heartbeat_timeout_ms: u64,
    /// Jobs a worker may hold per slot beyond the one running there, waiting
    /// for the slot: it then starts the next job without waiting for a tick
    /// (see `dispatch::capacity`).
    pub prefetch_per_slot: u32,
}

/// What the jobs loop decided.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct JobsPlan {
    /// Workers to declare lost (they stopped pinging).
    pub lost_workers: Vec<WorkerId>,
    /// Job records to write, each conditional on the version it was read at.
    pub writes: Vec<Job>,
    /// How many of `writes` are new assignments (for metrics and hints).
    pub assigned: Vec<(JobId, WorkerId)>,
}

/// Whether a worker can still be trusted with work at `now`.
pub fn worker_alive(w: &Worker, now: Timestamp, heartbeat_timeout_ms: u64) -> bool {
    w.state == WorkerState::Active && now.since(w.last_ping) < heartbeat_timeout_ms
}

/// Requeues the work of lost workers and hands queued jobs to workers with free
/// slots, oldest queued first.
pub fn reconcile(s: &JobsSnapshot) -> JobsPlan {
    let mut plan = JobsPlan::default();
    let mut alive: HashMap<&WorkerId, &Worker> = HashMap::new();
    for w in s.workers {
        if worker_alive(w, s.now, s.heartbeat_timeout_ms) {
            alive.insert(&w.id, w);
        } else if w.state == WorkerState::Active {
            plan.lost_workers.push(w.id.clone());
        }
    }

    let mut used: HashMap<&WorkerId, u32> = HashMap::new();
    let mut queued: Vec<&Job> = Vec::new();
    for job in s.jobs {
        match job.state {
            JobState::Queued => queued.push(job),
            JobState::Assigned | JobState::Running => match job.worker() {
                Some(w) if alive.contains_key(w) => *used.entry(w).or_default() += 1,
                other => {
                    let reason = match other {
                        Some(w) => format!("worker {w} lost"),
                        None => "job had no worker".to_string(),
                    };
                    let next = worker_lost(job, &reason, s.now);
                    plan.writes.push(next);
                }
            },
            _ => {}
        }
    }

    let used_on = |w: &WorkerId| used.get(w).copied().unwrap_or(0);
    // Free slots first, then the room to prefetch (jobs waiting on a worker for
    // its next free slot): an idle worker gets work before a busy one queues it.
    let free = room(&alive, |w| w.slots.saturating_sub(used_on(&w.id)));
    let prefetch = room(&alive, |w| {
        crate::dispatch::capacity(w, s.prefetch_per_slot)
            .saturating_sub(used_on(&w.id).max(w.slots))
    });
    let free_slots: u32 = free.iter().map(|(_, n)| n).sum();
    let capacity: u32 = free_slots + prefetch.iter().map(|(_, n)| n).sum::<u32>();
    let take = (capacity as usize).min(queued.len());
    // Work that already started once (requeued from a lost worker, or retried)
    // goes first, then the oldest: a lost worker's jobs run elsewhere within a
    // tick even behind a long queue (`dispatch::dispatch_order`, which the stores'
    // bounded reads follow too). Only the first `take` jobs matter: a partial
    // selection, not a full sort, keeps the tick cheap when 100,000 jobs wait.
    let by_age = |a: &&Job, b: &&Job| crate::dispatch::dispatch_order(a, b);
    if take < queued.len() {
        queued.select_nth_unstable_by(take, by_age);
        queued.truncate(take);
    }
    queued.sort_by(by_age);
    // A free slot takes the first job in dispatch order among the queued ones
    // and those prefetched by a busy worker (waiting there behind a job that
    // may run for hours): prefetch never lets a newer job overtake an older one
    // for a free slot, nor leaves a worker idle while a job waits elsewhere.
    let mut for_free: Vec<&Job> = queued
        .iter()
        .copied()
        .chain(waiting_beyond_slots(s.jobs, &alive, &used))
        .collect();
    for_free.sort_by(by_age);
    for_free.truncate(free_slots as usize);
    let moved: std::collections::HashSet<&JobId> = for_free.iter().map(|j| &j.id).collect();
    let rest: Vec<&Job> = queued
        .iter()
        .copied()
        .filter(|j| !moved.contains(&j.id))
        .collect();
    for (job, worker) in for_free.into_iter().zip(round_robin(free)) {
        let next = match job.state {
            JobState::Queued => assign(job, worker, s.now),
            // The same attempt, on another worker; a conditional write like any
            // other: if the first worker started it meanwhile, the move is
            // refused; if the move lands first, that worker's `started` is
            // refused and it never runs it.
            _ => moved_to(job, worker, s.now),
        };
        plan.writes.push(next);
        plan.assigned.push((job.id.clone(), worker.clone()));
    }
    for (job, worker) in rest.into_iter().zip(round_robin(prefetch)) {
        plan.writes.push(assign(job, worker, s.now));
        plan.assigned.push((job.id.clone(), worker.clone()));
    }
    plan
}

/// A prefetched job moved to `worker`'s free slot.
fn moved_to(job: &Job, worker: &WorkerId, now: Timestamp) -> Job {
    let mut next = job.clone();
    if let Some(a) = next.current_attempt_mut() {
        a.worker = worker.clone();
        a.assigned_at = now;
    }
    next
}

/// The prefetched jobs that wait on a busy worker: assigned, not started, and
/// beyond their worker's slots; on each worker the ones it would start last.
fn waiting_beyond_slots<'a>(
    jobs: &'a [Job],
    alive: &HashMap<&WorkerId, &Worker>,
    used: &HashMap<&WorkerId, u32>,
) -> Vec<&'a Job> {
    let mut waiting = Vec::new();
    for w in alive.values() {
        let excess = used
            .get(&w.id)
            .copied()
            .unwrap_or(0)
            .saturating_sub(w.slots) as usize;
        if excess == 0 {
            continue;
        }
        let mut mine: Vec<&Job> = jobs
            .iter()
            .filter(|j| j.state == JobState::Assigned && j.worker() == Some(&w.id))
            .collect();
        // Latest assigned first; among those assigned together, the last in
        // dispatch order (the worker starts the first ones first).
        mine.sort_by(|a, b| {
            let at = |j: &Job| j.current_attempt().map(|a| a.assigned_at);
            at(b)
                .cmp(&at(a))
                .then_with(|| crate::dispatch::dispatch_order(b, a))
        });
        waiting.extend(mine.into_iter().take(excess));
    }
    waiting
}

/// Each worker's room by `room_of`, most room first (work spreads over the
/// fleet), workers without room left out.
fn room<'a>(
    alive: &HashMap<&'a WorkerId, &'a Worker>,
    room_of: impl Fn(&Worker) -> u32,
) -> Vec<(&'a WorkerId, u32)> {
    let mut room: Vec<(&WorkerId, u32)> = alive
        .values()
        .map(|w| (&w.id, room_of(w)))
        .filter(|(_, n)| *n > 0)
        .collect();
    room.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    room
}

/// Every unit of room, one slot of each worker in turn.
fn round_robin(mut room: Vec<(&WorkerId, u32)>) -> Vec<&WorkerId> {
    let total: u32 = room.iter().map(|(_, n)| n).sum();
    let mut order = Vec::with_capacity(total as usize);
    while order.len() < total as usize {
        for (w, n) in room.iter_mut().filter(|(_, n)| *n > 0) {
            order.push(*w);
            *n -= 1;
        }
    }
    order
}

#[cfg(test)]
#[path = "jobs_tests.rs"]
mod tests;

/// RetryCount when the JDL does not say: a job that ran and failed is not retried
/// (its failure is the user's to see).
pub const DEFAULT_RETRY_COUNT: u32 = 0;
/// ShallowRetryCount when the JDL does not say: failures of the infrastructure
/// (a lost worker, a failed download) are retried twice.
pub const DEFAULT_SHALLOW_RETRY_COUNT: u32 = 2;

/// What the controller keeps of a JDL to schedule the job.
pub fn job_spec(desc: &crate::jdl::JobDescription) -> crate::model::JobSpec {
    crate::model::JobSpec {
        name: desc.job_name.clone(),
        retry_count: desc.retry_count.unwrap_or(DEFAULT_RETRY_COUNT),
        shallow_retry_count: desc
            .shallow_retry_count
            .unwrap_or(DEFAULT_SHALLOW_RETRY_COUNT),
        max_wall_time_secs: desc.max_wall_time,
        output_archive: crate::jdl::output_archive_candidate(&desc.output_sandbox)
            .map(|name| name.rsplit('/').next().unwrap_or(name).to_string())
            .unwrap_or_else(|| "output.tar.gz".to_string()),
    }
}
