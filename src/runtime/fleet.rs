//! The fleet loop: observe (the provider first, then the store), decide
//! (`reconcilers::fleet`), act (record, then launch; mark, then terminate).

use super::Controller;
use crate::metrics::METRICS;
use crate::store::Store;
use reconcilers::{
    fleet::{reconcile, FleetAction, FleetSnapshot, FleetTimeouts},
    model::{Instance, InstanceId, InstanceState, LaunchKey, TerminateReason, WorkerState},
};
use std::collections::HashMap;
use std::sync::Arc;

/// `store` is the leader's fenced view: every write below carries its token.
pub async fn tick(c: &Controller, store: Arc<dyn Store>) -> anyhow::Result<()> {
    let store = store.as_ref();
    // The provider is listed before the store is read: an instance launched in
    // between is then known to the store, never mistaken for a leak.
    let observed = c.fleet.list().await?;
    let instances = c.store.list_instances().await?;
    crate::metrics::instances_observed(&instances, c.now());
    let workers = c.workers().await?;
    // The jobs on workers (busy workers are not scaled down) and the count of
    // every active job (the demand), not the queue itself.
    let jobs = c.store.dispatch_view(Box::new(|_| 0)).await?;
    let settings = c
        .store
        .fleet_settings()
        .await?
        .unwrap_or_else(|| c.config.fleet.clone());
    let heartbeat_ms = c.config.heartbeat_timeout.as_millis() as u64;
    let now = c.now();
    let actions = reconcile(&FleetSnapshot {
        now,
        settings: &settings,
        timeouts: FleetTimeouts {
            heartbeat_ms,
            registration_ms: c.config.registration_timeout.as_millis() as u64,
            leak_grace_ms: c.config.leak_grace.as_millis() as u64,
            ..FleetTimeouts::default()
        },
        instances: &instances,
        observed: &observed,
        workers: &workers,
        on_workers: jobs.on_workers(),
        active_jobs: jobs.counts().active(),
    });
    let known: HashMap<&InstanceId, &Instance> = instances.iter().map(|i| (&i.id, i)).collect();
    for action in actions {
        match action {
            FleetAction::Launch { count } => {
                // Together, so that the fleet can batch them (EC2 does).
                let launched =
                    futures::future::join_all((0..count).map(|_| launch_one(c, store))).await;
                for result in launched {
                    result?;
                }
            }
            FleetAction::Terminate { instance, reason } => {
                let record = match known.get(&instance) {
                    Some(rec) => (*rec).clone(),
                    None => orphan_record(&instance, &observed),
                };
                terminate(c, store, record, reason, known.contains_key(&instance)).await?;
            }
            FleetAction::Forget { instance } => {
                tracing::info!(%instance, "instance is gone; forgetting it");
                if let Some(record) = known.get(&instance) {
                    // Gone is gone, but the provider may have leftovers to sweep.
                    c.fleet.terminate(record).await?;
                }
                store.delete_instance(&instance).await?;
                let terminated_by_us = known
                    .get(&instance)
                    .is_some_and(|r| r.state == InstanceState::Terminating);
                for w in workers.iter().filter(|w| w.instance == instance) {
                    // An instance that vanished under a worker still trusted is a
                    // loss (counted here, once). One we terminated is not, unless
                    // it was for missed heartbeats the jobs loop has not counted yet.
                    let alive = reconcilers::jobs::worker_alive(w, now, heartbeat_ms);
                    if w.state == WorkerState::Active && (!terminated_by_us || !alive) {
                        tracing::warn!(worker = %w.id, "worker's instance is gone: its jobs are requeued");
                        METRICS.lost_workers.inc();
                    }
                    store.delete_worker(&w.id).await?;
                    c.heartbeats.forget(&w.id);
                    c.wake.forget_worker(&w.id);
                }
                // Its jobs now belong to no known worker: requeue them now.
                c.wake.jobs.notify_one();
            }
        }
    }
    Ok(())
}

fn orphan_record(id: &InstanceId, observed: &[reconcilers::model::ObservedInstance]) -> Instance {
    let seen = observed.iter().find(|o| &o.id == id);
    Instance {
        id: id.clone(),
        launch_key: seen
            .and_then(|o| o.launch_key.clone())
            .unwrap_or_else(|| LaunchKey::new(id.as_str())),
        state: InstanceState::Running,
        launched_at: seen.map(|o| o.launched_at).unwrap_or_default(),
        provider_ref: None,
    }
}

/// Records the launch, then launches: a crash in between leaves a record that the
/// next controller adopts (or forgets after the launch grace), never an unknown
/// instance.
async fn launch_one(c: &Controller, store: &dyn Store) -> anyhow::Result<()> {
    let id = crate::ids::new_instance_id(c.now());
    let mut instance = Instance {
        launch_key: LaunchKey::new(id.as_str()),
        id,
        state: InstanceState::Launching,
        launched_at: c.now(),
        provider_ref: None,
    };
    store.put_instance(&instance).await?;
    match c.fleet.launch(&instance).await {
        Ok(provider_ref) => {
            instance.provider_ref = provider_ref;
            instance.state = InstanceState::Running;
            store.put_instance(&instance).await?;
            METRICS.instances_launched.inc();
            tracing::info!(instance = %instance.id, fleet = c.fleet.name(), "launched worker instance");
            Ok(())
        }
        Err(e) => Err(anyhow::anyhow!("{e}")),
    }
}

async fn terminate(
    c: &Controller,
    store: &dyn Store,
    mut record: Instance,
    reason: TerminateReason,
    known: bool,
) -> anyhow::Result<()> {
    let first_time = record.state != InstanceState::Terminating;
    if known && first_time {
        record.state = InstanceState::Terminating;
        store.put_instance(&record).await?;
    }
    c.fleet.terminate(&record).await?;
    if first_time {
        crate::metrics::instance_terminated(reason);
        tracing::info!(instance = %record.id, reason = reason.as_str(), "terminating instance");
    }
    Ok(())
}

/// At shutdown: terminate every instance this controller's fleet shows, and wait
/// (a little) for them to go.
pub async fn terminate_all(c: &Controller, store: &dyn Store) -> anyhow::Result<()> {
    let observed = c.fleet.list().await?;
    let instances = c.store.list_instances().await?;
    for inst in &instances {
        terminate(c, store, inst.clone(), TerminateReason::Shutdown, true).await?;
    }
    for o in observed
        .iter()
        .filter(|o| !instances.iter().any(|i| i.id == o.id))
    {
        terminate(
            c,
            store,
            orphan_record(&o.id, &observed),
            TerminateReason::Shutdown,
            false,
        )
        .await?;
    }
    let deadline =
        tokio::time::Instant::now() + c.config.kill_grace + std::time::Duration::from_secs(2);
    while tokio::time::Instant::now() < deadline {
        if c.fleet.list().await?.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let workers = c.store.list_workers().await?;
    for inst in &instances {
        store.delete_instance(&inst.id).await?;
        for w in workers.iter().filter(|w| w.instance == inst.id) {
            store.delete_worker(&w.id).await?;
        }
    }
    Ok(())
}
