//! Runs one program of a job (a Prologue, the Executable, an Epilogue): argv without
//! a shell, in a process group of its own, with a wall-time limit and cancellation
//! that stop the whole group, never just its leader.

mod spawn;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long a stopped program gets between SIGTERM and SIGKILL by default.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(2);

/// Where a stream of the program goes.
#[derive(Debug, Clone)]
pub enum Output {
    /// Appended to this file (created if missing).
    File(PathBuf),
    /// The write end of a pipe that the caller reads (`sandbox/capture.rs`).
    Pipe(Arc<OwnedFd>),
}

impl Output {
    fn same_as(&self, other: &Output) -> bool {
        match (self, other) {
            (Output::File(a), Output::File(b)) => a == b,
            (Output::Pipe(a), Output::Pipe(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    fn open(&self, what: &'static str) -> Result<OwnedFd, ProcessError> {
        match self {
            Output::File(path) => open_append(path, what).map(OwnedFd::from),
            Output::Pipe(fd) => fd.try_clone().map_err(|source| ProcessError::Redirect {
                what,
                path: PathBuf::from("(pipe)"),
                source,
            }),
        }
    }
}

impl From<PathBuf> for Output {
    fn from(path: PathBuf) -> Output {
        Output::File(path)
    }
}

/// One program to run.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// The name messages use: what the user wrote (`run.sh`), not the full path.
    pub label: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub cwd: PathBuf,
    /// The complete environment: nothing is inherited from the worker.
    pub env: Vec<(OsString, OsString)>,
    /// Standard input from this file; `/dev/null` when `None`.
    pub stdin: Option<PathBuf>,
    /// Where standard output and error go; the same file (or pipe) for both
    /// gives one stream with both.
    pub stdout: Output,
    pub stderr: Output,
    /// RLIMIT_FSIZE: no file the program writes may grow past this (the kernel
    /// sends SIGXFSZ). It bounds what a job can write between two looks of the
    /// sandbox quota, without privileges.
    pub max_file_bytes: Option<u64>,
}

/// How a program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProcessExit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// The wall-time limit ran out and the group was stopped.
    pub timed_out: bool,
    /// The cancellation token fired and the group was stopped.
    pub cancelled: bool,
}

impl ProcessExit {
    fn from_status(status: ExitStatus, timed_out: bool, cancelled: bool) -> ProcessExit {
        ProcessExit {
            code: status.code(),
            signal: status.signal(),
            timed_out,
            cancelled,
        }
    }

    /// The exit code as a shell reports it: the code, or 128 + the signal.
    pub fn shell_code(&self) -> i32 {
        self.code.or(self.signal.map(|s| 128 + s)).unwrap_or(-1)
    }

    /// Exited 0 by itself, within its time.
    pub fn success(&self) -> bool {
        self.code == Some(0) && !self.timed_out && !self.cancelled
    }
}

/// Why a program could not be started (or, rarely, waited for); the messages are
/// for the job's owner.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("`{program}` not found")]
    NotFound { program: String },
    #[error("cannot execute `{program}`: the interpreter `{interpreter}` named in its `#!` line is not on the worker")]
    InterpreterNotFound {
        program: String,
        interpreter: String,
    },
    #[error("`{program}` is not executable")]
    NotExecutable { program: String },
    #[error("cannot execute `{program}`: not a binary and no `#!` line")]
    NotABinary { program: String },
    #[error("opening {what} `{}`: {source}", path.display())]
    Redirect {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("starting `{program}`: {source}")]
    Other {
        program: String,
        #[source]
        source: io::Error,
    },
    #[error("waiting for `{program}`: {source}")]
    Wait {
        program: String,
        #[source]
        source: io::Error,
    },
}

impl ProcessError {
    /// The I/O error underneath, if any (to recognise a full disk).
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            ProcessError::Redirect { source, .. }
            | ProcessError::Other { source, .. }
            | ProcessError::Wait { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A started program. Dropping it without waiting kills its group.
#[derive(Debug)]
pub struct RunningProcess {
    child: spawn::Child,
    pgid: Pid,
    label: String,
    reaped: bool,
}

/// Spawns `spec` in a new process group, as a child that dies with the worker
/// (`spawn.rs` says how, and why not with std's `Command`).
pub async fn spawn(spec: &ProcessSpec) -> Result<RunningProcess, ProcessError> {
    let stdin_path = spec.stdin.as_deref().unwrap_or(Path::new("/dev/null"));
    let stdin = OwnedFd::from(
        File::open(stdin_path).map_err(|source| ProcessError::Redirect {
            what: "standard input",
            path: stdin_path.to_path_buf(),
            source,
        })?,
    );
    let stdout = spec.stdout.open("standard output")?;
    let stderr = if spec.stderr.same_as(&spec.stdout) {
        stdout
            .try_clone()
            .map_err(|source| ProcessError::Redirect {
                what: "standard error",
                path: PathBuf::from("(standard output)"),
                source,
            })?
    } else {
        spec.stderr.open("standard error")?
    };
    let launch = spawn::Launch {
        program: spec.program.as_os_str(),
        args: &spec.args,
        cwd: spec.cwd.as_os_str(),
        env: &spec.env,
        stdin: &stdin,
        stdout: &stdout,
        stderr: &stderr,
        max_file_bytes: spec.max_file_bytes,
    };
    let mut attempts = 0;
    loop {
        match spawn::spawn(&launch) {
            Ok(child) => {
                let pid = child.id() as i32;
                return Ok(RunningProcess {
                    child,
                    pgid: Pid::from_raw(pid),
                    label: spec.label.clone(),
                    reaped: false,
                });
            }
            // ETXTBSY: another thread of the worker forked while a freshly written
            // script was still open for writing; the fd closes at that child's exec.
            Err(e)
                if e.step == spawn::Step::Exec
                    && e.error.raw_os_error() == Some(libc::ETXTBSY)
                    && attempts < 5 =>
            {
                attempts += 1;
                // Asleep without holding the worker's one thread: pings go on.
                tokio::time::sleep(Duration::from_millis(10 * attempts)).await;
            }
            Err(e) => return Err(spawn_error(spec, e)),
        }
    }
}

/// Spawns `spec` and waits for it; see [`RunningProcess::wait`].
pub async fn run(
    spec: &ProcessSpec,
    wall_time: Option<Duration>,
    kill_grace: Duration,
    cancel: &CancellationToken,
) -> Result<ProcessExit, ProcessError> {
    spawn(spec).await?.wait(wall_time, kill_grace, cancel).await
}

impl RunningProcess {
    /// Waits for the program. When `wall_time` runs out or `cancel` fires, the whole
    /// group gets SIGTERM, then SIGKILL after `kill_grace`. Whatever the program
    /// left running in its group is killed when it ends: a job's leftovers must not
    /// outlive its attempt (only a process that left the group escapes this).
    pub async fn wait(
        mut self,
        wall_time: Option<Duration>,
        kill_grace: Duration,
        cancel: &CancellationToken,
    ) -> Result<ProcessExit, ProcessError> {
        let deadline = async {
            match wall_time {
                Some(limit) => tokio::time::sleep(limit).await,
                None => std::future::pending().await,
            }
        };
        let (mut timed_out, mut cancelled) = (false, false);
        let finished = tokio::select! {
            exited = self.child.exited() => Some(exited),
            () = deadline => { timed_out = true; None }
            () = cancel.cancelled() => { cancelled = true; None }
        };
        let exited = match finished {
            Some(exited) => exited,
            None => self.stop(kill_grace).await,
        };
        // Before reaping the leader: until then its pid is still the group's
        // id, and cannot have been given to another process's group.
        self.signal_group(Signal::SIGKILL);
        let status = match exited {
            Ok(()) => self.child.wait().await,
            Err(e) => Err(e),
        };
        self.reaped = status.is_ok();
        let status = status.map_err(|source| ProcessError::Wait {
            program: self.label.clone(),
            source,
        })?;
        Ok(ProcessExit::from_status(status, timed_out, cancelled))
    }

    async fn stop(&mut self, kill_grace: Duration) -> io::Result<()> {
        self.signal_group(Signal::SIGTERM);
        match tokio::time::timeout(kill_grace, self.child.exited()).await {
            Ok(exited) => exited,
            Err(_) => {
                self.signal_group(Signal::SIGKILL);
                self.child.exited().await
            }
        }
    }

    fn signal_group(&self, signal: Signal) {
        if self.pgid.as_raw() <= 1 {
            return;
        }
        match killpg(self.pgid, signal) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => {
                tracing::warn!(pgid = self.pgid.as_raw(), %signal, "signalling a job's process group: {e}")
            }
        }
    }
}

impl Drop for RunningProcess {
    fn drop(&mut self) {
        if !self.reaped {
            self.signal_group(Signal::SIGKILL);
        }
    }
}

fn open_append(path: &Path, what: &'static str) -> Result<File, ProcessError> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o644)
        .open(path)
        .map_err(|source| ProcessError::Redirect {
            what,
            path: path.to_path_buf(),
            source,
        })
}

/// What the user needs to fix when the program could not be started.
fn spawn_error(spec: &ProcessSpec, err: spawn::SpawnError) -> ProcessError {
    let source = match err.step {
        spawn::Step::Exec => return classify(spec, err.error),
        spawn::Step::Chdir => io::Error::new(
            err.error.kind(),
            format!(
                "changing to the working folder `{}`: {}",
                spec.cwd.display(),
                err.error
            ),
        ),
        spawn::Step::Setup | spawn::Step::Create => err.error,
    };
    ProcessError::Other {
        program: spec.label.clone(),
        source,
    }
}

/// Turns the errno of a failed exec into what the user needs to fix.
fn classify(spec: &ProcessSpec, err: io::Error) -> ProcessError {
    let program = spec.label.clone();
    match err.raw_os_error() {
        Some(libc::ENOENT) if spec.program.exists() => match interpreter(&spec.program) {
            // The file is there, so what is missing is what would run it.
            Some(interpreter) if !Path::new(&interpreter).exists() => {
                ProcessError::InterpreterNotFound {
                    program,
                    interpreter,
                }
            }
            _ => ProcessError::Other {
                program,
                source: err,
            },
        },
        Some(libc::ENOENT) => ProcessError::NotFound { program },
        Some(libc::EACCES) => ProcessError::NotExecutable { program },
        Some(libc::ENOEXEC) => ProcessError::NotABinary { program },
        _ => ProcessError::Other {
            program,
            source: err,
        },
    }
}

/// The interpreter of a `#!` script, if `path` is one.
fn interpreter(path: &Path) -> Option<String> {
    let mut head = [0u8; 256];
    let mut file = File::open(path).ok()?;
    let n = file.read(&mut head).ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = line.split(|b| *b == b'\n').next()?;
    let word = String::from_utf8_lossy(line)
        .split_whitespace()
        .next()?
        .to_string();
    Some(word)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Instant;

    fn sh(dir: &Path, script: &str) -> ProcessSpec {
        ProcessSpec {
            label: "sh".into(),
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            cwd: dir.to_path_buf(),
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            stdin: None,
            stdout: dir.join("out").into(),
            stderr: dir.join("err").into(),
            max_file_bytes: None,
        }
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// Whether `pid` is still a running process (a zombie waiting for its new
    /// parent to reap it counts as gone), waiting up to a second for it to go.
    fn still_running(pid: &str) -> bool {
        let stat = format!("/proc/{}/stat", pid.trim());
        for _ in 0..100 {
            match std::fs::read_to_string(&stat) {
                Err(_) => return false,
                Ok(s)
                    if s.rsplit(')')
                        .next()
                        .is_some_and(|rest| rest.trim_start().starts_with('Z')) =>
                {
                    return false
                }
                Ok(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        true
    }

    fn script(dir: &Path, name: &str, body: &str, mode: u32) -> ProcessSpec {
        let path = dir.join(name);
        std::fs::write(&path, body).expect("write script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        ProcessSpec {
            label: name.into(),
            program: path,
            args: vec![],
            ..sh(dir, "")
        }
    }

    async fn run_ok(spec: &ProcessSpec) -> ProcessExit {
        run(spec, None, DEFAULT_KILL_GRACE, &CancellationToken::new())
            .await
            .expect("runs")
    }

    #[tokio::test]
    async fn exit_codes_and_signals_are_reported_as_a_shell_would() {
        let dir = tempfile::tempdir().expect("tmp");
        let exit = run_ok(&sh(dir.path(), "exit 3")).await;
        assert_eq!(
            (exit.code, exit.signal, exit.shell_code(), exit.success()),
            (Some(3), None, 3, false)
        );
        let exit = run_ok(&sh(dir.path(), "kill -9 $$")).await;
        assert_eq!(
            (exit.code, exit.signal, exit.shell_code()),
            (None, Some(9), 137)
        );
        assert!(run_ok(&sh(dir.path(), "true")).await.success());
    }

    #[tokio::test]
    async fn stdout_and_stderr_are_appended_to_their_files() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join("out"), "before\n").expect("write");
        run_ok(&sh(dir.path(), "echo to-out; echo to-err >&2")).await;
        assert_eq!(read(&dir.path().join("out")), "before\nto-out\n");
        assert_eq!(read(&dir.path().join("err")), "to-err\n");

        let mut both = sh(dir.path(), "echo one; echo two >&2; echo three");
        both.stdout = dir.path().join("both").into();
        both.stderr = dir.path().join("both").into();
        run_ok(&both).await;
        assert_eq!(read(&dir.path().join("both")), "one\ntwo\nthree\n");
    }

    #[tokio::test]
    async fn stdin_comes_from_the_given_file_or_dev_null() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join("in"), "fed\n").expect("write");
        let mut spec = sh(dir.path(), "cat");
        run_ok(&spec).await;
        assert_eq!(read(&dir.path().join("out")), "", "no stdin reads as empty");
        spec.stdin = Some(dir.path().join("in"));
        run_ok(&spec).await;
        assert_eq!(read(&dir.path().join("out")), "fed\n");
    }

    #[tokio::test]
    async fn arguments_reach_argv_untouched_and_only_the_given_environment_is_set() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut spec = sh(dir.path(), r#"printf '%s|' "$0" "$1" "$FOO" "$HOME""#);
        spec.args
            .extend(["$HOME; echo x".to_string(), "*".to_string()]);
        spec.env.push(("FOO".into(), "bar".into()));
        run_ok(&spec).await;
        assert_eq!(read(&dir.path().join("out")), "$HOME; echo x|*|bar||");
    }

    #[tokio::test]
    async fn max_wall_time_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().expect("tmp");
        let spec = sh(dir.path(), "sleep 100 & echo $! > grandchild; sleep 100");
        let start = Instant::now();
        let exit = run(
            &spec,
            Some(Duration::from_millis(300)),
            DEFAULT_KILL_GRACE,
            &CancellationToken::new(),
        )
        .await
        .expect("runs");
        assert!(exit.timed_out && !exit.cancelled);
        assert_eq!(exit.signal, Some(libc::SIGTERM));
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        assert!(!still_running(&read(&dir.path().join("grandchild"))));
    }

