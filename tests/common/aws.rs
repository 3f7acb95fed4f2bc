//! The setup every AWS test shares: a `drover.toml` that puts the state in
//! DynamoDB, the blobs in S3, the hints on SNS and the fleet on EC2 (all on one
//! moto, or on a fault proxy in front of it), `drover init` for it, a controller
//! that runs with that file's own timings, looks into moto's EC2, and the waits
//! and checks of the fault tests (jobs polled through a throttled store,
//! metrics, launch keys, a fault proxy's refusals).

use super::{
    drover_bin,
    fault_proxy::{FaultProxy, Match, Seen},
    moto::Moto,
    Controller, TestDir,
};
use aws_sdk_ec2::types::{Filter, Instance};
use serde_json::Value;
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

/// The account moto answers for.
pub const ACCOUNT: &str = "123456789012";

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// What goes into one test's `drover.toml`. `new` gives the short timings of
/// the tests; change the fields before `write`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Also the DynamoDB table prefix; the bucket and topic are named after it.
    pub cluster: String,
    /// The controller's port: workers reach it at `http://127.0.0.1:<port>`, so
    /// a controller restarted on it is found again.
    pub port: u16,
    /// Where the controller's AWS clients go: moto, or a proxy in front of it.
    pub endpoint_url: String,
    /// moto itself (its instance metadata paths).
    pub moto_url: String,
    /// Where SNS signing certificates are fetched from.
    pub cert_base_url: String,
    pub heartbeat_timeout: String,
    pub ping_interval: String,
    pub reconcile_interval: String,
    pub max_workers: u32,
    pub slots_per_worker: u32,
    pub idle_timeout: String,
    /// `[fleet] leak_grace`, if not the default.
    pub leak_grace: Option<String>,
}

impl Settings {
    pub fn new(cluster: &str, moto: &Moto) -> Settings {
        Settings {
            cluster: cluster.to_string(),
            port: free_port(),
            endpoint_url: moto.url.clone(),
            moto_url: moto.url.clone(),
            cert_base_url: moto.url.clone(),
            heartbeat_timeout: "3s".into(),
            ping_interval: "300ms".into(),
            reconcile_interval: "300ms".into(),
            max_workers: 3,
            slots_per_worker: 2,
            idle_timeout: "2s".into(),
            leak_grace: None,
        }
    }

    pub fn topic_arn(&self) -> String {
        format!("arn:aws:sns:us-east-1:{ACCOUNT}:drover-{}", self.cluster)
    }

    /// The address workers (and SNS) reach the controller at.
    pub fn public_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn toml(&self) -> String {
        let s = self;
        let leak_grace = s
            .leak_grace
            .as_ref()
            .map(|g| format!("leak_grace = \"{g}\"\n"))
            .unwrap_or_default();
        format!(
            r#"cluster = "{cluster}"
listen = "127.0.0.1:{port}"
public_url = "{public_url}"
state = "dynamodb://{cluster}?region=us-east-1"
blobs = "s3://drover-{cluster}/jobs"
hints = "sns://{topic}"
heartbeat_timeout = "{heartbeat}"
ping_interval = "{ping}"
reconcile_interval = "{reconcile}"

[aws]
endpoint_url = "{endpoint}"
imds_endpoint = "{moto}"

[sns]
cert_base_url = "{certs}"

[fleet]
provider = "ec2"
min_workers = 0
max_workers = {max_workers}
slots_per_worker = {slots}
idle_timeout = "{idle}"
{leak_grace}
[fleet.ec2]
image_id = "ami-12c6146b"
instance_type = "t3.micro"
"#,
            cluster = s.cluster,
            port = s.port,
            public_url = s.public_url(),
            topic = s.topic_arn(),
            heartbeat = s.heartbeat_timeout,
            ping = s.ping_interval,
            reconcile = s.reconcile_interval,
            endpoint = s.endpoint_url,
            moto = s.moto_url,
            certs = s.cert_base_url,
            max_workers = s.max_workers,
            slots = s.slots_per_worker,
            idle = s.idle_timeout,
        )
    }

    /// Writes `drover.toml` into the test folder; returns its path.
    pub fn write(&self, dir: &TestDir) -> PathBuf {
        dir.write("drover.toml", &self.toml())
    }
}

