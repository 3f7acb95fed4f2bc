//! Bad input, each refused with a clear message and nothing lost or created:
//! broken JDL, missing inputs, unsafe names, a missing Executable, a failing job,
//! reports from unknown workers and from stale attempts, and no controller at all.

mod common;

use common::{http, manifests_dir, read, Controller, TestDir};
use serde_json::json;
use std::time::Duration;

/// No job was recorded and no blob was stored.
fn assert_no_job_created(ctl: &Controller) {
    let jobs = ctl.drover(["jobs", "--json"]).expect_ok("jobs").json();
    assert_eq!(jobs, json!([]), "a job was left behind");
    let blobs = ctl.blob_keys();
    assert!(blobs.is_empty(), "blobs were stored: {blobs:?}");
}

#[test]
fn malformed_jdl_is_refused_at_submit_with_file_line_and_column() {
    let dir = TestDir::new();
    let ctl = Controller::start(&dir);
    dir.write(
        "broken.jdl",
        "[\n  Executable = \"/bin/true\";\n  Arguments = \"x\"\n  StdOutput = ;\n]\n",
    );
    let run = ctl.drover(["submit", "broken.jdl"]);
    assert_ne!(run.code, Some(0), "{run:#?}");
    assert!(run.stdout.is_empty(), "no id is printed: {run:#?}");
    assert!(
        run.stderr.contains("broken.jdl:4:14: error:"),
        "stderr names FILE:LINE:COL: {run:#?}"
    );
    assert!(run.stderr.contains("StdOutput"), "{run:#?}");
    assert_no_job_created(&ctl);
}

#[test]
fn an_input_file_that_does_not_exist_is_refused_before_anything_is_uploaded() {
    let dir = TestDir::new();
    let ctl = Controller::start(&dir);
    dir.write(
        "missing.jdl",
        "Executable = \"/bin/cat\";\nInputSandbox = {\"nope.txt\"};\n",
    );
    let run = ctl.drover(["submit", "missing.jdl"]);
    assert_ne!(run.code, Some(0), "{run:#?}");
    assert!(run.stdout.is_empty(), "{run:#?}");
    assert!(
        run.stderr.contains("missing.jdl"),
        "the message names the JDL: {run:#?}"
    );
    assert!(
        run.stderr.contains("nope.txt") && run.stderr.contains("not found"),
        "{run:#?}"
    );
    assert_no_job_created(&ctl);
}

/// Names that would write outside the job's folder, each with where the check
/// must point.
const UNSAFE: &[(&str, &str, &str)] = &[
    (
        "dotdot-output.jdl",
        "Executable = \"/bin/true\";\nOutputSandbox = {\"../x\"};\n",
        "dotdot-output.jdl:2:18: error:",
    ),
    (
        "abs-output.jdl",
        "Executable = \"/bin/true\";\nOutputSandbox = {\"/tmp/x\"};\n",
        "abs-output.jdl:2:18: error:",
    ),
    (
        "dotdot-stdout.jdl",
        "Executable = \"/bin/true\";\nStdOutput = \"a/../../x\";\n",
        "dotdot-stdout.jdl:2:13: error:",
    ),
    (
        "abs-stdout.jdl",
        "Executable = \"/bin/true\";\nStdOutput = \"/tmp/x\";\n",
        "abs-stdout.jdl:2:13: error:",
    ),
];

#[test]
fn dotdot_or_absolute_output_names_are_refused_at_submit() {
    let dir = TestDir::new();
    let ctl = Controller::start(&dir);
    for (file, text, _) in UNSAFE {
        dir.write(file, text);
        let run = ctl.drover(["submit", file]);
        assert_ne!(run.code, Some(0), "{file}: {run:#?}");
        assert!(run.stdout.is_empty(), "{file}: {run:#?}");
        assert!(
            run.stderr.contains(file),
            "{file}: the message names the file: {run:#?}"
        );
        assert!(
            run.stderr.contains("..") || run.stderr.contains("absolute"),
            "{file}: the message says what is wrong: {run:#?}"
        );
    }
    assert_no_job_created(&ctl);
}

