//! Controller scale (bench/run.py, part 5): the reconcile tick with many queued
//! jobs and many simulated workers, and the process's peak memory.
//!
//! `cargo run --release --example scale -- [JOBS] [WORKERS]` (default 100000
//! 1000) prints one JSON line. The reconcilers are pure, so the simulation drives
//! them directly; the "store tick" is what the runtime's jobs loop does against
//! SQLite: read the workers and the jobs, decide, write the assignments in one
//! transaction. It is measured twice, in child processes run by turns (each
//! child's peak memory is its own): reading what the decision needs
//! (`Store::dispatch_view`, what the jobs loop does) and, for comparison, every
//! active job (`Store::active_jobs`, what it did before), after checking on the
//! same data that both reads lead to the same decision.

use drover::store::{sqlite::SqliteStore, Store};
use reconcilers::{
    dispatch::{free_slots, JobCounts},
    fleet::{self, FleetSnapshot, FleetTimeouts},
    jobs::{self, JobsSnapshot},
    model::{
        FleetSettings, Instance, InstanceId, InstanceState, Job, JobId, JobState, LaunchKey,
        ObservedInstance, Timestamp, Worker, WorkerId, WorkerState,
    },
};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

const SLOTS: u32 = 4;
const TICKS: usize = 5;
/// Store ticks: children per way of reading, run by turns.
const ROUNDS: usize = 2;
const HEARTBEAT_MS: u64 = 15_000;
/// No prefetch: "fleet full" is every slot running a job (with prefetch, a
/// full fleet also holds a waiting job per slot: twice the jobs on workers).
const PREFETCH: u32 = 0;
/// One queued job in this many was requeued (its worker was lost): it has an
/// attempt and is queued later than all the others, yet is dispatched first.
const REQUEUED_EVERY: usize = 97;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("--store-tick") {
        let (read, db) = (args.nth(1), args.next());
        let (Some(read), Some(db)) = (read, db) else {
            anyhow::bail!("usage: scale --store-tick view|full DB");
        };
        return store_ticks(read == "view", Path::new(&db));
    }
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
            } else if (i - busy) % REQUEUED_EVERY == 0 {
                let lost = jobs::assign(&job, &WorkerId::new("lost"), now);
                job = jobs::worker_lost(&lost, "worker lost lost", now);
                job.queued_at = Some(Timestamp(now.0 + (n_jobs + i) as u64));
            }
            job
        })
        .collect();

    // The pure jobs tick, fleet full (nothing to assign) and with a slot free on
    // every worker (one assignment per worker).
    let full_tick = median_ms(TICKS, || {
        let plan = jobs::reconcile(&JobsSnapshot {
            now,
            jobs: &jobs,
            workers: &workers,
            heartbeat_timeout_ms: HEARTBEAT_MS,
            prefetch_per_slot: PREFETCH,
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
            heartbeat_timeout_ms: HEARTBEAT_MS,
            prefetch_per_slot: PREFETCH,
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
            on_workers: &jobs,
            active_jobs: JobCounts::of(&jobs).active(),
        });
    });
    let pure_rss = peak_rss_mib();

    // The runtime's jobs tick against SQLite: read, decide, write.
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("state.db");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let load_s = rt.block_on(async {
        let store = SqliteStore::open(&db)?;
        let t0 = Instant::now();
        for chunk in freed.chunks(10_000) {
            store.create_jobs(chunk).await?;
        }
        for w in &workers {
            store.put_worker(w).await?;
        }
        let load_s = t0.elapsed().as_secs_f64();
        same_decisions(&store, now).await?;
        Ok::<_, anyhow::Error>(load_s)
    })?;
    drop((jobs, freed, rt));

    let mut view = Vec::new();
    let mut full = Vec::new();
    for _ in 0..ROUNDS {
        view.push(store_tick_child("view", &db)?);
        full.push(store_tick_child("full", &db)?);
    }
    let (view, full) = (Ticks::merge(&view), Ticks::merge(&full));
    println!(
        "{}",
        serde_json::json!({
            "jobs": n_jobs,
            "workers": n_workers,
            "pure_jobs_tick_full_ms": round(full_tick),
            "pure_jobs_tick_assigning_ms": round(assigning),
            "pure_fleet_tick_ms": round(fleet_tick),
            "sqlite_jobs_tick_assigning_ms": round(view.assigning_ms),
            "sqlite_jobs_tick_assigning_write_ms": round(view.assigning_write_ms),
            "sqlite_jobs_tick_full_ms": round(view.full_ms),
            "sqlite_jobs_tick_full_read_ms": round(view.full_read_ms),
            "sqlite_fleet_read_ms": round(view.fleet_read_ms),
            "sqlite_full_read_jobs_tick_assigning_ms": round(full.assigning_ms),
            "sqlite_full_read_jobs_tick_full_ms": round(full.full_ms),
            "sqlite_full_read_jobs_tick_full_read_ms": round(full.full_read_ms),
            "sqlite_full_read_fleet_read_ms": round(full.fleet_read_ms),
            "full_read_over_view_assigning": round(full.assigning_ms / view.assigning_ms),
            "full_read_over_view_full": round(full.full_ms / view.full_ms),
            "sqlite_load_s": round(load_s),
            "peak_rss_pure_mib": pure_rss,
            "peak_rss_view_tick_process_mib": view.peak_rss_mib,
            "peak_rss_full_read_tick_process_mib": full.peak_rss_mib,
        })
    );
    Ok(())
}

