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

/// The job blobs reach S3 through `object_store`, not the SDK, so the SDK
/// interceptor never sees them: this connector counts them the same way, one
/// per attempt (object_store retries above it), under `service="s3"`. The
/// operation is read from the request (method and query), the outcome from the
/// status: 503 is S3's `SlowDown`, its throttling.
#[cfg(feature = "aws")]
#[derive(Debug, Default, Clone, Copy)]
pub struct S3CallMetrics;

#[cfg(feature = "aws")]
mod s3_call_metrics {
    use super::S3CallMetrics;
    use object_store::client::{
        ClientOptions, HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse,
        HttpService, ReqwestConnector,
    };
    use std::time::Instant;

    #[derive(Debug)]
    struct Metered {
        inner: HttpClient,
    }

    impl HttpConnector for S3CallMetrics {
        fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
            let inner = ReqwestConnector::default().connect(options)?;
            Ok(HttpClient::new(Metered { inner }))
        }
    }

    #[async_trait::async_trait]
    impl HttpService for Metered {
        async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
            let operation = operation(req.method().as_str(), req.uri().query().unwrap_or(""));
            let started = Instant::now();
            let result = self.inner.execute(req).await;
            let outcome = match &result {
                Ok(r) if r.status().is_success() => "ok",
                Ok(r) if r.status().as_u16() == 503 => "throttled",
                Ok(r) if r.status().is_server_error() => "server_error",
                Ok(_) => "error",
                Err(_) => "transient_error",
            };
            crate::metrics::aws_call("s3", operation, outcome, started.elapsed());
            result
        }
    }

    /// The S3 API operation a request is, by the names the SDK uses.
    pub(super) fn operation(method: &str, query: &str) -> &'static str {
        let has = |key: &str| {
            query
                .split('&')
                .any(|p| p == key || p.starts_with(&format!("{key}=")))
        };
        match method {
            "GET" if has("list-type") => "ListObjectsV2",
            "GET" if has("uploadId") => "ListParts",
            "GET" => "GetObject",
            "HEAD" => "HeadObject",
            "PUT" if has("partNumber") => "UploadPart",
            "PUT" => "PutObject",
            "POST" if has("uploads") => "CreateMultipartUpload",
            "POST" if has("uploadId") => "CompleteMultipartUpload",
            "POST" if has("delete") => "DeleteObjects",
            "DELETE" if has("uploadId") => "AbortMultipartUpload",
            "DELETE" => "DeleteObject",
            _ => "other",
        }
    }

    #[cfg(test)]
    mod tests {
        use super::operation;

        #[test]
        fn s3_requests_are_named_as_the_sdk_names_them() {
            assert_eq!(
                operation("GET", "list-type=2&prefix=jobs%2F"),
                "ListObjectsV2"
            );
            assert_eq!(operation("GET", ""), "GetObject");
            assert_eq!(operation("PUT", "partNumber=3&uploadId=abc"), "UploadPart");
            assert_eq!(operation("PUT", ""), "PutObject");
            assert_eq!(operation("POST", "uploads"), "CreateMultipartUpload");
            assert_eq!(operation("POST", "uploadId=abc"), "CompleteMultipartUpload");
            assert_eq!(operation("DELETE", "uploadId=abc"), "AbortMultipartUpload");
            assert_eq!(operation("DELETE", ""), "DeleteObject");
            assert_eq!(operation("PATCH", ""), "other");
        }
    }
}
