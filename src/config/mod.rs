//! The controller's configuration: embedded defaults, overridden by `drover.toml`,
//! overridden by command-line flags.

mod urls;

pub use urls::{BlobsUrl, FleetProvider, HintsUrl, StateUrl};

use reconcilers::model::FleetSettings;
use serde::Deserialize;
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7700";
pub const DEFAULT_DATA_DIR: &str = ".drover";
pub const DEFAULT_CONFIG_FILE: &str = "drover.toml";

/// Durations are written like `3s`, `500ms` or `2m`, in files and flags alike.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("`{s}` is not a duration like 3s or 500ms: {e}"))
}

mod duration_serde {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| super::parse_duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// `drover.toml`, as written by people: every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    /// The cluster's name: tagged on every instance, so controllers of different
    /// clusters sharing an account never touch each other's instances.
    pub cluster: Option<String>,
    /// The address workers and SNS reach this controller at (default: on EC2 its
    /// public hostname from the instance metadata, else `http://<listen>`).
    pub public_url: Option<String>,
    pub state: Option<String>,
    pub blobs: Option<String>,
    pub hints: Option<String>,
    #[serde(default)]
    pub aws: crate::aws::AwsSettings,
    #[serde(default)]
    pub sns: SnsFile,
    #[serde(default, deserialize_with = "duration_serde::option")]
    pub heartbeat_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration_serde::option")]
    pub ping_interval: Option<Duration>,
    #[serde(default, deserialize_with = "duration_serde::option")]
    pub reconcile_interval: Option<Duration>,
    #[serde(default)]
    pub fleet: FleetFile,
    #[serde(default)]
    pub limits: LimitsFile,
    #[serde(default)]
    pub leader: LeaderFile,
    /// `[auth]`: where the submit token and the cluster secret live.
    #[serde(default)]
    pub auth: crate::auth::AuthSettings,
}

/// `[leader]`: the lease that decides which of the controllers sharing a store
/// runs the reconcilers (docs/leader.md).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaderFile {
    /// How long the lease lasts unless renewed (default 10s): the longest a
    /// dead leader's work waits for another controller to take over.
    #[serde(default, deserialize_with = "duration_serde::option")]
    pub lease: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetFile {
    /// `local` (worker processes on this machine) or `ec2`. (A key inside
    /// `[fleet]`, because TOML cannot hold both `fleet = "ec2"` and a `[fleet]` table.)
    pub provider: Option<FleetProvider>,
    /// `[fleet.ec2]`: read by the EC2 fleet itself.
    pub ec2: Option<toml::Table>,
    /// An instance of the cluster unknown to the store is terminated this long
    /// after its launch (default 30s).
    #[serde(default, deserialize_with = "duration_serde::option")]
    pub leak_grace: Option<Duration>,
    /// An instance whose worker has not registered this long after its launch is
    /// terminated (default 2m).
    #[serde(default, deserialize_with = "duration_serde::option")]
    pub registration_timeout: Option<Duration>,
    pub min_workers: Option<u32>,
    pub max_workers: Option<u32>,
    pub slots_per_worker: Option<u32>,
    /// Jobs a worker holds per slot beyond the running one (default 1).
    pub prefetch_per_slot: Option<u32>,
    #[serde(default, deserialize_with = "duration_serde::option")]
    pub idle_timeout: Option<Duration>,
}

/// `[sns]`: how the controller checks the SNS messages it receives.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnsFile {
    /// Fetch signing certificates from this base instead of the SigningCertURL's
    /// host (which must still be sns.<region>.amazonaws.com): for tests on moto.
    pub cert_base_url: Option<String>,
    /// Messages older than this are refused as replays (default 1h).
    #[serde(default, deserialize_with = "duration_serde::option")]
    pub max_message_age: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    pub max_input_bytes: Option<u64>,
    pub max_output_bytes: Option<u64>,
    /// The disk one attempt's folder may take on a local worker (no limit by default).
    pub max_sandbox_bytes: Option<u64>,
    /// A client must send a request's headers within this (default 30s).
    #[serde(default, deserialize_with = "duration_serde::option")]
    pub header_timeout: Option<Duration>,
    /// A request body may pause at most this long between two pieces (default 30s).
    #[serde(default, deserialize_with = "duration_serde::option")]
    pub body_idle_timeout: Option<Duration>,
}

impl ConfigFile {
    /// Reads `path`; with `required = false` a missing file means the defaults.
    pub fn load(path: &Path, required: bool) -> anyhow::Result<ConfigFile> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                Ok(ConfigFile::default())
            }
            Err(e) => Err(anyhow::anyhow!("reading {}: {e}", path.display())),
        }
    }
}

