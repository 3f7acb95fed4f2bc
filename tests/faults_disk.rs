//! Fault 6 of the reliability campaign (docs/reliability.md): disk and size.
//! An input over the controller's limit is refused before anything is uploaded
//! or recorded; a job that fills its sandbox fails saying so, and its worker
//! goes on with the next job; an output over the limit fails the attempt,
//! saying so, and is not retried as if the worker were at fault.
//!
//! Each test prints a `FIGURES` line (`--nocapture`).

mod common;

use common::{files_under, hand_worker::HandWorker, wait_for, Controller, TestDir};
use std::time::{Duration, Instant};

/// A controller whose `[limits]` are `limits` (TOML lines).
fn controller_with_limits(dir: &TestDir, limits: &str, extra: &[&str]) -> Controller {
    let config = dir.write("drover.toml", &format!("[limits]\n{limits}\n"));
    let config = config.to_str().expect("utf-8 path").to_string();
    let mut args = vec!["--config", config.as_str()];
    args.extend(extra);
    Controller::start_with(dir, "data", &args)
}

#[test]
fn an_input_over_the_controllers_limit_is_refused_before_anything_is_uploaded() {
    let dir = TestDir::new();
    let ctl = controller_with_limits(&dir, "max_input_bytes = 100000", &[]);
    // 300 kB of input: three times the controller's limit, far below the
    // frontend's own default (1 GiB): only the controller's limit refuses it.
    dir.write("big.dat", &"x".repeat(300_000));
    let jdl = dir.write(
        "big.jdl",
        "[\n  Executable = \"/bin/cat\";\n  Arguments = \"big.dat\";\n  InputSandbox = {\"big.dat\"};\n]\n",
    );
    let run = ctl.drover([std::ffi::OsStr::new("submit"), jdl.as_os_str()]);
    assert_ne!(run.code, Some(0), "{run:#?}");
    assert!(
        run.stderr.contains("over") && run.stderr.contains("100000"),
        "the refusal names the limit: {run:#?}"
    );
    assert!(run.stdout.trim().is_empty(), "no job id printed: {run:#?}");
    // Nothing recorded, nothing uploaded.
    let jobs = ctl.jobs();
    let blobs = ctl.blob_keys();
    println!(
        "FIGURES fault=input_over_limit jobs_submitted=1 jobs_recorded={} blobs_stored={} \
         limit_bytes=100000 input_bytes=300000",
        jobs.len(),
        blobs.len()
    );
    assert!(jobs.is_empty(), "a job was recorded: {jobs:?}");
    assert!(blobs.is_empty(), "something was uploaded: {blobs:?}");

    // Within the limit, the same job goes through.
    dir.write("big.dat", &"x".repeat(50_000));
    let id = ctl.submit(&jdl);
    let job = ctl.wait_done(&id, Duration::from_secs(20));
    assert_eq!(job["state"], "succeeded", "{job:#}");
}

#[test]
fn an_output_over_the_limit_fails_the_attempt_saying_so_and_is_not_retried() {
    let dir = TestDir::new();
    let ctl = controller_with_limits(&dir, "max_output_bytes = 20000", &[]);
    // 200 kB goes up as an upload of its own; 40 kB rides with the worker's
    // report (small outputs are attached): the same limit holds for both.
    for bytes in [200_000, 40_000] {
        output_over_the_limit(&ctl, &dir, bytes);
    }
}

fn output_over_the_limit(ctl: &Controller, dir: &TestDir, bytes: u32) {
    // Random bytes do not compress: the archive is a little over `bytes`.
    let id = ctl.submit(&dir.write(
        &format!("big-output-{bytes}.jdl"),
        &format!("[\n  Executable = \"/bin/sh\";\n  Arguments = \"-c 'head -c {bytes} /dev/urandom > big.bin'\";\n  OutputSandbox = {{\"big.bin\"}};\n  ShallowRetryCount = 3;\n]\n"),
    ));
    let job = ctl.wait_done(&id, Duration::from_secs(30));
    let attempts = job["attempts"].as_array().cloned().unwrap_or_default();
    println!(
        "FIGURES fault=output_over_limit jobs=1 output_bytes={bytes} attempts={} state={} limit_bytes=20000 reason={:?}",
        attempts.len(),
        job["state"],
        job["reason"].as_str().unwrap_or("")
    );
    assert_eq!(job["state"], "failed", "{job:#}");
    assert_eq!(attempts.len(), 1, "retried as a worker's failure: {job:#}");
    assert_eq!(attempts[0]["outcome"], "failed", "{job:#}");
    let reason = job["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("output") && reason.contains("over the limit of 20000 bytes"),
        "{job:#}"
    );
    assert_eq!(attempts[0]["has_output"], false, "{job:#}");
    assert_eq!(
        ctl.blob(&format!("jobs/{id}/attempts/1/output.tar.gz")),
        None,
        "the output over the limit was stored"
    );
}

