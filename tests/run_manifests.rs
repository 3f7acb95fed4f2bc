//! `drover run FILE` on every example job in manifests/jobs: an embedded
//! controller and real workers, the output unpacked into ./<job-id>/ of the
//! current folder, the job's exit code as drover's own.
//!
//! Each test runs the manifest in place with a fresh temp folder as the current
//! folder and no other flag, as a user would: the state goes to ./.drover/.

mod common;

use common::{manifests_dir, read, TestDir};
use std::path::{Path, PathBuf};

/// Runs `drover run` on a manifest; returns the run and the job's output folder
/// (the last path printed on stdout), checked to be ./<job-id>/ of the test folder.
fn run_manifest(dir: &TestDir, rel: &str) -> (common::Run, Option<PathBuf>) {
    let manifest = manifests_dir().join(rel);
    let run = dir.drover([Path::new("run"), &manifest]);
    let out = Some(PathBuf::from(run.last_line())).filter(|p| p.is_absolute());
    if let Some(out) = &out {
        assert_eq!(
            out.parent(),
            Some(dir.path()),
            "the output is not in ./<job-id>/: {run:#?}"
        );
        let id = out.file_name().and_then(|s| s.to_str()).unwrap_or("");
        assert!(
            id.starts_with('j'),
            "the output folder is not named after the job id: {run:#?}"
        );
        assert!(
            run.stderr.contains(&format!("job {id} submitted")),
            "{run:#?}"
        );
    }
    (run, out)
}

#[test]
fn hello_runs_and_brings_back_its_stdout() {
    let dir = TestDir::new();
    let (run, out) = run_manifest(&dir, "hello.jdl");
    assert_eq!(run.code, Some(0), "{run:#?}");
    let out = out.expect("an output folder");
    assert_eq!(read(&out.join("std.out")), "hello from drover\n");
    assert_eq!(read(&out.join("std.err")), "");
    assert!(run.stderr.contains("succeeded, exit code 0"), "{run:#?}");
}

#[test]
fn fail3_exits_with_code_3_and_its_streams_are_still_collected() {
    let dir = TestDir::new();
    let (run, out) = run_manifest(&dir, "fail3.jdl");
    assert_eq!(
        run.code,
        Some(3),
        "drover run exits with the job's exit code: {run:#?}"
    );
    let out = out.expect("the output of a failed job is still collected");
    assert_eq!(read(&out.join("std.out")), "about to fail\n");
    assert_eq!(read(&out.join("std.err")), "oops\n");
    assert!(run.stderr.contains("failed, exit code 3"), "{run:#?}");
}

#[test]
fn wordcount_runs_its_prologue_and_writes_the_summary() {
    let dir = TestDir::new();
    let (run, out) = run_manifest(&dir, "wordcount/wordcount.jdl");
    assert_eq!(run.code, Some(0), "{run:#?}");
    let out = out.expect("an output folder");
    // count.sh refuses to run unless the Prologue created work/prologue.txt.
    assert_eq!(
        read(&out.join("summary.txt")),
        "words.txt: 9 words\nmore words.txt: 5 words\n"
    );
    assert_eq!(
        read(&out.join("count.out")),
        "words.txt: 9 words\nmore words.txt: 5 words\ncounted by drover\n",
        "stdout has the summary and the JDL's Environment"
    );
    assert_eq!(read(&out.join("count.err")), "");
    assert!(
        !out.join("work").exists(),
        "only the OutputSandbox comes back"
    );
}

#[test]
fn analyse_in_the_seed_layout_brings_back_what_the_job_wrote() {
    let dir = TestDir::new();
    let (run, out) = run_manifest(&dir, "analyse/analyse.jdl");
    assert_eq!(run.code, Some(0), "{run:#?}");
    let out = out.expect("an output folder");
    // OutputSandbox = {result.tar.gz}: the archive holds everything the job
    // created, and fetching unpacks it: the prologue's folder with the sums.
    assert_eq!(
        read(&out.join("results").join("sums.txt")),
        "a=12\nb=15\nc=18\n"
    );
    assert!(
        !out.join("data.csv").exists(),
        "inputs the job did not create are not brought back"
    );
    assert!(
        !out.join("analyse.py").exists(),
        "inputs the job did not create are not brought back"
    );
}

#[test]
fn retry_succeeds_on_its_second_attempt() {
    let dir = TestDir::new();
    let (run, out) = run_manifest(&dir, "retry/retry.jdl");
    assert_eq!(run.code, Some(0), "{run:#?}");
    let out = out.expect("an output folder");
    assert_eq!(
        read(&out.join("std.out")),
        "attempt 2\n",
        "the output is the succeeding attempt's"
    );
}

#[test]
fn run_leaves_no_process_behind() {
    let dir = TestDir::new();
    let (run, _) = run_manifest(&dir, "hello.jdl");
    assert_eq!(run.code, Some(0), "{run:#?}");
    let left = common::worker_processes(&dir.join(".drover"));
    assert!(
        left.is_empty(),
        "workers left running after drover run: {left:?}"
    );
}
