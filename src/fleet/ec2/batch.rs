//! The launch batcher: `launch` calls arriving close together are sent as one
//! batch, like Karpenter's (1 s idle / 10 s max window).
//!
//! Every instance has its own user-data and ClientToken, so each one is still its
//! own RunInstances call; what a batch shares is the idempotency check (one
//! DescribeInstances for all its launch keys instead of one per launch), the
//! merging of repeated launches of one key into one call, and a bound on how
//! many RunInstances calls run at once. Each caller gets its own answer.

use super::Inner;
use reconcilers::model::{Instance, LaunchKey};
use std::{collections::BTreeMap, sync::Arc, time::Duration};
use tokio::{
    sync::{mpsc, oneshot, Semaphore},
    time::Instant,
};

/// When a batch is sent: after `idle` without a new launch, or `max` after its
/// first; `concurrency` RunInstances calls at most run at once (all batches).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchWindow {
    pub idle: Duration,
    pub max: Duration,
    pub concurrency: usize,
}

impl Default for BatchWindow {
    fn default() -> Self {
        BatchWindow {
            idle: Duration::from_secs(1),
            max: Duration::from_secs(10),
            concurrency: 8,
        }
    }
}

/// Where a launch's answer goes: the EC2 instance id, or what went wrong.
pub(super) type Reply = oneshot::Sender<Result<String, String>>;

pub(super) struct LaunchRequest {
    pub instance: Instance,
    pub reply: Reply,
}

/// Collects launches into batches until the fleet (the sender) is dropped.
pub(super) async fn run(
    inner: Arc<Inner>,
    window: BatchWindow,
    mut inbox: mpsc::UnboundedReceiver<LaunchRequest>,
) {
    let permits = Arc::new(Semaphore::new(window.concurrency.max(1)));
    while let Some(first) = inbox.recv().await {
        let mut batch = vec![first];
        let deadline = Instant::now() + window.max;
        loop {
            let until = (Instant::now() + window.idle).min(deadline);
            match tokio::time::timeout_at(until, inbox.recv()).await {
                Ok(Some(request)) => batch.push(request),
                // The window closed, or the fleet is gone: send what we have.
                Ok(None) | Err(_) => break,
            }
        }
        // The next window opens while this batch is in flight.
        tokio::spawn(launch_batch(inner.clone(), batch, permits.clone()));
    }
}

async fn launch_batch(inner: Arc<Inner>, batch: Vec<LaunchRequest>, permits: Arc<Semaphore>) {
    inner
        .calls
        .stats
        .batches
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tracing::debug!(cluster = %inner.cluster, launches = batch.len(), "sending a launch batch");
    // Repeated launches of one key share one call and its answer.
    let mut by_key: BTreeMap<LaunchKey, (Instance, Vec<Reply>)> = BTreeMap::new();
    for r in batch {
        by_key
            .entry(r.instance.launch_key.clone())
            .or_insert_with(|| (r.instance, Vec::new()))
            .1
            .push(r.reply);
    }
    let keys: Vec<&LaunchKey> = by_key.keys().collect();
    let existing = match inner.find_launch_keys(&keys).await {
        Ok(found) => found,
        Err(e) => {
            // Launching blind could double an instance where ClientToken is not
            // honoured: fail the batch; the controller launches again next tick.
            let message = format!("looking up {} launch keys: {e}", keys.len());
            for (_, (_, waiters)) in by_key {
                for w in waiters {
                    let _ = w.send(Err(message.clone()));
                }
            }
            return;
        }
    };
    let mut running = tokio::task::JoinSet::new();
    for (key, (instance, waiters)) in by_key {
        if let Some(ec2_id) = existing.get(&key) {
            tracing::info!(instance = %instance.id, %ec2_id, "launch key already launched; not launching again");
            for w in waiters {
                let _ = w.send(Ok(ec2_id.clone()));
            }
            continue;
        }
        let inner = inner.clone();
        let permits = permits.clone();
        running.spawn(async move {
            let answer = match permits.acquire_owned().await {
                Ok(_permit) => inner.run_instance(&instance).await,
                Err(_) => Err("the launch batcher has stopped".to_string()),
            };
            for w in waiters {
                let _ = w.send(answer.clone());
            }
        });
    }
    while running.join_next().await.is_some() {}
}