    #[tokio::test]
    async fn cancelling_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().expect("tmp");
        let spec = sh(dir.path(), "sleep 100 & echo $! > grandchild; sleep 100");
        let cancel = CancellationToken::new();
        let trigger = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            trigger.cancel();
        });
        let exit = run(&spec, None, DEFAULT_KILL_GRACE, &cancel)
            .await
            .expect("runs");
        assert!(exit.cancelled && !exit.timed_out);
        assert!(!still_running(&read(&dir.path().join("grandchild"))));
    }

    #[tokio::test]
    async fn a_script_without_a_shebang_runs_under_sh_as_shells_do() {
        let dir = tempfile::tempdir().expect("tmp");
        let bare = script(dir.path(), "bare.sh", "echo hi from sh\n", 0o755);
        let exit = run_ok(&bare).await;
        assert!(exit.success(), "{exit:?}");
        assert_eq!(read(&dir.path().join("out")).trim(), "hi from sh");
    }

    #[tokio::test]
    async fn a_group_ignoring_sigterm_gets_sigkill_after_the_grace() {
        let dir = tempfile::tempdir().expect("tmp");
        // An ignored signal stays ignored across exec, so the sleeps ignore it too.
        let spec = sh(
            dir.path(),
            "trap '' TERM; sleep 100 & echo $! > grandchild; while :; do sleep 0.05; done",
        );
        let start = Instant::now();
        let exit = run(
            &spec,
            Some(Duration::from_millis(200)),
            Duration::from_millis(200),
            &CancellationToken::new(),
        )
        .await
        .expect("runs");
        assert_eq!(
            (exit.signal, exit.shell_code(), exit.timed_out),
            (Some(libc::SIGKILL), 137, true)
        );
        assert!(start.elapsed() < Duration::from_secs(2));
        assert!(!still_running(&read(&dir.path().join("grandchild"))));
    }

    #[tokio::test]
    async fn what_a_program_leaves_running_in_its_group_is_killed_when_it_exits() {
        let dir = tempfile::tempdir().expect("tmp");
        let exit = run_ok(&sh(dir.path(), "sleep 100 & echo $! > grandchild")).await;
        assert!(exit.success());
        assert!(!still_running(&read(&dir.path().join("grandchild"))));
    }

    #[tokio::test]
    async fn spawn_errors_say_what_is_wrong_with_the_program() {
        let dir = tempfile::tempdir().expect("tmp");
        let err = |spec: ProcessSpec| async move {
            run(&spec, None, DEFAULT_KILL_GRACE, &CancellationToken::new())
                .await
                .expect_err("must not start")
                .to_string()
        };
        let missing = ProcessSpec {
            label: "run.sh".into(),
            program: dir.path().join("run.sh"),
            ..sh(dir.path(), "")
        };
        assert_eq!(err(missing).await, "`run.sh` not found");
        let not_exec = script(dir.path(), "plain.sh", "#!/bin/sh\necho hi\n", 0o644);
        assert_eq!(err(not_exec).await, "`plain.sh` is not executable");
        let bad_interp = script(
            dir.path(),
            "py.sh",
            "#!/no/such/python3 -u\nprint(1)\n",
            0o755,
        );
        assert_eq!(
            err(bad_interp).await,
            "cannot execute `py.sh`: the interpreter `/no/such/python3` named in its `#!` line is not on the worker"
        );
        let mut bad_stdin = sh(dir.path(), "true");
        bad_stdin.stdin = Some(dir.path().join("absent"));
        assert!(err(bad_stdin).await.starts_with("opening standard input `"));
    }
}