/// Everything the controller runs with.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub cluster: String,
    pub public_url: Option<String>,
    /// `None`: SQLite in the data folder.
    pub state: Option<StateUrl>,
    /// `None`: a folder in the data folder.
    pub blobs: Option<BlobsUrl>,
    pub hints: HintsUrl,
    pub fleet_provider: FleetProvider,
    pub ec2: Option<toml::Table>,
    pub leak_grace: Duration,
    pub registration_timeout: Duration,
    pub aws: crate::aws::AwsSettings,
    pub sns_cert_base_url: Option<String>,
    pub sns_max_message_age: Duration,
    pub heartbeat_timeout: Duration,
    pub ping_interval: Duration,
    /// How often the loops run when nothing wakes them.
    pub reconcile_interval: Duration,
    pub fleet: FleetSettings,
    /// Jobs a worker holds per slot beyond the one running there, so that it
    /// starts the next as soon as one ends (`reconcilers::dispatch::capacity`).
    pub prefetch_per_slot: u32,
    pub max_input_bytes: u64,
    pub max_output_bytes: u64,
    /// Passed to the local fleet's workers (`drover worker --max-sandbox-bytes`).
    pub max_sandbox_bytes: Option<u64>,
    /// Slow clients: headers must arrive within `header_timeout`, and a body
    /// may not pause longer than `body_idle_timeout` (see `api::serve`).
    pub header_timeout: Duration,
    pub body_idle_timeout: Duration,
    /// A job still `Created` (its submit never finished) after this long is deleted.
    pub abandoned_after: Duration,
    /// Workers started by the local fleet stop their jobs within this after SIGTERM.
    pub kill_grace: Duration,
    /// The leader lease's duration; the leader renews it every third of it.
    pub leader_lease: Duration,
    /// Where the API's tokens come from (default: files in the data folder).
    pub auth: crate::auth::AuthSettings,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get() as u32);
        ControllerConfig {
            listen: DEFAULT_LISTEN
                .parse()
                .expect("the default address is valid"),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            cluster: "drover".to_string(),
            public_url: None,
            state: None,
            blobs: None,
            hints: HintsUrl::None,
            fleet_provider: FleetProvider::Local,
            ec2: None,
            leak_grace: Duration::from_secs(30),
            registration_timeout: Duration::from_secs(120),
            aws: crate::aws::AwsSettings::default(),
            sns_cert_base_url: None,
            sns_max_message_age: Duration::from_secs(3600),
            heartbeat_timeout: Duration::from_secs(15),
            ping_interval: Duration::from_secs(5),
            reconcile_interval: Duration::from_secs(2),
            fleet: FleetSettings {
                min_workers: 0,
                max_workers: 1,
                slots_per_worker: cores,
                idle_timeout_ms: 60_000,
            },
            prefetch_per_slot: 1,
            max_input_bytes: 1 << 30,
            max_output_bytes: 1 << 30,
            max_sandbox_bytes: None,
            header_timeout: Duration::from_secs(30),
            body_idle_timeout: Duration::from_secs(30),
            abandoned_after: Duration::from_secs(24 * 3600),
            kill_grace: Duration::from_secs(5),
            leader_lease: Duration::from_secs(10),
            auth: crate::auth::AuthSettings::default(),
        }
    }
}

impl ControllerConfig {
    /// The defaults with the file's values on top.
    pub fn from_file(file: ConfigFile) -> anyhow::Result<ControllerConfig> {
        let mut c = ControllerConfig::default();
        let mut problems = Vec::new();
        if let Some(v) = file.cluster {
            c.cluster = v;
        }
        c.public_url = file.public_url;
        if let Some(s) = file.state {
            c.state = StateUrl::parse(&s).map_err(|e| problems.push(e)).ok();
        }
        if let Some(s) = file.blobs {
            c.blobs = BlobsUrl::parse(&s).map_err(|e| problems.push(e)).ok();
        }
        if let Some(s) = file.hints {
            c.hints = HintsUrl::parse(&s).unwrap_or_else(|e| {
                problems.push(e);
                HintsUrl::None
            });
        }
        c.aws = file.aws;
        c.auth = file.auth;
        c.sns_cert_base_url = file.sns.cert_base_url;
        if let Some(v) = file.sns.max_message_age {
            c.sns_max_message_age = v;
        }
        if let Some(v) = file.listen {
            c.listen = v;
        }
        if let Some(v) = file.data_dir {
            c.data_dir = v;
        }
        if let Some(v) = file.heartbeat_timeout {
            c.heartbeat_timeout = v;
        }
        if let Some(v) = file.ping_interval {
            c.ping_interval = v;
        }
        if let Some(v) = file.reconcile_interval {
            c.reconcile_interval = v;
        }
        let f = file.fleet;
        c.fleet_provider = f.provider.unwrap_or_default();
        c.ec2 = f.ec2;
        if let Some(v) = f.leak_grace {
            c.leak_grace = v;
        }
        if let Some(v) = f.registration_timeout {
            c.registration_timeout = v;
        }
        if let Some(v) = f.min_workers {
            c.fleet.min_workers = v;
        }
        if let Some(v) = f.max_workers {
            c.fleet.max_workers = v;
        }
        if let Some(v) = f.slots_per_worker {
            c.fleet.slots_per_worker = v;
        }
        if let Some(v) = f.prefetch_per_slot {
            c.prefetch_per_slot = v;
        }
        if let Some(v) = f.idle_timeout {
            c.fleet.idle_timeout_ms = v.as_millis() as u64;
        }
        if let Some(v) = file.limits.max_input_bytes {
            c.max_input_bytes = v;
        }
        if let Some(v) = file.limits.max_output_bytes {
            c.max_output_bytes = v;
        }
        if let Some(v) = file.limits.max_sandbox_bytes {
            c.max_sandbox_bytes = Some(v);
        }
        if let Some(v) = file.leader.lease {
            c.leader_lease = v;
        }
        if let Some(v) = file.limits.header_timeout {
            c.header_timeout = v;
        }
        if let Some(v) = file.limits.body_idle_timeout {
            c.body_idle_timeout = v;
        }
        problems.extend(c.problems());
        report(problems)?;
        Ok(c)
    }

