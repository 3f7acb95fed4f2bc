//! Security, black-box: a real controller and its real workers on loopback.
//!
//! - Bearer tokens: no token is 401, a wrong one 403, and neither changes
//!   anything; a worker's token acts for that worker and its jobs only; the
//!   tokens never reach argv, logs, metrics or a job's environment; the CLI
//!   finds the submit token by itself.
//! - Slow clients: a request trickling its headers or stalling its body is cut
//!   off, while long polls and uploads that keep moving are not.
//! - Hostile JDL through `drover jdl check`: refused with an error, never a panic.

mod common;

use common::{http, http_with_token, submit_token, worker_token, Controller, TestDir};
use futures::StreamExt as _;
use serde_json::{json, Value};
use std::{
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

/// A job that stays running until cancelled.
const SLEEPER: &str = "[\n  Executable = \"/bin/sleep\";\n  Arguments = \"60\";\n]\n";

fn running_job(ctl: &Controller, dir: &TestDir) -> (String, Value) {
    let id = ctl.submit(&dir.write("sleep.jdl", SLEEPER));
    let job = ctl.wait_job(&id, Duration::from_secs(20), "running", |j| {
        j["state"] == "running"
    });
    (id, job)
}

// ---------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------

#[test]
fn a_request_without_a_token_is_refused_with_401_and_changes_nothing() {
    let dir = TestDir::new();
    let ctl = Controller::start(&dir);
    let (id, job) = running_job(&ctl, &dir);
    let worker = job["attempts"][0]["worker"].as_str().expect("worker");
    let calls = [
        ("POST", "/v1/jobs".to_string(), None),
        ("GET", "/v1/jobs".to_string(), None),
        ("POST", format!("/v1/jobs/{id}/cancel"), None),
        ("GET", format!("/v1/jobs/{id}/output"), None),
        (
            "POST",
            "/v1/workers/register".to_string(),
            Some(json!({"instance": "intruder", "slots": 1})),
        ),
        ("GET", format!("/v1/workers/{worker}/assignments"), None),
        (
            "POST",
            "/v1/messages".to_string(),
            Some(
                json!({"type": "finished", "worker": worker, "job": id, "attempt": 1,
                        "outcome": "succeeded", "exit_code": 0, "reason": null, "has_output": false}),
            ),
        ),
    ];
    for (method, path, body) in calls {
        let (status, answer) = http_with_token(&ctl.url, method, &path, body, None);
        assert_eq!(status, 401, "{method} {path}: {answer}");
        let error = answer["error"].as_str().unwrap_or("");
        assert!(
            error.contains("DROVER_TOKEN"),
            "says where a token is: {answer}"
        );
    }
    assert_eq!(ctl.job(&id), job, "the job did not change");
    assert_eq!(ctl.jobs().len(), 1, "no job was allocated");
    ctl.drover(["cancel", &id]).expect_ok("cancel");
}

#[test]
fn a_wrong_token_is_refused_with_403_and_changes_nothing() {
    let dir = TestDir::new();
    let ctl = Controller::start(&dir);
    let (id, job) = running_job(&ctl, &dir);
    let worker = job["attempts"][0]["worker"].as_str().expect("worker");
    // Another cluster's tokens: a random submit token, and a worker token for
    // the right worker made with another secret.
    let forged_worker =
        drover::auth::WorkerTokens::new(b"not this cluster's secret").token_for(worker);
    let refusals = r#"drover_api_auth_refusals_total{reason="unknown_token"}"#;
    let refused_before = ctl.metric(refusals);
    for token in ["0123456789abcdef0123456789abcdef", forged_worker.as_str()] {
        for (method, path) in [
            ("POST", "/v1/jobs".to_string()),
            ("POST", format!("/v1/jobs/{id}/cancel")),
            ("GET", format!("/v1/workers/{worker}/assignments")),
        ] {
            let (status, answer) = http_with_token(&ctl.url, method, &path, None, Some(token));
            assert_eq!(status, 403, "{method} {path}: {answer}");
        }
    }
    assert_eq!(ctl.job(&id), job, "the job did not change");
    assert_eq!(ctl.jobs().len(), 1, "no job was allocated");
    // Counted, not logged: an unauthenticated caller cannot fill the log.
    assert_eq!(ctl.metric(refusals), refused_before + 6.0);
    let log = ctl.log_text();
    assert!(!log.contains("unknown token"), "{log}");
    ctl.drover(["cancel", &id]).expect_ok("cancel");
}

#[test]
fn health_and_metrics_need_no_token() {
    let dir = TestDir::new();
    let ctl = Controller::start(&dir);
    for path in ["/healthz", "/metrics"] {
        let (status, body) = http_with_token(&ctl.url, "GET", path, None, None);
        assert_eq!(status, 200, "{path}: {body}");
    }
}

#[test]
fn a_worker_token_acts_only_for_its_own_worker_and_the_jobs_assigned_to_it() {
    let dir = TestDir::new();
    let ctl = Controller::start(&dir);
    let (id, job) = running_job(&ctl, &dir);
    let victim = job["attempts"][0]["worker"]
        .as_str()
        .expect("worker")
        .to_string();
    // A second, genuine worker of the cluster (as a second instance would be).
    let intruder = worker_token(&ctl.url, "intruder").expect("token");
    let as_intruder = |method: &str, path: &str, body: Option<Value>| {
        http_with_token(&ctl.url, method, path, body, Some(&intruder))
    };
    let (status, body) = as_intruder(
        "POST",
        "/v1/workers/register",
        Some(json!({"instance": "intruder", "slots": 1})),
    );
    assert_eq!(status, 200, "its own registration: {body}");

    let report = |kind: &str| {
        json!({"type": kind, "worker": victim, "job": id, "attempt": 1, "held": [], "free_slots": 1,
               "outcome": "succeeded", "exit_code": 0, "reason": null, "has_output": false})
    };
    let refused: Vec<(&str, String, Option<Value>)> = vec![
        (
            "POST",
            "/v1/workers/register".into(),
            Some(json!({"instance": victim, "slots": 1})),
        ),
        ("POST", "/v1/messages".into(), Some(report("ping"))),
        ("POST", "/v1/messages".into(), Some(report("started"))),
        ("POST", "/v1/messages".into(), Some(report("finished"))),
        // Its own name on a job that is not its own.
        (
            "POST",
            "/v1/messages".into(),
            Some(
                json!({"type": "finished", "worker": "intruder", "job": id, "attempt": 1,
                        "outcome": "succeeded", "exit_code": 0, "reason": null, "has_output": false}),
            ),
        ),
        ("GET", format!("/v1/workers/{victim}/assignments"), None),
        ("GET", format!("/v1/jobs/{id}/input"), None),
        // Hints are for the cluster's controllers.
        (
            "POST",
            "/v1/messages".into(),
            Some(json!({"type": "cancel", "job": id})),
        ),
        // The submitter API.
        ("POST", "/v1/jobs".into(), None),
        ("GET", "/v1/jobs".into(), None),
        ("GET", format!("/v1/jobs/{id}"), None),
        ("POST", format!("/v1/jobs/{id}/cancel"), None),
    ];
    for (method, path, body) in refused {
        let (status, answer) = as_intruder(method, &path, body.clone());
        assert_eq!(status, 403, "{method} {path} {body:?}: {answer}");
    }
    for query in [format!("worker={victim}"), "worker=intruder".to_string()] {
        let path = format!("/v1/jobs/{id}/attempts/1/output?{query}");
        let (status, answer) = block_put(&ctl.url, &path, &intruder);
        assert_eq!(status, 403, "PUT {path}: {answer}");
    }
    // And the submit token is no worker's.
    let submit = submit_token(&ctl.url).expect("submit token");
    let (status, answer) = http_with_token(
        &ctl.url,
        "POST",
        "/v1/messages",
        Some(report("ping")),
        Some(&submit),
    );
    assert_eq!(status, 403, "{answer}");
    let (status, answer) = http_with_token(
        &ctl.url,
        "POST",
        "/v1/workers/register",
        Some(json!({"instance": "w9", "slots": 1})),
        Some(&submit),
    );
    assert_eq!(status, 403, "{answer}");

    let after = ctl.job(&id);
    assert_eq!(
        after["version"], job["version"],
        "nothing was written: {after:#}"
    );
    assert_eq!(after["state"], "running");
    ctl.drover(["cancel", &id]).expect_ok("cancel");
}

fn block_put(base: &str, path: &str, token: &str) -> (u16, String) {
    common::block_on(async {
        let resp = reqwest::Client::new()
            .put(format!("{base}{path}"))
            .bearer_auth(token)
            .body("not an archive")
            .send()
            .await
            .expect("PUT");
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    })
}

/// Prints the job's environment, and tries to set the worker's variables.
const ENV_JOB: &str = r#"[
  Executable = "/usr/bin/env";
  StdOutput = "env.txt";
  OutputSandbox = {"env.txt"};
  Environment = {"DROVER_WORKER_TOKEN=stolen", "DROVER_TOKEN=stolen", "DROVER_INSTANCE=stolen", "MINE=kept"};
]
"#;

