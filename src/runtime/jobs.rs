//! The jobs loop: observe (workers, and of the jobs only what the decision needs:
//! `Store::dispatch_view`), decide (`reconcilers::jobs`), act (conditional writes
//! in one batch, wake the workers that got work).

use super::Controller;
use crate::metrics::METRICS;
use crate::store::{Store, StoreError};
use reconcilers::{
    dispatch::free_slots,
    jobs::{reconcile, JobsSnapshot},
    model::{Job, JobId, JobState, WorkerState},
};
use std::collections::HashMap;
use std::sync::Arc;

/// `store` is the leader's fenced view: every write below carries its token.
pub async fn tick(c: &Controller, store: Arc<dyn Store>) -> anyhow::Result<()> {
    let now = c.now();
    let heartbeat_timeout_ms = c.config.heartbeat_timeout.as_millis() as u64;
    let prefetch_per_slot = c.config.prefetch_per_slot;
    let workers = Arc::new(c.workers().await?);
    // Every job on a worker, and only as many queued jobs as there are free
    // slots: the reconciler decides the same as on every active job, and the
    // read is bounded by the fleet's size, not the queue's.
    let view = {
        let workers = Arc::clone(&workers);
        c.store
            .dispatch_view(Box::new(move |on_workers| {
                free_slots(
                    &workers,
                    on_workers,
                    now,
                    heartbeat_timeout_ms,
                    prefetch_per_slot,
                )
            }))
            .await?
    };
    let jobs = view.jobs();
    let plan = reconcile(&JobsSnapshot {
        now,
        jobs,
        workers: &workers,
        heartbeat_timeout_ms,
        prefetch_per_slot,
    });

    for w in &plan.lost_workers {
        tracing::warn!(worker = %w, "worker missed its heartbeats: declared lost");
        store.set_worker_state(w, WorkerState::Lost).await?;
        METRICS.lost_workers.inc();
        c.wake.fleet.notify_one();
    }

    if !plan.writes.is_empty() {
        let before: HashMap<&JobId, &Job> = jobs.iter().map(|j| (&j.id, j)).collect();
        let results = store.update_jobs(&plan.writes).await?;
        let mut failed = None;
        for (next, result) in plan.writes.iter().zip(results) {
            match result {
                Ok(_) => {
                    if let Some(old) = before.get(&next.id) {
                        c.job_written(old, next);
                    }
                    if next.state == JobState::Assigned {
                        if let Some(w) = next.worker() {
                            c.wake.wake_worker(w);
                        }
                    } else if next.state == JobState::Queued {
                        tracing::info!(job = %next.id, reason = next.reason.as_deref().unwrap_or(""), "requeued");
                    } else if next.state == JobState::Failed {
                        tracing::warn!(job = %next.id, reason = next.reason.as_deref().unwrap_or(""), "failed");
                    }
                }
                // Someone else changed it since we read it: the next tick decides again.
                Err(StoreError::Conflict { job, .. }) => {
                    tracing::debug!(%job, "job changed meanwhile; skipped")
                }
                // One item failed (DynamoDB writes each on its own): the others
                // landed and still get their wake-ups; the next tick retries it.
                Err(e) => {
                    tracing::warn!(job = %next.id, error = %e, "writing a job failed");
                    failed = Some(e);
                }
            }
        }
        if let Some(e) = failed {
            return Err(e.into());
        }
    }

    crate::metrics::jobs_observed(view.counts(), &workers, now);
    Ok(())
}

/// Deletes jobs whose submit never finished (still `Created` after a day) and
/// their blobs.
pub async fn collect_abandoned(c: &Controller, store: Arc<dyn Store>) -> anyhow::Result<()> {
    let cutoff = c
        .now()
        .0
        .saturating_sub(c.config.abandoned_after.as_millis() as u64);
    let gone = store
        .delete_abandoned_jobs(reconcilers::model::Timestamp(cutoff))
        .await?;
    for id in gone {
        tracing::info!(job = %id, "deleted abandoned submission");
        c.blobs.delete_job(&id).await?;
    }
    Ok(())
}
