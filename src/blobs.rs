//! Job blobs through the `object_store` crate: a local folder by default, S3 on AWS.
//!
//! The layout, one folder per job (the id is allocated before anything is uploaded,
//! so names never collide):
//!
//! ```text
//! jobs/<id>/job.jdl                       the JDL as submitted (canonical form)
//! jobs/<id>/input.tar.gz                  the input archive (sandbox files + .drover/job.jdl)
//! jobs/<id>/attempts/<n>/output.tar.gz    the output archive of attempt n
//! jobs/<id>/attempts/<n>/stdout           the Executable's standard output
//! jobs/<id>/attempts/<n>/stderr           the Executable's standard error
//! jobs/<id>/attempts/<n>/worker.log       what the worker says: prologue, epilogue, notes
//! ```
//!
//! Outputs live under their attempt, so a late upload from a worker that was
//! declared lost can never replace the output of the attempt the job accepted.
//!
//! With a local folder, blobs up to [`small::SMALL_BLOB_BYTES`] are rows of
//! `<folder>/small.sqlite` instead of files (see `small.rs` for why); the keys
//! are the same.

pub mod small;
#[cfg(test)]
mod tests;

use bytes::Bytes;
use futures::{stream::BoxStream, StreamExt, TryStreamExt};
use object_store::{
    buffered::BufWriter, local::LocalFileSystem, path::Path as BlobPath, ObjectStore, PutPayload,
};
use reconcilers::model::JobId;
use small::{SmallBlobs, SMALL_BLOB_BYTES};
use std::{path::Path, sync::Arc};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// The streams an attempt leaves behind, besides its output archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
    Worker,
}

impl LogStream {
    pub fn file_name(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
            LogStream::Worker => "worker.log",
        }
    }

    pub fn parse(s: &str) -> Option<LogStream> {
        match s {
            "stdout" => Some(LogStream::Stdout),
            "stderr" => Some(LogStream::Stderr),
            "worker" | "worker.log" => Some(LogStream::Worker),
            _ => None,
        }
    }
}

/// Blob keys, in one place.
pub mod layout {
    use super::*;

    pub fn jdl(job: &JobId) -> BlobPath {
        BlobPath::from(format!("jobs/{job}/job.jdl"))
    }
    pub fn input(job: &JobId) -> BlobPath {
        BlobPath::from(format!("jobs/{job}/input.tar.gz"))
    }
    pub fn output(job: &JobId, attempt: u32) -> BlobPath {
        BlobPath::from(format!("jobs/{job}/attempts/{attempt}/output.tar.gz"))
    }
    pub fn log(job: &JobId, attempt: u32, stream: LogStream) -> BlobPath {
        BlobPath::from(format!(
            "jobs/{job}/attempts/{attempt}/{}",
            stream.file_name()
        ))
    }
    pub fn job_prefix(job: &JobId) -> BlobPath {
        BlobPath::from(format!("jobs/{job}"))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob {0} not found")]
    NotFound(String),
    #[error("{key} would be over the limit of {limit} bytes")]
    TooLarge { key: String, limit: u64 },
    #[error("{context}: {source}")]
    Store {
        context: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Clone)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
    /// Where small blobs go instead of `store` (local folders only: on S3 every
    /// controller must see every blob, and a request costs the same either way).
    small: Option<SmallBlobs>,
    /// On S3: signs URLs that let a client without credentials upload one object.
    signer: Option<Signing>,
}

#[cfg(feature = "aws")]
#[derive(Clone)]
struct Signing {
    s3: Arc<object_store::aws::AmazonS3>,
    /// The bucket prefix `store` hides, which a signed URL must spell out.
    prefix: String,
}

/// Only S3 signs URLs: a build without AWS support has none.
#[cfg(not(feature = "aws"))]
type Signing = std::convert::Infallible;

impl Blobs {
    pub fn new(store: Arc<dyn ObjectStore>) -> Blobs {
        Blobs {
            store,
            small: None,
            signer: None,
        }
    }

