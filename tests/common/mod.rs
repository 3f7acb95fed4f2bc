//! Shared helpers of the black-box tests: a temporary folder that is the test's
//! current directory, the `drover` binary run as a user would run it, a real
//! controller on a loopback port (stopped with SIGTERM when the guard drops), and
//! the few looks into `/proc` and HTTP that the tests need.
//!
//! Nothing here knows drover's internals: everything goes through the command
//! line, the HTTP API, the data folder on disk and the process table.

#![allow(dead_code)]

// The AWS harness (moto, the fleet simulator, the fault proxy) needs the `aws`
// feature, as do the tests that use it.
#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "aws")]
pub mod fault_proxy;
#[cfg(feature = "aws")]
pub mod fleet_sim;
#[cfg(feature = "aws")]
pub mod moto;
#[cfg(feature = "aws")]
pub mod sns;
// promtool and cfn-lint, found or installed.
pub mod tools;
// Counting results over jobs: nothing lost, nothing run twice.
pub mod tally;
// `drover worker` started by hand, outside the controller's fleet.
pub mod hand_worker;

use serde_json::Value;
use std::{
    ffi::OsStr,
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

/// The `drover` binary under test.
pub fn drover_bin() -> &'static str {
    env!("CARGO_BIN_EXE_drover")
}

/// The example jobs shipped with the repository.
pub fn manifests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("manifests")
        .join("jobs")
}

/// The short timings every controller of the tests runs with.
pub const FAST: &[&str] = &[
    "--heartbeat-timeout",
    "2s",
    "--ping-interval",
    "300ms",
    "--reconcile-interval",
    "200ms",
];

/// Polls `probe` every 50ms until it gives a value; panics naming `what` once
/// `within` has passed.
pub fn wait_for<T>(within: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {within:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------
// The test's folder
// ---------------------------------------------------------------------------

/// A temporary folder that is the current directory of everything the test runs.
/// When it drops, every process still working in it or naming it on its command
/// line (a controller, a worker, a job left behind) is killed, then it is removed.
pub struct TestDir {
    tmp: tempfile::TempDir,
    root: PathBuf,
}

impl TestDir {
    pub fn new() -> TestDir {
        let tmp = tempfile::Builder::new()
            .prefix("drover-test-")
            .tempdir()
            .expect("creating a temp dir");
        let root = fs::canonicalize(tmp.path()).expect("canonical temp dir");
        TestDir { tmp, root }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.root.join(rel)
    }

    /// Writes a file (creating its folders) and returns its path.
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("creating folders");
        }
        fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        path
    }

    /// Runs `drover ARGS` in this folder, without a controller address.
    pub fn drover<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_drover(&self.root, args, None, Duration::from_secs(60))
    }
}

impl Default for TestDir {
    fn default() -> Self {
        TestDir::new()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        kill_processes_of(&self.root);
        let _ = &self.tmp; // removed by its own Drop
    }
}

// ---------------------------------------------------------------------------
// Running the CLI
// ---------------------------------------------------------------------------

/// What a finished `drover` command left.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// Panics with everything the command said unless it exited 0.
    pub fn expect_ok(self, what: &str) -> Run {
        assert!(self.ok(), "{what}: expected exit 0, got {self:#?}");
        self
    }

    /// The stdout parsed as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }

    /// The last non-empty line of stdout.
    pub fn last_line(&self) -> &str {
        self.stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
    }
}

