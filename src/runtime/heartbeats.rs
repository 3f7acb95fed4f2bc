//! Heartbeats are buffered in memory and written to the store in batches: they are
//! monotonic data (a later ping only moves `last_ping` forward), the one kind of
//! write that may be batched. Job state never is.

use crate::store::{Heartbeat, Store};
use reconcilers::model::{Timestamp, Worker, WorkerId};
use std::{collections::HashMap, sync::Mutex};

#[derive(Default)]
pub struct HeartbeatBuffer {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The last ping received from each worker (kept across flushes).
    seen: HashMap<WorkerId, Timestamp>,
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
        inner.seen.insert(worker.clone(), now);
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
        inner.seen.remove(worker);
        inner.idle_since.remove(worker);
        inner.pending.remove(worker);
    }

    /// Brings workers read from the store up to the pings this controller has
    /// received but perhaps not written yet (a flush in flight, or a store that
    /// refuses writes for a while): a worker that pings is never taken for lost
    /// because its heartbeats could not be stored.
    pub fn overlay(&self, workers: &mut [Worker]) {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        for w in workers {
            if let Some(&seen) = inner.seen.get(&w.id) {
                if seen > w.last_ping {
                    w.last_ping = seen;
                    if let Some(&idle) = inner.idle_since.get(&w.id) {
                        w.idle_since = idle;
                    }
                }
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use reconcilers::model::{InstanceId, WorkerState};

    fn worker(id: &str, last_ping: u64) -> Worker {
        Worker {
            id: WorkerId::new(id),
            instance: InstanceId::new(id),
            slots: 1,
            state: WorkerState::Active,
            registered_at: Timestamp(0),
            last_ping: Timestamp(last_ping),
            idle_since: Some(Timestamp(0)),
        }
    }

    /// Regression: with heartbeat writes throttled, workers that kept pinging were
    /// declared lost, because liveness was read from the store alone.
    #[test]
    fn pings_not_yet_stored_still_count_for_liveness() {
        let buffer = HeartbeatBuffer::default();
        buffer.ping(&WorkerId::new("w1"), Timestamp(9_000), true);
        let mut workers = vec![worker("w1", 1_000), worker("w2", 1_000)];
        buffer.overlay(&mut workers);
        assert_eq!(workers[0].last_ping, Timestamp(9_000));
        assert_eq!(workers[0].idle_since, None, "busy, as the ping said");
        assert_eq!(workers[1].last_ping, Timestamp(1_000), "no ping: as stored");
    }

    #[test]
    fn a_stored_ping_newer_than_the_buffer_wins() {
        let buffer = HeartbeatBuffer::default();
        buffer.ping(&WorkerId::new("w1"), Timestamp(5_000), false);
        let mut workers = vec![worker("w1", 7_000)];
        buffer.overlay(&mut workers);
        assert_eq!(workers[0].last_ping, Timestamp(7_000));
    }
}
