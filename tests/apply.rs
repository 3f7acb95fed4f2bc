//! Declarative job records on a real controller: `drover apply -f FILE|DIR`,
//! `drover get`, `drover delete`, as a user runs them.

mod common;

use common::{Controller, TestDir};
use serde_json::Value;
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(30);

/// A manifest that ships `data.txt` and copies it to its output.
const COPY: &str = r#"[
  JobName = "copy";
  Executable = "/bin/cp";
  Arguments = "data.txt out.txt";
  InputSandbox = {"data.txt"};
  OutputSandbox = {"out.txt"};
]
"#;

fn sleeper(seconds: u32) -> String {
    format!("[ Executable = \"/bin/sleep\"; Arguments = \"{seconds}\"; ]\n")
}

fn record(ctl: &Controller, name: &str) -> Value {
    let run = ctl.drover(["get", name, "--json"]).expect_ok("drover get");
    run.json()[0].clone()
}

#[test]
fn an_unchanged_manifest_applied_twice_makes_one_job_and_a_changed_input_file_a_new_generation() {
    let dir = TestDir::new();
    dir.write("copy.jdl", COPY);
    dir.write("data.txt", "first\n");
    let ctl = Controller::start(&dir);

    let first = ctl.drover(["apply", "-f", "copy.jdl"]).expect_ok("apply");
    assert!(
        first
            .stdout
            .starts_with("copy: created, generation 1, job "),
        "{first:#?}"
    );
    let again = ctl
        .drover(["apply", "-f", "copy.jdl"])
        .expect_ok("apply again");
    assert!(
        again.stdout.starts_with("copy: unchanged, generation 1"),
        "{again:#?}"
    );
    assert_eq!(
        ctl.jobs().len(),
        1,
        "an unchanged manifest makes no second job"
    );

    let gen1 = record(&ctl, "copy");
    let job1 = gen1["job"].as_str().unwrap().to_string();
    assert_eq!(ctl.wait_done(&job1, WITHIN)["state"], "succeeded");

    // Only an input file changes: the hash covers its contents, so this is drift.
    dir.write("data.txt", "second\n");
    let drift = ctl.drover(["get", "-f", "."]).expect_ok("get -f");
    assert!(drift.stdout.contains("MANIFEST"), "{drift:#?}");
    assert!(drift.stdout.contains("changed ("), "{drift:#?}");

    let second = ctl
        .drover(["apply", "-f", "copy.jdl"])
        .expect_ok("apply changed");
    assert!(
        second
            .stdout
            .starts_with("copy: changed: new generation, generation 2"),
        "{second:#?}"
    );
    let gen2 = record(&ctl, "copy");
    assert_eq!(gen2["generation"], 2);
    assert_ne!(gen2["hash"], gen1["hash"]);
    assert_eq!(gen2["created_at"], gen1["created_at"]);
    let job2 = gen2["job"].as_str().unwrap().to_string();
    assert_ne!(job2, job1);
    assert_eq!(ctl.jobs().len(), 2);
    assert_eq!(ctl.wait_done(&job2, WITHIN)["state"], "succeeded");
    ctl.drover(["fetch", &job2, "--out", "out2"])
        .expect_ok("fetch");
    assert_eq!(common::read(&dir.join("out2/out.txt")), "second\n");

    let synced = ctl.drover(["get", "-f", "copy.jdl"]).expect_ok("get -f");
    assert!(synced.stdout.contains("in sync"), "{synced:#?}");
    // The same for scripts, with a manifest not applied yet.
    dir.write("later.jdl", "[ Executable = \"/bin/true\"; ]\n");
    let json = ctl
        .drover(["get", "--json", "-f", "copy.jdl", "-f", "later.jdl"])
        .expect_ok("get --json -f")
        .json();
    assert_eq!(json[0]["name"], "copy");
    assert_eq!(json[0]["manifest"], "in_sync");
    assert_eq!(json[0]["manifest_hash"], gen2["hash"]);
    assert_eq!(json[1]["name"], "later");
    assert_eq!(json[1]["manifest"], "not_applied");
}

