//! Failure handling with real processes: a worker killed with SIGKILL, a worker
//! frozen with SIGSTOP past the heartbeat timeout and thawed again, a job
//! cancelled while it runs, a job over its MaxWallTime.
//!
//! The controllers run with a 2s heartbeat timeout, 300ms pings and 200ms ticks.

mod common;

use common::{
    all_pids, cmdline, is_alive, parent_pid, proc_cwd, proc_state, read, signal, wait_for,
    Controller, TestDir,
};
use nix::sys::signal::Signal;
use serde_json::Value;
use std::time::{Duration, Instant};

/// Attempt 1 sleeps long; any later attempt finishes at once. Each attempt
/// writes its number to out.txt, the job's only output.
const SLEEPS_ON_ATTEMPT_1: &str = r#"[
  Executable = "/bin/sh";
  Arguments = "-c 'echo attempt $DROVER_ATTEMPT > out.txt; if [ $DROVER_ATTEMPT = 1 ]; then sleep 30; fi'";
  OutputSandbox = {"out.txt"};
]
"#;

/// The pid of the worker process of `worker` (an instance id).
fn worker_pid(ctl: &Controller, worker: &str) -> i32 {
    wait_for(Duration::from_secs(5), "the worker's process", || {
        ctl.workers()
            .into_iter()
            .find(|(_, id)| id == worker)
            .map(|(pid, _)| pid)
    })
}

/// Processes whose current folder is under the worker's own folder: its jobs.
fn job_processes_of(ctl: &Controller, worker: &str) -> Vec<i32> {
    let dir = ctl.data_dir.join("workers").join(worker);
    all_pids()
        .into_iter()
        .filter(|p| proc_cwd(*p).is_some_and(|cwd| cwd.starts_with(&dir)))
        .collect()
}