#[test]
fn tokens_never_reach_argv_logs_metrics_or_the_jobs_environment() {
    let dir = TestDir::new();
    let ctl = Controller::start(&dir);
    let id = ctl.submit(&dir.write("env.jdl", ENV_JOB));
    let job = ctl.wait_done(&id, Duration::from_secs(30));
    assert_eq!(job["state"], "succeeded", "{job:#}");
    let worker = job["attempts"][0]["worker"].as_str().expect("worker");
    let submit = submit_token(&ctl.url).expect("submit token");
    let worker_tok = worker_token(&ctl.url, worker).expect("worker token");
    let signature = worker_tok
        .split_once('.')
        .expect("id.signature")
        .1
        .to_string();

    // The worker got its token by environment, not on its command line.
    let (pid, _) = ctl
        .workers()
        .into_iter()
        .find(|(_, w)| w == worker)
        .expect("the worker process");
    // The worker is not dumpable, so only a process with CAP_SYS_PTRACE (the
    // test when it runs as root) may read its environment.
    match std::fs::read(format!("/proc/{pid}/environ")) {
        Ok(environ) => {
            let environ = String::from_utf8_lossy(&environ);
            assert!(
                environ.contains(&format!("DROVER_WORKER_TOKEN={worker_tok}")),
                "the worker holds its own token"
            );
            assert!(
                !environ.contains(&submit),
                "the worker does not hold the submit token"
            );
        }
        Err(e) => assert!(
            !running_as_root(),
            "only root may read a non-dumpable worker's environ: {e}"
        ),
    }
    let argv = common::cmdline(pid).join(" ");
    assert!(
        !argv.contains(&signature),
        "a token on the command line: {argv}"
    );

    // Nowhere to be read: the job's environment and logs, the controller's
    // and the worker's logs, the metrics.
    ctl.drover(["fetch", &id, "--out", "out"])
        .expect_ok("fetch");
    let env = common::read(&dir.join("out").join("env.txt"));
    assert!(env.contains("MINE=kept"), "{env}");
    assert!(
        !env.contains("stolen"),
        "the JDL set a worker variable:\n{env}"
    );
    assert!(!env.contains("DROVER_WORKER_TOKEN"), "{env}");
    let worker_log = common::read(&ctl.data_dir.join("workers").join(worker).join("worker.log"));
    let notes = ctl
        .drover(["logs", &id, "--stream", "worker"])
        .expect_ok("logs");
    assert!(
        notes.stdout.contains("reserved"),
        "the JDL's attempt is noted: {}",
        notes.stdout
    );
    let metrics = common::block_on(async {
        reqwest::get(format!("{}/metrics", ctl.url))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    });
    for (what, text) in [
        ("job environment", env.as_str()),
        ("controller log", ctl.log_text().as_str()),
        ("worker log", worker_log.as_str()),
        ("job's worker log", notes.stdout.as_str()),
        ("metrics", metrics.as_str()),
    ] {
        assert!(!text.contains(&submit), "the submit token is in the {what}");
        assert!(
            !text.contains(&signature),
            "a worker token is in the {what}"
        );
    }
}

