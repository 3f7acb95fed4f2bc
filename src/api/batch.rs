//! Bulk submission: many jobs in two requests instead of two per job.
//!
//! `POST /v1/batches` allocates many job ids at once (one store transaction);
//! the client sends each small input archive with the batch, or uploads it as
//! for a single job (`PUT /v1/jobs/{id}/input`), then `POST /v1/batches/submit`
//! queues them all: blobs in one transaction of the small blobs, records in one
//! of the store (SQLite group commit). A parametric
//! JDL is expanded by the client into one plain job per value, submitted so.

use super::{
    jobs::{check_uploaded_input, inline_input, parse_job_id},
    wire::*,
    ApiError, Ctx,
};
use crate::blobs::layout;
use axum::{extract::State, http::StatusCode, Json};
use futures::{stream, StreamExt, TryStreamExt};
use object_store::path::Path as BlobPath;
use reconcilers::{
    jdl::{self, JobType},
    jobs,
    model::{Job, JobId, JobSpec},
};
use std::collections::HashSet;

/// The most jobs one batch request allocates or submits. A parametric JDL may
/// make more (up to `jdl::MAX_PARAMETRIC_JOBS`): the client sends several batches.
pub const MAX_BATCH: usize = 10_000;

/// How many blob operations of one batch run at once.
const BLOB_CONCURRENCY: usize = 32;

