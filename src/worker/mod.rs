//! The worker agent (`drover worker`): registers, pings, takes assignments up to
//! its slots, runs each attempt in a fresh folder, uploads what it produced and
//! reports the result with its attempt number.
//!
//! The controller is the only judge of what is current: a ping's reply names the
//! attempts the worker must stop (cancelled, or requeued after the worker was
//! presumed lost), and a refused report (409) means the attempt is no longer ours.

mod attempt;
mod failover;
mod folders;
pub mod output;
pub mod process;
pub mod sandbox;
pub mod spill;

use crate::{
    api::wire::{Assignment, PingReply},
    client::{Client, ClientError},
};
use anyhow::Context as _;
use reconcilers::{
    messages::{HeldJob, Message},
    model::{InstanceId, WorkerId},
};
use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub controller: String,
    /// A file holding the controller's current address: read again whenever the
    /// controller cannot be reached, so that a controller restarted on another
    /// port finds its workers again (they are adopted, not replaced).
    pub controller_file: Option<PathBuf>,
    pub instance: InstanceId,
    pub slots: u32,
    pub ping_interval: Duration,
    /// Attempt folders are made under it and reused (see `folders.rs`).
    pub work_dir: PathBuf,
    pub max_output_bytes: u64,
    /// The disk one attempt's folder may take (see `sandbox/quota.rs`).
    pub max_sandbox_bytes: Option<u64>,
    /// This worker's own token (from `DROVER_WORKER_TOKEN`), which lets it act
    /// for itself and its jobs only.
    pub token: crate::auth::Token,
}

/// The attempts this worker holds, each with the token that stops it.
#[derive(Default)]
struct Held {
    jobs: Mutex<HashMap<HeldJob, CancellationToken>>,
    /// The attempts whose job is being prepared or run: the slots taken. An
    /// attempt that is only reporting its result no longer takes one.
    running: AtomicU32,
    /// Woken when a slot frees.
    freed: Notify,
}

/// A slot taken by one attempt, given back when dropped.
pub struct Slot(Arc<Held>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
        self.0.freed.notify_one();
    }
}

impl Held {
    fn running(&self) -> u32 {
        self.running.load(Ordering::SeqCst)
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<HeldJob, CancellationToken>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn list(&self) -> Vec<HeldJob> {
        self.lock().keys().cloned().collect()
    }
    fn stop(&self, which: &HeldJob) {
        if let Some(token) = self.lock().get(which) {
            token.cancel();
        }
    }
    fn stop_all(&self) {
        for token in self.lock().values() {
            token.cancel();
        }
    }
}

pub async fn run(config: WorkerConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    hide_from_jobs()?;
    let folders = folders::Folders::open(&config.work_dir)
        .with_context(|| format!("taking work folder {}", config.work_dir.display()))?;
    let client = Client::new(&config.controller).with_token(Some(config.token.clone()));
    let config = Arc::new(config);
    let failover = Arc::new(failover::Failover::default());
    while !shutdown.is_cancelled() {
        let Some(worker) = register(&client, &config, &failover, &shutdown).await else {
            break;
        };
        // One registration lasts until the controller says we were lost (or
        // forgets us); then everything held is stopped and we register again.
        let epoch = shutdown.child_token();
        let held = Arc::new(Held::default());
        let pinger = tokio::spawn(ping_loop(
            client.clone(),
            config.clone(),
            failover.clone(),
            worker.clone(),
            held.clone(),
            epoch.clone(),
        ));
        let mut attempts = tokio::task::JoinSet::new();
        let ctx = attempt::AttemptContext {
            client: client.clone(),
            config: config.clone(),
            worker: worker.clone(),
            shutdown: shutdown.clone(),
            folders: folders.clone(),
        };
        take_assignments(&ctx, &held, &epoch, &mut attempts).await;
        held.stop_all();
        while attempts.join_next().await.is_some() {}
        pinger.abort();
    }
    tracing::info!("worker stopped");
    Ok(())
}

/// Jobs run as the worker's user, and a process of the same user may read
/// another's `/proc/<pid>/environ` and `mem`, or ptrace it: a job could take
/// the worker's token (`DROVER_WORKER_TOKEN`) and act for every attempt the
/// worker holds. A process that is not dumpable has its `/proc/<pid>` files
/// owned by root and cannot be ptraced by its user. The flag is not inherited
/// across `execve`, so jobs themselves stay ordinary (debuggable) processes.
fn hide_from_jobs() -> anyhow::Result<()> {
    #[cfg(target_os = "linux")]
    nix::sys::prctl::set_dumpable(false)
        .context("prctl(PR_SET_DUMPABLE, 0): the worker cannot hide its token from its jobs")?;
    Ok(())
}

/// After a failure to reach the controller: follow it if its address changed,
/// else fail over to another controller of the cluster.
fn follow_controller(client: &Client, config: &WorkerConfig, failover: &failover::Failover) {
    failover.follow(client, config.controller_file.as_deref());
}

/// Registers, retrying with backoff while the controller cannot be reached.
async fn register(
    client: &Client,
    config: &WorkerConfig,
    failover: &failover::Failover,
    shutdown: &CancellationToken,
) -> Option<WorkerId> {
    let mut backoff = backon::BackoffBuilder::build(
        crate::runtime::loops::error_backoff().with_max_delay(Duration::from_secs(5)),
    );
    loop {
        match client.register(&config.instance, config.slots).await {
            Ok(r) => {
                tracing::info!(worker = %r.worker, slots = config.slots, "registered");
                return Some(r.worker);
            }
            Err(e) => {
                follow_controller(client, config, failover);
                let wait = backoff.next().unwrap_or(Duration::from_secs(5));
                tracing::warn!(error = %e, "registering with the controller; retrying in {wait:?}");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.cancelled() => return None,
                }
            }
        }
    }
}