fn outcomes(job: &Value) -> Vec<String> {
    job["attempts"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| x["outcome"].as_str().unwrap_or("-").to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn running_attempt(ctl: &Controller, id: &str, n: usize) -> Value {
    ctl.wait_job(
        id,
        Duration::from_secs(20),
        &format!("running attempt {n}"),
        |j| j["state"] == "running" && j["attempts"].as_array().map(Vec::len) == Some(n),
    )
}

#[test]
fn a_worker_killed_with_sigkill_is_lost_and_its_job_runs_again_on_a_new_worker() {
    let dir = TestDir::new();
    let ctl = Controller::start(&dir);
    let id = ctl.submit(&dir.write("job.jdl", SLEEPS_ON_ATTEMPT_1));
    let job = running_attempt(&ctl, &id, 1);
    let first = job["attempts"][0]["worker"]
        .as_str()
        .expect("worker")
        .to_string();
    let pid = worker_pid(&ctl, &first);

    let killed_at = Instant::now();
    signal(pid, Signal::SIGKILL);
    // DESIGN.md: a lost worker's jobs run elsewhere within heartbeat timeout +
    // one reconcile tick (here 2s + 0.2s; the new worker's start-up and the job
    // itself take well under a second more).
    let job = ctl.wait_done(&id, Duration::from_secs(8));
    let took = killed_at.elapsed();

    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(outcomes(&job), ["worker_lost", "succeeded"], "{job:#}");
    let (a1, a2) = (&job["attempts"][0], &job["attempts"][1]);
    assert_eq!(a1["number"], 1);
    assert_eq!(a2["number"], 2);
    assert_eq!(a1["worker"], first.as_str());
    assert_ne!(
        a2["worker"],
        first.as_str(),
        "attempt 2 runs on a new worker: {job:#}"
    );
    assert!(
        a1["reason"].as_str().unwrap_or("").contains("lost"),
        "{job:#}"
    );
    assert_eq!(a1["has_output"], false);

    // What `drover status --json` shows is the same record.
    let status = ctl
        .drover(["status", &id, "--json"])
        .expect_ok("status")
        .json();
    assert_eq!(
        outcomes(&status),
        ["worker_lost", "succeeded"],
        "{status:#}"
    );

    ctl.drover(["fetch", &id, "--out", "out"])
        .expect_ok("fetch");
    assert_eq!(read(&dir.join("out").join("out.txt")), "attempt 2\n");

    assert!(
        took < Duration::from_secs(6),
        "the job finished {took:?} after its worker was killed (heartbeat timeout 2s)\n{}",
        ctl.log_tail()
    );
}

#[test]
fn a_killed_workers_job_processes_do_not_outlive_it() {
    let dir = TestDir::new();
    let ctl = Controller::start(&dir);
    let id = ctl.submit(&dir.write("job.jdl", SLEEPS_ON_ATTEMPT_1));
    let job = running_attempt(&ctl, &id, 1);
    let first = job["attempts"][0]["worker"]
        .as_str()
        .expect("worker")
        .to_string();
    let pid = worker_pid(&ctl, &first);
    let jobs = wait_for(Duration::from_secs(5), "the job's process", || {
        Some(job_processes_of(&ctl, &first)).filter(|p| !p.is_empty())
    });

    signal(pid, Signal::SIGKILL);
    ctl.wait_job(
        &id,
        Duration::from_secs(10),
        "declared lost on its first worker",
        |j| j["attempts"][0]["outcome"] == "worker_lost",
    );
    // The instance is gone and its attempt written off: nothing of it may keep
    // running (the attempt's `sleep 30` would otherwise run on, unaccounted for,
    // next to the attempt that replaces it).
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && jobs.iter().any(|p| is_alive(*p)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left: Vec<(i32, Vec<String>)> = jobs
        .iter()
        .filter(|p| is_alive(**p))
        .map(|p| (*p, cmdline(*p)))
        .collect();
    assert!(
        left.is_empty(),
        "processes of the killed worker's attempt still run: {left:?}"
    );
}

/// Attempt 1 finishes after a second (while its worker is frozen); attempt 2
/// runs for three, long enough for the thawed worker to report meanwhile.
const FREEZE_JOB: &str = r#"[
  Executable = "/bin/sh";
  Arguments = "-c 'echo attempt $DROVER_ATTEMPT > out.txt; if [ $DROVER_ATTEMPT = 1 ]; then sleep 1; else sleep 3; fi'";
  OutputSandbox = {"out.txt"};
]
"#;

#[test]
fn a_worker_frozen_past_the_heartbeat_timeout_loses_its_job_and_its_late_report_is_refused() {
    let dir = TestDir::new();
    let ctl = Controller::start(&dir);
    let id = ctl.submit(&dir.write("job.jdl", FREEZE_JOB));
    let job = running_attempt(&ctl, &id, 1);
    let frozen = job["attempts"][0]["worker"]
        .as_str()
        .expect("worker")
        .to_string();
    let pid = worker_pid(&ctl, &frozen);
    let stale_before = ctl.metric("drover_stale_reports_total");

    signal(pid, Signal::SIGSTOP);
    // Requeued and running again elsewhere while the first worker is frozen.
    let job = running_attempt(&ctl, &id, 2);
    assert_eq!(job["attempts"][0]["outcome"], "worker_lost", "{job:#}");
    assert_ne!(job["attempts"][1]["worker"], frozen.as_str(), "{job:#}");
    assert_eq!(
        proc_state(pid),
        Some('T'),
        "the first worker is still frozen"
    );
    // Its attempt 1 ends meanwhile (the job's processes were not frozen; the
    // ended shell stays a zombie until its frozen parent reaps it).
    wait_for(
        Duration::from_secs(5),
        "attempt 1's processes to end",
        || job_processes_of(&ctl, &frozen).is_empty().then_some(()),
    );
    signal(pid, Signal::SIGCONT);

    // The thawed worker reports attempt 1 (or uploads its output): refused.
    wait_for(
        Duration::from_secs(10),
        "the late report to be refused",
        || (ctl.metric("drover_stale_reports_total") > stale_before).then_some(()),
    );
    let during = ctl.job(&id);
    assert_eq!(
        during["attempts"].as_array().map(Vec::len),
        Some(2),
        "{during:#}"
    );
    assert_eq!(
        during["attempts"][0]["outcome"], "worker_lost",
        "attempt 1 stays lost: {during:#}"
    );

    let job = ctl.wait_done(&id, Duration::from_secs(20));
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(
        outcomes(&job),
        ["worker_lost", "succeeded"],
        "exactly one result: {job:#}"
    );
    assert_eq!(job["attempts"][0]["has_output"], false, "{job:#}");
    assert_eq!(job["attempts"][1]["has_output"], true, "{job:#}");
    assert_eq!(
        ctl.blob(&format!("jobs/{id}/attempts/1/output.tar.gz")),
        None,
        "the stale attempt's output was stored"
    );
    ctl.drover(["fetch", &id, "--out", "out"])
        .expect_ok("fetch");
    assert_eq!(
        read(&dir.join("out").join("out.txt")),
        "attempt 2\n",
        "the accepted result is attempt 2's"
    );

    // Nothing the old worker does until it is gone changes the finished job.
    wait_for(
        Duration::from_secs(10),
        "the thawed worker to be stopped",
        || (!is_alive(pid)).then_some(()),
    );
    assert_eq!(ctl.job(&id), job);
}

#[test]
fn a_cancelled_running_job_ends_cancelled_and_its_process_group_is_gone() {
    let dir = TestDir::new();
    let ctl = Controller::start(&dir);
    // A shell with a background child: the whole group must go, not just its leader.
    let id = ctl.submit(&dir.write(
        "sleep.jdl",
        "Executable = \"/bin/sh\";\nArguments = \"-c 'sleep 60 & sleep 60; wait'\";\n",
    ));
    let job = running_attempt(&ctl, &id, 1);
    let worker = job["attempts"][0]["worker"]
        .as_str()
        .expect("worker")
        .to_string();
    let wpid = worker_pid(&ctl, &worker);
    let sleeps: Vec<i32> = wait_for(Duration::from_secs(5), "two `sleep 60` in the job", || {
        let found: Vec<i32> = job_processes_of(&ctl, &worker)
            .into_iter()
            .filter(|p| cmdline(*p).last().map(String::as_str) == Some("60"))
            .collect();
        (found.len() == 2).then_some(found)
    });
    let leader = wait_for(Duration::from_secs(5), "the job's shell", || {
        all_pids().into_iter().find(|p| {
            parent_pid(*p) == Some(wpid) && cmdline(*p).first().is_some_and(|c| c.ends_with("sh"))
        })
    });

    let cancel = ctl.drover(["cancel", &id]).expect_ok("cancel");
    assert_eq!(
        cancel.stdout.trim(),
        format!("{id} cancelled"),
        "{cancel:#?}"
    );
    let job = ctl.job(&id);
    assert_eq!(job["state"], "cancelled", "{job:#}");
    assert_eq!(job["attempts"][0]["outcome"], "cancelled", "{job:#}");

    // The worker learns it from its next ping and stops the whole group.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut left: Vec<i32> = sleeps.iter().copied().chain([leader]).collect();
    while Instant::now() < deadline {
        left.retain(|p| is_alive(*p));
        if left.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let described: Vec<_> = left.iter().map(|p| (*p, cmdline(*p))).collect();
    assert!(
        described.is_empty(),
        "processes of the cancelled job still run: {described:?}"
    );
    assert!(is_alive(wpid), "the worker itself keeps running");
    let wait = ctl.drover(["wait", &id]);
    assert_eq!(
        wait.code,
        Some(1),
        "a cancelled job did not succeed: {wait:#?}"
    );
    assert!(wait.stdout.contains("cancelled"), "{wait:#?}");
}

#[test]
fn a_job_over_its_max_wall_time_fails_saying_so() {
    let dir = TestDir::new();
    let ctl = Controller::start(&dir);
    let id = ctl.submit(&dir.write(
        "slow.jdl",
        "Executable = \"/bin/sleep\";\nArguments = \"30\";\nMaxWallTime = 1;\n",
    ));
    let started = Instant::now();
    let job = ctl.wait_done(&id, Duration::from_secs(20));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(job["state"], "failed", "{job:#}");
    let reason = job["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("MaxWallTime"),
        "the reason mentions MaxWallTime: {job:#}"
    );
    assert_eq!(
        outcomes(&job),
        ["failed"],
        "RetryCount defaults to 0: {job:#}"
    );
    assert_eq!(job["spec"]["max_wall_time_secs"], 1);
}
