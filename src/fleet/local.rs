//! The local fleet: each instance is a `drover worker` process on this machine.
//!
//! What exists is read from the operating system, not remembered: `list` scans
//! `/proc` for worker processes whose command line carries this cluster's tag.
//! So a restarted controller sees the workers its predecessor started (adopts the
//! ones it has records of; the fleet reconciler terminates the others as leaked),
//! and a reused process id is never mistaken for a worker.

use super::{Fleet, FleetError};
use async_trait::async_trait;
use nix::{sys::signal, unistd::Pid};
use reconcilers::model::{Instance, InstanceId, LaunchKey, ObservedInstance, Timestamp};
use std::{
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};
use tokio::sync::Notify;

pub struct LocalFleet {
    /// The `drover` binary to start workers from.
    pub exe: PathBuf,
    /// Where workers reach the controller.
    pub controller_url: String,
    /// The file holding that address, which workers re-read when they lose it.
    pub controller_file: PathBuf,
    /// This cluster's tag, on every worker's command line.
    pub cluster: String,
    /// Workers keep their sandboxes and logs under `<dir>/<instance-id>/`.
    pub workers_dir: PathBuf,
    pub slots: u32,
    pub ping_interval: Duration,
    /// Time a worker gets to stop its jobs after SIGTERM before SIGKILL.
    pub kill_grace: Duration,
    /// Woken when a worker process exits, so the fleet loop notices at once.
    pub exited: Arc<Notify>,
    /// Each worker's token, passed in its environment.
    pub worker_tokens: crate::auth::WorkerTokens,
    /// The sandbox quota of each attempt (`[limits] max_sandbox_bytes`).
    pub max_sandbox_bytes: Option<u64>,
}

/// A worker process as seen in /proc.
struct WorkerProcess {
    pid: i32,
    instance: InstanceId,
    launched_at: Timestamp,
}

impl LocalFleet {
    fn scan(&self) -> std::io::Result<Vec<WorkerProcess>> {
        let mut found = Vec::new();
        for (pid, dir) in processes()? {
            // A process may exit between readdir and read: skip it.
            let Ok(raw) = std::fs::read(dir.join("cmdline")) else {
                continue;
            };
            if let Some(p) = parse_worker_cmdline(pid, &raw, &self.cluster) {
                if !is_zombie(pid) {
                    found.push(p);
                }
            }
        }
        Ok(found)
    }

    fn find(&self, id: &InstanceId) -> Result<Option<WorkerProcess>, FleetError> {
        let all = self
            .scan()
            .map_err(|e| FleetError::List(format!("reading /proc: {e}")))?;
        Ok(all.into_iter().find(|p| &p.instance == id))
    }
}

/// Every process of the machine: its id and its folder under /proc.
fn processes() -> std::io::Result<impl Iterator<Item = (i32, PathBuf)>> {
    Ok(std::fs::read_dir("/proc")?.flatten().filter_map(|entry| {
        let pid = entry.file_name().to_str()?.parse::<i32>().ok()?;
        Some((pid, entry.path()))
    }))
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// Recognises `drover worker ... --cluster TAG --instance-id ID --launched-at MS`.
fn parse_worker_cmdline(pid: i32, raw: &[u8], cluster: &str) -> Option<WorkerProcess> {
    let args: Vec<&str> = raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| std::str::from_utf8(a).ok())
        .collect::<Option<_>>()?;
    if args.get(1) != Some(&"worker") {
        return None;
    }
    let flag = |name: &str| {
        args.iter()
            .position(|a| *a == name)
            .and_then(|i| args.get(i + 1))
            .copied()
    };
    if flag("--cluster")? != cluster {
        return None;
    }
    Some(WorkerProcess {
        pid,
        instance: InstanceId::new(flag("--instance-id")?),
        launched_at: Timestamp(flag("--launched-at")?.parse().ok()?),
    })
}

#[async_trait]
impl Fleet for LocalFleet {
    async fn launch(&self, instance: &Instance) -> Result<Option<String>, FleetError> {
        let err = |message: String| FleetError::Launch {
            instance: instance.id.clone(),
            message,
        };
        // Idempotent: a worker of this instance may already run (a repeated launch).
        if let Some(p) = self.find(&instance.id)? {
            return Ok(Some(p.pid.to_string()));
        }
        let dir = self.workers_dir.join(instance.id.as_str());
        std::fs::create_dir_all(&dir)
            .map_err(|e| err(format!("creating {}: {e}", dir.display())))?;
        let log = std::fs::File::create(dir.join("worker.log")).map_err(|e| {
            err(format!(
                "creating {}: {e}",
                dir.join("worker.log").display()
            ))
        })?;
        let log2 = log.try_clone().map_err(|e| err(e.to_string()))?;
        let mut cmd = std::process::Command::new(&self.exe);
        cmd.arg("worker")
            .args(["--controller", &self.controller_url])
            .arg("--controller-file")
            .arg(&self.controller_file)
            .args(["--instance-id", instance.id.as_str()])
            .args(["--cluster", &self.cluster])
            .args(["--launched-at", &instance.launched_at.0.to_string()])
            .args(["--slots", &self.slots.to_string()])
            .arg("--ping-interval")
            .arg(humantime::format_duration(self.ping_interval).to_string())
            .arg("--work-dir")
            .arg(dir.join("work"))
            .args(
                self.max_sandbox_bytes
                    .map(|max| format!("--max-sandbox-bytes={max}")),
            )
            // The token goes by environment, never argv: /proc/*/cmdline is
            // readable by every user. The submit token the controller may have
            // in its own environment is not the worker's business.
            .env(
                crate::auth::WORKER_TOKEN_ENV,
                self.worker_tokens.token_for(instance.id.as_str()),
            )
            .env_remove(crate::auth::SUBMIT_TOKEN_ENV)
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(log2)
            // Its own process group: a Ctrl-C meant for the controller must not
            // reach the workers; the controller stops them itself.
            .process_group(0);
        let mut child = tokio::process::Command::from(cmd)
            .spawn()
            .map_err(|e| err(format!("starting {}: {e}", self.exe.display())))?;
        let pid = child.id().map(|p| p.to_string());
        let exited = self.exited.clone();
        let id = instance.id.clone();
        tokio::spawn(async move {
            // Reap it, and tell the fleet loop it is gone.
            let status = child.wait().await;
            tracing::info!(instance = %id, ?status, "worker process exited");
            exited.notify_one();
        });
        Ok(pid)
    }