    /// Blobs in an S3 bucket, under `prefix`, with the same layout as locally.
    #[cfg(feature = "aws")]
    /// Credentials, region and endpoint come from the environment (or the
    /// instance's role) as for every AWS client; `[aws]` in drover.toml overrides
    /// the region and endpoint. Large objects go up as multipart uploads.
    pub fn s3(
        bucket: &str,
        prefix: &str,
        aws: &crate::aws::AwsSettings,
    ) -> Result<Blobs, BlobError> {
        let mut builder = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            // Every S3 request counted on /metrics (drover_aws_calls_total).
            .with_http_connector(crate::aws::S3CallMetrics);
        if let Some(region) = &aws.region {
            builder = builder.with_region(region);
        }
        let endpoint = aws
            .endpoint_url
            .clone()
            .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
        if let Some(url) = endpoint {
            // Emulators and private endpoints: path-style requests, plain HTTP allowed.
            builder = builder
                .with_allow_http(url.starts_with("http://"))
                .with_virtual_hosted_style_request(false)
                .with_endpoint(url);
        }
        let s3 = builder.build().map_err(|source| BlobError::Store {
            context: format!("configuring S3 bucket {bucket}"),
            source,
        })?;
        let s3 = Arc::new(s3);
        let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
            s3.clone()
        } else {
            Arc::new(object_store::prefix::PrefixStore::new(
                s3.clone() as Arc<dyn ObjectStore>,
                prefix,
            ))
        };
        let signer = Some(Signing {
            s3,
            prefix: prefix.to_string(),
        });
        Ok(Blobs {
            store,
            small: None,
            signer,
        })
    }

    /// A URL that allows one PUT of `key` for `expires_in`, for a client without
    /// credentials of its own; `None` where blobs are not on S3.
    #[cfg(not(feature = "aws"))]
    pub async fn presigned_put(
        &self,
        _key: &BlobPath,
        _expires_in: std::time::Duration,
    ) -> Result<Option<url::Url>, BlobError> {
        match self.signer {
            Some(never) => match never {},
            None => Ok(None),
        }
    }

    /// A URL that allows one PUT of `key` for `expires_in`, for a client without
    /// credentials of its own; `None` where blobs are not on S3.
    #[cfg(feature = "aws")]
    pub async fn presigned_put(
        &self,
        key: &BlobPath,
        expires_in: std::time::Duration,
    ) -> Result<Option<url::Url>, BlobError> {
        use object_store::signer::Signer;
        let Some(signing) = &self.signer else {
            return Ok(None);
        };
        let full = if signing.prefix.is_empty() {
            key.clone()
        } else {
            BlobPath::from(format!("{}/{key}", signing.prefix))
        };
        signing
            .s3
            .signed_url(axum::http::Method::PUT, &full, expires_in)
            .await
            .map(Some)
            .map_err(|source| BlobError::Store {
                context: format!("signing an upload URL for {key}"),
                source,
            })
    }