/// Whether this test runs with root's effective uid (which CAP_SYS_PTRACE
/// comes with).
fn running_as_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        == Some("0")
}

/// A job that tries to read its worker's environment (where the worker token
/// is), and, to show the same user may read a dumpable process's, that of a
/// process it started itself.
const ENVIRON_JOB: &str = r#"[
  Executable = "/bin/sh";
  Arguments = "-c 'cat /proc/$PPID/comm; if cat /proc/$PPID/environ > /dev/null; then echo worker:read; else echo worker:refused; fi; sleep 5 & if cat /proc/$!/environ > /dev/null; then echo sibling:read; fi; kill $!'";
  StdOutput = "out.txt";
  StdError = "err.txt";
  OutputSandbox = {"out.txt", "err.txt"};
]
"#;

/// A `drover worker` started by hand, as an ordinary user: `nobody` when the
/// test runs as root (root's CAP_SYS_PTRACE reads any process, so the case
/// that matters, a job of the worker's own unprivileged user, needs one).
struct UnprivilegedWorker {
    child: std::process::Child,
    _work: tempfile::TempDir,
}

impl UnprivilegedWorker {
    fn start(url: &str, instance: &str) -> UnprivilegedWorker {
        use std::os::unix::fs::PermissionsExt;
        let work = tempfile::Builder::new()
            .prefix("drover-unprivileged-")
            .tempdir()
            .expect("work dir");
        std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod work dir");
        let mut cmd = if running_as_root() {
            let mut c = std::process::Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
                .arg(common::drover_bin());
            c
        } else {
            std::process::Command::new(common::drover_bin())
        };
        let log = std::fs::File::create(work.path().join("worker.log")).expect("log");
        let child = cmd
            .arg("worker")
            .args(["--controller", url, "--instance-id", instance])
            .args(["--slots", "1", "--ping-interval", "300ms", "--work-dir"])
            .arg(work.path().join("attempts"))
            .current_dir(work.path())
            .env("RUST_LOG", "info")
            .env(
                "DROVER_WORKER_TOKEN",
                worker_token(url, instance).expect("token"),
            )
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("starting drover worker");
        UnprivilegedWorker { child, _work: work }
    }
}

