//! Tests of one attempt, with real `/bin/sh` scripts in a temp sandbox.

use super::*;
use std::path::Path;
use std::time::Instant as StdInstant;

struct Fx {
    _tmp: tempfile::TempDir,
    paths: AttemptPaths,
    limits: AttemptLimits,
}

impl Fx {
    fn new() -> Fx {
        let tmp = tempfile::tempdir().expect("tmp");
        let paths = AttemptPaths {
            root: tmp.path().join("attempt"),
        };
        fs::create_dir_all(paths.sandbox()).expect("sandbox");
        let limits = AttemptLimits {
            max_output_bytes: 1 << 20,
            kill_grace: Duration::from_millis(300),
            max_sandbox_bytes: None,
        };
        Fx {
            _tmp: tmp,
            paths,
            limits,
        }
    }

    /// Writes a shell script into the sandbox without the executable bit, as an
    /// unpacked upload may arrive.
    fn script(&self, name: &str, body: &str) {
        self.file(name, &format!("#!/bin/sh\n{body}\n"));
    }

    fn file(&self, name: &str, text: &str) {
        let path = self.paths.sandbox().join(name);
        fs::write(&path, text).expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
    }

    fn read(&self, path: impl AsRef<Path>) -> String {
        fs::read_to_string(self.paths.root.join(path)).unwrap_or_default()
    }

    async fn run(&self, job: &JobDescription) -> AttemptResult {
        self.run_with(job, CancellationToken::new()).await
    }

    async fn run_with(&self, job: &JobDescription, cancel: CancellationToken) -> AttemptResult {
        run_job(&self.paths, job, &env(), &self.limits, cancel).await
    }
}

fn env() -> JobEnv {
    JobEnv {
        base: vec![
            ("PATH".into(), "/usr/bin:/bin".into()),
            ("DROVER_TOKEN".into(), "worker-secret".into()),
        ],
        extras: vec![
            ("DROVER_JOB_ID".into(), "j1".into()),
            ("DROVER_ATTEMPT".into(), "2".into()),
        ],
    }
}

fn job(executable: &str) -> JobDescription {
    JobDescription {
        executable: Some(executable.into()),
        ..JobDescription::default()
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The archive's entry names, sorted.
/// What a stream or log held.
fn text(s: &Spilled) -> String {
    String::from_utf8(s.read().expect("readable")).expect("UTF-8")
}

/// A job's stdout past what memory keeps goes to `root/stdout`, whole.
#[tokio::test]
async fn a_loud_jobs_stdout_goes_to_a_file_whole() {
    let fx = Fx::new();
    fx.script("run.sh", "head -c 300000 /dev/zero; echo done >&2");
    let r = fx.run(&job("run.sh")).await;
    assert_eq!(r.outcome, AttemptOutcome::Succeeded);
    assert_eq!(r.stdout, Spilled::File(fx.paths.stdout()));
    assert_eq!(r.stdout.read().expect("stdout").len(), 300_000);
    assert_eq!(text(&r.stderr), "done\n");
}

/// worker.log as the attempt left it.
fn log(r: &AttemptResult) -> String {
    String::from_utf8(r.worker_log.read().expect("worker.log")).expect("UTF-8")
}

fn listing(archive: &Spilled) -> Vec<String> {
    let data = archive.read().expect("archive");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&data[..]));
    let mut names: Vec<String> = archive
        .entries()
        .expect("entries")
        .map(|e| {
            e.expect("entry")
                .path()
                .expect("path")
                .display()
                .to_string()
        })
        .collect();
    names.sort();
    names
}

