//! The EC2 fleet (AWS): instances are EC2 instances tagged with the cluster's name.
//!
//! Every instance carries `drover:cluster`, `drover:instance` (drover's id, which
//! is also its worker's id) and `drover:launch-key`; the EC2 instance id (`i-...`)
//! is the provider ref the controller stores. What exists is read from EC2
//! (`DescribeInstances` filtered by the cluster tag), never remembered, so a
//! restarted controller sees everything its predecessor launched.
//!
//! A launch is idempotent twice over: its `ClientToken` is derived from the launch
//! key (EC2 then returns the first instance instead of starting a second), and
//! before launching, the launch keys of a batch are looked up by tag (emulators
//! such as moto ignore ClientToken). Launches are collected in short windows and
//! sent together (see `batch`); every call is retried on throttling (see `calls`).
//! docs/aws-ec2.md tells the whole story.

mod batch;
mod calls;
mod settings;
mod user_data;

pub use batch::BatchWindow;
pub use calls::{ApiError, Backoff, Ec2CallStats};
pub use settings::{Ec2Settings, LaunchTemplate, DEFAULT_DROVER_PATH};
pub use user_data::{parse_user_data, render_user_data, WorkerLaunch, LOG_FILE, TOKEN_ENV};

use super::{Fleet, FleetError};
use async_trait::async_trait;
use aws_sdk_ec2::{
    config::retry::RetryConfig,
    types::{
        Filter, HttpTokensState, IamInstanceProfileSpecification, InstanceMetadataOptionsRequest,
        InstanceType, LaunchTemplateSpecification, ResourceType, ShutdownBehavior, Tag,
        TagSpecification,
    },
};
use base64::Engine as _;
use calls::Calls;
use reconcilers::model::{Instance, InstanceId, LaunchKey, ObservedInstance, Timestamp};
use std::{
    collections::HashMap,
    sync::{Arc, OnceLock},
    time::Duration,
};
use tokio::sync::{mpsc, oneshot};

pub const TAG_CLUSTER: &str = "drover:cluster";
pub const TAG_INSTANCE: &str = "drover:instance";
pub const TAG_LAUNCH_KEY: &str = "drover:launch-key";

/// Instance states that still exist and cost: `list` shows them. Shutting-down
/// and terminated instances are gone.
const LIVE_STATES: &[&str] = &["pending", "running", "stopping", "stopped"];

/// EC2 accepts at most 200 values in one filter.
const MAX_FILTER_VALUES: usize = 200;

pub struct Ec2Fleet {
    inner: Arc<Inner>,
    window: BatchWindow,
    /// The batcher's inbox; the batcher starts with the first launch (it needs a
    /// tokio runtime, which `new` may not run in) and stops when the fleet drops.
    launches: OnceLock<mpsc::UnboundedSender<batch::LaunchRequest>>,
}

/// What the batcher's tasks share with the fleet.
#[derive(Clone)]
struct Inner {
    client: aws_sdk_ec2::Client,
    calls: Calls,
    cluster: String,
    controller_url: String,
    settings: Ec2Settings,
    /// Makes each instance's worker token from its id (which its launch key is
    /// made from): the same launch always sends the same user-data, which EC2's
    /// ClientToken requires (a token reused with other parameters is refused as
    /// IdempotentParameterMismatch). The controller's own (`with_worker_tokens`),
    /// or a random key's for a fleet used on its own.
    worker_tokens: crate::auth::WorkerTokens,
    /// DescribeInstances' MaxResults (EC2 allows 5 to 1000).
    page_size: i32,
}