/// `POST /v1/batches`: `count` new job ids, recorded as `Created` in one transaction.
pub async fn allocate(
    State(c): State<Ctx>,
    Json(req): Json<BatchAllocate>,
) -> Result<(StatusCode, Json<BatchAllocated>), ApiError> {
    if req.count == 0 || req.count > MAX_BATCH {
        return Err(ApiError::bad_request(format!(
            "a batch allocates 1 to {MAX_BATCH} job ids, not {}; send several batches",
            req.count
        )));
    }
    loop {
        let now = c.now();
        // Ids are time plus noise: thousands drawn in one millisecond may repeat
        // within the batch, so draw until they are distinct.
        let mut seen = HashSet::with_capacity(req.count);
        let mut batch = Vec::with_capacity(req.count);
        while batch.len() < req.count {
            let id = crate::ids::new_job_id(now);
            if seen.insert(id.clone()) {
                batch.push(Job::new(id, now));
            }
        }
        match c.store.create_jobs(&batch).await {
            Ok(()) => {
                let ids = batch.into_iter().map(|j| j.id).collect();
                return Ok((StatusCode::CREATED, Json(BatchAllocated { ids })));
            }
            // An id collided with one allocated before: nothing was written, draw again.
            Err(crate::store::StoreError::AlreadyExists(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// `POST /v1/batches/submit`: queues every job of the batch, or none if any of
/// them is refused (bad JDL, missing input): the reply names each refused job.
pub async fn submit(
    State(c): State<Ctx>,
    Json(req): Json<BatchSubmit>,
) -> Result<Json<BatchSubmitted>, ApiError> {
    if req.jobs.is_empty() || req.jobs.len() > MAX_BATCH {
        return Err(ApiError::bad_request(format!(
            "a batch submits 1 to {MAX_BATCH} jobs, not {}; send several batches",
            req.jobs.len()
        )));
    }
    let max_input = c.config.max_input_bytes;
    let mut seen = HashSet::with_capacity(req.jobs.len());
    let mut checked = Vec::with_capacity(req.jobs.len());
    let mut inline = Vec::new();
    for entry in req.jobs {
        let id = parse_job_id(entry.id.as_str())?;
        if !seen.insert(id.clone()) {
            return Err(ApiError::bad_request(format!(
                "job {id} is twice in the batch"
            )));
        }
        let spec = read_spec(&id, &entry.jdl)?;
        if let Some(text) = &entry.input {
            inline.push((id.clone(), inline_input(&id, text, max_input)?));
        }
        checked.push((id, spec, entry.jdl));
    }
    // The inputs are checked before anything is written: a batch with one job
    // missing its input queues none of them.
    // Owned values: a stream of futures borrowing `checked` is not `Send` enough
    // for an axum handler.
    let ids: Vec<JobId> = checked.iter().map(|(id, _, _)| id.clone()).collect();
    let inlined: HashSet<&JobId> = inline.iter().map(|(id, _)| id).collect();
    let uploaded: Vec<JobId> = ids
        .iter()
        .filter(|id| !inlined.contains(id))
        .cloned()
        .collect();
    stream::iter(uploaded.into_iter().map(|id| {
        let c = c.clone();
        async move { check_uploaded_input(&c, &id, max_input, "submitting the batch").await }
    }))
    .buffer_unordered(BLOB_CONCURRENCY)
    .try_collect::<Vec<()>>()
    .await?;
    let mut before = Vec::with_capacity(ids.len());
    for (id, job) in ids.iter().zip(c.store.get_jobs(&ids).await?) {
        match job {
            Some(job) => before.push(job),
            None => return Err(ApiError::not_found(format!("job {id} not found"))),
        }
    }
    let now = c.now();
    let mut writes = Vec::with_capacity(before.len());
    let mut originals = Vec::with_capacity(before.len());
    for (job, (_, spec, _)) in before.iter().zip(&checked) {
        match jobs::submit(job, spec.clone(), now)? {
            jobs::Change::Write(next) => {
                writes.push(*next);
                originals.push(job);
            }
            jobs::Change::AlreadyDone => {}
        }
    }
    // Every job may be queued: now its JDL (and input, if it came along) is
    // stored, all in one go, then the records written. An input goes only to a
    // job being submitted now, as an upload goes only to a job not yet
    // submitted: a batch sent again changes no input.
    let submitting: HashSet<&JobId> = writes.iter().map(|j| &j.id).collect();
    let mut blobs: Vec<(BlobPath, bytes::Bytes)> = checked
        .iter()
        .map(|(id, _, jdl)| (layout::jdl(id), bytes::Bytes::from(jdl.clone())))
        .collect();
    blobs.extend(
        inline
            .into_iter()
            .filter(|(id, _)| submitting.contains(id))
            .map(|(id, data)| (layout::input(&id), data)),
    );
    c.blobs.put_many(blobs).await?;

    let results = c.store.update_jobs(&writes).await?;
    let mut conflicts = Vec::new();
    for ((after, before), result) in writes.iter().zip(originals).zip(results) {
        match result {
            Ok(_) => c.job_written(before, after),
            Err(crate::store::StoreError::Conflict { .. }) => conflicts.push(after.id.clone()),
            Err(e) => return Err(e.into()),
        }
    }
    // A job changed between its read and the batch write (cancelled meanwhile, or
    // submitted twice at once): each is retried alone, as a single submit would.
    for id in conflicts {
        let spec = checked
            .iter()
            .find(|(checked_id, _, _)| *checked_id == id)
            .map(|(_, spec, _)| spec.clone())
            .unwrap_or_default();
        c.change_job(&id, |job| jobs::submit(job, spec.clone(), now))
            .await??;
    }
    c.wake.jobs.notify_one();
    c.wake.fleet.notify_one();
    if let Some(first) = ids.first() {
        c.hint(reconcilers::messages::Message::JobSubmitted { job: first.clone() });
    }
    tracing::info!(jobs = ids.len(), "batch submitted");
    Ok(Json(BatchSubmitted { submitted: ids }))
}

/// The controller reads each JDL itself rather than trusting the client.
fn read_spec(id: &JobId, text: &str) -> Result<JobSpec, ApiError> {
    let desc = match jdl::parse_job(text) {
        Ok((desc, _warnings)) => desc,
        Err(diags) => {
            let lines: Vec<String> = diags
                .iter()
                .filter(|d| d.is_error())
                .map(|d| format!("job {id}: job.jdl:{d}"))
                .collect();
            return Err(ApiError::bad_request(format!(
                "the JDL of job {id} has errors:\n{}",
                lines.join("\n")
            )));
        }
    };
    if desc.job_type != JobType::Normal {
        return Err(ApiError::bad_request(format!(
            "job {id}: a batch holds plain jobs, not {:?}; expand a parametric JDL into one \
             plain job per value before submitting it",
            desc.job_type
        )));
    }
    Ok(jobs::job_spec(&desc))
}
