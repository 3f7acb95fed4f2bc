//! Fault 2 of the reliability campaign (docs/reliability.md): a worker cut off
//! (SIGSTOP) past the heartbeat timeout, then let go (SIGCONT).
//!
//! The worker here is started by hand, outside the controller's fleet, so that
//! nobody terminates it when it is declared lost: what happens when it wakes up
//! is its own doing. It must learn it was lost, stop the attempt it still holds,
//! and register again; the job, requeued meanwhile, then runs again (on it, the
//! only worker). What it would have reported late is refused with 409 and its
//! late output never replaces the accepted one.
//! `tests/failures.rs` has the same fault on a fleet worker, whose late report
//! arrives while the second attempt runs.

mod common;

use common::{
    hand_worker::HandWorker, http, http_put_bytes, is_alive, proc_state, read, signal, wait_for,
    Controller, TestDir,
};
use nix::sys::signal::Signal;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Attempt 1 runs for a long time (it is still running when its worker wakes
/// up); attempt 2 ends at once. Each leaves its number as the job's output.
const LONG_FIRST_ATTEMPT: &str = r#"[
  Executable = "/bin/sh";
  Arguments = "-c 'echo attempt $DROVER_ATTEMPT > out.txt; if [ $DROVER_ATTEMPT = 1 ]; then sleep 60; fi'";
  OutputSandbox = {"out.txt"};
]
"#;

const WORKER: &str = "partitioned-1";

fn outcomes(job: &Value) -> Vec<&str> {
    job["attempts"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| x["outcome"].as_str().unwrap_or("-"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_partitioned_worker_learns_it_was_lost_stops_its_stale_attempt_and_registers_again() {
    let dir = TestDir::new();
    // No fleet workers: the hand-started worker is the only one.
    let ctl = Controller::start_with(&dir, "data", &["--max-workers", "0"]);
    let mut worker = HandWorker::start(&dir, &ctl.url, WORKER, &[]);
    let id = ctl.submit(&dir.write("job.jdl", LONG_FIRST_ATTEMPT));
    let job = ctl.wait_job(&id, Duration::from_secs(20), "running attempt 1", |j| {
        j["state"] == "running"
    });
    assert_eq!(job["attempts"][0]["worker"], WORKER, "{job:#}");
    let stale = wait_for(Duration::from_secs(5), "attempt 1's processes", || {
        Some(worker.job_processes()).filter(|p| !p.is_empty())
    });
    let stale_before = ctl.metric("drover_stale_reports_total");

    // Cut off past the heartbeat timeout (2s): declared lost, its job requeued.
    let frozen_at = Instant::now();
    signal(worker.pid(), Signal::SIGSTOP);
    let requeued = ctl.wait_job(&id, Duration::from_secs(10), "requeued", |j| {
        j["attempts"][0]["outcome"] == "worker_lost"
    });
    let detected_after = frozen_at.elapsed();
    assert_eq!(requeued["state"], "queued", "{requeued:#}");
    assert_eq!(proc_state(worker.pid()), Some('T'), "still frozen");
    // Its attempt still runs: stopping it is the worker's business when it wakes.
    assert!(
        stale.iter().all(|p| is_alive(*p)),
        "attempt 1 stopped while its worker was frozen"
    );

    let thawed_at = Instant::now();
    signal(worker.pid(), Signal::SIGCONT);
    wait_for(
        Duration::from_secs(10),
        "the woken worker to stop its stale attempt",
        || stale.iter().all(|p| !is_alive(*p)).then_some(()),
    );
    let stale_stopped_after = thawed_at.elapsed();
    // It registered again and runs the requeued job itself: attempt 2 succeeds.
    let job = ctl.wait_done(&id, Duration::from_secs(20));
    let rerun_after = thawed_at.elapsed();
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(outcomes(&job), ["worker_lost", "succeeded"], "{job:#}");
    assert_eq!(job["attempts"][1]["worker"], WORKER, "{job:#}");
    assert_eq!(job["attempts"][0]["has_output"], false, "{job:#}");
    // Regression: the lost attempt's log read as empty; it was never uploaded.
    let logs = ctl.drover(["logs", &id, "--attempt", "1"]);
    assert!(
        !logs.ok()
            && logs
                .stderr
                .contains(&format!("attempt 1 was lost with worker {WORKER}")),
        "{logs:#?}"
    );
    assert!(
        worker.is_running(),
        "the worker exited instead of registering again:\n{}",
        worker.log_text()
    );
    let log = worker.log_text();
    assert!(
        log.contains("declared this worker lost") || log.contains("does not know this worker"),
        "the worker never said it learnt it was lost:\n{log}"
    );
    assert!(
        log.matches("registered").count() >= 2,
        "the worker did not register again:\n{log}"
    );
    assert_eq!(
        ctl.metric("drover_stale_reports_total"),
        stale_before,
        "the stopped attempt reported anyway"
    );

    // What the worker would have sent for attempt 1 had it not noticed: its
    // result and its output, late. Both refused (409), nothing changes.
    let finished = json!({
        "type": "finished", "worker": WORKER, "job": id, "attempt": 1,
        "outcome": "succeeded", "exit_code": 0, "reason": null, "has_output": true,
    });
    let (status, body) = http(&ctl.url, "POST", "/v1/messages", Some(finished));
    assert_eq!(status, 409, "a late report: {body}");
    assert!(
        body.to_string().contains("attempt 1 of job") && body.to_string().contains("stale"),
        "{body}"
    );
    let late_output = common::raw_tar_gz(&[(b"out.txt", b"attempt 1\n")]);
    let (status, text) = http_put_bytes(
        &ctl.url,
        &format!("/v1/jobs/{id}/attempts/1/output?worker={WORKER}"),
        late_output,
    );
    assert_eq!(status, 409, "a late output: {text}");
    assert_eq!(ctl.job(&id), job, "a refused report changed the job");
    let refused = ctl.metric("drover_stale_reports_total") - stale_before;
    assert_eq!(refused, 2.0, "both late reports counted as stale");
    assert_eq!(
        ctl.blob(&format!("jobs/{id}/attempts/1/output.tar.gz")),
        None,
        "the late output was stored"
    );
    ctl.drover(["fetch", &id, "--out", "out"])
        .expect_ok("fetch");
    assert_eq!(
        read(&dir.join("out").join("out.txt")),
        "attempt 2\n",
        "the accepted output is attempt 2's"
    );
    let left = worker.job_processes();
    assert!(
        left.is_empty(),
        "job processes left on the worker: {left:?}"
    );

    println!(
        "FIGURES fault=worker_partitioned jobs=1 lost=0 duplicated=0 leaked=0 \
         freeze_to_requeue_ms={} thaw_to_stale_attempt_stopped_ms={} thaw_to_rerun_done_ms={} \
         late_reports_refused_409={refused} heartbeat_timeout_ms=2000",
        detected_after.as_millis(),
        stale_stopped_after.as_millis(),
        rerun_after.as_millis(),
    );
}
