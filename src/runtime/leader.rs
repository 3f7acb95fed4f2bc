//! The leader lease at run time. Every controller serves the API; only the one
//! holding the lease runs the jobs, fleet and gc reconcilers, and it writes
//! through a fenced view of the store, so a write it makes after losing the
//! lease is refused by the store itself (docs/leader.md).
//!
//! The lease loop renews every third of the lease. A follower looks again when
//! the lease it saw expires, so it takes over within the lease time of the
//! leader's last renewal. A leader that cannot renew stops reconciling when its
//! lease would expire, by its own clock, whether or not the store answers.

use super::Controller;
use crate::store::{Fence, Lease, Store};
use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use tokio_util::sync::CancellationToken;

/// What this controller knows of the lease.
pub struct Leadership {
    /// This controller's name in the lease: its host and data folder, so that a
    /// controller restarted on the same folder (one at a time: the folder is
    /// locked) gets its lease back at once instead of waiting for it to expire.
    pub holder: String,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    leading: Option<Leading>,
    /// The leader's address, as the lease last named it.
    leader_address: Option<String>,
    /// Every controller of the store, as last announced: workers fail over along it.
    controllers: Vec<String>,
}

struct Leading {
    fence: Fence,
    store: Arc<dyn Store>,
    /// Stop reconciling at this point unless renewed.
    until: Instant,
}

impl Leadership {
    pub fn new(holder: String) -> Leadership {
        Leadership {
            holder,
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The store as the leader writes to it (fenced), while this controller
    /// leads; `None` otherwise, and from the moment its lease would expire.
    pub fn store(&self) -> Option<Arc<dyn Store>> {
        let state = self.lock();
        let leading = state.leading.as_ref()?;
        let store = (Instant::now() < leading.until).then(|| leading.store.clone());
        if store.is_none() {
            // Reconciling stopped: what happens until it resumes is not ours to count.
            crate::metrics::instance_count_reset();
        }
        store
    }

    pub fn fence(&self) -> Option<Fence> {
        let state = self.lock();
        let leading = state.leading.as_ref()?;
        (Instant::now() < leading.until).then(|| leading.fence.clone())
    }

    pub fn is_leader(&self) -> bool {
        self.fence().is_some()
    }

    pub fn leader_address(&self) -> Option<String> {
        self.lock().leader_address.clone()
    }

    /// Every live controller's address (this one's included once announced).
    pub fn controllers(&self) -> Vec<String> {
        self.lock().controllers.clone()
    }

    /// Stops leading at once (shutdown): the loops reconcile no more.
    pub fn step_down(&self) -> Option<Fence> {
        let leading = self.lock().leading.take()?;
        crate::metrics::METRICS.leader.set(0);
        crate::metrics::instance_count_reset();
        Some(leading.fence)
    }
}

/// The lease holder name of the controller on this data folder: its host, the
/// folder, and an id kept in the folder (`controller.id`), so that two
/// machines with the same host name and folder path never share a name, and a
/// controller restarted on the folder keeps its own.
pub fn holder_name(data_dir: &std::path::Path) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string());
    let dir = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    format!("{host}:{}:{}", dir.display(), folder_id(data_dir))
}

/// The id in `<data_dir>/controller.id`, made on first use. Without it (a
/// folder that cannot be written) a fresh id: this controller then waits for
/// its predecessor's lease to expire after a restart, nothing worse.
fn folder_id(data_dir: &std::path::Path) -> String {
    let path = data_dir.join("controller.id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        let id = id.trim();
        if !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return id.to_string();
        }
    }
    let id = format!("{:016x}", rand::random::<u64>());
    if let Err(e) = std::fs::write(&path, format!("{id}\n")) {
        tracing::warn!(path = %path.display(), error = %e, "keeping this controller's lease name");
    }
    id
}