/// Both reads, on the same data, lead to the same plan: with a slot free on
/// every worker, and (after writing that plan) with the fleet full.
async fn same_decisions(store: &SqliteStore, now: Timestamp) -> anyhow::Result<()> {
    let workers = store.list_workers().await?;
    for _ in 0..2 {
        let all = store.active_jobs().await?;
        let by_full_read = decide(&all, &workers, now);
        let view = store.dispatch_view(wanted(&workers, now)).await?;
        let by_view = decide(view.jobs(), &workers, now);
        anyhow::ensure!(by_view == by_full_read, "the view decided otherwise");
        anyhow::ensure!(
            *view.counts() == JobCounts::of(&all),
            "the view counted otherwise"
        );
        let written = store.update_jobs(&by_view.writes).await?;
        anyhow::ensure!(written.iter().all(Result::is_ok), "a write was refused");
    }
    // Back to a free slot per worker, for the children.
    let assigned: Vec<Job> = store
        .active_jobs()
        .await?
        .into_iter()
        .filter(|j| j.state == JobState::Assigned)
        .collect();
    anyhow::ensure!(assigned.len() == workers.len(), "one assignment per worker");
    undo(store, &assigned).await
}

fn decide(jobs: &[Job], workers: &[Worker], now: Timestamp) -> jobs::JobsPlan {
    jobs::reconcile(&JobsSnapshot {
        now,
        jobs,
        workers,
        heartbeat_timeout_ms: HEARTBEAT_MS,
        prefetch_per_slot: PREFETCH,
    })
}

fn wanted(workers: &[Worker], now: Timestamp) -> drover::store::QueuedWanted {
    let workers = workers.to_vec();
    Box::new(move |on_workers| free_slots(&workers, on_workers, now, HEARTBEAT_MS, PREFETCH))
}

/// Puts assigned jobs back in the queue as they were before their assignment
/// (the attempt dropped), so that the next tick assigns again.
async fn undo(store: &SqliteStore, assigned: &[Job]) -> anyhow::Result<()> {
    let back: Vec<Job> = assigned
        .iter()
        .map(|j| {
            let mut back = j.clone();
            back.attempts.pop();
            back.state = JobState::Queued;
            back
        })
        .collect();
    let written = store.update_jobs(&back).await?;
    anyhow::ensure!(written.iter().all(Result::is_ok), "an undo was refused");
    Ok(())
}

/// What one child measured (medians), and its peak memory.
#[derive(serde::Serialize, serde::Deserialize)]
struct Ticks {
    assigning_ms: f64,
    /// Of `assigning_ms`: the write of the assignments (one transaction).
    assigning_write_ms: f64,
    full_ms: f64,
    /// Of `full_ms`: reading the workers and the jobs.
    full_read_ms: f64,
    fleet_read_ms: f64,
    peak_rss_mib: u64,
}