/// Runs `drover ARGS` in `cwd` (with `DROVER_CONTROLLER=url` if given), kills it
/// and panics if it takes longer than `timeout`.
pub fn run_drover<I, S>(cwd: &Path, args: I, url: Option<&str>, timeout: Duration) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<std::ffi::OsString> = args
        .into_iter()
        .map(|a| a.as_ref().to_os_string())
        .collect();
    // Outputs go to files outside the test folder: a pipe could fill up while we poll.
    let out = tempfile::NamedTempFile::new().expect("stdout file");
    let err = tempfile::NamedTempFile::new().expect("stderr file");
    let mut cmd = Command::new(drover_bin());
    cmd.args(&args)
        .current_dir(cwd)
        .env_remove("DROVER_CONTROLLER")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(out.reopen().expect("stdout"))
        .stderr(err.reopen().expect("stderr"));
    cmd.env_remove("DROVER_TOKEN");
    if let Some(url) = url {
        cmd.env("DROVER_CONTROLLER", url);
        // As its user would: with the controller's submit token.
        if let Some(token) = submit_token(url) {
            cmd.env("DROVER_TOKEN", token);
        }
    }
    let mut child = cmd.spawn().expect("starting drover");
    let status = wait_child(&mut child, timeout).unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "`drover {}` did not finish within {timeout:?}; stderr:\n{}",
            show_args(&args),
            fs::read_to_string(err.path()).unwrap_or_default()
        )
    });
    Run {
        code: status.code(),
        stdout: fs::read_to_string(out.path()).unwrap_or_default(),
        stderr: fs::read_to_string(err.path()).unwrap_or_default(),
    }
}

