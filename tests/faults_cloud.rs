//! Fault 5 of the reliability campaign (docs/reliability.md): a whole run on
//! AWS (DynamoDB, S3 and EC2 in moto) while a fault proxy makes a share of the
//! controller's calls fail at random: throttled, answered with a server error,
//! answered late, or cut off without an answer. Every job must still succeed
//! exactly once, and the fleet must scale back to nothing, with nothing leaked.
//!
//! The test prints its figures (`--nocapture`): calls seen by service, faults
//! injected by kind, jobs, attempts, lost, duplicated, leaked.

#![cfg(feature = "aws")]

mod common;

use common::{
    aws::{self, is_final, wait_fleet_empty, wait_jobs, Settings},
    fault_proxy::{Fault, FaultProxy, Match},
    fleet_sim::FleetSim,
    moto::Moto,
    tally::succeeded_attempts,
    TestDir,
};
use std::time::{Duration, Instant};

const JOBS: usize = 30;
/// The share of the controller's calls that meet a fault, by service. The EC2
/// calls are few (launches, terminations, a look at the fleet now and then):
/// a larger share makes sure they meet faults too.
const SHARES: [(Match, f64); 3] = [
    (Match::AnyDynamoDb, 0.1),
    (Match::AnyS3, 0.1),
    (Match::AnyEc2, 0.4),
];

#[test]
fn a_run_whose_aws_calls_fail_at_random_loses_nothing_and_leaks_nothing() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.url);
    let dir = TestDir::new();
    let mut s = Settings::new("chaos", &moto);
    s.endpoint_url = proxy.url.clone();
    let config = s.write(&dir);
    aws::init(&dir, &moto, &config);

    // DROVER_FAULT_SEED replays a run (every run prints its seed).
    let seed: u64 = std::env::var("DROVER_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let faults = [
        Fault::Throttle,
        Fault::ServerError,
        Fault::Slow(Duration::from_millis(800)),
        Fault::Drop,
    ];
    // From the controller's first call on.
    proxy.chaos(&SHARES, &faults, seed);
    eprintln!("fault 5 (store and cloud faults): shares {SHARES:?}, seed {seed}");

    let started = Instant::now();
    let ctl = aws::start_controller(&dir, &config, &moto);
    let sim = FleetSim::in_test_dir(&moto.url, &s.cluster, &dir);
    let jdl = dir.write(
        "job.jdl",
        "[\n  Executable = \"/bin/sh\";\n  Arguments = \"-c 'echo $DROVER_JOB_ID $DROVER_ATTEMPT > out.txt; sleep 1'\";\n  OutputSandbox = {\"out.txt\"};\n]\n",
    );
    let ids: Vec<String> = (0..JOBS).map(|_| ctl.submit(&jdl)).collect();
    let jobs = wait_jobs(&ctl, &ids, Duration::from_secs(120), "finished", is_final);
    let ran_in = started.elapsed();
    // Faults go on while the fleet scales down: terminations must get through.
    wait_fleet_empty(&moto, &s.cluster, &ctl);
    let workers_left = common::wait_for(
        Duration::from_secs(10),
        "the simulated workers of terminated instances to stop",
        || Some(sim.instance_ids()).filter(|w| w.is_empty()),
    );
    proxy.calm();

    let lost = jobs.iter().filter(|j| j["state"] != "succeeded").count();
    let duplicated = jobs.iter().filter(|j| succeeded_attempts(j) > 1).count();
    let attempts: usize = jobs
        .iter()
        .map(|j| j["attempts"].as_array().map_or(0, Vec::len))
        .sum();
    let leaked_instances = aws::running_instances(&moto, &s.cluster);
    let tally = proxy.tally();
    let injected: usize = tally.values().sum();
    let calls = proxy.calls_by_service();
    println!(
        "FIGURES fault=store_and_cloud jobs={} attempts={attempts} lost={lost} duplicated={duplicated} \
         leaked_instances={leaked_instances} leaked_workers={} calls_and_faults_by_service={calls:?} \
         faults_injected={injected} by_kind={tally:?} run_s={:.1} seed={seed}",
        jobs.len(),
        workers_left.len(),
        ran_in.as_secs_f64(),
    );

    for job in &jobs {
        assert_eq!(job["state"], "succeeded", "{job:#}\n{}", ctl.log_tail());
        assert_eq!(succeeded_attempts(job), 1, "exactly one result: {job:#}");
    }
    assert_eq!(leaked_instances, 0);
    // Every kind of fault was met, on every service, or the run proved less
    // than it claims.
    for f in &faults {
        assert!(
            tally.get(f.name()).copied().unwrap_or(0) > 0,
            "no {} was injected: {tally:?}",
            f.name()
        );
    }
    for service in ["dynamodb", "s3", "ec2"] {
        let (seen, faulted) = calls.get(service).copied().unwrap_or_default();
        assert!(
            faulted > 0,
            "{service}: no fault in {seen} calls: {calls:?}"
        );
    }
    let launched = ctl.metric("drover_instances_launched_total");
    assert_eq!(
        aws::assert_each_launch_key_launched_once(&moto, &s.cluster) as f64,
        launched,
        "an instance was launched twice for one launch key"
    );
}