impl Drop for UnprivilegedWorker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_job_cannot_read_its_workers_environment_where_the_token_is() {
    let dir = TestDir::new();
    let ctl = Controller::start_with(&dir, "data", &["--max-workers", "0"]);
    let _worker = UnprivilegedWorker::start(&ctl.url, "unprivileged-1");
    let id = ctl.submit(&dir.write("environ.jdl", ENVIRON_JOB));
    let job = ctl.wait_done(&id, Duration::from_secs(30));
    assert_eq!(job["state"], "succeeded", "{job:#}");
    ctl.drover(["fetch", &id, "--out", "out"])
        .expect_ok("fetch");
    let out = common::read(&dir.join("out").join("out.txt"));
    let err = common::read(&dir.join("out").join("err.txt"));
    // It aimed at its worker, and its user may read a dumpable process's
    // environ: what stops it is the worker's own choice.
    assert!(
        out.starts_with("drover\n"),
        "the job's parent: {out}\n{err}"
    );
    assert!(out.contains("sibling:read"), "{out}\n{err}");
    assert!(
        out.contains("worker:refused"),
        "a job read its worker's environ: {out}\n{err}"
    );
}

#[test]
fn the_cli_finds_the_submit_token_in_the_data_folder_or_says_where_to_look() {
    let dir = TestDir::new();
    let ctl = Controller::start_with(&dir, ".drover", &[]);
    // No DROVER_TOKEN: `run_drover` without a URL passes none.
    let jobs = |extra: &[&str]| {
        let mut args = vec!["jobs", "--controller", ctl.url.as_str()];
        args.extend(extra);
        common::run_drover(dir.path(), args, None, Duration::from_secs(30))
    };
    jobs(&[]).expect_ok("jobs, with the token of ./.drover");
    let elsewhere = dir.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).expect("mkdir");
    let run = jobs(&["--data-dir", elsewhere.to_str().expect("utf-8")]);
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert!(
        run.stderr.contains("needs a token") && run.stderr.contains("DROVER_TOKEN"),
        "{run:#?}"
    );
}

#[test]
fn a_worker_without_its_token_says_so_and_exits() {
    let dir = TestDir::new();
    let run = dir.drover([
        "worker",
        "--controller",
        "http://127.0.0.1:9",
        "--instance-id",
        "w1",
    ]);
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert!(
        run.stderr.contains("DROVER_WORKER_TOKEN is not set"),
        "{run:#?}"
    );
}

// ---------------------------------------------------------------------------
// Slow clients
// ---------------------------------------------------------------------------

/// A controller that gives slow clients one second.
fn impatient_controller(dir: &TestDir) -> Controller {
    let config = dir.write(
        "impatient.toml",
        "[limits]\nheader_timeout = \"1s\"\nbody_idle_timeout = \"1s\"\n",
    );
    Controller::start_with(dir, "data", &["--config", config.to_str().expect("utf-8")])
}

