//! The fleet reconciler: how many workers are needed, which instances to launch,
//! which to terminate (idle, lost, never registered, leaked) and which records to
//! forget once the provider no longer shows them.

use crate::model::{
    FleetSettings, Instance, InstanceId, InstanceState, Job, ObservedInstance, TerminateReason,
    Timestamp, Worker, WorkerId,
};
use std::collections::{HashMap, HashSet};

/// Timeouts of the fleet loop, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetTimeouts {
    /// A worker that has not pinged for this long is lost.
    pub heartbeat_ms: u64,
    /// An instance whose worker has not registered after this long is terminated.
    pub registration_ms: u64,
    /// An instance the store knows but the provider does not show is forgotten
    /// after this long (the provider's listing may lag behind a launch).
    pub launch_grace_ms: u64,
    /// An instance the provider shows but the store does not know is terminated
    /// after this long from its launch (it may be a launch whose record is in flight).
    pub leak_grace_ms: u64,
}

impl Default for FleetTimeouts {
    fn default() -> Self {
        FleetTimeouts {
            heartbeat_ms: 15_000,
            registration_ms: 120_000,
            launch_grace_ms: 30_000,
            leak_grace_ms: 30_000,
        }
    }
}

pub struct FleetSnapshot<'a> {
    pub now: Timestamp,
    pub settings: &'a FleetSettings,
    pub timeouts: FleetTimeouts,
    /// What the store says we launched.
    pub instances: &'a [Instance],
    /// What the provider says exists.
    pub observed: &'a [ObservedInstance],
    pub workers: &'a [Worker],
    /// Jobs assigned or running: their workers are busy. (Queued jobs may be in
    /// the slice too; they hold no worker.)
    pub on_workers: &'a [Job],
    /// How many jobs are queued, assigned or running, all of them: the demand the
    /// fleet is sized for (`dispatch::JobCounts::active`).
    pub active_jobs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetAction {
    /// Launch this many new instances.
    Launch { count: u32 },
    Terminate {
        instance: InstanceId,
        reason: TerminateReason,
    },
    /// The store's record of an instance the provider no longer shows, and of its
    /// worker: the jobs it held belong to no known worker any more, so the jobs
    /// reconciler requeues them at once, without waiting for the heartbeat timeout.
    Forget { instance: InstanceId },
}

/// The number of workers `active_jobs` (queued, assigned or running) ask for,
/// within the settings' bounds.
pub fn desired_workers(settings: &FleetSettings, active_jobs: u64) -> u32 {
    let demand = active_jobs;
    let slots = u64::from(settings.slots_per_worker.max(1));
    let needed = demand.div_ceil(slots).min(u64::from(u32::MAX)) as u32;
    needed.clamp(
        settings.min_workers,
        settings.max_workers.max(settings.min_workers),
    )
}

pub fn reconcile(s: &FleetSnapshot) -> Vec<FleetAction> {
    let mut actions = Vec::new();
    let observed: HashMap<&InstanceId, &ObservedInstance> =
        s.observed.iter().map(|o| (&o.id, o)).collect();
    let known: HashSet<&InstanceId> = s.instances.iter().map(|i| &i.id).collect();
    let worker_of: HashMap<&InstanceId, &Worker> =
        s.workers.iter().map(|w| (&w.instance, w)).collect();
    let busy: HashSet<&WorkerId> = s.on_workers.iter().filter_map(|j| j.worker()).collect();

    // Instances that will still be serving after this tick.
    let mut serving: Vec<&Instance> = Vec::new();
    for inst in s.instances {
        let age = s.now.since(inst.launched_at);
        let worker = worker_of.get(&inst.id).copied();
        if !observed.contains_key(&inst.id) {
            // Gone at the provider, or not visible yet: the grace covers only an
            // instance never seen running (its worker never registered).
            if inst.state == InstanceState::Terminating
                || worker.is_some()
                || age >= s.timeouts.launch_grace_ms
            {
                actions.push(FleetAction::Forget {
                    instance: inst.id.clone(),
                });
            } else {
                serving.push(inst);
            }
            continue;
        }
        if inst.state == InstanceState::Terminating {
            // Termination is idempotent: ask again until the provider confirms.
            actions.push(FleetAction::Terminate {
                instance: inst.id.clone(),
                reason: TerminateReason::Shutdown,
            });
            continue;
        }
        match worker {
            Some(w) if !crate::jobs::worker_alive(w, s.now, s.timeouts.heartbeat_ms) => {
                // The jobs reconciler declares the worker lost; here only its
                // instance goes.
                actions.push(FleetAction::Terminate {
                    instance: inst.id.clone(),
                    reason: TerminateReason::Lost,
                });
            }
            None if age >= s.timeouts.registration_ms => {
                actions.push(FleetAction::Terminate {
                    instance: inst.id.clone(),
                    reason: TerminateReason::NeverRegistered,
                });
            }
            _ => serving.push(inst),
        }
    }

    // Instances nobody launched (or whose record was lost): garbage.
    actions.extend(crate::gc::leaked_instances(
        s.observed,
        &known,
        s.now,
        s.timeouts.leak_grace_ms,
    ));

    let desired = desired_workers(s.settings, s.active_jobs);
    let current = serving.len() as u32;
    if desired > current {
        actions.push(FleetAction::Launch {
            count: desired - current,
        });
    } else if current > desired {
        // Scale down: only workers idle for the idle timeout, longest idle first.
        let mut idle: Vec<(Timestamp, &InstanceId)> = serving
            .iter()
            .filter_map(|inst| {
                let w = worker_of.get(&inst.id)?;
                if busy.contains(&w.id) {
                    return None;
                }
                let since = w.idle_since?;
                (s.now.since(since) >= s.settings.idle_timeout_ms).then_some((since, &inst.id))
            })
            .collect();
        idle.sort();
        for (_, id) in idle.into_iter().take((current - desired) as usize) {
            actions.push(FleetAction::Terminate {
                instance: id.clone(),
                reason: TerminateReason::Idle,
            });
        }
    }
    actions
}

#[cfg(test)]
#[path = "fleet_tests.rs"]
mod tests;
