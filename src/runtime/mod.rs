//! The controller at run time: the shared context, the reconcile loops, and
//! start-up and shutdown of the whole thing.

pub mod backends;
mod fleet;
mod heartbeats;
mod jobs;
pub mod leader;
pub mod loops;
pub mod wakeups;

pub use heartbeats::HeartbeatBuffer;

use crate::{blobs::Blobs, clock::Clock, config::ControllerConfig, fleet::Fleet, store::Store};
use anyhow::Context as _;
use reconcilers::model::{Job, JobId, Timestamp};
use std::{net::SocketAddr, sync::Arc, time::Duration};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use wakeups::Wakeups;

/// Everything the loops and the API handlers share.
pub struct Controller {
    pub config: ControllerConfig,
    pub store: Arc<dyn Store>,
    pub blobs: Blobs,
    pub fleet: Arc<dyn Fleet>,
    pub clock: Arc<dyn Clock>,
    pub wake: Wakeups,
    pub heartbeats: HeartbeatBuffer,
    /// How hints leave this controller, and the address they are sent to.
    pub hints: Arc<dyn crate::hints::Hints>,
    /// The address workers and hints reach this controller at.
    pub address: String,
    /// The receiver of SNS hints, when hints travel by SNS.
    pub sns: Option<crate::hints::SnsReceiverRef>,
    /// Cancelled when the controller starts shutting down: loops stop and long
    /// polls answer at once, so the API can drain quickly.
    pub stopping: CancellationToken,
    /// The API's tokens: the submit token and the worker-token key.
    pub auth: Arc<crate::auth::Auth>,
    /// The leader lease as this controller knows it: only the leader reconciles.
    pub leadership: leader::Leadership,
    /// Held while the controller runs: one controller per data folder.
    _lock: nix::fcntl::Flock<std::fs::File>,
}

