//! A controller killed with SIGKILL while jobs run, restarted on the same data
//! folder: every job still finishes, and no worker of the cluster outlives the
//! controller that is stopped at the end.
//!
//! Fault 3 of the reliability campaign (docs/reliability.md): each test prints
//! a `FIGURES` line (jobs, lost, duplicated, leaked, the outage and the time
//! to finish every job after the restart); run with `--nocapture` to read it.

mod common;

use common::{read, tally::lost_and_duplicated, wait_for, Controller, TestDir};
use serde_json::Value;
use std::time::{Duration, Instant};

/// Each attempt writes its number and runs for two seconds.
const TWO_SECONDS: &str = r#"[
  Executable = "/bin/sh";
  Arguments = "-c 'echo attempt $DROVER_ATTEMPT > out.txt; sleep 2'";
  OutputSandbox = {"out.txt"};
]
"#;

/// A loopback port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Submits `n` jobs and waits until all of them run.
fn start_running_jobs(ctl: &Controller, dir: &TestDir, n: usize) -> Vec<String> {
    let file = dir.write("job.jdl", TWO_SECONDS);
    let ids: Vec<String> = (0..n).map(|_| ctl.submit(&file)).collect();
    for id in &ids {
        ctl.wait_job(id, Duration::from_secs(20), "running", |j| {
            j["state"] == "running"
        });
    }
    ids
}

/// The figures of one run, on one line the campaign's table is filled from.
fn print_figures(name: &str, jobs: &[Value], leaked: usize, down: Duration, finished: Duration) {
    let (lost, duplicated) = lost_and_duplicated(jobs);
    let attempts: usize = jobs
        .iter()
        .map(|j| j["attempts"].as_array().map_or(0, Vec::len))
        .sum();
    println!(
        "FIGURES fault=controller_killed test={name} jobs={} attempts={attempts} lost={lost} \
         duplicated={duplicated} leaked_workers={leaked} kills=1 outage_ms={} \
         restart_to_all_finished_ms={}",
        jobs.len(),
        down.as_millis(),
        finished.as_millis()
    );
}

/// Stops the controller with SIGTERM and checks that it took its workers along;
/// returns how many workers were left (0).
fn stop_and_check_no_worker_is_left(mut ctl: Controller) -> usize {
    let status = ctl.stop(Duration::from_secs(20)).expect("it was running");
    assert!(
        status.success(),
        "the controller exited with {status}:\n{}",
        ctl.log_tail()
    );
    let data_dir = ctl.data_dir.clone();
    let left = wait_for(
        Duration::from_secs(10),
        "no worker of the cluster to be left",
        || {
            let left = common::worker_processes(&data_dir);
            left.is_empty().then_some(left)
        },
    );
    assert!(left.is_empty());
    left.len()
}

#[test]
fn jobs_running_when_the_controller_is_killed_finish_once_after_it_restarts_on_a_new_port() {
    let dir = TestDir::new();
    let mut first = Controller::start_with(&dir, "data", &["--slots-per-worker", "2"]);
    let ids = start_running_jobs(&first, &dir, 2);
    let old_url = first.url.clone();
    let old_workers = first.workers();
    assert!(!old_workers.is_empty());

    first.kill9();
    let killed = Instant::now();
    let second = Controller::start_with(&dir, "data", &["--slots-per-worker", "2"]);
    let down = killed.elapsed();
    assert_ne!(second.url, old_url, "a new port");

    let done: Vec<Value> = ids
        .iter()
        .map(|id| second.wait_done(id, Duration::from_secs(30)))
        .collect();
    let finished = killed.elapsed() - down;
    for (id, job) in ids.iter().zip(done) {
        assert_eq!(job["state"], "succeeded", "{job:#}");
        let attempts = job["attempts"].as_array().cloned().unwrap_or_default();
        // The old workers read the new address from the data folder and report
        // there: their attempts are adopted, nothing runs twice.
        assert_eq!(attempts.len(), 1, "{job:#}");
        let only = &attempts[0];
        assert_eq!(only["outcome"], "succeeded", "{job:#}");
        assert!(
            old_workers
                .iter()
                .any(|(_, w)| only["worker"] == w.as_str()),
            "the attempt ran on a worker of the killed controller: {job:#}"
        );
        second
            .drover(["fetch", id, "--out", &format!("out-{id}")])
            .expect_ok("fetch");
        assert_eq!(
            read(&dir.join(format!("out-{id}")).join("out.txt")),
            "attempt 1\n"
        );
    }
    let jobs: Vec<Value> = ids.iter().map(|id| second.job(id)).collect();
    let leaked = stop_and_check_no_worker_is_left(second);
    print_figures("new_port", &jobs, leaked, down, finished);
}

#[test]
fn a_controller_restarted_on_the_same_address_adopts_its_workers_and_their_jobs() {
    let dir = TestDir::new();
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let mut first = Controller::start_with(
        &dir,
        "data",
        &["--listen", &listen, "--slots-per-worker", "2"],
    );
    let ids = start_running_jobs(&first, &dir, 2);
    let old_workers = first.workers();

    first.kill9();
    let killed = Instant::now();
    let second = Controller::start_with(
        &dir,
        "data",
        &["--listen", &listen, "--slots-per-worker", "2"],
    );
    let down = killed.elapsed();
    assert_eq!(second.url, format!("http://{listen}"));

    let done: Vec<Value> = ids
        .iter()
        .map(|id| second.wait_done(id, Duration::from_secs(30)))
        .collect();
    let finished = killed.elapsed() - down;
    for job in done {
        assert_eq!(job["state"], "succeeded", "{job:#}");
        let attempts = job["attempts"].as_array().expect("attempts");
        assert_eq!(
            attempts.len(),
            1,
            "the running attempt was adopted, not run again: {job:#}"
        );
        assert!(
            old_workers
                .iter()
                .any(|(_, w)| attempts[0]["worker"] == w.as_str()),
            "{job:#}"
        );
    }
    let adopted = second.workers();
    assert!(
        old_workers.iter().all(|w| adopted.contains(w)),
        "the running workers were kept: before {old_workers:?}, after {adopted:?}"
    );
    let jobs: Vec<Value> = ids.iter().map(|id| second.job(id)).collect();
    let leaked = stop_and_check_no_worker_is_left(second);
    print_figures("same_address", &jobs, leaked, down, finished);
}

#[test]
fn a_second_controller_on_a_data_folder_in_use_is_refused() {
    let dir = TestDir::new();
    let _first = Controller::start(&dir);
    let run = common::run_drover(
        dir.path(),
        [
            "controller",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            "data",
        ],
        None,
        Duration::from_secs(20),
    );
    assert_ne!(run.code, Some(0), "{run:#?}");
    assert!(run.stderr.contains("another drover controller"), "{run:#?}");
}