fn show_args(args: &[std::ffi::OsString]) -> String {
    args.iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("waiting for a child") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------
// A real controller
// ---------------------------------------------------------------------------

/// A `drover controller` process on `127.0.0.1:0`, with its data folder under the
/// test's folder. Dropping it stops it with SIGTERM and waits for it.
pub struct Controller {
    child: Option<Child>,
    pub url: String,
    pub cwd: PathBuf,
    pub data_dir: PathBuf,
    log: tempfile::NamedTempFile,
}

impl Controller {
    /// Starts a controller in `dir` with its data in `dir/data` and the fast timings.
    pub fn start(dir: &TestDir) -> Controller {
        Controller::start_with(dir, "data", &[])
    }

    /// Starts a controller in `dir` with its data in `dir/<data>`, the fast timings
    /// and `extra` flags (`--listen 127.0.0.1:0` unless they say otherwise); waits
    /// until it says where it listens.
    pub fn start_with(dir: &TestDir, data: &str, extra: &[&str]) -> Controller {
        Controller::start_with_env(dir, data, extra, &[])
    }

    /// As `start_with`, with extra environment variables (the AWS ones of a moto).
    pub fn start_with_env(
        dir: &TestDir,
        data: &str,
        extra: &[&str],
        env: &[(&str, String)],
    ) -> Controller {
        let mut args: Vec<&str> = Vec::new();
        if !extra.contains(&"--listen") {
            args.extend(["--listen", "127.0.0.1:0"]);
        }
        args.extend(FAST);
        args.extend(extra);
        Controller::spawn(dir, data, &args, env)
    }

    /// `drover controller ARGS --data-dir dir/<data>` and nothing else: no fast
    /// timings, no default address (a configuration file may give both).
    pub fn spawn(dir: &TestDir, data: &str, args: &[&str], env: &[(&str, String)]) -> Controller {
        let data_dir = dir.join(data);
        let log = tempfile::Builder::new()
            .prefix("drover-test-controller-")
            .suffix(".log")
            .tempfile()
            .expect("log file");
        let log_file = log.reopen().expect("controller log");
        let mut cmd = Command::new(drover_bin());
        cmd.arg("controller")
            .arg("--data-dir")
            .arg(&data_dir)
            .args(args)
            .current_dir(dir.path())
            .env_remove("DROVER_CONTROLLER")
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file);
        let mut child = cmd.spawn().expect("starting drover controller");
        let url = wait_for(Duration::from_secs(30), "the controller to listen", || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "the controller exited with {status}:\n{}",
                    fs::read_to_string(log.path()).unwrap_or_default()
                );
            }
            let text = fs::read_to_string(log.path()).unwrap_or_default();
            text.lines()
                .find_map(|l| l.split("drover controller listening on ").nth(1))
                .map(|u| u.trim().to_string())
        });
        assert!(
            url.starts_with("http://127.0.0.1:"),
            "unexpected address {url}"
        );
        remember_data_dir(&url, &data_dir);
        Controller {
            child: Some(child),
            url,
            cwd: dir.path().to_path_buf(),
            data_dir,
            log,
        }
    }

    /// Runs `drover ARGS` in the test folder with `DROVER_CONTROLLER` set to us.
    pub fn drover<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_drover(&self.cwd, args, Some(&self.url), Duration::from_secs(60))
    }

    /// `drover submit FILE`; returns the id (stdout holds nothing else).
    pub fn submit(&self, file: &Path) -> String {
        let run = self
            .drover([OsStr::new("submit"), file.as_os_str()])
            .expect_ok("drover submit");
        let id = run.stdout.trim().to_string();
        assert!(
            !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric()),
            "submit printed more than an id: {run:#?}"
        );
        id
    }

    /// The job as `GET /v1/jobs/{id}` answers it.
    pub fn job(&self, id: &str) -> Value {
        let (status, body) = http(&self.url, "GET", &format!("/v1/jobs/{id}"), None);
        assert_eq!(status, 200, "GET job {id}: {body}");
        body
    }

    pub fn jobs(&self) -> Vec<Value> {
        let (status, body) = http(&self.url, "GET", "/v1/jobs", None);
        assert_eq!(status, 200, "GET jobs: {body}");
        body.as_array().cloned().unwrap_or_default()
    }

    /// Waits until the job satisfies `pred`; returns it.
    pub fn wait_job(
        &self,
        id: &str,
        within: Duration,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let job = self.job(id);
            if pred(&job) {
                return job;
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {within:?} waiting for job {id} to be {what}; last seen:\n{}\ncontroller log:\n{}",
                    serde_json::to_string_pretty(&job).unwrap_or_default(),
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the job is in a final state; returns it.
    pub fn wait_done(&self, id: &str, within: Duration) -> Value {
        self.wait_job(id, within, "finished", |j| {
            matches!(
                j["state"].as_str(),
                Some("succeeded" | "failed" | "cancelled")
            )
        })
    }

    /// The pids and instance ids of this cluster's worker processes.
    pub fn workers(&self) -> Vec<(i32, String)> {
        worker_processes(&self.data_dir)
    }

    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().ok().flatten().is_none(),
            None => false,
        }
    }

    /// SIGKILL, as a crash would: the controller gets no chance to stop its workers.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id() as i32, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait (up to `within`); returns how it exited.
    pub fn stop(&mut self, within: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        signal(child.id() as i32, nix::sys::signal::Signal::SIGTERM);
        match wait_child(&mut child, within) {
            Some(status) => Some(status),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the controller did not stop within {within:?} of SIGTERM:\n{}",
                    self.log_tail()
                );
            }
        }
    }

    /// Every blob key the controller stored (files and the small blobs' rows).
    pub fn blob_keys(&self) -> Vec<String> {
        block_on(self.blobs().keys()).expect("listing the blobs")
    }

    /// A stored blob's bytes, `None` if it is not stored.
    pub fn blob(&self, key: &str) -> Option<Vec<u8>> {
        use futures::TryStreamExt;
        let key = object_store::path::Path::from(key);
        block_on(async {
            let stream = match self.blobs().get_stream(&key).await {
                Ok(stream) => stream,
                Err(drover::blobs::BlobError::NotFound(_)) => return None,
                Err(e) => panic!("reading blob {key}: {e}"),
            };
            let chunks: Vec<bytes::Bytes> = stream.try_collect().await.expect("blob bytes");
            Some(chunks.concat())
        })
    }

    fn blobs(&self) -> drover::blobs::Blobs {
        drover::blobs::Blobs::local(&self.data_dir.join("blobs")).expect("opening the blobs")
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    pub fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// The value of an unlabelled Prometheus counter on `/metrics` (0 when absent).
    pub fn metric(&self, name: &str) -> f64 {
        let text = block_on(async {
            reqwest::get(format!("{}/metrics", self.url))
                .await
                .expect("GET /metrics")
                .text()
                .await
                .expect("body")
        });
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id() as i32, nix::sys::signal::Signal::SIGTERM);
            if wait_child(&mut child, Duration::from_secs(20)).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

// ---------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------

/// Runs a future on a fresh single-threaded runtime.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(f)
}

// ---------------------------------------------------------------------------
// Credentials: the raw-HTTP helpers speak with the token of whom they act for
// ---------------------------------------------------------------------------