/// `drover ARGS` with the moto environment, in the test folder.
pub fn drover_aws(dir: &TestDir, moto: &Moto, args: &[&str]) -> Output {
    Command::new(drover_bin())
        .args(args)
        .current_dir(dir.path())
        .envs(moto.env())
        .env_remove("DROVER_CONTROLLER")
        .output()
        .expect("run drover")
}

/// `drover init --config FILE`: the tables, the bucket and the topic.
pub fn init(dir: &TestDir, moto: &Moto, config: &Path) {
    let config = config.to_str().expect("utf-8 path");
    let init = drover_aws(dir, moto, &["init", "--config", config]);
    assert!(
        init.status.success(),
        "drover init failed:\n{}{}",
        String::from_utf8_lossy(&init.stdout),
        String::from_utf8_lossy(&init.stderr)
    );
}

/// A `drover controller --config FILE` with its data folder in `dir/data` and
/// nothing but the file's settings (no `FAST` flags: the file's timings hold).
pub fn start_controller(dir: &TestDir, config: &Path, moto: &Moto) -> Controller {
    let config = config.to_str().expect("utf-8 path");
    Controller::spawn(dir, "data", &["--config", config], &moto.env())
}

fn filter(name: &str, values: &[&str]) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.iter().map(|v| v.to_string()).collect()))
        .build()
}

/// The cluster's EC2 instances in these states (every state if empty), as
/// moto shows them, every page.
pub fn instances(moto: &Moto, cluster: &str, states: &[&str]) -> Vec<Instance> {
    super::block_on(async {
        let ec2 = aws_sdk_ec2::Client::new(&moto.sdk_config());
        let mut found = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let mut req = ec2
                .describe_instances()
                .filters(filter("tag:drover:cluster", &[cluster]))
                .set_next_token(next.take());
            if !states.is_empty() {
                req = req.filters(filter("instance-state-name", states));
            }
            let page = req.send().await.expect("describe instances");
            for r in page.reservations() {
                found.extend(r.instances().iter().cloned());
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_string()),
                _ => return found,
            }
        }
    })
}

/// How many of the cluster's instances are pending or running.
pub fn running_instances(moto: &Moto, cluster: &str) -> usize {
    instances(moto, cluster, &["pending", "running"]).len()
}

/// An instance's tag value.
pub fn tag<'a>(instance: &'a Instance, key: &str) -> Option<&'a str> {
    instance
        .tags()
        .iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

// ---------------------------------------------------------------------------
// Jobs, metrics and instances, as the fault tests look at them
// ---------------------------------------------------------------------------

/// The job, if the controller answers 200 (while its store is throttled it may
/// not, and a test polling it must not fail for that).
pub fn job_if_answered(ctl: &Controller, id: &str) -> Option<Value> {
    let (status, body) = super::http(&ctl.url, "GET", &format!("/v1/jobs/{id}"), None);
    (status == 200).then_some(body)
}

pub fn is_final(job: &Value) -> bool {
    matches!(
        job["state"].as_str(),
        Some("succeeded" | "failed" | "cancelled")
    )
}