/// Takes or renews the lease once and records the outcome. Returns how long to
/// wait before the next try.
pub async fn renew(c: &Controller) -> anyhow::Result<Duration> {
    let lease_time = c.config.leader_lease;
    let ms = lease_time.as_millis() as u64;
    let started = Instant::now();
    let now = c.now();
    // Both at once: on a slow store the renewal's round trips are what eat
    // into the lease.
    let (lease, controllers) = tokio::join!(
        c.store
            .acquire_lease(&c.leadership.holder, &c.address, now, ms),
        c.store
            .announce_controller(&c.leadership.holder, &c.address, now, ms)
    );
    let lease = lease?;
    tracing::debug!(holder = %lease.holder, token = lease.token, expires_at = lease.expires_at.0, took = ?started.elapsed(), "leader lease");
    // The list only serves workers' fail-over: a failure to update it must not
    // cost the lease just taken.
    let controllers = controllers
        .map_err(
            |e| tracing::warn!(error = %e, "announcing this controller; keeping the last list"),
        )
        .ok();
    let mine = lease.holder == c.leadership.holder;
    let became = {
        let mut state = c.leadership.lock();
        state.leader_address = Some(lease.address.clone());
        if let Some(list) = controllers {
            state.controllers = list;
        }
        let was = state.leading.as_ref().map(|l| l.fence.token);
        if mine {
            // By our own clock, a little before the store's expiry (measured
            // from before the call): never later than another controller may
            // take over, with a tenth of the lease as margin for clock drift.
            let until = started + lease_time - lease_time / 10;
            let fence = lease.fence();
            let store = c.store.fenced(fence.clone());
            state.leading = Some(Leading {
                fence,
                store,
                until,
            });
            was != Some(lease.token)
        } else {
            if state.leading.take().is_some() {
                crate::metrics::instance_count_reset();
                tracing::warn!(leader = %lease.holder, address = %lease.address, token = lease.token, "lost the leader lease: reconciling stops");
            }
            false
        }
    };
    crate::metrics::METRICS.leader.set(i64::from(mine));
    if became {
        became_leader(c, &lease).await;
    }
    Ok(next_try(&lease, mine, c.now(), lease_time))
}

/// At shutdown, after the loops stopped: withdraws this controller from the list
/// and tells whether another one is alive, asked afresh. Only one that announced
/// itself within the last half lease counts (a live one does every third of
/// it), not one that died a moment ago and whose entry has not expired yet.
///
/// The entry is rewritten to expire at the probe's time, so no later probe (of
/// another controller stopping too) counts this one: of two controllers
/// stopped together, at least one sees the other gone and stops the workers.
pub async fn others_alive(c: &Controller) -> bool {
    let ms = c.config.leader_lease.as_millis() as u64;
    let probe = reconcilers::model::Timestamp(c.now().0 + ms / 2);
    let fresh = c
        .store
        .announce_controller(&c.leadership.holder, &c.address, probe, 0)
        .await;
    let list = fresh.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "listing the other controllers; using the last list");
        c.leadership.controllers()
    });
    list.iter().any(|a| *a != c.address)
}

/// The lease for the last controller to stop the workers with: taken or renewed
/// now. Held by another controller, which is then stopping too (it no longer
/// announces itself) or dead: waited for until it expires or is released, at
/// most a lease time; renewed meanwhile, its holder is alive and the workers
/// are left to it (`None`), as they are if the store does not answer.
pub async fn lease_for_last_stop(c: &Controller) -> Option<(Fence, Arc<dyn Store>)> {
    let lease_time = c.config.leader_lease;
    let ms = lease_time.as_millis() as u64;
    let holder = &c.leadership.holder;
    let deadline = Instant::now() + lease_time + lease_time / 5;
    let mut seen: Option<Lease> = None;
    loop {
        let wait = match c.store.acquire_lease(holder, &c.address, c.now(), ms).await {
            Ok(lease) if lease.holder == *holder => {
                let fence = lease.fence();
                return Some((fence.clone(), c.store.fenced(fence)));
            }
            Ok(lease) => {
                let renewed = seen
                    .as_ref()
                    .is_some_and(|s| s.holder == lease.holder && lease.expires_at > s.expires_at);
                if renewed {
                    tracing::warn!(leader = %lease.holder, "the leader renews its lease without announcing itself: leaving the workers to it");
                    return None;
                }
                let wait = next_try(&lease, false, c.now(), lease_time);
                seen = Some(lease);
                wait
            }
            Err(e) => {
                tracing::warn!(error = %e, "taking the leader lease to stop the workers");
                (lease_time / 10).max(Duration::from_millis(50))
            }
        };
        if Instant::now() + wait > deadline {
            tracing::warn!("no lease to stop the workers with: leaving them running");
            return None;
        }
        tokio::time::sleep(wait).await;
    }
}