/// The data folder of each controller the tests started, by its URL: where its
/// submit token and cluster secret are.
static DATA_DIRS: std::sync::Mutex<Vec<(String, PathBuf)>> = std::sync::Mutex::new(Vec::new());

fn remember_data_dir(url: &str, data_dir: &Path) {
    let mut dirs = DATA_DIRS.lock().unwrap_or_else(|p| p.into_inner());
    dirs.retain(|(u, _)| u != url);
    dirs.push((url.to_string(), data_dir.to_path_buf()));
}

fn data_dir_of(base: &str) -> Option<PathBuf> {
    let base = base.trim_end_matches('/');
    let dirs = DATA_DIRS.lock().unwrap_or_else(|p| p.into_inner());
    dirs.iter().find(|(u, _)| u == base).map(|(_, d)| d.clone())
}

/// The submit token of the controller at `base` (one the tests started).
pub fn submit_token(base: &str) -> Option<String> {
    let dir = data_dir_of(base)?;
    let text = fs::read_to_string(dir.join("submit.token")).ok()?;
    Some(text.trim().to_string())
}

/// The token the controller at `base` gave (or would give) worker `worker`.
pub fn worker_token(base: &str, worker: &str) -> Option<String> {
    let dir = data_dir_of(base)?;
    let secret = fs::read_to_string(dir.join("secret")).ok()?;
    Some(drover::auth::WorkerTokens::new(secret.trim().as_bytes()).token_for(worker))
}

/// The token a request to a controller the tests started is sent with: the
/// worker's own for the worker routes (the worker the request names), the
/// submit token for the rest. So a test that plays a worker acts as that worker
/// would, and the checks it makes (404 unknown worker, 409 stale attempt, 403
/// wrong worker) are the ones a real worker would meet.
fn token_for_request(base: &str, method: &str, path: &str, body: Option<&Value>) -> Option<String> {
    let (route, query) = path.split_once('?').unwrap_or((path, ""));
    let parts: Vec<&str> = route.trim_start_matches('/').split('/').collect();
    let named_in_body = |key: &str| body.and_then(|b| b[key].as_str()).map(str::to_string);
    let worker = match (method, parts.as_slice()) {
        ("POST", ["v1", "workers", "register"]) => named_in_body("instance"),
        ("GET", ["v1", "workers", id, "assignments"]) => Some(id.to_string()),
        ("POST", ["v1", "messages"]) => named_in_body("worker"),
        ("PUT", ["v1", "jobs", _, "attempts", _, _]) => query
            .split('&')
            .find_map(|kv| kv.strip_prefix("worker="))
            .map(str::to_string),
        ("GET", ["v1", "jobs", id, "input"]) => {
            let (_, job) = http_with_token(
                base,
                "GET",
                &format!("/v1/jobs/{id}"),
                None,
                submit_token(base).as_deref(),
            );
            job["attempts"]
                .as_array()
                .and_then(|a| a.last())
                .and_then(|a| a["worker"].as_str())
                .map(str::to_string)
        }
        _ => None,
    };
    match worker {
        Some(w) => worker_token(base, &w),
        None => submit_token(base),
    }
}

/// One JSON request; returns the status and the body as JSON (or as a string
/// value when it is not JSON). To a controller the tests started, it goes with
/// the token of whom it acts for (see `token_for_request`).
pub fn http(base: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let token = token_for_request(base, method, path, body.as_ref());
    http_with_token(base, method, path, body, token.as_deref())
}

