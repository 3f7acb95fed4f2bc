//! The AWS backends: DynamoDB, S3's bucket creation lives in `drover init`,
//! EC2, SNS and the instance metadata. One SDK configuration serves them all.

use super::ControllerAddress;
use crate::{
    clock::Clock,
    config::ControllerConfig,
    fleet::{
        ec2::{Ec2Fleet, Ec2Settings},
        Fleet,
    },
    hints::{receive::SnsReceiver, sns::SnsHints, verify::VerifySettings, Hints},
    store::Store,
};
use std::sync::Arc;
use tokio::sync::OnceCell;

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

pub async fn dynamodb(
    config: &ControllerConfig,
    aws: &Aws,
    table_prefix: &str,
    region: Option<&str>,
) -> anyhow::Result<Arc<dyn Store>> {
    let sdk = aws.sdk(config, region).await;
    Ok(Arc::new(crate::store::dynamodb::DynamoStore::new(
        sdk,
        table_prefix,
    )))
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

pub async fn ec2(
    config: &ControllerConfig,
    aws: &Aws,
    address: &ControllerAddress,
    auth: &crate::auth::Auth,
) -> anyhow::Result<Arc<dyn Fleet>> {
    let settings = ec2_settings(config)?;
    let sdk = aws.sdk(config, None).await;
    Ok(Arc::new(
        Ec2Fleet::new(sdk, &config.cluster, &address.url, settings)
            .with_worker_tokens(auth.workers().clone()),
    ))
}

/// SNS hints out, and the receiver of `POST /sns`.
pub async fn sns(
    config: &ControllerConfig,
    aws: &Aws,
    topic_arn: &str,
    address: &ControllerAddress,
    clock: &Arc<dyn Clock>,
) -> (Arc<dyn Hints>, Arc<SnsReceiver>) {
    let client = crate::aws::sns_client(aws.sdk(config, None).await);
    let mut settings = VerifySettings::new(vec![topic_arn.to_string()]);
    settings.cert_base_url = config.sns_cert_base_url.clone();
    settings.max_age = config.sns_max_message_age;
    let receiver = SnsReceiver::new(&address.url, settings, clock.clone());
    (
        Arc::new(SnsHints::new(client, topic_arn)),
        Arc::new(receiver),
    )
}

/// Subscribes this controller's `/sns` to the topic (with a filter policy that
/// lets only its own hints through). A failure is logged, not fatal: without
/// hints the loops still run on their interval.
pub async fn subscribe(
    config: &ControllerConfig,
    aws: &Aws,
    topic_arn: &str,
    address: &ControllerAddress,
) {
    let client = crate::aws::sns_client(aws.sdk(config, None).await);
    match crate::hints::sns::subscribe(&client, topic_arn, &address.url).await {
        Ok(arn) => tracing::info!(subscription = %arn, "subscribed to SNS hints"),
        Err(e) => {
            tracing::warn!(error = %e, "subscribing to SNS hints failed; loops run on their interval")
        }
    }
}

/// On EC2, the instance's public hostname from the instance metadata.
pub async fn public_hostname(config: &ControllerConfig) -> Result<String, String> {
    let lookup = crate::metadata::identity(config.aws.imds_endpoint.as_deref());
    match tokio::time::timeout(std::time::Duration::from_secs(5), lookup).await {
        Ok(Ok(id)) => id
            .public_hostname
            .ok_or_else(|| format!("instance {} has no public hostname", id.instance_id)),
        Ok(Err(e)) => Err(format!("not on EC2? {e}")),
        Err(_) => Err("the instance metadata service did not answer".to_string()),
    }
}