#[test]
fn dotdot_or_absolute_output_names_fail_jdl_check() {
    let dir = TestDir::new();
    for (file, text, at) in UNSAFE {
        dir.write(file, text);
        let run = dir.drover(["jdl", "check", file]);
        assert_eq!(run.code, Some(1), "{file}: {run:#?}");
        assert!(run.stdout.contains(at), "{file}: expected `{at}`: {run:#?}");
    }
}

#[test]
fn an_executable_that_is_not_shipped_warns_at_submit_and_fails_saying_so() {
    let dir = TestDir::new();
    let ctl = Controller::start(&dir);
    dir.write(
        "noexe.jdl",
        "Executable = \"run.sh\";\nShallowRetryCount = 0;\n",
    );
    let run = ctl
        .drover(["submit", "noexe.jdl"])
        .expect_ok("submit goes ahead");
    assert!(
        run.stderr.contains("warning") && run.stderr.contains("run.sh"),
        "submit warns: {run:#?}"
    );
    let id = run.stdout.trim().to_string();
    let job = ctl.wait_done(&id, Duration::from_secs(20));
    assert_eq!(job["state"], "failed", "{job:#}");
    let reason = job["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("Executable `run.sh`") && reason.contains("not in the sandbox"),
        "the reason says the Executable is not in the sandbox: {job:#}"
    );
    assert_eq!(
        job["attempts"].as_array().map(Vec::len),
        Some(1),
        "ShallowRetryCount = 0: {job:#}"
    );
    assert_eq!(
        job["attempts"][0]["outcome"], "failed_before_run",
        "{job:#}"
    );
    assert_eq!(
        job["exit_code"],
        serde_json::Value::Null,
        "it never ran: {job:#}"
    );
}

#[test]
fn a_job_that_exits_non_zero_fails_with_its_exit_code_and_its_output_is_still_collected() {
    let dir = TestDir::new();
    let ctl = Controller::start(&dir);
    let id = ctl.submit(&manifests_dir().join("fail3.jdl"));
    let job = ctl.wait_done(&id, Duration::from_secs(20));
    assert_eq!(job["state"], "failed", "{job:#}");
    assert_eq!(job["exit_code"], 3, "{job:#}");
    assert_eq!(job["attempts"][0]["exit_code"], 3, "{job:#}");
    assert_eq!(job["attempts"][0]["outcome"], "failed", "{job:#}");
    assert!(
        job["reason"].as_str().unwrap_or("").contains("exit code 3"),
        "{job:#}"
    );
    ctl.drover(["fetch", &id, "--out", "out"])
        .expect_ok("fetch of a failed job");
    assert_eq!(read(&dir.join("out").join("std.out")), "about to fail\n");
    assert_eq!(read(&dir.join("out").join("std.err")), "oops\n");
}

#[test]
fn messages_from_an_unknown_worker_are_refused_with_404() {
    let dir = TestDir::new();
    let ctl = Controller::start(&dir);
    let id = ctl.submit(&manifests_dir().join("hello.jdl"));
    ctl.wait_done(&id, Duration::from_secs(20));
    let before = ctl.job(&id);

    let messages = [
        json!({"type": "ping", "worker": "nobody", "held": [], "free_slots": 1}),
        json!({"type": "started", "worker": "nobody", "job": id, "attempt": 1}),
        json!({"type": "finished", "worker": "nobody", "job": id, "attempt": 1, "outcome": "failed",
               "exit_code": 9, "reason": "forged", "has_output": false}),
    ];
    for msg in messages {
        let (status, body) = http(&ctl.url, "POST", "/v1/messages", Some(msg.clone()));
        assert_eq!(status, 404, "{msg}: {body}");
        let error = body["error"].as_str().unwrap_or("");
        assert!(error.contains("unknown worker"), "{msg}: {body}");
    }
    let (status, body) = http(&ctl.url, "GET", "/v1/workers/nobody/assignments", None);
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("unknown worker"),
        "{body}"
    );
    assert_eq!(ctl.job(&id), before, "nothing changed");
}