/// One JSON request with exactly this bearer token (or none).
pub fn http_with_token(
    base: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> (u16, Value) {
    block_on(async {
        let client = reqwest::Client::new();
        let url = format!("{base}{path}");
        let mut req = match method {
            "GET" => client.get(&url),
            "POST" => client.post(&url),
            "PUT" => client.put(&url),
            other => panic!("method {other}"),
        };
        if let Some(b) = body {
            req = req.json(&b);
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    })
}

/// `PUT` of raw bytes, with the token of whom it acts for; returns the status
/// and the body text.
pub fn http_put_bytes(base: &str, path: &str, bytes: Vec<u8>) -> (u16, String) {
    let token = token_for_request(base, "PUT", path, None);
    block_on(async {
        let mut req = reqwest::Client::new()
            .put(format!("{base}{path}"))
            .body(bytes);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("PUT");
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    })
}

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

pub fn signal(pid: i32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
}

/// The command line of a process, split at NULs (empty if it is gone).
pub fn cmdline(pid: i32) -> Vec<String> {
    fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// Every live (not zombie) process id but our own.
pub fn all_pids() -> Vec<i32> {
    let me = std::process::id() as i32;
    fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
                .filter(|p| *p != me && is_alive(*p))
                .collect()
        })
        .unwrap_or_default()
}

/// Running (or stopped), not a zombie and not gone.
pub fn is_alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| {
            let state = rest.trim_start().chars().next().unwrap_or('Z');
            state != 'Z' && state != 'X'
        }),
        Err(_) => false,
    }
}

/// The process's state letter (`S`, `R`, `T` for stopped, ...).
pub fn proc_state(pid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// The parent of a process.
pub fn parent_pid(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Where a process works (its current directory), if we may see it.
pub fn proc_cwd(pid: i32) -> Option<PathBuf> {
    fs::read_link(format!("/proc/{pid}/cwd")).ok()
}

/// The local fleet's tag for the cluster whose data is in `data_dir`.
pub fn cluster_tag(data_dir: &Path) -> String {
    let abs = fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    format!("local:{}", abs.display())
}

/// `drover worker` processes of the cluster in `data_dir`: (pid, instance id).
pub fn worker_processes(data_dir: &Path) -> Vec<(i32, String)> {
    let tag = cluster_tag(data_dir);
    let mut found = Vec::new();
    for pid in all_pids() {
        let args = cmdline(pid);
        if args.get(1).map(String::as_str) != Some("worker") {
            continue;
        }
        let flag = |name: &str| {
            args.iter()
                .position(|a| a == name)
                .and_then(|i| args.get(i + 1))
                .cloned()
        };
        if flag("--cluster").as_deref() != Some(tag.as_str()) {
            continue;
        }
        if let Some(id) = flag("--instance-id") {
            found.push((pid, id));
        }
    }
    found
}

/// Processes whose current directory is under `dir` (jobs, controllers, workers
/// started there), other than this test process.
pub fn processes_working_in(dir: &Path) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|p| proc_cwd(*p).is_some_and(|cwd| cwd.starts_with(dir)))
        .collect()
}

/// Kills (SIGKILL) every process working in `dir` or naming it on its command
/// line: what a test leaves behind must not outlive it.
pub fn kill_processes_of(dir: &Path) {
    let needle = dir.to_string_lossy().into_owned();
    for _ in 0..3 {
        let victims: Vec<i32> = all_pids()
            .into_iter()
            .filter(|p| {
                proc_cwd(*p).is_some_and(|cwd| cwd.starts_with(dir))
                    || cmdline(*p).iter().any(|a| a.contains(&needle))
            })
            .collect();
        if victims.is_empty() {
            return;
        }
        for p in victims {
            signal(p, nix::sys::signal::Signal::SIGCONT);
            signal(p, nix::sys::signal::Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------

/// Every file (not folder) under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(p),
                Ok(_) => out.push(p),
                Err(_) => {}
            }
        }
    }
    out.sort();
    out
}

pub fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A `.tar.gz` built from raw entries: (name as raw header bytes, contents).
/// Names go straight into the GNU header, so `../x` and `/abs` get through.
pub fn raw_tar_gz(entries: &[(&[u8], &[u8])]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut builder = tar::Builder::new(gz);
    for (name, data) in entries {
        let mut header = tar::Header::new_gnu();
        {
            let gnu = header.as_gnu_mut().expect("a GNU header");
            assert!(
                name.len() < gnu.name.len(),
                "name too long for a raw header"
            );
            gnu.name = [0; 100];
            gnu.name[..name.len()].copy_from_slice(name);
        }
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mtime(0);
        header.set_cksum();
        builder
            .append(&header, *data)
            .expect("appending a tar entry");
    }
    let gz = builder.into_inner().expect("finishing the tar");
    gz.finish().expect("finishing the gzip")
}
