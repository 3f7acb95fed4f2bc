//! The AWS SDK's shared configuration: region, credentials and endpoint.
//!
//! Credentials and region come from the usual chain (environment, profile, the
//! instance's role through IMDS). `endpoint_url` (or `AWS_ENDPOINT_URL`) points
//! every client at another endpoint: moto server in the tests.

use serde::Deserialize;

/// `[aws]` in drover.toml.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSettings {
    pub region: Option<String>,
    /// One endpoint for every service (moto serves them all on one port).
    pub endpoint_url: Option<String>,
    /// Another instance metadata service than 169.254.169.254 (tests: moto).
    pub imds_endpoint: Option<String>,
}

#[cfg(feature = "aws")]
pub async fn sdk_config(settings: &AwsSettings) -> aws_config::SdkConfig {
    use aws_config::{BehaviorVersion, Region};
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = &settings.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(url) = &settings.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}