    async fn terminate(&self, instance: &Instance) -> Result<(), FleetError> {
        let Some(p) = self.find(&instance.id)? else {
            // Already gone; a worker killed with -9 may have left job processes.
            kill_orphaned_jobs(&instance.id);
            return Ok(());
        };
        let pid = Pid::from_raw(p.pid);
        if let Err(e) = signal::kill(pid, signal::Signal::SIGTERM) {
            if e != nix::errno::Errno::ESRCH {
                return Err(FleetError::Terminate {
                    instance: instance.id.clone(),
                    message: e.to_string(),
                });
            }
        }
        let grace = self.kill_grace;
        let cluster = self.cluster.clone();
        let id = instance.id.clone();
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            // Still the same worker (the pid may have been reused)? Then kill it.
            let raw = std::fs::read(format!("/proc/{}/cmdline", p.pid)).unwrap_or_default();
            if parse_worker_cmdline(p.pid, &raw, &cluster).is_some_and(|w| w.instance == id)
                && !is_zombie(p.pid)
            {
                tracing::warn!(instance = %id, "worker ignored SIGTERM; sending SIGKILL");
                let _ = signal::kill(pid, signal::Signal::SIGKILL);
            }
            kill_orphaned_jobs(&id);
        });
        Ok(())
    }

    async fn list(&self) -> Result<Vec<ObservedInstance>, FleetError> {
        let procs = self
            .scan()
            .map_err(|e| FleetError::List(format!("reading /proc: {e}")))?;
        Ok(procs
            .into_iter()
            .map(|p| ObservedInstance {
                launch_key: Some(LaunchKey::new(p.instance.as_str())),
                id: p.instance,
                launched_at: p.launched_at,
            })
            .collect())
    }

    fn name(&self) -> &'static str {
        "local"
    }
}

/// Kills what is left of the jobs of a worker that is gone. A job's direct child
/// dies with its worker (parent-death signal), but what that child started lives
/// on; every job process carries `DROVER_INSTANCE=<id>` in its environment.
fn kill_orphaned_jobs(instance: &InstanceId) {
    let marker = format!("DROVER_INSTANCE={instance}");
    let Ok(all) = processes() else { return };
    for (pid, dir) in all {
        let Ok(environ) = std::fs::read(dir.join("environ")) else {
            continue;
        };
        if environ
            .split(|b| *b == 0)
            .any(|var| var == marker.as_bytes())
        {
            tracing::info!(%instance, pid, "killing a job process its worker left behind");
            let _ = signal::kill(Pid::from_raw(pid), signal::Signal::SIGKILL);
        }
    }
}

/// The tag of a configuration's local cluster: its data folder's, unless its
/// state is a SQLite file named in the configuration. Then it is that file's:
/// the controllers sharing the file are one cluster (each with its own data
/// folder), and each one sees, adopts or stops the workers any of them started.
pub fn cluster_tag_of(config: &crate::config::ControllerConfig) -> String {
    match &config.state {
        Some(crate::config::StateUrl::Sqlite(file)) => {
            let abs = std::fs::canonicalize(file).unwrap_or_else(|_| file.clone());
            format!("local:{}", abs.display())
        }
        _ => cluster_tag(&config.data_dir),
    }
}

/// The tag of the local cluster whose state lives in `data_dir`.
pub fn cluster_tag(data_dir: &Path) -> String {
    let abs = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    format!("local:{}", abs.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_command_lines_are_recognised_by_cluster() {
        let raw = b"/x/drover\0worker\0--controller\0http://a\0--instance-id\0w-1\0--cluster\0local:/d\0--launched-at\x0042\0";
        let p = parse_worker_cmdline(7, raw, "local:/d").expect("a worker");
        assert_eq!(
            (p.pid, p.instance.as_str(), p.launched_at),
            (7, "w-1", Timestamp(42))
        );
        assert!(parse_worker_cmdline(7, raw, "local:/other").is_none());
        assert!(parse_worker_cmdline(7, b"/bin/sh\0-c\0worker\0", "local:/d").is_none());
    }
}