fn still_running(pid: &str) -> bool {
    let stat = format!("/proc/{}/stat", pid.trim());
    for _ in 0..100 {
        match fs::read_to_string(&stat) {
            Err(_) => return false,
            Ok(s)
                if s.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z')) =>
            {
                return false
            }
            Ok(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    true
}

#[tokio::test]
async fn a_quiet_jobs_streams_are_captured_without_a_file() {
    let fx = Fx::new();
    fx.script("run.sh", "echo out; echo err >&2");
    let r = fx.run(&job("run.sh")).await;
    assert_eq!(
        (r.outcome, r.exit_code, r.reason.as_deref()),
        (AttemptOutcome::Succeeded, Some(0), None)
    );
    assert_eq!(
        (r.stdout.clone(), r.stderr.clone()),
        (
            Spilled::Memory(b"out\n".to_vec()),
            Spilled::Memory(b"err\n".to_vec())
        )
    );
    assert!(!fx.paths.stdout().exists() && !fx.paths.stderr().exists());
    assert_eq!(r.output_archive, None, "no OutputSandbox, no archive");
    assert!(log(&r).contains("drover: attempt succeeded"), "{}", log(&r));
}

#[tokio::test]
async fn arguments_are_split_like_a_shell_but_never_run_through_one() {
    let fx = Fx::new();
    fx.script("run.sh", r#"printf '%s|' "$@""#);
    let mut j = job("run.sh");
    j.arguments = Some(r#"-n 'two words' "a \"b\"" $HOME ;ls *"#.into());
    let r = fx.run(&j).await;
    assert_eq!(r.outcome, AttemptOutcome::Succeeded);
    assert_eq!(text(&r.stdout), r#"-n|two words|a "b"|$HOME|;ls|*|"#);
}

#[tokio::test]
async fn arguments_that_cannot_be_split_fail_before_anything_runs() {
    let fx = Fx::new();
    fx.script("setup.sh", "touch ran");
    fx.script("run.sh", "true");
    let mut j = job("run.sh");
    j.prologue = strings(&["setup.sh"]);
    j.arguments = Some("\"unclosed".into());
    let r = fx.run(&j).await;
    assert_eq!(r.outcome, AttemptOutcome::FailedBeforeRun);
    assert_eq!(
        r.reason.as_deref(),
        Some("Arguments `\"unclosed` cannot be split into words: missing closing quote")
    );
    assert!(!fx.paths.sandbox().join("ran").exists());
}

#[tokio::test]
async fn a_non_zero_exit_fails_the_attempt_with_its_code() {
    let fx = Fx::new();
    fx.script("run.sh", "exit 3");
    let r = fx.run(&job("run.sh")).await;
    assert_eq!(
        (r.outcome, r.exit_code, r.reason.as_deref()),
        (AttemptOutcome::Failed, Some(3), Some("exit code 3"))
    );
}

#[tokio::test]
async fn a_job_killed_by_a_signal_reports_the_signal() {
    let fx = Fx::new();
    fx.script("run.sh", "kill -9 $$");
    let r = fx.run(&job("run.sh")).await;
    assert_eq!(r.outcome, AttemptOutcome::Failed);
    assert_eq!(
        (r.exit_code, r.reason.as_deref()),
        (Some(137), Some("killed by signal 9 (SIGKILL)"))
    );
}

#[tokio::test]
async fn prologues_run_in_order_in_the_sandbox_and_log_to_worker_log() {
    let fx = Fx::new();
    fx.script("one.sh", "echo one >> order; echo preparing");
    fx.script("two.sh", "echo two >> order; echo \"$DROVER_JOB_ID\" >&2");
    fx.script("run.sh", "cat order");
    let mut j = job("run.sh");
    j.prologue = strings(&["one.sh", "two.sh"]);
    let r = fx.run(&j).await;
    assert_eq!(r.outcome, AttemptOutcome::Succeeded);
    assert_eq!(text(&r.stdout), "one\ntwo\n");
    let log = log(&r);
    assert!(
        log.contains("drover: prologue `one.sh` (1 of 2) starting\npreparing\n"),
        "{log}"
    );
    assert!(
        log.contains("drover: prologue `two.sh` (2 of 2) starting\nj1\n"),
        "{log}"
    );
}

#[tokio::test]
async fn prologue_arguments_go_to_a_single_prologue() {
    let fx = Fx::new();
    fx.script("setup.sh", r#"printf '%s|' "$@" > args"#);
    fx.script("run.sh", "cat args");
    let mut j = job("run.sh");
    j.prologue = strings(&["setup.sh"]);
    j.prologue_arguments = Some("--fast 'a b'".into());
    let r = fx.run(&j).await;
    assert_eq!(text(&r.stdout), "--fast|a b|");
}

#[tokio::test]
async fn prologue_failure_fails_before_the_executable_runs() {
    let fx = Fx::new();
    fx.script("ok.sh", "echo fine");
    fx.script("bad.sh", "echo broken >&2; exit 1");
    fx.script("run.sh", "touch ran");
    let mut j = job("run.sh");
    j.prologue = strings(&["ok.sh", "bad.sh"]);
    let r = fx.run(&j).await;
    assert_eq!(r.outcome, AttemptOutcome::FailedBeforeRun);
    assert_eq!(
        (r.exit_code, r.reason.as_deref()),
        (None, Some("prologue `bad.sh` exited with code 1"))
    );
    assert!(!fx.paths.sandbox().join("ran").exists());
    assert!(log(&r).contains("broken\n"));
}

#[tokio::test]
async fn an_absolute_prologue_is_taken_from_the_worker() {
    let fx = Fx::new();
    fx.script("run.sh", "true");
    let mut j = job("run.sh");
    j.prologue = strings(&["/bin/false"]);
    let r = fx.run(&j).await;
    assert_eq!(
        r.reason.as_deref(),
        Some("prologue `/bin/false` exited with code 1")
    );
    j.prologue = strings(&["/no/such/setup"]);
    let r = fx.run(&j).await;
    assert_eq!(r.outcome, AttemptOutcome::FailedBeforeRun);
    assert_eq!(
        r.reason.as_deref(),
        Some("prologue `/no/such/setup` not found on worker")
    );
}

#[tokio::test]
async fn a_missing_executable_fails_before_run_with_a_hint() {
    let fx = Fx::new();
    let r = fx.run(&job("run.sh")).await;
    assert_eq!(r.outcome, AttemptOutcome::FailedBeforeRun);
    assert_eq!(
        r.reason.as_deref(),
        Some("Executable `run.sh` is not in the sandbox (ship it next to the JDL or in InputSandbox)")
    );
    let r = fx.run(&job("/x/y")).await;
    assert_eq!(
        r.reason.as_deref(),
        Some("Executable `/x/y` not found on worker")
    );
}

#[tokio::test]
async fn an_absolute_executable_runs_from_the_worker() {
    let fx = Fx::new();
    let mut j = job("/bin/echo");
    j.arguments = Some("hello".into());
    let r = fx.run(&j).await;
    assert_eq!(
        (r.outcome, text(&r.stdout)),
        (AttemptOutcome::Succeeded, "hello\n".into())
    );
}

#[tokio::test]
async fn an_executable_without_a_shebang_runs_under_sh() {
    let fx = Fx::new();
    fx.file("run.sh", "echo no shebang\n");
    let r = fx.run(&job("run.sh")).await;
    assert_eq!(
        (r.outcome, text(&r.stdout)),
        (AttemptOutcome::Succeeded, "no shebang\n".into())
    );
}

#[tokio::test]
async fn std_input_output_and_error_follow_the_jdl() {
    let fx = Fx::new();
    fx.file("in.txt", "fed\n");
    fx.script("run.sh", "cat; echo oops >&2");
    let mut j = job("run.sh");
    j.std_input = Some("in.txt".into());
    j.std_output = Some("logs/std.out".into());
    j.std_error = Some("std.err".into());
    let r = fx.run(&j).await;
    assert_eq!(r.outcome, AttemptOutcome::Succeeded);
    assert_eq!(
        r.stdout,
        Spilled::File(fx.paths.sandbox().join("logs/std.out"))
    );
    assert_eq!(fx.read("sandbox/logs/std.out"), "fed\n");
    assert_eq!(fx.read("sandbox/std.err"), "oops\n");

    j.std_error = Some("logs/std.out".into());
    fs::remove_file(fx.paths.sandbox().join("logs/std.out")).expect("rm");
    fx.run(&j).await;
    assert_eq!(
        fx.read("sandbox/logs/std.out"),
        "fed\noops\n",
        "one name, one file with both streams"
    );
}

#[tokio::test]
async fn a_missing_std_input_fails_before_run() {
    let fx = Fx::new();
    fx.script("run.sh", "cat");
    let mut j = job("run.sh");
    j.std_input = Some("in.txt".into());
    let r = fx.run(&j).await;
    assert_eq!(r.outcome, AttemptOutcome::FailedBeforeRun);
    assert_eq!(
        r.reason.as_deref(),
        Some("StdInput `in.txt` is not in the sandbox")
    );
}

#[tokio::test]
async fn unsafe_sandbox_names_are_refused_before_anything_runs() {
    let fx = Fx::new();
    fx.script("setup.sh", "touch ran");
    fx.script("run.sh", "true");
    let mut j = job("run.sh");
    j.prologue = strings(&["setup.sh"]);
    j.std_output = Some("../escape".into());
    let r = fx.run(&j).await;
    assert_eq!(r.outcome, AttemptOutcome::FailedBeforeRun);
    assert_eq!(
        r.reason.as_deref(),
        Some("StdOutput `../escape` is not a name inside the sandbox (relative, without `..`)")
    );
    assert!(!fx.paths.sandbox().join("ran").exists());
    assert!(!fx.paths.root.join("escape").exists());
    let r = fx.run(&job("../run.sh")).await;
    assert!(r
        .reason
        .is_some_and(|r| r.starts_with("Executable `../run.sh` is not a name")));
}

#[tokio::test]
async fn max_wall_time_kills_the_whole_process_group() {
    let fx = Fx::new();
    fx.script("run.sh", "sleep 100 & echo $! > grandchild; sleep 100");
    let mut j = job("run.sh");
    j.max_wall_time = Some(1);
    let start = StdInstant::now();
    let r = fx.run(&j).await;
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(r.outcome, AttemptOutcome::Failed);
    assert_eq!(
        (r.exit_code, r.reason.as_deref()),
        (Some(143), Some("exceeded MaxWallTime of 1s"))
    );
    assert!(!still_running(&fx.read("sandbox/grandchild")));
}

#[tokio::test]
async fn cancelling_an_attempt_stops_the_job_and_reports_cancelled() {
    let fx = Fx::new();
    fx.script("run.sh", "sleep 100 & echo $! > grandchild; sleep 100");
    fx.script("post.sh", "touch epilogue-ran");
    let mut j = job("run.sh");
    j.epilogue = Some("post.sh".into());
    j.output_sandbox = strings(&["grandchild"]);
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        trigger.cancel();
    });
    let r = fx.run_with(&j, cancel).await;
    assert_eq!(r.outcome, AttemptOutcome::Cancelled);
    assert_eq!(
        r.reason.as_deref(),
        Some("cancelled while the Executable ran")
    );
    assert!(!still_running(&fx.read("sandbox/grandchild")));
    assert!(
        !fx.paths.sandbox().join("epilogue-ran").exists(),
        "no Epilogue after a cancel"
    );
    assert!(r.output_archive.is_some(), "the output is still collected");
}

#[tokio::test]
async fn the_epilogue_runs_after_a_failure_and_its_own_failure_fails_a_success() {
    let fx = Fx::new();
    fx.script("run.sh", "exit ${CODE:-0}");
    fx.script("post.sh", r#"echo "$@" > epilogue-args; exit ${POST:-0}"#);
    let mut j = job("run.sh");
    j.epilogue = Some("post.sh".into());
    j.epilogue_arguments = Some("--clean up".into());
    j.environment = vec![("CODE".into(), "2".into())];
    let r = fx.run(&j).await;
    assert_eq!(
        (r.outcome, r.reason.as_deref()),
        (AttemptOutcome::Failed, Some("exit code 2"))
    );
    assert_eq!(fx.read("sandbox/epilogue-args"), "--clean up\n");

    j.environment = vec![("POST".into(), "4".into())];
    let r = fx.run(&j).await;
    assert_eq!(r.outcome, AttemptOutcome::Failed);
    assert_eq!(
        (r.exit_code, r.reason.as_deref()),
        (Some(0), Some("epilogue `post.sh` exited with code 4"))
    );
}

#[tokio::test]
async fn the_job_sees_its_environment_without_the_workers_secrets() {
    let fx = Fx::new();
    fx.script("run.sh", "env | grep -E '^(DROVER_|FOO=)' | sort");
    let mut j = job("run.sh");
    j.environment = vec![
        ("FOO".into(), "bar".into()),
        ("DROVER_TOKEN".into(), "stolen?".into()),
        ("DROVER_JOB_ID".into(), "evil".into()),
    ];
    let r = fx.run(&j).await;
    assert_eq!(r.outcome, AttemptOutcome::Succeeded);
    assert_eq!(
        text(&r.stdout),
        "DROVER_ATTEMPT=2\nDROVER_JOB_ID=j1\nFOO=bar\n"
    );
    let log = log(&r);
    assert!(
        log.contains("Environment: `DROVER_TOKEN` is reserved for the worker, ignored"),
        "{log}"
    );
    assert!(
        log.contains("Environment: `DROVER_JOB_ID` is reserved for the worker, ignored"),
        "{log}"
    );
}

#[tokio::test]
async fn output_is_collected_even_after_a_failure() {
    let fx = Fx::new();
    fx.script("run.sh", "echo partial > out.txt; exit 1");
    let mut j = job("run.sh");
    j.output_sandbox = strings(&["out.txt", "missing.dat"]);
    let r = fx.run(&j).await;
    assert_eq!(r.outcome, AttemptOutcome::Failed);
    let archive = r.output_archive.clone().expect("an archive");
    assert!(
        matches!(archive, Spilled::Memory(_)),
        "a small archive stays in memory"
    );
    assert_eq!(listing(&archive), ["out.txt"]);
    assert!(log(&r).contains("OutputSandbox: `missing.dat` not found"));
}

#[tokio::test]
async fn output_is_collected_after_a_failure_before_run() {
    let fx = Fx::new();
    fx.file("input.txt", "shipped");
    let mut j = job("absent.sh");
    j.output_sandbox = strings(&["input.txt"]);
    let r = fx.run(&j).await;
    assert_eq!(r.outcome, AttemptOutcome::FailedBeforeRun);
    assert_eq!(
        listing(&r.output_archive.expect("an archive")),
        ["input.txt"]
    );
}

#[tokio::test]
async fn the_archive_form_collects_what_the_prologue_and_the_job_created() {
    let fx = Fx::new();
    fx.file("data.csv", "1,2\n");
    fx.script("setup.sh", "echo prepared > prep.txt");
    fx.script("run.sh", "mkdir res; cp data.csv res/copy.csv; echo done");
    let mut j = job("run.sh");
    j.prologue = strings(&["setup.sh"]);
    j.std_output = Some("std.out".into());
    j.output_sandbox = strings(&["result.tar.gz"]);
    let r = fx.run(&j).await;
    assert_eq!(r.outcome, AttemptOutcome::Succeeded);
    assert_eq!(r.output_archive_name.as_deref(), Some("result.tar.gz"));
    let archive = r.output_archive.expect("an archive");
    assert_eq!(
        listing(&archive),
        ["prep.txt", "res", "res/copy.csv", "std.out"]
    );
}

#[tokio::test]
async fn an_output_archive_over_the_limit_fails_the_attempt() {
    let mut fx = Fx::new();
    fx.limits.max_output_bytes = 1000;
    fx.script("run.sh", "head -c 20000 /dev/urandom > big.bin");
    let mut j = job("run.sh");
    j.output_sandbox = strings(&["big.bin"]);
    let r = fx.run(&j).await;
    assert_eq!((r.outcome, r.exit_code), (AttemptOutcome::Failed, Some(0)));
    let reason = r.reason.expect("a reason");
    assert!(
        reason.starts_with("output archive is ")
            && reason.ends_with(" bytes, over the limit of 1000"),
        "{reason}"
    );
    assert_eq!(r.output_archive, None);
    assert!(!fx.paths.output_archive().exists());
}

#[tokio::test]
async fn a_full_disk_while_packing_is_a_clear_failure() {
    let fx = Fx::new();
    std::os::unix::fs::symlink("/dev/full", fx.paths.output_archive()).expect("link");
    // Random bytes do not compress: the archive outgrows memory and goes to disk.
    fx.script("run.sh", "head -c 200000 /dev/urandom > out.txt");
    let mut j = job("run.sh");
    j.output_sandbox = strings(&["out.txt"]);
    let r = fx.run(&j).await;
    assert_eq!(r.outcome, AttemptOutcome::Failed);
    assert_eq!(
        r.reason.as_deref(),
        Some("no space left on device while writing the output archive")
    );
    assert_eq!(r.output_archive, None);
}

#[tokio::test]
async fn a_missing_sandbox_fails_before_run() {
    let fx = Fx::new();
    fs::remove_dir(fx.paths.sandbox()).expect("rm");
    let mut j = job("run.sh");
    j.output_sandbox = strings(&["x"]);
    let r = fx.run(&j).await;
    assert_eq!(r.outcome, AttemptOutcome::FailedBeforeRun);
    assert!(r.reason.is_some_and(|r| r.contains("is missing")));
    assert_eq!(r.output_archive, None);
}

#[tokio::test]
async fn failed_before_run_writes_the_reason_to_worker_log() {
    let fx = Fx::new();
    let r = failed_before_run(&fx.paths, "downloading the input archive: timeout".into()).await;
    assert_eq!(r.outcome, AttemptOutcome::FailedBeforeRun);
    assert!(log(&r).contains("downloading the input archive: timeout"));
}

#[test]
fn reserved_and_invalid_environment_entries_are_noted_and_dropped() {
    let mut notes = Vec::new();
    let jdl = vec![
        ("A=B".to_string(), "x".to_string()),
        ("PATH".to_string(), "/opt/bin".to_string()),
    ];
    let vars = env().environment(&jdl, &mut notes);
    assert_eq!(
        notes,
        ["Environment: `A=B` is not a valid variable, ignored"]
    );
    let get = |k: &str| {
        vars.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        get("PATH"),
        Some("/opt/bin".into()),
        "the JDL may override the worker's own variables"
    );
    assert_eq!(get("DROVER_TOKEN"), None);
}
