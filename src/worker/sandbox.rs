//! One attempt of one job in its folder: the environment, the Prologue scripts, the
//! Executable, the Epilogue and the output archive. Every failure, the worker's
//! own included, ends as an outcome with a reason: the worker itself never fails.

mod capture;
mod env;
mod log;
mod quota;
#[cfg(test)]
mod quota_tests;
mod reasons;
mod reclaim;
#[cfg(test)]
mod tests;

pub use env::JobEnv;
pub use reclaim::remove_attempt_dir;

use super::output::{collect_output, OutputError, Snapshot};
use super::process::{self, Output, ProcessError, ProcessExit, ProcessSpec, DEFAULT_KILL_GRACE};
use super::spill::Spilled;
use capture::Capture;
use log::WorkerLog;
use quota::Quota;
use reasons::{disk_is_full, ended, io_reason, is_no_space, signal_name, start_failure};
use reconcilers::jdl::{is_safe_sandbox_name, output_archive_candidate, JobDescription};
use reconcilers::model::AttemptOutcome;
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What an attempt may use beyond what the JDL says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptLimits {
    /// The output archive may not be bigger (compressed).
    pub max_output_bytes: u64,
    /// Between SIGTERM and SIGKILL when a program is stopped.
    pub kill_grace: Duration,
    /// The attempt's folder may not take more disk (see `quota.rs`); `None`:
    /// as much as the disk has.
    pub max_sandbox_bytes: Option<u64>,
}

impl Default for AttemptLimits {
    fn default() -> Self {
        AttemptLimits {
            max_output_bytes: 1 << 30,
            kill_grace: DEFAULT_KILL_GRACE,
            max_sandbox_bytes: None,
        }
    }
}

/// The attempt's folder and the fixed names inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptPaths {
    pub root: PathBuf,
}

impl AttemptPaths {
    /// The job's folder and working directory, holding the unpacked input archive.
    pub fn sandbox(&self) -> PathBuf {
        self.root.join("sandbox")
    }
    /// The Executable's standard output when StdOutput is not set.
    pub fn stdout(&self) -> PathBuf {
        self.root.join("stdout")
    }
    /// The Executable's standard error when StdError is not set.
    pub fn stderr(&self) -> PathBuf {
        self.root.join("stderr")
    }
    /// What the worker says about the attempt, and the Prologue/Epilogue output.
    pub fn worker_log(&self) -> PathBuf {
        self.root.join("worker.log")
    }
    pub fn output_archive(&self) -> PathBuf {
        self.root.join("output.tar.gz")
    }
}

/// How the attempt ended and where its files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptResult {
    pub outcome: AttemptOutcome,
    /// The Executable's exit code as a shell reports it (128 + signal when killed);
    /// `None` when it never ran.
    pub exit_code: Option<i32>,
    /// Why the attempt did not succeed, for the job's owner.
    pub reason: Option<String>,
    /// The output archive (in memory if small, else `root/output.tar.gz`),
    /// when the JDL asks for output and packing it worked (also after a failure).
    pub output_archive: Option<Spilled>,
    /// In the archive form of OutputSandbox, the name to store the archive under.
    pub output_archive_name: Option<String>,
    /// What the Executable wrote: `sandbox/<StdOutput>`, or what was captured
    /// (in memory, or `root/stdout` if big); likewise for stderr. Empty if the
    /// Executable never started.
    pub stdout: Spilled,
    pub stderr: Spilled,
    /// worker.log: in memory unless a Prologue or Epilogue wrote to it.
    pub worker_log: Spilled,
}

