//! Who this machine is on EC2, from the instance metadata service (IMDSv2: the
//! SDK's client asks for a session token first). Workers log and check their
//! identity with it; a controller on EC2 learns its public address from it.

use aws_config::imds::client::Client;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceIdentity {
    pub instance_id: String,
    pub region: String,
    /// Absent on instances without a public address.
    pub public_hostname: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("reading the instance metadata ({what}): {detail}")]
pub struct MetadataError {
    what: &'static str,
    detail: String,
}

/// `endpoint`: another metadata service than the one at 169.254.169.254 (tests
/// point it at moto); `AWS_EC2_METADATA_SERVICE_ENDPOINT` works too.
pub async fn identity(endpoint: Option<&str>) -> Result<InstanceIdentity, MetadataError> {
    let mut builder = Client::builder();
    if let Some(url) = endpoint {
        builder = builder.endpoint(url).map_err(|e| MetadataError {
            what: "endpoint",
            detail: format!("`{url}`: {e}"),
        })?;
    }
    let client = builder.build();
    let get = |what: &'static str, path: &'static str| {
        let client = client.clone();
        async move {
            client
                .get(path)
                .await
                .map(|v| v.as_ref().trim().to_string())
                .map_err(|e| MetadataError {
                    what,
                    detail: aws_config::imds::client::error::ImdsError::to_string(&e),
                })
        }
    };
    Ok(InstanceIdentity {
        instance_id: get("instance id", "/latest/meta-data/instance-id").await?,
        region: get("region", "/latest/meta-data/placement/region").await?,
        public_hostname: get("public hostname", "/latest/meta-data/public-hostname")
            .await
            .ok()
            .filter(|h| !h.is_empty()),
    })
}
