//! The fleet simulator: EC2 instances in moto become local `drover worker`
//! processes, as a booting instance would start its worker from its user-data.
//!
//! A thread polls moto's DescribeInstances (every 200 ms) for the running
//! instances of a cluster, reads each new one's user-data, parses it with the
//! product's own `parse_user_data`, and starts one worker with that instance id,
//! controller, slots, ping interval and token (in the environment). When an
//! instance is terminated or gone, its worker gets SIGTERM, then SIGKILL after a
//! grace. Dropping the simulator stops every worker it started.

use aws_sdk_ec2::types::{Filter, InstanceAttributeName};
use base64::Engine as _;
use drover::fleet::ec2::{parse_user_data, TAG_CLUSTER, TOKEN_ENV};
use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

const POLL: Duration = Duration::from_millis(200);
/// Time a worker gets to stop after SIGTERM.
const KILL_GRACE: Duration = Duration::from_secs(3);

struct SimWorker {
    instance_id: String,
    child: Child,
    /// Set once the worker was sent SIGTERM: when it gets SIGKILL.
    kill_at: Option<Instant>,
}

#[derive(Default)]
struct SimState {
    /// By EC2 instance id.
    workers: HashMap<String, SimWorker>,
    /// Running instances whose user-data starts no drover worker.
    ignored: HashSet<String>,
    /// What went wrong last (for a test's panic message).
    last_error: Option<String>,
}

pub struct FleetSim {
    state: Arc<Mutex<SimState>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

struct Poller {
    client: aws_sdk_ec2::Client,
    cluster: String,
    drover_bin: PathBuf,
    work_root: PathBuf,
    state: Arc<Mutex<SimState>>,
}

impl FleetSim {
    /// The simulator as the tests run it: the `drover` under test, instances'
    /// work folders under `<dir>/sim`.
    pub fn in_test_dir(moto_url: &str, cluster: &str, dir: &super::TestDir) -> FleetSim {
        FleetSim::start(
            moto_url,
            cluster,
            Path::new(super::drover_bin()),
            &dir.join("sim"),
        )
    }

    pub fn start(moto_url: &str, cluster: &str, drover_bin: &Path, work_root: &Path) -> FleetSim {
        let creds = aws_sdk_ec2::config::Credentials::new("testing", "testing", None, None, "sim");
        let config = aws_sdk_ec2::Config::builder()
            .region(aws_sdk_ec2::config::Region::new(super::moto::REGION))
            .endpoint_url(moto_url)
            .credentials_provider(creds)
            .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
            .build();
        let state = Arc::new(Mutex::new(SimState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let poller = Poller {
            client: aws_sdk_ec2::Client::from_conf(config),
            cluster: cluster.to_string(),
            drover_bin: drover_bin.to_path_buf(),
            work_root: work_root.to_path_buf(),
            state: state.clone(),
        };
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the simulator's runtime");
            while !stopping.load(Ordering::Relaxed) {
                rt.block_on(poller.tick());
                std::thread::sleep(POLL);
            }
            poller.stop_all();
        });
        FleetSim {
            state,
            stop,
            thread: Some(thread),
        }
    }

    /// The drover instance ids whose worker process is alive.
    pub fn instance_ids(&self) -> Vec<String> {
        let mut st = self.lock();
        let mut ids: Vec<String> = st
            .workers
            .values_mut()
            .filter_map(|w| {
                let alive = w.kill_at.is_none() && matches!(w.child.try_wait(), Ok(None));
                alive.then(|| w.instance_id.clone())
            })
            .collect();
        ids.sort();
        ids
    }

    /// The process id of the worker of a drover instance, while it runs.
    pub fn pid(&self, instance_id: &str) -> Option<i32> {
        let mut st = self.lock();
        let w = st
            .workers
            .values_mut()
            .find(|w| w.instance_id == instance_id)?;
        matches!(w.child.try_wait(), Ok(None)).then(|| w.child.id() as i32)
    }