fn connect(url: &str) -> TcpStream {
    let addr = url.trim_start_matches("http://");
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    s
}

/// Sends `bytes` one every `pause` until the server closes the connection;
/// returns how many it took, or `None` if it took them all.
fn trickle(stream: &mut TcpStream, bytes: &[u8], pause: Duration) -> Option<usize> {
    for (i, b) in bytes.iter().enumerate() {
        if stream.write_all(&[*b]).is_err() {
            return Some(i);
        }
        std::thread::sleep(pause);
        // A closed connection shows as end of file (or a reset) on a peek.
        stream.set_nonblocking(true).expect("nonblocking");
        let mut buf = [0u8; 1];
        let closed = matches!(stream.peek(&mut buf), Ok(0))
            || matches!(stream.peek(&mut buf), Err(e) if e.kind() != std::io::ErrorKind::WouldBlock);
        stream.set_nonblocking(false).expect("blocking");
        if closed {
            return Some(i + 1);
        }
    }
    None
}

#[test]
fn a_client_trickling_its_headers_is_cut_off() {
    let dir = TestDir::new();
    let ctl = impatient_controller(&dir);
    let mut stream = connect(&ctl.url);
    let request = format!(
        "GET /v1/jobs HTTP/1.1\r\nHost: x\r\nX-Slow: {}\r\n\r\n",
        "a".repeat(60)
    );
    let started = Instant::now();
    let sent = trickle(&mut stream, request.as_bytes(), Duration::from_millis(100));
    let sent = sent.unwrap_or_else(|| panic!("the server waited for all {} bytes", request.len()));
    println!(
        "header trickle: cut off after {sent} of {} bytes, {:?}",
        request.len(),
        started.elapsed()
    );
    assert!(sent < request.len());
}

#[test]
fn a_client_stalling_its_upload_is_cut_off_and_nothing_is_stored() {
    let dir = TestDir::new();
    let ctl = impatient_controller(&dir);
    let (status, body) = http(&ctl.url, "POST", "/v1/jobs", None);
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().expect("id").to_string();
    let token = submit_token(&ctl.url).expect("token");
    let mut stream = connect(&ctl.url);
    let head = format!(
        "PUT /v1/jobs/{id}/input HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: 100000\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).expect("head");
    stream.write_all(&[0u8; 1000]).expect("some of the body");
    // Then nothing: the server must give up on us.
    let started = Instant::now();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    println!(
        "body stall: connection ended after {:?}: {}",
        started.elapsed(),
        answer.lines().next().unwrap_or("(closed)")
    );
    assert!(
        answer.starts_with("HTTP/1.1 408") && answer.contains("stalled"),
        "a stalled upload is answered 408: {answer}"
    );
    let (status, body) = http(
        &ctl.url,
        "POST",
        &format!("/v1/jobs/{id}/submit"),
        Some(json!({"jdl": "Executable = \"/bin/true\";\n"})),
    );
    assert_eq!(status, 409, "no input was stored: {body}");
}

#[test]
fn a_json_body_over_2_mib_is_refused_with_413_and_changes_nothing() {
    let dir = TestDir::new();
    let ctl = Controller::start(&dir);
    let (status, body) = http(&ctl.url, "POST", "/v1/jobs", None);
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().expect("id").to_string();
    let huge = json!({"jdl": "x".repeat(3 << 20)});
    let (status, body) = http(
        &ctl.url,
        "POST",
        &format!("/v1/jobs/{id}/submit"),
        Some(huge),
    );
    assert_eq!(status, 413, "{body}");
    assert_eq!(ctl.job(&id)["state"], "created");
}

#[test]
fn long_polls_and_uploads_that_keep_moving_outlive_the_slow_client_limits() {
    let dir = TestDir::new();
    let ctl = impatient_controller(&dir);
    let (id, _) = running_job(&ctl, &dir);
    // A wait three times the limits: answered when its own timeout passes.
    let (status, job) = http(
        &ctl.url,
        "GET",
        &format!("/v1/jobs/{id}/wait?timeout_ms=3000"),
        None,
    );
    assert_eq!(status, 200, "{job}");
    assert_eq!(job["state"], "running");
    ctl.drover(["cancel", &id]).expect_ok("cancel");

    // An upload of 2.5 s, a piece every 250 ms (under the 1 s pause allowed).
    let (status, body) = http(&ctl.url, "POST", "/v1/jobs", None);
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().expect("id").to_string();
    let archive = common::raw_tar_gz(&[(b"data.bin", &[7u8; 200_000])]);
    let token = submit_token(&ctl.url).expect("token");
    let status = common::block_on(async move {
        let pieces: Vec<Vec<u8>> = archive
            .chunks(archive.len() / 10 + 1)
            .map(<[u8]>::to_vec)
            .collect();
        let stream = futures::stream::iter(pieces).then(|piece| async move {
            tokio::time::sleep(Duration::from_millis(250)).await;
            Ok::<_, std::io::Error>(piece)
        });
        reqwest::Client::new()
            .put(format!("{}/v1/jobs/{id}/input", ctl.url))
            .bearer_auth(token)
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
            .expect("PUT")
            .status()
    });
    assert_eq!(status.as_u16(), 204, "a slow but moving upload is accepted");
}

// ---------------------------------------------------------------------------
// Hostile JDL through the real binary
// ---------------------------------------------------------------------------

/// A job whose output (48 MB of random bytes) is larger than the loopback
/// socket buffers: a client that stops reading it leaves the download stuck.
const BIG_OUTPUT_JOB: &str = r#"[
  Executable = "/bin/sh";
  Arguments = "-c 'head -c 48000000 /dev/urandom > big.bin'";
  OutputSandbox = {"big.bin"};
]
"#;

