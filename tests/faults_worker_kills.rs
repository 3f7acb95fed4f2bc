//! Fault 1 of the reliability campaign (docs/reliability.md): workers killed
//! with SIGKILL at random moments of a run of 200 short jobs. Every job must end
//! succeeded with exactly one recorded result, every killed worker's instance is
//! written off as lost and replaced, and nothing is left running at the end.
//!
//! The test prints its figures (run with `--nocapture` to read them): jobs,
//! kills, requeues, the worst time from a kill to the requeue of the killed
//! worker's jobs, and the worst time to a replacement worker.

mod common;

use common::{signal, tally::succeeded_attempts, wait_for, Controller, TestDir};
use nix::sys::signal::Signal;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use std::{
    collections::{HashMap, HashSet},
    io::Read,
    path::Path,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

const JOBS: usize = 200;
const KILLS: usize = 5;
const WORKERS: usize = 4;

/// Short, and long enough that a kill finds jobs running: each attempt leaves
/// its job id and attempt number as its only output. ShallowRetryCount covers
/// a job whose worker is killed under it more than once.
const SHORT_JOB: &str = r#"[
  Executable = "/bin/sh";
  Arguments = "-c 'echo $DROVER_JOB_ID $DROVER_ATTEMPT > out.txt; sleep 0.5'";
  OutputSandbox = {"out.txt"};
  ShallowRetryCount = 10;
]
"#;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn is_final(job: &Value) -> bool {
    matches!(
        job["state"].as_str(),
        Some("succeeded" | "failed" | "cancelled")
    )
}