impl Ec2Fleet {
    pub fn new(
        sdk: &aws_config::SdkConfig,
        cluster: &str,
        controller_url: &str,
        settings: Ec2Settings,
    ) -> Ec2Fleet {
        // The SDK retries nothing for EC2: `Calls` does, so that the backoff policy
        // is drover's, visible in one place and counted, and not multiplied by a
        // second retry layer underneath.
        let config = crate::aws::ec2_config(sdk)
            .retry_config(RetryConfig::disabled())
            .build();
        let secret: [u8; 32] = rand::random();
        let worker_tokens = crate::auth::WorkerTokens::new(&secret);
        Ec2Fleet {
            inner: Arc::new(Inner {
                client: aws_sdk_ec2::Client::from_conf(config),
                calls: Calls {
                    stats: Arc::new(Ec2CallStats::default()),
                    backoff: Backoff::default(),
                    cluster: cluster.to_string(),
                },
                cluster: cluster.to_string(),
                controller_url: controller_url.to_string(),
                settings,
                worker_tokens,
                page_size: 1000,
            }),
            window: BatchWindow::default(),
            launches: OnceLock::new(),
        }
    }

    /// How long launches are collected before they are sent (default 1 s idle,
    /// 10 s at most) and how many RunInstances calls run at once (default 8).
    pub fn with_batch_window(mut self, window: BatchWindow) -> Ec2Fleet {
        self.window = window;
        self
    }

    /// Workers get tokens the controller accepts (made with its cluster secret).
    pub fn with_worker_tokens(mut self, tokens: crate::auth::WorkerTokens) -> Ec2Fleet {
        Arc::make_mut(&mut self.inner).worker_tokens = tokens;
        self
    }

    pub fn with_backoff(mut self, backoff: Backoff) -> Ec2Fleet {
        Arc::make_mut(&mut self.inner).calls.backoff = backoff;
        self
    }

    /// DescribeInstances page size, clamped to EC2's 5..=1000 (tests use small pages).
    pub fn with_page_size(mut self, size: i32) -> Ec2Fleet {
        Arc::make_mut(&mut self.inner).page_size = size.clamp(5, 1000);
        self
    }

    /// The EC2 calls this fleet made so far.
    pub fn stats(&self) -> Arc<Ec2CallStats> {
        self.inner.calls.stats.clone()
    }

    pub fn cluster(&self) -> &str {
        &self.inner.cluster
    }

    fn batcher(&self) -> &mpsc::UnboundedSender<batch::LaunchRequest> {
        self.launches.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(batch::run(self.inner.clone(), self.window, rx));
            tx
        })
    }
}

/// The `ClientToken` of a launch: deterministic, so a repeated RunInstances of
/// the same launch key returns the instance of the first; scoped by cluster, so
/// two clusters in one account never share one; 47 ASCII characters (EC2: <= 64).
pub fn client_token(cluster: &str, key: &LaunchKey) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!("{cluster}\n{key}").as_bytes(),
    );
    format!("drover-{}", &hex(digest.as_ref())[..40])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn filter(name: &str, values: &[&str]) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.iter().map(|v| v.to_string()).collect()))
        .build()
}

fn tag<'a>(instance: &'a aws_sdk_ec2::types::Instance, key: &str) -> Option<&'a str> {
    instance
        .tags()
        .iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

