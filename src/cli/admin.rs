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

/// Problems only a backend can judge (the EC2 fleet's settings).
fn backend_problems(config: &ControllerConfig) -> Vec<String> {
    match (&config.ec2, crate::runtime::backends::ec2_settings(config)) {
        (Some(_), Err(e)) => vec![format!("{e:#}")],
        _ => Vec::new(),
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
    let aws = crate::runtime::backends::Aws::default();
    match config.state_url() {
        StateUrl::Sqlite(path) => {
            crate::store::sqlite::SqliteStore::open(&path)?;
            println!("state: {} ready", path.display());
        }
        StateUrl::DynamoDb {
            table_prefix,
            region,
        } => {
            let sdk = aws.sdk(config, region.as_deref()).await;
            crate::store::dynamodb::DynamoStore::new(sdk, &table_prefix)
                .create_tables()
                .await?;
            println!("state: DynamoDB tables {table_prefix}-* ready");
        }
    }
    match config.blobs_url() {
        BlobsUrl::File(dir) => {
            std::fs::create_dir_all(&dir)?;
            println!("blobs: {} ready", dir.display());
        }
        BlobsUrl::S3 { bucket, .. } => {
            create_bucket(aws.sdk(config, None).await, &bucket).await?;
            println!("blobs: S3 bucket {bucket} ready");
        }
    }
    if let HintsUrl::Sns { topic_arn } = &config.hints {
        let name = topic_arn.rsplit(':').next().unwrap_or_default();
        let client = aws_sdk_sns::Client::new(aws.sdk(config, None).await);
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

async fn create_bucket(sdk: &aws_config::SdkConfig, bucket: &str) -> anyhow::Result<()> {
    use aws_sdk_s3::{
        error::DisplayErrorContext, types::BucketLocationConstraint,
        types::CreateBucketConfiguration,
    };
    // Emulators and private endpoints address buckets by path.
    let conf = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(true)
        .build();
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