/// Runs one attempt of `job` in `paths.root`, whose `sandbox/` already holds the
/// unpacked input archive. Never panics on anything from outside and always
/// returns a result; the output is collected whatever happened.
pub async fn run_job(
    paths: &AttemptPaths,
    job: &JobDescription,
    env: &JobEnv,
    limits: &AttemptLimits,
    cancel: CancellationToken,
) -> AttemptResult {
    let started = Instant::now();
    let sandbox = paths.sandbox();
    let in_sandbox = |name: &Option<String>| match name {
        Some(n) if is_safe_sandbox_name(n) => Some(sandbox.join(n)),
        _ => None,
    };
    let mut run = Attempt {
        stdout: in_sandbox(&job.std_output),
        stderr: in_sandbox(&job.std_error),
        streams: (Spilled::Memory(Vec::new()), Spilled::Memory(Vec::new())),
        log: WorkerLog::new(paths.worker_log()),
        quota: limits
            .max_sandbox_bytes
            .map(|limit| Quota::new(limit, &paths.root)),
        paths,
        job,
        limits,
        cancel,
        env: Vec::new(),
        deadline: job
            .max_wall_time
            .map(|secs| started + Duration::from_secs(secs)),
        snapshot: None,
    };
    let mut ending = match run.steps(env).await {
        Ok(ending) | Err(ending) => ending,
    };
    let (output_archive, output_archive_name) = run.collect(&mut ending).await;
    let took = started.elapsed().as_secs_f64();
    match &ending.reason {
        Some(reason) => run.log.note(&format!(
            "attempt {} after {took:.2}s: {reason}",
            ending.outcome.as_str()
        )),
        None => run.log.note(&format!(
            "attempt {} after {took:.2}s",
            ending.outcome.as_str()
        )),
    }
    AttemptResult {
        outcome: ending.outcome,
        exit_code: ending.exit_code,
        reason: ending.reason,
        output_archive,
        output_archive_name,
        stdout: run.streams.0,
        stderr: run.streams.1,
        worker_log: run.log.finish(),
    }
}

/// The result of an attempt that failed before [`run_job`] could start (download,
/// unpack, unreadable JDL), with `reason` written to worker.log as well.
pub async fn failed_before_run(paths: &AttemptPaths, reason: String) -> AttemptResult {
    let mut log = WorkerLog::new(paths.worker_log());
    log.note(&format!("attempt failed_before_run: {reason}"));
    AttemptResult {
        outcome: AttemptOutcome::FailedBeforeRun,
        exit_code: None,
        reason: Some(reason),
        output_archive: None,
        output_archive_name: None,
        stdout: Spilled::Memory(Vec::new()),
        stderr: Spilled::Memory(Vec::new()),
        worker_log: log.finish(),
    }
}

/// How an attempt ended, before the output is collected.
#[derive(Debug)]
struct Ending {
    outcome: AttemptOutcome,
    exit_code: Option<i32>,
    reason: Option<String>,
}

impl Ending {
    fn before_run(reason: impl Into<String>) -> Ending {
        Ending {
            outcome: AttemptOutcome::FailedBeforeRun,
            exit_code: None,
            reason: Some(reason.into()),
        }
    }
    fn cancelled(exit_code: Option<i32>, when: &str) -> Ending {
        Ending {
            outcome: AttemptOutcome::Cancelled,
            exit_code,
            reason: Some(format!("cancelled {when}")),
        }
    }
}

struct Attempt<'a> {
    paths: &'a AttemptPaths,
    job: &'a JobDescription,
    limits: &'a AttemptLimits,
    cancel: CancellationToken,
    quota: Option<Quota>,
    log: WorkerLog,
    env: Vec<(OsString, OsString)>,
    /// MaxWallTime counts from the start of the attempt, Prologue included.
    deadline: Option<Instant>,
    snapshot: Option<Snapshot>,
    /// The files the JDL names for the Executable's streams (StdOutput,
    /// StdError); `None`: captured.
    stdout: Option<PathBuf>,
    stderr: Option<PathBuf>,
    /// What the Executable wrote to them, once it ran.
    streams: (Spilled, Spilled),
}