#[test]
fn a_changed_manifest_of_a_running_job_is_refused_and_replace_cancels_and_resubmits_it() {
    let dir = TestDir::new();
    dir.write("nap.jdl", &sleeper(60));
    let ctl = Controller::start(&dir);
    ctl.drover(["apply", "-f", "nap.jdl"]).expect_ok("apply");
    let job1 = record(&ctl, "nap")["job"].as_str().unwrap().to_string();
    ctl.wait_job(&job1, WITHIN, "running", |j| j["state"] == "running");

    dir.write("nap.jdl", &sleeper(61));
    let refused = ctl.drover(["apply", "-f", "nap.jdl"]);
    assert_eq!(refused.code, Some(1), "{refused:#?}");
    assert!(refused.stderr.contains("still running"), "{refused:#?}");
    assert!(refused.stderr.contains("--replace"), "{refused:#?}");
    assert_eq!(
        record(&ctl, "nap")["generation"],
        1,
        "a refusal changes nothing"
    );
    assert_eq!(ctl.jobs().len(), 1, "and submits nothing");

    let dry = ctl.drover(["apply", "-f", "nap.jdl", "--replace", "--dry-run"]);
    assert!(
        dry.stdout.contains("would be changed: replaced"),
        "{dry:#?}"
    );
    assert_eq!(ctl.jobs().len(), 1, "a dry run submits nothing");

    let replaced = ctl
        .drover(["apply", "-f", "nap.jdl", "--replace"])
        .expect_ok("apply --replace");
    assert!(
        replaced.stdout.contains(&format!("job {job1} cancelled")),
        "{replaced:#?}"
    );
    assert_eq!(ctl.wait_done(&job1, WITHIN)["state"], "cancelled");
    let gen2 = record(&ctl, "nap");
    assert_eq!(gen2["generation"], 2);
    let job2 = gen2["job"].as_str().unwrap().to_string();
    ctl.wait_job(&job2, WITHIN, "running", |j| j["state"] == "running");

    let deleted = ctl.drover(["delete", "nap"]).expect_ok("delete");
    assert!(
        deleted
            .stdout
            .contains(&format!("its job {job2} was cancelled")),
        "{deleted:#?}"
    );
    assert_eq!(ctl.wait_done(&job2, WITHIN)["state"], "cancelled");
    let gone = ctl.drover(["get", "nap"]);
    assert_eq!(gone.code, Some(2), "{gone:#?}");
    assert!(gone.stderr.contains("no job record `nap`"), "{gone:#?}");
    let none = ctl.drover(["get"]).expect_ok("get");
    assert!(none.stdout.contains("no job records"), "{none:#?}");
    // Applied again after a delete, it starts over at generation 1.
    ctl.drover(["apply", "-f", "nap.jdl"]).expect_ok("apply");
    assert_eq!(record(&ctl, "nap")["generation"], 1);
}

