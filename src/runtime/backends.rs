//! Opens the backends a configuration names: the store, the blobs, the fleet and
//! the hint transport. The embedded defaults need nothing; the AWS ones (in
//! `aws`, built with the `aws` feature) share one SDK configuration.

#[cfg(feature = "aws")]
mod aws;

#[cfg(feature = "aws")]
pub use aws::{ec2_settings, Aws};

use crate::{
    blobs::Blobs,
    clock::Clock,
    config::{BlobsUrl, ControllerConfig, FleetProvider, HintsUrl, StateUrl},
    fleet::{local::LocalFleet, Fleet},
    hints::{http::HttpHints, Hints, NoHints, SnsReceiverRef},
    store::{sqlite::SqliteStore, Store},
};
use anyhow::Context as _;
use std::{path::PathBuf, sync::Arc};
use tokio::sync::Notify;

/// Without the `aws` feature there is no SDK to configure.
#[cfg(not(feature = "aws"))]
#[derive(Default)]
pub struct Aws {
    _nothing: (),
}

/// What a configuration asks for that this build cannot do.
#[cfg(not(feature = "aws"))]
pub fn without_aws(what: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{what} needs drover built with AWS support: cargo build --release --features aws"
    )
}

pub async fn open_store(config: &ControllerConfig, aws: &Aws) -> anyhow::Result<Arc<dyn Store>> {
    match config.state_url() {
        StateUrl::Sqlite(path) => {
            Ok(Arc::new(SqliteStore::open(&path).with_context(|| {
                format!("opening state {}", path.display())
            })?))
        }
        #[cfg(feature = "aws")]
        StateUrl::DynamoDb {
            table_prefix,
            region,
        } => aws::dynamodb(config, aws, &table_prefix, region.as_deref()).await,
        #[cfg(not(feature = "aws"))]
        url @ StateUrl::DynamoDb { .. } => {
            let _ = aws;
            Err(without_aws(&format!("state = {url}")))
        }
    }
}

pub fn open_blobs(config: &ControllerConfig) -> anyhow::Result<Blobs> {
    Ok(match config.blobs_url() {
        BlobsUrl::File(dir) => Blobs::local(&dir)?,
        #[cfg(feature = "aws")]
        BlobsUrl::S3 { bucket, prefix } => Blobs::s3(&bucket, &prefix, &config.aws)?,
        #[cfg(not(feature = "aws"))]
        url @ BlobsUrl::S3 { .. } => return Err(without_aws(&format!("blobs = {url}"))),
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
    auth: &crate::auth::Auth,
    exited: Arc<Notify>,
) -> anyhow::Result<Arc<dyn Fleet>> {
    match config.fleet_provider {
        FleetProvider::Local => Ok(Arc::new(LocalFleet {
            exe: std::env::current_exe()
                .context("finding the drover binary to start workers from")?,
            controller_url: address.url.clone(),
            controller_file: address.file.clone(),
            cluster: crate::fleet::local::cluster_tag_of(config),
            workers_dir: std::path::absolute(config.workers_dir())?,
            slots: config.fleet.slots_per_worker,
            ping_interval: config.ping_interval,
            kill_grace: config.kill_grace,
            exited,
            worker_tokens: auth.workers().clone(),
            max_sandbox_bytes: config.max_sandbox_bytes,
        })),
        #[cfg(feature = "aws")]
        FleetProvider::Ec2 => aws::ec2(config, aws, address, auth).await,
        #[cfg(not(feature = "aws"))]
        FleetProvider::Ec2 => {
            let _ = aws;
            Err(without_aws("fleet.provider = \"ec2\""))
        }
    }
}

/// How hints leave this controller and, for SNS, the receiver of `POST /sns`.
pub async fn open_hints(
    config: &ControllerConfig,
    aws: &Aws,
    address: &ControllerAddress,
    auth: &crate::auth::Auth,
    clock: &Arc<dyn Clock>,
) -> anyhow::Result<(Arc<dyn Hints>, Option<SnsReceiverRef>)> {
    match &config.hints {
        HintsUrl::None => Ok((Arc::new(NoHints), None)),
        HintsUrl::Http => Ok((
            Arc::new(HttpHints::new().with_token(auth.submit_token())),
            None,
        )),
        #[cfg(feature = "aws")]
        HintsUrl::Sns { topic_arn } => {
            let (hints, receiver) = aws::sns(config, aws, topic_arn, address, clock).await;
            Ok((hints, Some(receiver)))
        }
        #[cfg(not(feature = "aws"))]
        HintsUrl::Sns { topic_arn } => {
            let _ = (aws, address, auth, clock);
            Err(without_aws(&format!("hints = sns://{topic_arn}")))
        }
    }
}

/// Subscribes to SNS hints when the configuration asks for them.
pub async fn subscribe_hints(config: &ControllerConfig, aws: &Aws, address: &ControllerAddress) {
    #[cfg(feature = "aws")]
    if let HintsUrl::Sns { topic_arn } = &config.hints {
        aws::subscribe(config, aws, topic_arn, address).await;
    }
    #[cfg(not(feature = "aws"))]
    let _ = (config, aws, address);
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
    #[cfg(feature = "aws")]
    match aws::public_hostname(config).await {
        Ok(host) => return format!("http://{host}:{}", listening.port()),
        Err(why) => tracing::warn!("{why}: using {fallback}; set public_url"),
    }
    fallback
}