impl Ticks {
    fn merge(all: &[Ticks]) -> Ticks {
        let median = |f: fn(&Ticks) -> f64| {
            let mut v: Vec<f64> = all.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        Ticks {
            assigning_ms: median(|t| t.assigning_ms),
            assigning_write_ms: median(|t| t.assigning_write_ms),
            full_ms: median(|t| t.full_ms),
            full_read_ms: median(|t| t.full_read_ms),
            fleet_read_ms: median(|t| t.fleet_read_ms),
            peak_rss_mib: all.iter().map(|t| t.peak_rss_mib).max().unwrap_or(0),
        }
    }
}

fn store_tick_child(read: &str, db: &Path) -> anyhow::Result<Ticks> {
    let out = std::process::Command::new(std::env::current_exe()?)
        .arg("--store-tick")
        .arg(read)
        .arg(db)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "the {read} child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// In a child process: the jobs loop's tick, reading with `dispatch_view`
/// (`view`) or `active_jobs`, TICKS times with a free slot on every worker (each
/// undone after), then TICKS times with the fleet full (nothing to write).
fn store_ticks(view: bool, db: &Path) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let ticks = rt.block_on(async {
        let store = SqliteStore::open(db)?;
        let now = Timestamp(1_800_000_000_000);
        let (mut assigning, mut assigning_write) = (Vec::new(), Vec::new());
        for _ in 0..TICKS {
            let (tick, assigned) = store_tick(&store, view, now).await?;
            assigning.push(tick.total_ms);
            assigning_write.push(tick.write_ms);
            undo(&store, &assigned).await?;
        }
        let (_, filled) = store_tick(&store, view, now).await?;
        let (mut full, mut full_read) = (Vec::new(), Vec::new());
        for _ in 0..TICKS {
            let (tick, assigned) = store_tick(&store, view, now).await?;
            anyhow::ensure!(assigned.is_empty(), "the fleet was full");
            full.push(tick.total_ms);
            full_read.push(tick.read_ms);
        }
        let mut fleet_read = Vec::new();
        for _ in 0..TICKS {
            let t0 = Instant::now();
            let (on_workers, active) = if view {
                let v = store.dispatch_view(Box::new(|_| 0)).await?;
                (v.on_workers().len(), v.counts().active())
            } else {
                let all = store.active_jobs().await?;
                let on = all.iter().filter(|j| j.state.is_on_worker()).count();
                (on, all.len() as u64)
            };
            fleet_read.push(t0.elapsed().as_secs_f64() * 1000.0);
            anyhow::ensure!(on_workers > 0 && active > 0, "the fleet read saw no job");
        }
        undo(&store, &filled).await?;
        Ok::<_, anyhow::Error>(Ticks {
            assigning_ms: median(assigning),
            assigning_write_ms: median(assigning_write),
            full_ms: median(full),
            full_read_ms: median(full_read),
            fleet_read_ms: median(fleet_read),
            peak_rss_mib: peak_rss_mib(),
        })
    })?;
    println!("{}", serde_json::to_string(&ticks)?);
    Ok(())
}

/// The times of one tick, in milliseconds.
struct TickTimes {
    total_ms: f64,
    read_ms: f64,
    write_ms: f64,
}

/// One jobs tick as the runtime's (`src/runtime/jobs.rs`): the workers, the
/// jobs, the decision, the writes, the metrics. Returns its times and the jobs
/// it assigned, as written.
async fn store_tick(
    store: &SqliteStore,
    view: bool,
    now: Timestamp,
) -> anyhow::Result<(TickTimes, Vec<Job>)> {
    let ms = |t: Instant| t.elapsed().as_secs_f64() * 1000.0;
    let t0 = Instant::now();
    let workers = Arc::new(store.list_workers().await?);
    let (plan, counts, read_ms) = if view {
        let w = Arc::clone(&workers);
        let read = store
            .dispatch_view(Box::new(move |on| {
                free_slots(&w, on, now, HEARTBEAT_MS, PREFETCH)
            }))
            .await?;
        let read_ms = ms(t0);
        (decide(read.jobs(), &workers, now), *read.counts(), read_ms)
    } else {
        let all = store.active_jobs().await?;
        let read_ms = ms(t0);
        (decide(&all, &workers, now), JobCounts::of(&all), read_ms)
    };
    let t_write = Instant::now();
    let written = store.update_jobs(&plan.writes).await?;
    let write_ms = ms(t_write);
    drover::metrics::jobs_observed(&counts, &workers, now);
    let times = TickTimes {
        total_ms: ms(t0),
        read_ms,
        write_ms,
    };
    anyhow::ensure!(written.iter().all(Result::is_ok), "a write was refused");
    let assigned = (plan.writes.into_iter().zip(written))
        .filter(|(j, _)| j.state == JobState::Assigned)
        .map(|(mut j, version)| {
            j.version = version.unwrap_or(j.version);
            j
        })
        .collect();
    Ok((times, assigned))
}

fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
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
