use super::*;
use std::ffi::OsString;
use std::fs::File;
use std::path::Path;
use std::time::Duration;

struct Streams {
    stdin: OwnedFd,
    out: OwnedFd,
}

fn streams(dir: &Path) -> Streams {
    Streams {
        stdin: File::open("/dev/null").expect("null").into(),
        out: File::create(dir.join("out")).expect("out").into(),
    }
}

fn launch<'a>(streams: &'a Streams, args: &'a [String], cwd: &'a Path) -> Launch<'a> {
    static ENV: std::sync::OnceLock<Vec<(OsString, OsString)>> = std::sync::OnceLock::new();
    let env = ENV.get_or_init(|| vec![("PATH".into(), "/usr/bin:/bin".into())]);
    Launch {
        program: OsStr::new("/bin/sh"),
        args,
        cwd: cwd.as_os_str(),
        env,
        stdin: &streams.stdin,
        stdout: &streams.out,
        stderr: &streams.out,
        max_file_bytes: None,
    }
}

fn sh(script: &str) -> Vec<String> {
    vec!["-c".into(), script.into()]
}

/// A signal-set line (`SigIgn:` ...) of a /proc status, as a bit set.
fn signal_set(status: &str, key: &str) -> u64 {
    let line = status
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("no {key} in {status}"));
    let hex = line.split_whitespace().nth(1).expect("a value");
    u64::from_str_radix(hex, 16).expect("hex")
}

#[tokio::test]
async fn the_child_starts_with_no_blocked_or_caught_signal_and_sigpipe_at_default() {
    // The test binary ignores SIGPIPE (Rust does): the child must not. Other
    // ignored signals stay ignored, as across any exec (glibc ignores its own
    // signal 32 here). Caught ones are reset by the exec whatever we do; what
    // the reset in the child is for (no handler of ours running between clone
    // and exec) has no outside witness.
    let dir = tempfile::tempdir().expect("tmp");
    let s = streams(dir.path());
    let args = sh("exec cat /proc/self/status");
    let mut child = spawn(&launch(&s, &args, dir.path())).expect("spawns");
    assert!(child.wait().await.expect("waits").success());
    let ours = std::fs::read_to_string("/proc/thread-self/status").expect("status");
    let out = std::fs::read_to_string(dir.path().join("out")).expect("out");
    let sigpipe = 1u64 << (libc::SIGPIPE - 1);
    assert_ne!(signal_set(&ours, "SigIgn:") & sigpipe, 0, "{ours}");
    assert_eq!(signal_set(&out, "SigBlk:"), 0, "{out}");
    assert_eq!(signal_set(&out, "SigCgt:"), 0, "{out}");
    assert_eq!(
        signal_set(&out, "SigIgn:"),
        signal_set(&ours, "SigIgn:") & !sigpipe,
        "{out}"
    );
}

#[tokio::test]
async fn the_child_leads_a_process_group_of_its_own() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = streams(dir.path());
    // Field 5 of /proc/self/stat is the group; PDeathSig is not in /proc, so
    // the worker-death test in tests/failures.rs covers that end to end.
    let args = sh("exec cut -d' ' -f1,5 /proc/self/stat");
    let mut child = spawn(&launch(&s, &args, dir.path())).expect("spawns");
    let pid = child.id();
    child.wait().await.expect("waits");
    let out = std::fs::read_to_string(dir.path().join("out")).expect("out");
    assert_eq!(out.trim(), format!("{pid} {pid}"));
}

#[tokio::test]
async fn each_step_that_fails_is_named_with_its_errno() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = streams(dir.path());
    let args = sh("true");
    let missing = dir.path().join("gone");
    let err = spawn(&launch(&s, &args, &missing)).expect_err("no folder");
    assert_eq!(
        (err.step, err.error.raw_os_error()),
        (Step::Chdir, Some(libc::ENOENT))
    );
    let mut absent = launch(&s, &args, dir.path());
    absent.program = OsStr::new("/no/such/program");
    let err = spawn(&absent).expect_err("no program");
    assert_eq!(
        (err.step, err.error.raw_os_error()),
        (Step::Exec, Some(libc::ENOENT))
    );
    let nul = ["-c".to_string(), "a\0b".to_string()];
    let err = spawn(&launch(&s, &nul, dir.path())).expect_err("NUL");
    assert_eq!(err.step, Step::Create);
}

#[tokio::test]
async fn a_child_dropped_unwaited_is_killed_and_reaped_not_left_a_zombie() {
    for with_pidfd in [true, false] {
        let dir = tempfile::tempdir().expect("tmp");
        let s = streams(dir.path());
        let args = sh("exec sleep 100");
        let child = spawn_with(&launch(&s, &args, dir.path()), with_pidfd).expect("spawns");
        let stat = format!("/proc/{}/stat", child.id());
        drop(child);
        let gone = (0..200).any(|_| {
            std::thread::sleep(Duration::from_millis(10));
            std::fs::metadata(&stat).is_err()
        });
        assert!(
            gone,
            "pidfd {with_pidfd}: {stat} still there, not killed and reaped"
        );
    }
}

#[tokio::test]
async fn streams_on_descriptors_0_to_2_are_moved_above_them_first() {
    // A worker started with its own stdio closed opens files on 0..2; placing
    // one stream must not overwrite another.
    let dir = tempfile::tempdir().expect("tmp");
    let low: OwnedFd = File::open("/dev/null").expect("null").into();
    let raised = Plan::new(&Launch {
        stdin: &low,
        ..launch(&streams(dir.path()), &[], dir.path())
    })
    .expect("plan");
    assert!(raised.fds.iter().all(|fd| *fd > 2), "{:?}", raised.fds);
}

#[tokio::test]
async fn exited_leaves_the_zombie_for_wait_to_reap_with_a_pidfd_or_a_thread() {
    // Between the two, the pid (and its group's id) cannot be reused: the
    // group can still be signalled safely.
    for with_pidfd in [true, false] {
        let dir = tempfile::tempdir().expect("tmp");
        let s = streams(dir.path());
        let args = sh("exit 3");
        let mut child = spawn_with(&launch(&s, &args, dir.path()), with_pidfd).expect("spawns");
        assert_eq!(matches!(child.reaper, Reaper::Pidfd(_)), with_pidfd);
        let pid = child.id();
        child.exited().await.expect("exits");
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("still there");
        let zombie = state
            .rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z'));
        assert!(zombie, "pidfd {with_pidfd}: {state}");
        assert_eq!(child.wait().await.expect("reaps").code(), Some(3));
        assert_eq!(child.wait().await.expect("twice").code(), Some(3));
        assert!(std::fs::metadata(format!("/proc/{pid}")).is_err(), "reaped");
    }
}
