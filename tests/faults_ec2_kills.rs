//! Fault 1 on EC2 (moto): a worker killed with SIGKILL leaves its instance
//! running, silent. The controller must declare the worker lost after its
//! heartbeat timeout, requeue its jobs, terminate the instance (reason `lost`)
//! and launch a replacement; every job still succeeds exactly once and the
//! fleet scales back to nothing.
//!
//! Prints a `FIGURES` line (`--nocapture`).

#![cfg(feature = "aws")]

mod common;

use common::{
    aws::{self, is_final, tag, wait_fleet_empty, wait_jobs, Settings},
    fleet_sim::FleetSim,
    moto::Moto,
    signal,
    tally::succeeded_attempts,
    TestDir,
};
use nix::sys::signal::Signal;
use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

const JOBS: usize = 24;
const KILLS: usize = 2;

/// The EC2 state of the instance launched for drover instance `id`.
fn ec2_state(moto: &Moto, cluster: &str, id: &str) -> String {
    aws::instances(moto, cluster, &[])
        .iter()
        .find(|i| tag(i, "drover:launch-key") == Some(id))
        .and_then(|i| i.state())
        .and_then(|s| s.name())
        .map(|n| n.as_str().to_string())
        .unwrap_or_else(|| "gone".to_string())
}

#[test]
fn ec2_workers_killed_mid_run_are_terminated_as_lost_and_replaced_and_nothing_is_lost() {
    let moto = Moto::start();
    let dir = TestDir::new();
    let s = Settings::new("ec2kills", &moto);
    let config = s.write(&dir);
    aws::init(&dir, &moto, &config);
    let ctl = aws::start_controller(&dir, &config, &moto);
    let sim = FleetSim::in_test_dir(&moto.url, &s.cluster, &dir);
    let jdl = dir.write(
        "job.jdl",
        "[\n  Executable = \"/bin/sh\";\n  Arguments = \"-c 'echo $DROVER_JOB_ID $DROVER_ATTEMPT > out.txt; sleep 3'\";\n  OutputSandbox = {\"out.txt\"};\n  ShallowRetryCount = 5;\n]\n",
    );
    let started = Instant::now();
    let ids: Vec<String> = (0..JOBS).map(|_| ctl.submit(&jdl)).collect();

    let mut killed: Vec<String> = Vec::new();
    let mut before_kills: HashSet<String> = HashSet::new();
    let mut first_kill: Option<Instant> = None;
    let mut worst_requeue = Duration::ZERO;
    for _ in 0..KILLS {
        // A worker running a job now.
        let (job_id, worker) = common::wait_for(
            Duration::from_secs(60),
            "a job running on a worker not killed yet",
            || {
                ids.iter().find_map(|id| {
                    let job = ctl.job(id);
                    let last = job["attempts"].as_array()?.last()?.clone();
                    let w = last["worker"].as_str()?.to_string();
                    (job["state"] == "running" && !killed.contains(&w)).then(|| (id.clone(), w))
                })
            },
        );
        before_kills.extend(sim.instance_ids());
        let pid = sim.pid(&worker).expect("the worker's process");
        signal(pid, Signal::SIGKILL);
        let at = Instant::now();
        first_kill.get_or_insert(at);
        killed.push(worker.clone());
        ctl.wait_job(&job_id, Duration::from_secs(20), "requeued", |j| {
            j["attempts"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|x| x["worker"] == worker.as_str() && x["outcome"] == "worker_lost")
            })
        });
        worst_requeue = worst_requeue.max(at.elapsed());
    }
    // New instances, launched for the jobs the killed workers left waiting.
    common::wait_for(Duration::from_secs(60), "replacement workers", || {
        let new = sim
            .instance_ids()
            .iter()
            .filter(|w| !before_kills.contains(*w))
            .count();
        (new >= KILLS).then_some(())
    });
    let replaced_after = first_kill.map(|t| t.elapsed()).unwrap_or_default();

    let jobs = wait_jobs(&ctl, &ids, Duration::from_secs(120), "finished", is_final);
    let ran_in = started.elapsed();
    let lost = jobs.iter().filter(|j| j["state"] != "succeeded").count();
    let duplicated = jobs.iter().filter(|j| succeeded_attempts(j) > 1).count();
    let requeues: usize = jobs
        .iter()
        .flat_map(|j| j["attempts"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["outcome"] == "worker_lost")
        .count();
    let states: Vec<String> = killed
        .iter()
        .map(|w| ec2_state(&moto, &s.cluster, w))
        .collect();
    let terminated_lost = ctl.metric("drover_instances_terminated_total{reason=\"lost\"}");
    wait_fleet_empty(&moto, &s.cluster, &ctl);
    let leaked = aws::running_instances(&moto, &s.cluster);
    println!(
        "FIGURES fault=worker_killed_ec2 jobs={} lost={lost} duplicated={duplicated} leaked_instances={leaked} \
         kills={KILLS} requeues={requeues} killed_instances={states:?} terminated_as_lost={terminated_lost} \
         worst_kill_to_requeue_ms={} first_kill_to_all_replaced_ms={} instances_launched={} run_s={:.1} \
         heartbeat_timeout_ms=3000",
        jobs.len(),
        worst_requeue.as_millis(),
        replaced_after.as_millis(),
        ctl.metric("drover_instances_launched_total"),
        ran_in.as_secs_f64(),
    );

    for job in &jobs {
        assert_eq!(job["state"], "succeeded", "{job:#}");
        assert_eq!(succeeded_attempts(job), 1, "exactly one result: {job:#}");
    }
    assert_eq!(ctl.metric("drover_workers_lost_total"), KILLS as f64);
    assert_eq!(terminated_lost, KILLS as f64, "{}", ctl.log_tail());
    for (w, state) in killed.iter().zip(&states) {
        assert!(
            matches!(state.as_str(), "shutting-down" | "terminated" | "gone"),
            "the killed worker's instance {w} is {state}"
        );
    }
    assert_eq!(leaked, 0);
}
