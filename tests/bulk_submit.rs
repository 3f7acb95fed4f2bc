//! Bulk submission: a parametric JDL submitted with `drover submit` becomes one
//! job per parameter value, each with its own input and output; the batch API
//! refuses bad batches whole, with a reason that names the job.

mod common;

use common::{http, read, Controller, Run, TestDir};
use serde_json::{json, Value};
use std::{ffi::OsStr, path::Path};

const SWEEP: &str = r#"[
  JobType = "Parametric";
  Executable = "/bin/sh";
  Arguments = "-c 'cat in_PARAM_.txt > out.txt; echo param _PARAM_ >> out.txt'";
  Parameters = 4;
  ParameterStart = 1;
  ParameterStep = 2;
  InputSandbox = {"in_PARAM_.txt"};
  OutputSandbox = {"out.txt"};
  JobName = "sweep-_PARAM_";
]"#;

/// `drover submit FILE`, as a user runs it.
fn submit_file(ctl: &Controller, jdl: &Path) -> Run {
    ctl.drover([OsStr::new("submit"), jdl.as_os_str()])
}

/// Posts a batch of `entries` for submission and checks it is refused whole
/// with `status`, the error saying `says`.
fn refused_whole(ctl: &Controller, entries: Vec<Value>, status: u16, says: &str) {
    let (got, body) = http(
        &ctl.url,
        "POST",
        "/v1/batches/submit",
        Some(json!({ "jobs": entries })),
    );
    assert_eq!(got, status, "{body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(error.contains(says), "expected `{says}` in: {body}");
}

#[test]
fn a_parametric_jdl_runs_one_job_per_value_with_its_own_sandbox() {
    let dir = TestDir::new();
    for p in [1, 3, 5, 7] {
        dir.write(&format!("in{p}.txt"), &format!("input {p}\n"));
    }
    let jdl = dir.write("sweep.jdl", SWEEP);
    let ctl = Controller::start(&dir);
    let run = submit_file(&ctl, &jdl).expect_ok("submit");
    let ids: Vec<&str> = run.stdout.lines().map(str::trim).collect();
    assert_eq!(ids.len(), 4, "one id a line: {run:#?}");

    let wait = ctl.drover(std::iter::once("wait").chain(ids.iter().copied()));
    assert_eq!(wait.code, Some(0), "{wait:#?}");
    for (id, p) in ids.iter().zip([1, 3, 5, 7]) {
        let job = ctl.job(id);
        assert_eq!(job["state"], "succeeded", "{job:#}");
        assert_eq!(job["spec"]["name"], format!("sweep-{p}"));
        let out = format!("out-{p}");
        ctl.drover(["fetch", id, "--out", &out]).expect_ok("fetch");
        assert_eq!(
            read(&dir.join(&out).join("out.txt")),
            format!("input {p}\nparam {p}\n")
        );
    }
}

#[test]
fn a_parametric_jdl_missing_one_input_submits_nothing_and_names_the_value() {
    let dir = TestDir::new();
    for p in [1, 3, 7] {
        dir.write(&format!("in{p}.txt"), "x\n");
    }
    let jdl = dir.write("sweep.jdl", SWEEP);
    let ctl = Controller::start(&dir);
    let run = submit_file(&ctl, &jdl);
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert!(run.stderr.contains("(_PARAM_ = 5)"), "{run:#?}");
    assert!(run.stderr.contains("in5.txt"), "{run:#?}");
    assert!(run.stdout.trim().is_empty(), "{run:#?}");
    assert!(
        ctl.jobs().is_empty(),
        "nothing was allocated: {:?}",
        ctl.jobs()
    );
}

#[test]
fn a_parametric_jdl_over_the_limit_is_refused_before_anything_is_sent() {
    let dir = TestDir::new();
    let jdl = dir.write(
        "huge.jdl",
        "JobType = \"Parametric\"; Executable = \"/bin/true\"; Parameters = 100001;",
    );
    let ctl = Controller::start(&dir);
    let run = submit_file(&ctl, &jdl);
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert!(run.stderr.contains("100001 jobs"), "{run:#?}");
    assert!(run.stderr.contains("split it"), "{run:#?}");
    assert!(ctl.jobs().is_empty());
}

#[test]
fn the_batch_api_refuses_bad_batches_whole() {
    let dir = TestDir::new();
    let ctl = Controller::start(&dir);

    for count in [0, 10_001] {
        let (status, body) = http(
            &ctl.url,
            "POST",
            "/v1/batches",
            Some(json!({ "count": count })),
        );
        assert_eq!(status, 400, "{body}");
        assert!(
            body["error"].as_str().unwrap().contains("1 to 10000"),
            "{body}"
        );
    }

    let (status, body) = http(&ctl.url, "POST", "/v1/batches", Some(json!({ "count": 3 })));
    assert_eq!(status, 201, "{body}");
    let ids: Vec<String> = body["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 3);
    assert!(ctl.jobs().iter().all(|j| j["state"] == "created"));

    let plain = "Executable = \"/bin/true\";";
    // No input uploaded for any of them: 409, nothing queued.
    let entries: Vec<_> = ids
        .iter()
        .map(|id| json!({ "id": id, "jdl": plain }))
        .collect();
    refused_whole(&ctl, entries, 409, "no input archive");
    assert!(ctl.jobs().iter().all(|j| j["state"] == "created"));

    // A bad JDL is named with its job.
    let entries = vec![
        json!({ "id": ids[0], "jdl": plain }),
        json!({ "id": ids[1], "jdl": "Executable = ;" }),
    ];
    refused_whole(&ctl, entries, 400, &ids[1]);

    // A parametric JDL must be expanded by the client.
    let entries = vec![
        json!({ "id": ids[0], "jdl": "JobType = \"Parametric\"; Parameters = 2; Executable = \"/bin/true\";" }),
    ];
    refused_whole(&ctl, entries, 400, "expand");

    // The same job twice.
    let entries = vec![
        json!({ "id": ids[0], "jdl": plain }),
        json!({ "id": ids[0], "jdl": plain }),
    ];
    refused_whole(&ctl, entries, 400, "twice");

    // An input sent with the batch must be base64, and within the input limit.
    let entries = vec![json!({ "id": ids[0], "jdl": plain, "input": "not base64!" })];
    refused_whole(&ctl, entries, 400, "not base64");
    assert!(ctl.jobs().iter().all(|j| j["state"] == "created"));
    assert!(ctl.blob_keys().is_empty(), "{:?}", ctl.blob_keys());
}

/// Inputs sent with the batch (two requests for the whole batch) or with a
/// single submit: the jobs run with them; the same batch or submit sent again
/// changes nothing, not even an input.
#[test]
fn inputs_sent_with_the_batch_are_stored_once_and_run() {
    let dir = TestDir::new();
    let ctl = Controller::start(&dir);
    let (status, body) = http(&ctl.url, "POST", "/v1/batches", Some(json!({ "count": 2 })));
    assert_eq!(status, 201, "{body}");
    let ids: Vec<String> = serde_json::from_value(body["ids"].clone()).expect("ids");
    let jdl = "[ Executable = \"/bin/cat\"; Arguments = \"in.txt\"; ]";
    let archive = |text: &str| {
        common::raw_tar_gz(&[
            (b".drover/job.jdl", jdl.as_bytes()),
            (b"in.txt", text.as_bytes()),
        ])
    };
    let entry =
        |id: &str, text: &str| json!({ "id": id, "jdl": jdl, "input": base64_of(&archive(text)) });
    let batch = json!({ "jobs": [entry(&ids[0], "first\n"), entry(&ids[1], "second\n")] });
    let (status, body) = http(&ctl.url, "POST", "/v1/batches/submit", Some(batch));
    assert_eq!(status, 200, "{body}");
    let again = json!({ "jobs": [entry(&ids[0], "changed\n"), entry(&ids[1], "changed\n")] });
    let (status, body) = http(&ctl.url, "POST", "/v1/batches/submit", Some(again));
    assert_eq!(status, 200, "a batch sent again is accepted: {body}");
    // A single submit takes its input along just so.
    let (status, body) = http(&ctl.url, "POST", "/v1/jobs", None);
    assert_eq!(status, 201, "{body}");
    let single = body["id"].as_str().expect("id").to_string();
    let submit = |text: &str| {
        let req = json!({ "jdl": jdl, "input": base64_of(&archive(text)) });
        http(
            &ctl.url,
            "POST",
            &format!("/v1/jobs/{single}/submit"),
            Some(req),
        )
    };
    let (status, body) = submit("single\n");
    assert_eq!(status, 200, "{body}");
    let (status, body) = submit("changed\n");
    assert_eq!(status, 200, "a submit sent again is accepted: {body}");
    let ids: Vec<String> = ids.into_iter().chain([single]).collect();
    for (id, text) in ids.iter().zip(["first\n", "second\n", "single\n"]) {
        let job = ctl.wait_done(id, std::time::Duration::from_secs(60));
        assert_eq!(job["state"], "succeeded", "{job:#}");
        let out = ctl.drover(["logs", id]).expect_ok("logs");
        assert_eq!(out.stdout, text, "{id}");
    }
}

fn base64_of(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[test]
fn a_quiet_job_uploads_no_empty_logs_and_they_read_as_empty() {
    let dir = TestDir::new();
    let jdl = dir.write("quiet.jdl", "[ Executable = \"/bin/true\"; ]");
    let ctl = Controller::start(&dir);
    let id = ctl.submit(&jdl);
    let job = ctl.wait_done(&id, std::time::Duration::from_secs(60));
    assert_eq!(job["state"], "succeeded", "{job:#}");
    let attempt = format!("jobs/{id}/attempts/1/");
    let stored: Vec<String> = ctl
        .blob_keys()
        .into_iter()
        .filter_map(|k| k.strip_prefix(&attempt).map(str::to_string))
        .collect();
    assert!(
        !stored.iter().any(|n| n == "stdout" || n == "stderr"),
        "empty logs were stored: {stored:?}"
    );
    for stream in ["stdout", "stderr"] {
        let run = ctl
            .drover(["logs", &id, "--stream", stream])
            .expect_ok("logs");
        assert_eq!(run.stdout, "", "{run:#?}");
    }
}