async fn ping_loop(
    client: Client,
    config: Arc<WorkerConfig>,
    failover: Arc<failover::Failover>,
    worker: WorkerId,
    held: Arc<Held>,
    epoch: CancellationToken,
) {
    loop {
        let list = held.list();
        let free_slots = config.slots.saturating_sub(held.running());
        let msg = Message::Ping {
            worker: worker.clone(),
            held: list,
            free_slots,
        };
        match client.message::<PingReply>(&msg).await {
            Ok(reply) if reply.lost => {
                tracing::warn!("the controller declared this worker lost: stopping its jobs and registering again");
                epoch.cancel();
                return;
            }
            Ok(reply) => {
                failover.learn(reply.controllers);
                for stale in &reply.stop {
                    tracing::info!(job = %stale.job, attempt = stale.attempt, "controller says stop this attempt");
                    held.stop(stale);
                }
            }
            Err(ClientError::Api { status, message })
                if status == reqwest::StatusCode::NOT_FOUND =>
            {
                tracing::warn!(%message, "the controller does not know this worker: registering again");
                epoch.cancel();
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "ping failed");
                if matches!(e, ClientError::Unreachable { .. }) {
                    follow_controller(&client, &config, &failover);
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(config.ping_interval) => {}
            _ = epoch.cancelled() => return,
        }
    }
}

/// Takes the assignments of `ctx.worker` while slots are free, until `epoch` ends.
async fn take_assignments(
    ctx: &attempt::AttemptContext,
    held: &Arc<Held>,
    epoch: &CancellationToken,
    attempts: &mut tokio::task::JoinSet<()>,
) {
    let (client, config, worker) = (&ctx.client, &ctx.config, &ctx.worker);
    let mut backoff = backon::BackoffBuilder::build(crate::runtime::loops::error_backoff());
    while !epoch.is_cancelled() {
        while attempts.try_join_next().is_some() {}
        if held.running() >= config.slots {
            tokio::select! {
                _ = held.freed.notified() => continue,
                _ = epoch.cancelled() => return,
            }
        }
        // What it holds is not news: the poll waits for what is.
        let holding = held.list();
        let got = tokio::select! {
            r = client.assignments(worker, Duration::from_secs(20), &holding) => r,
            _ = epoch.cancelled() => return,
        };
        let list = match got {
            Ok(list) => {
                backoff = backon::BackoffBuilder::build(crate::runtime::loops::error_backoff());
                list
            }
            Err(e) => {
                if matches!(e.status(), Some(s) if s == reqwest::StatusCode::NOT_FOUND || s == reqwest::StatusCode::CONFLICT)
                {
                    tracing::warn!(error = %e, "assignments refused: registering again");
                    epoch.cancel();
                    return;
                }
                let wait = backoff.next().unwrap_or(Duration::from_secs(5));
                tracing::warn!(error = %e, "asking for assignments; retrying in {wait:?}");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => continue,
                    _ = epoch.cancelled() => return,
                }
            }
        };
        for a in list {
            start_attempt(ctx, held, epoch, attempts, a);
        }
    }
}

fn start_attempt(
    ctx: &attempt::AttemptContext,
    held: &Arc<Held>,
    epoch: &CancellationToken,
    attempts: &mut tokio::task::JoinSet<()>,
    a: Assignment,
) {
    let key = HeldJob {
        job: a.job.clone(),
        attempt: a.attempt,
    };
    let token = epoch.child_token();
    {
        let mut jobs = held.lock();
        if jobs.contains_key(&key) || held.running() >= ctx.config.slots {
            return; // already running it, or full: it stays assigned for later
        }
        jobs.insert(key.clone(), token.clone());
        held.running.fetch_add(1, Ordering::SeqCst);
    }
    let slot = Slot(held.clone());
    let ctx = ctx.clone();
    let held = held.clone();
    attempts.spawn(async move {
        ctx.run(a, token, slot).await;
        held.lock().remove(&key);
    });
}
