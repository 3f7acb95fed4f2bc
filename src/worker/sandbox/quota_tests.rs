//! The sandbox quota on real programs: a job that writes past it fails saying
//! so, whether it writes many files or one big one; a job within it is left alone.

use super::{run_job, AttemptLimits, AttemptPaths, JobEnv};
use reconcilers::{jdl::JobDescription, model::AttemptOutcome};
use std::{fs, time::Duration};
use tokio_util::sync::CancellationToken;

async fn run_script(body: &str, max_sandbox_bytes: u64) -> super::AttemptResult {
    let tmp = tempfile::tempdir().expect("tmp");
    let paths = AttemptPaths {
        root: tmp.path().join("attempt"),
    };
    fs::create_dir_all(paths.sandbox()).expect("sandbox");
    fs::write(
        paths.sandbox().join("run.sh"),
        format!("#!/bin/sh\n{body}\n"),
    )
    .expect("script");
    let job = JobDescription {
        executable: Some("run.sh".into()),
        // A safety net: the quota must end these jobs long before.
        max_wall_time: Some(20),
        ..JobDescription::default()
    };
    let limits = AttemptLimits {
        max_sandbox_bytes: Some(max_sandbox_bytes),
        kill_grace: Duration::from_millis(300),
        ..AttemptLimits::default()
    };
    let env = JobEnv {
        base: vec![("PATH".into(), "/usr/bin:/bin".into())],
        extras: vec![],
    };
    let result = run_job(&paths, &job, &env, &limits, CancellationToken::new()).await;
    // As the worker does after every attempt, whatever the job locked in it.
    super::remove_attempt_dir(&paths.root).expect("removing the attempt folder");
    assert!(!paths.root.exists());
    result
}

#[tokio::test]
async fn a_job_writing_file_after_file_past_the_quota_is_stopped_and_fails_saying_so() {
    let started = std::time::Instant::now();
    let r = run_script(
        "i=0; while true; do head -c 100000 /dev/zero > f$i; i=$((i+1)); sleep 0.01; done",
        2_000_000,
    )
    .await;
    assert_eq!(r.outcome, AttemptOutcome::Failed, "{r:?}");
    let reason = r.reason.expect("a reason");
    assert!(
        reason.contains("filled its sandbox") && reason.contains("limit of 2000000 bytes"),
        "{reason}"
    );
    assert!(!reason.contains("MaxWallTime"), "{reason}");
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test]
async fn a_job_writing_one_file_past_the_quota_is_killed_by_the_file_size_limit() {
    let r = run_script("head -c 50000000 /dev/zero > big.bin", 1_000_000).await;
    assert_eq!(r.outcome, AttemptOutcome::Failed, "{r:?}");
    let reason = r.reason.expect("a reason");
    assert!(reason.contains("filled its sandbox"), "{reason}");
}

#[tokio::test]
async fn a_job_within_its_quota_succeeds() {
    let r = run_script("head -c 100000 /dev/zero > f; echo done", 10_000_000).await;
    assert_eq!(r.outcome, AttemptOutcome::Succeeded, "{r:?}");
}

/// Regression: the quota skipped folders it could not read, so a job could write
/// file after file (each under RLIMIT_FSIZE) into a folder, `chmod 000` it, and
/// fill the disk unseen. The worker's threads here lack root's folder powers, as
/// a worker not run by root does.
#[test]
fn a_job_hiding_its_files_in_a_locked_folder_still_fills_its_quota() {
    let r = super::reclaim::unprivileged::run(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .on_thread_start(super::reclaim::unprivileged::drop_folder_powers)
            .build()
            .expect("runtime")
            .block_on(run_script(
                "mkdir d; i=0; while [ $i -lt 30 ]; do head -c 100000 /dev/zero > d/f$i; \
                 i=$((i+1)); done; chmod 000 d; sleep 5",
                2_000_000,
            ))
    });
    assert_eq!(r.outcome, AttemptOutcome::Failed, "{r:?}");
    let reason = r.reason.expect("a reason");
    assert!(reason.contains("filled its sandbox"), "{reason}");
}
