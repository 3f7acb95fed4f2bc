//! A `drover worker` started by hand rather than by the controller's fleet, for
//! tests that freeze, starve or limit one worker: it logs to `dir/worker.log`,
//! keeps its attempts under `dir/work`, and is thawed and killed when dropped.

use super::{all_pids, drover_bin, proc_cwd, signal, worker_token, TestDir};
use nix::sys::signal::Signal;
use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
};

pub struct HandWorker {
    pub child: Child,
    pub log: PathBuf,
    pub work: PathBuf,
}

impl HandWorker {
    /// Starts worker `instance` (one slot, pinging every 300ms, plus `extra`
    /// flags) for the controller at `url`, with the token its fleet would give it.
    pub fn start(dir: &TestDir, url: &str, instance: &str, extra: &[&str]) -> HandWorker {
        let token = worker_token(url, instance).expect("the cluster's worker token");
        let log = dir.join("worker.log");
        let work = dir.join("work");
        let file = std::fs::File::create(&log).expect("worker log");
        let child = Command::new(drover_bin())
            .arg("worker")
            .args(["--controller", url, "--instance-id", instance])
            .args(["--slots", "1", "--ping-interval", "300ms"])
            .args(extra)
            .arg("--work-dir")
            .arg(&work)
            .current_dir(dir.path())
            .env("RUST_LOG", "info")
            .env("DROVER_WORKER_TOKEN", token)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .spawn()
            .expect("starting drover worker");
        HandWorker { child, log, work }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The job processes it started (they work in its work folder).
    pub fn job_processes(&self) -> Vec<i32> {
        all_pids()
            .into_iter()
            .filter(|p| *p != self.pid())
            .filter(|p| proc_cwd(*p).is_some_and(|cwd| cwd.starts_with(&self.work)))
            .collect()
    }
}

impl Drop for HandWorker {
    fn drop(&mut self) {
        signal(self.pid(), Signal::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