/// When to look again: a leader renews every third of the lease; a follower
/// looks when the lease it saw expires (and at least every third of it).
fn next_try(
    lease: &Lease,
    mine: bool,
    now: reconcilers::model::Timestamp,
    lease_time: Duration,
) -> Duration {
    let third = lease_time / 3;
    if mine {
        return third;
    }
    let left = Duration::from_millis(lease.expires_at.0.saturating_sub(now.0));
    (left + Duration::from_millis(20)).clamp(Duration::from_millis(20), third)
}

async fn became_leader(c: &Controller, lease: &Lease) {
    tracing::info!(holder = %lease.holder, token = lease.token, "this controller leads: it runs the reconcilers");
    // Instance time is counted from this leadership's first fleet tick.
    crate::metrics::instance_count_reset();
    // The configuration is the desired fleet shape: the leader's is the one.
    if let Some(store) = c.leadership.store() {
        if let Err(e) = store.put_fleet_settings(&c.config.fleet).await {
            tracing::warn!(error = %e, "writing the fleet settings as the new leader");
        }
    }
    c.wake.jobs.notify_one();
    c.wake.fleet.notify_one();
}

/// The lease loop: runs until shutdown. Errors are retried soon (a tenth of the
/// lease): the lease must be renewed before it runs out.
pub async fn lease_loop(c: Arc<Controller>, shutdown: CancellationToken) {
    loop {
        let wait = match renew(&c).await {
            Ok(wait) => wait,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "taking or renewing the leader lease");
                if !c.leadership.is_leader() {
                    crate::metrics::METRICS.leader.set(0);
                }
                (c.config.leader_lease / 10).max(Duration::from_millis(50))
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reconcilers::model::Timestamp;

    fn lease(expires: u64) -> Lease {
        Lease {
            holder: "other".into(),
            address: "http://other".into(),
            token: 3,
            expires_at: Timestamp(expires),
        }
    }

    #[test]
    fn a_folder_keeps_its_lease_name_and_two_folders_never_share_one() {
        let a = tempfile::tempdir().expect("temp dir");
        let b = tempfile::tempdir().expect("temp dir");
        let first = holder_name(a.path());
        assert_eq!(holder_name(a.path()), first, "stable across restarts");
        assert_ne!(holder_name(b.path()), first);
        // Another machine with the same host name and path: another id.
        std::fs::remove_file(a.path().join("controller.id")).expect("remove the id");
        assert_ne!(holder_name(a.path()), first);
    }

    #[test]
    fn a_follower_looks_again_when_the_lease_it_saw_expires() {
        let l = Duration::from_secs(3);
        assert_eq!(
            next_try(&lease(10_500), false, Timestamp(10_000), l),
            Duration::from_millis(520)
        );
        assert_eq!(
            next_try(&lease(99_000), false, Timestamp(10_000), l),
            Duration::from_secs(1),
            "at least every third of the lease"
        );
        assert_eq!(
            next_try(&lease(0), true, Timestamp(10_000), l),
            Duration::from_secs(1)
        );
    }
}