#[test]
fn a_download_nobody_reads_does_not_hold_the_controllers_shutdown() {
    let dir = TestDir::new();
    let mut ctl = Controller::start(&dir);
    let id = ctl.submit(&dir.write("big.jdl", BIG_OUTPUT_JOB));
    let job = ctl.wait_done(&id, Duration::from_secs(60));
    assert_eq!(job["state"], "succeeded", "{job:#}");
    let mut stream = connect(&ctl.url);
    let token = submit_token(&ctl.url).expect("submit token");
    write!(
        stream,
        "GET /v1/jobs/{id}/output HTTP/1.1\r\nHost: drover\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
    .expect("request");
    let mut first = [0u8; 12];
    stream.read_exact(&mut first).expect("the answer starts");
    assert_eq!(
        &first,
        b"HTTP/1.1 200",
        "{}",
        String::from_utf8_lossy(&first)
    );
    // Never read further: the controller's writes block. It must still stop
    // (after its drain timeout), not wait for this client forever.
    ctl.stop(Duration::from_secs(40))
        .expect("the controller stopped");
    let log = ctl.log_text();
    assert!(log.contains("still in flight"), "{log}");
    drop(stream);
}

#[test]
fn hostile_jdl_files_are_refused_with_an_error_never_a_panic() {
    let dir = TestDir::new();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "deep.jdl",
            format!("[\n  Arguments = {};\n]\n", "{".repeat(100_000)).into_bytes(),
            "nesting deeper",
        ),
        (
            "deep_expr.jdl",
            format!("[ Executable = a; Rank = {}x; ]\n", "(".repeat(100_000)).into_bytes(),
            "nesting deeper",
        ),
        (
            "huge.jdl",
            format!("Executable = \"/bin/true\";\n// {}\n", "x".repeat(2 << 20)).into_bytes(),
            "1 MiB",
        ),
        (
            "latin1.jdl",
            b"Executable = \"/bin/caf\xe9\";\n".to_vec(),
            "UTF-8",
        ),
        (
            "nul.jdl",
            b"Executable = \"/bin/true\0\";\n".to_vec(),
            "NUL",
        ),
    ];
    for (name, bytes, says) in cases {
        let path = dir.join(name);
        std::fs::write(&path, &bytes).expect("write");
        let run = dir.drover(["jdl", "check", path.to_str().expect("utf-8")]);
        assert_eq!(run.code, Some(1), "{name}: {run:#?}");
        assert!(!run.stderr.contains("panicked"), "{name}: {run:#?}");
        let said = format!("{}{}", run.stdout, run.stderr);
        assert!(
            said.contains(name),
            "{name}: the error names the file: {said}"
        );
        assert!(said.contains(says), "{name}: expected `{says}` in: {said}");
    }
}
