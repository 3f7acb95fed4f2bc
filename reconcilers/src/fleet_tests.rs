use super::*;
use crate::model::{JobId, JobState, LaunchKey, WorkerState};

fn settings(min: u32, max: u32, slots: u32) -> FleetSettings {
    FleetSettings {
        min_workers: min,
        max_workers: max,
        slots_per_worker: slots,
        idle_timeout_ms: 60_000,
    }
}

fn instance(id: &str, launched_at: u64) -> Instance {
    Instance {
        id: InstanceId::new(id),
        launch_key: LaunchKey::new(id),
        state: InstanceState::Running,
        launched_at: Timestamp(launched_at),
        provider_ref: None,
    }
}

fn seen(id: &str, launched_at: u64) -> ObservedInstance {
    ObservedInstance {
        id: InstanceId::new(id),
        launch_key: None,
        launched_at: Timestamp(launched_at),
    }
}

fn worker(id: &str, last_ping: u64, idle_since: Option<u64>) -> Worker {
    Worker {
        id: WorkerId::new(id),
        instance: InstanceId::new(id),
        slots: 1,
        state: WorkerState::Active,
        registered_at: Timestamp(0),
        last_ping: Timestamp(last_ping),
        idle_since: idle_since.map(Timestamp),
    }
}

fn queued(n: usize) -> Vec<Job> {
    (0..n)
        .map(|i| {
            let mut j = Job::new(JobId::new(format!("j{i}")), Timestamp(0));
            j.state = JobState::Queued;
            j
        })
        .collect()
}

fn active(jobs: &[Job]) -> u64 {
    crate::dispatch::JobCounts::of(jobs).active()
}

fn snapshot<'a>(
    now: u64,
    s: &'a FleetSettings,
    instances: &'a [Instance],
    observed: &'a [ObservedInstance],
    workers: &'a [Worker],
    jobs: &'a [Job],
) -> FleetSnapshot<'a> {
    FleetSnapshot {
        now: Timestamp(now),
        settings: s,
        timeouts: FleetTimeouts::default(),
        instances,
        observed,
        workers,
        on_workers: jobs,
        active_jobs: active(jobs),
    }
}

#[test]
fn the_queue_asks_for_workers_within_the_bounds() {
    assert_eq!(desired_workers(&settings(0, 10, 4), active(&queued(9))), 3);
    assert_eq!(desired_workers(&settings(0, 2, 1), active(&queued(9))), 2);
    assert_eq!(desired_workers(&settings(1, 5, 1), 0), 1);
}

#[test]
fn launches_only_what_is_missing() {
    let s = settings(0, 4, 1);
    let inst = [instance("w1", 0)];
    let obs = [seen("w1", 0)];
    let workers = [worker("w1", 1_000, None)];
    let jobs = queued(3);
    let actions = reconcile(&snapshot(1_000, &s, &inst, &obs, &workers, &jobs));
    assert_eq!(actions, vec![FleetAction::Launch { count: 2 }]);
}

#[test]
fn an_instance_whose_worker_stopped_pinging_is_terminated_as_lost() {
    let s = settings(0, 1, 1);
    let inst = [instance("w1", 0)];
    let obs = [seen("w1", 0)];
    let workers = [worker("w1", 0, None)];
    let actions = reconcile(&snapshot(20_000, &s, &inst, &obs, &workers, &[]));
    assert_eq!(
        actions,
        vec![FleetAction::Terminate {
            instance: InstanceId::new("w1"),
            reason: TerminateReason::Lost
        }]
    );
}

/// Regression: a killed worker's instance, seconds old, was counted as serving
/// for the whole launch grace, so its replacement waited 30 s.
#[test]
fn a_vanished_instance_whose_worker_registered_is_forgotten_and_replaced_at_once() {
    let s = settings(0, 1, 1);
    let inst = [instance("w1", 0)];
    let workers = [worker("w1", 2_000, None)];
    let jobs = queued(1);
    let actions = reconcile(&snapshot(2_000, &s, &inst, &[], &workers, &jobs));
    assert!(actions.contains(&FleetAction::Forget {
        instance: InstanceId::new("w1")
    }));
    assert!(
        actions.contains(&FleetAction::Launch { count: 1 }),
        "{actions:?}"
    );
}

#[test]
fn a_fresh_launch_not_yet_listed_is_given_the_grace_period() {
    let s = settings(0, 1, 1);
    let inst = [instance("w1", 1_000)];
    let jobs = queued(1);
    let actions = reconcile(&snapshot(2_000, &s, &inst, &[], &[], &jobs));
    assert!(actions.is_empty(), "{actions:?}");
}

#[test]
fn idle_workers_above_the_minimum_are_terminated_longest_idle_first() {
    let s = settings(1, 3, 1);
    let inst = [instance("w1", 0), instance("w2", 0), instance("w3", 0)];
    let obs = [seen("w1", 0), seen("w2", 0), seen("w3", 0)];
    let workers = [
        worker("w1", 100_000, Some(10_000)),
        worker("w2", 100_000, Some(5_000)),
        worker("w3", 100_000, Some(90_000)), // idle, but not for long enough
    ];
    let actions = reconcile(&snapshot(100_000, &s, &inst, &obs, &workers, &[]));
    assert_eq!(
        actions,
        vec![
            FleetAction::Terminate {
                instance: InstanceId::new("w2"),
                reason: TerminateReason::Idle
            },
            FleetAction::Terminate {
                instance: InstanceId::new("w1"),
                reason: TerminateReason::Idle
            },
        ]
    );
}

#[test]
fn a_busy_worker_is_never_scaled_down() {
    let s = settings(0, 1, 1);
    let inst = [instance("w1", 0)];
    let obs = [seen("w1", 0)];
    let workers = [worker("w1", 100_000, Some(0))];
    let mut job = Job::new(JobId::new("j1"), Timestamp(0));
    job = crate::jobs::assign(&job, &WorkerId::new("w1"), Timestamp(0));
    job.state = JobState::Running;
    let actions = reconcile(&snapshot(
        100_000,
        &s,
        &inst,
        &obs,
        &workers,
        std::slice::from_ref(&job),
    ));
    assert!(actions.is_empty(), "{actions:?}");
}

#[test]
fn an_instance_that_never_registers_is_terminated() {
    let s = settings(1, 1, 1);
    let inst = [instance("w1", 0)];
    let obs = [seen("w1", 0)];
    let actions = reconcile(&snapshot(200_000, &s, &inst, &obs, &[], &[]));
    assert!(actions.contains(&FleetAction::Terminate {
        instance: InstanceId::new("w1"),
        reason: TerminateReason::NeverRegistered
    }));
    // It no longer counts: a replacement is launched in the same tick.
    assert!(actions.contains(&FleetAction::Launch { count: 1 }));
}

#[test]
fn an_unknown_instance_is_terminated_as_leaked_after_the_grace() {
    let s = settings(0, 0, 1);
    let obs = [seen("stray", 0)];
    let actions = reconcile(&snapshot(60_000, &s, &[], &obs, &[], &[]));
    assert_eq!(
        actions,
        vec![FleetAction::Terminate {
            instance: InstanceId::new("stray"),
            reason: TerminateReason::Leaked
        }]
    );
}
