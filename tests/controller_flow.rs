//! The long-running form: a real `drover controller`, jobs submitted to it with
//! `drover submit`, followed with `wait`, `status`, `jobs`, `logs`, and their
//! output brought back with `fetch`.

mod common;

use common::{http, manifests_dir, read, Controller, TestDir};
use serde_json::json;
use std::time::Duration;

/// A worker's report sent again (its answer was lost), with its logs attached
/// as reports carry them: answered as done, and nothing stored over what was.
#[test]
fn a_report_sent_again_with_its_logs_attached_is_answered_as_done() {
    let dir = TestDir::new();
    let ctl = Controller::start(&dir);
    let id = ctl.submit(&manifests_dir().join("hello.jdl"));
    let job = ctl.wait_done(&id, Duration::from_secs(20));
    assert_eq!(job["state"], "succeeded", "{job:#}");
    let attempt = &job["attempts"][0];
    let log = format!("jobs/{id}/attempts/1/worker.log");
    let log_before = ctl.blob(&log);
    assert!(
        log_before.is_some(),
        "the worker's log came with its report"
    );
    let again = json!({
        "type": "finished", "worker": attempt["worker"], "job": id, "attempt": 1,
        "outcome": "succeeded", "exit_code": attempt["exit_code"], "reason": null,
        "has_output": attempt["has_output"], "attached": { "worker": "c2VudCBhZ2Fpbg==" },
    });
    let (status, body) = http(&ctl.url, "POST", "/v1/messages", Some(again));
    assert_eq!(status, 200, "{body}");
    assert_eq!(ctl.blob(&log), log_before, "the log was stored over");
    assert_eq!(ctl.job(&id), job, "the job changed");
}