    pub fn last_error(&self) -> Option<String> {
        self.lock().last_error.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for FleetSim {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Poller {
    fn lock(&self) -> std::sync::MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn tick(&self) {
        let running = match self.running_instances().await {
            Ok(r) => r,
            Err(e) => {
                self.lock().last_error = Some(format!("DescribeInstances: {e}"));
                return;
            }
        };
        let new: Vec<String> = {
            let st = self.lock();
            running
                .iter()
                .filter(|id| !st.workers.contains_key(*id) && !st.ignored.contains(*id))
                .cloned()
                .collect()
        };
        for ec2_id in new {
            if let Err(e) = self.start_worker(&ec2_id).await {
                let mut st = self.lock();
                st.last_error = Some(format!("{ec2_id}: {e}"));
                st.ignored.insert(ec2_id);
            }
        }
        let mut st = self.lock();
        let now = Instant::now();
        for (ec2_id, w) in st.workers.iter_mut() {
            if !running.contains(ec2_id) && w.kill_at.is_none() {
                if matches!(w.child.try_wait(), Ok(None)) {
                    signal(&w.child, nix::sys::signal::Signal::SIGTERM);
                }
                w.kill_at = Some(now + KILL_GRACE);
            }
            if w.kill_at.is_some_and(|t| now >= t) && matches!(w.child.try_wait(), Ok(None)) {
                let _ = w.child.kill();
            }
        }
        // Forget stopped workers once they have exited (reaped by try_wait).
        st.workers
            .retain(|_, w| w.kill_at.is_none() || matches!(w.child.try_wait(), Ok(None)));
    }

    async fn running_instances(&self) -> Result<HashSet<String>, String> {
        let mut found = HashSet::new();
        let mut next: Option<String> = None;
        loop {
            let page = self
                .client
                .describe_instances()
                .filters(
                    Filter::builder()
                        .name(format!("tag:{TAG_CLUSTER}"))
                        .values(&self.cluster)
                        .build(),
                )
                .filters(
                    Filter::builder()
                        .name("instance-state-name")
                        .values("running")
                        .build(),
                )
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| aws_sdk_ec2::error::DisplayErrorContext(e).to_string())?;
            for r in page.reservations() {
                found.extend(
                    r.instances()
                        .iter()
                        .filter_map(|i| i.instance_id().map(String::from)),
                );
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_string()),
                _ => return Ok(found),
            }
        }
    }

    async fn start_worker(&self, ec2_id: &str) -> Result<(), String> {
        let attr = self
            .client
            .describe_instance_attribute()
            .instance_id(ec2_id)
            .attribute(InstanceAttributeName::UserData)
            .send()
            .await
            .map_err(|e| aws_sdk_ec2::error::DisplayErrorContext(e).to_string())?;
        let encoded = attr.user_data().and_then(|v| v.value()).unwrap_or_default();
        let script = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|e| format!("user-data is not base64: {e}"))?;
        let script = String::from_utf8_lossy(&script);
        let launch = parse_user_data(&script)
            .ok_or_else(|| format!("user-data starts no drover worker:\n{script}"))?;
        let dir = self.work_root.join(launch.instance_id.as_str());
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let log = std::fs::File::create(dir.join("worker.log")).map_err(|e| e.to_string())?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(&self.drover_bin)
            .arg("worker")
            .args(["--controller", &launch.controller])
            .args(["--instance-id", launch.instance_id.as_str()])
            .args(["--slots", &launch.slots.to_string()])
            .arg("--ping-interval")
            .arg(humantime::format_duration(launch.ping_interval).to_string())
            .arg("--work-dir")
            .arg(dir.join("work"))
            .env(TOKEN_ENV, &launch.token)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", self.drover_bin.display()))?;
        self.lock().workers.insert(
            ec2_id.to_string(),
            SimWorker {
                instance_id: launch.instance_id.to_string(),
                child,
                kill_at: None,
            },
        );
        Ok(())
    }

    /// SIGTERM to every worker, SIGKILL to those still there after the grace.
    fn stop_all(&self) {
        let mut st = self.lock();
        for w in st.workers.values_mut() {
            if matches!(w.child.try_wait(), Ok(None)) {
                signal(&w.child, nix::sys::signal::Signal::SIGTERM);
            }
        }
        let deadline = Instant::now() + KILL_GRACE;
        for w in st.workers.values_mut() {
            while Instant::now() < deadline && matches!(w.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = w.child.kill();
            let _ = w.child.wait();
        }
        st.workers.clear();
    }
}

fn signal(child: &Child, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig);
}