/// Submits `n` copies of `file` from four `drover submit` processes at a time.
fn submit_many(ctl: &Controller, file: &Path, n: usize) -> Vec<String> {
    std::thread::scope(|s| {
        let per = n.div_ceil(4);
        let handles: Vec<_> = (0..4)
            .map(|k| {
                let count = per.min(n.saturating_sub(k * per));
                s.spawn(move || (0..count).map(|_| ctl.submit(file)).collect::<Vec<_>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a submitting thread"))
            .collect()
    })
}

/// The workers that hold a running attempt now (by instance id).
fn busy_workers(jobs: &[Value]) -> HashSet<String> {
    jobs.iter()
        .filter(|j| j["state"] == "running")
        .filter_map(|j| j["attempts"].as_array()?.last()?["worker"].as_str())
        .map(str::to_string)
        .collect()
}

/// The text of `out.txt` in an output archive on disk.
fn out_txt_of(archive: &[u8]) -> String {
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    for entry in tar.entries().expect("tar entries") {
        let mut entry = entry.expect("a tar entry");
        if entry.path().ok().is_some_and(|p| p.ends_with("out.txt")) {
            let mut text = String::new();
            entry.read_to_string(&mut text).expect("out.txt");
            return text;
        }
    }
    panic!("the output archive holds no out.txt");
}

struct Kill {
    worker: String,
    at_ms: u64,
    at: Instant,
    /// When a worker not seen before the kill was up again (the replacement).
    replaced_after: Option<Duration>,
}

#[test]
fn workers_killed_at_random_moments_of_200_jobs_lose_nothing_and_duplicate_nothing() {
    let dir = TestDir::new();
    let mut ctl = Controller::start_with(
        &dir,
        "data",
        &[
            "--max-workers",
            &WORKERS.to_string(),
            "--slots-per-worker",
            "2",
        ],
    );
    // DROVER_FAULT_SEED replays a run (every run prints its seed).
    let seed: u64 = std::env::var("DROVER_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("fault 1 (worker killed): seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let ids = submit_many(&ctl, &dir.write("short.jdl", SHORT_JOB), JOBS);
    assert_eq!(ids.len(), JOBS);
    let submitted_in = started.elapsed();

    // Kill a busy worker at a random moment, KILLS times; between kills, note
    // when the fleet is whole again.
    let mut kills: Vec<Kill> = Vec::new();
    let mut seen: HashSet<String> = ctl.workers().into_iter().map(|(_, w)| w).collect();
    let mut next_kill = Instant::now() + Duration::from_millis(rng.random_range(300..1200));
    loop {
        let jobs = ctl.jobs();
        let live: Vec<(i32, String)> = ctl.workers();
        for (_, w) in &live {
            if seen.insert(w.clone()) {
                for k in kills.iter_mut().filter(|k| k.replaced_after.is_none()) {
                    k.replaced_after = Some(k.at.elapsed());
                }
            }
        }
        if kills.len() == KILLS || jobs.iter().all(is_final) {
            break;
        }
        if Instant::now() >= next_kill {
            let busy = busy_workers(&jobs);
            let targets: Vec<&(i32, String)> =
                live.iter().filter(|(_, w)| busy.contains(w)).collect();
            if !targets.is_empty() {
                let (pid, worker) = targets[rng.random_range(0..targets.len())].clone();
                signal(pid, Signal::SIGKILL);
                kills.push(Kill {
                    worker,
                    at_ms: now_ms(),
                    at: Instant::now(),
                    replaced_after: None,
                });
                next_kill = Instant::now() + Duration::from_millis(rng.random_range(600..1800));
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        kills.len(),
        KILLS,
        "the jobs all finished after {} kills: the run is too short to test {KILLS}",
        kills.len()
    );

    let jobs: Vec<Value> = wait_for(Duration::from_secs(90), "every job to finish", || {
        let jobs = ctl.jobs();
        let ours: Vec<Value> = jobs
            .into_iter()
            .filter(|j| ids.iter().any(|id| j["id"] == id.as_str()))
            .collect();
        (ours.len() == JOBS && ours.iter().all(is_final)).then_some(ours)
    });
    let ran_in = started.elapsed();
    for (_, w) in ctl.workers() {
        if seen.insert(w) {
            for k in kills.iter_mut().filter(|k| k.replaced_after.is_none()) {
                k.replaced_after = Some(k.at.elapsed());
            }
        }
    }

    // The figures first, so that a failing run prints them too.
    let lost = jobs.iter().filter(|j| j["state"] != "succeeded").count();
    let duplicated = jobs.iter().filter(|j| succeeded_attempts(j) > 1).count();
    eprintln!(
        "fault 1: {} jobs finished in {:.1}s (submitted in {:.1}s), {lost} not succeeded, \
         {duplicated} with more than one result",
        jobs.len(),
        ran_in.as_secs_f64(),
        submitted_in.as_secs_f64()
    );

    // Every job succeeded once: one succeeded attempt, the only one with an
    // output, and that output is the one stored and served.
    let killed: HashSet<&str> = kills.iter().map(|k| k.worker.as_str()).collect();
    let mut requeues = 0;
    let mut lost_lost = 0;
    let mut worst_requeue_ms = 0u64;
    let mut worst_rerun_ms = 0u64;
    let mut a_lost_attempt: Option<(String, u64, String)> = None;
    for job in &jobs {
        let id = job["id"].as_str().expect("id");
        assert_eq!(job["state"], "succeeded", "{job:#}");
        let attempts = job["attempts"].as_array().expect("attempts");
        let succeeded: Vec<&Value> = attempts
            .iter()
            .filter(|a| a["outcome"] == "succeeded")
            .collect();
        assert_eq!(succeeded.len(), 1, "exactly one result: {job:#}");
        let winner = succeeded[0]["number"].as_u64().expect("number");
        for a in attempts {
            let n = a["number"].as_u64().expect("number");
            let stored = format!("jobs/{id}/attempts/{n}/output.tar.gz");
            assert_eq!(a["has_output"], n == winner, "{job:#}");
            assert_eq!(
                ctl.blob(&stored).is_some(),
                n == winner,
                "{stored}: {job:#}"
            );
            if a["outcome"] == "worker_lost" {
                requeues += 1;
                let worker = a["worker"].as_str().unwrap_or("");
                assert!(
                    killed.contains(worker),
                    "a worker nobody killed was lost: {job:#}"
                );
                a_lost_attempt.get_or_insert((id.to_string(), n, worker.to_string()));
                let kill = kills.iter().find(|k| k.worker == worker).expect("the kill");
                let requeued = a["finished_at"].as_u64().expect("finished_at");
                worst_requeue_ms = worst_requeue_ms.max(requeued.saturating_sub(kill.at_ms));
                if let Some(next) = attempts.iter().find(|b| b["number"] == n + 1) {
                    if let Some(started) = next["started_at"].as_u64() {
                        worst_rerun_ms = worst_rerun_ms.max(started.saturating_sub(kill.at_ms));
                    }
                    if next["outcome"] == "worker_lost" {
                        lost_lost += 1;
                    }
                }
            } else {
                assert_eq!(a["outcome"], "succeeded", "{job:#}");
            }
        }
        let text = out_txt_of(
            &ctl.blob(&format!("jobs/{id}/attempts/{winner}/output.tar.gz"))
                .expect("the winner's output"),
        );
        assert_eq!(
            text,
            format!("{id} {winner}\n"),
            "job {id}'s accepted output"
        );
    }
    // Regression: a lost attempt's log read as empty. Its worker died before
    // uploading anything, and `drover logs` says so.
    let (id, n, worker) = a_lost_attempt.expect("a lost attempt");
    let logs = ctl.drover(["logs", &id, "--attempt", &n.to_string()]);
    let never_uploaded =
        format!("attempt {n} was lost with worker {worker}; its stdout was never uploaded");
    assert!(
        !logs.ok() && logs.stderr.contains(&never_uploaded),
        "{logs:#?}"
    );

    // Each kill found a busy worker: at least one job of each was requeued.
    let lost_by_worker: HashMap<&str, usize> = jobs
        .iter()
        .flat_map(|j| j["attempts"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["outcome"] == "worker_lost")
        .fold(HashMap::new(), |mut m, a| {
            let w = a["worker"].as_str().unwrap_or("").to_string();
            let k = kills
                .iter()
                .find(|k| k.worker == w)
                .map(|k| k.worker.as_str());
            if let Some(k) = k {
                *m.entry(k).or_default() += 1;
            }
            m
        });
    assert_eq!(
        lost_by_worker.len(),
        KILLS,
        "every killed worker had jobs requeued: {lost_by_worker:?}"
    );

    // Each killed worker was declared lost once (the local fleet sees its
    // instance gone, sooner than its heartbeats run out), nothing of its
    // instance runs on, and the fleet replaced it.
    assert_eq!(
        ctl.metric("drover_workers_lost_total"),
        KILLS as f64,
        "{}",
        ctl.log_tail()
    );
    let leftovers: Vec<i32> = kills
        .iter()
        .flat_map(|k| common::processes_working_in(&ctl.data_dir.join("workers").join(&k.worker)))
        .collect();
    assert!(
        leftovers.is_empty(),
        "job processes of killed workers still run: {leftovers:?}"
    );
    let launched = ctl.metric("drover_instances_launched_total");
    assert!(
        launched >= (WORKERS + KILLS) as f64,
        "{launched} instances launched for {WORKERS} workers and {KILLS} replacements"
    );
    let worst_replacement = kills
        .iter()
        .map(|k| {
            k.replaced_after
                .unwrap_or_else(|| panic!("worker {} was never replaced", k.worker))
        })
        .max()
        .unwrap_or_default();
    let alive: Vec<String> = ctl.workers().into_iter().map(|(_, w)| w).collect();
    assert!(
        alive.iter().all(|w| !killed.contains(w.as_str())),
        "a killed worker runs again: {alive:?}"
    );

    // Stopped, the controller leaves no worker behind.
    let status = ctl.stop(Duration::from_secs(20)).expect("running");
    assert!(status.success(), "{}", ctl.log_tail());
    let data_dir = ctl.data_dir.clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut leaked = common::worker_processes(&data_dir);
    while !leaked.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        leaked = common::worker_processes(&data_dir);
    }

    println!(
        "FIGURES fault=worker_killed jobs={} lost={lost} duplicated={duplicated} leaked={} \
         kills={} requeues={requeues} requeued_twice={lost_lost} \
         worst_kill_to_requeue_ms={worst_requeue_ms} worst_kill_to_rerun_started_ms={worst_rerun_ms} \
         worst_kill_to_replacement_ms={} instances_launched={launched} \
         submit_s={:.1} run_s={:.1} heartbeat_timeout_ms=2000 seed={seed}",
        jobs.len(),
        leaked.len(),
        kills.len(),
        worst_replacement.as_millis(),
        submitted_in.as_secs_f64(),
        ran_in.as_secs_f64(),
    );
    assert!(
        leaked.is_empty(),
        "workers left after the controller stopped: {leaked:?}"
    );
}