#[test]
fn a_submitted_job_is_waited_for_fetched_and_shown_with_its_attempts() {
    let dir = TestDir::new();
    let ctl = Controller::start(&dir);
    let id = ctl.submit(&manifests_dir().join("hello.jdl"));

    let wait = ctl.drover(["wait", &id]);
    assert_eq!(wait.code, Some(0), "{wait:#?}");
    assert!(
        wait.stdout.contains(&format!("{id} succeeded")),
        "{wait:#?}"
    );

    let out = dir.join("hello-out");
    let fetch = ctl
        .drover(["fetch", &id, "--out", "hello-out"])
        .expect_ok("fetch");
    assert!(fetch.stdout.contains("2 entries"), "{fetch:#?}");
    assert_eq!(read(&out.join("std.out")), "hello from drover\n");
    assert_eq!(read(&out.join("std.err")), "");

    let status = ctl
        .drover(["status", &id, "--json"])
        .expect_ok("status")
        .json();
    assert_eq!(status["id"], id.as_str());
    assert_eq!(status["state"], "succeeded");
    assert_eq!(status["exit_code"], 0);
    assert_eq!(status["spec"]["name"], "hello");
    let attempts = status["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1, "{status:#}");
    let a = &attempts[0];
    assert_eq!(a["number"], 1);
    assert_eq!(a["outcome"], "succeeded");
    assert_eq!(a["exit_code"], 0);
    assert_eq!(a["has_output"], true);
    let worker = a["worker"].as_str().expect("the attempt names its worker");
    assert!(
        ctl.workers().iter().any(|(_, w)| w == worker),
        "the attempt's worker {worker} is one of the cluster's worker processes: {:?}",
        ctl.workers()
    );
    let (assigned, started, finished) = (
        a["assigned_at"].as_u64().expect("assigned_at"),
        a["started_at"].as_u64().expect("started_at"),
        a["finished_at"].as_u64().expect("finished_at"),
    );
    let created = status["created_at"].as_u64().expect("created_at");
    assert!(
        created <= assigned && assigned <= started && started <= finished,
        "{status:#}"
    );

    let human = ctl.drover(["status", &id]).expect_ok("status");
    assert!(
        human.stdout.contains("succeeded") && human.stdout.contains(worker),
        "{human:#?}"
    );

    let jobs = ctl.drover(["jobs", "--json"]).expect_ok("jobs").json();
    let listed: Vec<&str> = jobs
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|j| j["id"].as_str())
        .collect();
    assert_eq!(listed, [id.as_str()]);

    let logs = ctl.drover(["logs", &id]).expect_ok("logs");
    assert_eq!(logs.stdout, "hello from drover\n");
}

#[test]
fn submit_prints_only_the_job_id() {
    let dir = TestDir::new();
    let ctl = Controller::start(&dir);
    let run = ctl
        .drover([
            std::ffi::OsStr::new("submit"),
            manifests_dir().join("hello.jdl").as_os_str(),
        ])
        .expect_ok("submit");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{run:#?}");
    let id = lines[0];
    assert!(
        id.starts_with('j') && id.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{run:#?}"
    );
    ctl.wait_done(id, Duration::from_secs(20));
}

#[test]
fn wait_on_a_failed_job_exits_1_and_says_why() {
    let dir = TestDir::new();
    let ctl = Controller::start(&dir);
    let id = ctl.submit(&manifests_dir().join("fail3.jdl"));
    let wait = ctl.drover(["wait", &id]);
    assert_eq!(wait.code, Some(1), "{wait:#?}");
    assert!(
        wait.stdout.contains(&format!("{id} failed (exit code 3)")),
        "{wait:#?}"
    );
}

#[test]
fn wait_on_several_jobs_exits_0_only_when_all_succeeded() {
    let dir = TestDir::new();
    let ctl = Controller::start(&dir);
    let good = ctl.submit(&manifests_dir().join("hello.jdl"));
    let bad = ctl.submit(&manifests_dir().join("fail3.jdl"));
    let both = ctl.drover(["wait", &good, &bad]);
    assert_eq!(both.code, Some(1), "{both:#?}");
    let only_good = ctl.drover(["wait", &good]);
    assert_eq!(only_good.code, Some(0), "{only_good:#?}");
}

#[test]
fn a_job_from_flags_keeps_arguments_that_start_with_a_dash() {
    // The issue's own command line: `--argument -c` must reach the job as `-c`.
    let dir = TestDir::new();
    let ctl = Controller::start(&dir);
    let run = ctl.drover([
        "submit",
        "--executable",
        "/bin/sh",
        "--argument",
        "-c",
        "--argument",
        "echo \"a b\"; echo x > out.txt",
        "--output",
        "out.txt",
    ]);
    assert_eq!(run.code, Some(0), "`--argument -c` is refused: {run:#?}");
    let id = run.stdout.trim().to_string();
    let wait = ctl.drover(["wait", &id]);
    assert_eq!(wait.code, Some(0), "{wait:#?}");
    ctl.drover(["fetch", &id, "--out", "flags-out"])
        .expect_ok("fetch");
    assert_eq!(read(&dir.join("flags-out").join("out.txt")), "x\n");
    let logs = ctl.drover(["logs", &id]).expect_ok("logs");
    assert_eq!(logs.stdout, "a b\n");
}

#[test]
fn a_job_from_flags_runs_its_arguments_without_a_shell_and_brings_back_its_output() {
    let dir = TestDir::new();
    let ctl = Controller::start(&dir);
    let run = ctl
        .drover([
            "submit",
            "--executable",
            "/bin/sh",
            "--argument=-c",
            "--argument",
            "echo \"a b\"; echo x > out.txt; echo \"$0|$1\"",
            "--argument",
            "two words",
            "--argument",
            "$HOME",
            "--output",
            "out.txt",
        ])
        .expect_ok("submit from flags");
    let id = run.stdout.trim().to_string();
    assert_eq!(run.stdout.lines().count(), 1, "{run:#?}");
    let wait = ctl.drover(["wait", &id]);
    assert_eq!(wait.code, Some(0), "{wait:#?}");
    let fetch = ctl
        .drover(["fetch", &id, "--out", "flags-out"])
        .expect_ok("fetch");
    assert!(
        fetch.stdout.contains("1 entries"),
        "only out.txt comes back: {fetch:#?}"
    );
    assert_eq!(read(&dir.join("flags-out").join("out.txt")), "x\n");
    // argv went through untouched: the words stay one argument, `$HOME` unexpanded.
    let logs = ctl.drover(["logs", &id]).expect_ok("logs");
    assert_eq!(logs.stdout, "a b\ntwo words|$HOME\n");
}

#[test]
fn fetch_without_out_unpacks_into_a_folder_named_after_the_job() {
    let dir = TestDir::new();
    let ctl = Controller::start(&dir);
    let id = ctl.submit(&manifests_dir().join("hello.jdl"));
    ctl.drover(["wait", &id]).expect_ok("wait");
    ctl.drover(["fetch", &id]).expect_ok("fetch");
    assert_eq!(read(&dir.join(&id).join("std.out")), "hello from drover\n");
}

#[test]
fn a_shipped_script_with_inputs_and_a_prologue_runs_on_the_controller() {
    let dir = TestDir::new();
    let ctl = Controller::start(&dir);
    let id = ctl.submit(&manifests_dir().join("wordcount").join("wordcount.jdl"));
    let wait = ctl.drover(["wait", &id]);
    assert_eq!(wait.code, Some(0), "{wait:#?}");
    ctl.drover(["fetch", &id, "--out", "wc"]).expect_ok("fetch");
    assert_eq!(
        read(&dir.join("wc").join("summary.txt")),
        "words.txt: 9 words\nmore words.txt: 5 words\n"
    );
    let worker_log = ctl
        .drover(["logs", &id, "--stream", "worker"])
        .expect_ok("worker log");
    assert!(
        worker_log.stdout.contains("prologue `setup.sh`"),
        "{worker_log:#?}"
    );
}

#[test]
fn logs_of_stderr_and_of_an_earlier_attempt_are_kept() {
    let dir = TestDir::new();
    let ctl = Controller::start(&dir);
    let id = ctl.submit(&manifests_dir().join("retry").join("retry.jdl"));
    let wait = ctl.drover(["wait", &id]);
    assert_eq!(wait.code, Some(0), "{wait:#?}");
    let first = ctl
        .drover(["logs", &id, "--attempt", "1"])
        .expect_ok("logs of attempt 1");
    assert_eq!(first.stdout, "attempt 1\n");
    let latest = ctl.drover(["logs", &id]).expect_ok("logs");
    assert_eq!(latest.stdout, "attempt 2\n");
    let job = ctl
        .drover(["status", &id, "--json"])
        .expect_ok("status")
        .json();
    let outcomes: Vec<&str> = job["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .filter_map(|a| a["outcome"].as_str())
        .collect();
    assert_eq!(outcomes, ["failed", "succeeded"], "{job:#}");
    assert_eq!(job["attempts"][0]["exit_code"], 1);
}
