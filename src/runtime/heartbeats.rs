//! Heartbeats are buffered in memory and written to the store in batches: they are
//! monotonic data (a later ping only moves `last_ping` forward), the one kind of
//! write that may be batched. Job state never is.

use crate::store::{Heartbeat, Store};
use reconcilers::model::{Timestamp, WorkerId};
use std::{collections::HashMap, sync::Mutex};

#[derive(Default)]
pub struct HeartbeatBuffer {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Since when each worker is idle, as last reported (kept across flushes).
    idle_since: HashMap<WorkerId, Option<Timestamp>>,
    /// Pings not yet written.
    pending: HashMap<WorkerId, Heartbeat>,
}

impl HeartbeatBuffer {
    /// Records a ping; `busy` says whether the worker holds any job.
    pub fn ping(&self, worker: &WorkerId, now: Timestamp, busy: bool) {
        crate::metrics::METRICS.heartbeats.inc();
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let idle = inner.idle_since.entry(worker.clone()).or_insert(None);
        *idle = if busy {
            None
        } else {
            Some(idle.unwrap_or(now))
        };
        let idle_since = *idle;
        inner.pending.insert(
            worker.clone(),
            Heartbeat {
                worker: worker.clone(),
                at: now,
                idle_since,
            },
        );
    }

    pub fn forget(&self, worker: &WorkerId) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.idle_since.remove(worker);
        inner.pending.remove(worker);
    }

    /// Writes the pending pings in one batch. On failure they are put back, unless
    /// a newer ping of the same worker arrived meanwhile.
    pub async fn flush(&self, store: &dyn Store) -> anyhow::Result<usize> {
        let batch: Vec<Heartbeat> = {
            let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            inner.pending.drain().map(|(_, b)| b).collect()
        };
        if batch.is_empty() {
            return Ok(0);
        }
        if let Err(e) = store.record_heartbeats(&batch).await {
            let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            for beat in batch {
                inner.pending.entry(beat.worker.clone()).or_insert(beat);
            }
            return Err(anyhow::anyhow!("writing heartbeats: {e}"));
        }
        Ok(batch.len())
    }
}