impl Controller {
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Reads a job, applies `change` and writes the result conditionally; if the
    /// job changed in between, reads it again and retries (a few times).
    pub async fn change_job<E>(
        &self,
        id: &JobId,
        mut change: impl FnMut(&Job) -> Result<reconcilers::jobs::Change, E>,
    ) -> Result<Result<Job, E>, crate::store::StoreError> {
        use crate::store::StoreError;
        use reconcilers::jobs::Change;
        let mut tries = 0;
        loop {
            let job = self
                .store
                .get_job(id)
                .await?
                .ok_or_else(|| StoreError::NotFound(id.clone()))?;
            let next = match change(&job) {
                Err(e) => return Ok(Err(e)),
                Ok(Change::AlreadyDone) => return Ok(Ok(job)),
                Ok(Change::Write(next)) => *next,
            };
            match self.store.update_job(&next).await {
                Ok(version) => {
                    self.job_written(&job, &next);
                    return Ok(Ok(Job { version, ..next }));
                }
                Err(StoreError::Conflict { .. }) if tries < 5 => tries += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// The workers as the loops must judge them: as stored, brought up to the
    /// pings this controller received but has not stored yet.
    pub async fn workers(
        &self,
    ) -> Result<Vec<reconcilers::model::Worker>, crate::store::StoreError> {
        let mut workers = self.store.list_workers().await?;
        self.heartbeats.overlay(&mut workers);
        Ok(workers)
    }

    /// Sends a hint to the controller that reconciles (the lease holder) without
    /// waiting: a hint only makes a loop run sooner, so a lost one costs nothing.
    pub fn hint(self: &Arc<Self>, msg: reconcilers::messages::Message) {
        let c = self.clone();
        tokio::spawn(async move {
            let leader = c.leadership.leader_address();
            let to = leader.as_deref().unwrap_or(&c.address);
            if let Err(e) = c.hints.publish(to, &msg).await {
                tracing::debug!(error = %e, kind = msg.kind(), "hint not sent");
            }
        });
    }

    /// Bookkeeping after a job write: metrics and wake-ups.
    pub fn job_written(&self, before: &Job, after: &Job) {
        crate::metrics::job_written(before, after);
        if before.state != after.state {
            self.wake.job_changed(&after.id);
        }
        if after.state.is_terminal() || after.state == reconcilers::model::JobState::Queued {
            // A slot was freed or work is waiting: dispatch now, resize the fleet.
            self.wake.jobs.notify_one();
            self.wake.fleet.notify_one();
        }
    }
}

/// A controller started by `start`.
pub struct RunningController {
    pub addr: SocketAddr,
    pub controller: Arc<Controller>,
    loops: JoinSet<()>,
    server: tokio::task::JoinHandle<()>,
    stop_server: CancellationToken,
}

impl RunningController {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the loops, then the workers this controller runs (while the API still
    /// takes their last reports), then the API.
    pub async fn shutdown(mut self) {
        let c = &self.controller;
        c.stopping.cancel();
        while self.loops.join_next().await.is_some() {}
        // The workers belong to the cluster, not to this controller: they are
        // stopped by the last controller to go, whether or not it leads now (a
        // lease that lapsed is taken again for it). Any other controller leaves
        // them running, and hands the lease over at once if it holds it.
        if leader::others_alive(c).await {
            if let Some(fence) = c.leadership.step_down() {
                tracing::info!("handing the leader lease over to the other controllers");
                if let Err(e) = c.store.release_lease(&fence).await {
                    tracing::warn!(error = %e, "releasing the leader lease");
                }
            }
        } else if let Some((fence, store)) = leader::lease_for_last_stop(c).await {
            tracing::info!("the last controller of the store: stopping the workers");
            if let Err(e) = fleet::terminate_all(c, store.as_ref()).await {
                tracing::warn!(error = %format!("{e:#}"), "stopping workers at shutdown");
            }
            c.leadership.step_down();
            // Nothing is left to lead: a controller started next leads at once.
            if let Err(e) = c.store.release_lease(&fence).await {
                tracing::warn!(error = %e, "releasing the leader lease");
            }
        }
        if let Err(e) = c.heartbeats.flush(c.store.as_ref()).await {
            tracing::warn!(error = %format!("{e:#}"), "writing the last heartbeats");
        }
        self.stop_server.cancel();
        let _ = self.server.await;
    }
}

/// Opens the embedded state and blobs, binds the API, and starts the loops.
pub async fn start(config: ControllerConfig) -> anyhow::Result<RunningController> {
    config.validate()?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data folder {}", config.data_dir.display()))?;
    let lock = lock_data_dir(&config.data_dir)?;
    let auth = Arc::new(crate::auth::Auth::load(&config.data_dir, &config.auth)?);
    let aws = backends::Aws::default();
    let store = backends::open_store(&config, &aws).await?;
    let blobs = backends::open_blobs(&config)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| {
            format!(
                "listening on {} (is another controller running? choose another address with --listen)",
                config.listen
            )
        })?;
    let addr = listener.local_addr()?;
    let address = backends::ControllerAddress {
        url: backends::public_url(&config, addr).await,
        file: std::path::absolute(config.data_dir.join("controller.url"))?,
    };
    std::fs::write(&address.file, format!("{}\n", address.url))
        .with_context(|| format!("writing {}", address.file.display()))?;
    let wake = Wakeups::default();
    let fleet = backends::open_fleet(&config, &aws, &address, &auth, wake.fleet.clone()).await?;
    let clock: Arc<dyn Clock> = Arc::new(crate::clock::SystemClock);
    let (hints, sns) = backends::open_hints(&config, &aws, &address, &auth, &clock).await?;
    let holder = leader::holder_name(&config.data_dir);
    let controller = Arc::new(Controller {
        config,
        store,
        blobs,
        fleet,
        clock,
        wake,
        hints,
        address: address.url.clone(),
        sns,
        heartbeats: HeartbeatBuffer::default(),
        stopping: CancellationToken::new(),
        leadership: leader::Leadership::new(holder),
        auth,
        _lock: lock,
    });
    // Lead at once when the lease is free (a single controller, or the previous
    // one on this folder); the fleet settings are written by the leader.
    if let Err(e) = leader::renew(&controller).await {
        tracing::warn!(error = %format!("{e:#}"), "taking the leader lease at start");
    }
    let mut loops = JoinSet::new();
    spawn_loops(&controller, &controller.stopping, &mut loops);
    let app = crate::api::router(controller.clone());
    let stop_server = CancellationToken::new();
    let stop = stop_server.clone();
    let limits = crate::api::SlowClientLimits {
        header_timeout: controller.config.header_timeout,
        body_idle_timeout: controller.config.body_idle_timeout,
    };
    let server = tokio::spawn(crate::api::serve(listener, app, limits, stop));
    backends::subscribe_hints(&controller.config, &aws, &address).await;
    tracing::info!(%addr, data_dir = %controller.config.data_dir.display(), "controller started");
    Ok(RunningController {
        addr,
        controller,
        loops,
        server,
        stop_server,
    })
}

/// Two controllers reconciling one embedded store would fight over it: the
/// second one is refused, with what to do instead. The lock goes with the
/// process, so a controller killed with -9 leaves nothing to clean up.
fn lock_data_dir(dir: &std::path::Path) -> anyhow::Result<nix::fcntl::Flock<std::fs::File>> {
    use nix::fcntl::{Flock, FlockArg};
    let path = dir.join("controller.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(lock),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => anyhow::bail!(
            "another drover controller is using {}: submit to it with `drover submit`, \
             or give this one its own folder with --data-dir",
            dir.display()
        ),
        Err((_, e)) => Err(anyhow::anyhow!("locking {}: {e}", path.display())),
    }
}

/// A tick of a reconciler only the leader runs: nothing to do elsewhere, and a
/// write refused because the lease moved on is the end of leading, not an error.
async fn as_leader<F, Fut>(c: &Controller, tick: F) -> anyhow::Result<()>
where
    F: FnOnce(Arc<dyn crate::store::Store>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let Some(store) = c.leadership.store() else {
        return Ok(());
    };
    match tick(store).await {
        Err(e)
            if matches!(
                e.downcast_ref::<crate::store::StoreError>(),
                Some(crate::store::StoreError::Fenced { .. })
            ) =>
        {
            tracing::warn!(error = %e, "a write was fenced off: another controller leads now");
            c.leadership.step_down();
            Ok(())
        }
        other => other,
    }
}

fn spawn_loops(c: &Arc<Controller>, shutdown: &CancellationToken, tasks: &mut JoinSet<()>) {
    tasks.spawn(leader::lease_loop(c.clone(), shutdown.clone()));
    let interval = c.config.reconcile_interval;
    let cc = c.clone();
    tasks.spawn(loops::run_loop(
        "jobs",
        interval,
        c.wake.jobs.clone(),
        shutdown.clone(),
        move || {
            let c = cc.clone();
            async move { as_leader(&c, |s| jobs::tick(&c, s)).await }
        },
    ));
    let cc = c.clone();
    tasks.spawn(loops::run_loop(
        "fleet",
        interval,
        c.wake.fleet.clone(),
        shutdown.clone(),
        move || {
            let c = cc.clone();
            async move { as_leader(&c, |s| fleet::tick(&c, s)).await }
        },
    ));
    // Heartbeats are flushed often enough that the store lags a ping by well
    // under the heartbeat timeout.
    let flush_every =
        (c.config.heartbeat_timeout / 10).clamp(Duration::from_millis(100), Duration::from_secs(1));
    let cc = c.clone();
    tasks.spawn(loops::run_loop(
        "heartbeats",
        flush_every,
        Arc::new(tokio::sync::Notify::new()),
        shutdown.clone(),
        move || {
            let c = cc.clone();
            async move { c.heartbeats.flush(c.store.as_ref()).await.map(|_| ()) }
        },
    ));
    let cc = c.clone();
    tasks.spawn(loops::run_loop(
        "gc",
        Duration::from_secs(60),
        Arc::new(tokio::sync::Notify::new()),
        shutdown.clone(),
        move || {
            let c = cc.clone();
            async move { as_leader(&c, |s| jobs::collect_abandoned(&c, s)).await }
        },
    ));
}