#[test]
fn a_folder_applies_each_manifest_named_by_jobname_or_file_stem() {
    let dir = TestDir::new();
    dir.write("jobs/alpha.jdl", "[ Executable = \"/bin/true\"; ]\n");
    dir.write(
        "jobs/b.jdl",
        "[ JobName = \"bee\"; Executable = \"/bin/true\"; ]\n",
    );
    dir.write("jobs/notes.txt", "not a manifest\n");
    let ctl = Controller::start(&dir);
    let run = ctl
        .drover(["apply", "-f", "jobs"])
        .expect_ok("apply a folder");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{run:#?}");
    assert!(lines[0].starts_with("alpha: created"), "{run:#?}");
    assert!(lines[1].starts_with("bee: created"), "{run:#?}");
    let table = ctl.drover(["get"]).expect_ok("get");
    let names: Vec<&str> = table
        .stdout
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(names, ["alpha", "bee"], "{table:#?}");
    // A manifest without JobName gives its job the record's name.
    let mut job_names: Vec<String> = ctl
        .jobs()
        .iter()
        .map(|j| j["spec"]["name"].as_str().unwrap_or("").to_string())
        .collect();
    job_names.sort();
    assert_eq!(job_names, ["alpha", "bee"]);
}

#[test]
fn get_lists_more_records_than_it_reads_at_once_each_with_its_own_jobs_exit_code() {
    // More than the controller reads at once (16), each exiting with its own code,
    // so a record shown with another's job would show the wrong code.
    let dir = TestDir::new();
    let count = 20;
    for i in 0..count {
        dir.write(
            &format!("many/r{i:02}.jdl"),
            &format!(
                "[ Executable = \"/bin/sh\"; Arguments = \"-c 'exit {}'\"; RetryCount = 0; \
                 ShallowRetryCount = 0; ]\n",
                i % 5
            ),
        );
    }
    let ctl = Controller::start(&dir);
    ctl.drover(["apply", "-f", "many"]).expect_ok("apply");
    let listed = ctl.drover(["get", "--json"]).expect_ok("get").json();
    let records = listed.as_array().expect("a list");
    assert_eq!(records.len(), count, "{listed:#}");
    for r in records {
        ctl.wait_done(r["job"].as_str().unwrap(), WITHIN);
    }
    let listed = ctl.drover(["get", "--json"]).expect_ok("get").json();
    for (i, r) in listed.as_array().unwrap().iter().enumerate() {
        assert_eq!(r["name"], format!("r{i:02}"), "in name order: {listed:#}");
        assert_eq!(r["exit_code"], i % 5, "{r:#}");
        let want = if i % 5 == 0 { "succeeded" } else { "failed" };
        assert_eq!(r["state"], want, "{r:#}");
    }
}

#[test]
fn bad_manifests_are_refused_before_anything_is_sent() {
    // No controller at all: these are caught on the client.
    let dir = TestDir::new();
    dir.write(
        "spaced.jdl",
        "[ JobName = \"two words\"; Executable = \"/bin/true\"; ]\n",
    );
    let run = dir.drover(["apply", "-f", "spaced.jdl"]);
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert!(
        run.stderr
            .contains("spaced.jdl: `two words` cannot name a job record"),
        "{run:#?}"
    );

    dir.write(
        "twins/a.jdl",
        "[ JobName = \"same\"; Executable = \"/bin/true\"; ]\n",
    );
    dir.write(
        "twins/b.jdl",
        "[ JobName = \"same\"; Executable = \"/bin/true\"; ]\n",
    );
    let run = dir.drover(["apply", "-f", "twins"]);
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert!(
        run.stderr.contains("both name the job record `same`"),
        "{run:#?}"
    );

    std::fs::create_dir_all(dir.join("empty")).unwrap();
    let run = dir.drover(["apply", "-f", "empty"]);
    assert!(
        run.stderr.contains("no manifests (*.jdl files)"),
        "{run:#?}"
    );
}

#[test]
fn the_record_api_refuses_bad_names_and_hashes_with_what_is_wrong() {
    let dir = TestDir::new();
    let ctl = Controller::start(&dir);
    let good = format!("sha256:{}", "0".repeat(64));

    let (status, body) = common::http(
        &ctl.url,
        "POST",
        "/v1/records/render/plan",
        Some(serde_json::json!({ "hash": "md5:abc" })),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("is not a manifest hash"),
        "{body}"
    );

    let (status, body) = common::http(
        &ctl.url,
        "POST",
        "/v1/records/.hidden/plan",
        Some(serde_json::json!({ "hash": good })),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("cannot name a job record"),
        "{body}"
    );

    // A plan changes nothing: a new name would be created, and still is not.
    let (status, body) = common::http(
        &ctl.url,
        "POST",
        "/v1/records/render/plan",
        Some(serde_json::json!({ "hash": good })),
    );
    assert_eq!(
        (status, body["outcome"].as_str()),
        (200, Some("created")),
        "{body}"
    );
    let (status, body) = common::http(&ctl.url, "GET", "/v1/records/render", None);
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("drover apply -f FILE"),
        "{body}"
    );

    // An apply naming a job that was never allocated submits nothing.
    let (status, body) = common::http(
        &ctl.url,
        "PUT",
        "/v1/records/render",
        Some(
            serde_json::json!({ "hash": good, "job": "jnothere", "jdl": "[ Executable = \"/bin/true\"; ]" }),
        ),
    );
    assert_eq!(status, 409, "{body}");
    let (status, _) = common::http(&ctl.url, "GET", "/v1/records/render", None);
    assert_eq!(
        status, 404,
        "no record for a job that could not be submitted"
    );
}
