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

/// Counts every AWS request, in one place for every client: an SDK interceptor
/// that runs after each attempt (retries included) and files it under the
/// operation's service and name (the `Metadata` the SDK puts in the config
/// bag) and its outcome. Whether an error was throttling is the operation's own
/// retry classifiers' answer, so EC2's `RequestLimitExceeded`, DynamoDB's
/// `ProvisionedThroughputExceededException` and SNS's `Throttling` are all
/// `throttled` without a list of codes here.
#[cfg(feature = "aws")]
#[derive(Debug, Clone, Copy, Default)]
pub struct CallMetrics;

#[cfg(feature = "aws")]
mod call_metrics {
    use super::CallMetrics;
    use aws_smithy_runtime::client::retries::classifiers::run_classifiers_on_ctx;
    use aws_smithy_runtime_api::{
        box_error::BoxError,
        client::{
            interceptors::{
                context::{BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef},
                Intercept,
            },
            orchestrator::Metadata,
            retries::classifiers::{RetryAction, RetryReason},
            runtime_components::RuntimeComponents,
        },
    };
    use aws_smithy_types::{
        config_bag::{ConfigBag, Storable, StoreReplace},
        retry::ErrorKind,
    };
    use std::time::Instant;

    /// When the current attempt was sent.
    #[derive(Debug, Clone)]
    struct AttemptStarted(Instant);

    impl Storable for AttemptStarted {
        type Storer = StoreReplace<Self>;
    }

    impl Intercept for CallMetrics {
        fn name(&self) -> &'static str {
            "drover::aws::CallMetrics"
        }

        fn read_before_attempt(
            &self,
            _context: &BeforeTransmitInterceptorContextRef<'_>,
            _components: &RuntimeComponents,
            cfg: &mut ConfigBag,
        ) -> Result<(), BoxError> {
            cfg.interceptor_state()
                .store_put(AttemptStarted(Instant::now()));
            Ok(())
        }

        fn read_after_attempt(
            &self,
            context: &FinalizerInterceptorContextRef<'_>,
            components: &RuntimeComponents,
            cfg: &mut ConfigBag,
        ) -> Result<(), BoxError> {
            let ctx = context.inner();
            let outcome = match ctx.output_or_error() {
                Some(Ok(_)) => "ok",
                _ => match run_classifiers_on_ctx(components.retry_classifiers(), ctx) {
                    RetryAction::RetryIndicated(RetryReason::RetryableError { kind, .. }) => {
                        match kind {
                            ErrorKind::ThrottlingError => "throttled",
                            ErrorKind::ServerError => "server_error",
                            ErrorKind::TransientError => "transient_error",
                            _ => "error",
                        }
                    }
                    _ => "error",
                },
            };
            let took = cfg
                .load::<AttemptStarted>()
                .map(|s| s.0.elapsed())
                .unwrap_or_default();
            let (service, operation) = cfg
                .load::<Metadata>()
                // "DynamoDB" -> "dynamodb": label values as Prometheus writes them.
                .map(|m| (m.service().to_ascii_lowercase(), m.name().to_string()))
                .unwrap_or_else(|| ("unknown".into(), "unknown".into()));
            crate::metrics::aws_call(&service, &operation, outcome, took);
            Ok(())
        }
    }
}

/// The clients, each with `CallMetrics`: build them here, not from the SDK
/// configuration directly, so that no AWS call goes uncounted.
#[cfg(feature = "aws")]
pub fn dynamodb_config(sdk: &aws_config::SdkConfig) -> aws_sdk_dynamodb::config::Builder {
    aws_sdk_dynamodb::config::Builder::from(sdk).interceptor(CallMetrics)
}

#[cfg(feature = "aws")]
pub fn ec2_config(sdk: &aws_config::SdkConfig) -> aws_sdk_ec2::config::Builder {
    aws_sdk_ec2::config::Builder::from(sdk).interceptor(CallMetrics)
}

#[cfg(feature = "aws")]
pub fn s3_config(sdk: &aws_config::SdkConfig) -> aws_sdk_s3::config::Builder {
    aws_sdk_s3::config::Builder::from(sdk).interceptor(CallMetrics)
}

#[cfg(feature = "aws")]
pub fn sns_client(sdk: &aws_config::SdkConfig) -> aws_sdk_sns::Client {
    aws_sdk_sns::Client::from_conf(
        aws_sdk_sns::config::Builder::from(sdk)
            .interceptor(CallMetrics)
            .build(),
    )
}