    /// The size of a blob, `None` if it does not exist.
    pub async fn size(&self, key: &BlobPath) -> Result<Option<u64>, BlobError> {
        if let Some(small) = &self.small {
            if let Some(size) = small.size(key.as_ref()).await? {
                return Ok(Some(size));
            }
        }
        match self.store.head(key).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(BlobError::Store {
                context: format!("looking up {key}"),
                source,
            }),
        }
    }

    /// Blobs in a local folder, created if missing.
    pub fn local(dir: &Path) -> Result<Blobs, BlobError> {
        std::fs::create_dir_all(dir).map_err(|source| BlobError::Io {
            context: format!("creating blob folder {}", dir.display()),
            source,
        })?;
        let fs = LocalFileSystem::new_with_prefix(dir).map_err(|source| BlobError::Store {
            context: format!("opening blob folder {}", dir.display()),
            source,
        })?;
        let small = SmallBlobs::open(&dir.join("small.sqlite"))?;
        Ok(Blobs {
            small: Some(small),
            ..Blobs::new(Arc::new(fs.with_automatic_cleanup(true)))
        })
    }

    pub async fn put_bytes(&self, key: &BlobPath, data: Bytes) -> Result<(), BlobError> {
        if let Some(small) = &self.small {
            if data.len() <= SMALL_BLOB_BYTES {
                return small.put(key.as_ref(), data).await;
            }
        }
        self.store
            .put(key, PutPayload::from(data))
            .await
            .map_err(|source| BlobError::Store {
                context: format!("writing {key}"),
                source,
            })?;
        self.forget_small(key).await
    }

    /// The blob if it is a small one kept in the store's rows, `None` otherwise
    /// (missing, large, or blobs without rows): then it is to be streamed.
    pub async fn get_small(&self, key: &BlobPath) -> Result<Option<Bytes>, BlobError> {
        match &self.small {
            Some(small) => small.get(key.as_ref()).await,
            None => Ok(None),
        }
    }

    /// Many blobs: the small ones in one transaction, the others one by one.
    pub async fn put_many(&self, blobs: Vec<(BlobPath, Bytes)>) -> Result<(), BlobError> {
        let (small, large): (Vec<_>, Vec<_>) = match &self.small {
            Some(_) => blobs
                .into_iter()
                .partition(|(_, data)| data.len() <= SMALL_BLOB_BYTES),
            None => (Vec::new(), blobs),
        };
        if let (Some(rows), false) = (&self.small, small.is_empty()) {
            let small = small.into_iter().map(|(k, d)| (k.to_string(), d)).collect();
            rows.put_many(small).await?;
        }
        futures::stream::iter(large)
            .map(|(key, data)| async move { self.put_bytes(&key, data).await })
            .buffer_unordered(16)
            .try_collect::<Vec<()>>()
            .await
            .map(|_| ())
    }

    /// After a large put: the row it replaces must not shadow it.
    async fn forget_small(&self, key: &BlobPath) -> Result<(), BlobError> {
        match &self.small {
            Some(small) => small.delete(key.as_ref()).await,
            None => Ok(()),
        }
    }

    /// Streams `reader` into the blob (multipart for large objects), refusing to
    /// store more than `limit` bytes. Returns the size written.
    pub async fn put_reader(
        &self,
        key: &BlobPath,
        reader: impl AsyncRead + Unpin,
        limit: u64,
    ) -> Result<u64, BlobError> {
        let io_err = |source| BlobError::Io {
            context: format!("writing {key}"),
            source,
        };
        let too_large = || BlobError::TooLarge {
            key: key.to_string(),
            limit,
        };
        let mut limited = reader.take(limit.saturating_add(1));
        // Read as much as a small blob may hold: if the stream ends there, it is one.
        let mut head = Vec::new();
        let head_cap = if self.small.is_some() {
            SMALL_BLOB_BYTES as u64 + 1
        } else {
            0
        };
        (&mut limited)
            .take(head_cap)
            .read_to_end(&mut head)
            .await
            .map_err(io_err)?;
        if let (Some(small), true) = (&self.small, head.len() <= SMALL_BLOB_BYTES) {
            let n = head.len() as u64;
            if n > limit {
                return Err(too_large());
            }
            small.put(key.as_ref(), head.into()).await?;
            return Ok(n);
        }
        let mut writer = BufWriter::new(self.store.clone(), key.clone());
        let copied = match writer.write_all(&head).await {
            Ok(()) => tokio::io::copy(&mut limited, &mut writer)
                .await
                .map(|n| n + head.len() as u64),
            Err(e) => Err(e),
        };
        let n = match copied {
            Ok(n) if n <= limit => n,
            Ok(_) => {
                let _ = writer.abort().await;
                return Err(too_large());
            }
            Err(e) => {
                let _ = writer.abort().await;
                return Err(io_err(e));
            }
        };
        writer.shutdown().await.map_err(io_err)?;
        self.forget_small(key).await?;
        Ok(n)
    }

    pub async fn get_stream(
        &self,
        key: &BlobPath,
    ) -> Result<BoxStream<'static, std::io::Result<Bytes>>, BlobError> {
        if let Some(small) = &self.small {
            if let Some(data) = small.get(key.as_ref()).await? {
                return Ok(futures::stream::once(async { Ok(data) }).boxed());
            }
        }
        match self.store.get(key).await {
            Ok(r) => Ok(r.into_stream().map_err(std::io::Error::other).boxed()),
            Err(object_store::Error::NotFound { .. }) => Err(BlobError::NotFound(key.to_string())),
            Err(source) => Err(BlobError::Store {
                context: format!("reading {key}"),
                source,
            }),
        }
    }

    /// Deletes everything of a job (abandoned submits).
    pub async fn delete_job(&self, job: &JobId) -> Result<(), BlobError> {
        let prefix = layout::job_prefix(job);
        if let Some(small) = &self.small {
            small.delete_under(prefix.as_ref()).await?;
        }
        let keys: Vec<BlobPath> = self
            .store
            .list(Some(&prefix))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .map_err(|source| BlobError::Store {
                context: format!("listing {prefix}"),
                source,
            })?;
        for key in keys {
            match self.store.delete(&key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(source) => {
                    return Err(BlobError::Store {
                        context: format!("deleting {key}"),
                        source,
                    })
                }
            }
        }
        Ok(())
    }

    /// Every stored key, in order: what tests and tools check is (or is not) kept.
    pub async fn keys(&self) -> Result<Vec<String>, BlobError> {
        let mut keys: Vec<String> = self
            .store
            .list(None)
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .map_err(|source| BlobError::Store {
                context: "listing blobs".into(),
                source,
            })?;
        if let Some(small) = &self.small {
            keys.retain(|k| !k.starts_with("small.sqlite"));
            keys.extend(small.keys().await?);
        }
        keys.sort();
        keys.dedup();
        Ok(keys)
    }
}