/// Waits until every job is in a state `pred` accepts; returns them.
pub fn wait_jobs(
    ctl: &Controller,
    ids: &[String],
    within: Duration,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + within;
    let mut last: HashMap<&str, Value> = HashMap::new();
    loop {
        for id in ids {
            if let Some(job) = job_if_answered(ctl, id) {
                last.insert(id, job);
            }
        }
        let done = ids
            .iter()
            .all(|id| last.get(id.as_str()).is_some_and(&pred));
        if done {
            return ids.iter().map(|id| last[id.as_str()].clone()).collect();
        }
        if Instant::now() >= deadline {
            let seen: Vec<String> = ids
                .iter()
                .map(|id| match last.get(id.as_str()) {
                    Some(j) => format!("{id}: {} {}", j["state"], j["attempts"]),
                    None => format!("{id}: never answered"),
                })
                .collect();
            panic!(
                "timed out after {within:?} waiting for every job to be {what}:\n{}\ncontroller log:\n{}",
                seen.join("\n"),
                ctl.log_tail()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The job succeeded at its first attempt: nothing was lost or run twice.
pub fn assert_succeeded_once(job: &Value, ctl: &Controller) {
    let attempts = job["attempts"].as_array().cloned().unwrap_or_default();
    assert!(
        job["state"] == "succeeded" && attempts.len() == 1 && attempts[0]["outcome"] == "succeeded",
        "expected one succeeded attempt:\n{job:#}\ncontroller log:\n{}",
        ctl.log_tail()
    );
}

/// `/metrics` as text.
pub fn metrics_text(ctl: &Controller) -> String {
    super::block_on(async {
        reqwest::get(format!("{}/metrics", ctl.url))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics body")
    })
}

/// The sum of every sample of `name` whose labels contain `labels`.
pub fn metric_sum(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (series, value) = rest.rsplit_once(' ')?;
            (series.is_empty() || series.starts_with('{'))
                .then_some(())
                .filter(|_| series.contains(labels))?;
            value.trim().parse::<f64>().ok()
        })
        .sum()
}

/// Every request the proxy refused was sent again, and went through: the
/// caller waited the throttling out instead of giving up.
pub fn assert_every_refusal_was_retried(seen: &[Seen]) {
    for (i, s) in seen.iter().enumerate().filter(|(_, s)| s.refused) {
        let retried = seen[i + 1..]
            .iter()
            .any(|later| later.kind == s.kind && !later.refused);
        assert!(
            retried,
            "request {i} ({:?}) was refused and never went through afterwards",
            s.kind
        );
    }
}

/// Each `drover:launch-key` is carried by one instance at most, over every
/// instance of the cluster moto ever saw (terminated ones too).
pub fn assert_each_launch_key_launched_once(moto: &Moto, cluster: &str) -> usize {
    let all = instances(moto, cluster, &[]);
    let mut keys: HashMap<String, Vec<String>> = HashMap::new();
    for i in &all {
        if let Some(key) = tag(i, "drover:launch-key") {
            keys.entry(key.to_string())
                .or_default()
                .push(i.instance_id().unwrap_or("?").to_string());
        }
    }
    let doubled: Vec<_> = keys.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(
        doubled.is_empty(),
        "launch keys launched twice: {doubled:?}"
    );
    keys.len()
}

pub fn wait_fleet_empty(moto: &Moto, cluster: &str, ctl: &Controller) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while running_instances(moto, cluster) > 0 {
        assert!(
            Instant::now() < deadline,
            "the fleet did not scale back to zero within 30s:\n{}",
            ctl.log_tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// An instance tagged as the cluster's, launched behind drover's back.
pub fn launch_leaked_instance(moto: &Moto, cluster: &str) -> String {
    use aws_sdk_ec2::types::{InstanceType, ResourceType, Tag, TagSpecification};
    super::block_on(async {
        let ec2 = aws_sdk_ec2::Client::new(&moto.sdk_config());
        let out = ec2
            .run_instances()
            .image_id("ami-12c6146b")
            .instance_type(InstanceType::T3Micro)
            .min_count(1)
            .max_count(1)
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Instance)
                    .tags(Tag::builder().key("drover:cluster").value(cluster).build())
                    .build(),
            )
            .send()
            .await
            .expect("launching the leaked instance");
        out.instances()
            .first()
            .and_then(|i| i.instance_id())
            .expect("an instance id")
            .to_string()
    })
}

pub fn instance_state(moto: &Moto, cluster: &str, ec2_id: &str) -> String {
    instances(moto, cluster, &[])
        .iter()
        .find(|i| i.instance_id() == Some(ec2_id))
        .and_then(|i| i.state())
        .and_then(|s| s.name())
        .map(|n| n.as_str().to_string())
        .unwrap_or_else(|| "gone".to_string())
}

/// Waits until the proxy has refused `n` requests that match.
pub fn wait_refused(proxy: &FaultProxy, what: &Match, n: usize, ctl: &Controller) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while proxy.count(what).1 < n {
        assert!(
            Instant::now() < deadline,
            "the proxy refused {} of {n} {what:?} requests in 30s:\n{}",
            proxy.count(what).1,
            ctl.log_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
