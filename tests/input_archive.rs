//! Input archives come from outside: one with an entry that climbs out of the
//! sandbox (`../escaped.txt`, written into the raw tar header the way a hostile
//! client would) is refused by the worker before the job runs, and nothing is
//! written outside the attempt's sandbox.

mod common;

use common::{files_under, http, http_put_bytes, raw_tar_gz, Controller, TestDir};
use serde_json::json;
use std::time::Duration;

const JDL: &str = "[\n  Executable = \"/bin/true\";\n  ShallowRetryCount = 0;\n]\n";

/// Allocates a job over HTTP, uploads `archive` as its input and submits `JDL`.
fn submit_raw(ctl: &Controller, archive: Vec<u8>) -> String {
    let (status, body) = http(&ctl.url, "POST", "/v1/jobs", None);
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().expect("an id").to_string();
    let (status, text) = http_put_bytes(&ctl.url, &format!("/v1/jobs/{id}/input"), archive);
    assert!((200..300).contains(&status), "upload: {status} {text}");
    let (status, body) = http(
        &ctl.url,
        "POST",
        &format!("/v1/jobs/{id}/submit"),
        Some(json!({ "jdl": JDL })),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "queued", "{body}");
    id
}

fn assert_nothing_named(dir: &std::path::Path, name: &str) {
    let found: Vec<_> = files_under(dir)
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == name))
        .collect();
    assert!(found.is_empty(), "{name} was written: {found:?}");
}

#[test]
fn an_input_entry_climbing_out_with_dotdot_fails_the_job_before_it_runs() {
    let dir = TestDir::new();
    let ctl = Controller::start(&dir);
    let archive = raw_tar_gz(&[
        (b"../escaped.txt", b"I got out\n"),
        (b".drover/job.jdl", JDL.as_bytes()),
    ]);
    let id = submit_raw(&ctl, archive);

    let job = ctl.wait_done(&id, Duration::from_secs(20));
    assert_eq!(job["state"], "failed", "{job:#}");
    let attempts = job["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1, "ShallowRetryCount = 0: {job:#}");
    assert_eq!(attempts[0]["outcome"], "failed_before_run", "{job:#}");
    assert_eq!(
        attempts[0]["exit_code"],
        serde_json::Value::Null,
        "/bin/true never ran: {job:#}"
    );
    let reason = job["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("../escaped.txt"),
        "the reason names the entry: {job:#}"
    );
    assert!(
        reason.contains("escapes"),
        "the reason says what is wrong with it: {job:#}"
    );

    // Nowhere: not next to the sandbox, not in the worker's folders, not in the
    // test's folder, not in the worker's temp folder.
    assert_nothing_named(dir.path(), "escaped.txt");
    assert_nothing_named(&ctl.data_dir.join("workers"), "escaped.txt");
}

#[test]
fn an_input_entry_with_an_absolute_path_fails_the_job_before_it_runs() {
    let dir = TestDir::new();
    let ctl = Controller::start(&dir);
    let target = dir.join("absolute-escape.txt");
    let name = target.to_string_lossy().into_owned();
    let archive = raw_tar_gz(&[
        (name.as_bytes(), b"I got out\n"),
        (b".drover/job.jdl", JDL.as_bytes()),
    ]);
    let id = submit_raw(&ctl, archive);

    let job = ctl.wait_done(&id, Duration::from_secs(20));
    assert_eq!(job["state"], "failed", "{job:#}");
    assert_eq!(
        job["attempts"][0]["outcome"], "failed_before_run",
        "{job:#}"
    );
    assert!(
        job["reason"]
            .as_str()
            .unwrap_or("")
            .contains("absolute-escape.txt"),
        "the reason names the entry: {job:#}"
    );
    assert!(
        !target.exists(),
        "the absolute entry was written to {}",
        target.display()
    );
    assert_nothing_named(dir.path(), "absolute-escape.txt");
}

#[test]
fn a_well_formed_raw_archive_runs() {
    // The same path through the API with a harmless archive succeeds: the
    // refusals above are about the entries, not about the way they were sent.
    let dir = TestDir::new();
    let ctl = Controller::start(&dir);
    let archive = raw_tar_gz(&[
        (b"data.txt", b"fine\n"),
        (b".drover/job.jdl", JDL.as_bytes()),
    ]);
    let id = submit_raw(&ctl, archive);
    let job = ctl.wait_done(&id, Duration::from_secs(20));
    assert_eq!(job["state"], "succeeded", "{job:#}");
}

#[test]
fn submitting_before_the_input_is_uploaded_is_refused() {
    let dir = TestDir::new();
    let ctl = Controller::start(&dir);
    let (_, body) = http(&ctl.url, "POST", "/v1/jobs", None);
    let id = body["id"].as_str().expect("an id").to_string();
    let (status, body) = http(
        &ctl.url,
        "POST",
        &format!("/v1/jobs/{id}/submit"),
        Some(json!({ "jdl": JDL })),
    );
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("no input archive"),
        "{body}"
    );
    assert_eq!(ctl.job(&id)["state"], "created");
}