impl Attempt<'_> {
    async fn steps(&mut self, env: &JobEnv) -> Result<Ending, Ending> {
        let sandbox = self.paths.sandbox();
        if !sandbox.is_dir() {
            return Err(Ending::before_run(format!(
                "the sandbox folder `{}` is missing",
                sandbox.display()
            )));
        }
        self.check_names()?;
        let executable = match self.job.executable.as_deref() {
            Some(name) if !name.is_empty() => name,
            _ => return Err(Ending::before_run("the JDL names no Executable")),
        };
        // Every argument string is split before anything runs: a typo in the
        // Epilogue's arguments should not cost a whole run.
        let args = split_words("Arguments", &self.job.arguments)?;
        let prologue_args = split_words("PrologueArguments", &self.job.prologue_arguments)?;
        let epilogue_args = split_words("EpilogueArguments", &self.job.epilogue_arguments)?;
        let mut notes = Vec::new();
        self.env = env.environment(&self.job.environment, &mut notes);
        for note in notes {
            self.log.note(&note);
        }
        if output_archive_candidate(&self.job.output_sandbox).is_some() {
            let dir = sandbox.clone();
            let taken = tokio::task::spawn_blocking(move || Snapshot::take(&dir)).await;
            match taken {
                Ok(Ok(snapshot)) => self.snapshot = Some(snapshot),
                Ok(Err(e)) => return Err(Ending::before_run(io_reason("listing the sandbox", &e))),
                Err(e) => return Err(Ending::before_run(format!("listing the sandbox: {e}"))),
            }
        }
        self.prologues(prologue_args).await?;
        let ending = self.executable(executable, args).await?;
        Ok(self.epilogue(ending, epilogue_args).await)
    }

    /// The JDL was checked at submit time; the worker checks again because the
    /// JDL came over the network and these names decide where it writes.
    fn check_names(&self) -> Result<(), Ending> {
        let job = self.job;
        let files = [
            ("StdInput", &job.std_input),
            ("StdOutput", &job.std_output),
            ("StdError", &job.std_error),
        ];
        for (what, name) in files {
            if let Some(name) = name {
                if !is_safe_sandbox_name(name) {
                    return Err(unsafe_name(what, name));
                }
            }
        }
        if let Some(entry) = job.output_sandbox.iter().find(|e| !is_safe_sandbox_name(e)) {
            return Err(unsafe_name("OutputSandbox entry", entry));
        }
        let programs = job
            .executable
            .iter()
            .map(|e| ("Executable", e))
            .chain(job.prologue.iter().map(|p| ("Prologue", p)))
            .chain(job.epilogue.iter().map(|e| ("Epilogue", e)));
        for (what, name) in programs {
            if !name.is_empty() && !name.starts_with('/') && !is_safe_sandbox_name(name) {
                return Err(unsafe_name(what, name));
            }
        }
        Ok(())
    }

    async fn prologues(&mut self, args: Vec<String>) -> Result<(), Ending> {
        let scripts: Vec<&String> = self.job.prologue.iter().filter(|p| !p.is_empty()).collect();
        if scripts.len() > 1 && !args.is_empty() {
            self.log.note(&format!(
                "PrologueArguments apply to a single Prologue; ignored for {} scripts",
                scripts.len()
            ));
        }
        for (i, name) in scripts.iter().enumerate() {
            if self.cancel.is_cancelled() {
                return Err(Ending::cancelled(None, "before the Executable started"));
            }
            let program = self.resolve("prologue", name).map_err(Ending::before_run)?;
            let args = if scripts.len() == 1 {
                args.clone()
            } else {
                Vec::new()
            };
            self.log.note(&format!(
                "prologue `{name}` ({} of {}) starting",
                i + 1,
                scripts.len()
            ));
            let wall = self.remaining();
            let exit = self
                .run_to_log("prologue", name, program, args, wall)
                .await
                .map_err(Ending::before_run)?;
            if let Some(reason) = self.over_quota(&exit) {
                return Err(failed(None, format!("prologue `{name}`: {reason}")));
            }
            if exit.cancelled {
                return Err(Ending::cancelled(None, "while the Prologue ran"));
            }
            if exit.timed_out {
                return Err(Ending::before_run(format!(
                    "prologue `{name}` {}",
                    self.over_wall_time()
                )));
            }
            if !exit.success() {
                return Err(Ending::before_run(format!(
                    "prologue `{name}` {}",
                    ended(&exit)
                )));
            }
            self.log
                .note(&format!("prologue `{name}` exited with code 0"));
        }
        Ok(())
    }

    async fn executable(&mut self, name: &str, args: Vec<String>) -> Result<Ending, Ending> {
        if self.cancel.is_cancelled() {
            return Err(Ending::cancelled(None, "before the Executable started"));
        }
        let program = self
            .resolve("Executable", name)
            .map_err(Ending::before_run)?;
        let sandbox = self.paths.sandbox();
        let stdin = match &self.job.std_input {
            Some(input) => {
                let path = sandbox.join(input);
                if !path.is_file() {
                    return Err(Ending::before_run(format!(
                        "StdInput `{input}` is not in the sandbox"
                    )));
                }
                Some(path)
            }
            None => None,
        };
        for (what, path) in [("StdOutput", &self.stdout), ("StdError", &self.stderr)] {
            if let Some(parent) = path.as_ref().and_then(|p| p.parent()) {
                fs::create_dir_all(parent).map_err(|e| {
                    Ending::before_run(io_reason(&format!("creating the folder of {what}"), &e))
                })?;
            }
        }
        self.log.note(&format!(
            "Executable `{name}` starting with {} arguments",
            args.len()
        ));
        let (stdout, out_capture) = self.stream(&self.stdout, self.paths.stdout());
        let (stderr, err_capture) = self.stream(&self.stderr, self.paths.stderr());
        let wall = self.remaining();
        let ran = self
            .run_program(name, program, args, stdin, stdout, stderr, wall)
            .await;
        let grace = self.limits.kill_grace;
        for (capture, named, fallback, kept) in [
            (
                out_capture,
                &self.stdout,
                self.paths.stdout(),
                &mut self.streams.0,
            ),
            (
                err_capture,
                &self.stderr,
                self.paths.stderr(),
                &mut self.streams.1,
            ),
        ] {
            *kept = match capture {
                Some(capture) => capture.finish(grace).await,
                None => Spilled::File(named.clone().unwrap_or(fallback)),
            };
        }
        let exit = ran.map_err(|e| Ending::before_run(start_failure("Executable", name, &e)))?;
        let code = Some(exit.shell_code());
        let ending = if let Some(reason) = self.over_quota(&exit) {
            failed(code, reason)
        } else if exit.cancelled {
            Ending::cancelled(code, "while the Executable ran")
        } else if exit.timed_out {
            failed(code, self.over_wall_time())
        } else if exit.success() {
            Ending {
                outcome: AttemptOutcome::Succeeded,
                exit_code: code,
                reason: None,
            }
        } else {
            let mut reason = match exit.signal {
                Some(signal) => format!("killed by {}", signal_name(signal)),
                None => format!("exit code {}", exit.shell_code()),
            };
            // A job whose writes hit a full disk usually just exits 1; say why.
            if disk_is_full(&sandbox) {
                reason.push_str(" (no space left on device in the sandbox)");
            }
            failed(code, reason)
        };
        self.log
            .note(&format!("Executable `{name}` {}", ended(&exit)));
        Ok(ending)
    }

    /// Runs the Epilogue whatever the Executable did (not after a cancel). It gets
    /// a MaxWallTime of its own: it is the job's cleanup, and a timed-out
    /// Executable has used up the attempt's.
    async fn epilogue(&mut self, mut ending: Ending, args: Vec<String>) -> Ending {
        let Some(name) = self.job.epilogue.as_deref().filter(|e| !e.is_empty()) else {
            return ending;
        };
        if ending.outcome == AttemptOutcome::Cancelled {
            self.log.note(&format!(
                "epilogue `{name}` skipped: the attempt was cancelled"
            ));
            return ending;
        }
        if self.cancel.is_cancelled() {
            self.log.note(&format!(
                "epilogue `{name}` skipped: the attempt was cancelled"
            ));
            return Ending::cancelled(ending.exit_code, "before the Epilogue ran");
        }
        let program = match self.resolve("epilogue", name) {
            Ok(program) => program,
            Err(reason) => {
                self.fail(&mut ending, reason);
                return ending;
            }
        };
        self.log.note(&format!("epilogue `{name}` starting"));
        let wall = self.job.max_wall_time.map(Duration::from_secs);
        let exit = match self.run_to_log("epilogue", name, program, args, wall).await {
            Ok(exit) => exit,
            Err(reason) => {
                self.fail(&mut ending, reason);
                return ending;
            }
        };
        if let Some(reason) = self.over_quota(&exit) {
            self.fail(&mut ending, format!("epilogue `{name}`: {reason}"));
            return ending;
        }
        if exit.cancelled {
            return Ending::cancelled(ending.exit_code, "while the Epilogue ran");
        }
        if exit.timed_out {
            let reason = format!("epilogue `{name}` {}", self.over_wall_time());
            self.fail(&mut ending, reason);
        } else if !exit.success() {
            self.fail(&mut ending, format!("epilogue `{name}` {}", ended(&exit)));
        } else {
            self.log
                .note(&format!("epilogue `{name}` exited with code 0"));
        }
        ending
    }

    /// Packs the output, whatever happened before, as long as there is a sandbox.
    async fn collect(&mut self, ending: &mut Ending) -> (Option<Spilled>, Option<String>) {
        let sandbox = self.paths.sandbox();
        if self.job.output_sandbox.is_empty() || !sandbox.is_dir() {
            return (None, None);
        }
        let outputs = self.job.output_sandbox.clone();
        let archive = self.paths.output_archive();
        let max = self.limits.max_output_bytes;
        let snapshot = self.snapshot.take();
        let packed = tokio::task::spawn_blocking(move || {
            // No snapshot means nothing ran: everything there counts as old.
            let snapshot = snapshot.or_else(|| Snapshot::take(&sandbox).ok());
            let mut notes = Vec::new();
            let result = collect_output(
                &sandbox,
                &outputs,
                snapshot.as_ref(),
                &archive,
                max,
                &mut notes,
            );
            (result, notes)
        })
        .await;
        let (result, notes) = match packed {
            Ok(packed) => packed,
            Err(e) => {
                self.fail(ending, format!("packing the output archive: {e}"));
                return (None, None);
            }
        };
        for note in &notes {
            self.log.note(note);
        }
        let reason = match result {
            Ok(Some(archive)) => {
                self.log.note(&format!(
                    "output archive: {} entries, {} bytes",
                    archive.entries, archive.bytes
                ));
                return (Some(archive.archive), archive.stored_as);
            }
            Ok(None) => return (None, None),
            Err(e @ OutputError::TooLarge { .. }) => e.to_string(),
            Err(OutputError::Io {
                action,
                path,
                source,
            }) => {
                let _ = fs::remove_file(self.paths.output_archive());
                match is_no_space(&source) {
                    true => format!("no space left on device while {action}"),
                    false => format!("{action} `{}`: {source}", path.display()),
                }
            }
        };
        self.fail(ending, reason);
        (None, None)
    }

    /// Runs a Prologue or Epilogue (`what`: which) with its output appended to
    /// worker.log, which becomes a file for it; why it could not start, if so.
    async fn run_to_log(
        &mut self,
        what: &str,
        name: &str,
        program: PathBuf,
        args: Vec<String>,
        wall: Option<Duration>,
    ) -> Result<ProcessExit, String> {
        let log = match self.log.as_file() {
            Ok(path) => path.to_path_buf(),
            Err(e) => return Err(io_reason("creating worker.log", &e)),
        };
        self.run_program(
            name,
            program,
            args,
            None,
            log.clone().into(),
            log.into(),
            wall,
        )
        .await
        .map_err(|e| start_failure(what, name, &e))
    }

    /// A later failure fails a successful attempt; an attempt that already failed
    /// keeps its first reason (the later one goes to worker.log).
    fn fail(&mut self, ending: &mut Ending, reason: String) {
        if ending.outcome == AttemptOutcome::Succeeded {
            *ending = failed(ending.exit_code, reason);
        } else {
            self.log.note(&format!("also: {reason}"));
        }
    }

    /// Where a program named in the JDL is: relative names are shipped in the
    /// sandbox (and made executable: archives and uploads lose the bit), absolute
    /// ones are the worker's.
    fn resolve(&mut self, what: &str, name: &str) -> Result<PathBuf, String> {
        if name.starts_with('/') {
            let path = PathBuf::from(name);
            return match path.exists() {
                true => Ok(path),
                false => Err(format!("{what} `{name}` not found on worker")),
            };
        }
        let path = self.paths.sandbox().join(name);
        if !fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            return Err(format!(
                "{what} `{name}` is not in the sandbox (ship it next to the JDL or in InputSandbox)"
            ));
        }
        // Only a file of the sandbox itself, never what a link points at.
        if let Ok(meta) = fs::symlink_metadata(&path) {
            let mode = meta.permissions().mode();
            // u+rx, and x for group and others where they may read.
            let wanted = mode | 0o500 | ((mode & 0o044) >> 2);
            if meta.is_file() && wanted != mode {
                if let Err(e) = fs::set_permissions(&path, fs::Permissions::from_mode(wanted)) {
                    self.log.note(&format!("making `{name}` executable: {e}"));
                }
            }
        }
        Ok(path)
    }

    /// Where one of the Executable's streams goes: the file the JDL names, or
    /// a capture (`capture.rs`; the file `fallback` if no pipe can be made).
    fn stream(&self, named: &Option<PathBuf>, fallback: PathBuf) -> (Output, Option<Capture>) {
        if let Some(path) = named {
            return (Output::File(path.clone()), None);
        }
        // Under a sandbox quota the streams stay files: RLIMIT_FSIZE then
        // bounds them as it bounds every file of the job, which a pipe
        // drained by the worker would escape.
        if self.quota.is_some() {
            return (Output::File(fallback), None);
        }
        match Capture::start(fallback.clone()) {
            Ok(capture) => (capture.output(), Some(capture)),
            Err(e) => {
                tracing::warn!("making a pipe for a job's stream: {e}");
                (Output::File(fallback), None)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_program(
        &self,
        label: &str,
        program: PathBuf,
        args: Vec<String>,
        stdin: Option<PathBuf>,
        stdout: Output,
        stderr: Output,
        wall_time: Option<Duration>,
    ) -> Result<ProcessExit, ProcessError> {
        let spec = ProcessSpec {
            label: label.to_string(),
            program,
            args,
            cwd: self.paths.sandbox(),
            env: self.env.clone(),
            stdin,
            stdout,
            stderr,
            max_file_bytes: self.quota.as_ref().map(Quota::limit),
        };
        let Some(quota) = &self.quota else {
            return process::run(&spec, wall_time, self.limits.kill_grace, &self.cancel).await;
        };
        // The quota stops the program through a token of its own, so that a
        // program stopped for it is not taken for a cancelled attempt.
        let stop = self.cancel.child_token();
        let watch = quota.watch(stop.clone());
        let exit = process::run(&spec, wall_time, self.limits.kill_grace, &stop).await;
        stop.cancel();
        let _ = watch.await;
        // What it wrote since the last look counts too.
        quota.check().await;
        exit
    }

    /// Why the program's end is the quota's doing, if it is. A shell whose
    /// child got SIGXFSZ exits with 128 + SIGXFSZ.
    fn over_quota(&self, exit: &ProcessExit) -> Option<String> {
        let xfsz = 128 + libc::SIGXFSZ;
        let signal = exit
            .signal
            .or_else(|| (exit.code == Some(xfsz)).then_some(libc::SIGXFSZ));
        self.quota.as_ref()?.reason(signal)
    }

    fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    fn over_wall_time(&self) -> String {
        format!(
            "exceeded MaxWallTime of {}s",
            self.job.max_wall_time.unwrap_or(0)
        )
    }
}

fn failed(exit_code: Option<i32>, reason: String) -> Ending {
    Ending {
        outcome: AttemptOutcome::Failed,
        exit_code,
        reason: Some(reason),
    }
}

fn unsafe_name(what: &str, name: &str) -> Ending {
    Ending::before_run(format!(
        "{what} `{name}` is not a name inside the sandbox (relative, without `..`)"
    ))
}

fn split_words(what: &str, text: &Option<String>) -> Result<Vec<String>, Ending> {
    match text {
        None => Ok(Vec::new()),
        Some(text) => shell_words::split(text).map_err(|e| {
            Ending::before_run(format!("{what} `{text}` cannot be split into words: {e}"))
        }),
    }
}
