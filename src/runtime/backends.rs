//! Opens the backends a configuration names: the store, the blobs, the fleet and
//! the hint transport. Embedded defaults need nothing; AWS ones share one SDK
//! configuration.

use crate::{
    blobs::Blobs,
    clock::Clock,
    config::{BlobsUrl, ControllerConfig, FleetProvider, HintsUrl, StateUrl},
    fleet::{
        ec2::{Ec2Fleet, Ec2Settings},
        local::LocalFleet,
        Fleet,
    },
    hints::{
        http::HttpHints, receive::SnsReceiver, sns::SnsHints, verify::VerifySettings, Hints,
        NoHints,
    },
    store::{sqlite::SqliteStore, Store},
};
use anyhow::Context as _;
use std::{path::PathBuf, sync::Arc};
use tokio::sync::{Notify, OnceCell};

/// The AWS SDK configuration, loaded once and only if an AWS backend needs it.
#[derive(Default)]
pub struct Aws {
    sdk: OnceCell<aws_config::SdkConfig>,
}

impl Aws {
    pub async fn sdk(
        &self,
        config: &ControllerConfig,
        region: Option<&str>,
    ) -> &aws_config::SdkConfig {
        self.sdk
            .get_or_init(|| async {
                let mut settings = config.aws.clone();
                if settings.region.is_none() {
                    settings.region = region.map(str::to_string);
                }
                crate::aws::sdk_config(&settings).await
            })
            .await
    }
}

pub async fn open_store(config: &ControllerConfig, aws: &Aws) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match config.state_url() {
        StateUrl::Sqlite(path) => Arc::new(
            SqliteStore::open(&path)
                .with_context(|| format!("opening state {}", path.display()))?,
        ),
        StateUrl::DynamoDb {
            table_prefix,
            region,
        } => {
            let sdk = aws.sdk(config, region.as_deref()).await;
            Arc::new(crate::store::dynamodb::DynamoStore::new(sdk, &table_prefix))
        }
    })
}

pub fn open_blobs(config: &ControllerConfig) -> anyhow::Result<Blobs> {
    Ok(match config.blobs_url() {
        BlobsUrl::File(dir) => Blobs::local(&dir)?,
        BlobsUrl::S3 { bucket, prefix } => Blobs::s3(&bucket, &prefix, &config.aws)?,
    })
}

/// `[fleet.ec2]`, with the workers' slots and ping interval taken from the
/// controller's configuration unless the table says otherwise.
pub fn ec2_settings(config: &ControllerConfig) -> anyhow::Result<Ec2Settings> {
    let table = config.ec2.clone().unwrap_or_default();
    let mut settings: Ec2Settings = toml::Value::Table(table)
        .try_into()
        .map_err(|e| anyhow::anyhow!("[fleet.ec2]: {e}"))?;
    settings.slots.get_or_insert(config.fleet.slots_per_worker);
    settings.ping_interval.get_or_insert(config.ping_interval);
    let problems = settings.problems();
    anyhow::ensure!(problems.is_empty(), "[fleet.ec2]: {}", problems.join("; "));
    Ok(settings)
}

/// Where the fleet's workers reach the controller.
pub struct ControllerAddress {
    pub url: String,
    /// The file holding `url`, re-read by local workers that lose the controller.
    pub file: PathBuf,
}

pub async fn open_fleet(
    config: &ControllerConfig,
    aws: &Aws,
    address: &ControllerAddress,
    exited: Arc<Notify>,
) -> anyhow::Result<Arc<dyn Fleet>> {
    Ok(match config.fleet_provider {
        FleetProvider::Local => Arc::new(LocalFleet {
            exe: std::env::current_exe()
                .context("finding the drover binary to start workers from")?,
            controller_url: address.url.clone(),
            controller_file: address.file.clone(),
            cluster: crate::fleet::local::cluster_tag(&config.data_dir),
            workers_dir: std::path::absolute(config.workers_dir())?,
            slots: config.fleet.slots_per_worker,
            ping_interval: config.ping_interval,
            kill_grace: config.kill_grace,
            exited,
        }),
        FleetProvider::Ec2 => {
            let settings = ec2_settings(config)?;
            let sdk = aws.sdk(config, None).await;
            Arc::new(Ec2Fleet::new(sdk, &config.cluster, &address.url, settings))
        }
    })
}

/// How hints leave this controller and, for SNS, the receiver of `POST /sns`.
pub async fn open_hints(
    config: &ControllerConfig,
    aws: &Aws,
    address: &ControllerAddress,
    clock: &Arc<dyn Clock>,
) -> (Arc<dyn Hints>, Option<Arc<SnsReceiver>>) {
    match &config.hints {
        HintsUrl::None => (Arc::new(NoHints), None),
        HintsUrl::Http => (Arc::new(HttpHints::new()), None),
        HintsUrl::Sns { topic_arn } => {
            let client = aws_sdk_sns::Client::new(aws.sdk(config, None).await);
            let mut settings = VerifySettings::new(vec![topic_arn.clone()]);
            settings.cert_base_url = config.sns_cert_base_url.clone();
            settings.max_age = config.sns_max_message_age;
            let receiver = SnsReceiver::new(&address.url, settings, clock.clone());
            (
                Arc::new(SnsHints::new(client, topic_arn.clone())),
                Some(Arc::new(receiver)),
            )
        }
    }
}

/// Subscribes this controller's `/sns` to the topic (with a filter policy that
/// lets only its own hints through). A failure is logged, not fatal: without
/// hints the loops still run on their interval.
pub async fn subscribe_hints(config: &ControllerConfig, aws: &Aws, address: &ControllerAddress) {
    if let HintsUrl::Sns { topic_arn } = &config.hints {
        let client = aws_sdk_sns::Client::new(aws.sdk(config, None).await);
        match crate::hints::sns::subscribe(&client, topic_arn, &address.url).await {
            Ok(arn) => tracing::info!(subscription = %arn, "subscribed to SNS hints"),
            Err(e) => {
                tracing::warn!(error = %e, "subscribing to SNS hints failed; loops run on their interval")
            }
        }
    }
}

/// The address workers and hints reach this controller at: `public_url` when
/// configured; on EC2 (fleet provider ec2) the instance's public hostname from
/// the instance metadata; else the address it listens on.
pub async fn public_url(config: &ControllerConfig, listening: std::net::SocketAddr) -> String {
    if let Some(url) = &config.public_url {
        return url.clone();
    }
    let fallback = format!("http://{listening}");
    if config.fleet_provider != FleetProvider::Ec2 {
        return fallback;
    }
    let lookup = crate::metadata::identity(config.aws.imds_endpoint.as_deref());
    match tokio::time::timeout(std::time::Duration::from_secs(5), lookup).await {
        Ok(Ok(id)) => match id.public_hostname {
            Some(host) => format!("http://{host}:{}", listening.port()),
            None => {
                tracing::warn!(instance = %id.instance_id, "this instance has no public hostname; set public_url");
                fallback
            }
        },
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "not on EC2? using {fallback}; set public_url");
            fallback
        }
        Err(_) => {
            tracing::warn!(
                "the instance metadata service did not answer; using {fallback}; set public_url"
            );
            fallback
        }
    }
}
