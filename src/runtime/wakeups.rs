//! In-process wake-ups: hints that make a loop or a long poll look again now.
//! They carry no state; whoever is woken re-reads the store.

use reconcilers::model::{JobId, WorkerId};
use std::{collections::HashMap, sync::Arc, sync::Mutex};
use tokio::sync::{watch, Notify};

#[derive(Default)]
pub struct Wakeups {
    /// The jobs loop: dispatch, requeue.
    pub jobs: Arc<Notify>,
    /// The fleet loop: launch, terminate.
    pub fleet: Arc<Notify>,
    /// Long polls of workers waiting for assignments.
    workers: Mutex<HashMap<WorkerId, Arc<Notify>>>,
    /// Bumped whenever a job changes state; `drover wait` long polls watch it.
    job_changes: JobChanges,
}

pub struct JobChanges(watch::Sender<u64>);

impl Default for JobChanges {
    fn default() -> Self {
        JobChanges(watch::channel(0).0)
    }
}

impl Wakeups {
    pub fn worker(&self, worker: &WorkerId) -> Arc<Notify> {
        let mut map = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(worker.clone()).or_default().clone()
    }

    pub fn wake_worker(&self, worker: &WorkerId) {
        self.worker(worker).notify_one();
    }

    pub fn forget_worker(&self, worker: &WorkerId) {
        let mut map = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(worker);
    }

    pub fn job_changed(&self, _job: &JobId) {
        self.job_changes.0.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn watch_jobs(&self) -> watch::Receiver<u64> {
        self.job_changes.0.subscribe()
    }
}