/// Regression: a log whose upload failed read as empty. Here the controller
/// refuses a stdout over its limit (413, not retried; or, for a log small
/// enough to ride with the report, not stored); the job still succeeds, its
/// stdout answers that it never arrived, and its empty stderr reads empty.
#[test]
fn a_log_whose_upload_failed_is_reported_missing_not_empty() {
    let dir = TestDir::new();
    let ctl = controller_with_limits(&dir, "max_output_bytes = 20000", &[]);
    for bytes in [200_000, 40_000] {
        let id = ctl.submit(&dir.write(
            &format!("loud-{bytes}.jdl"),
            &format!("[\n  Executable = \"/bin/sh\";\n  Arguments = \"-c 'head -c {bytes} /dev/zero'\";\n]\n"),
        ));
        let job = ctl.wait_done(&id, Duration::from_secs(30));
        assert_eq!(job["state"], "succeeded", "{job:#}");
        let stdout = ctl.drover(["logs", &id]);
        assert!(
            !stdout.ok()
                && stdout.stderr.contains("attempt 1 ended on worker")
                && stdout
                    .stderr
                    .contains("its stdout log never reached the controller"),
            "{bytes} bytes: {stdout:#?}"
        );
        let stderr = ctl
            .drover(["logs", &id, "--stream", "stderr"])
            .expect_ok("the empty stderr");
        assert_eq!(stderr.stdout, "", "{stderr:#?}");
    }
}

const WORKER: &str = "quota-1";

#[test]
fn a_job_that_fills_its_sandbox_fails_saying_so_and_its_worker_runs_the_next_job() {
    let dir = TestDir::new();
    // No fleet workers: the hand-started worker with its quota is the only one.
    let ctl = Controller::start_with(&dir, "data", &["--max-workers", "0"]);
    let quota: u64 = 5_000_000;
    let quota_flag = quota.to_string();
    let mut worker = HandWorker::start(
        &dir,
        &ctl.url,
        WORKER,
        &["--max-sandbox-bytes", &quota_flag],
    );

    // Writes 1 MB a time, without end: the disk would fill if nothing stopped it.
    let filler = ctl.submit(&dir.write(
        "filler.jdl",
        "[\n  Executable = \"/bin/sh\";\n  Arguments = \"-c 'i=0; while true; do head -c 1000000 /dev/zero > f$i; i=$((i+1)); done'\";\n  MaxWallTime = 60;\n]\n",
    ));
    let started = Instant::now();
    let job = ctl.wait_done(&filler, Duration::from_secs(30));
    let stopped_after = started.elapsed();
    let reason = job["reason"].as_str().unwrap_or("").to_string();

    // The worker is still there, and runs the next job.
    let next = ctl.submit(&dir.write(
        "next.jdl",
        "[\n  Executable = \"/bin/sh\";\n  Arguments = \"-c 'echo fine > out.txt'\";\n  OutputSandbox = {\"out.txt\"};\n]\n",
    ));
    let after = ctl.wait_done(&next, Duration::from_secs(20));
    let left = files_under(&dir.join("work"));
    println!(
        "FIGURES fault=sandbox_filled jobs=2 quota_bytes={quota} filler_state={} \
         filler_stopped_after_ms={} next_job_state={} worker_alive={} files_left_in_work_dir={} \
         reason={reason:?}",
        job["state"],
        stopped_after.as_millis(),
        after["state"],
        worker.is_running(),
        left.len()
    );
    assert_eq!(job["state"], "failed", "{job:#}");
    assert!(
        reason.contains("filled its sandbox")
            && reason.contains(&format!("limit of {quota} bytes")),
        "{job:#}"
    );
    assert_eq!(
        job["attempts"].as_array().map(Vec::len),
        Some(1),
        "RetryCount defaults to 0: {job:#}"
    );
    assert_eq!(after["state"], "succeeded", "{after:#}");
    assert_eq!(after["attempts"][0]["worker"], WORKER, "{after:#}");
    assert!(
        worker.is_running(),
        "the worker died:\n{}",
        worker.log_text()
    );
    // The filled sandbox was removed with its attempt.
    wait_for(Duration::from_secs(5), "the attempt folders to go", || {
        files_under(&dir.join("work")).is_empty().then_some(())
    });
}

#[test]
fn a_sandbox_quota_in_drover_toml_reaches_the_local_workers() {
    let dir = TestDir::new();
    let ctl = controller_with_limits(&dir, "max_sandbox_bytes = 3000000", &["--max-workers", "1"]);
    let filler = ctl.submit(&dir.write(
        "filler.jdl",
        "[\n  Executable = \"/bin/sh\";\n  Arguments = \"-c 'i=0; while true; do head -c 1000000 /dev/zero > f$i; i=$((i+1)); done'\";\n  MaxWallTime = 60;\n]\n",
    ));
    let job = ctl.wait_done(&filler, Duration::from_secs(30));
    assert_eq!(job["state"], "failed", "{job:#}");
    let reason = job["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("filled its sandbox") && reason.contains("limit of 3000000 bytes"),
        "{job:#}"
    );
    // The same worker goes on.
    let worker = job["attempts"][0]["worker"].clone();
    let next = ctl.submit(&dir.write("next.jdl", "[\n  Executable = \"/bin/true\";\n]\n"));
    let after = ctl.wait_done(&next, Duration::from_secs(20));
    assert_eq!(after["state"], "succeeded", "{after:#}");
    assert_eq!(after["attempts"][0]["worker"], worker, "{after:#}");
}
