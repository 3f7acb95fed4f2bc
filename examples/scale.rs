//! Controller scale (bench/run.py, part 5): the reconcile tick with many queued
//! jobs and many simulated workers, and the process's peak memory.
//!
//! `cargo run --release --example scale -- [JOBS] [WORKERS]` (default 100000
//! 1000) prints one JSON line. The reconcilers are pure, so the simulation drives
//! them directly; the "store tick" is what the runtime's jobs loop does against
//! SQLite: read the active jobs and the workers, decide, write the assignments
//! in one transaction.

use drover::store::{sqlite::SqliteStore, Store};
use reconcilers::{
    fleet::{self, FleetSnapshot, FleetTimeouts},
    jobs::{self, JobsSnapshot},
    model::{
        FleetSettings, Instance, InstanceId, InstanceState, Job, JobId, JobState, LaunchKey,
        ObservedInstance, Timestamp, Worker, WorkerId, WorkerState,
    },
};
use std::time::Instant;

const SLOTS: u32 = 4;
const TICKS: usize = 5;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n_jobs: usize = args.next().map_or(Ok(100_000), |a| a.parse())?;
    let n_workers: usize = args.next().map_or(Ok(1_000), |a| a.parse())?;
    let now = Timestamp(1_800_000_000_000);

    let workers: Vec<Worker> = (0..n_workers)
        .map(|i| Worker {
            id: WorkerId::new(format!("w{i:05}")),
            instance: InstanceId::new(format!("w{i:05}")),
            slots: SLOTS,
            state: WorkerState::Active,
            registered_at: now,
            last_ping: now,
            idle_since: None,
        })
        .collect();
    // Every slot busy, the rest queued: the steady state of a deep queue.
    let busy = n_workers * SLOTS as usize;
    let jobs: Vec<Job> = (0..n_jobs)
        .map(|i| {
            let mut job = Job::new(JobId::new(format!("j{i:08}")), now);
            job.state = JobState::Queued;
            job.queued_at = Some(Timestamp(now.0 + i as u64));
            if i < busy {
                let worker = &workers[i / SLOTS as usize].id;
                job = jobs::assign(&job, worker, now);
                job.state = JobState::Running;
            }
            job
        })
        .collect();

    // The pure jobs tick, fleet full (nothing to assign) and with a slot free on
    // every worker (one assignment per worker).
    let full = median_ms(TICKS, || {
        let plan = jobs::reconcile(&JobsSnapshot {
            now,
            jobs: &jobs,
            workers: &workers,
            heartbeat_timeout_ms: 15_000,
        });
        assert!(plan.writes.is_empty());
    });
    let freed: Vec<Job> = jobs
        .iter()
        .filter(|j| !(j.state == JobState::Running && is_first_slot(j)))
        .cloned()
        .collect();
    let assigning = median_ms(TICKS, || {
        let plan = jobs::reconcile(&JobsSnapshot {
            now,
            jobs: &freed,
            workers: &workers,
            heartbeat_timeout_ms: 15_000,
        });
        assert_eq!(plan.assigned.len(), n_workers.min(n_jobs - busy));
    });

    // The pure fleet tick.
    let settings = FleetSettings {
        min_workers: 0,
        max_workers: n_workers as u32,
        slots_per_worker: SLOTS,
        idle_timeout_ms: 60_000,
    };
    let instances: Vec<Instance> = workers
        .iter()
        .map(|w| Instance {
            id: w.instance.clone(),
            launch_key: LaunchKey::new(format!("k-{}", w.instance)),
            state: InstanceState::Running,
            launched_at: now,
            provider_ref: None,
        })
        .collect();
    let observed: Vec<ObservedInstance> = instances
        .iter()
        .map(|i| ObservedInstance {
            id: i.id.clone(),
            launch_key: Some(i.launch_key.clone()),
            launched_at: i.launched_at,
        })
        .collect();
    let fleet_tick = median_ms(TICKS, || {
        let _ = fleet::reconcile(&FleetSnapshot {
            now,
            settings: &settings,
            timeouts: FleetTimeouts::default(),
            instances: &instances,
            observed: &observed,
            workers: &workers,
            jobs: &jobs,
        });
    });
    let pure_rss = peak_rss_mib();

    // The runtime's jobs tick against SQLite: read, decide, write.
    let dir = tempfile::tempdir()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (store_tick, load_s) = rt.block_on(async {
        let store = SqliteStore::open(&dir.path().join("state.db"))?;
        let t0 = Instant::now();
        for chunk in freed.chunks(10_000) {
            store.create_jobs(chunk).await?;
        }
        for w in &workers {
            store.put_worker(w).await?;
        }
        let load_s = t0.elapsed().as_secs_f64();
        // The first tick assigns a job to each worker's free slot; the next ones
        // find the fleet full and write nothing.
        let mut times = Vec::new();
        for _ in 0..TICKS {
            let t0 = Instant::now();
            let active = store.active_jobs().await?;
            let listed = store.list_workers().await?;
            let plan = jobs::reconcile(&JobsSnapshot {
                now,
                jobs: &active,
                workers: &listed,
                heartbeat_timeout_ms: 15_000,
            });
            let written = store.update_jobs(&plan.writes).await?;
            times.push(t0.elapsed().as_secs_f64() * 1000.0);
            anyhow::ensure!(written.iter().all(Result::is_ok), "a write was refused");
        }
        let first = times.remove(0);
        times.sort_by(f64::total_cmp);
        Ok::<_, anyhow::Error>(((first, times[times.len() / 2]), load_s))
    })?;

    println!(
        "{}",
        serde_json::json!({
            "jobs": n_jobs,
            "workers": n_workers,
            "pure_jobs_tick_full_ms": round(full),
            "pure_jobs_tick_assigning_ms": round(assigning),
            "pure_fleet_tick_ms": round(fleet_tick),
            "sqlite_jobs_tick_assigning_ms": round(store_tick.0),
            "sqlite_jobs_tick_full_ms": round(store_tick.1),
            "sqlite_load_s": round(load_s),
            "peak_rss_pure_mib": pure_rss,
            "peak_rss_total_mib": peak_rss_mib(),
        })
    );
    Ok(())
}

/// The first slot of each worker: freed for the "assigning" tick.
fn is_first_slot(job: &Job) -> bool {
    job.id.as_str()[1..]
        .parse::<usize>()
        .is_ok_and(|i| i % SLOTS as usize == 0)
}

fn median_ms(n: usize, mut f: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..n)
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[n / 2]
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// VmHWM: the most resident memory the process has held, in MiB.
fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}