/// A job whose first attempt fails at once and whose second sleeps: a report for
/// attempt 1 then arrives while attempt 2 runs.
const SECOND_ATTEMPT_SLEEPS: &str = r#"[
  Executable = "/bin/sh";
  Arguments = "-c 'if [ $DROVER_ATTEMPT = 1 ]; then exit 1; fi; sleep 60'";
  RetryCount = 1;
]
"#;

#[test]
fn a_report_for_an_earlier_attempt_is_refused_with_409_and_changes_nothing() {
    let dir = TestDir::new();
    let ctl = Controller::start(&dir);
    let file = dir.write("two.jdl", SECOND_ATTEMPT_SLEEPS);
    let id = ctl.submit(&file);
    let job = ctl.wait_job(&id, Duration::from_secs(20), "running its attempt 2", |j| {
        j["state"] == "running" && j["attempts"].as_array().map(Vec::len) == Some(2)
    });
    let worker = job["attempts"][0]["worker"]
        .as_str()
        .expect("worker")
        .to_string();

    // The worker of attempt 1 says, late, that attempt 1 succeeded.
    let late = json!({"type": "finished", "worker": worker, "job": id, "attempt": 1, "outcome": "succeeded",
                      "exit_code": 0, "reason": null, "has_output": false});
    let (status, body) = http(&ctl.url, "POST", "/v1/messages", Some(late));
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap_or("").contains("stale"),
        "{body}"
    );
    let started = json!({"type": "started", "worker": worker, "job": id, "attempt": 1});
    let (status, body) = http(&ctl.url, "POST", "/v1/messages", Some(started));
    assert_eq!(status, 409, "{body}");

    let after = ctl.job(&id);
    assert_eq!(after["state"], "running", "{after:#}");
    assert_eq!(
        after["version"], job["version"],
        "the record was not written: {after:#}"
    );
    assert_eq!(after["attempts"], job["attempts"], "{after:#}");

    ctl.drover(["cancel", &id]).expect_ok("cancel");
}

#[test]
fn a_report_about_a_finished_job_is_refused_with_409() {
    let dir = TestDir::new();
    let ctl = Controller::start(&dir);
    let id = ctl.submit(&manifests_dir().join("fail3.jdl"));
    let job = ctl.wait_done(&id, Duration::from_secs(20));
    assert_eq!(job["state"], "failed");
    let worker = job["attempts"][0]["worker"]
        .as_str()
        .expect("worker")
        .to_string();

    // The same worker now claims its attempt succeeded after all.
    let late = json!({"type": "finished", "worker": worker, "job": id, "attempt": 1, "outcome": "succeeded",
                      "exit_code": 0, "reason": null, "has_output": true});
    let (status, body) = http(&ctl.url, "POST", "/v1/messages", Some(late));
    assert_eq!(status, 409, "{body}");
    let upload = common::http_put_bytes(
        &ctl.url,
        &format!("/v1/jobs/{id}/attempts/1/output?worker={worker}"),
        b"not an archive".to_vec(),
    );
    assert_eq!(
        upload.0, 409,
        "an upload for a finished attempt is refused: {upload:?}"
    );
    assert_eq!(ctl.job(&id), job, "the job is unchanged");
}

#[test]
fn a_report_from_another_worker_than_the_attempts_is_refused() {
    let dir = TestDir::new();
    let ctl = Controller::start(&dir);
    let file = dir.write(
        "sleep.jdl",
        "Executable = \"/bin/sleep\";\nArguments = \"60\";\n",
    );
    let id = ctl.submit(&file);
    let job = ctl.wait_job(&id, Duration::from_secs(20), "running", |j| {
        j["state"] == "running"
    });
    // Another worker registers (as a second instance would) and claims the attempt.
    let (status, body) = http(
        &ctl.url,
        "POST",
        "/v1/workers/register",
        Some(json!({"instance": "intruder", "slots": 1})),
    );
    assert_eq!(status, 200, "{body}");
    let forged = json!({"type": "finished", "worker": "intruder", "job": id, "attempt": 1, "outcome": "succeeded",
                        "exit_code": 0, "reason": null, "has_output": false});
    let (status, body) = http(&ctl.url, "POST", "/v1/messages", Some(forged));
    assert_eq!(status, 403, "{body}");
    let after = ctl.job(&id);
    assert_eq!(after["state"], "running");
    assert_eq!(after["version"], job["version"]);
    ctl.drover(["cancel", &id]).expect_ok("cancel");
}

