//! The backend URLs of drover.toml: which store, blob store and hint transport a
//! controller uses. Each is parsed in one place, with a message that says what
//! forms are accepted.

use std::{fmt, path::PathBuf};

/// `state = "sqlite://PATH"` or `"dynamodb://TABLE_PREFIX?region=R"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateUrl {
    Sqlite(PathBuf),
    DynamoDb {
        table_prefix: String,
        region: Option<String>,
    },
}

/// `blobs = "file://PATH"` or `"s3://BUCKET/PREFIX"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobsUrl {
    File(PathBuf),
    S3 { bucket: String, prefix: String },
}

/// `hints = "none"`, `"http"` or `"sns://TOPIC_ARN"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HintsUrl {
    None,
    Http,
    Sns { topic_arn: String },
}

/// `[fleet] provider = "local"` or `"ec2"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FleetProvider {
    #[default]
    Local,
    Ec2,
}

/// `sqlite://relative/path` keeps the path relative; `sqlite:///abs/path` is absolute.
fn path_after(url: &str, scheme: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix(scheme)?;
    (!rest.is_empty()).then(|| PathBuf::from(rest))
}

/// DynamoDB table names allow `[A-Za-z0-9_.-]`, 3 to 255 characters.
fn valid_table_prefix(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 200
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// S3 bucket names: lowercase letters, digits, dots and hyphens, 3 to 63 characters.
fn valid_bucket(b: &str) -> bool {
    (3..=63).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
}

impl StateUrl {
    pub fn parse(s: &str) -> Result<StateUrl, String> {
        if let Some(path) = path_after(s, "sqlite://") {
            return Ok(StateUrl::Sqlite(path));
        }
        if let Some(rest) = s.strip_prefix("dynamodb://") {
            let (prefix, query) = rest.split_once('?').unwrap_or((rest, ""));
            if !valid_table_prefix(prefix) {
                return Err(format!(
                    "state `{s}`: the table prefix must be letters, digits, `_`, `.` or `-`"
                ));
            }
            let mut region = None;
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                match pair.split_once('=') {
                    Some(("region", r)) if !r.is_empty() => region = Some(r.to_string()),
                    _ => {
                        return Err(format!(
                            "state `{s}`: unknown option `{pair}` (only region=R)"
                        ))
                    }
                }
            }
            return Ok(StateUrl::DynamoDb {
                table_prefix: prefix.to_string(),
                region,
            });
        }
        Err(format!(
            "state `{s}` is not sqlite://PATH or dynamodb://TABLE_PREFIX?region=R"
        ))
    }
}

impl BlobsUrl {
    pub fn parse(s: &str) -> Result<BlobsUrl, String> {
        if let Some(path) = path_after(s, "file://") {
            return Ok(BlobsUrl::File(path));
        }
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if !valid_bucket(bucket) {
                return Err(format!(
                    "blobs `{s}`: `{bucket}` is not a valid S3 bucket name"
                ));
            }
            return Ok(BlobsUrl::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
            });
        }
        Err(format!(
            "blobs `{s}` is not file://PATH or s3://BUCKET/PREFIX"
        ))
    }
}

impl HintsUrl {
    pub fn parse(s: &str) -> Result<HintsUrl, String> {
        match s {
            "none" => Ok(HintsUrl::None),
            "http" => Ok(HintsUrl::Http),
            _ => match s.strip_prefix("sns://") {
                Some(arn) if arn.starts_with("arn:") && arn.split(':').count() == 6 => {
                    Ok(HintsUrl::Sns { topic_arn: arn.to_string() })
                }
                _ => Err(format!("hints `{s}` is not none, http or sns://TOPIC_ARN (arn:aws:sns:REGION:ACCOUNT:NAME)")),
            },
        }
    }
}

impl fmt::Display for StateUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateUrl::Sqlite(p) => write!(f, "sqlite://{}", p.display()),
            StateUrl::DynamoDb {
                table_prefix,
                region: Some(r),
            } => write!(f, "dynamodb://{table_prefix}?region={r}"),
            StateUrl::DynamoDb {
                table_prefix,
                region: None,
            } => write!(f, "dynamodb://{table_prefix}"),
        }
    }
}

impl fmt::Display for BlobsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlobsUrl::File(p) => write!(f, "file://{}", p.display()),
            BlobsUrl::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_urls_read_both_backends() {
        assert_eq!(
            StateUrl::parse("sqlite://.drover/state.db"),
            Ok(StateUrl::Sqlite(".drover/state.db".into()))
        );
        assert_eq!(
            StateUrl::parse("sqlite:///var/lib/d.db"),
            Ok(StateUrl::Sqlite("/var/lib/d.db".into()))
        );
        assert_eq!(
            StateUrl::parse("dynamodb://prod?region=eu-west-1"),
            Ok(StateUrl::DynamoDb {
                table_prefix: "prod".into(),
                region: Some("eu-west-1".into())
            })
        );
        assert!(StateUrl::parse("dynamodb://bad prefix")
            .unwrap_err()
            .contains("table prefix"));
        assert!(StateUrl::parse("dynamodb://p?color=red")
            .unwrap_err()
            .contains("unknown option `color=red`"));
        assert!(StateUrl::parse("postgres://x")
            .unwrap_err()
            .contains("is not sqlite://PATH"));
    }

    #[test]
    fn blob_urls_read_folders_and_buckets() {
        assert_eq!(
            BlobsUrl::parse("file://.drover/blobs"),
            Ok(BlobsUrl::File(".drover/blobs".into()))
        );
        assert_eq!(
            BlobsUrl::parse("s3://my-bucket/drover/prod/"),
            Ok(BlobsUrl::S3 {
                bucket: "my-bucket".into(),
                prefix: "drover/prod".into()
            })
        );
        assert!(BlobsUrl::parse("s3://Bad_Bucket")
            .unwrap_err()
            .contains("not a valid S3 bucket name"));
    }

    #[test]
    fn hint_urls_need_a_topic_arn_for_sns() {
        assert_eq!(HintsUrl::parse("none"), Ok(HintsUrl::None));
        assert_eq!(
            HintsUrl::parse("sns://arn:aws:sns:us-east-1:123456789012:drover"),
            Ok(HintsUrl::Sns {
                topic_arn: "arn:aws:sns:us-east-1:123456789012:drover".into()
            })
        );
        assert!(HintsUrl::parse("sns://drover").is_err());
        assert!(HintsUrl::parse("carrier-pigeon").is_err());
    }
}