    /// Every problem at once, so a person fixes their file in one go.
    pub fn validate(&self) -> anyhow::Result<()> {
        report(self.problems())
    }

    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let cluster_ok = !self.cluster.is_empty()
            && self
                .cluster
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !cluster_ok {
            problems.push(format!(
                "cluster `{}` must be letters, digits, - or _",
                self.cluster
            ));
        }
        if self.fleet_provider == FleetProvider::Ec2 && self.ec2.is_none() {
            problems.push(
                "fleet.provider = \"ec2\" needs a [fleet.ec2] table (image_id or launch_template, ...)".into(),
            );
        }
        if self.fleet.max_workers < self.fleet.min_workers {
            problems.push(format!(
                "fleet.max_workers ({}) is below fleet.min_workers ({})",
                self.fleet.max_workers, self.fleet.min_workers
            ));
        }
        if self.fleet.slots_per_worker == 0 {
            problems.push("fleet.slots_per_worker must be at least 1".to_string());
        }
        if self.ping_interval >= self.heartbeat_timeout {
            problems.push(format!(
                "ping_interval ({}) must be shorter than heartbeat_timeout ({}), or every worker is lost",
                humantime::format_duration(self.ping_interval),
                humantime::format_duration(self.heartbeat_timeout)
            ));
        }
        if self.header_timeout.is_zero() || self.body_idle_timeout.is_zero() {
            problems.push(
                "limits.header_timeout and limits.body_idle_timeout must be above zero".to_string(),
            );
        }
        if self.leader_lease < Duration::from_millis(500) {
            problems.push(format!(
                "leader.lease ({}) must be at least 500ms: the leader renews it every third of it",
                humantime::format_duration(self.leader_lease)
            ));
        }
        if self.reconcile_interval.is_zero() {
            problems.push("reconcile_interval must be above zero".to_string());
        }
        problems
    }

    pub fn state_url(&self) -> StateUrl {
        self.state
            .clone()
            .unwrap_or_else(|| StateUrl::Sqlite(self.data_dir.join("state.db")))
    }
    pub fn blobs_url(&self) -> BlobsUrl {
        self.blobs
            .clone()
            .unwrap_or_else(|| BlobsUrl::File(self.data_dir.join("blobs")))
    }
    pub fn workers_dir(&self) -> PathBuf {
        self.data_dir.join("workers")
    }
}

fn report(problems: Vec<String>) -> anyhow::Result<()> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(anyhow::anyhow!(
            "invalid configuration:\n  {}",
            problems.join("\n  ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("soon")
            .unwrap_err()
            .contains("`soon` is not a duration"));
    }

    #[test]
    fn a_file_overrides_the_defaults_and_every_problem_is_reported() {
        let file: ConfigFile = toml::from_str(
            "heartbeat_timeout = \"3s\"\nping_interval = \"5s\"\n[fleet]\nmin_workers = 4\nmax_workers = 2\nslots_per_worker = 0\n",
        )
        .expect("valid toml");
        let err = ControllerConfig::from_file(file).unwrap_err().to_string();
        assert!(
            err.contains("max_workers (2) is below fleet.min_workers (4)"),
            "{err}"
        );
        assert!(err.contains("slots_per_worker must be at least 1"), "{err}");
        assert!(err.contains("ping_interval (5s) must be shorter"), "{err}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<ConfigFile>("listn = \"1.2.3.4:5\"").is_err());
    }

    #[test]
    fn the_leader_lease_is_read_from_its_table_and_a_too_short_one_is_refused() {
        let file: ConfigFile = toml::from_str("[leader]\nlease = \"4s\"\n").expect("valid toml");
        let config = ControllerConfig::from_file(file).expect("valid");
        assert_eq!(config.leader_lease, Duration::from_secs(4));
        assert_eq!(
            ControllerConfig::default().leader_lease,
            Duration::from_secs(10)
        );
        let file: ConfigFile = toml::from_str("[leader]\nlease = \"100ms\"\n").expect("valid toml");
        let err = ControllerConfig::from_file(file).unwrap_err().to_string();
        assert!(
            err.contains("leader.lease (100ms) must be at least 500ms"),
            "{err}"
        );
        let err = toml::from_str::<ConfigFile>("[leader]\nlease = \"soon\"\n").unwrap_err();
        assert!(
            err.to_string().contains("`soon` is not a duration"),
            "{err}"
        );
    }
}