#[test]
fn status_without_a_controller_says_how_to_start_one() {
    let dir = TestDir::new();
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let run = dir.drover(["status", "j123", "--controller", &url]);
    assert_ne!(run.code, Some(0), "{run:#?}");
    assert!(
        run.stderr.contains("cannot reach the drover controller"),
        "{run:#?}"
    );
    assert!(
        run.stderr.contains(&url),
        "the message names the address: {run:#?}"
    );
    assert!(run.stderr.contains("drover controller"), "{run:#?}");
    // The environment variable is honoured the same way.
    let run = common::run_drover(
        dir.path(),
        ["status", "j123"],
        Some(&url),
        Duration::from_secs(30),
    );
    assert_ne!(run.code, Some(0), "{run:#?}");
    assert!(
        run.stderr.contains("cannot reach the drover controller"),
        "{run:#?}"
    );
}

#[test]
fn an_unknown_job_id_is_reported_as_not_found() {
    let dir = TestDir::new();
    let ctl = Controller::start(&dir);
    let run = ctl.drover(["status", "j123"]);
    assert_ne!(run.code, Some(0), "{run:#?}");
    assert!(
        run.stderr.contains("j123") && run.stderr.contains("not found"),
        "{run:#?}"
    );
    let run = ctl.drover(["status", "../etc"]);
    assert_ne!(run.code, Some(0), "{run:#?}");
    assert!(run.stderr.contains("is not a job id"), "{run:#?}");
}

#[test]
fn an_assignments_poll_skips_the_attempts_the_worker_holds_and_refuses_a_malformed_list() {
    let dir = TestDir::new();
    // No fleet: the only worker is the one this test plays.
    let ctl = Controller::start_with(&dir, "data", &["--max-workers", "0"]);
    let (status, body) = http(
        &ctl.url,
        "POST",
        "/v1/workers/register",
        Some(json!({"instance": "by-hand", "slots": 1})),
    );
    assert_eq!(status, 200, "{body}");
    let id = ctl.submit(&manifests_dir().join("hello.jdl"));
    ctl.wait_job(&id, Duration::from_secs(20), "assigned", |j| {
        j["state"] == "assigned"
    });
    let poll = |query: &str| {
        http(
            &ctl.url,
            "GET",
            &format!("/v1/workers/by-hand/assignments?{query}"),
            None,
        )
    };

    let (status, body) = poll("wait_ms=5000");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body[0]["job"], id.as_str(), "{body}");

    // Held already (its `started` in flight): not new, so the poll waits out
    // its time and answers nothing, instead of answering at once.
    let start = std::time::Instant::now();
    let (status, body) = poll(&format!("wait_ms=400&held={id}.1"));
    assert_eq!((status, body.clone()), (200, json!([])), "{body}");
    assert!(
        start.elapsed() >= Duration::from_millis(400),
        "{:?}",
        start.elapsed()
    );
    // Another attempt of the same job is not the one held.
    let (_, body) = poll(&format!("wait_ms=0&held={id}.7"));
    assert_eq!(body[0]["job"], id.as_str(), "{body}");

    for bad in ["nodot", "job.x", "bad%20id.1", "ok.1,,ok.2"] {
        let (status, body) = poll(&format!("wait_ms=0&held={bad}"));
        assert_eq!(status, 400, "{bad}: {body}");
        let error = body["error"].as_str().unwrap_or("");
        assert!(error.contains("is not `job.attempt`"), "{bad}: {body}");
    }
    let too_many = vec![format!("{id}.1"); 513].join(",");
    let (status, body) = poll(&format!("wait_ms=0&held={too_many}"));
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap_or("").contains("at most 512"),
        "{body}"
    );
    assert_eq!(ctl.job(&id)["state"], "assigned", "nothing changed");
}
