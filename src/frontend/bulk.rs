//! Bulk submission: the jobs of a parametric JDL (or any list of planned jobs)
//! submitted in batches: one request allocates a batch's ids, and one request
//! queues the batch with its small input archives (one store transaction on the
//! controller); larger archives are uploaded before it, several at once over
//! kept-alive connections.

use super::pack::PackPlan;
use crate::{
    api::wire::{encode_inline, BatchEntry, INLINE_MAX_BYTES},
    client::Client,
};
use anyhow::Context as _;
use futures::{stream, StreamExt, TryStreamExt};
use reconcilers::model::JobId;
use std::io::Write as _;

/// Jobs per batch request: well under the controller's limit (10,000) and its
/// JSON body limit (2 MiB) for JDLs of a few hundred bytes each.
const BATCH: usize = 500;
/// A batch request's JDLs and inline inputs stay under about this many bytes
/// (the body limit is 2 MiB).
const BATCH_BYTES: usize = 1 << 20;
/// Input archives packed and uploaded at once.
const UPLOADS: usize = 16;
/// Inputs up to this size are packed in memory; larger ones go through a
/// temporary file, as a single submission does.
const IN_MEMORY: u64 = 8 << 20;

/// Submits every planned job; returns their ids in the plans' order. Each batch
/// is queued whole or not at all; an error stops at the batch that failed (the
/// batches before it stay submitted, and their ids were printed by then if
/// `on_batch` prints them).
pub async fn submit_plans(
    client: &Client,
    plans: Vec<PackPlan>,
    mut on_batch: impl FnMut(&[JobId]),
) -> anyhow::Result<Vec<JobId>> {
    let mut all = Vec::with_capacity(plans.len());
    // Whether blobs are on S3 (each input goes to its own presigned URL) is asked
    // once, with the first job, rather than once per job.
    let mut presigned = None;
    let mut plans = plans.into_iter().peekable();
    while plans.peek().is_some() {
        let mut batch = Vec::new();
        let mut bytes = 0;
        while let Some(plan) = plans.next_if(|p| {
            batch.is_empty() || (batch.len() < BATCH && bytes + request_bytes(p) <= BATCH_BYTES)
        }) {
            bytes += request_bytes(&plan);
            batch.push(plan);
        }
        let ids = submit_batch(client, batch, &mut presigned).await?;
        on_batch(&ids);
        all.extend(ids);
    }
    Ok(all)
}

/// What a job may add to its batch request: its JDL, and its input archive if
/// it goes along (base64: 4/3 of it, the archive at most its files).
fn request_bytes(plan: &PackPlan) -> usize {
    let jdl = plan.job().jdl.len();
    jdl + inline_estimate(plan).map_or(0, |input| input * 4 / 3)
}

/// The input archive's most likely size (its files, its JDL and headers), if
/// it is small enough to go with the batch. Only such inputs go along, so that
/// the batch stays within the body limit `request_bytes` counted on, whatever
/// gzip makes of the others.
fn inline_estimate(plan: &PackPlan) -> Option<usize> {
    let input = plan.input_bytes() as usize + 1024 + 512 * plan.job().files.len();
    (input <= INLINE_MAX_BYTES).then_some(input)
}

async fn submit_batch(
    client: &Client,
    plans: Vec<PackPlan>,
    presigned: &mut Option<bool>,
) -> anyhow::Result<Vec<JobId>> {
    let ids = client
        .allocate_batch(plans.len())
        .await
        .with_context(|| format!("allocating {} job ids", plans.len()))?;
    anyhow::ensure!(
        ids.len() == plans.len(),
        "the controller allocated {} job ids for a batch of {}",
        ids.len(),
        plans.len()
    );
    // Whether blobs are on S3 (each large input goes to its own presigned URL)
    // is asked once, and only if some input is too big to go with the batch.
    let large = plans.iter().any(|p| inline_estimate(p).is_none());
    if presigned.is_none() && large {
        *presigned = Some(client.input_url(&ids[0]).await?.is_some());
    }
    let presigned = presigned.unwrap_or(false);
    let entries: Vec<BatchEntry> = stream::iter(ids.iter().cloned().zip(plans))
        .map(|(id, plan)| pack(client, id, plan, presigned))
        .buffered(UPLOADS)
        .try_collect()
        .await?;
    client
        .submit_batch(entries)
        .await
        .with_context(|| format!("submitting a batch of {} jobs", ids.len()))
}

/// Packs one job's input archive: a small one goes in its batch entry, a
/// larger one is uploaded now. Returns the job's batch entry.
async fn pack(
    client: &Client,
    id: JobId,
    plan: PackPlan,
    presigned: bool,
) -> anyhow::Result<BatchEntry> {
    let uploading = || format!("uploading the input archive of job {id}");
    let size: u64 = plan.job().files.iter().map(|f| f.bytes).sum();
    let inline = inline_estimate(&plan).is_some();
    let (jdl, body, len) = if size <= IN_MEMORY {
        let (jdl, bytes) = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let packed = plan.write_archive(&mut out)?;
            Ok::<_, anyhow::Error>((packed.jdl, out))
        })
        .await??;
        if inline && bytes.len() <= INLINE_MAX_BYTES {
            let input = Some(encode_inline(&bytes));
            return Ok(BatchEntry { id, jdl, input });
        }
        let len = bytes.len() as u64;
        (jdl, reqwest::Body::from(bytes), len)
    } else {
        let (jdl, file) = tokio::task::spawn_blocking(move || {
            let mut archive = tempfile::tempfile().context("creating a temporary file")?;
            let packed = {
                let mut out = std::io::BufWriter::new(&mut archive);
                let packed = plan.write_archive(&mut out)?;
                out.flush().context("writing the input archive")?;
                packed
            };
            Ok::<_, anyhow::Error>((packed.jdl, archive))
        })
        .await??;
        let file = tokio::fs::File::from_std(file);
        let len = file.metadata().await?.len();
        let mut file = file;
        tokio::io::AsyncSeekExt::rewind(&mut file).await?;
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
        (jdl, body, len)
    };
    let url = match presigned {
        true => client.input_url(&id).await.with_context(uploading)?,
        false => None,
    };
    match url {
        Some(url) => client
            .upload_presigned_body(&url, body, len)
            .await
            .with_context(uploading)?,
        None => client
            .upload_input(&id, body)
            .await
            .with_context(uploading)?,
    }
    Ok(BatchEntry {
        id,
        jdl,
        input: None,
    })
}

/// `drover submit`: a parametric JDL file is expanded and submitted in bulk;
/// anything else is one job, submitted as before. `on_batch` sees the ids of
/// each batch as soon as it is queued.
pub async fn submit_source(
    client: &Client,
    source: &super::JobSource,
    limits: &super::pack::PackLimits,
    on_batch: impl FnMut(&[JobId]),
) -> anyhow::Result<Vec<JobId>> {
    if let super::JobSource::File(path) = source {
        if let Some(plans) = super::pack::plan_parametric_file(path, limits)? {
            for w in plans.first().map_or(&[][..], |p| &p.job().warnings[..]) {
                eprintln!("{w}");
            }
            return submit_plans(client, plans, on_batch).await;
        }
    }
    let mut on_batch = on_batch;
    let job = super::submit(client, source, limits).await?;
    on_batch(std::slice::from_ref(&job.id));
    Ok(vec![job.id])
}
