//! `drover init` (create what the configuration names: tables, bucket, topic) and
//! `drover config check` (every problem of a configuration file, at once).

use crate::config::{BlobsUrl, ConfigFile, ControllerConfig, HintsUrl, StateUrl};
use std::path::Path;

/// Loads and checks a configuration file, printing every problem. Returns the
/// configuration when it is usable.
pub fn check(path: &Path) -> (Option<ControllerConfig>, Vec<String>) {
    let file = match ConfigFile::load(path, true) {
        Ok(f) => f,
        Err(e) => return (None, vec![format!("{e:#}")]),
    };
    match ControllerConfig::from_file(file) {
        Ok(config) => {
            let problems = backend_problems(&config);
            (Some(config), problems)
        }
        Err(e) => {
            let text = format!("{e:#}");
            let lines = text.lines().skip(1).map(|l| l.trim().to_string()).collect();
            (None, lines)
        }
    }
}

/// Problems only a backend can judge (the EC2 fleet's settings), or that this
/// build cannot serve.
fn backend_problems(config: &ControllerConfig) -> Vec<String> {
    #[cfg(feature = "aws")]
    match (&config.ec2, crate::runtime::backends::ec2_settings(config)) {
        (Some(_), Err(e)) => vec![format!("{e:#}")],
        _ => Vec::new(),
    }
    #[cfg(not(feature = "aws"))]
    {
        use crate::{config::FleetProvider, runtime::backends::without_aws};
        let mut problems = Vec::new();
        if let StateUrl::DynamoDb { .. } = config.state_url() {
            problems.push(format!(
                "{:#}",
                without_aws(&format!("state = {}", config.state_url()))
            ));
        }
        if let BlobsUrl::S3 { .. } = config.blobs_url() {
            problems.push(format!(
                "{:#}",
                without_aws(&format!("blobs = {}", config.blobs_url()))
            ));
        }
        if let HintsUrl::Sns { .. } = config.hints {
            problems.push(format!("{:#}", without_aws("hints = sns://...")));
        }
        if config.fleet_provider == FleetProvider::Ec2 {
            problems.push(format!("{:#}", without_aws("fleet.provider = \"ec2\"")));
        }
        problems
    }
}

pub fn print_check(path: &Path) -> u8 {
    let (config, problems) = check(path);
    for p in &problems {
        println!("{}: error: {p}", path.display());
    }
    match config {
        Some(c) if problems.is_empty() => {
            println!(
                "{}: ok: state {}, blobs {}, fleet {:?}, hints {:?}",
                path.display(),
                c.state_url(),
                c.blobs_url(),
                c.fleet_provider,
                c.hints
            );
            0
        }
        _ => 1,
    }
}

/// Creates the tables, the bucket and the topic the configuration names; safe to
/// run twice (what exists is left as it is).
pub async fn init(config: &ControllerConfig) -> anyhow::Result<()> {
    let problems = backend_problems(config);
    anyhow::ensure!(problems.is_empty(), "{}", problems.join("\n"));
    if let StateUrl::Sqlite(path) = config.state_url() {
        crate::store::sqlite::SqliteStore::open(&path)?;
        println!("state: {} ready", path.display());
    }
    if let BlobsUrl::File(dir) = config.blobs_url() {
        std::fs::create_dir_all(&dir)?;
        println!("blobs: {} ready", dir.display());
    }
    #[cfg(feature = "aws")]
    init_aws(config).await?;
    Ok(())
}

/// The AWS half of `init`: DynamoDB tables, S3 bucket, SNS topic.
#[cfg(feature = "aws")]
async fn init_aws(config: &ControllerConfig) -> anyhow::Result<()> {
    let aws = crate::runtime::backends::Aws::default();
    if let StateUrl::DynamoDb {
        table_prefix,
        region,
    } = config.state_url()
    {
        let sdk = aws.sdk(config, region.as_deref()).await;
        crate::store::dynamodb::DynamoStore::new(sdk, &table_prefix)
            .create_tables()
            .await?;
        println!("state: DynamoDB tables {table_prefix}-* ready");
    }
    if let BlobsUrl::S3 { bucket, .. } = config.blobs_url() {
        create_bucket(aws.sdk(config, None).await, &bucket).await?;
        println!("blobs: S3 bucket {bucket} ready");
    }
    if let HintsUrl::Sns { topic_arn } = &config.hints {
        let name = topic_arn.rsplit(':').next().unwrap_or_default();
        let client = crate::aws::sns_client(aws.sdk(config, None).await);
        let created = crate::hints::sns::create_topic(&client, name).await?;
        anyhow::ensure!(
            &created == topic_arn,
            "hints: creating topic {name} gave {created}, not the configured {topic_arn}: \
             fix the account or region in the ARN"
        );
        println!("hints: SNS topic {topic_arn} ready");
    }
    Ok(())
}

#[cfg(feature = "aws")]
async fn create_bucket(sdk: &aws_config::SdkConfig, bucket: &str) -> anyhow::Result<()> {
    use aws_sdk_s3::{
        error::DisplayErrorContext, types::BucketLocationConstraint,
        types::CreateBucketConfiguration,
    };
    // Emulators and private endpoints address buckets by path.
    let conf = crate::aws::s3_config(sdk).force_path_style(true).build();
    let client = aws_sdk_s3::Client::from_conf(conf);
    let mut req = client.create_bucket().bucket(bucket);
    // us-east-1 is the one region that refuses a location constraint.
    if let Some(region) = sdk
        .region()
        .map(|r| r.as_ref().to_string())
        .filter(|r| r != "us-east-1")
    {
        req = req.create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(region.as_str()))
                .build(),
        );
    }
    match req.send().await {
        Ok(_) => Ok(()),
        Err(e) => {
            let already = e
                .as_service_error()
                .is_some_and(|s| s.is_bucket_already_owned_by_you());
            if already {
                Ok(())
            } else {
                Err(anyhow::anyhow!(
                    "creating S3 bucket {bucket}: {}",
                    DisplayErrorContext(&e)
                ))
            }
        }
    }
}
