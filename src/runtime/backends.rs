//! Opens the backends a configuration names: the store, the blobs, the fleet and
//! the hint transport. Embedded defaults need nothing; AWS ones share one SDK
//! configuration.

use crate::{
    blobs::Blobs,
    config::{BlobsUrl, ControllerConfig, FleetProvider, StateUrl},
    fleet::{local::LocalFleet, Fleet},
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
    pub async fn sdk(&self, config: &ControllerConfig, region: Option<&str>) -> &aws_config::SdkConfig {
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
            SqliteStore::open(&path).with_context(|| format!("opening state {}", path.display()))?,
        ),
        StateUrl::DynamoDb { table_prefix, region } => {
            let _sdk = aws.sdk(config, region.as_deref()).await;
            anyhow::bail!("state dynamodb://{table_prefix} is not wired into the controller yet")
        }
    })
}

pub fn open_blobs(config: &ControllerConfig) -> anyhow::Result<Blobs> {
    Ok(match config.blobs_url() {
        BlobsUrl::File(dir) => Blobs::local(&dir)?,
        BlobsUrl::S3 { bucket, prefix } => Blobs::s3(&bucket, &prefix, &config.aws)?,
    })
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
            exe: std::env::current_exe().context("finding the drover binary to start workers from")?,
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
            let _sdk = aws.sdk(config, None).await;
            anyhow::bail!("fleet.provider = \"ec2\" is not wired into the controller yet")
        }
    })
}