impl Inner {
    /// This cluster's live instances matching `filters`, every page of them.
    async fn describe(
        &self,
        mut filters: Vec<Filter>,
    ) -> Result<Vec<aws_sdk_ec2::types::Instance>, ApiError> {
        filters.push(filter(&format!("tag:{TAG_CLUSTER}"), &[&self.cluster]));
        filters.push(filter("instance-state-name", LIVE_STATES));
        let mut found = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let page = self
                .calls
                .call("DescribeInstances", || {
                    self.client
                        .describe_instances()
                        .set_filters(Some(filters.clone()))
                        .max_results(self.page_size)
                        .set_next_token(next.clone())
                        .send()
                })
                .await?;
            for reservation in page.reservations() {
                found.extend(reservation.instances().iter().cloned());
            }
            match page.next_token() {
                Some(token) if !token.is_empty() => next = Some(token.to_string()),
                _ => return Ok(found),
            }
        }
    }

    /// The live instances of these launch keys: key -> EC2 instance id.
    async fn find_launch_keys(
        &self,
        keys: &[&LaunchKey],
    ) -> Result<HashMap<LaunchKey, String>, ApiError> {
        let mut found = HashMap::new();
        for chunk in keys.chunks(MAX_FILTER_VALUES) {
            let values: Vec<&str> = chunk.iter().map(|k| k.as_str()).collect();
            let filters = vec![filter(&format!("tag:{TAG_LAUNCH_KEY}"), &values)];
            for i in self.describe(filters).await? {
                if let (Some(key), Some(id)) = (tag(&i, TAG_LAUNCH_KEY), i.instance_id()) {
                    found.insert(LaunchKey::new(key), id.to_string());
                }
            }
        }
        Ok(found)
    }

    fn worker_token(&self, instance: &Instance) -> String {
        self.worker_tokens.token_for(instance.id.as_str())
    }

    fn tags(&self, instance: &Instance) -> Vec<Tag> {
        let name = format!("drover-{}-{}", self.cluster, instance.id);
        let mut tags: Vec<(&str, &str)> = vec![
            (TAG_CLUSTER, &self.cluster),
            (TAG_INSTANCE, instance.id.as_str()),
            (TAG_LAUNCH_KEY, instance.launch_key.as_str()),
            ("Name", &name),
        ];
        tags.extend(
            self.settings
                .tags
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        tags.into_iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect()
    }

    /// One RunInstances for one instance; returns its EC2 id.
    async fn run_instance(&self, instance: &Instance) -> Result<String, String> {
        let s = &self.settings;
        let launch = WorkerLaunch {
            controller: self.controller_url.clone(),
            instance_id: instance.id.clone(),
            slots: s.slots.unwrap_or(1),
            ping_interval: s.ping_interval.unwrap_or(Duration::from_secs(5)),
            token: self.worker_token(instance),
        };
        let script = render_user_data(&s.drover_path, &launch);
        let tags = self.tags(instance);
        let spec = |kind: ResourceType| {
            TagSpecification::builder()
                .resource_type(kind)
                .set_tags(Some(tags.clone()))
                .build()
        };
        let mut req = self
            .client
            .run_instances()
            .min_count(1)
            .max_count(1)
            .client_token(client_token(&self.cluster, &instance.launch_key))
            .user_data(base64::engine::general_purpose::STANDARD.encode(script))
            .tag_specifications(spec(ResourceType::Instance))
            .tag_specifications(spec(ResourceType::Volume))
            // A worker that powers its machine off ends it, rather than leaving a
            // stopped instance that still costs its disks.
            .instance_initiated_shutdown_behavior(ShutdownBehavior::Terminate)
            // Workers learn who they are from IMDSv2 only.
            .metadata_options(
                InstanceMetadataOptionsRequest::builder()
                    .http_tokens(HttpTokensState::Required)
                    .build(),
            )
            .set_image_id(s.image_id.clone())
            .set_instance_type(s.instance_type.as_deref().map(InstanceType::from))
            .set_subnet_id(s.subnet_id.clone())
            .set_key_name(s.key_name.clone());
        if let Some(t) = &s.launch_template {
            req = req.launch_template(
                LaunchTemplateSpecification::builder()
                    .set_launch_template_id(t.id.clone())
                    .set_launch_template_name(t.name.clone())
                    .set_version(t.version.clone())
                    .build(),
            );
        }
        if !s.security_group_ids.is_empty() {
            req = req.set_security_group_ids(Some(s.security_group_ids.clone()));
        }
        if let Some(profile) = &s.instance_profile {
            let spec = IamInstanceProfileSpecification::builder();
            let spec = if profile.starts_with("arn:") {
                spec.arn(profile)
            } else {
                spec.name(profile)
            };
            req = req.iam_instance_profile(spec.build());
        }
        match self.calls.call("RunInstances", || req.clone().send()).await {
            Ok(out) => out
                .instances()
                .first()
                .and_then(|i| i.instance_id())
                .map(str::to_string)
                .ok_or_else(|| "RunInstances answered without an instance".to_string()),
            // The token was used with other parameters: by an earlier controller
            // (another token key) for this same launch key. Its instance is ours.
            Err(e) if e.is_code("IdempotentParameterMismatch") => {
                let found = self
                    .find_launch_keys(&[&instance.launch_key])
                    .await
                    .map_err(|e2| format!("{e}; then {e2}"))?;
                found
                    .get(&instance.launch_key)
                    .cloned()
                    .ok_or_else(|| format!("{e}; and no live instance carries its launch key"))
            }
            Err(e) => Err(e.to_string()),
        }
    }
}

