//! The CLI as people use it: the jobs table, status with attempts and timings,
//! waiting on many jobs, help with examples, shell completions, JSON logs.

mod common;

use common::{manifests_dir, Controller, TestDir};
use std::time::Duration;

#[test]
fn jobs_is_a_table_status_shows_attempts_and_timings_and_wait_takes_many_jobs() {
    let dir = TestDir::new();
    let ctl = Controller::start(&dir);
    let hello = manifests_dir().join("hello.jdl");
    let ids = [ctl.submit(&hello), ctl.submit(&hello)];

    let wait = ctl.drover(["wait", &ids[0], &ids[1]]).expect_ok("wait");
    assert_eq!(wait.stdout.lines().count(), 2, "{wait:#?}");
    // stderr is not a terminal here: no progress bar drawn into it.
    assert_eq!(wait.stderr, "", "{wait:#?}");

    let table = ctl.drover(["jobs"]).expect_ok("jobs");
    let lines: Vec<&str> = table.stdout.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        ["ID", "STATE", "EXIT", "TRIES", "WORKER", "CREATED", "RAN", "NAME"],
        "{table:#?}"
    );
    assert_eq!(lines.len(), 3, "{table:#?}");
    for id in &ids {
        let row = lines.iter().find(|l| l.starts_with(id.as_str())).unwrap();
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(&cells[1..4], ["succeeded", "0", "1"], "{row}");
        assert_eq!(cells.last(), Some(&"hello"), "{row}");
        // Columns line up under their headers.
        assert_eq!(row.find("succeeded"), lines[0].find("STATE"), "{table:#?}");
    }
    let json = ctl
        .drover(["jobs", "--json"])
        .expect_ok("jobs --json")
        .json();
    assert_eq!(json.as_array().map(Vec::len), Some(2));

    let status = ctl.drover(["status", &ids[0]]).expect_ok("status");
    for field in [
        "state:     succeeded",
        "queued:",
        "(waited ",
        "took:",
        "attempts:",
        "WORKER",
        "OUTCOME",
    ] {
        assert!(status.stdout.contains(field), "no {field:?} in {status:#?}");
    }
    let worker = ctl.job(&ids[0])["attempts"][0]["worker"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(status.stdout.contains(&worker), "{status:#?}");
}

#[test]
fn status_of_a_failed_job_gives_the_reason_and_the_exit_code() {
    let dir = TestDir::new();
    let ctl = Controller::start(&dir);
    let id = ctl.submit(&manifests_dir().join("fail3.jdl"));
    ctl.wait_done(&id, Duration::from_secs(30));
    let status = ctl.drover(["status", &id]).expect_ok("status");
    assert!(status.stdout.contains("state:     failed"), "{status:#?}");
    assert!(status.stdout.contains("exit code: 3"), "{status:#?}");
    assert!(status.stdout.contains("reason:"), "{status:#?}");
}

#[test]
fn help_shows_examples_for_the_commands_people_type() {
    let dir = TestDir::new();
    for command in [
        "submit", "status", "jobs", "wait", "fetch", "apply", "get", "delete",
    ] {
        let run = dir.drover([command, "--help"]).expect_ok("--help");
        assert!(
            run.stdout.contains("Example"),
            "`drover {command} --help`: {run:#?}"
        );
        assert!(
            run.stdout.contains(&format!("drover {command}")),
            "{run:#?}"
        );
    }
    let top = dir.drover(["--help"]).expect_ok("--help");
    assert!(top.stdout.contains("drover apply -f"), "{top:#?}");
}

#[test]
fn completions_are_scripts_each_shell_reads() {
    let dir = TestDir::new();
    let bash = dir.drover(["completions", "bash"]).expect_ok("bash");
    let script = dir.join("drover.bash");
    std::fs::write(&script, &bash.stdout).unwrap();
    // bash itself parses it, then loads it and the function is defined.
    let check = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -e; source {}; declare -F _drover",
            script.display()
        ))
        .output()
        .expect("running bash");
    assert!(check.status.success(), "{check:?}");
    for sub in ["apply", "get", "delete", "completions"] {
        assert!(bash.stdout.contains(sub), "bash completion lacks {sub}");
    }

    let zsh = dir.drover(["completions", "zsh"]).expect_ok("zsh");
    assert!(
        zsh.stdout.starts_with("#compdef drover"),
        "{}",
        &zsh.stdout[..80]
    );
    let fish = dir.drover(["completions", "fish"]).expect_ok("fish");
    assert!(
        fish.stdout
            .contains("complete -c drover -n \"__fish_drover_needs_command\" -f -a \"apply\""),
        "{}",
        fish.stdout
    );
    let bad = dir.drover(["completions", "tcsh"]);
    assert_eq!(bad.code, Some(2), "{bad:#?}");
    assert!(bad.stderr.contains("possible values"), "{bad:#?}");
}

#[test]
fn log_format_json_writes_one_json_object_a_line() {
    let dir = TestDir::new();
    let hello = manifests_dir().join("hello.jdl");
    let run = dir
        .drover(["--log-format", "json", "-v", "run", hello.to_str().unwrap()])
        .expect_ok("drover run");
    let logs: Vec<serde_json::Value> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(!logs.is_empty(), "no JSON log lines: {run:#?}");
    for log in &logs {
        assert!(
            log["level"].is_string() && log["fields"].is_object(),
            "{log}"
        );
    }
    // Human by default: the same run logs no JSON.
    let human = dir
        .drover(["-v", "run", hello.to_str().unwrap()])
        .expect_ok("drover run");
    assert!(human.stderr.contains(" INFO "), "{human:#?}");
    assert!(
        !human.stderr.lines().any(|l| l.starts_with('{')),
        "{human:#?}"
    );

    let bad = dir.drover(["--log-format", "xml", "jobs"]);
    assert_eq!(bad.code, Some(2), "{bad:#?}");
    assert!(
        bad.stderr.contains("[possible values: human, json]"),
        "{bad:#?}"
    );
}

#[test]
fn errors_say_what_to_do() {
    let dir = TestDir::new();
    let run = dir.drover(["status", "not/an/id"]);
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert!(run.stderr.contains("ids look like"), "{run:#?}");
    let run = dir.drover(["get", "--controller", "http://127.0.0.1:9"]);
    assert!(
        run.stderr.contains("Start one with `drover controller`"),
        "{run:#?}"
    );
}

/// A presigned upload that S3 (moto) refuses is reported as S3's answer, with its
/// code and message, never as the controller's.
#[cfg(feature = "aws")]
#[test]
fn a_presigned_upload_s3_refuses_says_s3_answered_with_its_code_and_message() {
    let moto = common::moto::Moto::start();
    let url = format!("{}/no-such-bucket/in/jobs/j-1/input.tar.gz", moto.url);
    let client = drover::client::Client::new("127.0.0.1:9");
    let err = common::block_on(client.upload_presigned_body(&url, "archive".into(), 7))
        .expect_err("the bucket does not exist");
    let text = err.to_string();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(404), "{text}");
    assert!(
        text.starts_with("S3 answered 404 Not Found: NoSuchBucket: "),
        "{text}"
    );
    assert!(!text.contains("controller"), "{text}");
}