#[async_trait]
impl Fleet for Ec2Fleet {
    async fn launch(&self, instance: &Instance) -> Result<Option<String>, FleetError> {
        let err = |message: String| FleetError::Launch {
            instance: instance.id.clone(),
            message: format!("cluster {}: {message}", self.inner.cluster),
        };
        let (reply, answer) = oneshot::channel();
        self.batcher()
            .send(batch::LaunchRequest {
                instance: instance.clone(),
                reply,
            })
            .map_err(|_| err("the launch batcher has stopped".to_string()))?;
        match answer.await {
            Ok(Ok(ec2_id)) => Ok(Some(ec2_id)),
            Ok(Err(message)) => Err(err(message)),
            Err(_) => Err(err("the launch batcher dropped the request".to_string())),
        }
    }

    async fn terminate(&self, instance: &Instance) -> Result<(), FleetError> {
        let err = |e: ApiError| FleetError::Terminate {
            instance: instance.id.clone(),
            message: format!("cluster {}: {e}", self.inner.cluster),
        };
        let ids: Vec<String> = match &instance.provider_ref {
            Some(ec2_id) if ec2_id.starts_with("i-") => vec![ec2_id.clone()],
            _ => {
                // No ref (a crash between launch and record, or an instance only
                // seen in `list`): find it by its drover id, or, for an instance
                // without that tag, by the EC2 id `list` reported in its place.
                let id = instance.id.as_str();
                let mut filters = vec![filter(&format!("tag:{TAG_INSTANCE}"), &[id])];
                if id.starts_with("i-") {
                    filters = vec![filter("instance-id", &[id])];
                }
                let found = self.inner.describe(filters).await.map_err(err)?;
                found
                    .iter()
                    .filter_map(|i| i.instance_id().map(str::to_string))
                    .collect()
            }
        };
        if ids.is_empty() {
            return Ok(());
        }
        let inner = &self.inner;
        let sent = inner
            .calls
            .call("TerminateInstances", || {
                inner
                    .client
                    .terminate_instances()
                    .set_instance_ids(Some(ids.clone()))
                    .send()
            })
            .await;
        match sent {
            Ok(_) => Ok(()),
            // Gone already (or never was): what terminate wants.
            Err(e) if e.is_code("InvalidInstanceID.NotFound") => Ok(()),
            Err(e) => Err(err(e)),
        }
    }

    async fn list(&self) -> Result<Vec<ObservedInstance>, FleetError> {
        let found = self.inner.describe(Vec::new()).await.map_err(|e| {
            FleetError::List(format!(
                "EC2 instances of cluster {}: {e}",
                self.inner.cluster
            ))
        })?;
        Ok(found
            .iter()
            .filter_map(|i| {
                // An instance without drover's id tag is still this cluster's
                // (someone tagged it so): show it under its EC2 id, so the fleet
                // reconciler sees it and terminates it as leaked.
                let id = tag(i, TAG_INSTANCE).or(i.instance_id())?;
                Some(ObservedInstance {
                    id: InstanceId::new(id),
                    launch_key: tag(i, TAG_LAUNCH_KEY).map(LaunchKey::new),
                    launched_at: i
                        .launch_time()
                        .and_then(|t| t.to_millis().ok())
                        .map(|ms| Timestamp(ms.max(0) as u64))
                        .unwrap_or_default(),
                })
            })
            .collect())
    }

    fn name(&self) -> &'static str {
        "ec2"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_tokens_are_short_ascii_and_depend_on_cluster_and_key() {
        let a = client_token("prod", &LaunchKey::new("w0mwy1234abcde"));
        assert_eq!(a, client_token("prod", &LaunchKey::new("w0mwy1234abcde")));
        assert!(a.len() <= 64 && a.is_ascii(), "{a}");
        assert_ne!(a, client_token("test", &LaunchKey::new("w0mwy1234abcde")));
        assert_ne!(a, client_token("prod", &LaunchKey::new("w0mwy1234abcdf")));
    }
}
